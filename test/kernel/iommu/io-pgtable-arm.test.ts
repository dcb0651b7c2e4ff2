// io-pgtable-arm beyond the self-test: the descriptors Linux writes, table lifetime, concatenated
// stage-2 tables, the partial-unmap rule, error returns.

import { describe, expect, it } from 'vitest';
import { EEXIST, EINVAL, ERANGE } from '../../../src/kernel/iommu/errno.ts';
import { allocIoPgtableOps } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { ARM_LPAE_MAIR } from '../../../src/kernel/iommu/io-pgtable/arm-lpae-defs.ts';
import {
  IO_PGTABLE_QUIRK_ARM_HD,
  IO_PGTABLE_QUIRK_ARM_NS,
  IO_PGTABLE_QUIRK_ARM_S2FWB,
  type IoPgtableCfg,
  machinePgtableEnv,
} from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IommuIotlbGather } from '../../../src/kernel/iommu/iotlb-gather.ts';
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, newMachine, SZ_1G, SZ_2M, SZ_4K, SZ_16K, SZ_32M, SZ_64K, SZ_512M } from './helpers.ts';

const PG4K = SZ_4K + SZ_2M + SZ_1G;
const RW = IOMMU_READ | IOMMU_WRITE;
const hex = (lo: number, hi: number) =>
  `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;

describe('descriptors (arm_lpae_prot_to_pte + init_pte)', () => {
  it('stage 1: page, AF, nG, AP, SH, AttrIndx, XN', () => {
    const { ops } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: 0 });
    const pa = 0x1234_5678_9000;
    const cases: Array<[number, string]> = [
      // type 3 | AttrIndx 1 (cache) <<2 | AP_UNPRIV | SH IS | AF | nG ; XN
      [RW | IOMMU_NOEXEC | IOMMU_CACHE, '0x0060123456789f47'],
      // read-only: AP_RDONLY; no cache: AttrIndx 0, SH OS
      [IOMMU_READ, '0x0000123456789ec3'],
      // privileged: no AP_UNPRIV; MMIO: AttrIndx 2
      [RW | IOMMU_PRIV | IOMMU_MMIO, '0x0000123456789e0b'],
    ];
    let iova = 0;
    for (const [prot, want] of cases) {
      expect(ops.mapPages(iova, pa, SZ_4K, 1, prot)).toBe(SZ_4K);
      const leaf = ops.lookup(iova)!;
      expect(leaf.level).toBe(3);
      expect(hex(leaf.lo, leaf.hi)).toBe(want);
      iova += SZ_4K;
    }
    // block at level 2: type 1
    expect(ops.mapPages(SZ_1G, 0x4000_0000, SZ_2M, 1, RW | IOMMU_CACHE)).toBe(SZ_2M);
    const b = ops.lookup(SZ_1G + 0x1234)!;
    expect(b.level).toBe(2);
    expect(hex(b.lo, b.hi)).toBe('0x0000000040000f45');
    expect(ops.cfg.armLpaeS1Cfg!.mair).toBe(ARM_LPAE_MAIR);
    expect(ARM_LPAE_MAIR).toBe(0xf404ff44);
    expect(ops.cfg.armLpaeS1Cfg!.tcr).toEqual({ ips: 5, tg: 0, sh: 3, irgn: 1, orgn: 1, tsz: 16 });
  });

  it('stage 1 quirks: NS sets NS and NSTable; HD sets DBM on writable leaves', () => {
    const { ops, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, {
      quirks: IO_PGTABLE_QUIRK_ARM_NS | IO_PGTABLE_QUIRK_ARM_HD,
    });
    ops.mapPages(0, 0x8000_0000, SZ_4K, 1, RW);
    ops.mapPages(SZ_4K, 0x8000_0000, SZ_4K, 1, IOMMU_READ);
    const a = ops.lookup(0)!;
    const r = ops.lookup(SZ_4K)!;
    expect(a.lo & (1 << 5)).not.toBe(0);
    expect(a.hi & (1 << 19)).not.toBe(0); // DBM
    expect(r.hi & (1 << 19)).toBe(0); // read-only: AP_RDONLY instead
    expect(r.lo & (2 << 6)).not.toBe(0);
    m.mem.read64(ops.pgd);
    expect(m.mem.r64[1]! >>> 31).toBe(1); // NSTable on the table descriptor
  });

  it('stage 2: S2AP and MemAttr (OIWB, NC, Device, FWB)', () => {
    const { ops } = makePgtable('arm-64-lpae-s2', PG4K, 40, 40, { quirks: 0 });
    ops.mapPages(0, 0x8000_0000, SZ_4K, 1, RW | IOMMU_CACHE);
    ops.mapPages(SZ_4K, 0x8000_0000, SZ_4K, 1, IOMMU_READ);
    ops.mapPages(2 * SZ_4K, 0x8000_0000, SZ_4K, 1, IOMMU_WRITE | IOMMU_MMIO | IOMMU_NOEXEC);
    expect(hex(ops.lookup(0)!.lo, ops.lookup(0)!.hi)).toBe('0x00000000800007ff');
    expect(hex(ops.lookup(SZ_4K)!.lo, 0)).toBe('0x0000000080000657');
    const d = ops.lookup(2 * SZ_4K)!;
    expect(hex(d.lo, d.hi)).toBe('0x0060000080000687');
    const f = makePgtable('arm-64-lpae-s2', PG4K, 40, 40, { quirks: IO_PGTABLE_QUIRK_ARM_S2FWB }).ops;
    f.mapPages(0, 0x8000_0000, SZ_4K, 1, RW | IOMMU_CACHE);
    expect((f.lookup(0)!.lo >>> 2) & 0xf).toBe(0x6);
  });

  it('64K granule with 52-bit output: PA[51:48] folded into bits 15:12, 4TB blocks', () => {
    const { ops, cfg } = makePgtable('arm-64-lpae-s1', SZ_64K + SZ_512M + 2 ** 42, 52, 52, { quirks: 0 });
    expect(cfg.pgsizeBitmap).toBe(SZ_64K + SZ_512M + 2 ** 42);
    const pa = 2 ** 51 + 2 ** 48 + 0x1234_0000;
    expect(ops.mapPages(0x10000, pa, SZ_64K, 1, RW)).toBe(SZ_64K);
    const l = ops.lookup(0x10000)!;
    expect((l.lo >>> 12) & 0xf).toBe(0x9);
    expect(l.hi & 0xffff).toBe(0);
    expect(ops.iovaToPhys(0x10000 + 0x42)).toBe(pa + 0x42);
    const big = 2 ** 42;
    expect(ops.mapPages(2 * big, 3 * big, big, 1, RW)).toBe(big);
    expect(ops.lookup(2 * big + 5)!.level).toBe(1);
    expect(ops.iovaToPhys(2 * big + 0x123_4567_8900)).toBe(3 * big + 0x123_4567_8900);
  });
});

describe('geometry', () => {
  it('start levels and T0SZ for stage 1', () => {
    const a = makePgtable('arm-64-lpae-s1', PG4K, 48, 48).ops;
    expect([a.startLevel, a.pgdBits, a.pgdSize]).toEqual([0, 9, 4096]);
    const b = makePgtable('arm-64-lpae-s1', PG4K, 32, 48).ops;
    expect([b.startLevel, b.pgdBits, b.pgdSize]).toEqual([1, 2, 32]);
    const c = makePgtable('arm-64-lpae-s1', SZ_64K + SZ_512M, 48, 48).ops;
    expect([c.startLevel, c.pgdBits]).toEqual([1, 6]);
  });

  it('concatenated stage-2 start tables where Arm requires them', () => {
    // 4K, start level 0, oas 40: concatenate 2 tables at level 1; SL0 = 1 (start at level 1)
    const a = makePgtable('arm-64-lpae-s2', PG4K, 40, 40);
    expect([a.ops.startLevel, a.ops.pgdBits, a.ops.pgdSize]).toEqual([1, 10, 8192]);
    expect(a.cfg.armLpaeS2Cfg!.vtcr).toEqual({ ps: 2, tg: 0, sh: 3, irgn: 1, orgn: 1, sl: 1, tsz: 24 });
    // 4K, oas 42 ias 42: 8 tables
    const b = makePgtable('arm-64-lpae-s2', PG4K, 42, 42);
    expect([b.ops.startLevel, b.ops.pgdSize]).toEqual([1, 8 * 4096]);
    // 4K, oas 48: not mandatory -> 4 levels, SL0 = 2
    const c = makePgtable('arm-64-lpae-s2', PG4K, 48, 48);
    expect([c.ops.startLevel, c.cfg.armLpaeS2Cfg!.vtcr.sl]).toEqual([0, 2]);
    // 16K, ias 48: 2 tables at level 1
    const d = makePgtable('arm-64-lpae-s2', SZ_16K + SZ_32M, 48, 48);
    expect([d.ops.startLevel, d.ops.pgdBits, d.ops.pgdSize]).toEqual([1, 12, 2 * SZ_16K]);
    expect(d.cfg.armLpaeS2Cfg!.vtcr.sl).toBe(2);
    // 16K, start level 1 and oas 40: 16 tables at level 2
    const e = makePgtable('arm-64-lpae-s2', SZ_16K + SZ_32M, 40, 40);
    expect([e.ops.startLevel, e.ops.pgdBits, e.ops.pgdSize]).toEqual([2, 15, 16 * SZ_16K]);
    expect(e.ops.pgd % e.ops.pgdSize).toBe(0); // naturally aligned
    // the same at stage 1 does not concatenate
    expect(makePgtable('arm-64-lpae-s1', SZ_16K + SZ_32M, 40, 40).ops.startLevel).toBe(1);
    // top of the concatenated range translates
    expect(e.ops.mapPages(2 ** 40 - SZ_32M, 0x8000_0000, SZ_32M, 1, RW)).toBe(SZ_32M);
    expect(e.ops.iovaToPhys(2 ** 40 - 1)).toBe(0x8000_0000 + SZ_32M - 1);
  });

  it('restricts page sizes to one granule and refuses unsupported configurations', () => {
    const a = makePgtable('arm-64-lpae-s1', PG4K + SZ_16K + SZ_64K, 48, 48);
    expect(a.cfg.pgsizeBitmap).toBe(PG4K);
    // sizes above 48 bits clamp to 48 (4K/16K); 52 only with 64K
    expect(makePgtable('arm-64-lpae-s1', PG4K, 48, 50).cfg.oas).toBe(48);
    expect(makePgtable('arm-64-lpae-s1', SZ_64K, 52, 52).cfg.oas).toBe(52);
    const env = machinePgtableEnv(newMachine());
    const cfg = (pg: number, ias: number, oas: number, quirks = 0): IoPgtableCfg => ({
      quirks,
      pgsizeBitmap: pg,
      ias,
      oas,
      coherentWalk: true,
      tlb: null,
    });
    expect(allocIoPgtableOps('arm-64-lpae-s1', cfg(SZ_2M, 48, 48), null, env)).toBeNull();
    expect(allocIoPgtableOps('arm-64-lpae-s1', cfg(PG4K, 53, 48), null, env)).toBeNull();
    expect(allocIoPgtableOps('arm-64-lpae-s1', cfg(PG4K, 48, 46), null, env)).toBeNull(); // no IPS encoding
    // the NS quirk does not apply at stage 2
    expect(
      allocIoPgtableOps('arm-64-lpae-s2', cfg(PG4K, 40, 40, IO_PGTABLE_QUIRK_ARM_NS), null, env),
    ).toBeNull();
  });
});

describe('map and unmap rules', () => {
  it('errors: no access, bad size, out of range, overlap', () => {
    const { ops } = makePgtable('arm-64-lpae-s1', PG4K, 32, 40);
    expect(ops.mapPages(0, 0, SZ_4K, 1, 0)).toBe(-EINVAL);
    expect(ops.mapPages(0, 0, SZ_16K, 1, RW)).toBe(-EINVAL);
    expect(ops.mapPages(2 ** 32, 0, SZ_4K, 1, RW)).toBe(-ERANGE);
    expect(ops.mapPages(0, 2 ** 40, SZ_4K, 1, RW)).toBe(-ERANGE);
    expect(ops.mapPages(0, 0, SZ_2M, 1, RW)).toBe(SZ_2M);
    expect(ops.mapPages(SZ_4K, 0, SZ_4K, 1, RW)).toBe(-EEXIST); // a block is in the way
    expect(ops.unmapPages(0, SZ_16K, 1, null)).toBe(0);
  });

  it('maps several pages per call up to the end of one table', () => {
    const { ops } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48);
    expect(ops.mapPages(500 * SZ_4K, 0x8000_0000, SZ_4K, 100, RW)).toBe(12 * SZ_4K);
    expect(ops.mapPages(512 * SZ_4K, 0x8000_0000 + 12 * SZ_4K, SZ_4K, 88, RW)).toBe(88 * SZ_4K);
    for (let i = 0; i < 100; i++)
      expect(ops.iovaToPhys((500 + i) * SZ_4K + 1)).toBe(0x8000_0000 + i * SZ_4K + 1);
    // unmap stops at the first hole
    expect(ops.unmapPages(590 * SZ_4K, SZ_4K, 20, null)).toBe(10 * SZ_4K);
  });

  it('refuses to unmap part of a block, with a one-time warning, and keeps the block', () => {
    const { ops, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: 0 });
    ops.mapPages(SZ_1G, SZ_1G, SZ_1G, 1, RW);
    expect(ops.unmapPages(SZ_1G + SZ_4K, SZ_4K, 1, null)).toBe(0);
    expect(ops.unmapPages(SZ_1G + SZ_2M, SZ_2M, 1, null)).toBe(0);
    expect(ops.iovaToPhys(SZ_1G + SZ_4K)).toBe(SZ_1G + SZ_4K);
    expect(ops.partialUnmapRefused).toBe(2);
    const warns = m.bugs.filter((b) => b.message.includes('Unmap of a partial large IOPTE is not allowed'));
    expect(warns.length).toBe(1);
  });

  it('warns (without NO_WARN) on overlapping maps and unmapping nothing', () => {
    const { ops, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: 0 });
    ops.mapPages(0, 0, SZ_4K, 1, RW);
    expect(ops.mapPages(0, 0, SZ_4K, 1, RW)).toBe(-EEXIST);
    expect(ops.unmapPages(SZ_1G, SZ_4K, 1, null)).toBe(0);
    expect(m.bugs.map((b) => b.kind)).toEqual(['warn', 'warn']);
  });

  it('an unmap covering a table frees it and flushes the walk; leaves go to the gather', () => {
    const { ops, tlb, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48);
    const before = ops.tablePages;
    ops.mapPages(0, 0x8000_0000, SZ_4K, 8, RW);
    expect(ops.tablePages).toBe(before + 3);
    const g = new IommuIotlbGather();
    expect(ops.unmapPages(0, SZ_4K, 2, g)).toBe(2 * SZ_4K);
    expect(tlb.addPage).toBe(2);
    expect(ops.tablePages).toBe(before + 3); // Linux keeps empty-ish tables
    expect(ops.unmapPages(0, SZ_2M, 1, g)).toBe(SZ_2M);
    expect(tlb.flushWalk).toBe(1);
    expect(tlb.addPage).toBe(3); // Linux also gathers the removed table entry's range
    expect(ops.tablePages).toBe(before + 2);
    expect(ops.iovaToPhys(2 * SZ_4K)).toBe(0);
    // queued gathers (flush queue) do not collect leaves
    ops.mapPages(0, 0x8000_0000, SZ_4K, 1, RW);
    g.queued = true;
    ops.unmapPages(0, SZ_4K, 1, g);
    expect(tlb.addPage).toBe(3);
    expect(tlb.errors).toEqual([]);
    ops.free();
    expect(m.pages.usageByOwner().get('io-pgtable') ?? 0).toBe(0);
  });

  it('a block map replaces a table (freeing it), as Linux does', () => {
    const { ops, tlb } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48);
    ops.mapPages(SZ_2M, 0x8000_0000, SZ_4K, 1, RW);
    const pages = ops.tablePages;
    expect(ops.mapPages(0, 0x9000_0000, SZ_2M, 2, RW)).toBe(2 * SZ_2M);
    expect(ops.tablePages).toBe(pages - 1);
    expect(tlb.flushWalk).toBe(1);
    expect(ops.iovaToPhys(SZ_2M + 5)).toBe(0x9000_0000 + SZ_2M + 5);
  });

  it('freeEmptyTables (not Linux) reclaims tables an unmap leaves empty', () => {
    const { ops, tlb } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { freeEmptyTables: true });
    const base = ops.tablePages;
    ops.mapPages(0x1234_0000_0000, 0x8000_0000, SZ_4K, 4, RW);
    ops.mapPages(0x1234_0000_0000 + SZ_1G, 0x8000_0000, SZ_4K, 1, RW);
    expect(ops.tablePages).toBe(base + 5);
    ops.unmapPages(0x1234_0000_0000, SZ_4K, 4, null);
    expect(ops.tablePages).toBe(base + 3);
    ops.unmapPages(0x1234_0000_0000 + SZ_1G, SZ_4K, 1, null);
    expect(ops.tablePages).toBe(base);
    expect(tlb.flushWalk).toBe(5);
  });

  it('16K and 64K granules map their block sizes', () => {
    const a = makePgtable('arm-64-lpae-s2', SZ_16K + SZ_32M, 44, 44).ops;
    expect(a.mapPages(SZ_32M, 0x8000_0000, SZ_32M, 1, RW)).toBe(SZ_32M);
    expect(a.lookup(SZ_32M)!.level).toBe(2);
    const b = makePgtable('arm-64-lpae-s1', SZ_64K + SZ_512M, 44, 44).ops;
    expect(b.mapPages(SZ_512M, 0x8000_0000, SZ_512M, 1, RW)).toBe(SZ_512M);
    expect(b.lookup(SZ_512M)!.level).toBe(2);
    expect(b.mapPages(0, 0x8000_0000, SZ_64K, 3, RW)).toBe(3 * SZ_64K);
    expect(b.iovaToPhys(2 * SZ_64K + 7)).toBe(0x8000_0000 + 2 * SZ_64K + 7);
  });
});
