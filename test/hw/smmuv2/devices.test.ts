// The device models written for SMMUv3 (here the GPU) sit behind an SMMUv2 unchanged: they see
// the same DMA port, and a stalled transaction finishes through the same completion call.

import { describe, expect, it } from 'vitest';
import {
  encodeGpuCommand,
  GPU_CTRL_ENABLE,
  GPU_STATUS_STALLED,
  type GpuCommand,
  GpuOp,
  GpuReg,
} from '../../../src/arch/devices/gpu.ts';
import { CB, FSR_SS } from '../../../src/arch/smmuv2/regs.ts';
import { Gpu } from '../../../src/hw/devices/gpu.ts';
import {
  DATA,
  enable,
  fixture,
  RW,
  SCTLR_CFCFG,
  SCTLR_HUPCF,
  s1Bank,
  streamToBank,
  table,
} from './helpers.ts';

const GPU_BASE = 0x0a00_0000;
const RING_IOVA = 0x1000_0000;
const RING_PA = DATA + 0x10_0000;
const A = 0x2000_0000;
const B = 0x2010_0000;

describe('the GPU behind an SMMUv2 (Adreno-style bank: stall + HUPCF)', () => {
  it('runs its ring through the SMMUv2, stalls on an unmapped buffer, and finishes after the page is mapped and RESUME retries', () => {
    const f = fixture({ compatible: 'qcom,smmu-v2' });
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 0, t, { sctlrExtra: SCTLR_CFCFG | SCTLR_HUPCF });
    streamToBank(f.r, 0, 0, 0, 0);
    t.ops.mapPages(RING_IOVA, RING_PA, 0x1000, 1, RW);
    t.ops.mapPages(A, DATA, 0x1000, 1, RW);
    const gpu = new Gpu(f.smmu, 0, { warps: 2 }).map(GPU_BASE);
    const mem = f.m.mem;
    const w32 = (off: number, v: number) => mem.write32(GPU_BASE + off, v);
    const r32 = (off: number) => mem.read32(GPU_BASE + off) >>> 0;
    w32(GpuReg.RING_BASE, RING_IOVA);
    w32(GpuReg.RING_BASE + 4, 0);
    w32(GpuReg.RING_LOG2, 2);
    w32(GpuReg.CTRL, GPU_CTRL_ENABLE);
    let tail = 0;
    const submit = (c: GpuCommand) => {
      const w = encodeGpuCommand(c);
      for (let i = 0; i < 8; i++) mem.write32(RING_PA + tail * 32 + 4 * i, w[i]!);
      tail = (tail + 1) % 4;
      w32(GpuReg.RING_TAIL, tail);
    };
    submit({ op: GpuOp.FILL, a: A, value: 0x11223344, len: 4096 });
    f.m.sched.runForSync(1_000_000);
    expect(r32(GpuReg.RING_HEAD)).toBe(1);
    expect(mem.read32(DATA + 4092) >>> 0).toBe(0x11223344);
    // B is not mapped: the fill stalls in the SMMU
    submit({ op: GpuOp.FILL, a: B, value: 0x55667788, len: 4096 });
    f.m.sched.runForSync(1_000_000);
    expect(r32(GpuReg.STATUS) & GPU_STATUS_STALLED).toBe(GPU_STATUS_STALLED);
    expect(f.r.cb(0, CB.FSR) & FSR_SS).toBe(FSR_SS);
    expect(f.r.cb64(0, CB.FAR) - B).toBeLessThan(4096);
    t.ops.mapPages(B, DATA + 0x1000, 0x1000, 1, RW);
    f.r.setCb(0, CB.FSR, f.r.cb(0, CB.FSR));
    f.r.setCb(0, CB.RESUME, 0);
    f.m.sched.runForSync(1_000_000);
    expect(r32(GpuReg.RING_HEAD)).toBe(2);
    expect(r32(GpuReg.STATUS) & GPU_STATUS_STALLED).toBe(0);
    for (let off = 0; off < 4096; off += 4) expect(mem.read32(DATA + 0x1000 + off) >>> 0).toBe(0x55667788);
    expect(gpu.sid).toBe(0);
    expect(f.smmu.port.stats.completed).toBeGreaterThan(0); // the stalled fill finished through stallCompleted
  });
});
