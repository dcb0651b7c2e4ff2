import { describe, expect, it } from 'vitest';
import { D_AF, D_AP2, D_NG, DH_DBM, DH_PXN, DH_UXN } from '../../../src/arch/vmsa/descriptor.ts';
import { levelShift, s1StartLevel, s2Sl0ForLevel, s2StartBits } from '../../../src/arch/vmsa/granule.ts';
import { TranslationEngine } from '../../../src/hw/smmu-common/translate.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_READ,
  ACCESS_WRITE,
  C_BAD_CD,
  C_BAD_STE,
  CLASS_CD,
  CLASS_IN,
  CLASS_TT,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TRANSLATION,
  F_WALK_EABT,
  makeTranslationConfig,
  type TranslationConfig,
  TranslationResult,
} from '../../../src/hw/smmu-common/translate-types.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { PtBuilder, S1_LEAF, S2_LEAF } from './pt-builder.ts';

const GRANULES = [12, 14, 16] as const;
const gName = (g: number) => `${2 ** (g - 10)}K`;

function setup(opts: ConstructorParameters<typeof TranslationEngine>[1] = {}) {
  const m = new Machine({ seed: 1 });
  const eng = new TranslationEngine(m.mem, opts);
  const res = new TranslationResult();
  return { m, eng, res };
}

function s1Config(b: PtBuilder): TranslationConfig {
  const c = makeTranslationConfig();
  c.s1.ttb0 = b.root;
  c.s1.tg0 = b.g;
  c.s1.t0sz = 64 - b.ia;
  c.s1.epd1 = true;
  c.s1.asid = 1;
  return c;
}

/** A copy of `cfg` with stage-1 fields changed (a used config is frozen). */
function withS1(cfg: TranslationConfig, change: Partial<TranslationConfig['s1']>): TranslationConfig {
  return { ...cfg, s1: { ...cfg.s1, ...change } };
}

function s2Config(b: PtBuilder, sl: number): TranslationConfig {
  const c = makeTranslationConfig();
  c.s1Enabled = false;
  c.s2Enabled = true;
  c.vmid = 3;
  c.s2.vmid = 3;
  c.s2.s2ttb = b.root;
  c.s2.s2tg = b.g;
  c.s2.s2t0sz = 64 - b.ia;
  c.s2.s2sl0 = s2Sl0ForLevel(b.g, sl);
  return c;
}

/** A page-aligned-to-g address below 2^ia that uses high index bits at every level. */
function sampleVa(g: number, ia: number, salt: number): number {
  const top = 2 ** ia;
  const v = Math.floor(top * (0.37 + 0.1 * salt)) % top;
  return v - (v % 2 ** g);
}

describe('stage 1: every granule x every start level', () => {
  for (const g of GRANULES) {
    // the largest input size that starts at each level
    const byLevel = new Map<number, number>();
    for (let ia = 48; ia >= 25; ia--) {
      const l = s1StartLevel(g, ia);
      if (!byLevel.has(l)) byLevel.set(l, ia);
    }
    for (const [level, ia] of byLevel) {
      it(`${gName(g)} granule, ${ia}-bit input, start level ${level}: pages and blocks translate`, () => {
        const { m, eng, res } = setup();
        const b = new PtBuilder(m, g, 1, ia);
        expect(b.start).toBe(level);
        const cfg = s1Config(b);
        const va = sampleVa(g, ia, 0);
        const pa = 0x9000_0000 + 7 * 2 ** g;
        b.map(va, pa, 3);
        expect(eng.translate(cfg, va + 0x18, ACCESS_READ, res)).toBe(0);
        expect(res.oa).toBe(pa + 0x18);
        expect(res.pageShift).toBe(g);
        expect(res.level).toBe(3);
        // blocks at every level that allows them (and that the walk reaches)
        const blockLevels = g === 12 ? [1, 2] : [2];
        for (const bl of blockLevels) {
          if (bl < level) continue;
          const sh = levelShift(g, bl);
          if (sh >= ia) continue;
          const bva = sampleVa(sh, ia, 3 + bl) % 2 ** ia;
          const bpa = 0x8000_0000; // aligned for every block size up to 2 GiB
          const alt = new PtBuilder(m, g, 1, ia);
          alt.map(bva, bpa, bl);
          const c2 = s1Config(alt);
          const off = 2 ** sh - 8;
          expect(eng.translate(c2, bva + off, ACCESS_READ, res)).toBe(0);
          expect(res.oa).toBe(bpa + off);
          expect(res.pageShift).toBe(sh);
          expect(res.level).toBe(bl);
        }
      });
    }
  }

  it('64K granule with a 52-bit VA (VAX) starts at level 1 with 1024 entries', () => {
    const { m, eng, res } = setup({ vax: true, oas: 52 });
    const b = new PtBuilder(m, 16, 1, 52);
    expect(b.start).toBe(1);
    const cfg = s1Config(b);
    cfg.s1.ips = 52;
    const va = 0xf_1234_5678_0000;
    b.map(va, 0x8765_0000);
    expect(eng.translate(cfg, va + 0x42, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8765_0042);
  });

  it('a block where the granule does not allow one is a translation fault', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 14, 1, 48); // 16K: level 1 blocks need LPA2
    const va = 0x40_0000_0000;
    b.map(va, 0x8000_0000, 1);
    expect(eng.translate(s1Config(b), va, ACCESS_READ, res)).toBe(F_TRANSLATION);
    expect(res.level).toBe(1);
    // level 3 with bits[1:0] = 0b01 is reserved
    const c = new PtBuilder(m, 12, 1, 48);
    c.writeRaw(0x1000, 3, 0x8000_0000 | S1_LEAF, 0);
    expect(eng.translate(s1Config(c), 0x1000, ACCESS_READ, res)).toBe(F_TRANSLATION);
  });
});

describe('stage 2: every granule x every start level, with concatenated start tables', () => {
  for (const g of GRANULES) {
    for (let sl = 0; sl <= 3; sl++) {
      const sl0 = s2Sl0ForLevel(g, sl);
      if (sl0 < 0 || sl0 > 2) continue;
      // input sizes valid at this start level: smallest, one full table, and most concatenated
      const ias: number[] = [];
      for (let ia = 25; ia <= 48; ia++) if (s2StartBits(g, ia, sl) > 0) ias.push(ia);
      const picks = [
        ...new Set([ias[0]!, ias.find((x) => s2StartBits(g, x, sl) === g - 3), ias.at(-1)!]),
      ].filter((x): x is number => x !== undefined);
      for (const ia of picks) {
        const nb = s2StartBits(g, ia, sl);
        const concat = nb > g - 3 ? 2 ** (nb - (g - 3)) : 1;
        it(`${gName(g)} granule, ${ia}-bit IPA, S2SL0=${sl0} (level ${sl}, ${concat} table${concat > 1 ? 's' : ''})`, () => {
          const { m, eng, res } = setup();
          const b = new PtBuilder(m, g, 2, ia, sl);
          const cfg = s2Config(b, sl);
          // an IPA in the last concatenated table exercises the concatenation
          const ipa = 2 ** ia - 5 * 2 ** g;
          const pa = 0x9100_0000 + 2 * 2 ** g;
          b.map(ipa, pa);
          expect(eng.translate(cfg, ipa + 0x30, ACCESS_WRITE, res)).toBe(0);
          expect(res.oa).toBe(pa + 0x30);
          expect(res.pageShift).toBe(g);
          // an IPA at the bottom as well
          b.map(0, 0x9200_0000);
          expect(eng.translate(cfg, 0x10, ACCESS_READ, res)).toBe(0);
          expect(res.oa).toBe(0x9200_0010);
          // beyond the IPA size: stage-2 translation fault
          expect(eng.translate(cfg, 2 ** ia, ACCESS_READ, res)).toBe(F_TRANSLATION);
          expect(res.s2).toBe(true);
          expect(res.faultClass).toBe(CLASS_IN);
        });
      }
    }
  }

  it('stage-2 blocks at each level that allows them', () => {
    const { m, eng, res } = setup();
    for (const [g, levels] of [
      [12, [1, 2]],
      [14, [2]],
      [16, [2]],
    ] as const) {
      for (const bl of levels) {
        const b = new PtBuilder(m, g, 2, 40, g === 12 ? 1 : 2);
        const sh = levelShift(g, bl);
        const ipa = 3 * 2 ** sh;
        const pa = bl === 1 ? 0x8000_0000 : 0x8000_0000 + 2 ** sh;
        b.map(ipa, pa, bl);
        expect(eng.translate(s2Config(b, b.start), ipa + 0x1238, ACCESS_READ, res)).toBe(0);
        expect(res.oa).toBe(pa + 0x1238);
        expect(res.pageShift).toBe(sh);
      }
    }
  });

  it('an invalid S2SL0 / S2T0SZ combination is a configuration error (C_BAD_STE)', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 2, 40, 1);
    const cfg = s2Config(b, 1);
    cfg.s2.s2sl0 = 0; // level 2 start for a 40-bit IPA would need 2^19 bits at level 2
    expect(eng.translate(cfg, 0, ACCESS_READ, res)).toBe(C_BAD_STE);
    cfg.s2.s2sl0 = 3;
    expect(eng.translate(cfg, 0, ACCESS_READ, res)).toBe(C_BAD_STE);
    cfg.s2.s2sl0 = 1;
    cfg.s2.s2endi = true;
    expect(eng.translate(cfg, 0, ACCESS_READ, res)).toBe(C_BAD_STE);
  });
});

describe('permissions', () => {
  const AP = (ap: number) => (S1_LEAF & ~(3 << 6)) | (ap << 6);

  it('stage 1 AP: write to read-only, unprivileged access to privileged-only', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    const cfg = s1Config(b);
    b.map(0x1000, 0x8000_1000, 3, { lo: AP(0) }); // EL1 RW, EL0 none
    b.map(0x2000, 0x8000_2000, 3, { lo: AP(1) }); // RW both
    b.map(0x3000, 0x8000_3000, 3, { lo: AP(2) }); // EL1 RO
    b.map(0x4000, 0x8000_4000, 3, { lo: AP(3) }); // RO both
    const t = (va: number, a: number) => eng.translate(cfg, va, a, res);
    expect(t(0x1000, ACCESS_READ | ACCESS_PRIV)).toBe(0);
    expect(t(0x1000, ACCESS_WRITE | ACCESS_PRIV)).toBe(0);
    expect(t(0x1000, ACCESS_READ)).toBe(F_PERMISSION);
    expect(res.s2).toBe(false);
    expect(t(0x2000, ACCESS_WRITE)).toBe(0);
    expect(t(0x3000, ACCESS_READ | ACCESS_PRIV)).toBe(0);
    expect(t(0x3000, ACCESS_WRITE | ACCESS_PRIV)).toBe(F_PERMISSION);
    expect(t(0x3000, ACCESS_READ)).toBe(F_PERMISSION);
    expect(t(0x4000, ACCESS_READ)).toBe(0);
    expect(t(0x4000, ACCESS_WRITE)).toBe(F_PERMISSION);
    // cached entries give the same answers (second round hits the TLB)
    expect(t(0x4000, ACCESS_WRITE)).toBe(F_PERMISSION);
    expect(res.tlbHit).toBe(true);
    expect(t(0x1000, ACCESS_READ)).toBe(F_PERMISSION);
  });

  it('stage 1 instruction fetch: UXN, PXN, EL0-writable implies PXN, WXN', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    const cfg = s1Config(b);
    b.map(0x1000, 0x8000_1000, 3, { lo: AP(3), hi: DH_UXN });
    b.map(0x2000, 0x8000_2000, 3, { lo: AP(3), hi: DH_PXN });
    b.map(0x3000, 0x8000_3000, 3, { lo: AP(1) }); // EL0 RW: EL1 may not execute
    b.map(0x4000, 0x8000_4000, 3, { lo: AP(0) }); // EL1 RW
    const t = (va: number, a: number) => eng.translate(cfg, va, a, res);
    expect(t(0x1000, ACCESS_EXEC)).toBe(F_PERMISSION);
    expect(t(0x1000, ACCESS_EXEC | ACCESS_PRIV)).toBe(0);
    expect(t(0x2000, ACCESS_EXEC)).toBe(0);
    expect(t(0x2000, ACCESS_EXEC | ACCESS_PRIV)).toBe(F_PERMISSION);
    expect(t(0x3000, ACCESS_EXEC | ACCESS_PRIV)).toBe(F_PERMISSION);
    expect(t(0x3000, ACCESS_EXEC)).toBe(0);
    expect(t(0x4000, ACCESS_EXEC | ACCESS_PRIV)).toBe(0);
    // WXN (fresh engine: the entries above are global, so they would hit for any ASID)
    const w = s1Config(b);
    w.s1.wxn = true;
    const e2 = new TranslationEngine(m.mem);
    expect(e2.translate(w, 0x4000, ACCESS_EXEC | ACCESS_PRIV, res)).toBe(F_PERMISSION);
    expect(e2.translate(w, 0x1000, ACCESS_EXEC | ACCESS_PRIV, res)).toBe(0); // read-only: WXN n/a
  });

  it('stage 1 hierarchical APTable removes write and EL0 access below it (unless HAD)', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1000, 0x8000_1000, 3, { lo: AP(1) });
    // set APTable = 0b11 in the level-2 table descriptor
    const l2 = b.slot(0x1000, 2);
    const [lo, hi] = b.read(l2);
    m.mem.write64(l2, lo, hi | (3 << 29));
    const cfg = s1Config(b);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(F_PERMISSION);
    expect(eng.translate(cfg, 0x1000, ACCESS_WRITE | ACCESS_PRIV, res)).toBe(F_PERMISSION);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ | ACCESS_PRIV, res)).toBe(0);
    const had = s1Config(b);
    had.s1.had0 = true;
    expect(new TranslationEngine(m.mem).translate(had, 0x1000, ACCESS_WRITE, res)).toBe(0);
  });

  it('stage 2 S2AP read/write denial and XN (with FEAT_XNX)', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 2, 40, 1);
    const cfg = s2Config(b, 1);
    const leaf = (s2ap: number) => (S2_LEAF & ~(3 << 6)) | (s2ap << 6);
    b.map(0x1000, 0x8000_1000, 3, { lo: leaf(1) }); // read-only
    b.map(0x2000, 0x8000_2000, 3, { lo: leaf(2) }); // write-only
    b.map(0x3000, 0x8000_3000, 3, { lo: leaf(0) }); // none
    b.map(0x4000, 0x8000_4000, 3, { lo: leaf(3), hi: DH_UXN }); // XN = 0b10: never
    b.map(0x5000, 0x8000_5000, 3, { lo: leaf(3), hi: DH_PXN }); // XN = 0b01: not EL1
    const t = (va: number, a: number) => eng.translate(cfg, va, a, res);
    expect(t(0x1000, ACCESS_READ)).toBe(0);
    expect(t(0x1000, ACCESS_WRITE)).toBe(F_PERMISSION);
    expect(res.s2).toBe(true);
    expect(res.faultClass).toBe(CLASS_IN);
    expect(res.ipa).toBe(0x1000);
    expect(t(0x2000, ACCESS_READ)).toBe(F_PERMISSION);
    expect(t(0x2000, ACCESS_WRITE)).toBe(0);
    expect(t(0x3000, ACCESS_READ)).toBe(F_PERMISSION);
    expect(t(0x4000, ACCESS_READ)).toBe(0);
    expect(t(0x4000, ACCESS_EXEC)).toBe(F_PERMISSION);
    expect(t(0x4000, ACCESS_EXEC | ACCESS_PRIV)).toBe(F_PERMISSION);
    expect(t(0x5000, ACCESS_EXEC)).toBe(0);
    expect(t(0x5000, ACCESS_EXEC | ACCESS_PRIV)).toBe(F_PERMISSION);
  });
});

describe('access flag and dirty state', () => {
  it('AF = 0 faults (F_ACCESS); AFFD suppresses the fault', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1000, 0x8000_1000, 3, { lo: S1_LEAF & ~D_AF });
    const cfg = s1Config(b);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(F_ACCESS);
    expect(res.level).toBe(3);
    const affd = s1Config(b);
    affd.s1.affd = true;
    expect(eng.translate(affd, 0x1000, ACCESS_READ, res)).toBe(0);
    expect(b.read(b.slot(0x1000, 3))[0] & D_AF).toBe(0); // not updated
  });

  it('HA: the SMMU sets AF in the descriptor in memory', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    const slot = b.map(0x1000, 0x8000_1000, 3, { lo: S1_LEAF & ~D_AF });
    const cfg = s1Config(b);
    cfg.s1.ha = true;
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(0);
    expect(b.read(slot)[0] & D_AF).toBe(D_AF);
    // an engine without HTTU ignores CD.HA
    const plain = new TranslationEngine(m.mem, { httu: false });
    const s2 = b.map(0x2000, 0x8000_2000, 3, { lo: S1_LEAF & ~D_AF });
    expect(plain.translate(cfg, 0x2000, ACCESS_READ, res)).toBe(F_ACCESS);
    expect(b.read(s2)[0] & D_AF).toBe(0);
  });

  it('HD + DBM: a write to a writable-clean page marks it dirty (AP[2] cleared in memory)', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    const slot = b.map(0x1000, 0x8000_1000, 3, { lo: S1_LEAF | (3 << 6), hi: DH_DBM }); // RO + DBM
    const cfg = s1Config(b);
    cfg.s1.ha = true;
    cfg.s1.hd = true;
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(0); // cached clean
    expect(b.read(slot)[0] & D_AP2).toBe(D_AP2);
    expect(eng.translate(cfg, 0x1000, ACCESS_WRITE, res)).toBe(0);
    expect(b.read(slot)[0] & D_AP2).toBe(0);
    expect(eng.translate(cfg, 0x1000, ACCESS_WRITE, res)).toBe(0);
    expect(res.tlbHit).toBe(true);
    // without DBM the same write is a permission fault
    b.map(0x2000, 0x8000_2000, 3, { lo: S1_LEAF | (3 << 6) });
    expect(eng.translate(cfg, 0x2000, ACCESS_WRITE, res)).toBe(F_PERMISSION);
  });

  it('stage-2 AF fault and S2HA update', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 2, 40, 1);
    const slot = b.map(0x1000, 0x8000_1000, 3, { lo: S2_LEAF & ~D_AF });
    const cfg = s2Config(b, 1);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(F_ACCESS);
    expect(res.s2).toBe(true);
    cfg.s2.s2ha = true;
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(0);
    expect(b.read(slot)[0] & D_AF).toBe(D_AF);
  });
});

describe('address size and external aborts', () => {
  it('OA above the IPS is an address size fault', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1000, 0x1_0000_0000, 3);
    b.map(0x2000, 0x8000_2000, 3);
    const cfg = s1Config(b);
    cfg.s1.ips = 32;
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(F_ADDR_SIZE);
    expect(res.s2).toBe(false);
    expect(eng.translate(cfg, 0x2000, ACCESS_READ, res)).toBe(0);
    // the IPS is capped at the SMMU's OAS
    const small = new TranslationEngine(m.mem, { oas: 32 });
    expect(small.translate(withS1(cfg, { ips: 48 }), 0x1000, ACCESS_READ, res)).toBe(F_ADDR_SIZE);
  });

  it('a table address above the PS is an address size fault', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.writeRaw(0x1000, 1, 0x0000_0003, 0x100); // table at 2^40
    const cfg = s1Config(b);
    cfg.s1.ips = 36;
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(F_ADDR_SIZE);
    expect(res.level).toBe(1);
    // stage 2 likewise
    const s = new PtBuilder(m, 12, 2, 40, 1);
    s.writeRaw(0x1000, 2, 0x0000_0003, 0x100);
    const c2 = s2Config(s, 1);
    c2.s2.s2ps = 40;
    expect(eng.translate(c2, 0x1000, ACCESS_READ, res)).toBe(F_ADDR_SIZE);
    expect(res.s2).toBe(true);
  });

  it('a table pointer outside RAM: F_WALK_EABT with the fetch address', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    const bad = 0x10_0000_0000; // 64 GiB: no RAM there
    b.writeRaw(0x7000, 2, (bad >>> 0) | 3, bad / 2 ** 32);
    const cfg = s1Config(b);
    expect(eng.translate(cfg, 0x7000, ACCESS_READ, res)).toBe(F_WALK_EABT);
    expect(res.fetchAddr).toBe(bad + 7 * 8);
    expect(res.s2).toBe(false);
    // a stage-1 table fetch: Class = TT (IHI 0070 §7.3.12), not IN
    expect(res.faultClass).toBe(CLASS_TT);
    expect(res.level).toBe(3);
    // an unreachable TTB too
    const c = s1Config(b);
    c.s1.ttb0 = bad;
    c.s1.asid = 5;
    expect(eng.translate(c, 0, ACCESS_READ, res)).toBe(F_WALK_EABT);
    expect(res.fetchAddr).toBe(bad);
    expect(res.faultClass).toBe(CLASS_TT);
    expect(res.s2).toBe(false);
    expect(res.level).toBe(0);
  });
});

describe('input address: TTB1, TBI, EPD, range checks', () => {
  it('VA bit 55 selects TTB1 with its own granule and size', () => {
    const { m, eng, res } = setup();
    const b0 = new PtBuilder(m, 12, 1, 48);
    const b1 = new PtBuilder(m, 16, 1, 42);
    const cfg = s1Config(b0);
    cfg.s1.ttb1 = b1.root;
    cfg.s1.tg1 = 16;
    cfg.s1.t1sz = 64 - 42;
    cfg.s1.epd1 = false;
    // VA 0xFFFF_FC00_0012_0000: bits 63:42 all ones; key = bits 41:0
    b1.map(0x0012_0000, 0x8765_0000);
    const lo = 0x0012_0000 + 0x44;
    const hi = 0xffff_fc00 | 0;
    expect(eng.translate64(cfg, lo, hi, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8765_0044);
    expect(res.pageShift).toBe(16);
    // not all ones above bit 42: translation fault
    expect(eng.translate64(cfg, lo, 0xfffe_fc00 | 0, ACCESS_READ, res)).toBe(F_TRANSLATION);
    // EPD1 disables walks of the TTB1 range, on a TLB miss only: the cached entry still hits
    const off = withS1(cfg, { epd1: true });
    expect(eng.translate64(off, lo, hi, ACCESS_READ, res)).toBe(0);
    eng.tlbiNsnhAll();
    expect(eng.translate64(off, lo, hi, ACCESS_READ, res)).toBe(F_TRANSLATION);
  });

  it('TBI0 ignores the top byte; without it a tagged address faults', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1234_5000, 0x8000_5000);
    const cfg = s1Config(b);
    expect(eng.translate64(cfg, 0x1234_5010, 0x5a00_0000, ACCESS_READ, res)).toBe(F_TRANSLATION);
    const tbi = withS1(cfg, { tbi0: true, asid: 4 });
    expect(eng.translate64(tbi, 0x1234_5010, 0x5a00_0000, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8000_5010);
    // bits 55:48 still must be zero
    expect(eng.translate64(tbi, 0x1234_5010, 0x5a01_0000, ACCESS_READ, res)).toBe(F_TRANSLATION);
  });

  it('an address above T0SZ faults; unsupported CD settings are C_BAD_CD', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 39);
    const cfg = s1Config(b);
    expect(eng.translate(cfg, 2 ** 39, ACCESS_READ, res)).toBe(F_TRANSLATION);
    expect(eng.translate(withS1(cfg, { endi: true }), 0x1000, ACCESS_READ, res)).toBe(C_BAD_CD);
    expect(eng.translate(withS1(cfg, { tg0: 0 }), 0x1000, ACCESS_READ, res)).toBe(C_BAD_CD);
    // and back: the engine derives its checks from the config it is given, not the last one
    expect(eng.translate(cfg, 2 ** 39, ACCESS_READ, res)).toBe(F_TRANSLATION);
  });

  it('streams taking turns: each config keeps its own checks, tags and tables', () => {
    const { m, eng, res } = setup();
    const a = new PtBuilder(m, 12, 1, 48);
    const b = new PtBuilder(m, 12, 1, 39);
    a.map(0x5000, 0x8000_5000, 3, { lo: S1_LEAF | D_NG }); // not global: tagged with the ASID
    b.map(0x5000, 0x9000_5000, 3, { lo: S1_LEAF | D_NG });
    const ca = withS1(s1Config(a), { asid: 1, tbi0: true });
    const cb = withS1(s1Config(b), { asid: 2 });
    const other = new TranslationEngine(m.mem);
    for (let i = 0; i < 6; i++) {
      expect(eng.translate64(ca, 0x5008, 0x5a00_0000, ACCESS_READ, res)).toBe(0); // TBI0: tag ignored
      expect(res.oa).toBe(0x8000_5008);
      expect(eng.translate64(cb, 0x5008, 0x5a00_0000, ACCESS_READ, res)).toBe(F_TRANSLATION);
      expect(eng.translate(cb, 0x5010, ACCESS_READ, res)).toBe(0);
      expect(res.oa).toBe(0x9000_5010);
      expect(eng.translate(cb, 2 ** 39, ACCESS_READ, res)).toBe(F_TRANSLATION); // beyond T0SZ 25
      expect(eng.translate(ca, 2 ** 39, ACCESS_READ, res)).toBe(F_TRANSLATION); // not mapped
      // the same config objects on a second engine
      expect(other.translate(ca, 0x5018, ACCESS_READ, res)).toBe(0);
      expect(res.oa).toBe(0x8000_5018);
    }
    expect(eng.walker.walksS1).toBe(8); // a's and b's page once each (then TLB hits), and the 6 faults
    expect(other.walker.walksS1).toBe(1);
  });

  it('a config cannot be changed once used: the change throws instead of going unnoticed', () => {
    const { m, eng, res } = setup();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1000, 0x8000_1000);
    const cfg = s1Config(b);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(0);
    expect(() => {
      cfg.s1.tbi0 = true;
    }).toThrow(TypeError);
    expect(() => {
      cfg.vmid = 7;
    }).toThrow(TypeError);
    expect(cfg.s1.tbi0).toBe(false);
    expect(eng.translate(cfg, 0x1000, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8000_1000);
  });
});

describe('nested stage 1 + stage 2', () => {
  /** Stage-1 tables live in IPA space: allocate them in PA, map IPA = PA - 0x4000_0000 in stage 2. */
  function nested() {
    const { m, eng, res } = setup();
    const s2 = new PtBuilder(m, 12, 2, 40, 1);
    const IPA_OFF = 0x4000_0000;
    const s1 = new PtBuilder(m, 12, 1, 48, undefined, IPA_OFF);
    const mapTables = () => {
      for (const t of s1.tables) s2.map(t - IPA_OFF, t);
    };
    const cfg = makeTranslationConfig();
    cfg.s2Enabled = true;
    cfg.vmid = 3;
    cfg.s2.vmid = 3;
    cfg.s2.s2ttb = s2.root;
    cfg.s2.s2tg = 12;
    cfg.s2.s2t0sz = 24;
    cfg.s2.s2sl0 = 1;
    cfg.s1.ttb0 = s1.root - IPA_OFF;
    cfg.s1.tg0 = 12;
    cfg.s1.t0sz = 16;
    cfg.s1.asid = 1;
    const mapS1 = (va: number, ipa: number) => s1.map(va, ipa);
    return { m, eng, res, s1, s2, cfg, mapTables, mapS1, IPA_OFF };
  }

  it('translates through both stages; every stage-1 table fetch goes through stage 2', () => {
    const n = nested();
    n.mapS1(0x1000, 0x2000_0000);
    n.s2.map(0x2000_0000, 0x9abc_d000);
    n.mapTables();
    expect(n.eng.translate(n.cfg, 0x1234, ACCESS_READ, n.res)).toBe(0);
    expect(n.res.oa).toBe(0x9abc_d234);
    expect(n.res.pageShift).toBe(12);
    expect(n.eng.translate(n.cfg, 0x1238, ACCESS_READ, n.res)).toBe(0);
    expect(n.res.tlbHit).toBe(true);
  });

  it('a stage-2 fault on a stage-1 table fetch: Class TT, S2 = 1, IPA of the descriptor', () => {
    const n = nested();
    n.mapS1(0x1000, 0x2000_0000);
    n.s2.map(0x2000_0000, 0x9abc_d000);
    n.mapTables();
    // unmap the stage-1 level-3 table in stage 2
    const l3tablePa = n.s1.tables[n.s1.tables.length - 1]!;
    const slot = n.s2.slot(l3tablePa - n.IPA_OFF, 3);
    n.m.mem.write64(slot, 0, 0);
    expect(n.eng.translate(n.cfg, 0x1000, ACCESS_READ, n.res)).toBe(F_TRANSLATION);
    expect(n.res.s2).toBe(true);
    expect(n.res.faultClass).toBe(CLASS_TT);
    expect(n.res.ipa).toBe(l3tablePa - n.IPA_OFF + 8); // index 1 of the L3 table
  });

  it('an external abort on a stage-1 table fetch (IPA mapped to no RAM): Class TT, S2 = 0', () => {
    const n = nested();
    n.mapS1(0x1000, 0x2000_0000);
    n.s2.map(0x2000_0000, 0x9abc_d000);
    n.mapTables();
    // stage 2 maps the stage-1 level-3 table to a PA with no RAM behind it
    const l3tablePa = n.s1.tables[n.s1.tables.length - 1]!;
    const bad = 0x10_0000_0000;
    n.s2.map(l3tablePa - n.IPA_OFF, bad);
    expect(n.eng.translate(n.cfg, 0x1000, ACCESS_READ, n.res)).toBe(F_WALK_EABT);
    expect(n.res.s2).toBe(false);
    expect(n.res.faultClass).toBe(CLASS_TT);
    expect(n.res.fetchAddr).toBe(bad + 8);
    expect(n.res.level).toBe(3);
  });

  it('a stage-2 fault on the final IPA: Class IN, S2 = 1', () => {
    const n = nested();
    n.mapS1(0x5000, 0x3000_0000);
    n.mapTables();
    expect(n.eng.translate(n.cfg, 0x5010, ACCESS_READ, n.res)).toBe(F_TRANSLATION);
    expect(n.res.s2).toBe(true);
    expect(n.res.faultClass).toBe(CLASS_IN);
    expect(n.res.ipa).toBe(0x3000_0010);
  });

  it('stage-1 permission faults come before stage 2; stage-2 write denial reports S2 = 1', () => {
    const n = nested();
    n.mapS1(0x6000, 0x2000_0000);
    n.s2.map(0x2000_0000, 0x9000_0000, 3, { lo: (S2_LEAF & ~(3 << 6)) | (1 << 6) }); // S2 RO
    n.mapTables();
    expect(n.eng.translate(n.cfg, 0x6000, ACCESS_WRITE, n.res)).toBe(F_PERMISSION);
    expect(n.res.s2).toBe(true);
    expect(n.res.ipa).toBe(0x2000_0000);
    expect(n.eng.translate(n.cfg, 0x6000, ACCESS_READ, n.res)).toBe(0);
    // from the TLB, the write is still denied by stage 2
    expect(n.eng.translate(n.cfg, 0x6008, ACCESS_WRITE, n.res)).toBe(F_PERMISSION);
    expect(n.res.tlbHit).toBe(true);
    expect(n.res.s2).toBe(true);
    expect(n.res.ipa).toBe(0x2000_0008);
  });

  it('translateStructIpa: the CD address through stage 2, Class CD on a fault', () => {
    const n = nested();
    n.s2.map(0x1000_0000, 0x8800_0000);
    expect(n.eng.translateStructIpa(n.cfg, 0x1000_0040, n.res)).toBe(0x8800_0040);
    expect(n.eng.translateStructIpa(n.cfg, 0x1100_0040, n.res)).toBe(-1);
    expect(n.res.fault).toBe(F_TRANSLATION);
    expect(n.res.s2).toBe(true);
    expect(n.res.faultClass).toBe(CLASS_CD);
    expect(n.res.ipa).toBe(0x1100_0040);
  });

  it('S2PTW: a stage-1 table in stage-2 Device memory is a stage-2 permission fault (Class TT)', () => {
    const n = nested();
    n.mapS1(0x1000, 0x2000_0000);
    n.s2.map(0x2000_0000, 0x9abc_d000);
    for (const t of n.s1.tables) n.s2.map(t - n.IPA_OFF, t, 3, { lo: (S2_LEAF & ~(0xf << 2)) | (1 << 2) });
    n.cfg.s2.s2ptw = true;
    expect(n.eng.translate(n.cfg, 0x1000, ACCESS_READ, n.res)).toBe(F_PERMISSION);
    expect(n.res.faultClass).toBe(CLASS_TT);
    expect(n.res.s2).toBe(true);
  });
});
