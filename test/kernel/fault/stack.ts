/**
 * Whole-stack helpers for the fault tests: the virt board booted with the kernel model, the
 * SMMUv3 driver's fault glue, and a recorder that stands in for a device on a StreamID to see
 * exactly what the SMMU answers (stall completions, PRG responses).
 */

import { PortResult } from '../../../src/hw/smmuv3/port.ts';
import type { PriResponseCode, UpstreamMaster } from '../../../src/hw/smmuv3/upstream.ts';
import type { IommuDomain } from '../../../src/kernel/iommu/domain.ts';
import type { FaultRecord } from '../../../src/kernel/iommu/fault/io-pgfault.ts';
import {
  type BootOptions,
  bootStack,
  dev,
  GPU_PATH,
  inTask,
  PCI_PATH,
} from '../../integration/stack-helpers.ts';

export async function bootFaults(o: BootOptions & { keepRecords?: boolean } = {}) {
  const s = await bootStack(o);
  const board = s.board!;
  const k = s.k;
  const gpu = dev(k, GPU_PATH);
  const pci = dev(k, PCI_PATH);
  const glue = k.smmuFaults[0]!;
  const records: FaultRecord[] = [];
  if (o.keepRecords !== false) k.faults.observe((r) => records.push(r));
  /** An UNMANAGED domain attached to `d` (RID), or to `pasid`. */
  const attachNew = (d: typeof gpu, pasid?: number) =>
    inTask(s.m, async () => {
      const dom = (await k.iommu.domainAllocPaging(d)) as IommuDomain;
      const r =
        pasid === undefined
          ? await k.iommu.attachDevice(dom, d)
          : await k.iommu.attachDevicePasid(dom, d, pasid);
      if (r !== 0) throw new Error(`attach failed: ${r}`);
      return dom;
    });
  const enableIopf = async (d: typeof gpu) => {
    const r = await inTask(s.m, () => k.faults.enableIopf(d));
    if (r !== 0) throw new Error(`enableIopf ${d.name}: ${r}`);
  };
  const resumes = () => glue.smmu.stats.byOpcode.RESUME ?? 0;
  const priResps = () => glue.smmu.stats.byOpcode.PRI_RESP ?? 0;
  return { ...s, board, gpu, pci, glue, records, attachNew, enableIopf, resumes, priResps };
}

/**
 * Run `fn` as a kernel task and only until it returns (unlike inTask, which runs until idle and
 * so would let pending faults reach their timeouts).
 */
export async function task<T>(
  m: {
    exec: { spawn(n: string, f: () => Promise<void>): { finished: boolean } };
    sched: { runUntil(d: () => boolean): Promise<boolean> };
  },
  fn: () => Promise<T>,
): Promise<T> {
  let out!: T;
  let err: unknown;
  const t = m.exec.spawn('test', async () => {
    try {
      out = await fn();
    } catch (e) {
      err = e;
    }
  });
  await m.sched.runUntil(() => t.finished);
  if (err) throw err;
  if (!t.finished) throw new Error('task did not finish');
  return out;
}

/** Stands in for the device on a StreamID: records stall completions and PRG responses. */
export class Recorder implements UpstreamMaster {
  readonly stalls: Array<{ stag: number; status: number; t: number }> = [];
  readonly pri: Array<{ ssid: number; prgi: number; code: PriResponseCode; t: number }> = [];
  constructor(private readonly now: () => number) {}
  stallCompleted(_sid: number, stag: number, status: number): void {
    this.stalls.push({ stag, status, t: this.now() });
  }
  priResponse(_sid: number, ssid: number, prgi: number, code: PriResponseCode): void {
    this.pri.push({ ssid, prgi, code, t: this.now() });
  }
}

export function translateOnce(
  board: {
    smmu: { port: { translate(s: number, ss: number, i: number, a: number, o: PortResult): number } };
  },
  sid: number,
  iova: number,
  access: number,
  ssid = -1,
): PortResult {
  const r = new PortResult();
  board.smmu.port.translate(sid, ssid, iova, access, r);
  return r;
}
