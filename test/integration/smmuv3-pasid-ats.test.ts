/**
 * One domain on the RID and on a PASID of a PCIe endpoint, through the whole stack.
 */
import { describe, expect, it } from 'vitest';
import { PASID_CAP_OFFSET, PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE } from '../../src/hw/devices/pci-config.ts';
import { bootStack, dev, PCI_PATH, smmuInstance } from './stack-helpers.ts';

describe('SMMUv3 stack: PASID on a PCIe endpoint', () => {
  it('the driver enables the endpoint PASID capability at probe (arm_smmu_enable_pasid)', async () => {
    const s = await bootStack();
    expect(s.ep.config.get16(PASID_CAP_OFFSET + PCI_PASID_CTRL) & PCI_PASID_CTRL_ENABLE).toBe(1);
    const { iommu } = smmuInstance(s.k);
    expect(iommu.masterOf(dev(s.k, PCI_PATH))!.ssidBits).toBeGreaterThan(0);
  });
});
