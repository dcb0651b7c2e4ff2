// io-pgtable-arm with IO_PGTABLE_QUIRK_ARM_TTBR1: the upper-half (TTBR1) table of split page
// tables. Upper-half IOVAs are the negative Numbers with the sign-extended address's value.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERANGE } from '../../../src/kernel/iommu/errno.ts';
import { TCR_TG1_4K, TCR_TG1_64K } from '../../../src/kernel/iommu/io-pgtable/arm-lpae-defs.ts';
import {
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  IO_PGTABLE_QUIRK_NO_WARN,
} from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IommuIotlbGather } from '../../../src/kernel/iommu/iotlb-gather.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, newMachine, SZ_1G, SZ_2M, SZ_4K, SZ_64K, SZ_512M } from './helpers.ts';

const PG4K = SZ_4K + SZ_2M + SZ_1G;
const PG64K = SZ_64K + SZ_512M;
const RW = IOMMU_READ | IOMMU_WRITE;
const TTBR1 = IO_PGTABLE_QUIRK_ARM_TTBR1 | IO_PGTABLE_QUIRK_NO_WARN;
/** 0xffff_ffff_0000_0000 as the model writes it. */
const UPPER = -(2 ** 32);

describe('IO_PGTABLE_QUIRK_ARM_TTBR1', () => {
  it('maps, translates and unmaps at sign-extended upper-half IOVAs', () => {
    const { ops, tlb, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: TTBR1 });
    const before = ops.tablePages;
    expect(ops.mapPages(UPPER, 0x8000_0000, SZ_4K, 4, RW)).toBe(4 * SZ_4K);
    expect(ops.iovaToPhys(UPPER + 0x1234)).toBe(0x8000_1234);
    expect(ops.iovaToPhys(UPPER + 3 * SZ_4K + 8)).toBe(0x8000_3008);
    // the lowest and the highest upper-half addresses of a 48-bit table
    expect(ops.mapPages(-(2 ** 48), 0x9000_0000, SZ_4K, 1, RW)).toBe(SZ_4K);
    expect(ops.mapPages(-SZ_4K, 0xa000_0000, SZ_4K, 1, RW)).toBe(SZ_4K);
    expect(ops.iovaToPhys(-(2 ** 48) + 5)).toBe(0x9000_0005);
    expect(ops.iovaToPhys(-1)).toBe(0xa000_0fff);
    // a 2M block
    expect(ops.mapPages(-SZ_1G, 0x4000_0000, SZ_2M, 1, RW)).toBe(SZ_2M);
    expect(ops.lookup(-SZ_1G + 0x1000)!.level).toBe(2);
    const g = new IommuIotlbGather();
    expect(ops.unmapPages(UPPER, SZ_4K, 4, g)).toBe(4 * SZ_4K);
    expect(ops.iovaToPhys(UPPER + 0x1234)).toBe(0);
    expect(tlb.addPage).toBe(4);
    expect(tlb.errors).toEqual([]);
    ops.free();
    expect(ops.tablePages).toBeLessThan(before + 1);
    expect(m.pages.usageByOwner().get('io-pgtable') ?? 0).toBe(0);
  });

  it("asks for TLB maintenance with the caller's (negative) IOVA", () => {
    const { ops, cfg } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: TTBR1 });
    const seen: number[] = [];
    cfg.tlb = {
      tlbFlushAll: () => {},
      tlbFlushWalk: (iova) => seen.push(iova),
      tlbAddPage: (_g, iova) => seen.push(iova),
    };
    ops.mapPages(UPPER, 0x8000_0000, SZ_4K, 2, RW);
    ops.unmapPages(UPPER + SZ_4K, SZ_4K, 1, new IommuIotlbGather());
    // an unmap covering the table: the walk flush, then the removed range
    ops.unmapPages(UPPER, SZ_2M, 1, new IommuIotlbGather());
    expect(seen).toEqual([UPPER + SZ_4K, UPPER, UPPER]);
  });

  it("refuses IOVAs of the other half, as Linux's iaext check does", () => {
    const { ops, m } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, {
      quirks: IO_PGTABLE_QUIRK_ARM_TTBR1,
    });
    // a lower-half address, and one below the table's range (bits 48..63 not all ones)
    expect(ops.mapPages(0x1000, 0x8000_0000, SZ_4K, 1, RW)).toBe(-ERANGE);
    expect(ops.mapPages(-(2 ** 48) - SZ_4K, 0x8000_0000, SZ_4K, 1, RW)).toBe(-ERANGE);
    expect(m.bugs.map((b) => b.message).join('\n')).toContain(
      '0xfffefffffffff000 -> 0x80000000 out of range',
    );
    ops.mapPages(UPPER, 0x8000_0000, SZ_4K, 1, RW);
    expect(ops.unmapPages(UPPER + 2 ** 48, SZ_4K, 1, null)).toBe(0); // the lower-half alias
    expect(ops.iovaToPhys(UPPER + 2 ** 48)).toBe(0);
    expect(ops.iovaToPhys(UPPER)).toBe(0x8000_0000);
    // and a TTBR0 table refuses the upper half
    const t0 = makePgtable('arm-64-lpae-s1', PG4K, 48, 48).ops;
    expect(t0.mapPages(UPPER, 0x8000_0000, SZ_4K, 1, RW)).toBe(-ERANGE);
    expect(t0.iovaToPhys(UPPER)).toBe(0);
  });

  it('builds the TTBR1 TCR: TG1 encoding, T1SZ, EPD0', () => {
    const a = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: TTBR1 }).ops;
    expect(a.cfg.armLpaeS1Cfg!.tcr).toEqual({
      ips: 5,
      tg: TCR_TG1_4K,
      sh: 3,
      irgn: 1,
      orgn: 1,
      tsz: 16,
      epd0: true,
    });
    const b = makePgtable('arm-64-lpae-s1', PG64K, 39, 48, { quirks: TTBR1 }).ops;
    expect(b.cfg.armLpaeS1Cfg!.tcr.tg).toBe(TCR_TG1_64K);
    expect(b.cfg.armLpaeS1Cfg!.tcr.tsz).toBe(25);
    expect(b.mapPages(-(2 ** 39), 0x1_0000_0000, SZ_64K, 1, RW)).toBe(SZ_64K);
    expect(b.iovaToPhys(-(2 ** 39) + 0x10)).toBe(0x1_0000_0010);
  });

  it('is a stage-1, 64-bit format quirk only', () => {
    expect(() => makePgtable('arm-32-lpae-s1', PG4K, 32, 40, { quirks: TTBR1 })).toThrow(/failed/);
    expect(() => makePgtable('arm-64-lpae-s2', PG4K, 40, 40, { quirks: TTBR1 })).toThrow(/failed/);
  });

  it("lays out the tables exactly as a TTBR0 table of the address's low ias bits", () => {
    const m = newMachine();
    const t1 = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { m, quirks: TTBR1 }).ops;
    const t0 = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { m }).ops;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 36 - 1 }), fc.boolean(), (page, big) => {
        const size = big ? SZ_2M : SZ_4K;
        const off = Math.floor((page * SZ_4K) / size) * size;
        const pa = 0x2_0000_0000 + (off % 2 ** 32);
        const r1 = t1.mapPages(off - 2 ** 48, pa, size, 1, RW);
        const r0 = t0.mapPages(off, pa, size, 1, RW);
        expect(r1).toBe(r0);
        const l1 = t1.lookup(off - 2 ** 48);
        const l0 = t0.lookup(off);
        expect(l1?.level).toBe(l0?.level);
        expect(t1.iovaToPhys(off - 2 ** 48 + 7)).toBe(t0.iovaToPhys(off + 7));
        expect(t1.unmapPages(off - 2 ** 48, size, 1, null)).toBe(t0.unmapPages(off, size, 1, null));
      }),
      { numRuns: 200, seed: 21 },
    );
  });

  it('never throws on arbitrary Numbers as IOVAs', () => {
    const { ops } = makePgtable('arm-64-lpae-s1', PG4K, 48, 48, { quirks: TTBR1 });
    fc.assert(
      fc.property(fc.double(), (iova) => {
        const r = ops.mapPages(iova, 0x8000_0000, SZ_4K, 1, RW);
        expect(r === SZ_4K || r < 0).toBe(true);
        if (r === SZ_4K) expect(ops.unmapPages(iova, SZ_4K, 1, null)).toBe(SZ_4K);
        expect(typeof ops.iovaToPhys(iova)).toBe('number');
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});
