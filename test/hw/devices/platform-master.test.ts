import { describe, expect, it } from 'vitest';
import { CR0, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { PlatformDmaMaster } from '../../../src/hw/devices/platform-master.ts';
import { PORT_FAULT, PORT_OK } from '../../../src/hw/smmuv3/port.ts';
import { pattern, TestSystem } from './gpu-driver.ts';

const SID = 5;
const SRC = 0x4000_0000;
const DST = 0x4010_0000;

function setup(stall: boolean, opts: { canStall?: boolean } = {}) {
  const sys = new TestSystem();
  const s = sys.stream(SID, { stall });
  const master = new PlatformDmaMaster(sys.smmu, SID, { canStall: opts.canStall ?? true });
  return { sys, s, master };
}

describe('platform DMA master', () => {
  it('copies through the SMMU translation, page by page', () => {
    const { sys, s, master } = setup(false);
    const src = s.map(SRC, 3 * 4096);
    const dst = s.map(DST, 3 * 4096);
    const data = pattern(3 * 4096 - 100, 7);
    s.write(src, 50, data);
    const op = master.copy(SRC + 50, DST + 50, data.length);
    sys.run();
    expect(op.state).toBe('done');
    expect(op.bytesDone).toBe(data.length);
    expect(s.read(dst, 50, data.length)).toEqual(data);
    // untouched bytes around the copy stay zero
    expect(s.read(dst, 0, 50)).toEqual(new Uint8Array(50));
    expect(master.sm.stats.faults).toBe(0);
    expect(sys.d.events()).toEqual([]);
  });

  it('reads and writes: data lands in the pages the IOVAs map to', () => {
    const { sys, s, master } = setup(false);
    const pas = s.map(SRC, 2 * 4096);
    const w = pattern(6000, 3);
    const wop = master.write(SRC + 1000, w);
    sys.run();
    expect(wop.state).toBe('done');
    expect(s.read(pas, 1000, 6000)).toEqual(w);
    const rop = master.read(SRC + 1000, 6000);
    sys.run();
    expect(rop.state).toBe('done');
    expect(rop.data).toEqual(w);
  });

  it('terminate: a copy to an unmapped page fails there, with an F_TRANSLATION event', () => {
    const { sys, s, master } = setup(false);
    s.map(SRC, 2 * 4096);
    s.map(DST, 4096); // second destination page missing
    const op = master.copy(SRC, DST, 2 * 4096);
    sys.run();
    expect(op.state).toBe('failed');
    expect(op.status).toBe(PORT_FAULT);
    expect(op.errorAddr).toBe(DST + 4096);
    expect(op.bytesDone).toBe(4096);
    const ev = sys.d.events();
    expect(ev.map((e) => [e.name, e.stall, Number(e.inputAddress)])).toEqual([
      ['F_TRANSLATION', false, DST + 4096],
    ]);
  });

  it('stall: waits, and completes with the right data after RESUME-Retry once the page is mapped', () => {
    const { sys, s, master } = setup(true);
    const src = s.map(SRC, 2 * 4096);
    s.map(DST, 4096);
    const data = pattern(2 * 4096, 11);
    s.write(src, 0, data);
    const op = master.copy(SRC, DST, 2 * 4096);
    sys.run();
    // held, not failed
    expect(op.state).toBe('running');
    expect(op.stalled).toBe(true);
    expect(master.stalledCount).toBe(1);
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(1);
    const [e] = sys.d.events();
    expect(e).toMatchObject({ name: 'F_TRANSLATION', stall: true, read: false });
    expect(Number(e!.inputAddress)).toBe(DST + 4096);
    expect(e!.stag).toBe(master.sm.lastStag);
    // the fault handler maps the page, then resumes
    const newPa = sys.d.alloc(4096);
    s.mapPage(DST + 4096, newPa);
    sys.resume(SID, e!.stag!, true);
    sys.run();
    expect(op.state).toBe('done');
    expect(op.stalls).toBe(1);
    expect(master.stalledCount).toBe(0);
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(0);
    const got = new Uint8Array(4096);
    sys.m.mem.readBytes(newPa, got);
    expect(got).toEqual(data.subarray(4096));
    expect(master.sm.stats.retried).toBe(1);
  });

  it('stall: fails after RESUME-Abort', () => {
    const { sys, s, master } = setup(true);
    s.map(SRC, 4096);
    const op = master.read(SRC, 2 * 4096);
    sys.run();
    expect(op.state).toBe('running');
    const [e] = sys.d.events();
    sys.resume(SID, e!.stag!, false);
    sys.run();
    expect(op.state).toBe('failed');
    expect(op.status).toBe(PORT_FAULT);
    expect(op.errorAddr).toBe(SRC + 4096);
    expect(op.bytesDone).toBe(4096);
    expect(master.sm.stats.terminated).toBe(1);
    expect(master.stalledCount).toBe(0);
  });

  it('several transactions stalled at once, resumed in any order', () => {
    const { sys, s, master } = setup(true);
    const data = [pattern(4096, 1), pattern(4096, 2), pattern(4096, 3)];
    const ops = [0, 1, 2].map((i) => master.read(SRC + i * 0x10000, 4096));
    sys.run();
    expect(master.stalledCount).toBe(3);
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(3);
    expect(ops.every((o) => o.stalled)).toBe(true);
    const ev = sys.d.events();
    expect(ev).toHaveLength(3);
    // map the pages, resume in reverse order
    for (let i = 0; i < 3; i++) {
      const pa = sys.d.alloc(4096);
      sys.m.mem.writeBytes(pa, data[i]!);
      s.mapPage(SRC + i * 0x10000, pa);
    }
    for (const e of [...ev].reverse()) {
      sys.resume(SID, e.stag!, true);
      expect(master.stalledCount).toBe(sys.smmu.upstream.stalledCount(SID));
    }
    sys.run();
    for (let i = 0; i < 3; i++) {
      expect(ops[i]!.state).toBe('done');
      expect(ops[i]!.data).toEqual(data[i]);
    }
  });

  it('a retry that faults again stays stalled (same STAG, new event)', () => {
    const { sys, s, master } = setup(true);
    const op = master.read(SRC, 4096);
    sys.run();
    const [e1] = sys.d.events();
    sys.resume(SID, e1!.stag!, true); // still unmapped
    sys.run();
    expect(op.state).toBe('running');
    const [e2] = sys.d.events();
    expect(e2!.stag).toBe(e1!.stag);
    expect(master.sm.stats.stalls).toBe(1);
    const pa = sys.d.alloc(4096);
    sys.m.mem.write32(pa, 0xdeadbeef);
    s.mapPage(SRC, pa);
    sys.resume(SID, e2!.stag!, true);
    sys.run();
    expect(op.state).toBe('done');
    expect(new DataView(op.data.buffer).getUint32(0, true)).toBe(0xdeadbeef);
  });

  it('CMD_STALL_TERM terminates every stalled transaction of the StreamID', () => {
    const { sys, master } = setup(true);
    const ops = [0, 1, 2, 3].map((i) => master.write(SRC + i * 4096, pattern(4096, i)));
    sys.run();
    expect(master.stalledCount).toBe(4);
    sys.stallTerm(SID);
    sys.run();
    expect(ops.map((o) => o.state)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(master.stalledCount).toBe(0);
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(0);
  });

  it('disabling the SMMU terminates the held transactions; the master sees aborts', () => {
    const { sys, master } = setup(true);
    const ops = [master.read(SRC, 4096), master.write(DST, pattern(4096, 9))];
    sys.run();
    expect(master.stalledCount).toBe(2);
    expect(sys.d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN | CR0.EVTQEN)).toBe(true);
    sys.run();
    expect(ops.map((o) => [o.state, o.status])).toEqual([
      ['failed', PORT_FAULT],
      ['failed', PORT_FAULT],
    ]);
    expect(master.stalledCount).toBe(0);
    expect(master.sm.stats.terminated).toBe(2);
  });

  it('a master that cannot stall times out; the late completion is dropped', () => {
    const { sys, s, master } = setup(true, { canStall: false });
    const op = master.read(SRC, 4096);
    sys.run();
    expect(op.state).toBe('failed');
    expect(master.sm.stats.timeouts).toBe(1);
    // still held in the SMMU until software completes it
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(1);
    expect(master.stalledCount).toBe(1);
    const pa = sys.d.alloc(4096);
    sys.m.mem.write32(pa, 0x12345678);
    s.mapPage(SRC, pa);
    const [e] = sys.d.events();
    sys.resume(SID, e!.stag!, true);
    sys.run();
    expect(master.sm.stats.late).toBe(1);
    expect(op.data[0]).toBe(0); // the abandoned read's data never arrives
    expect(master.stalledCount).toBe(0);
  });

  it('is deterministic: same inputs, same results and timings', () => {
    const runOnce = () => {
      const { sys, s, master } = setup(true);
      s.map(SRC, 4 * 4096);
      s.map(DST, 2 * 4096);
      const ops = [master.copy(SRC, DST, 4 * 4096), master.read(SRC + 4096, 8192)];
      sys.run();
      const ev = [];
      for (let round = 0; round < 10 && master.stalledCount > 0; round++) {
        for (const e of sys.d.events()) {
          ev.push(e);
          s.mapPage(Number(e.inputAddress), sys.d.alloc(4096));
          sys.resume(SID, e.stag!, true);
        }
        sys.run();
      }
      return {
        ops: ops.map((o) => [o.state, o.bytesDone, o.finishedAt, o.stalls]),
        events: ev.map((e) => [e.name, e.stag, String(e.inputAddress)]),
        now: sys.m.sched.now,
        stats: { ...master.sm.stats },
      };
    };
    const a = runOnce();
    expect(a.ops.every((o) => o[0] === 'done')).toBe(true);
    expect(runOnce()).toEqual(a);
    expect(PORT_OK).toBe(0);
  });
});
