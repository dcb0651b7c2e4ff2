// The Linux io-pgtable-arm self-test (arm_lpae_do_selftests / arm_lpae_run_tests), step by step,
// for every granule x (ias <= oas) x stage combination: 3 x 21 x 2 = 126 configurations.

import { describe, expect, it } from 'vitest';
import { EEXIST } from '../../../src/kernel/iommu/errno.ts';
import { pgsizes } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, SELFTEST_ADDRESS_SIZES, SELFTEST_PGSIZES, SZ_1G } from './helpers.ts';

interface Combo {
  fmt: 'arm-64-lpae-s1' | 'arm-64-lpae-s2';
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
