// Differential test: tables written by the kernel's io-pgtable are walked by the SMMUv3 hardware
// model's translation engine (src/hw/smmuv3), which was written independently from the
// architecture. After random maps, every random address must translate the same way: the same
// output address where software says it is mapped, a translation fault where it is not, and the
// permissions the PTE attributes promise.

import { describe, expect, it } from 'vitest';
import { TranslationEngine } from '../../../src/hw/smmu-common/translate.ts';
import {
  ACCESS_READ,
  ACCESS_WRITE,
  F_PERMISSION,
  F_TRANSLATION,
  makeTranslationConfig,
  TranslationResult,
} from '../../../src/hw/smmu-common/translate-types.ts';
import type { ArmLpaeIoPgtable } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { pgsizes } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, SELFTEST_PGSIZES, XorShift } from './helpers.ts';

/** The hardware configuration a driver would program for this table (CD for S1, STE for S2). */
function hwConfigFor(ops: ArmLpaeIoPgtable) {
  const cfg = makeTranslationConfig();
  const gShift = ops.pgShift;
  if (ops.fmt === 'arm-64-lpae-s1') {
    const c = ops.cfg.armLpaeS1Cfg!;
    cfg.s1Enabled = true;
    cfg.s2Enabled = false;
    cfg.s1.ttb0 = c.ttbr;
    cfg.s1.t0sz = c.tcr.tsz;
    cfg.s1.tg0 = gShift;
    cfg.s1.ips = [32, 36, 40, 42, 44, 48, 52][c.tcr.ips]!;
    cfg.s1.mairLo = c.mair | 0;
    cfg.s1.mairHi = 0;
    cfg.s1.asid = 1;
  } else {
    const c = ops.cfg.armLpaeS2Cfg!;
    cfg.s1Enabled = false;
    cfg.s2Enabled = true;
    cfg.s2.s2ttb = c.vttbr;
    cfg.s2.s2t0sz = c.vtcr.tsz;
    cfg.s2.s2sl0 = c.vtcr.sl;
    cfg.s2.s2tg = gShift;
    cfg.s2.s2ps = [32, 36, 40, 42, 44, 48, 52][c.vtcr.ps]!;
    cfg.vmid = 1;
  }
  return cfg;
}

const configs: Array<{ fmt: 'arm-64-lpae-s1' | 'arm-64-lpae-s2'; pg: number; ias: number; oas: number }> = [];
for (const pg of SELFTEST_PGSIZES) {
  for (const [ias, oas] of [
    [32, 32],
    [36, 40],
    [40, 40],
    [42, 42],
    [44, 48],
    [48, 48],
  ] as const) {
    for (const fmt of ['arm-64-lpae-s1', 'arm-64-lpae-s2'] as const) configs.push({ fmt, pg, ias, oas });
  }
}

describe('io-pgtable vs the SMMUv3 hardware walker', () => {
  for (const c of configs) {
    it(`${c.fmt} ${pgsizes(c.pg)[0]! / 1024}K ias ${c.ias} oas ${c.oas}`, () => {
      const { m, ops, cfg } = makePgtable(c.fmt, c.pg, c.ias, c.oas);
      const engine = new TranslationEngine(m.mem, { oas: 48, tlbSets: 0 });
      const hw = hwConfigFor(ops);
      const res = new TranslationResult();
      const rng = new XorShift(c.ias * 7919 + c.oas * 31 + (c.fmt === 'arm-64-lpae-s1' ? 1 : 2) + c.pg);
      const span = 2 ** cfg.ias;
      // blocks that would cover a large part of a small input space would wipe most mappings
      const sizes = pgsizes(cfg.pgsizeBitmap).filter((s, i) => i === 0 || s * 64 <= span);
      const oaSpan = 2 ** cfg.oas;
      const mapped: Array<{ iova: number; size: number; ro: boolean }> = [];
      // random maps: mostly pages, some blocks, clustered so that tables are shared
      const cluster = Math.min(span, sizes[sizes.length - 1]! * 64);
      const clusterBase = Math.floor(rng.below(span / cluster)) * cluster;
      for (let i = 0; i < 300; i++) {
        const roll = rng.below(100);
        const size = sizes[roll < 85 || sizes.length === 1 ? 0 : roll < 98 || sizes.length === 2 ? 1 : 2]!;
        const base = rng.below(3) === 0 ? 0 : clusterBase;
        const room = Math.min(span - base, cluster);
        const iova = base + Math.floor(rng.below(Math.max(1, room / size))) * size;
        const pa = Math.floor(rng.below(oaSpan / size)) * size;
        const ro = rng.below(4) === 0;
        const r = ops.mapPages(iova, pa, size, 1, ro ? IOMMU_READ : IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE);
        if (r > 0) {
          // a block replaces any table (and the smaller mappings in it) under it, as in Linux
          for (let k = mapped.length - 1; k >= 0; k--) {
            const e = mapped[k]!;
            if (e.iova >= iova && e.iova < iova + size) mapped.splice(k, 1);
          }
          mapped.push({ iova, size, ro });
        }
      }
      // some unmaps, so cleared entries and freed tables are compared too
      for (let i = 0; i < 40 && mapped.length > 0; i++) {
        const k = rng.below(mapped.length);
        const e = mapped[k]!;
        if (ops.unmapPages(e.iova, e.size, 1, null) === e.size) mapped.splice(k, 1);
      }
      expect(mapped.length).toBeGreaterThan(20);
      let compared = 0;
      for (let i = 0; i < 4000; i++) {
        let iova: number;
        let ro = false;
        if (i % 2 === 0) {
          const e = mapped[rng.below(mapped.length)]!;
          iova = e.iova + rng.below(e.size);
          ro = e.ro;
        } else iova = rng.below(span);
        const sw = ops.iovaToPhys(iova);
        const leaf = ops.lookup(iova);
        engine.translate(hw, iova, ACCESS_READ, res);
        if (leaf === null) {
          expect(res.fault, `iova 0x${iova.toString(16)} unmapped`).toBe(F_TRANSLATION);
        } else {
          expect(res.fault, `iova 0x${iova.toString(16)} fault`).toBe(0);
          expect(res.oa).toBe(sw);
          expect(res.level).toBe(leaf.level);
          // the leaf may not be the one recorded (a block map replaces a table): judge by its bits
          const writable = ops.fmt === 'arm-64-lpae-s1' ? (leaf.lo & 0x80) === 0 : (leaf.lo & 0x80) !== 0;
          engine.translate(hw, iova, ACCESS_WRITE, res);
          expect(res.fault).toBe(writable ? 0 : F_PERMISSION);
          if (writable) expect(res.oa).toBe(sw);
          if (i % 2 === 0) expect(writable).toBe(!ro);
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(1000);
    });
  }
});
