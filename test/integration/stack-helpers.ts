/**
 * Shared helpers for the whole-stack SMMUv3 integration tests (and the stack benchmark):
 * boot the virt board with the kernel model, run kernel code as a task, capture the driver's
 * log lines, and do device DMA through the SMMU hardware model's port.
 */

import { createVirtBoard, VIRT, type VirtBoard, type VirtBoardOptions } from '../../src/hw/boards/virt.ts';
import { bdf } from '../../src/hw/devices/pcie-ecam.ts';
import type { PcieEndpoint } from '../../src/hw/devices/pcie-endpoint.ts';
import { PortResult } from '../../src/hw/smmuv3/port.ts';
import type { Device } from '../../src/kernel/base/device.ts';
import { Kernel, type KernelOptions } from '../../src/kernel/init/kernel.ts';
import type { ArmSmmuInstance } from '../../src/kernel/iommu/arm-smmu-v3/driver.ts';
import { type IommuDomain, iommuMap } from '../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { Machine, type TraceEvent } from '../../src/platform/index.ts';

export const GPU_PATH = '/soc/gpu@a000000';
export const PCI_PATH = '/soc/pcie@40000000/pcie-testdev@1,0';
export const PCI_RID = bdf(0, 1, 0); // 8
export const SMMU_COMPONENT = 'arm-smmu-v3 9000000.iommu';

export interface BootOptions {
  seed?: number;
  /** Device tree source; default the embedded platform. */
  dts?: string;
  /** Hardware: board options (SMMU model features), or a replacement for the board's SMMU. */
  board?: VirtBoardOptions;
  /** Map this at the SMMU's address instead of the board's SMMU model (a dead or odd device). */
  smmuStandIn?: { read32(o: number): number; write32(o: number, v: number): void };
  kernel?: Omit<KernelOptions, 'machine' | 'tree'>;
  /** Capture trace events (the driver's dmesg lines); off for benchmarks. */
  trace?: boolean;
}

export interface Stack {
  m: Machine;
  /** The board (with smmuStandIn, its SMMU model is not reachable by software). */
  board: VirtBoard;
  k: Kernel;
  log: TraceEvent[];
  /** The board's PCIe test device 00:01.0 (ATS, PRI, PASID). */
  ep: PcieEndpoint;
}

/** Boot the virt board and the kernel model; virtual time runs until probing is over. */
export async function bootStack(o: BootOptions = {}): Promise<Stack> {
  const m = new Machine({ seed: o.seed ?? 1 });
  const log: TraceEvent[] = [];
  if (o.trace !== false) m.trace.addSink({ write: (e) => log.push(e) });
  const board = createVirtBoard(m, o.board);
  if (o.smmuStandIn) {
    // the rest of the board stays; software finds something else at the SMMU's address
    const s = o.smmuStandIn;
    m.mmio.unmap(board.smmu);
    m.mmio.map(VIRT.SMMU_BASE, 0x20000, { name: 'smmu-stand-in', read32: s.read32, write32: s.write32 });
  }
  const ep = board.pcieTestdev;
  const k = new Kernel({ machine: m, tree: parseDts(o.dts ?? DEFAULT_PLATFORM_DTS), ...o.kernel });
  await k.boot();
  return { m, board, k, log, ep };
}

/** The default platform without root-complex ATS support (`ats-supported` removed). */
export const NO_ATS_DTS = DEFAULT_PLATFORM_DTS.replace(/\n\s*ats-supported;/, '');

/**
 * Run `fn` as a kernel task (process context) while the scheduler runs virtual time, as kernel
 * code that waits for the hardware must; rethrows what it threw.
 */
export async function inTask<T>(m: Machine, fn: () => Promise<T>): Promise<T> {
  let out!: T;
  let err: unknown;
  let done = false;
  m.exec.spawn('test', async () => {
    try {
      out = await fn();
    } catch (e) {
      err = e;
    } finally {
      done = true;
    }
  });
  await m.sched.runUntilIdle();
  if (err) throw err;
  if (!done) throw new Error('kernel task did not finish (blocked with nothing left to run)');
  return out;
}

/**
 * The GPU of a booted stack on a new UNMANAGED domain of its own, with one 4K page mapped at
 * `iova`: what several whole-stack tests start from.
 */
export async function gpuOnNewDomain(s: Stack, iova: number) {
  const gpu = dev(s.k, GPU_PATH);
  const d = (await inTask(s.m, () => s.k.iommu.domainAllocPaging(gpu))) as IommuDomain;
  const r = await inTask(s.m, () => s.k.iommu.attachDevice(d, gpu));
  if (r !== 0) throw new Error(`attach ${gpu.name}: ${r}`);
  const page = s.m.pages.alloc(0, 'page');
  if (iommuMap(d, iova, page, 0x1000, IOMMU_READ | IOMMU_WRITE) !== 0) throw new Error('iommu_map failed');
  return { gpu, sid: sidOf(gpu), d, page };
}

export function dev(k: Kernel, path: string): Device {
  const d = k.device(path);
  if (d === undefined) throw new Error(`no device ${path}`);
  return d;
}

export function smmuInstance(k: Kernel): ArmSmmuInstance {
  const i = k.smmuDriver.instances[0];
  if (i === undefined) throw new Error('the SMMUv3 driver did not bind');
  return i;
}

/** The SMMU driver's log lines (messages only), in order. */
export function smmuLines(log: readonly TraceEvent[]): string[] {
  return log.filter((e) => e.component === SMMU_COMPONENT).map((e) => e.message);
}

/** The dmesg-style event dumps in the log: each is [header, w0..w3, decoded...]. */
export function eventDumps(log: readonly TraceEvent[]): string[][] {
  const lines = smmuLines(log);
  const out: string[][] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^event 0x[0-9a-f]{2} received:$/.test(lines[i]!)) continue;
    const dump = lines.slice(i, i + 5);
    let j = i + 5;
    while (j < lines.length && /^(event: |(un)?priv )/.test(lines[j]!)) dump.push(lines[j++]!);
    out.push(dump);
  }
  return out;
}

/** The StreamID of a device (its first fwspec ID). */
export function sidOf(d: Device): number {
  const id = d.iommu?.ids[0];
  if (id === undefined) throw new Error(`${d.name} has no StreamID`);
  return id;
}

/** One transaction through the SMMU model's port; returns a fresh result. */
export function translate(board: VirtBoard, sid: number, iova: number, access = 0, ssid = -1): PortResult {
  const r = new PortResult();
  board.smmu.port.translate(sid, ssid, iova, access, r);
  return r;
}

/** Fill `n` bytes at `pa` with a pattern derived from `seed`; returns the bytes. */
export function fillPattern(m: Machine, pa: number, n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  m.mem.writeBytes(pa, b);
  return b;
}

export function readBytes(m: Machine, pa: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  m.mem.readBytes(pa, b);
  return b;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}
