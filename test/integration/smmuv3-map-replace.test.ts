/**
 * iommu_map replacing a table by a block, through the whole stack: io-pgtable frees the old
 * table (arm_lpae_init_pte), so the driver's walk invalidation (tlb_flush_walk) must have
 * completed — TLBI and CMD_SYNC — before iommu_map returns, as Linux's does. Otherwise the SMMU
 * keeps translating through the old 4K entry, to a page the domain no longer maps.
 */
import { describe, expect, it } from 'vitest';
import { PORT_OK } from '../../src/hw/smmuv3/port.ts';
import { iommuIovaToPhys, iommuMap, iommuUnmap } from '../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { bootStack, gpuOnNewDomain, inTask, smmuInstance, translate } from './stack-helpers.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const SZ_2M = 0x20_0000;

describe('SMMUv3 stack: iommu_map replacing a table by a block', () => {
  it('the old 4K translation is gone when iommu_map returns, and stays gone', async () => {
    const s = await bootStack();
    const { m, board, k } = s;
    const { sid, d, page } = await gpuOnNewDomain(s, 0x4003_5000);
    const before = translate(board, sid, 0x4003_5000);
    expect(before.status).toBe(PORT_OK);
    expect(before.oa).toBe(page); // the TLB holds the 4K translation now
    const block = m.pages.alloc(9, '2M block'); // 2 MiB, naturally aligned
    expect(block % SZ_2M).toBe(0);
    const syncs = smmuInstance(k).smmu.stats.syncs;
    expect(iommuMap(d, 0x4000_0000, block, SZ_2M, RW)).toBe(0);
    expect(iommuIovaToPhys(d, 0x4003_5000)).toBe(block + 0x3_5000);
    // right after the call, and 100 us of virtual time later
    const now = translate(board, sid, 0x4003_5000);
    await m.sched.runFor(100_000);
    const later = translate(board, sid, 0x4003_5000);
    expect([now.oa, later.oa]).toEqual([block + 0x3_5000, block + 0x3_5000]);
    expect(now.status).toBe(PORT_OK);
    expect(smmuInstance(k).smmu.stats.syncs).toBeGreaterThan(syncs); // it waited for a CMD_SYNC
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('iommu_unmap frees a table only once the SMMU can no longer walk through it', async () => {
    const s = await bootStack();
    const { m, board } = s;
    const { sid, d, page } = await gpuOnNewDomain(s, 0x4003_5000);
    expect(translate(board, sid, 0x4003_5000).oa).toBe(page);
    // unmapping the whole 2 MiB range removes (and frees) the last-level table
    const atFree: number[] = [];
    const free = m.pages.freePages.bind(m.pages);
    m.pages.freePages = (pa: number) => {
      atFree.push(translate(board, sid, 0x4003_5000).status);
      return free(pa);
    };
    expect(await inTask(m, () => iommuUnmap(d, 0x4000_0000, SZ_2M))).toBe(SZ_2M);
    expect(atFree.length).toBeGreaterThan(0);
    expect(atFree.every((st) => st !== PORT_OK)).toBe(true);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});
