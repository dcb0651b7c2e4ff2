// The one-piece 4K stage-1 TLB miss (the fast walk in TranslationEngine.translate64: unrolled walk,
// TLB fill, result) must
// be invisible: for random tables and random stage-1 configurations, an engine using it and an
// engine that always takes the general walk give the same results, counters, TLB contents and
// memory side effects (AF/dirty updates).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TranslationEngine } from '../../../src/hw/smmu-common/translate.ts';
import {
  makeTranslationConfig,
  type TranslationConfig,
  TranslationResult,
  WORLD_EL2,
  WORLD_EL2_E2H,
  WORLD_NS_EL1,
} from '../../../src/hw/smmu-common/translate-types.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { Rng } from '../../../src/platform/rng.ts';

/** A machine whose pool pages hold random 4K descriptors, mostly valid tables into the pool. */
function build(seed: number): { m: Machine; pages: number[] } {
  const m = new Machine({ seed: 1 });
  const pages: number[] = [];
  for (let i = 0; i < 12; i++) pages.push(m.pages.allocPage('fast'));
  const rng = new Rng(seed);
  const r = () => rng.next32();
  for (const p of pages) {
    for (let off = 0; off < 4096; off += 8) {
      const k = r() % 100;
      let addr: number;
      if (k < 82) addr = pages[r() % pages.length]!;
      else if (k < 90)
        addr = 0x8000_0000 + (r() % 0x4_0000) * 0x1000; // RAM, mostly untouched
      else if (k < 93)
        addr = 0x10_0000_0000 + (r() % 16) * 0x1000; // no RAM: external abort
      else if (k < 96)
        addr = 2 ** 36 + (r() % 16) * 0x20_0000; // above 4 GiB, below 48 bits
      else addr = 2 ** 40 + (r() % 16) * 0x4000_0000; // above small IPS
      let lo = (addr >>> 0) & ~0xfff;
      let hi = Math.floor(addr / 2 ** 32) & 0x3ffff;
      const typ = r() % 20;
      lo |= typ === 0 ? 0 : 1; // 5% invalid
      lo |= typ < 3 ? 0 : 2; // ~10% block (or reserved at level 3)
      lo |= r() & (3 << 6); // AP
      if (r() % 10 !== 0) lo |= 1 << 10; // AF mostly set
      lo |= r() & (1 << 11); // nG
      lo |= r() & (7 << 2); // AttrIndx
      lo |= r() & (3 << 8); // SH
      hi |= r() & ((1 << 21) | (1 << 22)); // PXN, UXN
      if (r() % 8 === 0) hi |= 1 << 19; // DBM
      if (r() % 4 === 0) hi |= r() & (0xf << 27); // PXNTable, UXNTable, APTable
      m.mem.write64(p + off, lo | 0, hi | 0);
    }
  }
  return { m, pages };
}

function config(pages: number[], p: Params): TranslationConfig {
  const cfg = makeTranslationConfig();
  const f = p.flags;
  cfg.world = [WORLD_NS_EL1, WORLD_EL2, WORLD_EL2_E2H][p.world]!;
  cfg.vmid = p.world === 0 ? 3 : 0;
  cfg.s1.asid = 7;
  cfg.s1.ttb0 = pages[0]! + (f & 1 ? 0x808 : 0); // misaligned TTBs are aligned by the walk
  cfg.s1.ttb1 = pages[1]!;
  cfg.s1.t0sz = p.tsz;
  cfg.s1.t1sz = p.tsz1;
  cfg.s1.epd1 = (f & 2) !== 0;
  cfg.s1.tbi0 = (f & 4) !== 0;
  cfg.s1.had0 = (f & 8) !== 0;
  cfg.s1.had1 = (f & 16) !== 0;
  cfg.s1.ha = (f & 32) !== 0;
  cfg.s1.hd = (f & 64) !== 0;
  cfg.s1.affd = (f & 128) !== 0;
  cfg.s1.wxn = (f & 256) !== 0;
  cfg.s1.pan = (f & 512) !== 0;
  cfg.s1.ips = p.ips;
  cfg.s1.mairLo = p.mair | 0;
  cfg.s1.mairHi = Math.imul(p.mair, 0x9e3779b1);
  return cfg;
}

interface Params {
  seed: number;
  world: number;
  tsz: number;
  tsz1: number;
  ips: number;
  oas: number;
  flags: number;
  mair: number;
  probes: Array<[number, number, number, boolean]>;
}

/** Everything observable about one translation. */
function outcome(f: number, r: TranslationResult): unknown[] {
  return [
    f,
    r.fault,
    r.faultClass,
    r.s2,
    r.oa,
    r.ipa,
    r.fetchAddr,
    r.pageShift,
    r.level,
    r.perm,
    r.attr,
    r.tlbHit,
  ];
}

/**
 * Counts, on an engine, the TLB misses its one-piece path (the fast walk in translate64)
 * completed: a stage-1 walk was counted and the general path (miss) was not called. Also the
 * TLB fills among those made in place (without Tlb.insert).
 */
function spy(eng: TranslationEngine): { fast: number; inPlace: number } {
  const c = { fast: 0, inPlace: 0 };
  const e = eng as unknown as Record<string, (...a: unknown[]) => number>;
  const t = eng.tlb as unknown as Record<string, (...a: unknown[]) => number> | null;
  const translate64 = e.translate64!.bind(eng);
  const miss = e.miss!.bind(eng);
  let general = false;
  let inserted = false;
  e.miss = (...a: unknown[]) => {
    general = true;
    return miss(...a);
  };
  if (t !== null) {
    const insert = t.insert!.bind(eng.tlb);
    t.insert = (...a: unknown[]) => {
      inserted = true;
      return insert(...a);
    };
  }
  e.translate64 = (...a: unknown[]) => {
    general = false;
    inserted = false;
    const fills = eng.tlb?.counters.fills ?? 0;
    const walks = eng.walker.walksS1;
    const r = translate64(...a);
    if (!general && eng.walker.walksS1 > walks) {
      c.fast++;
      if (!inserted && eng.tlb !== null && eng.tlb.counters.fills > fills) c.inPlace++;
    }
    return r;
  };
  return c;
}

describe('4K stage-1 fast walk: identical to the general walk', () => {
  it('same results, counters, TLB contents and descriptor updates on random tables', () => {
    let fastWalks = 0; // misses the fast path completed (so the comparison covers it)
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 0x7fffffff }),
          world: fc.integer({ min: 0, max: 2 }),
          tsz: fc.integer({ min: 14, max: 40 }),
          tsz1: fc.integer({ min: 16, max: 39 }),
          ips: fc.constantFrom(32, 36, 40, 42, 44, 48, 52),
          oas: fc.constantFrom(40, 48, 52),
          flags: fc.integer({ min: 0, max: 1023 }),
          mair: fc.integer({ min: 0, max: 0x7fffffff }),
          sets: fc.constantFrom(0, 1, 2, 64), // no TLB; small TLBs: full sets, evictions
          probes: fc.array(
            fc.tuple(
              fc.integer({ min: 0, max: 0xffffffff }),
              fc.oneof(
                fc.integer({ min: 0, max: 0xffff }),
                fc.integer({ min: 0, max: 0xff }),
                fc.constantFrom(0xffff00, 0xffffff, 0xff00_ffff),
              ),
              fc.integer({ min: 0, max: 7 }),
              fc.boolean(),
            ),
            { minLength: 1, maxLength: 40 },
          ),
        }),
        (p: Params & { sets: number }) => {
          const A = build(p.seed);
          const B = build(p.seed);
          const fast = new TranslationEngine(A.m.mem, { oas: p.oas, tlbSets: p.sets });
          const slow = new TranslationEngine(B.m.mem, { oas: p.oas, tlbSets: p.sets });
          slow.walker.fastPath = false;
          const count = spy(fast);
          const ra = new TranslationResult();
          const rb = new TranslationResult();
          const ca = config(A.pages, p);
          const cb = config(B.pages, p);
          for (const [lo, hi, access, twice] of p.probes) {
            for (let k = 0; k < (twice ? 2 : 1); k++) {
              ra.clear();
              rb.clear();
              const fa = fast.translate64(ca, lo, hi, access, ra);
              const fb = slow.translate64(cb, lo, hi, access, rb);
              expect(outcome(fa, ra)).toEqual(outcome(fb, rb));
            }
          }
          fastWalks += count.fast;
          const wa = fast.walker;
          const wb = slow.walker;
          expect([wa.walksS1, wa.descriptorReads, wa.hwUpdates]).toEqual([
            wb.walksS1,
            wb.descriptorReads,
            wb.hwUpdates,
          ]);
          if (p.sets !== 0) {
            expect(fast.tlb!.dump()).toEqual(slow.tlb!.dump());
            // every slot word: tags, context, output address, permissions and flags, attributes
            expect(Array.from(fast.tlb!.slots)).toEqual(Array.from(slow.tlb!.slots));
            expect(fast.tlb!.counters).toEqual(slow.tlb!.counters);
          } else expect(fast.tlb).toBeNull();
          for (let i = 0; i < A.pages.length; i++) {
            for (let off = 0; off < 4096; off += 8) {
              A.m.mem.read64(A.pages[i]! + off);
              B.m.mem.read64(B.pages[i]! + off);
              if (A.m.mem.r64[0] !== B.m.mem.r64[0] || A.m.mem.r64[1] !== B.m.mem.r64[1]) {
                expect([i, off, A.m.mem.r64[0], A.m.mem.r64[1]]).toEqual([
                  i,
                  off,
                  B.m.mem.r64[0],
                  B.m.mem.r64[1],
                ]);
              }
            }
          }
        },
      ),
      { numRuns: 200 },
    );
    expect(fastWalks).toBeGreaterThan(15);
  });

  it('same on regular tables with random leaf and table attributes (most walks reach the leaf)', () => {
    fc.assert(
      fc.property(
        fc.record({
          world: fc.integer({ min: 0, max: 2 }),
          tsz: fc.constantFrom(16, 20, 25, 30, 33),
          ips: fc.constantFrom(32, 36, 40, 48, 52),
          flags: fc.integer({ min: 0, max: 1023 }),
          mair: fc.integer({ min: 0, max: 0x7fffffff }),
          leaves: fc.array(
            fc.record({
              va: fc.integer({ min: 0, max: 2 ** 25 - 1 }), // 4K page number below 2^37
              level: fc.constantFrom(3, 3, 3, 2, 1),
              lo: fc.integer({ min: 0, max: 0xfff }),
              hi: fc.integer({ min: 0, max: 0xffff_ffff }),
              oaHi: fc.constantFrom(0, 0, 0, 1, 0x100, 0xffff),
              tableHi: fc.integer({ min: 0, max: 0xf }),
            }),
            { minLength: 1, maxLength: 8 },
          ),
          access: fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 2, maxLength: 2 }),
        }),
        (p) => {
          const engines: TranslationEngine[] = [];
          const outcomes: unknown[][] = [];
          for (const useFast of [true, false]) {
            const m = new Machine({ seed: 1 });
            const eng = new TranslationEngine(m.mem, { tlbSets: 16 });
            eng.walker.fastPath = useFast;
            engines.push(eng);
            const params: Params = {
              seed: 1,
              world: p.world,
              tsz: p.tsz,
              tsz1: 16,
              ips: p.ips,
              oas: 48,
              flags: p.flags,
              mair: p.mair,
              probes: [],
            };
            const root = m.pages.allocPage('t');
            const cfg = config([root, root], params);
            const ia = 64 - p.tsz;
            const start = ia > 39 ? 0 : ia > 30 ? 1 : 2;
            for (const l of p.leaves) {
              const va = (l.va * 4096) % 2 ** ia;
              let table = root;
              for (let level = start; level < l.level; level++) {
                const sh = 12 + 9 * (3 - level);
                const slot = table + (Math.floor(va / 2 ** sh) % 512) * 8;
                m.mem.read64(slot);
                if ((m.mem.r64[0]! & 3) === 3) {
                  table = (m.mem.r64[0]! & ~0xfff) >>> 0;
                  continue;
                }
                const t = m.pages.allocPage('t');
                m.mem.write64(slot, t | 3, l.tableHi << 27); // random APTable/XNTable
                table = t;
              }
              const sh = 12 + 9 * (3 - l.level);
              const slot = table + (Math.floor(va / 2 ** sh) % 512) * 8;
              const oaLo = (0x8000_0000 + ((l.va * 4096) & 0x3fff_f000)) & ~(2 ** Math.min(sh, 31) - 1);
              const lo = oaLo | (l.lo & 0xffc) | 1 | (l.level === 3 ? 2 : 0) | 0;
              m.mem.write64(slot, lo, (l.hi & 0x7868_0000) | l.oaHi);
            }
            const res = new TranslationResult();
            const out: unknown[] = [];
            for (const l of p.leaves) {
              const va = (l.va * 4096) % 2 ** ia;
              for (const a of p.access) {
                for (let k = 0; k < 2; k++) {
                  res.clear();
                  out.push(outcome(eng.translate(cfg, va + 0x7f8, a, res), res));
                }
              }
            }
            out.push([eng.walker.walksS1, eng.walker.descriptorReads, eng.walker.hwUpdates]);
            out.push(eng.tlb!.dump(), Array.from(eng.tlb!.slots));
            outcomes.push(out);
          }
          expect(outcomes[0]).toEqual(outcomes[1]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fills full TLB sets in place exactly as the general fill does (evictions, mixed contexts and sizes)', () => {
    let inPlace = 0; // fills the fast path made in place (a full set, a victim of the same context)
    let general = 0; // one-piece misses whose fill needed Tlb.insert (a set not full, another context or size)
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 0x7fffffff }),
          sets: fc.constantFrom(1, 2, 4),
          asid: fc.constantFrom(0, 9), // ASID 0: global and non-global entries share the context word
          n: fc.integer({ min: 20, max: 300 }),
          // with block accesses the TLB holds a 2 MiB entry at times (then no fill is in place)
          blocks: fc.boolean(),
        }),
        (p) => {
          const outs: unknown[][] = [];
          for (const useFast of [true, false]) {
            const m = new Machine({ seed: 1 });
            const eng = new TranslationEngine(m.mem, { tlbSets: p.sets });
            eng.walker.fastPath = useFast;
            const count = useFast ? spy(eng) : null;
            const rng = new Rng(p.seed);
            const r = () => rng.next32();
            // root -> l1 -> l2 -> two page tables, plus a 2 MiB block; leaves global or not,
            // read-only or not
            const [root, l1, l2, t0, t1] = [0, 1, 2, 3, 4].map(() => m.pages.allocPage('t'));
            m.mem.write64(root!, l1! | 3, 0);
            m.mem.write64(l1!, l2! | 3, 0);
            m.mem.write64(l2!, t0! | 3, 0);
            m.mem.write64(l2! + 8, t1! | 3, 0);
            m.mem.write64(l2! + 16, 0x4000_0000 | 1 | (1 << 6) | (1 << 10), 0); // block at 4 MiB
            for (const t of [t0!, t1!]) {
              for (let i = 0; i < 512; i++) {
                const lo =
                  (0x9000_0000 + i * 0x1000) | 3 | (1 << 6) | (1 << 10) | (r() & ((1 << 11) | (1 << 7)));
                m.mem.write64(t + i * 8, lo, 0);
              }
            }
            const cfg = makeTranslationConfig();
            cfg.s1.ttb0 = root!;
            cfg.s1.asid = p.asid;
            const res = new TranslationResult();
            const out: unknown[] = [];
            for (let k = 0; k < p.n; k++) {
              const x = r();
              const va = (x % (p.blocks ? 1536 : 1024)) * 4096 + (x >>> 21);
              res.clear();
              out.push(outcome(eng.translate(cfg, va, (x >>> 11) & 1, res), res));
            }
            out.push([
              eng.walker.walksS1,
              eng.walker.descriptorReads,
              eng.tlb!.counters,
              eng.tlb!.dump(),
              Array.from(eng.tlb!.slots),
            ]);
            outs.push(out);
            if (count !== null) {
              inPlace += count.inPlace;
              general += count.fast - count.inPlace;
            }
          }
          expect(outs[0]).toEqual(outs[1]);
        },
      ),
      { numRuns: 100 },
    );
    expect(inPlace).toBeGreaterThan(1000);
    expect(general).toBeGreaterThan(100);
  });

  it('walks that the fast path takes are actually taken by it (and agree)', () => {
    // a regular 4-level table: every translation succeeds through the fast path
    const A = build(12345);
    const eng = new TranslationEngine(A.m.mem);
    const m = A.m;
    const root = m.pages.allocPage('t');
    const l1 = m.pages.allocPage('t');
    const l2 = m.pages.allocPage('t');
    const l3 = m.pages.allocPage('t');
    m.mem.write64(root + 8 * 1, (l1 >>> 0) | 3, 0);
    m.mem.write64(l1 + 8 * 2, (l2 >>> 0) | 3, 0);
    m.mem.write64(l2 + 8 * 3, (l3 >>> 0) | 3, 0);
    m.mem.write64(l2 + 8 * 4, 0x4000_0000 | 1 | (1 << 6) | (1 << 10), 0x1); // 2 MiB block at 0x1_4000_0000
    for (let i = 0; i < 512; i++)
      m.mem.write64(l3 + 8 * i, (0x9000_0000 + i * 0x1000) | 3 | (1 << 6) | (1 << 10), 0);
    const cfg = makeTranslationConfig();
    cfg.s1.ttb0 = root;
    const res = new TranslationResult();
    const base = 2 ** 39 + 2 * 2 ** 30 + 3 * 2 ** 21;
    for (let i = 0; i < 512; i++) {
      expect(eng.translate(cfg, base + i * 4096 + 0x18, 0, res)).toBe(0);
      expect(res.oa).toBe(0x9000_0000 + i * 0x1000 + 0x18);
    }
    expect(eng.translate(cfg, base + 2 ** 21 + 0x12345, 0, res)).toBe(0);
    expect(res.oa).toBe(0x1_4001_2345);
    expect(res.pageShift).toBe(21);
    expect(eng.walker.walksS1).toBe(513);
    expect(eng.walker.descriptorReads).toBe(512 * 4 + 3);
  });

  it('tables outside the dense window: the general walk translates them, the fast path declines', () => {
    // two RAM regions: the dense window is the start of the larger one; the tables live in the other
    const m = new Machine({
      seed: 1,
      ram: [
        { base: 0x8000_0000, size: 0x4000_0000 },
        { base: 0x2000_0000, size: 0x10_0000, name: 'sram' },
      ],
    });
    m.mem.write32(0x8000_0000, 1); // the first store places the dense window
    expect(m.mem.denseBase).toBe(0x8000_0000);
    const eng = new TranslationEngine(m.mem);
    const count = spy(eng);
    const t = [0x2000_0000, 0x2000_1000, 0x2000_2000, 0x2000_3000];
    m.mem.write64(t[0]!, t[1]! | 3, 0);
    m.mem.write64(t[1]!, t[2]! | 3, 0);
    m.mem.write64(t[2]!, t[3]! | 3, 0);
    m.mem.write64(t[3]! + 8 * 5, 0x9000_5000 | 3 | (1 << 6) | (1 << 10), 0);
    const cfg = makeTranslationConfig();
    cfg.s1.ttb0 = t[0]!;
    const res = new TranslationResult();
    expect(eng.translate(cfg, 0x5abc, 0, res)).toBe(0);
    expect(res.oa).toBe(0x9000_5abc);
    expect(eng.translate(cfg, 0x6000, 0, res)).not.toBe(0); // an invalid page: a fault, as always
    expect(count.fast).toBe(0);
    // the same tables copied into the dense window: the fast path takes the walk
    const d = 0x8010_0000;
    m.mem.write64(d, (d + 0x1000) | 3, 0);
    m.mem.write64(d + 0x1000, (d + 0x2000) | 3, 0);
    m.mem.write64(d + 0x2000, (d + 0x3000) | 3, 0);
    m.mem.write64(d + 0x3000 + 8 * 7, 0x9000_7000 | 3 | (1 << 6) | (1 << 10), 0);
    const cfg2 = makeTranslationConfig();
    cfg2.s1.ttb0 = d;
    expect(eng.translate(cfg2, 0x7abc, 0, res)).toBe(0); // a page the TLB does not hold
    expect(res.oa).toBe(0x9000_7abc);
    expect(count.fast).toBe(1);
  });
});
