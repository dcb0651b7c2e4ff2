/**
 * Demo 'pri': demand paging for a PCIe device through PRI.
 *
 * The PCIe test device (ATS, PRI, PASID) gets an empty paging domain on its RID and another on
 * PASID 1, and the IOPF feature (PRI and PASID enabled at the endpoint, the device on the
 * SMMU's iopf queue). Its DMA touches pages nothing maps: each ATS translation comes back with
 * no access, the device sends a page request, the SMMU writes it to the PRI queue, and the
 * SMMUv3 driver reports it. The domains' fault handler runs from the iopf workqueue: it
 * allocates a page, fills it (a read: "page-in") and maps it into the domain, then answers
 * SUCCESS; the driver sends CMD_PRI_RESP (with the PASID, as the device's PRI capability
 * requires), the device retries the translation and completes. One access outside the window
 * the handler serves is answered INVALID (Invalid Request) and that DMA fails.
 */

import { createVirtBoard } from '../../hw/boards/virt.ts';
import { Kernel } from '../../kernel/init/kernel.ts';
import { type IommuDomain, iommuIovaToPhys, iommuMap } from '../../kernel/iommu/domain.ts';
import {
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from '../../kernel/iommu/fault/fault.ts';
import type { IopfGroup } from '../../kernel/iommu/fault/io-pgfault.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../kernel/iommu/prot.ts';
import { DEFAULT_PLATFORM_DTS } from '../../kernel/of/default-platform.ts';
import { parseDts } from '../../kernel/of/dts.ts';
import type { Machine } from '../../platform/machine.ts';
import { type DemoFault, type DemoResponse, demoFault, demoResponse } from './gpu-crash-dump.ts';

export interface PriDemoResult {
  scenario: 'pri';
  seed: number;
  virtualTimeNs: number;
  /** Each page-request group with its response. */
  groups: Array<{
    group: number;
    fault: DemoFault;
    response: DemoResponse | null;
    /** The page the handler mapped, or null. */
    mappedPa: string | null;
  }>;
  transfers: Array<{
    what: string;
    pasid: number | null;
    iova: string;
    bytes: number;
    ok: boolean;
    why: string;
    verified: boolean;
    startNs: number;
    endNs: number;
  }>;
  endpoint: { pageRequests: number; prgResponses: number; translationRequests: number; priStatus: string };
  faults: DemoFault[];
  responseList: DemoResponse[];
  bugs: string[];
}

const hex = (v: number) => `0x${v.toString(16)}`;
const WINDOW = { start: 0x10_0000, end: 0x80_0000 };

/** The "backing store" content of a page (what a page-in reads). */
function backingByte(iova: number, i: number): number {
  return ((iova >>> 12) * 13 + i * 7) & 0xff;
}

export async function runPriDemo(m: Machine): Promise<PriDemoResult> {
  const board = createVirtBoard(m);
  const k = new Kernel({ machine: m, tree: parseDts(DEFAULT_PLATFORM_DTS) });
  await k.boot();
  const pci = k.device('/soc/pcie@40000000/pcie-testdev@1,0');
  if (pci === undefined) throw new Error('no PCIe test device');
  const ep = board.pcieTestdev;
  const faults: DemoFault[] = [];
  const responseList: DemoResponse[] = [];
  const mapped = new Map<number, number>();
  k.faults.observe((r) => {
    if (r.kind === 'fault' && r.dev === pci.name)
      faults.push(demoFault(r.time, r.fault, r.outcome, r.groupId));
    else if (r.kind === 'response' && r.dev === pci.name) responseList.push(demoResponse(r));
  });
  const transfers: PriDemoResult['transfers'] = [];

  // the handler of both domains: runs from the iopf queue (a workqueue), may sleep
  const handler = async (g: IopfGroup): Promise<number> => {
    const d = g.domain!;
    for (const f of g.faults) {
      if (f.addr < WINDOW.start || f.addr >= WINDOW.end) {
        m.trace.emit('pri-demo', 'deny', `fault at ${hex(f.addr)} outside the window: INVALID`, {}, 'warn');
        return IOMMU_PAGE_RESP_INVALID;
      }
      const pa = m.pages.alloc(0, 'pri demand page');
      if (pa < 0) return -12;
      await m.exec.sleep(1_000, 'page-in'); // reading the page from its backing store
      const b = new Uint8Array(4096);
      for (let i = 0; i < b.length; i++) b[i] = backingByte(f.addr, i);
      m.mem.writeBytes(pa, b);
      const prot = IOMMU_READ | (f.perm & IOMMU_FAULT_PERM_WRITE ? IOMMU_WRITE : 0);
      const r = iommuMap(d, f.addr, pa, 4096, prot);
      if (r < 0) return r;
      mapped.set(g.id, pa);
      m.trace.emit('pri-demo', 'map', `mapped iova ${hex(f.addr)} -> pa ${hex(pa)} in ${d}`);
    }
    return IOMMU_PAGE_RESP_SUCCESS;
  };

  const dma = (what: string, ssid: number, iova: number, buf: Uint8Array, write: boolean) =>
    new Promise<{ ok: boolean; why: string; startNs: number; endNs: number }>((resolve) => {
      const startNs = m.sched.now;
      ep.dma({
        ssid,
        iova,
        buf,
        write,
        onDone: (ok, _n, why) => {
          m.trace.emit('pri-demo', 'dma', `${what}: ${ok ? 'completed' : `failed (${why})`}`);
          m.sched.wokeAsync = true;
          resolve({ ok, why, startNs, endNs: m.sched.now });
        },
      });
    });

  const task = m.exec.spawn('pri-demo', async () => {
    const rid = (await k.iommu.domainAllocPaging(pci)) as IommuDomain | number;
    const pasidDom = (await k.iommu.domainAllocPaging(pci)) as IommuDomain | number;
    if (typeof rid === 'number' || typeof pasidDom === 'number') throw new Error('domain allocation failed');
    if ((await k.iommu.attachDevice(rid, pci)) !== 0) throw new Error('attach failed');
    const e = await k.faults.enableIopf(pci);
    if (e !== 0) throw new Error(`enableIopf: ${e}`);
    if ((await k.iommu.attachDevicePasid(pasidDom, pci, 1)) !== 0) throw new Error('PASID attach failed');
    k.faults.setDomainIopfHandler(rid, handler);
    k.faults.setDomainIopfHandler(pasidDom, handler);

    // 1. RID: write 4 pages nobody mapped
    const wbuf = new Uint8Array(4 * 4096);
    for (let i = 0; i < wbuf.length; i++) wbuf[i] = (i * 31 + m.rng.next32()) & 0xff;
    const w = await dma('RID write 16 KiB at 0x100000', -1, 0x10_0000, wbuf, true);
    let ok = w.ok;
    for (let p = 0; ok && p < 4; p++) {
      const pa = iommuIovaToPhys(rid, 0x10_0000 + p * 4096);
      const got = new Uint8Array(4096);
      m.mem.readBytes(pa, got);
      ok = Buffer.from(got).equals(Buffer.from(wbuf.subarray(p * 4096, (p + 1) * 4096)));
    }
    transfers.push({
      what: 'write',
      pasid: null,
      iova: hex(0x10_0000),
      bytes: wbuf.length,
      ...w,
      verified: ok,
    });
    // 2. PASID 1: read 3 pages, paged in on demand
    const rbuf = new Uint8Array(3 * 4096);
    const rd = await dma('PASID 1 read 12 KiB at 0x200000', 1, 0x20_0000, rbuf, false);
    let rok = rd.ok;
    for (let i = 0; rok && i < rbuf.length; i++)
      rok = rbuf[i] === backingByte(0x20_0000 + (i & ~4095), i & 4095);
    transfers.push({
      what: 'read',
      pasid: 1,
      iova: hex(0x20_0000),
      bytes: rbuf.length,
      ...rd,
      verified: rok,
    });
    // 3. RID: a write outside the window the handler serves: Invalid Request
    const bad = 0x9000_0000;
    const b = await dma(`RID write 4 KiB at ${hex(bad)}`, -1, bad, new Uint8Array(4096), true);
    transfers.push({ what: 'write', pasid: null, iova: hex(bad), bytes: 4096, ...b, verified: !b.ok });
  });
  await m.sched.runUntil(() => task.finished);
  await m.sched.runUntilIdle();
  if (task.error) throw task.error;

  const groups: PriDemoResult['groups'] = [];
  for (const f of faults) {
    if (f.group === null) continue;
    const pa = mapped.get(f.group);
    groups.push({
      group: f.group,
      fault: f,
      response: responseList.find((r) => r.group === f.group) ?? null,
      mappedPa: pa === undefined ? null : hex(pa),
    });
  }
  return {
    scenario: 'pri',
    seed: m.seed,
    virtualTimeNs: m.sched.now,
    groups,
    transfers,
    endpoint: {
      pageRequests: ep.stats.pageRequests,
      prgResponses: ep.stats.prgResponses,
      translationRequests: ep.stats.translationRequests,
      priStatus: hex(ep.priStatus),
    },
    faults,
    responseList,
    bugs: m.bugs.map((x) => x.message),
  };
}
