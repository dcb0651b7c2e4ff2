import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TranslationEngine } from '../../../src/hw/smmu-common/translate.ts';
import {
  C_BAD_CD,
  C_BAD_STE,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TRANSLATION,
  F_WALK_EABT,
  makeTranslationConfig,
  TranslationResult,
} from '../../../src/hw/smmu-common/translate-types.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { Rng } from '../../../src/platform/rng.ts';

const VALID_FAULTS = new Set([
  0,
  F_TRANSLATION,
  F_ADDR_SIZE,
  F_ACCESS,
  F_PERMISSION,
  F_WALK_EABT,
  C_BAD_CD,
  C_BAD_STE,
]);
const OUTSIDE_RAM = 0x10_0000_0000;

/**
 * Fill `pages` (each 2^g bytes) with random descriptors whose addresses mostly point at pages
 * of the pool (so walks go deep), sometimes at random frames, outside RAM, or above 2^40.
 */
function fillRandom(
  m: Machine,
  pages: number[],
  g: number,
  seed: number,
  opts: { hierarchical: boolean },
): void {
  const rng = new Rng(seed);
  const r = () => rng.next32();
  const pool = pages;
  for (const p of pages) {
    for (let off = 0; off < 2 ** g; off += 8) {
      const k = r() % 100;
      let addr: number;
      if (k < 70) addr = pool[r() % pool.length]!;
      else if (k < 90) addr = 0x8000_0000 + (r() % 0x4_0000) * 0x1000;
      else if (k < 95) addr = OUTSIDE_RAM + (r() % 16) * 2 ** g;
      else addr = 2 ** 40 + (r() % 16) * 2 ** g;
      addr -= addr % 2 ** g;
      let lo = (addr >>> 0) & ~((1 << g) - 1);
      let hi = Math.floor(addr / 2 ** 32) & 0xffff;
      if (g === 16) {
        lo |= ((Math.floor(addr / 2 ** 48) & 0xf) << 12) >>> 0;
      }
      const typ = r() % 10; // 0-1 invalid (20%), else valid with random table/page bit
      lo |= typ < 2 ? 0 : 1;
      lo |= r() % 4 !== 0 ? 2 : 0; // mostly table/page
      lo |= r() & (0x3 << 6); // AP
      if (r() % 8 !== 0) lo |= 1 << 10; // AF mostly set
      lo |= r() & (1 << 11); // nG
      lo |= r() & (7 << 2); // AttrIndx
      hi |= r() & ((1 << 21) | (1 << 22)); // PXN, UXN
      if (r() % 16 === 0) hi |= 1 << 19; // DBM
      if (opts.hierarchical && r() % 5 === 0) hi |= r() & (0xf << 27); // PXNTable..APTable
      m.mem.write64(p + off, lo | 0, hi | 0);
    }
  }
}

describe('walker fuzz: random descriptors never break the model', () => {
  it('every outcome is a translation or a fault with a valid code (S1, S2, nested; all granules)', () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 0x7fffffff }),
          g: fc.constantFrom(12, 14, 16),
          g2: fc.constantFrom(12, 14, 16),
          tsz: fc.integer({ min: 10, max: 45 }),
          s2tsz: fc.integer({ min: 10, max: 45 }),
          sl0: fc.integer({ min: 0, max: 3 }),
          ips: fc.constantFrom(32, 36, 40, 42, 44, 48, 52),
          mode: fc.constantFrom('s1', 's2', 'nested'),
          flags: fc.integer({ min: 0, max: 255 }),
          iovas: fc.array(fc.tuple(fc.integer(), fc.integer(), fc.integer({ min: 0, max: 7 })), {
            minLength: 1,
            maxLength: 12,
          }),
        }),
        (p) => {
          const m = new Machine({ seed: 1 });
          const eng = new TranslationEngine(m.mem, { oas: p.flags & 1 ? 52 : 48, vax: (p.flags & 2) !== 0 });
          const res = new TranslationResult();
          const pages: number[] = [];
          for (let i = 0; i < 6; i++) pages.push(m.pages.alloc(Math.max(p.g, p.g2) - 12 + 4, 'fuzz'));
          fillRandom(m, pages, Math.max(p.g, p.g2), p.seed, { hierarchical: true });
          const cfg = makeTranslationConfig();
          cfg.s1Enabled = p.mode !== 's2';
          cfg.s2Enabled = p.mode !== 's1';
          cfg.vmid = p.flags & 7;
          cfg.s1.tg0 = p.g;
          cfg.s1.tg1 = p.g;
          cfg.s1.t0sz = p.tsz;
          cfg.s1.t1sz = p.tsz;
          cfg.s1.ttb0 = pages[0]!;
          cfg.s1.ttb1 = pages[1]!;
          cfg.s1.epd1 = (p.flags & 4) !== 0;
          cfg.s1.tbi0 = (p.flags & 8) !== 0;
          cfg.s1.ha = (p.flags & 16) !== 0;
          cfg.s1.hd = (p.flags & 32) !== 0;
          cfg.s1.affd = (p.flags & 64) !== 0;
          cfg.s1.ips = p.ips;
          cfg.s2.s2tg = p.g2;
          cfg.s2.s2t0sz = p.s2tsz;
          cfg.s2.s2sl0 = p.sl0;
          cfg.s2.s2ttb = pages[2]!;
          cfg.s2.s2ps = p.ips;
          cfg.s2.s2ha = (p.flags & 128) !== 0;
          cfg.s2.s2ptw = (p.flags & 64) !== 0;
          for (const [lo, hi, access] of p.iovas) {
            const f = eng.translate64(cfg, lo, hi, access, res);
            expect(VALID_FAULTS.has(f)).toBe(true);
            expect(f).toBe(res.fault);
            if (f === 0) {
              expect(Number.isInteger(res.oa) && res.oa >= 0 && res.oa < 2 ** 52).toBe(true);
              // the same access again (now possibly from the TLB) gives the same answer
              const oa = res.oa;
              expect(eng.translate64(cfg, lo, hi, access, res)).toBe(0);
              expect(res.oa).toBe(oa);
            } else {
              expect([0, 1, 2]).toContain(res.faultClass);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

// ---------------------------------------------------------------- differential reference

const AF = 1n << 10n;
const OA_MASK = 0x0003_ffff_ffff_f000n;
const bit = (d: bigint, n: number) => ((d >> BigInt(n)) & 1n) === 1n;

interface RefResult {
  fault: number;
  oa?: bigint;
  fetch?: bigint;
}

/** The VMSAv8-64 4K-granule, 48-bit, stage-1 walk written as plainly as possible. */
function refWalk(m: Machine, ttb: bigint, iova: bigint, ips: number, access: number): RefResult {
  let table = ttb;
  let noEl0 = false;
  let ro = false;
  let pxnT = false;
  let uxnT = false;
  const limit = 1n << BigInt(ips);
  for (let level = 0; level <= 3; level++) {
    const sh = BigInt(12 + 9 * (3 - level));
    const pa = table + ((iova >> sh) & 511n) * 8n;
    if (m.mem.read64(Number(pa)) !== 0) return { fault: F_WALK_EABT, fetch: pa };
    const d = (BigInt(m.mem.r64[1]! >>> 0) << 32n) | BigInt(m.mem.r64[0]! >>> 0);
    if (!bit(d, 0)) return { fault: F_TRANSLATION };
    const isTable = bit(d, 1);
    if (level < 3 && isTable) {
      const next = d & OA_MASK;
      if (next >= limit) return { fault: F_ADDR_SIZE };
      noEl0 ||= bit(d, 61);
      ro ||= bit(d, 62);
      pxnT ||= bit(d, 59);
      uxnT ||= bit(d, 60);
      table = next;
      continue;
    }
    if (level === 3 && !isTable) return { fault: F_TRANSLATION };
    if (level === 0) return { fault: F_TRANSLATION }; // no level-0 blocks with 4K (no LPA2)
    const mask = (1n << sh) - 1n;
    const base = d & OA_MASK & ~mask;
    if (base >= limit) return { fault: F_ADDR_SIZE };
    if ((d & AF) === 0n) return { fault: F_ACCESS };
    const el0 = bit(d, 6) && !noEl0;
    const readOnly = bit(d, 7) || ro;
    const write = (access & 1) !== 0;
    const exec = (access & 2) !== 0 && !write;
    const priv = (access & 4) !== 0;
    let ok: boolean;
    if (exec) ok = priv ? !bit(d, 53) && !pxnT && !(el0 && !readOnly) : !bit(d, 54) && !uxnT;
    else if (write) ok = !readOnly && (priv || el0);
    else ok = priv || el0;
    return ok ? { fault: 0, oa: base | (iova & mask) } : { fault: F_PERMISSION };
  }
  throw new Error('unreachable');
}

describe('differential: 4K stage-1 walker vs a plain BigInt reference', () => {
  it('agrees on fault code, output address and fetch address for random tables', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 0x7fffffff }),
        fc.constantFrom(32, 36, 40, 48),
        fc.array(
          fc.tuple(
            fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }),
            fc.integer({ min: 0, max: 7 }),
            fc.boolean(),
          ),
          { minLength: 1, maxLength: 16 },
        ),
        (seed, ips, probes) => {
          const m = new Machine({ seed: 1 });
          const eng = new TranslationEngine(m.mem);
          const res = new TranslationResult();
          const pages: number[] = [];
          for (let i = 0; i < 8; i++) pages.push(m.pages.allocPage('diff'));
          fillRandom(m, pages, 12, seed, { hierarchical: true });
          const cfg = makeTranslationConfig();
          cfg.s1.ttb0 = pages[0]!;
          cfg.s1.t0sz = 16;
          cfg.s1.ips = ips;
          for (const [iova, access, twice] of probes) {
            const ref = refWalk(m, BigInt(pages[0]!), iova, ips, access);
            const f = eng.translate(cfg, Number(iova), access, res);
            expect(f).toBe(ref.fault);
            if (f === 0) expect(BigInt(res.oa)).toBe(ref.oa);
            if (f === F_WALK_EABT) expect(BigInt(res.fetchAddr)).toBe(ref.fetch);
            if (twice) {
              // and again, through the TLB when the first one was cached
              expect(eng.translate(cfg, Number(iova), access, res)).toBe(ref.fault);
              if (ref.fault === 0) expect(BigInt(res.oa)).toBe(ref.oa);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
