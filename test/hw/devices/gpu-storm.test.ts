// "A GPU fault storm of 10,000 faulting DMAs with a full event queue keeps the model consistent
// and its memory bounded" (issue 4). The driver never drains the event queue during the storm.

import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { GPU_STATUS_BUSY, GPU_STATUS_STALLED, GpuOp, GpuReg } from '../../../src/arch/devices/gpu.ts';
import { Q_PTR, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { GpuDriver, TestSystem } from './gpu-driver.ts';

const SID = 3;
const FAULTS = 10_000;
const BAD = 0x40_0000_0000; // a 40 MB region never mapped
const MB = 1024 * 1024;

// A real collection before each measurement, so that garbage does not pass for a leak.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function heap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('GPU fault storm', () => {
  it('terminate: 10,000 faulting DMAs into a full event queue; counts add up, memory bounded', () => {
    const build = () => {
      const sys = new TestSystem({ evtqLog2: 4 }); // 16 records
      const g = new GpuDriver(sys, SID, { warps: 16 });
      return { sys, g };
    };
    // warm-up run (JIT, lazily built structures) so that the measured run shows per-fault cost
    {
      const { sys, g } = build();
      g.submit([{ op: GpuOp.FILL, a: BAD, value: 0, len: 2000 * 4096 }]);
      sys.run();
    }
    const { sys, g } = build();
    const smmu = sys.smmu;
    // one fault first, so that the event queue's page exists before we count frames
    g.submit([{ op: GpuOp.FILL, a: BAD, value: 0, len: 4096 }]);
    sys.run();
    expect(sys.d.events()).toHaveLength(1);
    g.w32(GpuReg.FAULT_COUNT, 0);
    const evBase = smmu.evtq.stats.written;
    const faultBase = smmu.port.stats.fault;
    const framesBefore = sys.m.mem.touchedFrames;
    const before = heap();
    g.submit([
      { op: GpuOp.FILL, a: BAD, value: 0xdeadbeef, len: FAULTS * 4096 },
      { op: GpuOp.FENCE, value: 1 },
    ]);
    sys.run();
    const grown = heap() - before;
    console.log(
      `storm (terminate): ${FAULTS} faults, events written ${smmu.evtq.stats.written - evBase}, lost ${smmu.evtq.stats.overflowed}, heap +${(grown / MB).toFixed(2)} MB, virtual ${sys.m.sched.now} ns`,
    );
    // the GPU saw every fault and finished its ring
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(FAULTS);
    expect(g.r32(GpuReg.FENCE)).toBe(1);
    expect(g.r32(GpuReg.STATUS) & (GPU_STATUS_BUSY | GPU_STATUS_STALLED)).toBe(0);
    // the SMMU: every fault either written or lost to overflow; nothing else
    const st = smmu.evtq.stats;
    expect(st.written - evBase).toBe(16);
    expect(st.written - evBase + st.overflowed).toBe(FAULTS);
    expect(smmu.port.stats.fault - faultBase).toBe(FAULTS);
    expect(g.gpu.sm.stats.faults - faultBase).toBe(FAULTS);
    // overflow flag: PROD.OVFLG differs from CONS.OVACKFLG until software acknowledges
    const prod = sys.d.r32(SMMU_REG.EVTQ_PROD_P1);
    const cons = sys.d.r32(SMMU_REG.EVTQ_CONS_P1);
    expect((prod ^ cons) & Q_PTR.OVFLG).toBe(Q_PTR.OVFLG);
    const ev = sys.d.events(); // drains and acknowledges
    expect(ev).toHaveLength(16);
    expect(ev.every((e) => e.name === 'F_TRANSLATION' && e.streamId === SID && !e.stall)).toBe(true);
    expect((sys.d.r32(SMMU_REG.EVTQ_PROD_P1) ^ sys.d.r32(SMMU_REG.EVTQ_CONS_P1)) & Q_PTR.OVFLG).toBe(0);
    // the queue works again afterwards
    g.submit([{ op: GpuOp.FILL, a: BAD, value: 0, len: 4096 }]);
    sys.run();
    expect(sys.d.events()).toHaveLength(1);
    // no memory was written by the storm, nothing left behind in the scheduler
    expect(sys.m.mem.touchedFrames).toBe(framesBefore);
    expect(sys.m.sched.pending).toBe(0);
    expect(grown).toBeLessThan(20 * MB);
  });

  it('stall: 10,000 faulting DMAs, full event queue, STALL_MAX 8; held transactions stay bounded and consistent', () => {
    const stallMax = 8;
    const sys = new TestSystem({ evtqLog2: 3, smmu: { stallMax } }); // 8 records
    const g = new GpuDriver(sys, SID, { warps: 32, stall: true });
    const smmu = sys.smmu;
    const before = heap();
    g.submit([
      { op: GpuOp.FILL, a: BAD, value: 1, len: FAULTS * 4096 },
      { op: GpuOp.FENCE, value: 2 },
    ]);
    let rounds = 0;
    let maxHeld = 0;
    let inconsistent = 0;
    const check = () => {
      const held = smmu.upstream.stalledCount(SID);
      maxHeld = Math.max(maxHeld, held);
      const status = g.r32(GpuReg.STATUS);
      if (g.r32(GpuReg.STALL_COUNT) !== held) inconsistent++;
      if (((status & GPU_STATUS_STALLED) !== 0) !== held > 0) inconsistent++;
    };
    // The fault handler cannot read STAGs (the queue is full and never drained), so it
    // terminates everything the GPU has stalled with CMD_STALL_TERM, as a GPU reset path would.
    for (; rounds < 5000 && g.r32(GpuReg.FENCE) !== 2; rounds++) {
      sys.run();
      check();
      if (smmu.upstream.stalledCount(SID) > 0) {
        expect(g.r32(GpuReg.STATUS) & GPU_STATUS_STALLED).toBe(GPU_STATUS_STALLED);
        sys.stallTerm(SID);
        check();
      }
    }
    sys.run();
    const grown = heap() - before;
    const ss = g.gpu.sm.stats;
    console.log(
      `storm (stall): ${g.r32(GpuReg.FAULT_COUNT)} faults in ${rounds} rounds, stalled ${ss.stalls}, terminated without stall ${smmu.port.stats.fault}, max held ${maxHeld}, events written ${smmu.evtq.stats.written}, lost ${smmu.evtq.stats.overflowed}, heap +${(grown / MB).toFixed(2)} MB`,
    );
    expect(g.r32(GpuReg.FENCE)).toBe(2);
    expect(g.r32(GpuReg.FAULT_COUNT)).toBe(FAULTS);
    expect(inconsistent).toBe(0);
    expect(maxHeld).toBeLessThanOrEqual(stallMax);
    expect(maxHeld).toBe(stallMax);
    // every faulting DMA either stalled (and was later terminated exactly once) or, with every
    // STAG in use, terminated at once
    expect(ss.stalls + smmu.port.stats.fault).toBe(FAULTS);
    expect(ss.terminated).toBe(ss.stalls);
    expect(ss.retried).toBe(0);
    expect(smmu.upstream.stalledCount(SID)).toBe(0);
    expect(g.r32(GpuReg.STALL_COUNT)).toBe(0);
    // every fault has one fate at the SMMU: a record written, a Stall = 0 record lost to the
    // overflow, or a stall record deferred (never lost) until its transaction was terminated
    const stall = smmu.stall.stats;
    expect(stall.stalled).toBe(ss.stalls);
    expect(stall.terminated).toBe(ss.stalls);
    expect(smmu.evtq.stats.written + smmu.evtq.stats.overflowed + stall.deferredRecords).toBe(FAULTS);
    // the queue stayed full: 8 records written, overflow flagged
    expect(smmu.evtq.stats.written).toBe(8);
    expect((sys.d.r32(SMMU_REG.EVTQ_PROD_P1) ^ sys.d.r32(SMMU_REG.EVTQ_CONS_P1)) & Q_PTR.OVFLG).toBe(
      Q_PTR.OVFLG,
    );
    expect(sys.m.sched.pending).toBe(0);
    expect(grown).toBeLessThan(20 * MB);
  });
});
