/**
 * iommu_domain_free of a domain a device still uses, through the whole stack. Linux frees it
 * anyway (with a warning at best) and the device goes on walking freed page tables; the model
 * refuses — the domain stays whole, the device keeps translating through live tables — and
 * reports it. Freed after the detach, it is really freed.
 */
import { describe, expect, it } from 'vitest';
import { PORT_OK } from '../../src/hw/smmuv3/port.ts';
import type { SmmuDomain } from '../../src/kernel/iommu/arm-smmu-v3/iommu.ts';
import { type IommuDomain, iommuMap, iommuUnmap } from '../../src/kernel/iommu/domain.ts';
import { EINVAL } from '../../src/kernel/iommu/errno.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import {
  bootStack,
  dev,
  GPU_PATH,
  gpuOnNewDomain,
  inTask,
  PCI_PATH,
  sidOf,
  translate,
} from './stack-helpers.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const IOVA = 0x4000_0000;

describe('SMMUv3 stack: iommu_domain_free of a domain in use', () => {
  it('attached to a device: refused with a warning; the device keeps live tables; freed after detach', async () => {
    const s = await bootStack();
    const { m, board, k } = s;
    const { gpu, d, page } = await gpuOnNewDomain(s, IOVA);
    const pgd = (d.priv as SmmuDomain).pgt.pgd;
    await inTask(m, () => k.iommu.domainFree(d));
    expect(m.bugs.map((b) => b.message)).toEqual([
      `WARNING: iommu: iommu_domain_free of ${d}, which ${gpu.name} (group ${k.iommu.groupOf(gpu)!.id}) is still attached to: not freed`,
    ]);
    expect(m.pages.ownerOf(pgd)).toBe('io-pgtable'); // the tables are not freed
    const r = translate(board, sidOf(gpu), IOVA);
    expect([r.status, r.oa]).toEqual([PORT_OK, page]);
    // detached, then freed: the tables go
    await inTask(m, () => k.iommu.detachDevice(d, gpu));
    await inTask(m, () => k.iommu.domainFree(d));
    expect(m.bugs).toHaveLength(1);
    expect(m.pages.ownerOf(pgd)).toBeUndefined();
  });

  it('attached to a PASID, or the default domain of a group: refused too', async () => {
    const { m, k } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const d = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
    expect(await inTask(m, () => k.iommu.attachDevicePasid(d, pci, 3))).toBe(0);
    await inTask(m, () => k.iommu.domainFree(d));
    const def = k.iommu.getDmaDomain(pci)!;
    await inTask(m, () => k.iommu.domainFree(def));
    expect(m.bugs.map((b) => b.message)).toEqual([
      `WARNING: iommu: iommu_domain_free of ${d}, which ${pci.name} (group ${k.iommu.groupOf(pci)!.id}) is still attached to (PASID 3): not freed`,
      `WARNING: iommu: iommu_domain_free of ${def}, which ${pci.name} (group ${k.iommu.groupOf(pci)!.id}) is still attached to: not freed`,
    ]);
    expect(m.pages.ownerOf((d.priv as SmmuDomain).pgt.pgd)).toBe('io-pgtable');
  });

  it('a freed domain: attach, map, unmap, PASID attach and a second free are refused with a warning', async () => {
    const { m, board, k } = await bootStack();
    const gpu = dev(k, GPU_PATH);
    const pci = dev(k, PCI_PATH);
    const d = (await inTask(m, () => k.iommu.domainAllocPaging(gpu))) as IommuDomain;
    const pgd = (d.priv as SmmuDomain).pgt.pgd;
    await inTask(m, () => k.iommu.domainFree(d));
    expect(m.pages.ownerOf(pgd)).toBeUndefined();
    const before = k.iommu.getDomainForDev(gpu);
    expect(await inTask(m, () => k.iommu.attachDevice(d, gpu))).toBe(-EINVAL);
    expect(k.iommu.getDomainForDev(gpu)).toBe(before); // still on its DMA domain
    expect(iommuMap(d, IOVA, m.pages.alloc(0, 'p'), 0x1000, RW)).toBe(-EINVAL);
    expect(await inTask(m, () => iommuUnmap(d, IOVA, 0x1000))).toBe(0);
    expect(await inTask(m, () => k.iommu.attachDevicePasid(d, pci, 1))).toBe(-EINVAL);
    await inTask(m, () => k.iommu.domainFree(d));
    expect(m.bugs.map((b) => b.message)).toEqual([
      `WARNING: iommu: attach of ${d} after iommu_domain_free`,
      `WARNING: iommu: iommu_map of ${d} after iommu_domain_free`,
      `WARNING: iommu: iommu_unmap of ${d} after iommu_domain_free`,
      `WARNING: iommu: PASID attach of ${d} after iommu_domain_free`,
      `WARNING: iommu: iommu_domain_free of ${d}, freed already (double free): ignored`,
    ]);
    expect(m.bugs.some((b) => b.kind === 'page-double-free' || b.kind === 'page-bad-free')).toBe(false);
    expect(translate(board, sidOf(gpu), IOVA).status).not.toBe(PORT_OK);
  });
});
