/**
 * Lifetime of outstanding faults on the whole stack: a domain change, a PASID detach and
 * device removal answer them INVALID before returning (so a PASID is never reused with stale
 * faults behind it), and unanswered ones time out in virtual time.
 */
import { describe, expect, it } from 'vitest';
import { PORT_FAULT, PORT_STALLED } from '../../src/hw/smmuv3/port.ts';
import { PRI_RESP_INVALID } from '../../src/hw/smmuv3/upstream.ts';
import { IOMMU_PAGE_RESP_INVALID } from '../../src/kernel/iommu/fault/fault.ts';
import { bootFaults, Recorder, task, translateOnce } from '../kernel/fault/stack.ts';

const GPU_SID = 0x100;
const PCI_SID = 8;

describe('flush', () => {
  it("a domain replace and a detach answer the RID's outstanding stalls INVALID (CMD_RESUME abort) before returning", async () => {
    const s = await bootFaults();
    await s.enableIopf(s.gpu);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(GPU_SID, rec);
    s.k.faults.registerDeviceFaultHandler(s.gpu, () => 0, null); // takes faults, never answers
    const t1 = translateOnce(s.board, GPU_SID, 0x40_0000_0000, 0);
    expect(t1.status).toBe(PORT_STALLED);
    await s.m.sched.runFor(50_000);
    expect(s.k.faults.pendingGroups(s.gpu)).toHaveLength(1);
    const dom = await task(s.m, async () => {
      const d = (await s.k.iommu.domainAllocPaging(
        s.gpu,
      )) as import('../../src/kernel/iommu/domain.ts').IommuDomain;
      expect(await s.k.iommu.attachDevice(d, s.gpu)).toBe(0);
      // answered by the time attach returns
      expect(s.k.faults.pendingGroups(s.gpu)).toHaveLength(0);
      return d;
    });
    await s.m.sched.runFor(50_000);
    expect(rec.stalls).toMatchObject([{ stag: t1.stag, status: PORT_FAULT }]);
    const t2 = translateOnce(s.board, GPU_SID, 0x40_0000_1000, 0);
    await s.m.sched.runFor(50_000);
    expect(s.k.faults.pendingGroups(s.gpu)).toHaveLength(1);
    await task(s.m, async () => {
      await s.k.iommu.detachDevice(dom, s.gpu);
      expect(s.k.faults.pendingGroups(s.gpu)).toHaveLength(0);
    });
    await s.m.sched.runFor(50_000);
    expect(rec.stalls.map((x) => [x.stag, x.status])).toEqual([
      [t1.stag, PORT_FAULT],
      [t2.stag, PORT_FAULT],
    ]);
    const rs = s.records.filter((r) => r.kind === 'response');
    expect(rs.map((r) => r.kind === 'response' && [r.code, r.by])).toEqual([
      [IOMMU_PAGE_RESP_INVALID, 'flush'],
      [IOMMU_PAGE_RESP_INVALID, 'flush'],
    ]);
    expect(s.board.smmu.upstream.stalledCount(GPU_SID)).toBe(0);
  });

  it("PASID detach (before the PASID is freed) answers that PASID's groups and drops its partials; others stay", async () => {
    const s = await bootFaults();
    await s.enableIopf(s.pci);
    const d1 = await s.attachNew(s.pci, 1);
    await s.attachNew(s.pci, 2);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(PCI_SID, rec);
    s.k.faults.registerDeviceFaultHandler(s.pci, () => 0, null);
    const up = s.board.smmu.upstream;
    up.priRequest(PCI_SID, 1, 0x1000, 10, true, true, false, false, false);
    up.priRequest(PCI_SID, 2, 0x2000, 11, true, true, false, false, false);
    up.priRequest(PCI_SID, 1, 0x3000, 12, false, true, false, false, false);
    await s.m.sched.runFor(50_000);
    expect(s.k.faults.pendingGroups(s.pci).map((g) => g.grpid)).toEqual([10, 11]);
    expect(s.k.faults.partialCount(s.pci)).toBe(1);
    await task(s.m, async () => {
      await s.k.iommu.detachDevicePasid(d1, s.pci, 1);
      expect(s.k.faults.pendingGroups(s.pci).map((g) => g.pasid)).toEqual([2]);
      expect(s.k.faults.partialCount(s.pci)).toBe(0);
    });
    await s.m.sched.runFor(50_000);
    expect(rec.pri).toMatchObject([{ ssid: 1, prgi: 10, code: PRI_RESP_INVALID }]);
    // the PASID is reused: nothing stale reaches the new owner
    await s.attachNew(s.pci, 1);
    expect(s.k.faults.pendingGroups(s.pci).filter((g) => g.pasid === 1)).toEqual([]);
  });

  it('device removal answers every outstanding group; later requests of the stream are denied by the driver', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.pci);
    await s.enableIopf(s.gpu);
    await s.attachNew(s.pci, 1);
    const rec = new Recorder(() => s.m.sched.now);
    const grec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(PCI_SID, rec);
    s.board.smmu.upstream.attach(GPU_SID, grec);
    let calls = 0;
    for (const d of [s.pci, s.gpu])
      s.k.faults.registerDeviceFaultHandler(
        d,
        () => {
          calls++;
          return 0;
        },
        null,
      );
    const up = s.board.smmu.upstream;
    up.priRequest(PCI_SID, 1, 0x1000, 20, true, true, false, false, false);
    up.priRequest(PCI_SID, -1, 0x2000, 21, true, true, true, false, false);
    const st = translateOnce(s.board, GPU_SID, 0x40_0000_0000, 0);
    await s.m.sched.runFor(50_000);
    expect(calls).toBe(3);
    await task(s.m, async () => {
      await s.k.iommu.releaseDevice(s.pci);
      await s.k.iommu.releaseDevice(s.gpu);
    });
    await s.m.sched.runFor(50_000);
    expect(rec.pri.map((r) => [r.ssid, r.prgi, r.code])).toEqual([
      [1, 20, PRI_RESP_INVALID],
      [-1, 21, PRI_RESP_INVALID],
    ]);
    expect(grec.stalls).toMatchObject([{ stag: st.stag, status: PORT_FAULT }]);
    expect(s.k.faults.deviceStats(s.pci)).toBeNull();
    expect(s.k.faults.liveObjects).toBe(0);
    up.priRequest(PCI_SID, -1, 0x3000, 22, true, true, false, false, false);
    await s.m.sched.runUntilIdle();
    expect(calls).toBe(3);
    expect(rec.pri.at(-1)).toMatchObject({ prgi: 22, code: PRI_RESP_INVALID });
  });
});

describe('timeouts', () => {
  it('an unanswered stall is aborted when its deadline passes (virtual time)', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.gpu);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(GPU_SID, rec);
    s.k.faults.registerDeviceFaultHandler(s.gpu, () => 0, null, { timeoutNs: 200_000 });
    const t = translateOnce(s.board, GPU_SID, 0x40_0000_0000, 0);
    await s.m.sched.runFor(10_000);
    const reportedAt = s.k.faults.pendingGroups(s.gpu)[0]!.last.time;
    await s.m.sched.runUntilIdle();
    const r = s.records.find((x) => x.kind === 'response');
    expect(r).toMatchObject({ by: 'timeout', code: IOMMU_PAGE_RESP_INVALID, time: reportedAt + 200_000 });
    expect(rec.stalls).toMatchObject([{ stag: t.stag, status: PORT_FAULT }]);
    expect(rec.stalls[0]!.t - reportedAt).toBeGreaterThanOrEqual(200_000);
    expect(s.k.faults.deviceStats(s.gpu)!.timeouts).toBe(1);
  });
});
