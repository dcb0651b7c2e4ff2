/**
 * The PRI path end to end: the PCIe test device (ATS, PRI, PASID) sends page requests, the
 * SMMUv3 model queues them, the driver reports them, and responses become CMD_PRI_RESP with
 * the right code and a PASID exactly when the endpoint's PRI capability requires one.
 */
import { describe, expect, it } from 'vitest';
import type { PcieEndpoint } from '../../src/hw/devices/pcie-endpoint.ts';
import { PRI_RESP_INVALID, PRI_RESP_SUCCESS } from '../../src/hw/smmuv3/upstream.ts';
import { SMMU_FAULT_PRI } from '../../src/kernel/iommu/arm-smmu-v3/fault.ts';
import { iommuMap } from '../../src/kernel/iommu/domain.ts';
import {
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuPageRequestFault,
} from '../../src/kernel/iommu/fault/fault.ts';
import type { IopfGroup } from '../../src/kernel/iommu/fault/io-pgfault.ts';
import { bootFaults, Recorder, task } from '../kernel/fault/stack.ts';

const SID = 8;

function dma(
  ep: PcieEndpoint,
  o: { ssid: number; iova: number; len: number; write?: boolean; exec?: boolean; priv?: boolean },
) {
  const out = { done: false, ok: false, why: '' };
  ep.dma({
    ssid: o.ssid,
    iova: o.iova,
    buf: new Uint8Array(o.len),
    write: o.write ?? false,
    exec: o.exec,
    priv: o.priv,
    onDone: (ok, _n, why) => Object.assign(out, { done: true, ok, why }),
  });
  return out;
}

/** Record the PASID (or -1) of every PRG response the endpoint receives. */
function tapResponses(ep: PcieEndpoint) {
  const seen: Array<{ ssid: number; prgi: number; code: number }> = [];
  const orig = ep.priResponse.bind(ep);
  ep.priResponse = (sid, ssid, prgi, code) => {
    seen.push({ ssid, prgi, code });
    orig(sid, ssid, prgi, code);
  };
  return seen;
}

describe('PRI: fault event', () => {
  it('a page request carries every field (PASID, NEEDS_PASID, exec/priv, PRG index, private data)', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.pci);
    await s.attachNew(s.pci, 1);
    const got: Array<{ f: IommuPageRequestFault; g: IopfGroup }> = [];
    s.k.faults.registerDeviceFaultHandler(
      s.pci,
      (f, ctx) => {
        got.push({ f: f as IommuPageRequestFault, g: ctx.group! });
        return 0;
      },
      null,
    );
    const ep = s.board.pcieTestdev;
    const d = dma(ep, { ssid: 1, iova: 0x5123, len: 16, exec: true, priv: true });
    await s.m.sched.runFor(50_000);
    expect(got).toHaveLength(1);
    expect(got[0]!.f).toMatchObject({
      type: IOMMU_FAULT_PAGE_REQ,
      flags:
        IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE |
        IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA |
        IOMMU_FAULT_PAGE_REQUEST_PASID_VALID |
        IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
      pasid: 1,
      grpid: 0,
      perm: IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_EXEC | IOMMU_FAULT_PERM_PRIV,
      addr: 0x5000,
      privateData: [SMMU_FAULT_PRI, SID],
    });
    expect(got[0]!.f.requester).toEqual({ dev: s.pci, sid: SID, rid: 8 });
    expect(d.done).toBe(false); // the device waits for its response
    expect(
      await task(s.m, () =>
        s.k.faults.pageResponse(s.pci, { pasid: 1, grpid: 0, code: IOMMU_PAGE_RESP_INVALID }),
      ),
    ).toBe(0);
    await s.m.sched.runFor(50_000);
    expect(d).toEqual({ done: true, ok: false, why: 'page request: Invalid Request' });
  });

  it('partial requests of a group reach the handler together, with one response', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.pci);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(SID, rec);
    const groups: IopfGroup[] = [];
    s.k.faults.registerDeviceFaultHandler(
      s.pci,
      (_f, ctx) => {
        groups.push(ctx.group!);
        return s.k.faults.groupResponse(ctx.group!, IOMMU_PAGE_RESP_SUCCESS);
      },
      null,
    );
    const up = s.board.smmu.upstream;
    up.priRequest(SID, -1, 0x1000, 5, false, true, false, false, false);
    up.priRequest(SID, -1, 0x2000, 5, false, false, true, false, false);
    up.priRequest(SID, -1, 0x3000, 5, true, true, true, false, false);
    await s.m.sched.runFor(50_000);
    expect(groups).toHaveLength(1);
    expect(groups[0]!.faults.map((f) => [f.addr, f.perm])).toEqual([
      [0x1000, IOMMU_FAULT_PERM_READ],
      [0x2000, IOMMU_FAULT_PERM_WRITE],
      [0x3000, IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE],
    ]);
    expect(rec.pri).toEqual([{ ssid: -1, prgi: 5, code: PRI_RESP_SUCCESS, t: expect.any(Number) }]);
  });
});

describe('PRI: responses', () => {
  it('SUCCESS -> Success (the device retries and completes), INVALID -> Invalid Request, FAILURE -> Response Failure', async () => {
    const s = await bootFaults();
    const dom = await s.attachNew(s.pci);
    await s.enableIopf(s.pci);
    s.k.faults.registerDeviceFaultHandler(s.pci, () => 0, null);
    const ep = s.board.pcieTestdev;
    const a = dma(ep, { ssid: -1, iova: 0x10000, len: 4096, write: true });
    const b = dma(ep, { ssid: -1, iova: 0x20000, len: 4096 });
    const c = dma(ep, { ssid: -1, iova: 0x30000, len: 4096 });
    await s.m.sched.runFor(50_000);
    const pending = s.k.faults.pendingGroups(s.pci);
    expect(pending.map((g) => g.last.addr)).toEqual([0x10000, 0x20000, 0x30000]);
    expect(iommuMap(dom, 0x10000, s.m.pages.alloc(0, 'page'), 4096, 3)).toBe(0);
    const p0 = s.priResps();
    await task(s.m, async () => {
      expect(
        await s.k.faults.pageResponse(s.pci, { grpid: pending[0]!.grpid, code: IOMMU_PAGE_RESP_SUCCESS }),
      ).toBe(0);
      expect(
        await s.k.faults.pageResponse(s.pci, { grpid: pending[1]!.grpid, code: IOMMU_PAGE_RESP_INVALID }),
      ).toBe(0);
      expect(
        await s.k.faults.pageResponse(s.pci, { grpid: pending[2]!.grpid, code: IOMMU_PAGE_RESP_FAILURE }),
      ).toBe(0);
    });
    await s.m.sched.runFor(50_000);
    expect(s.priResps() - p0).toBe(3);
    expect(a).toEqual({ done: true, ok: true, why: '' });
    expect(b).toEqual({ done: true, ok: false, why: 'page request: Invalid Request' });
    expect(c).toEqual({ done: true, ok: false, why: 'page request: Response Failure' });
    expect(ep.priStatus & 1).toBe(1); // PRI Status.RF: the function stopped using PRI
  });

  it('a job that faults on every one of its pages completes: the retry budget is per page', async () => {
    const s = await bootFaults();
    const dom = await s.attachNew(s.pci);
    await s.enableIopf(s.pci);
    // the domain's I/O page fault handler maps each requested page on demand: SUCCESS
    s.k.faults.setDomainIopfHandler(dom, (g) => {
      const addr = g.last.addr;
      return iommuMap(dom, addr - (addr % 4096), s.m.pages.alloc(0, 'demand page'), 4096, 3) === 0
        ? IOMMU_PAGE_RESP_SUCCESS
        : IOMMU_PAGE_RESP_FAILURE;
    });
    const ep = s.board.pcieTestdev;
    const pages = 12; // more pages than the per-page budget of page requests (4)
    const a = dma(ep, { ssid: -1, iova: 0x40000, len: pages * 4096, write: true });
    await s.m.sched.runFor(1_000_000);
    expect(a).toEqual({ done: true, ok: true, why: '' });
    expect(ep.stats.pageRequests).toBe(pages);
  });

  for (const required of [true, false]) {
    it(`PRG responses carry the PASID ${required ? 'when' : 'only when'} the PRI capability requires it (required: ${required})`, async () => {
      const s = await bootFaults({ board: { pcie: { prgResponsePasidRequired: required } } });
      await s.attachNew(s.pci);
      await s.enableIopf(s.pci);
      const dom = await s.attachNew(s.pci, 3);
      const flags: number[] = [];
      s.k.faults.registerDeviceFaultHandler(
        s.pci,
        (f, ctx) => {
          flags.push(f.type === IOMMU_FAULT_PAGE_REQ ? f.flags : -1);
          iommuMap(ctx.group!.domain ?? dom, f.addr, s.m.pages.alloc(0, 'p'), 4096, 3);
          return s.k.faults.groupResponse(ctx.group!, IOMMU_PAGE_RESP_SUCCESS);
        },
        null,
      );
      const ep = s.board.pcieTestdev;
      const seen = tapResponses(ep);
      const x = dma(ep, { ssid: 3, iova: 0x40000, len: 64 });
      await s.m.sched.runFor(50_000);
      expect(x.ok).toBe(true);
      expect(seen).toEqual([{ ssid: required ? 3 : -1, prgi: 0, code: PRI_RESP_SUCCESS }]);
      expect((flags[0]! & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID) !== 0).toBe(required);
    });
  }

  it('no handler: INVALID at once, even for a non-last request', async () => {
    const s = await bootFaults();
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(SID, rec);
    s.board.smmu.upstream.priRequest(SID, -1, 0x9000, 17, false, true, false, false, false);
    await s.m.sched.runUntilIdle();
    expect(rec.pri).toEqual([{ ssid: -1, prgi: 17, code: PRI_RESP_INVALID, t: expect.any(Number) }]);
    expect(s.k.faults.stats.noHandler).toBe(1);
  });

  it('stop markers are dropped by the driver: never reported, never answered', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.pci);
    await s.attachNew(s.pci, 1);
    let calls = 0;
    s.k.faults.registerDeviceFaultHandler(
      s.pci,
      () => {
        calls++;
        return 0;
      },
      null,
    );
    const ep = s.board.pcieTestdev;
    const p0 = s.priResps();
    ep.stopMarker(1);
    await s.m.sched.runUntilIdle();
    expect(ep.stats.stopMarkers).toBe(1);
    expect(s.glue.stats.stopMarkersDropped).toBe(1);
    expect(calls).toBe(0);
    expect(s.k.faults.stats.reported).toBe(0);
    expect(s.priResps()).toBe(p0);
    expect(ep.stats.prgResponses).toBe(0);
  });

  it('after a PRI queue overflow the partial groups are discarded, unanswered by the kernel', async () => {
    const s = await bootFaults({ board: { smmu: { priqMaxLog2: 2 } } });
    await s.enableIopf(s.pci);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(SID, rec);
    let calls = 0;
    s.k.faults.registerDeviceFaultHandler(
      s.pci,
      () => {
        calls++;
        return 0;
      },
      null,
    );
    const up = s.board.smmu.upstream;
    // four partial requests fill the 4-entry queue; the two last requests are lost to overflow
    for (const [addr, prgi] of [
      [0x1000, 1],
      [0x2000, 1],
      [0x3000, 2],
      [0x4000, 1],
    ] as const)
      up.priRequest(SID, -1, addr, prgi, false, true, false, false, false);
    up.priRequest(SID, -1, 0x5000, 1, true, true, false, false, false);
    up.priRequest(SID, -1, 0x6000, 2, true, true, false, false, false);
    const p0 = s.priResps();
    await s.m.sched.runFor(100_000);
    expect(s.glue.stats.priOverflows).toBe(1);
    expect(s.k.faults.partialCount(s.pci)).toBe(0);
    expect(s.records.filter((r) => r.kind === 'discard')).toMatchObject([
      { count: 4, why: 'queue overflow' },
    ]);
    expect(calls).toBe(0);
    expect(s.priResps()).toBe(p0); // the SMMU answered the lost last requests itself
    expect(rec.pri.map((r) => r.prgi).sort()).toEqual([1, 2]);
    // the queue works again afterwards
    up.priRequest(SID, -1, 0x7000, 3, true, true, false, false, false);
    await s.m.sched.runFor(100_000);
    expect(calls).toBe(1);
  });
});
