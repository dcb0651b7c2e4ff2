import { describe, expect, it } from 'vitest';
import { D_NG } from '../../../src/arch/vmsa/descriptor.ts';
import { KIND_S1, KIND_S2 } from '../../../src/hw/smmu-common/tlb.ts';
import { TranslationEngine, tlbiRangeLength } from '../../../src/hw/smmu-common/translate.ts';
import {
  ACCESS_READ,
  ACCESS_WRITE,
  makeTranslationConfig,
  type TranslationConfig,
  TranslationResult,
  WORLD_EL2,
  WORLD_NS_EL1,
} from '../../../src/hw/smmu-common/translate-types.ts';
import { PORT_OK, PortResult } from '../../../src/hw/smmuv3/port.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { PageTable, SmmuDriver, s1Leaf } from '../smmuv3/device-driver.ts';
import { PtBuilder, S1_LEAF } from './pt-builder.ts';

const NG = S1_LEAF | D_NG;

function s1cfg(b: PtBuilder, vmid: number, asid: number, world = WORLD_NS_EL1): TranslationConfig {
  const c = makeTranslationConfig();
  c.s1.ttb0 = b.root;
  c.s1.tg0 = b.g;
  c.s1.t0sz = 64 - b.ia;
  c.vmid = vmid;
  c.s1.asid = asid;
  c.world = world;
  return c;
}

function s2cfg(b: PtBuilder, vmid: number): TranslationConfig {
  const c = makeTranslationConfig();
  c.s1Enabled = false;
  c.s2Enabled = true;
  c.vmid = vmid;
  c.s2.vmid = vmid;
  c.s2.s2ttb = b.root;
  c.s2.s2t0sz = 64 - b.ia;
  c.s2.s2sl0 = 1;
  return c;
}

describe('TLB basics', () => {
  it('hit after walk; stale after a PTE change without TLBI; fresh after TLBI_NH_VA', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x4000, 0x8100_0000, 3, { lo: NG });
    const cfg = s1cfg(b, 0, 1);
    expect(eng.translate(cfg, 0x4010, ACCESS_READ, res)).toBe(0);
    expect(res.tlbHit).toBe(false);
    expect(eng.translate(cfg, 0x4020, ACCESS_READ, res)).toBe(0);
    expect(res.tlbHit).toBe(true);
    expect(res.oa).toBe(0x8100_0020);
    // the driver remaps the page but forgets the TLBI: the old translation is still used
    b.map(0x4000, 0x8200_0000, 3, { lo: NG });
    expect(eng.translate(cfg, 0x4030, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8100_0030);
    // unmapping without TLBI: DMA still reaches the old page
    b.writeRaw(0x4000, 3, 0, 0);
    expect(eng.translate(cfg, 0x4030, ACCESS_WRITE, res)).toBe(0);
    expect(res.oa).toBe(0x8100_0030);
    // after TLBI_NH_VA the walk sees the change
    b.map(0x4000, 0x8200_0000, 3, { lo: NG });
    expect(eng.tlbiNhVa(0, 1, 0x4000)).toBe(1);
    expect(eng.translate(cfg, 0x4030, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x8200_0030);
    expect(res.tlbHit).toBe(false);
    const c = eng.tlb!.counters;
    expect(c.hits).toBeGreaterThanOrEqual(3);
    expect(c.invalidated).toBe(1);
    expect(eng.walker.walksS1).toBe(2);
  });

  it('a block is one entry covering the whole block', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x4000_0000, 0x8000_0000, 2, { lo: NG }); // 2 MiB
    const cfg = s1cfg(b, 0, 1);
    expect(eng.translate(cfg, 0x4000_0000, ACCESS_READ, res)).toBe(0);
    expect(eng.translate(cfg, 0x401f_fff8, ACCESS_READ, res)).toBe(0);
    expect(res.tlbHit).toBe(true);
    expect(res.oa).toBe(0x801f_fff8);
    expect(eng.tlb!.occupancy).toBe(1);
    // TLBI by VA of any page inside the block removes it
    expect(eng.tlbiNhVa(0, 1, 0x4012_3000)).toBe(1);
  });

  it('replacement is round-robin within a set (capacity is a parameter)', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem, { tlbSets: 1, tlbWays: 4 });
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    for (let i = 0; i < 5; i++) b.map(i * 0x1000, 0x8000_0000 + i * 0x1000, 3, { lo: NG });
    const cfg = s1cfg(b, 0, 1);
    for (let i = 0; i < 5; i++) eng.translate(cfg, i * 0x1000, ACCESS_READ, res);
    expect(eng.tlb!.occupancy).toBe(4);
    expect(eng.tlb!.counters.evictions).toBe(1);
    eng.translate(cfg, 0x0000, ACCESS_READ, res); // the first one was evicted
    expect(res.tlbHit).toBe(false);
    eng.translate(cfg, 0x4000, ACCESS_READ, res);
    expect(res.tlbHit).toBe(true);
  });

  it('the same VA cached for several ASIDs: each ASID hits its own entry', () => {
    // one page, four address spaces mapping it to different PAs; the set does not depend on the
    // ASID, so the four entries share a set and differ only in their context word
    const m = new Machine({ seed: 1 });
    const res = new TranslationResult();
    for (const opts of [{}, { tlbSets: 1, tlbWays: 4 }, { tlbSets: 4, tlbWays: 8 }]) {
      const eng = new TranslationEngine(m.mem, opts);
      const cfgs = [1, 2, 3, 4].map((asid) => {
        const b = new PtBuilder(m, 12, 1, 48);
        b.map(0x7000, 0x8000_0000 + asid * 0x1000, 3, { lo: NG });
        return s1cfg(b, 0, asid);
      });
      for (const cfg of cfgs) expect(eng.translate(cfg, 0x7008, ACCESS_READ, res)).toBe(0);
      for (let round = 0; round < 2; round++) {
        for (const [i, cfg] of [...cfgs.entries()].reverse()) {
          expect(eng.translate(cfg, 0x7010, ACCESS_READ, res)).toBe(0);
          expect(res.tlbHit).toBe(true);
          expect(res.oa).toBe(0x8000_0000 + (i + 1) * 0x1000 + 0x10);
        }
      }
      expect(eng.tlb!.counters.hits).toBe(8);
      expect(eng.walker.walksS1).toBe(4);
    }
  });
});

describe('each invalidation removes exactly what it should', () => {
  /**
   * Entries: VMID 1 ASID 1 (nG page 0x1000), VMID 1 ASID 2 (nG page 0x1000), a global page 0x2000
   * in VMID 1, VMID 2 ASID 1 (0x1000) + its global 0x2000, a stage-2-only entry of VMID 1
   * (IPA 0x1000), and an EL2-world entry (0x1000).
   */
  function scene() {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x1000, 0x8000_1000, 3, { lo: NG });
    b.map(0x2000, 0x8000_2000, 3);
    const s2 = new PtBuilder(m, 12, 2, 40, 1);
    s2.map(0x1000, 0x8800_1000);
    for (const c of [s1cfg(b, 1, 1), s1cfg(b, 1, 2), s1cfg(b, 2, 1)]) {
      expect(eng.translate(c, 0x1000, ACCESS_READ, res)).toBe(0);
      expect(eng.translate(c, 0x2000, ACCESS_READ, res)).toBe(0);
    }
    expect(eng.translate(s2cfg(s2, 1), 0x1000, ACCESS_READ, res)).toBe(0);
    expect(eng.translate(s1cfg(b, 0, 0, WORLD_EL2), 0x1000, ACCESS_READ, res)).toBe(0);
    const tlb = eng.tlb!;
    const names = () =>
      tlb
        .dump()
        .map((e) =>
          e.world === WORLD_EL2
            ? `el2:${e.base.toString(16)}`
            : e.kind === KIND_S2
              ? `s2:v${e.vmid}:${e.base.toString(16)}`
              : `v${e.vmid}:${e.global ? 'g' : `a${e.asid}`}:${e.base.toString(16)}`,
        )
        .sort();
    expect(names()).toEqual([
      'el2:1000',
      's2:v1:1000',
      'v1:a1:1000',
      'v1:a2:1000',
      'v1:g:2000',
      'v2:a1:1000',
      'v2:g:2000',
    ]);
    expect(tlb.dump().every((e) => e.kind === KIND_S1 || e.kind === KIND_S2)).toBe(true);
    return { eng, names };
  }

  it('TLBI_NH_ASID removes that ASID of that VMID, not global entries', () => {
    const { eng, names } = scene();
    expect(eng.tlbiNhAsid(1, 1)).toBe(1);
    expect(names()).toEqual(['el2:1000', 's2:v1:1000', 'v1:a2:1000', 'v1:g:2000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_NH_VA removes the ASID entry and global entries of the VA in that VMID', () => {
    const { eng, names } = scene();
    expect(eng.tlbiNhVa(1, 2, 0x2000)).toBe(1); // the global page matches any ASID
    expect(eng.tlbiNhVa(1, 2, 0x1000)).toBe(1);
    expect(names()).toEqual(['el2:1000', 's2:v1:1000', 'v1:a1:1000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_NH_VAA removes the VA for every ASID of the VMID', () => {
    const { eng, names } = scene();
    expect(eng.tlbiNhVaa(1, 0x1000)).toBe(2);
    expect(names()).toEqual(['el2:1000', 's2:v1:1000', 'v1:g:2000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_NH_ALL removes the stage-1 entries of the VMID, not its stage-2 entries', () => {
    const { eng, names } = scene();
    expect(eng.tlbiNhAll(1)).toBe(3);
    expect(names()).toEqual(['el2:1000', 's2:v1:1000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_S12_VMALL removes both stages of the VMID', () => {
    const { eng, names } = scene();
    expect(eng.tlbiS12Vmall(1)).toBe(4);
    expect(names()).toEqual(['el2:1000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_S2_IPA removes stage-2 entries of the IPA only', () => {
    const { eng, names } = scene();
    expect(eng.tlbiS2Ipa(2, 0x1000)).toBe(0);
    expect(eng.tlbiS2Ipa(1, 0x1000)).toBe(1);
    expect(names()).toEqual(['el2:1000', 'v1:a1:1000', 'v1:a2:1000', 'v1:g:2000', 'v2:a1:1000', 'v2:g:2000']);
  });

  it('TLBI_NSNH_ALL removes every EL1-world entry; TLBI_EL2_ALL the EL2 ones', () => {
    const { eng, names } = scene();
    expect(eng.tlbiNsnhAll()).toBe(6);
    expect(names()).toEqual(['el2:1000']);
    expect(eng.tlbiEl2All()).toBe(1);
    expect(names()).toEqual([]);
  });

  it('TLBI_EL2_VA removes EL2 entries but no EL1 ones', () => {
    const { eng, names } = scene();
    expect(eng.tlbiEl2Va(0, 0x1000)).toBe(1);
    expect(names()).not.toContain('el2:1000');
    expect(names()).toHaveLength(6);
  });
});

describe('range invalidation and hints', () => {
  it('a range TLBI removes exactly the pages in the range', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    for (let i = 0; i < 64; i++) b.map(0x10_0000 + i * 0x1000, 0x8000_0000 + i * 0x1000, 3, { lo: NG });
    const cfg = s1cfg(b, 0, 1);
    for (let i = 0; i < 64; i++) eng.translate(cfg, 0x10_0000 + i * 0x1000, ACCESS_READ, res);
    // TG = 4K, SCALE = 1, NUM = 4: (4 + 1) * 2^1 = 10 pages, from page 10
    const len = tlbiRangeLength(12, 1, 4);
    expect(len).toBe(10 * 4096);
    expect(eng.tlbiNhVa(0, 1, 0x10_0000 + 10 * 0x1000, len, false, 0, 1)).toBe(10);
    const left = eng
      .tlb!.dump()
      .map((e) => (e.base - 0x10_0000) / 0x1000)
      .sort((x, y) => x - y);
    expect(left).toEqual([...Array(64).keys()].filter((i) => i < 10 || i >= 20));
    // a huge range (whole VMID) falls back to walking the ASID lists, with the same effect
    expect(eng.tlbiNhVa(0, 1, 0, 2 ** 48)).toBe(54);
    expect(eng.tlb!.occupancy).toBe(0);
  });

  it('through the command queue, a range TLBI covers (NUM + 1) x 2^SCALE pages of the TG granule (not the PE formula)', () => {
    // what the SMMUv3 device decodes from CMD_TLBI_NH_VA (IHI 0070 §4.4.1), checked by which of
    // 64 cached 4K pages still hit afterwards
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    const BASE = 0x4000_0000;
    for (let i = 0; i < 64; i++) pt.map(BASE + i * 0x1000, s1Leaf(0x9000_0000 + i * 0x1000));
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, 5));
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd });
    const r = new PortResult();
    const cachedAfter = (fields: Record<string, number>) => {
      for (let i = 0; i < 64; i++)
        expect(d.smmu.port.translate(1, -1, BASE + i * 0x1000, 0, r)).toBe(PORT_OK);
      d.cmd('TLBI_NH_VA', { VMID: 0, ASID: 5, ...fields });
      d.sync();
      const hit: number[] = [];
      for (let i = 0; i < 64; i++) {
        d.smmu.port.translate(1, -1, BASE + i * 0x1000, 0, r);
        if (r.tlbHit) hit.push(i);
      }
      return 64 - hit.length === 0 ? [] : [...Array(64).keys()].filter((i) => !hit.includes(i));
    };
    const pages = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);
    // TG = 4K, SCALE = 1, NUM = 4: (4 + 1) x 2^1 = 10 pages from page 10 (the PE formula,
    // (NUM + 1) x 2^(5 x SCALE + 1), would give 320)
    expect(cachedAfter({ Address: BASE + 10 * 0x1000, TG: 1, SCALE: 1, NUM: 4 })).toEqual(pages(10, 10));
    // SCALE = 0, NUM = 0: one page; NUM = 4: five
    expect(cachedAfter({ Address: BASE + 3 * 0x1000, TG: 1, SCALE: 0, NUM: 0 })).toEqual([3]);
    expect(cachedAfter({ Address: BASE + 40 * 0x1000, TG: 1, SCALE: 0, NUM: 4 })).toEqual(pages(40, 5));
    // SCALE = 3, NUM = 1: 16 pages
    expect(cachedAfter({ Address: BASE + 16 * 0x1000, TG: 1, SCALE: 3, NUM: 1 })).toEqual(pages(16, 16));
    // the largest range, NUM = 31, SCALE = 31 of 64K pages (2^52 bytes) from 0: everything (a
    // 64K TG does not match 4K leaves as a hint, so TG 4K: (31 + 1) x 2^31 pages of 4K)
    expect(cachedAfter({ Address: 0, TG: 1, SCALE: 31, NUM: 31 })).toEqual(pages(0, 64));
  });

  it('the TTL hint: a wrong level leaves the entry, the right level removes it', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    b.map(0x4000_0000, 0x8000_0000, 2, { lo: NG });
    const cfg = s1cfg(b, 0, 1);
    eng.translate(cfg, 0x4000_0000, ACCESS_READ, res);
    expect(eng.tlbiNhVa(0, 1, 0x4000_0000, 4096, true, 3, 1)).toBe(0); // says level 3: stays
    expect(eng.tlbiNhVa(0, 1, 0x4000_0000, 4096, true, 2, 3)).toBe(0); // says 64K granule: stays
    expect(eng.tlbiNhVa(0, 1, 0x4000_0000, 4096, true, 2, 1)).toBe(1);
  });

  it('nested: TLBI_S2_IPA leaves the combined entry (stale) until TLBI_NH_ALL', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const s2 = new PtBuilder(m, 12, 2, 40, 1);
    const s1 = new PtBuilder(m, 12, 1, 48);
    for (const t of s1.tables) s2.map(t, t); // identity for the root now
    s1.map(0x1000, 0x2000_0000, 3, { lo: NG });
    for (const t of s1.tables) s2.map(t, t);
    s2.map(0x2000_0000, 0x9000_0000);
    const cfg = s1cfg(s1, 4, 1);
    cfg.s2Enabled = true;
    cfg.s2 = s2cfg(s2, 4).s2;
    expect(eng.translate(cfg, 0x1008, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x9000_0008);
    s2.map(0x2000_0000, 0x9100_0000); // the hypervisor moves the page
    eng.tlbiS2Ipa(4, 0x2000_0000);
    expect(eng.translate(cfg, 0x1008, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x9000_0008); // combined entry still used
    eng.tlbiNhAll(4);
    expect(eng.translate(cfg, 0x1008, ACCESS_READ, res)).toBe(0);
    expect(res.oa).toBe(0x9100_0008);
  });
});

describe('scoped invalidation cost does not depend on TLB occupancy', () => {
  function visitedForSmallAsid(bigAsidPages: number): { visited: number; occupancy: number } {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem, { tlbSets: 2048, tlbWays: 4 });
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    const n = Math.max(bigAsidPages, 5);
    for (let i = 0; i < n; i++) b.map(i * 0x1000, 0x8000_0000 + (i % 1024) * 0x1000, 3, { lo: NG });
    const big = s1cfg(b, 1, 1);
    const small = s1cfg(b, 1, 2);
    for (let i = 0; i < bigAsidPages; i++) eng.translate(big, i * 0x1000, ACCESS_READ, res);
    for (let i = 0; i < 5; i++) eng.translate(small, i * 0x1000, ACCESS_READ, res);
    const tlb = eng.tlb!;
    const occupancy = tlb.occupancy;
    const before = tlb.counters.visited;
    expect(eng.tlbiNhAsid(1, 2)).toBe(5);
    return { visited: tlb.counters.visited - before, occupancy };
  }

  it('TLBI_NH_ASID visits only the entries of that ASID', () => {
    const sparse = visitedForSmallAsid(10);
    const full = visitedForSmallAsid(6000);
    expect(full.occupancy).toBeGreaterThan(5000);
    expect(sparse.visited).toBe(5);
    expect(full.visited).toBe(5);
  });

  it('TLBI_S12_VMALL and TLBI_NH_ALL visit only the entries of that VMID', () => {
    const m = new Machine({ seed: 1 });
    const eng = new TranslationEngine(m.mem);
    const res = new TranslationResult();
    const b = new PtBuilder(m, 12, 1, 48);
    for (let i = 0; i < 3000; i++) b.map(i * 0x1000, 0x8000_0000 + (i % 1024) * 0x1000, 3, { lo: NG });
    for (let i = 0; i < 3000; i++) eng.translate(s1cfg(b, 7, 1), i * 0x1000, ACCESS_READ, res);
    for (let i = 0; i < 3; i++) eng.translate(s1cfg(b, 8, 1), i * 0x1000, ACCESS_READ, res);
    const tlb = eng.tlb!;
    const before = tlb.counters.visited;
    expect(eng.tlbiNhAll(8)).toBe(3);
    expect(tlb.counters.visited - before).toBe(3);
    const b2 = tlb.counters.visited;
    expect(eng.tlbiS12Vmall(9)).toBe(0);
    expect(tlb.counters.visited - b2).toBe(0);
  });
});
