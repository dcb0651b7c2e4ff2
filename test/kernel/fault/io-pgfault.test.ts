/**
 * The core rules of the fault API (io-pgfault) against a stand-in driver that records every
 * response: group assembly, the handler styles and their contexts, exactly one response per
 * group, PASID in responses, timeouts, flushes, bounds, burst suppression.
 */
import { describe, expect, it } from 'vitest';
import {
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_SUCCESS,
} from '../../../src/kernel/iommu/fault/fault.ts';
import {
  type FaultRecord,
  IOMMU_FAULT_RESUME_LATER,
  type IopfGroup,
} from '../../../src/kernel/iommu/fault/io-pgfault.ts';
import { fakeDev, pageReq, setupFaults, unrecov } from './helpers.ts';

describe('page request groups', () => {
  it('collects partial requests until the last of their group; only the group is answered', () => {
    const { faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    const got: IopfGroup[] = [];
    faults.registerDeviceFaultHandler(
      dev,
      (_f, ctx) => {
        got.push(ctx.group!);
        return 0;
      },
      null,
    );
    expect(faults.reportDeviceFault(dev, pageReq(dev, 5, { last: false, addr: 0x1000 }))).toBe(0);
    expect(faults.reportDeviceFault(dev, pageReq(dev, 6, { last: false, addr: 0x9000 }))).toBe(0);
    expect(faults.reportDeviceFault(dev, pageReq(dev, 5, { last: false, addr: 0x2000 }))).toBe(0);
    expect(got).toHaveLength(0);
    expect(sent).toHaveLength(0); // non-last requests are never answered one by one
    expect(faults.partialCount(dev)).toBe(3);
    faults.reportDeviceFault(dev, pageReq(dev, 5, { addr: 0x3000 }));
    expect(got).toHaveLength(1);
    expect(got[0]!.faults.map((f) => f.addr)).toEqual([0x1000, 0x2000, 0x3000]);
    expect(got[0]!.grpid).toBe(5);
    expect(faults.partialCount(dev)).toBe(1); // grpid 6 still waits
    expect(faults.groupResponse(got[0]!, IOMMU_PAGE_RESP_SUCCESS)).toBe(0);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.msg).toEqual({ flags: 0, pasid: 0, grpid: 5, code: IOMMU_PAGE_RESP_SUCCESS });
    // the driver gets the last fault back, private data untouched
    expect(sent[0]!.last.privateData).toEqual([7, 5]);
    expect(sent[0]!.last.addr).toBe(0x3000);
  });

  it('answers a fault with no handler INVALID at once, even a non-last request', () => {
    const { faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    expect(faults.reportDeviceFault(dev, pageReq(dev, 3, { last: false }))).toBe(-22);
    expect(sent.map((s) => [s.msg.grpid, s.msg.code])).toEqual([[3, IOMMU_PAGE_RESP_INVALID]]);
    expect(faults.reportDeviceFault(dev, pageReq(dev, 4))).toBe(-22);
    expect(sent).toHaveLength(2);
    expect(faults.stats.noHandler).toBe(2);
  });

  it('one handler serves many devices, with private data per device', () => {
    const { faults, sent } = setupFaults();
    const a = fakeDev('a');
    const b = fakeDev('b');
    const seen: string[] = [];
    const handler = (_f: unknown, ctx: { dev: { name: string }; data: unknown; group: IopfGroup | null }) => {
      seen.push(`${ctx.dev.name}:${ctx.data}`);
      return faults.groupResponse(ctx.group!, IOMMU_PAGE_RESP_SUCCESS);
    };
    expect(faults.registerDeviceFaultHandler(a, handler, 'data-a')).toBe(0);
    expect(faults.registerDeviceFaultHandler(b, handler, 'data-b')).toBe(0);
    expect(faults.registerDeviceFaultHandler(b, handler, 'again')).toBe(-16); // -EBUSY
    faults.reportDeviceFault(a, pageReq(a, 1));
    faults.reportDeviceFault(b, pageReq(b, 1));
    expect(seen).toEqual(['a:data-a', 'b:data-b']);
    expect(sent.map((s) => s.dev)).toEqual(['a', 'b']);
  });

  it('unrecoverable faults reach the device handler; without one the driver logs them', () => {
    const { faults } = setupFaults();
    const dev = fakeDev('d0');
    expect(faults.reportDeviceFault(dev, unrecov(dev))).toBe(-19); // -ENODEV: nobody cared
    const seen: number[] = [];
    faults.registerDeviceFaultHandler(
      dev,
      (f, ctx) => {
        expect(ctx.group).toBeNull();
        seen.push(f.addr);
        return 0;
      },
      null,
    );
    expect(faults.reportDeviceFault(dev, unrecov(dev, 0xabc000))).toBe(0);
    expect(seen).toEqual([0xabc000]);
  });
});

describe('responses', () => {
  it('refuses a second response for a group (by group and by id)', async () => {
    const { m, faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    let g: IopfGroup | null = null;
    faults.registerDeviceFaultHandler(
      dev,
      (_f, ctx) => {
        g = ctx.group;
        return 0;
      },
      null,
    );
    faults.reportDeviceFault(dev, pageReq(dev, 9));
    const refused: FaultRecord[] = [];
    faults.observe((r) => r.kind === 'refused' && refused.push(r));
    expect(await faults.pageResponse(dev, { grpid: 9, code: IOMMU_PAGE_RESP_SUCCESS })).toBe(0);
    expect(await faults.pageResponse(dev, { grpid: 9, code: IOMMU_PAGE_RESP_INVALID })).toBe(-22);
    expect(faults.groupResponse(g!, IOMMU_PAGE_RESP_FAILURE)).toBe(-22);
    expect(sent.map((s) => s.msg.code)).toEqual([IOMMU_PAGE_RESP_SUCCESS]);
    expect(faults.deviceStats(dev)!.duplicatesRefused).toBe(2);
    expect(refused).toHaveLength(2);
    expect(m.bugs).toEqual([]);
  });

  it('carries the PASID in the response exactly when the fault needs it; the PASID must match', async () => {
    const { faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    faults.registerDeviceFaultHandler(dev, () => 0, null);
    faults.reportDeviceFault(dev, pageReq(dev, 1, { pasid: 5, needsPasid: true }));
    faults.reportDeviceFault(dev, pageReq(dev, 2, { pasid: 6, needsPasid: false }));
    faults.reportDeviceFault(dev, pageReq(dev, 3));
    expect(await faults.pageResponse(dev, { pasid: 4, grpid: 1, code: 0 })).toBe(-22); // wrong PASID
    expect(await faults.pageResponse(dev, { pasid: 5, grpid: 1, code: 0 })).toBe(0);
    expect(await faults.pageResponse(dev, { pasid: 6, grpid: 2, code: 0 })).toBe(0);
    expect(await faults.pageResponse(dev, { pasid: 1, grpid: 3, code: 0 })).toBe(-22); // has none
    expect(await faults.pageResponse(dev, { grpid: 3, code: 0 })).toBe(0);
    expect(sent.map((s) => s.msg)).toEqual([
      { flags: IOMMU_PAGE_RESP_PASID_VALID, pasid: 5, grpid: 1, code: 0 },
      { flags: 0, pasid: 0, grpid: 2, code: 0 },
      { flags: 0, pasid: 0, grpid: 3, code: 0 },
    ]);
    expect(sent[0]!.last.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID).not.toBe(0);
  });

  it('a failing or throwing handler gets FAILURE sent', () => {
    const { m, faults, sent } = setupFaults();
    const a = fakeDev('a');
    const b = fakeDev('b');
    faults.registerDeviceFaultHandler(a, () => -12, null);
    faults.registerDeviceFaultHandler(
      b,
      () => {
        throw new Error('oops');
      },
      null,
    );
    faults.reportDeviceFault(a, pageReq(a, 1));
    faults.reportDeviceFault(b, pageReq(b, 1));
    expect(sent.map((s) => [s.dev, s.msg.code])).toEqual([
      ['a', IOMMU_PAGE_RESP_FAILURE],
      ['b', IOMMU_PAGE_RESP_FAILURE],
    ]);
    expect(m.bugs.map((x) => x.kind)).toEqual(['task-crash']);
  });

  it('groups beyond the per-device bound are answered FAILURE (allocation failure)', () => {
    const { faults, sent } = setupFaults({ maxPendingPerDevice: 2, maxPartialPerDevice: 3 });
    const dev = fakeDev('d0');
    faults.registerDeviceFaultHandler(dev, () => 0, null);
    for (let i = 0; i < 4; i++) faults.reportDeviceFault(dev, pageReq(dev, i));
    expect(faults.pendingGroups(dev)).toHaveLength(2);
    expect(sent.map((s) => [s.msg.grpid, s.msg.code])).toEqual([
      [2, IOMMU_PAGE_RESP_FAILURE],
      [3, IOMMU_PAGE_RESP_FAILURE],
    ]);
    for (let i = 0; i < 10; i++) faults.reportDeviceFault(dev, pageReq(dev, 100 + i, { last: false }));
    expect(faults.partialCount(dev)).toBe(3);
    expect(faults.maxLive).toBe(5);
    expect(faults.deviceStats(dev)!.allocFailures).toBe(2);
  });
});

describe('handler contexts', () => {
  it('a device handler runs atomic: sleeping in it is reported and the fault fails', async () => {
    const { m, faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    faults.registerDeviceFaultHandler(
      dev,
      (_f, ctx) => {
        // iommu_page_response takes the fault lock (sleeps): not from the IRQ thread
        void faults.pageResponse(ctx.dev, { grpid: 1, code: 0 });
        return 0;
      },
      null,
    );
    faults.reportDeviceFault(dev, pageReq(dev, 1));
    expect(m.bugs.map((b) => b.kind)).toEqual(['might-sleep']);
    expect(m.bugs[0]!.message).toMatch(/iommu_page_response in atomic context "iopf handler \(d0\)"/);
    const b = fakeDev('b');
    faults.registerDeviceFaultHandler(b, (async () => 0) as unknown as () => number, null);
    faults.reportDeviceFault(b, pageReq(b, 1));
    expect(m.bugs.map((x) => x.kind)).toEqual(['might-sleep', 'might-sleep']);
    await m.sched.runUntilIdle();
    expect(sent.filter((s) => s.dev === 'b').map((s) => s.msg.code)).toEqual([IOMMU_PAGE_RESP_FAILURE]);
  });

  it('per-domain handler, IRQ thread: 0 resolves (SUCCESS), "resume later" waits for an explicit resume', () => {
    const { m, faults, sent, newDomain, attach } = setupFaults();
    const dev = fakeDev('d0');
    const d = newDomain();
    const other = newDomain();
    attach(dev, d);
    const later: IopfGroup[] = [];
    const kinds: string[] = [];
    faults.setDomainFaultHandler(
      d,
      (dom, dv, f, token) => {
        kinds.push(m.exec.current().kind);
        expect(dom).toBe(d);
        expect(dv).toBe(dev);
        expect(token).toBe('tok');
        if (f.addr === 0x5000) {
          later.push(faults.pendingGroups(dev).at(-1)!);
          return IOMMU_FAULT_RESUME_LATER;
        }
        return 0;
      },
      'tok',
    );
    faults.reportDeviceFault(dev, pageReq(dev, 1, { addr: 0x1000 }));
    faults.reportDeviceFault(dev, pageReq(dev, 2, { addr: 0x5000 }));
    expect(kinds).toEqual(['atomic', 'atomic']);
    expect(sent.map((s) => [s.msg.grpid, s.msg.code])).toEqual([[1, IOMMU_PAGE_RESP_SUCCESS]]);
    expect(faults.domainResume(other, later[0]!, IOMMU_PAGE_RESP_SUCCESS)).toBe(-22);
    expect(faults.domainResume(d, later[0]!, IOMMU_PAGE_RESP_INVALID)).toBe(0);
    expect(faults.domainResume(d, later[0]!, IOMMU_PAGE_RESP_SUCCESS)).toBe(-22);
    expect(sent.map((s) => [s.msg.grpid, s.msg.code])).toEqual([
      [1, IOMMU_PAGE_RESP_SUCCESS],
      [2, IOMMU_PAGE_RESP_INVALID],
    ]);
  });

  it('per-domain handler, workqueue: it may sleep, the core responds when it returns', async () => {
    const { m, faults, sent, newDomain, attach } = setupFaults();
    const dev = fakeDev('d0');
    const d = newDomain();
    attach(dev, d, 3);
    let ctx = '';
    faults.setDomainFaultHandler(
      d,
      async (_d, _dev, f) => {
        ctx = m.exec.current().kind;
        await m.exec.sleep(5000, 'resolve fault');
        return f.addr === 0x1000 ? 0 : -5;
      },
      null,
      { context: 'workqueue' },
    );
    faults.reportDeviceFault(dev, pageReq(dev, 1, { pasid: 3, addr: 0x1000 }));
    faults.reportDeviceFault(dev, pageReq(dev, 2, { pasid: 3, addr: 0x2000 }));
    expect(sent).toHaveLength(0);
    await m.sched.runUntilIdle();
    expect(ctx).toBe('workqueue');
    expect(sent.map((s) => [s.msg.grpid, s.msg.code, s.t])).toEqual([
      [1, IOMMU_PAGE_RESP_SUCCESS, 5000],
      [2, IOMMU_PAGE_RESP_FAILURE, 5000],
    ]);
    expect(m.bugs).toEqual([]);
  });

  it('domain iopf handlers run from the iopf queue; without iopf setup the fault is INVALID', async () => {
    const { m, faults, sent, newDomain, attach } = setupFaults();
    const dev = fakeDev('d0');
    const d = newDomain();
    attach(dev, d);
    faults.setDomainIopfHandler(d, async (g) => {
      await m.exec.sleep(100);
      return g.grpid === 1 ? IOMMU_PAGE_RESP_SUCCESS : IOMMU_PAGE_RESP_INVALID;
    });
    faults.reportDeviceFault(dev, pageReq(dev, 0));
    expect(sent.map((s) => s.msg.code)).toEqual([IOMMU_PAGE_RESP_INVALID]); // not on a queue
    const q = faults.iopfQueueAlloc('test');
    expect(faults.iopfQueueAddDevice(q, dev)).toBe(0);
    expect(faults.iopfQueueAddDevice(q, dev)).toBe(-16);
    faults.reportDeviceFault(dev, pageReq(dev, 1));
    faults.reportDeviceFault(dev, pageReq(dev, 2));
    await m.sched.runUntilIdle();
    expect(sent.map((s) => [s.msg.grpid, s.msg.code, s.t])).toEqual([
      [0, IOMMU_PAGE_RESP_INVALID, 0],
      [1, IOMMU_PAGE_RESP_SUCCESS, 100],
      [2, IOMMU_PAGE_RESP_INVALID, 100],
    ]);
  });
});

describe('lifetime', () => {
  it('unanswered groups time out in virtual time (configurable deadline)', async () => {
    const { m, faults, sent } = setupFaults({ defaultTimeoutNs: 1_000_000 });
    const a = fakeDev('a');
    const b = fakeDev('b');
    faults.registerDeviceFaultHandler(a, () => 0, null);
    faults.registerDeviceFaultHandler(b, () => 0, null, { timeoutNs: 50_000 });
    faults.reportDeviceFault(a, pageReq(a, 1));
    faults.reportDeviceFault(b, pageReq(b, 1));
    await m.sched.runFor(10_000);
    faults.reportDeviceFault(b, pageReq(b, 2));
    await m.sched.runUntilIdle();
    expect(sent.map((s) => [s.dev, s.msg.grpid, s.msg.code, s.t])).toEqual([
      ['b', 1, IOMMU_PAGE_RESP_INVALID, 50_000],
      ['b', 2, IOMMU_PAGE_RESP_INVALID, 60_000],
      ['a', 1, IOMMU_PAGE_RESP_INVALID, 1_000_000],
    ]);
    expect(faults.stats.timeouts).toBe(3);
    // answered in time: no timeout; a late answer after one is refused
    faults.reportDeviceFault(b, pageReq(b, 3));
    expect(await faults.pageResponse(b, { grpid: 3, code: 0 })).toBe(0);
    await m.sched.runUntilIdle();
    expect(faults.stats.timeouts).toBe(3);
    expect(await faults.pageResponse(a, { grpid: 1, code: 0 })).toBe(-22);
  });

  it("flush answers the PASID's groups INVALID, drops its partials, and waits for running handler work", async () => {
    const { m, faults, sent, newDomain, attach } = setupFaults();
    const dev = fakeDev('d0');
    const d = newDomain();
    attach(dev, d, 1);
    attach(dev, d, 2);
    const q = faults.iopfQueueAlloc('q');
    faults.iopfQueueAddDevice(q, dev);
    let handlerDone = -1;
    faults.setDomainIopfHandler(d, async () => {
      await m.exec.sleep(30_000);
      handlerDone = m.sched.now;
      return IOMMU_PAGE_RESP_SUCCESS;
    });
    faults.reportDeviceFault(dev, pageReq(dev, 1, { pasid: 1 }));
    faults.reportDeviceFault(dev, pageReq(dev, 2, { pasid: 2 }));
    faults.reportDeviceFault(dev, pageReq(dev, 3, { pasid: 1, last: false }));
    faults.reportDeviceFault(dev, pageReq(dev, 4, { pasid: 2, last: false }));
    let flushedAt = -1;
    m.exec.spawn('detach', async () => {
      await faults.flush(dev, 1);
      flushedAt = m.sched.now;
    });
    await m.sched.runUntilIdle();
    expect(flushedAt).toBe(30_000); // waited for the handler work
    expect(handlerDone).toBe(30_000);
    expect(sent.map((s) => [s.msg.grpid, s.msg.code, s.t])).toEqual([
      [1, IOMMU_PAGE_RESP_INVALID, 0], // flushed
      [2, IOMMU_PAGE_RESP_SUCCESS, 30_000], // PASID 2 untouched; PASID 1's late SUCCESS refused
    ]);
    expect(faults.partialCount(dev)).toBe(1);
    expect(faults.deviceStats(dev)!.duplicatesRefused).toBe(1);
    // device removal: everything answered, state dropped
    faults.reportDeviceFault(dev, pageReq(dev, 4, { pasid: 2 }));
    m.exec.spawn('remove', () => faults.removeDevice(dev));
    await m.sched.runUntilIdle();
    expect(sent.at(-1)!.msg).toMatchObject({ grpid: 4, code: IOMMU_PAGE_RESP_INVALID });
    expect(faults.deviceStats(dev)).toBeNull();
    expect(faults.liveObjects).toBe(0);
  });

  it('after a queue overflow the partial requests are discarded unanswered', () => {
    const { faults, sent } = setupFaults();
    const dev = fakeDev('d0');
    const q = faults.iopfQueueAlloc('q');
    faults.iopfQueueAddDevice(q, dev);
    const groups: IopfGroup[] = [];
    faults.registerDeviceFaultHandler(
      dev,
      (_f, ctx) => {
        groups.push(ctx.group!);
        return 0;
      },
      null,
    );
    faults.reportDeviceFault(dev, pageReq(dev, 1, { last: false, addr: 0x1000 }));
    faults.reportDeviceFault(dev, pageReq(dev, 1, { last: false, addr: 0x2000 }));
    expect(faults.iopfQueueDiscardPartial(null)).toBe(-22);
    expect(faults.iopfQueueDiscardPartial(q)).toBe(0);
    expect(faults.partialCount(dev)).toBe(0);
    expect(sent).toHaveLength(0);
    faults.reportDeviceFault(dev, pageReq(dev, 1, { addr: 0x3000 }));
    expect(groups[0]!.faults.map((f) => f.addr)).toEqual([0x3000]);
    expect(faults.deviceStats(dev)!.partialDiscarded).toBe(2);
  });

  it('unregistering a handler with groups pending is refused', () => {
    const { faults } = setupFaults();
    const dev = fakeDev('d0');
    faults.registerDeviceFaultHandler(dev, () => 0, null);
    faults.reportDeviceFault(dev, pageReq(dev, 1));
    expect(faults.unregisterDeviceFaultHandler(dev)).toBe(-16);
    faults.groupResponse(faults.pendingGroups(dev)[0]!, 0);
    expect(faults.unregisterDeviceFaultHandler(dev)).toBe(0);
    expect(faults.unregisterDeviceFaultHandler(dev)).toBe(-22);
  });
});

describe('storms', () => {
  it('first fault of a burst only: the rest are answered at once; a quiet gap starts a new burst', async () => {
    const { m, faults, sent } = setupFaults();
    const dev = fakeDev('gpu');
    const seen: number[] = [];
    faults.registerDeviceFaultHandler(
      dev,
      (f) => {
        seen.push(f.addr);
        return 0;
      },
      null,
      { firstOfBurst: { quietNs: 1000, code: IOMMU_PAGE_RESP_FAILURE } },
    );
    for (let i = 0; i < 100; i++) {
      faults.reportDeviceFault(dev, pageReq(dev, i, { addr: 0x1000 * i }));
      faults.reportDeviceFault(dev, unrecov(dev, 0x800000 + i));
      await m.sched.runFor(10);
    }
    expect(seen).toEqual([0]);
    expect(sent).toHaveLength(99);
    expect(new Set(sent.map((s) => s.msg.code))).toEqual(new Set([IOMMU_PAGE_RESP_FAILURE]));
    await m.sched.runFor(5000);
    faults.reportDeviceFault(dev, pageReq(dev, 500, { addr: 0x500000 }));
    expect(seen).toEqual([0, 0x500000]);
    faults.endBurst(dev);
    faults.reportDeviceFault(dev, pageReq(dev, 501, { addr: 0x501000 }));
    expect(seen).toEqual([0, 0x500000, 0x501000]);
    expect(faults.deviceStats(dev)!.suppressed).toBe(99 + 100);
  });
});
