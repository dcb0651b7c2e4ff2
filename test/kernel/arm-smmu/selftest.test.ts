// Linux's io-pgtable self-test procedure (arm_lpae_run_tests) run through the arm-smmu driver:
// the tables belong to a domain the driver finalised on a context bank, the maps and unmaps go
// through the IOMMU core (with the driver's TLB maintenance), iova_to_phys is the driver's
// (the hardware's ATS1PR for stage 1), and every translation the self-test expects is also
// checked by a device reading through the SMMU.

import { describe, expect, it } from 'vitest';
import type { SmmuV2Options } from '../../../src/hw/smmuv2/index.ts';
import { ArmSmmuV2Iommu } from '../../../src/kernel/iommu/arm-smmu/iommu.ts';
import { iommuIovaToPhys, iommuMap, iommuUnmap } from '../../../src/kernel/iommu/domain.ts';
import { pgsizes } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { inTask } from '../../integration/stack-helpers.ts';
import { attachNew, bootV2, dmaRead } from './helpers.ts';

const SZ_1G = 0x4000_0000;
/** Output addresses inside the machine's RAM (the self-test maps iova -> iova; RAM is at 2 GiB). */
const RAM = 0x8000_0000;

const CASES: Array<{ name: string; hw: SmmuV2Options; stage2: boolean }> = [
  { name: 'MMU-500 stage 1 (ARM_64_LPAE_S1)', hw: { compatible: 'arm,mmu-500' }, stage2: false },
  { name: 'MMU-500 stage 2 (ARM_64_LPAE_S2)', hw: { compatible: 'arm,mmu-500' }, stage2: true },
  {
    name: 'MMU-400 stage 1 (ARM_32_LPAE_S1)',
    hw: { compatible: 'arm,mmu-400', numContextBanks: 4 },
    stage2: false,
  },
  {
    name: 'MMU-400 stage 2 (ARM_32_LPAE_S2)',
    hw: { compatible: 'arm,mmu-400', numContextBanks: 4 },
    stage2: true,
  },
];

describe('io-pgtable self-test through the arm-smmu driver', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const s = await bootV2({ hw: c.hw, masters: [{ cells: [5] }] });
      const dom = await attachNew(s, s.devs[0]!, c.stage2);
      const sd = ArmSmmuV2Iommu.domainOf(dom)!;
      expect(sd.stage).toBe(c.stage2 ? 2 : 1);
      const port = s.ports[0]!;
      const sizes = pgsizes(dom.pgsizeBitmap).filter((z) => z <= SZ_1G);
      // an empty table translates nothing
      expect(iommuIovaToPhys(dom, 42)).toBe(0);
      expect((await dmaRead(s, port, 42, 4)).state).toBe('failed');
      // distinct mappings of each size, 1 GiB apart; overlapping maps refused
      let iova = 0;
      const prot = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE;
      for (const size of sizes) {
        expect(iommuMap(dom, iova, RAM, size, prot)).toBe(0);
        expect(iommuMap(dom, iova, RAM + size, size, IOMMU_READ)).toBe(-17);
        expect(iommuIovaToPhys(dom, iova + 42)).toBe(RAM + 42);
        s.m.mem.write32(RAM + 0x40, 0x1234_5678 ^ size);
        const r = await dmaRead(s, port, iova + 0x40, 4);
        expect(r.state).toBe('done');
        iova += SZ_1G;
      }
      // full unmap, then remap
      iova = 0;
      for (const size of sizes) {
        expect(await inTask(s.m, () => iommuUnmap(dom, iova, size))).toBe(size);
        expect(iommuIovaToPhys(dom, iova + 42)).toBe(0);
        expect((await dmaRead(s, port, iova + 0x40, 4)).state).toBe('failed');
        expect(iommuMap(dom, iova, RAM, size, IOMMU_WRITE | IOMMU_READ)).toBe(0);
        expect(iommuIovaToPhys(dom, iova + 42)).toBe(RAM + 42);
        expect((await dmaRead(s, port, iova + 0x40, 4)).state).toBe('done');
        iova += SZ_1G;
      }
      await s.m.sched.runUntilIdle();
      // the only warnings: io-pgtable's WARN for each refused overlapping map (no NO_WARN quirk here)
      expect(s.m.bugs.map((b) => b.message)).toEqual(
        sizes.map(
          (_, i) =>
            `WARNING: arm-lpae io-pgtable: map of 0x${(i * SZ_1G).toString(16)}: already mapped (unmap first)`,
        ),
      );
    });
  }
});
