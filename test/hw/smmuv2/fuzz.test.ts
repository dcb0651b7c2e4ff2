// Fuzz: random register writes (32- and 64-bit, any value, at the registers that matter and at
// random offsets), random bytes in the memory the tables live in, and random transactions, on
// each SMMUv2 variant. The model must never throw, and every transaction must end in an
// architected answer: a translation (or bypass), a fault recorded in FSR or sGFSR (abort or
// RAZ/WI), an abort of a FAULT stream, or a stall whose completion arrives exactly once.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CB, GR0, GR0_S2CR, GR0_SMR, GR1_CBA2R, GR1_CBAR } from '../../../src/arch/smmuv2/regs.ts';
import {
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PORT_STALLED,
  PortResult,
} from '../../../src/hw/smmu-common/port.ts';
import { SMMUV2_COMPATIBLES } from '../../../src/hw/smmuv2/features.ts';
import { SmmuV2 } from '../../../src/hw/smmuv2/smmu.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { Regs, SMMU_BASE } from './helpers.ts';

const NUM_CB = 4;
const TBL = 0x9000_0000; // the random "tables": 16 pages of RAM
const TBL_PAGES = 16;

const CB_OFFSETS = Object.values(CB);
const GR0_OFFSETS = [
  GR0.sCR0,
  GR0.sACR,
  GR0.sGFSR,
  GR0.sGFSRRESTORE,
  GR0.STLBIALL,
  GR0.TLBIVMID,
  GR0.TLBIALLNSNH,
  GR0.TLBIALLH,
  GR0.sTLBGSYNC,
  GR0.sTLBGSTATUS,
  ...[0, 1, 2, 3].flatMap((i) => [GR0_SMR(i), GR0_S2CR(i)]),
];

type Op =
  | { k: 'gr0'; off: number; v: number }
  | { k: 'gr1'; off: number; v: number }
  | { k: 'cb'; n: number; off: number; v: number; hi: number; wide: boolean }
  | { k: 'raw'; off: number; v: number }
  | { k: 'mem'; page: number; slot: number; lo: number; hi: number }
  | { k: 'txn'; sid: number; iova: number; access: number }
  | { k: 'run'; ns: number }
  /** Linux's context fault handler on bank n: clear FSR, RESUME retry or terminate. */
  | { k: 'handle'; n: number; terminate: boolean };

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
/** Values that reach the interesting encodings more often than uniform ones. */
const value = fc.oneof(
  u32,
  fc.integer({ min: 0, max: 0xff }),
  fc.constantFrom(0, 1, 0x80000000, 0xffffffff),
  // SMR-like: VALID | MASK | ID with small ids; S2CR / CBAR-like: TYPE | CBNDX
  fc
    .tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 3 }))
    .map(([id, m]) => ((1 << 31) | (m << 16) | id) >>> 0),
  fc
    .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: NUM_CB }))
    .map(([t, c]) => ((t << 16) | c) >>> 0),
  // SCTLR-like
  fc.integer({ min: 0, max: 0x1ff }),
  // a table address in the random region
  fc.integer({ min: 0, max: TBL_PAGES - 1 }).map((p) => (TBL + p * 4096) >>> 0),
);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('gr0' as const), off: fc.constantFrom(...GR0_OFFSETS), v: value }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('gr1' as const),
      off: fc
        .integer({ min: 0, max: NUM_CB - 1 })
        .chain((n) => fc.constantFrom(GR1_CBAR(n), GR1_CBA2R(n), 0x400 + 4 * n)),
      v: value,
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('cb' as const),
      n: fc.integer({ min: 0, max: NUM_CB - 1 }),
      off: fc.constantFrom(...CB_OFFSETS),
      v: value,
      hi: fc.oneof(u32, fc.integer({ min: 0, max: 0xffff })),
      wide: fc.boolean(),
    }),
  },
  // anywhere in the window, 4-byte aligned
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('raw' as const),
      off: fc.integer({ min: 0, max: 0x3_fff }).map((x) => x * 4),
      v: u32,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('mem' as const),
      page: fc.integer({ min: 0, max: TBL_PAGES - 1 }),
      slot: fc.integer({ min: 0, max: 511 }),
      lo: fc.oneof(
        u32,
        fc.integer({ min: 0, max: TBL_PAGES - 1 }).map((p) => (TBL + p * 4096 + 0x403) >>> 0),
      ),
      hi: fc.oneof(fc.constant(0), u32),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('txn' as const),
      sid: fc.oneof(fc.integer({ min: 0, max: NUM_CB - 1 }), fc.integer({ min: 0, max: 15 })),
      iova: fc.oneof(
        fc.integer({ min: 0, max: 8 * 4096 - 1 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 2 ** 53 - 1 }),
        fc.integer({ min: 0, max: 63 }).map((i) => i * 4096),
      ),
      access: fc.integer({ min: 0, max: 7 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('run' as const), ns: fc.integer({ min: 0, max: 5000 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('handle' as const),
      n: fc.integer({ min: 0, max: NUM_CB - 1 }),
      terminate: fc.boolean(),
    }),
  },
);

/** A driver-like starting point the random operations then disturb: enabled, SMR i -> bank i. */
interface Baseline {
  usfcfg: boolean;
  /** Slots 0..7 of every table page: a descriptor to a page of the region (page, low bits). */
  fill: Array<[number, number]>;
  banks: Array<{ type: number; va64: boolean; tcr: number; sctlr: number; ttbPage: number }>;
}

const S1_TCR64 = [16, 25, 33, 39].map((t0) => t0 | (1 << 23)); // 4K, EPD1
const S1_TCR32 = [0, 1, 2].map((t0) => ((1 << 31) | (1 << 23) | t0) >>> 0); // EAE
const S2_VTCR64 = [
  [24, 1],
  [32, 1],
  [16, 2],
  [34, 0],
].map(([t0, sl]) => ((1 << 31) | (5 << 16) | (sl! << 6) | t0!) >>> 0);
const S2_VTCR32 = [((1 << 31) | (1 << 6) | 0x18) >>> 0, ((1 << 31) | (1 << 6)) >>> 0]; // T0SZ -8 / 0, SL0 level 1

const baseline: fc.Arbitrary<Baseline> = fc.record({
  usfcfg: fc.boolean(),
  fill: fc.array(
    fc.tuple(
      fc.integer({ min: 0, max: TBL_PAGES - 1 }),
      fc.constantFrom(0x403, 0x4c3, 0x4c7, 0x401, 0x0c3, 0x003),
    ),
    { minLength: TBL_PAGES * 8, maxLength: TBL_PAGES * 8 },
  ),
  banks: fc.array(
    fc.record({
      type: fc.integer({ min: 0, max: 3 }),
      va64: fc.boolean(),
      tcr: fc.integer({ min: 0, max: 3 }),
      // M | CFIE | CFRE, with CFCFG and HUPCF at random
      sctlr: fc
        .tuple(fc.boolean(), fc.boolean())
        .map(([stall, hupcf]) => 0x61 | (stall ? 0x80 : 0) | (hupcf ? 0x100 : 0)),
      ttbPage: fc.integer({ min: 0, max: TBL_PAGES - 1 }),
    }),
    { minLength: NUM_CB, maxLength: NUM_CB },
  ),
});

function program(r: Regs, b: Baseline): void {
  b.fill.forEach(([p, bits], i) => {
    r.m.mem.write64(TBL + (i >>> 3) * 4096 + (i & 7) * 8, (TBL + p * 4096 + bits) | 0, 0);
  });
  r.setGr0(GR0.sCR0, 0x36 | (1 << 21) | (b.usfcfg ? 1 << 10 : 0));
  b.banks.forEach((k, n) => {
    const type = n === 0 ? 0 : k.type; // bank 0 is the stage-2 bank nested banks point to
    r.setGr1(GR1_CBA2R(n), k.va64 ? 1 : 0);
    r.setGr1(GR1_CBAR(n), (type << 16) | (type === 3 ? 0 : n + 1));
    const s1 = type !== 0;
    const tcr = s1
      ? (k.va64 ? S1_TCR64 : S1_TCR32)[k.tcr % (k.va64 ? 4 : 3)]!
      : (k.va64 ? S2_VTCR64 : S2_VTCR32)[k.tcr % (k.va64 ? 4 : 2)]!;
    r.setCb(n, CB.TCR2, 5 | (1 << 4));
    r.setCb(n, CB.TCR, tcr);
    r.setCb64(n, CB.TTBR0, TBL + k.ttbPage * 4096, n << 16);
    r.setCb(n, CB.SCTLR, k.sctlr);
    r.setGr0(GR0_S2CR(n), n);
    r.setGr0(GR0_SMR(n), ((1 << 31) | n) >>> 0);
  });
}

const RUNS = 300;

/** What the fuzz reached, over every variant (checked at the end: the cases must get that far). */
const seen = {
  translated: 0,
  bypass: 0,
  abort: 0,
  contextFault: 0,
  globalFault: 0,
  stalled: 0,
  completed: 0,
};

describe('SMMUv2 fuzz: random registers, random tables, random transactions', () => {
  for (const compatible of SMMUV2_COMPATIBLES) {
    it(`${compatible}: never throws, always an architected answer (${RUNS} cases)`, () => {
      const m = new Machine({ seed: 1 });
      fc.assert(
        fc.property(baseline, fc.array(op, { minLength: 1, maxLength: 80 }), (base, ops) => {
          // a fresh SMMU per case on one machine (the table region keeps earlier random bytes)
          for (const w of m.mmio.list()) if (w.device instanceof SmmuV2) m.mmio.unmap(w.device);
          const smmu = new SmmuV2(m, {
            compatible,
            numContextBanks: NUM_CB,
            numSmrg: 4,
            base: SMMU_BASE,
            globalIrqs: [40],
            contextIrqs: [64, 65, 66, 67],
          });
          const r = new Regs(m, smmu);
          program(r, base);
          const out = new PortResult();
          const issued = new Set<number>();
          const completed = new Set<number>();
          for (let sid = 0; sid < 16; sid++) {
            smmu.upstream.attach(sid, {
              stallCompleted(_sid, stag, status) {
                expect(issued.has(stag)).toBe(true);
                expect(completed.has(stag)).toBe(false);
                expect([PORT_OK, PORT_BYPASS, PORT_FAULT, PORT_RAZWI, PORT_ABORT]).toContain(status);
                completed.add(stag);
                seen.completed++;
              },
            });
          }
          for (const o of ops) {
            switch (o.k) {
              case 'gr0':
                r.setGr0(o.off, o.v);
                break;
              case 'gr1':
                r.setGr1(o.off, o.v);
                break;
              case 'cb':
                if (o.wide && o.off % 8 === 0) r.setCb64(o.n, o.off, o.v, o.hi);
                else r.setCb(o.n, o.off, o.v);
                r.cb(o.n, o.off);
                break;
              case 'raw':
                m.mmio.write32(smmu.base + o.off, o.v);
                m.mmio.read32(smmu.base + o.off);
                break;
              case 'mem':
                m.mem.write64(TBL + o.page * 4096 + o.slot * 8, o.lo | 0, o.hi | 0);
                break;
              case 'run':
                m.sched.runForSync(o.ns);
                break;
              case 'handle': {
                const fsr = r.cb(o.n, CB.FSR);
                r.setCb(o.n, CB.FSR, fsr);
                if (fsr & (1 << 30)) r.setCb(o.n, CB.RESUME, o.terminate ? 1 : 0);
                m.sched.runForSync(1000);
                break;
              }
              case 'txn': {
                const st = smmu.port.translate(o.sid, -1, o.iova, o.access, out);
                expect(out.status).toBe(st);
                if (st === PORT_OK) seen.translated++;
                else if (st === PORT_BYPASS) seen.bypass++;
                else if (st === PORT_ABORT) seen.abort++;
                else if (st === PORT_STALLED) seen.stalled++;
                else if (smmu.gfsr !== 0) seen.globalFault++;
                else seen.contextFault++;
                if (st === PORT_OK || st === PORT_BYPASS) {
                  expect(Number.isInteger(out.oa) && out.oa >= 0 && out.oa < 2 ** 52).toBe(true);
                } else if (st === PORT_FAULT || st === PORT_RAZWI) {
                  // recorded in sGFSR or a bank's FSR (as a fault, or as MULTI behind one)
                  expect(out.recorded).toBe(true);
                  expect(smmu.gfsr !== 0 || smmu.banks.some((b) => b.fsr !== 0)).toBe(true);
                } else if (st === PORT_STALLED) {
                  expect(out.stag).toBeGreaterThanOrEqual(0);
                  expect(issued.has(out.stag)).toBe(false);
                  issued.add(out.stag);
                } else expect(st).toBe(PORT_ABORT);
                break;
              }
            }
          }
          // whatever is still held is accounted for: stalled or waiting in some bank
          m.sched.runForSync(100_000);
          const held = new Set<number>();
          for (const b of smmu.banks) {
            if (b.stalled !== null) held.add(b.stalled.stag);
            for (const t of b.queue) held.add(t.stag);
          }
          for (const stag of issued) expect(completed.has(stag) !== held.has(stag)).toBe(true);
        }),
        { numRuns: RUNS, seed: 0x5eed + compatible.length },
      );
    });
  }

  it('the random cases reached translations, both kinds of fault, stalls and their completions', () => {
    expect(seen.translated).toBeGreaterThan(0);
    expect(seen.contextFault).toBeGreaterThan(0);
    expect(seen.globalFault).toBeGreaterThan(0);
    expect(seen.stalled).toBeGreaterThan(0);
    expect(seen.completed).toBeGreaterThan(0);
    console.log(`smmuv2 fuzz outcomes: ${JSON.stringify(seen)}`);
  });
});
