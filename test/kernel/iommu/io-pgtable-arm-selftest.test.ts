// The Linux io-pgtable-arm self-test (arm_lpae_do_selftests / arm_lpae_run_tests), step by step,
// for every granule x (ias <= oas) x stage combination: 3 x 21 x 2 = 126 configurations.

import { describe, expect, it } from 'vitest';
import { EEXIST } from '../../../src/kernel/iommu/errno.ts';
import { type IoPgtableFmt, pgsizes } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, SELFTEST_ADDRESS_SIZES, SELFTEST_PGSIZES, SZ_1G } from './helpers.ts';

interface Combo {
  fmt: IoPgtableFmt;
  pg: number;
  ias: number;
  oas: number;
}

const combos: Combo[] = [];
for (const pg of SELFTEST_PGSIZES) {
  for (let j = 0; j < SELFTEST_ADDRESS_SIZES.length; j++) {
    // "Don't use ias > oas as it is not valid for stage-2."
    for (let k = 0; k <= j; k++) {
      for (const fmt of ['arm-64-lpae-s1', 'arm-64-lpae-s2'] as const) {
        combos.push({ fmt, pg, ias: SELFTEST_ADDRESS_SIZES[k]!, oas: SELFTEST_ADDRESS_SIZES[j]! });
      }
    }
  }
}

function runTests(c: Combo): void {
  const { m, ops, cfg, tlb } = makePgtable(c.fmt, c.pg, c.ias, c.oas);
  const sizes = pgsizes(cfg.pgsizeBitmap);
  // 2. an empty table translates nothing
  expect(ops.iovaToPhys(42)).toBe(0);
  expect(ops.iovaToPhys(SZ_1G + 42)).toBe(0);
  expect(ops.iovaToPhys(2 * SZ_1G + 42)).toBe(0);

  // 3. distinct mappings of different granule sizes
  let iova = 0;
  for (const size of sizes) {
    expect(ops.mapPages(iova, iova, size, 1, IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE)).toBe(
      size,
    );
    // overlapping mappings are refused
    expect(ops.mapPages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC)).toBe(-EEXIST);
    expect(ops.iovaToPhys(iova + 42)).toBe(iova + 42);
    iova += SZ_1G;
  }

  // 4. full unmap, then remap write-only
  iova = 0;
  for (const size of sizes) {
    expect(ops.unmapPages(iova, size, 1, null)).toBe(size);
    expect(ops.iovaToPhys(iova + 42)).toBe(0);
    expect(ops.mapPages(iova, iova, size, 1, IOMMU_WRITE)).toBe(size);
    expect(ops.iovaToPhys(iova + 42)).toBe(iova + 42);
    iova += SZ_1G;
  }

  // 5. top of the input range (covers the last concatenated stage-2 table)
  const size = sizes[sizes.length - 1]!;
  iova = 2 ** cfg.ias - size;
  expect(ops.mapPages(iova, iova, size, 1, IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE)).toBe(size);
  expect(ops.iovaToPhys(iova + 42)).toBe(iova + 42);
  expect(ops.unmapPages(iova, size, 1, null)).toBe(size);
  expect(ops.iovaToPhys(iova + 42)).toBe(0);

  // 6. free everything; no table page may leak
  ops.free();
  expect(ops.tablePages).toBe(0);
  expect(m.pages.usageByOwner().get('io-pgtable') ?? 0).toBe(0);
  expect(tlb.errors).toEqual([]);
  expect(m.bugs).toEqual([]);
}

describe('io-pgtable-arm self-test (arm_lpae_run_tests)', () => {
  it('covers 126 configurations', () => {
    expect(combos.length).toBe(126);
  });
  for (const c of combos) {
    it(`${c.fmt} granule ${pgsizes(c.pg)[0]! / 1024}K ias ${c.ias} oas ${c.oas}`, () => runTests(c));
  }
});

// The same procedure for the AArch32 long-descriptor formats (ARM_32_LPAE_S1/S2, which Linux's
// self-test does not list): the 4K granule, stage-1 input 32 bits, stage-2 input up to 40, output
// up to 40 — what SMMUv1 (MMU-400/401) context banks use.
const combos32: Combo[] = [];
for (const oas of [32, 36, 40]) {
  for (const ias of [32, 36, 40]) {
    if (ias > oas) continue;
    if (ias === 32) combos32.push({ fmt: 'arm-32-lpae-s1', pg: SELFTEST_PGSIZES[0]!, ias, oas });
    combos32.push({ fmt: 'arm-32-lpae-s2', pg: SELFTEST_PGSIZES[0]!, ias, oas });
  }
}

describe('io-pgtable-arm self-test, ARM_32_LPAE formats', () => {
  for (const c of combos32) {
    it(`${c.fmt} ias ${c.ias} oas ${c.oas}`, () => runTests(c));
  }
  it('refuses what AArch32 cannot address, and keeps only the 4K granule sizes', () => {
    expect(() => makePgtable('arm-32-lpae-s1', SELFTEST_PGSIZES[0]!, 36, 40)).toThrow();
    expect(() => makePgtable('arm-32-lpae-s2', SELFTEST_PGSIZES[0]!, 40, 42)).toThrow();
    expect(() => makePgtable('arm-32-lpae-s1', SELFTEST_PGSIZES[2]!, 32, 40)).toThrow();
    const { cfg } = makePgtable('arm-32-lpae-s1', SELFTEST_PGSIZES[0]! + 0x10000, 32, 40);
    expect(pgsizes(cfg.pgsizeBitmap)).toEqual([0x1000, 0x200000, 0x40000000]);
  });
});
