// Stall on fault (SCTLR.CFCFG = 1), RESUME retry / terminate, hit under previous context fault
// (HUPCF), and the MMU-500 quirks, seen by a stall-capable platform DMA master (the same device
// model that sits behind SMMUv3) and by a driver that only has FSR, RESUME and the interrupt.

import { describe, expect, it } from 'vitest';
import { CB, FSR_MULTI, FSR_SS, FSR_TF } from '../../../src/arch/smmuv2/regs.ts';
import { PlatformDmaMaster } from '../../../src/hw/devices/platform-master.ts';
import {
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PORT_STALLED,
  PortResult,
} from '../../../src/hw/smmu-common/port.ts';
import { ACCESS_READ } from '../../../src/hw/smmu-common/translate-types.ts';
import type { SmmuV2Compatible } from '../../../src/hw/smmuv2/features.ts';
import { IRQ_HANDLED } from '../../../src/platform/irq.ts';
import {
  CTX_IRQ_BASE,
  DATA,
  enable,
  fixture,
  lineHigh,
  RW,
  SCTLR_CFCFG,
  SCTLR_HUPCF,
  s1Bank,
  streamToBank,
  table,
} from './helpers.ts';

const CBN = 4;
const SID = 0x20;
const SID2 = 0x21;
const MAPPED = 0x10_0000;
const HOLE = 0x50_0000;

function setup(opts: { hupcf?: boolean; compatible?: SmmuV2Compatible; cfcfg?: boolean } = {}) {
  const f = fixture({ compatible: opts.compatible ?? 'arm,mmu-500' });
  const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
  enable(f.r);
  s1Bank(f.r, CBN, t, {
    sctlrExtra: (opts.cfcfg === false ? 0 : SCTLR_CFCFG) | (opts.hupcf ? SCTLR_HUPCF : 0),
  });
  streamToBank(f.r, 0, SID, 0, CBN);
  streamToBank(f.r, 1, SID2, 0, CBN);
  t.ops.mapPages(MAPPED, DATA, 0x1000, 1, RW);
  f.m.mem.writeBytes(DATA, new Uint8Array([1, 2, 3, 4]), 0, 4);
  f.m.mem.writeBytes(DATA + 0x1000, new Uint8Array([9, 8, 7, 6]), 0, 4);
  const dev = new PlatformDmaMaster(f.smmu, SID);
  const dev2 = new PlatformDmaMaster(f.smmu, SID2);
  return { ...f, t, dev, dev2 };
}

describe('SMMUv2 stall on fault', () => {
  it('RESUME retry: the stalled read completes with the data of the page mapped while it was held', () => {
    const s = setup();
    const op = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('running');
    expect(op.stalled).toBe(true);
    expect(s.r.cb(CBN, CB.FSR) >>> 0).toBe((FSR_SS | FSR_TF) >>> 0);
    expect(s.r.cb64(CBN, CB.FAR)).toBe(HOLE);
    expect(lineHigh(s.m, CTX_IRQ_BASE + CBN)).toBe(true);
    // the driver fixes the page table, clears FSR, then retries
    s.t.ops.mapPages(HOLE, DATA + 0x1000, 0x1000, 1, RW);
    s.r.setCb(CBN, CB.FSR, s.r.cb(CBN, CB.FSR));
    s.r.setCb(CBN, CB.RESUME, 0);
    expect(op.state).toBe('running'); // the SMMU answers later, not inside the register write
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('done');
    expect([...op.data]).toEqual([9, 8, 7, 6]);
    expect(s.dev.sm.stats.retried).toBe(1);
    expect(s.r.cb(CBN, CB.FSR)).toBe(0);
    expect(lineHigh(s.m, CTX_IRQ_BASE + CBN)).toBe(false);
  });

  it('RESUME terminate: the device sees an abort', () => {
    const s = setup();
    const op = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(10_000);
    s.r.setCb(CBN, CB.FSR, s.r.cb(CBN, CB.FSR));
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('failed');
    expect(op.status).toBe(PORT_FAULT);
    expect(op.errorAddr).toBe(HOLE);
    expect(s.dev.sm.stats.terminated).toBe(1);
  });

  it('a retry that faults again stalls again under the same STAG, and completes once', () => {
    const s = setup();
    const out = new PortResult();
    expect(s.smmu.port.translate(SID, -1, HOLE, ACCESS_READ, out)).toBe(PORT_STALLED);
    const stag = out.stag;
    const seen: Array<[number, number]> = [];
    s.smmu.upstream.attach(SID, { stallCompleted: (_sid, tag, st) => seen.push([tag, st]) });
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 0); // nothing mapped: it faults again
    s.m.sched.runForSync(1000);
    expect(seen).toEqual([]);
    expect(s.r.cb(CBN, CB.FSR) >>> 0).toBe((FSR_SS | FSR_TF) >>> 0);
    expect(s.smmu.banks[CBN]!.stalled!.stag).toBe(stag);
    s.t.ops.mapPages(HOLE, DATA, 0x1000, 1, RW);
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 0);
    s.r.setCb(CBN, CB.RESUME, 0); // a second RESUME before the first took effect: ignored
    s.m.sched.runForSync(1000);
    expect(seen).toEqual([[stag, PORT_OK]]);
  });

  it('HUPCF = 0: a transaction that would hit waits behind the stalled one until RESUME', () => {
    const s = setup({ hupcf: false });
    const bad = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    const good = s.dev2.read(MAPPED, 4);
    s.m.sched.runForSync(10_000);
    expect(good.state).toBe('running');
    expect(good.stalled).toBe(true);
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(10_000);
    expect(bad.state).toBe('failed');
    expect(good.state).toBe('done');
    expect([...good.data]).toEqual([1, 2, 3, 4]);
  });

  it('HUPCF = 1: the other transactions of the bank go on under the fault', () => {
    const s = setup({ hupcf: true });
    const bad = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    const good = s.dev2.read(MAPPED, 4);
    s.m.sched.runForSync(10_000);
    expect(good.state).toBe('done');
    expect(bad.state).toBe('running');
  });

  it('HUPCF = 1: a second faulting transaction waits (MULTI), then stalls in its turn', () => {
    const s = setup({ hupcf: true });
    const a = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    const b = s.dev2.read(HOLE + 0x1000, 4);
    s.m.sched.runForSync(1000);
    expect(b.stalled).toBe(true);
    expect(s.r.cb(CBN, CB.FSR) & FSR_MULTI).not.toBe(0);
    expect(s.r.cb64(CBN, CB.FAR)).toBe(HOLE); // the first fault's syndrome
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(1000);
    expect(a.state).toBe('failed');
    expect(b.state).toBe('running'); // it stalled now: its own fault recorded
    expect(s.r.cb64(CBN, CB.FAR)).toBe(HOLE + 0x1000);
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(1000);
    expect(b.state).toBe('failed');
  });

  it('with CFCFG = 0 the fault terminates at once (no SS)', () => {
    const s = setup({ cfcfg: false });
    const op = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    expect(op.state).toBe('failed');
    expect(s.r.cb(CBN, CB.FSR) & FSR_SS).toBe(0);
  });
});

describe('MMU-500 quirks (Linux 3053a2c5086d)', () => {
  it('MMU-500 ignores RESUME until every FSR field but SS is clear', () => {
    const s = setup();
    const op = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    s.r.setCb(CBN, CB.RESUME, 1); // FSR still holds TF
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('running');
    expect(s.smmu.counters.resumesIgnored).toBe(1);
    s.r.setCb(CBN, CB.FSR, FSR_TF);
    expect(s.r.cb(CBN, CB.FSR) >>> 0).toBe(FSR_SS >>> 0); // SS stays while stalled
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('failed');
    expect(s.r.cb(CBN, CB.FSR)).toBe(0);
  });

  it('a generic SMMUv2 takes RESUME with FSR still set, and clears SS with the FSR write', () => {
    const s = setup({ compatible: 'arm,smmu-v2' });
    const op = s.dev.read(HOLE, 4);
    s.m.sched.runForSync(1000);
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(10_000);
    expect(op.state).toBe('failed');
    const op2 = s.dev.read(HOLE + 0x2000, 4);
    s.m.sched.runForSync(1000);
    expect(op2.state).toBe('running'); // waits: TF still recorded, HUPCF = 0, CFCFG = 1
    s.r.setCb(CBN, CB.FSR, -1);
    s.m.sched.runForSync(1000);
    expect(op2.stalled).toBe(true);
    expect(s.r.cb(CBN, CB.FSR) >>> 0).toBe((FSR_SS | FSR_TF) >>> 0);
    s.r.setCb(CBN, CB.FSR, -1);
    expect(s.r.cb(CBN, CB.FSR)).toBe(0);
  });

  it('MMU-500 keeps the context interrupt asserted while a transaction is stalled; a generic SMMUv2 drops it with FSR', () => {
    for (const [compatible, stillHigh] of [
      ['arm,mmu-500', true],
      ['arm,smmu-v2', false],
    ] as const) {
      const s = setup({ compatible });
      s.dev.read(HOLE, 4);
      s.m.sched.runForSync(1000);
      s.r.setCb(CBN, CB.FSR, -1);
      expect(lineHigh(s.m, CTX_IRQ_BASE + CBN)).toBe(stillHigh);
      s.r.setCb(CBN, CB.RESUME, 1);
      s.m.sched.runForSync(1000);
      expect(lineHigh(s.m, CTX_IRQ_BASE + CBN)).toBe(false);
    }
  });

  it("a hard-IRQ handler in Linux's 6.16 style (report, clear FSR, RESUME terminate) drains a fault burst one stall at a time", () => {
    const s = setup({ hupcf: true });
    let handled = 0;
    s.m.irq.requestIrq(CTX_IRQ_BASE + CBN, 'arm-smmu-context-fault', () => {
      const fsr = s.r.cb(CBN, CB.FSR);
      if ((fsr & 0x800001fe) === 0 && (fsr & FSR_SS) === 0) return 0;
      handled++;
      s.r.setCb(CBN, CB.FSR, fsr);
      if (fsr & FSR_SS) s.r.setCb(CBN, CB.RESUME, 1);
      return IRQ_HANDLED;
    });
    const ops = [];
    for (let i = 0; i < 20; i++) ops.push(s.dev.read(HOLE + i * 0x1000, 4));
    s.m.sched.runForSync(1_000_000);
    expect(ops.every((o) => o.state === 'failed')).toBe(true);
    expect(s.dev.sm.stats.terminated).toBe(20);
    expect(s.smmu.counters.stalls).toBe(20);
    expect(handled).toBeGreaterThanOrEqual(20);
    expect(s.r.cb(CBN, CB.FSR)).toBe(0);
    expect(lineHigh(s.m, CTX_IRQ_BASE + CBN)).toBe(false);
  });
});

describe('CFRE = 0 termination after a stall', () => {
  it('RESUME terminate of a bank without CFRE completes as RAZ/WI (the read returns zeros)', () => {
    const s = setup();
    s.r.setCb(CBN, CB.SCTLR, s.r.cb(CBN, CB.SCTLR) & ~(1 << 5));
    const out = new PortResult();
    const seen: number[] = [];
    s.smmu.upstream.attach(0x77, { stallCompleted: (_sid, _t, st) => seen.push(st) });
    streamToBank(s.r, 2, 0x77, 0, CBN);
    expect(s.smmu.port.translate(0x77, -1, HOLE, ACCESS_READ, out)).toBe(PORT_STALLED);
    s.r.setCb(CBN, CB.FSR, -1);
    s.r.setCb(CBN, CB.RESUME, 1);
    s.m.sched.runForSync(1000);
    expect(seen).toEqual([PORT_RAZWI]);
  });
});
