/**
 * One domain on the RID and on a PASID of a PCIe endpoint, through the whole stack: the driver
 * must keep invalidating the endpoint's ATC for the PASID after the RID moved away (Linux keeps
 * one arm_smmu_master_domain per (master, domain, SSID) for this), with and without ATS.
 */
import { describe, expect, it } from 'vitest';
import { PASID_CAP_OFFSET, PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE } from '../../src/hw/devices/pci-config.ts';
import { type IommuDomain, iommuMap, iommuUnmap } from '../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import {
  bootStack,
  dev,
  fillPattern,
  inTask,
  NO_ATS_DTS,
  PCI_PATH,
  type Stack,
  sameBytes,
  smmuInstance,
} from './stack-helpers.ts';

const IOVA = 0x4003_5000;
const RW = IOMMU_READ | IOMMU_WRITE;

/** DMA read by the endpoint (through its ATC when ATS is on), tagged with `ssid` (-1: none). */
async function epRead(s: Stack, ssid: number, iova: number, len: number) {
  const bytes = new Uint8Array(len);
  let out: { ok: boolean; why: string } | null = null;
  s.ep.dma({ ssid, iova, buf: bytes, write: false, onDone: (ok, _n, why) => (out = { ok, why }) });
  await s.m.sched.runUntilIdle();
  if (out === null) throw new Error('endpoint DMA did not complete');
  return { ...(out as { ok: boolean; why: string }), bytes };
}

describe('SMMUv3 stack: PASID on a PCIe endpoint', () => {
  it('the driver enables the endpoint PASID capability at probe (arm_smmu_enable_pasid)', async () => {
    const s = await bootStack();
    expect(s.ep.config.get16(PASID_CAP_OFFSET + PCI_PASID_CTRL) & PCI_PASID_CTRL_ENABLE).toBe(1);
    const { iommu } = smmuInstance(s.k);
    expect(iommu.masterOf(dev(s.k, PCI_PATH))!.ssidBits).toBeGreaterThan(0);
  });

  for (const ats of [true, false]) {
    it(`after the RID is detached, unmap still reaches PASID 1 (${ats ? 'ATS' : 'no ATS'})`, async () => {
      const s = await bootStack(ats ? {} : { dts: NO_ATS_DTS });
      const { m, k, ep } = s;
      const pci = dev(k, PCI_PATH);
      expect(ep.atsEnabled).toBe(ats);
      const page = m.pages.alloc(0, 'old page');
      const old = fillPattern(m, page, 0x1000, 5);
      const d = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
      expect(iommuMap(d, IOVA, page, 0x1000, RW)).toBe(0);
      expect(await inTask(m, () => k.iommu.attachDevice(d, pci))).toBe(0);
      expect(await inTask(m, () => k.iommu.attachDevicePasid(d, pci, 1))).toBe(0);
      expect(sameBytes((await epRead(s, 1, IOVA, 0x1000)).bytes, old)).toBe(true);
      // the RID goes back to its default domain; PASID 1 stays on `d`
      await inTask(m, () => k.iommu.detachDevice(d, pci));
      expect(k.iommu.getDomainForDevPasid(pci, 1)).toBe(d);
      // the endpoint translates (and, with ATS, caches) PASID 1's page again
      const again = await epRead(s, 1, IOVA, 0x1000);
      expect(again.ok).toBe(true);
      expect(sameBytes(again.bytes, old)).toBe(true);
      const atcInvs = ep.stats.atcInvalidations;
      expect(await inTask(m, () => iommuUnmap(d, IOVA, 0x1000))).toBe(0x1000);
      // unmap returned: the endpoint must not reach the old page any more
      const after = await epRead(s, 1, IOVA, 0x1000);
      expect(sameBytes(after.bytes, old)).toBe(false);
      expect(after.ok).toBe(false);
      if (ats) expect(ep.stats.atcInvalidations).toBeGreaterThan(atcInvs);
      expect(m.bugs.map((b) => b.message)).toEqual([]);
    });
  }
});
