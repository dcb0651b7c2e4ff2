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

import {
  type DmaOutcome,
  defineScenario,
  errnoName,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  IOMMU_READ,
  IOMMU_WRITE,
  type IopfGroup,
} from '../../index.ts';
import { type DemoFault, type DemoResponse, recordFaults } from './fault-log.ts';
import { demoInfo, pad } from './index.ts';

export interface PriDemoResult {
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
}

const hex = (v: number) => `0x${v.toString(16)}`;
const WINDOW = { start: 0x10_0000, end: 0x80_0000 };

/** The "backing store" content of a page (what a page-in reads). */
function backingByte(iova: number, i: number): number {
  return ((iova >>> 12) * 13 + i * 7) & 0xff;
}

export default defineScenario<PriDemoResult>({
  ...demoInfo('pri'),

  async run({ lab, expect, fail, rng }) {
    const m = lab.machine;
    const say = (name: string, msg: string, level: 'info' | 'warn' = 'info') =>
      m.trace.emit('pri-demo', name, msg, {}, level);
    const fn = lab.pci('pcie-testdev');
    const pci = lab.device('/soc/pcie@40000000/pcie-testdev@1,0');
    const log = recordFaults(lab, pci);
    const mapped = new Map<number, number>();
    const transfers: PriDemoResult['transfers'] = [];

    // the handler of both domains: runs from the iopf queue (a workqueue), may sleep
    const handler = async (g: IopfGroup): Promise<number> => {
      const d = g.domain!;
      for (const f of g.faults) {
        if (f.addr < WINDOW.start || f.addr >= WINDOW.end) {
          say('deny', `fault at ${hex(f.addr)} outside the window: INVALID`, 'warn');
          return IOMMU_PAGE_RESP_INVALID;
        }
        const pa = lab.allocPages(0, 'pri demand page');
        await lab.sleep(1_000); // reading the page from its backing store
        lab.write(
          pa,
          Uint8Array.from({ length: 4096 }, (_, i) => backingByte(f.addr, i)),
        );
        const prot = IOMMU_READ | (f.perm & IOMMU_FAULT_PERM_WRITE ? IOMMU_WRITE : 0);
        const r = await lab.iommu.map(d, f.addr, pa, 4096, prot);
        if (r < 0) return r;
        mapped.set(g.id, pa);
        say('map', `mapped iova ${hex(f.addr)} -> pa ${hex(pa)} in ${d}`);
      }
      return IOMMU_PAGE_RESP_SUCCESS;
    };

    const dma = async (what: string, transfer: PromiseLike<DmaOutcome>) => {
      const o = await transfer;
      say('dma', `${what}: ${o.ok ? 'completed' : `failed (${o.status})`}`);
      return o;
    };
    const outcome = (o: DmaOutcome) => ({
      ok: o.ok,
      why: o.ok ? '' : o.status,
      startNs: o.startedNs,
      endNs: o.finishedNs,
    });
    const domain = async (what: string) => {
      const d = await lab.iommu.domainAllocPaging(pci);
      return typeof d === 'number' ? fail(`${what} domain allocation: ${errnoName(d)}`) : d;
    };

    const rid = await domain('RID');
    const pasidDom = await domain('PASID');
    expect(await lab.iommu.attachDevice(rid, pci), 'attach the RID domain').toBe(0);
    expect(await lab.faults.enableIopf(pci), 'enable IOPF (PRI + PASID at the endpoint)').toBe(0);
    expect(await lab.iommu.attachDevicePasid(pasidDom, pci, 1), 'attach PASID 1').toBe(0);
    lab.faults.setDomainIopfHandler(rid, handler);
    lab.faults.setDomainIopfHandler(pasidDom, handler);

    // 1. RID: write 4 pages nobody mapped
    const wbuf = Uint8Array.from({ length: 4 * 4096 }, (_, i) => (i * 31 + rng.next32()) & 0xff);
    const w = await dma('RID write 16 KiB at 0x100000', fn.write(0x10_0000, wbuf));
    let ok = w.ok;
    for (let p = 0; ok && p < 4; p++) {
      const pa = lab.iommu.iovaToPhys(rid, 0x10_0000 + p * 4096);
      ok = Buffer.from(lab.read(pa, 4096)).equals(Buffer.from(wbuf.subarray(p * 4096, (p + 1) * 4096)));
    }
    transfers.push({
      what: 'write',
      pasid: null,
      iova: hex(0x10_0000),
      bytes: wbuf.length,
      ...outcome(w),
      verified: ok,
    });
    // 2. PASID 1: read 3 pages, paged in on demand
    const rd = await dma('PASID 1 read 12 KiB at 0x200000', fn.read(0x20_0000, 3 * 4096, { pasid: 1 }));
    const rbuf = rd.data!;
    let rok = rd.ok;
    for (let i = 0; rok && i < rbuf.length; i++)
      rok = rbuf[i] === backingByte(0x20_0000 + (i & ~4095), i & 4095);
    transfers.push({
      what: 'read',
      pasid: 1,
      iova: hex(0x20_0000),
      bytes: rbuf.length,
      ...outcome(rd),
      verified: rok,
    });
    // 3. RID: a write outside the window the handler serves: Invalid Request
    const bad = 0x9000_0000;
    const b = await dma(`RID write 4 KiB at ${hex(bad)}`, fn.write(bad, new Uint8Array(4096)));
    transfers.push({
      what: 'write',
      pasid: null,
      iova: hex(bad),
      bytes: 4096,
      ...outcome(b),
      verified: !b.ok,
    });

    const groups: PriDemoResult['groups'] = [];
    for (const f of log.faults) {
      if (f.group === null) continue;
      const pa = mapped.get(f.group);
      groups.push({
        group: f.group,
        fault: f,
        response: log.responses.find((r) => r.group === f.group) ?? null,
        mappedPa: pa === undefined ? null : hex(pa),
      });
    }
    const s = fn.stats();
    const result: PriDemoResult = {
      groups,
      transfers,
      endpoint: {
        pageRequests: s.pageRequests!,
        prgResponses: s.prgResponses!,
        translationRequests: s.translationRequests!,
        priStatus: hex(lab.board.virt!.pcieTestdev.priStatus),
      },
      faults: log.faults,
      responseList: log.responses,
    };
    expect(
      transfers.map((t) => t.verified),
      'each transfer ended as designed (the last one refused)',
    ).toEqual([true, true, true]);
    expect(
      groups.every((g) => g.response !== null),
      'every page-request group answered',
    ).toBe(true);
    return result;
  },

  report(r) {
    const lines = [
      '  group  time(ns)        pasid  prgi  addr        perm  response                      mapped',
    ];
    for (const g of r.groups) {
      const resp = g.response;
      lines.push(
        `  ${pad(g.group, 6)} ${pad(g.fault.t, 15)} ${pad(g.fault.pasid ?? '-', 6)} ${pad(g.fault.grpid ?? '-', 5)} ${pad(g.fault.addr, 11)} ${pad(g.fault.perm, 5)} ${pad(resp ? `${resp.code}${resp.pasid !== null ? ` pasid ${resp.pasid}` : ''} +${resp.latencyNs} ns` : 'none', 29)} ${g.mappedPa ?? '-'}`,
      );
    }
    lines.push('', 'transfers:');
    for (const t of r.transfers)
      lines.push(
        `  ${pad(t.what, 6)} ${pad(t.pasid === null ? 'RID' : `PASID ${t.pasid}`, 8)} iova ${pad(t.iova, 11)} ${pad(t.bytes, 6)} bytes: ${t.ok ? 'completed' : `failed (${t.why})`}${t.verified ? ', as expected' : ', UNEXPECTED'} in ${t.endNs - t.startNs} ns`,
      );
    lines.push(
      `endpoint: ${r.endpoint.pageRequests} page requests, ${r.endpoint.prgResponses} PRG responses, ${r.endpoint.translationRequests} translation requests, PRI status ${r.endpoint.priStatus}`,
    );
    return lines;
  },
});
