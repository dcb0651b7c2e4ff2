import { describe, expect, it } from 'vitest';
import {
  GPU_CMD_FLAG_IRQ,
  GPU_CTRL_ENABLE,
  GPU_CTRL_HALT_ON_FAULT,
  GPU_CTRL_IRQ_EN,
  GPU_CTRL_RESET,
  GPU_FAULT_MULTI,
  GPU_FAULT_STALL,
  GPU_FAULT_UNIT_FETCH,
  GPU_FAULT_UNIT_SHIFT,
  GPU_FAULT_VALID,
  GPU_FAULT_WRITE,
  GPU_ID_VALUE,
  GPU_INT_DONE,
  GPU_INT_FAULT,
  GPU_INT_HALT,
  GPU_INT_STALL,
  GPU_STATUS_BUSY,
  GPU_STATUS_HALTED,
  GPU_STATUS_STALLED,
  GpuOp,
  GpuReg,
} from '../../../src/arch/devices/gpu.ts';
import { GpuDriver, pattern, RING_IOVA, TestSystem } from './gpu-driver.ts';

const SID = 9;
const A = 0x2000_0000;
const B = 0x2100_0000;
const C = 0x2200_0000;
const FENCE_IOVA = 0x2300_0000;

function u32(bytes: Uint8Array, i: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(i * 4, true);
}

describe('GPU registers', () => {
  it('identifies itself and keeps its ring configuration', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 4 });
    expect(g.r32(GpuReg.ID)).toBe(GPU_ID_VALUE);
    expect(g.r32(GpuReg.FEATURES)).toBe(4 | (1 << 8));
    expect(g.r64(GpuReg.RING_BASE)).toBe(RING_IOVA);
    expect(g.r32(GpuReg.RING_LOG2)).toBe(6);
    // ring base is read-only while enabled
    g.w64(GpuReg.RING_BASE, 0x1234_0000);
    expect(g.r64(GpuReg.RING_BASE)).toBe(RING_IOVA);
    expect(g.r32(GpuReg.STATUS)).toBe(0);
    expect(g.r32(0xffc)).toBe(0);
  });
});

describe('GPU command ring', () => {
  it('executes FILL, COPY, SHADER and FENCE; DMAs land in the mapped pages; MSI on completion', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 4 });
    const s = g.stream;
    const pa = s.map(A, 5 * 4096);
    const pb = s.map(B, 5 * 4096);
    const pc = s.map(C, 5 * 4096);
    const pf = s.map(FENCE_IOVA, 4096);
    const len = 5 * 4096 - 256;
    const input = pattern(len, 42);
    s.write(pa, 0, input);
    g.submit([
      { op: GpuOp.COPY, a: A, b: B, len },
      { op: GpuOp.SHADER, a: B, b: C, len, k: 7 },
      { op: GpuOp.FILL, a: A + 4096, value: 0xa5a5a5a5, len: 4096 },
      { op: GpuOp.NOP },
      { op: GpuOp.FENCE, a: FENCE_IOVA + 16, value: 77, flags: GPU_CMD_FLAG_IRQ },
    ]);
    expect(g.r32(GpuReg.STATUS) & GPU_STATUS_BUSY).toBe(GPU_STATUS_BUSY);
    sys.run();
    expect(g.idle()).toBe(true);
    expect(g.r32(GpuReg.RING_HEAD)).toBe(5);
    expect(g.r32(GpuReg.CMD_DONE)).toBe(5);
    expect(s.read(pb, 0, len)).toEqual(input);
    const out = s.read(pc, 0, len);
    for (let i = 0; i < len / 4; i++) expect(u32(out, i)).toBe((u32(input, i) + 7) >>> 0);
    expect(s.read(pc, len, 256)).toEqual(new Uint8Array(256)); // nothing beyond len
    const filled = s.read(pa, 4096, 4096);
    expect(filled.every((b) => b === 0xa5)).toBe(true);
    expect(s.read(pa, 0, 4096)).toEqual(input.subarray(0, 4096)); // page 0 of A untouched by FILL
    expect(sys.m.mem.read32(pf[0]! + 16)).toBe(77);
    expect(g.r32(GpuReg.FENCE)).toBe(77);
    expect(g.r32(GpuReg.INT_STATUS)).toBe(GPU_INT_DONE);
    expect(g.irqs).toBe(1);
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(0);
    expect(sys.d.events()).toEqual([]);
    // the warps really shared the work, through the SMMU
    expect(g.gpu.warps.every((w) => w.transactions > 0)).toBe(true);
    expect(sys.smmu.port.stats.ok).toBeGreaterThan(15);
  });

  it('follows the ring around its end (head and tail wrap)', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { ringLog2: 2 });
    const pf = g.stream.map(FENCE_IOVA, 4096);
    for (let i = 1; i <= 10; i++) {
      g.submit([{ op: GpuOp.FENCE, a: FENCE_IOVA, value: i }]);
      sys.run();
      expect(sys.m.mem.read32(pf[0]!)).toBe(i);
    }
    expect(g.r32(GpuReg.RING_HEAD)).toBe(10 % 4);
    expect(g.r32(GpuReg.CMD_DONE)).toBe(10);
  });
});

describe('GPU faults (terminate)', () => {
  it('one bad pointer in a command produces a storm of faults from every warp', () => {
    const sys = new TestSystem({ evtqLog2: 8 });
    const g = new GpuDriver(sys, SID, { warps: 8 });
    const s = g.stream;
    const pages = 64;
    s.map(A, pages * 4096);
    const BAD = 0x6660_0000; // never mapped
    g.submit([
      { op: GpuOp.SHADER, a: A, b: BAD, len: pages * 4096, k: 1 },
      { op: GpuOp.FENCE, value: 5, flags: GPU_CMD_FLAG_IRQ },
    ]);
    sys.run();
    // every output page faulted; the shader carried on and the ring moved on
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(pages);
    expect(g.r32(GpuReg.RING_HEAD)).toBe(2);
    expect(g.r32(GpuReg.FENCE)).toBe(5);
    const fs = g.r32(GpuReg.FAULT_STATUS);
    expect(fs & (GPU_FAULT_VALID | GPU_FAULT_WRITE | GPU_FAULT_MULTI)).toBe(
      GPU_FAULT_VALID | GPU_FAULT_WRITE | GPU_FAULT_MULTI,
    );
    expect(g.r64(GpuReg.FAULT_ADDR)).toBe(BAD); // warp 0 gets there first
    expect(g.r32(GpuReg.INT_STATUS) & GPU_INT_FAULT).toBe(GPU_INT_FAULT);
    const ev = sys.d.events();
    expect(ev).toHaveLength(pages);
    expect(ev.every((e) => e.name === 'F_TRANSLATION' && !e.read && e.streamId === SID)).toBe(true);
    const addrs = new Set(ev.map((e) => Number(e.inputAddress)));
    expect(addrs.size).toBe(pages);
    // the first eight faults come from eight different warps, in parallel
    expect(ev.slice(0, 8).map((e) => (Number(e.inputAddress) - BAD) / 4096)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7,
    ]);
    // MSIs: one per 0 -> 1 edge of an INT_STATUS bit (FAULT, then DONE), not one per fault
    expect(g.irqs).toBe(2);
    // clearing the fault record
    g.w32(GpuReg.FAULT_STATUS, GPU_FAULT_VALID);
    g.w32(GpuReg.FAULT_COUNT, 0);
    expect(g.r32(GpuReg.FAULT_STATUS)).toBe(0);
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(0);
  });

  it('HALT_ON_FAULT kills the job and halts the ring; RESET recovers', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 4 });
    g.w32(GpuReg.CTRL, GPU_CTRL_ENABLE | GPU_CTRL_IRQ_EN | GPU_CTRL_HALT_ON_FAULT);
    const pf = g.stream.map(FENCE_IOVA, 4096);
    g.submit([
      { op: GpuOp.FILL, a: 0x6660_0000, value: 1, len: 64 * 4096 },
      { op: GpuOp.FENCE, a: FENCE_IOVA, value: 9 },
    ]);
    sys.run();
    expect(g.r32(GpuReg.STATUS) & GPU_STATUS_HALTED).toBe(GPU_STATUS_HALTED);
    expect(g.r32(GpuReg.INT_STATUS) & GPU_INT_HALT).toBe(GPU_INT_HALT);
    // the job was killed at the first fault: the other warps issued nothing more
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(1);
    expect(g.r32(GpuReg.RING_HEAD)).toBe(1);
    expect(sys.m.mem.read32(pf[0]!)).toBe(0);
    const snap = g.snapshot();
    expect(snap.cmd.name).toBe('FILL');
    // reset, republish the fence
    g.w32(GpuReg.CTRL, GPU_CTRL_RESET | GPU_CTRL_ENABLE);
    expect(g.r32(GpuReg.STATUS)).toBe(0);
    expect(g.r32(GpuReg.RING_HEAD)).toBe(0);
    g.tail = 0;
    g.submit([{ op: GpuOp.FENCE, a: FENCE_IOVA, value: 9 }]);
    sys.run();
    expect(sys.m.mem.read32(pf[0]!)).toBe(9);
  });

  it('a ring that is not mapped: the fetch faults and the GPU halts', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID);
    g.stream.unmapPage(RING_IOVA);
    g.submit([{ op: GpuOp.NOP }]);
    sys.run();
    expect(g.r32(GpuReg.STATUS) & GPU_STATUS_HALTED).toBe(GPU_STATUS_HALTED);
    const fs = g.r32(GpuReg.FAULT_STATUS);
    expect((fs >>> GPU_FAULT_UNIT_SHIFT) & 0xff).toBe(GPU_FAULT_UNIT_FETCH);
    expect(g.r64(GpuReg.FAULT_ADDR)).toBe(RING_IOVA);
    expect(g.r32(GpuReg.CMD_DONE)).toBe(0);
  });
});

describe('GPU faults (stall)', () => {
  it('reports STALLED; the driver snapshots registers and ring, maps the pages and retries', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 4, stall: true });
    const s = g.stream;
    const pa = s.map(A, 8 * 4096);
    s.map(B, 4 * 4096); // pages 4..7 of the destination are missing
    const input = pattern(8 * 4096, 5);
    s.write(pa, 0, input);
    g.submit([
      { op: GpuOp.NOP },
      { op: GpuOp.COPY, a: A, b: B, len: 8 * 4096 },
      { op: GpuOp.FENCE, value: 3 },
    ]);
    sys.run();
    // the machine went idle with the GPU waiting on the SMMU
    const snap = g.snapshot();
    expect(snap.status & GPU_STATUS_STALLED).toBe(GPU_STATUS_STALLED);
    expect(snap.status & GPU_STATUS_BUSY).toBe(GPU_STATUS_BUSY);
    expect(snap.stallCount).toBe(4);
    expect(sys.smmu.upstream.stalledCount(SID)).toBe(4);
    expect(snap.faultStatus & (GPU_FAULT_VALID | GPU_FAULT_STALL | GPU_FAULT_WRITE)).toBe(
      GPU_FAULT_VALID | GPU_FAULT_STALL | GPU_FAULT_WRITE,
    );
    expect(snap.faultAddr).toBe(B + 4 * 4096);
    expect(snap.head).toBe(1);
    expect(snap.cmdSlot).toBe(1);
    expect(snap.cmd).toMatchObject({ name: 'COPY', a: A, b: B, len: 8 * 4096 });
    expect(snap.ringOps.slice(0, 3)).toEqual([GpuOp.NOP, GpuOp.COPY, GpuOp.FENCE]);
    expect(g.r32(GpuReg.INT_STATUS) & GPU_INT_STALL).toBe(GPU_INT_STALL);
    // the snapshot does not disturb anything: still stalled after more time
    sys.runFor(1_000_000);
    expect(g.r32(GpuReg.STALL_COUNT)).toBe(4);
    // fault handler: read the events, fix the mapping, resume each STAG
    const ev = sys.d.events();
    expect(ev).toHaveLength(4);
    expect(ev.every((e) => e.stall)).toBe(true);
    const pb2 = s.map(B + 4 * 4096, 4 * 4096);
    for (const e of ev) sys.resume(SID, e.stag!, true);
    sys.run();
    expect(g.r32(GpuReg.STATUS) & GPU_STATUS_STALLED).toBe(0);
    expect(g.idle()).toBe(true);
    expect(g.r32(GpuReg.FENCE)).toBe(3);
    expect(s.read(pb2, 0, 4 * 4096)).toEqual(input.subarray(4 * 4096));
    expect(g.gpu.sm.stats.retried).toBe(4);
  });

  it('RESUME-Abort: the warps see aborts, finish the command and the ring moves on', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 2, stall: true });
    const s = g.stream;
    s.map(A, 4 * 4096);
    const pb = s.map(B, 2 * 4096); // pages 2 and 3 missing
    g.submit([
      { op: GpuOp.FILL, a: B, value: 0x11111111, len: 4 * 4096 },
      { op: GpuOp.FENCE, value: 8 },
    ]);
    sys.run();
    expect(g.r32(GpuReg.STALL_COUNT)).toBe(2);
    for (const e of sys.d.events()) sys.resume(SID, e.stag!, false);
    sys.run();
    expect(g.idle()).toBe(true);
    expect(g.r32(GpuReg.FENCE)).toBe(8);
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(2);
    expect(s.read(pb, 0, 2 * 4096).every((b) => b === 0x11)).toBe(true);
    expect(g.gpu.sm.stats.terminated).toBe(2);
  });

  it('a GPU reset while stalled abandons the work; the held transactions remain until STALL_TERM', () => {
    const sys = new TestSystem();
    const g = new GpuDriver(sys, SID, { warps: 4, stall: true });
    g.submit([{ op: GpuOp.FILL, a: 0x6660_0000, value: 1, len: 16 * 4096 }]);
    sys.run();
    expect(g.r32(GpuReg.STALL_COUNT)).toBe(4);
    g.w32(GpuReg.CTRL, GPU_CTRL_RESET | GPU_CTRL_ENABLE);
    expect(g.r32(GpuReg.STATUS)).toBe(GPU_STATUS_STALLED); // idle, but the SMMU still holds 4
    sys.stallTerm(SID);
    sys.run();
    expect(g.r32(GpuReg.STATUS)).toBe(0);
    expect(g.r32(GpuReg.RING_HEAD)).toBe(0);
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(0); // the abandoned work did not continue
  });
});

describe('GPU determinism', () => {
  it('same seed and inputs: same registers, events and virtual time', () => {
    const runOnce = () => {
      const sys = new TestSystem({ seed: 3 });
      const g = new GpuDriver(sys, SID, { warps: 6, stall: true });
      const s = g.stream;
      s.map(A, 10 * 4096);
      s.map(B, 5 * 4096);
      g.submit([
        { op: GpuOp.SHADER, a: A, b: B, len: 10 * 4096, k: 2 },
        { op: GpuOp.FENCE, value: 1 },
      ]);
      sys.run();
      const ev = sys.d.events();
      // resume in an order chosen by the machine's seeded RNG
      const order = [...ev];
      for (let i = order.length - 1; i > 0; i--) {
        const j = sys.m.rng.below(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const e of order) sys.resume(SID, e.stag!, (e.stag! & 1) === 0);
      sys.run();
      for (let round = 0; round < 100 && g.r32(GpuReg.STALL_COUNT) > 0; round++) {
        for (const e of sys.d.events()) sys.resume(SID, e.stag!, false);
        sys.run();
      }
      return {
        snap: g.snapshot(),
        ev: ev.map((e) => [e.stag, String(e.inputAddress)]),
        now: sys.m.sched.now,
        stats: { ...g.gpu.sm.stats },
      };
    };
    const a = runOnce();
    expect(a.snap.status & (GPU_STATUS_BUSY | GPU_STATUS_STALLED)).toBe(0);
    expect(a.stats.stalls).toBe(5);
    expect(runOnce()).toEqual(a);
  });
});
