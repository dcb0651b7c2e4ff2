// Which driver handles which IOMMU, as data. Linux's IOMMU drivers are listed by the compatibles they
// match; an entry gets an implementation when the model's driver exists (the SMMUv3 driver calls
// iommuDriverTable.implement('arm-smmu-v3', driver) when it lands). Nodes whose driver is listed but
// not implemented, or not listed at all, are reported honestly as "no-driver" — never faked.

import { compatMatches, type Driver } from '../base/driver.ts';
import type { DtNode } from '../of/tree.ts';

export interface IommuDriverInfo {
  /** Linux driver name (drivers/iommu/...). */
  readonly linuxDriver: string;
  readonly compatibles: readonly string[];
  /** The model's implementation, once it exists. */
  driver: Driver | null;
}

const LINUX_IOMMU_DRIVERS: Array<[string, string[]]> = [
  ['arm-smmu-v3', ['arm,smmu-v3']],
  [
    'arm-smmu',
    [
      'arm,smmu-v1',
      'arm,smmu-v2',
      'arm,mmu-400',
      'arm,mmu-401',
      'arm,mmu-500',
      'cavium,smmu-v2',
      'nvidia,smmu-500',
      'nvidia,*-smmu',
      'qcom,smmu-v2',
      'qcom,smmu-500',
      'qcom,*-smmu-500',
      'qcom,*-smmu-v2',
      'qcom,adreno-smmu',
      'marvell,ap806-smmu-500',
    ],
  ],
  ['qcom_iommu', ['qcom,msm-iommu-v1', 'qcom,msm-iommu-v2']],
  ['msm_iommu', ['qcom,apq8064-iommu']],
  ['rockchip-iommu', ['rockchip,iommu', 'rockchip,rk3568-iommu']],
  [
    'tegra-smmu',
    ['nvidia,tegra30-smmu', 'nvidia,tegra114-smmu', 'nvidia,tegra124-smmu', 'nvidia,tegra210-smmu'],
  ],
  ['ipmmu-vmsa', ['renesas,ipmmu-*']],
  ['mtk-iommu', ['mediatek,*-m4u', 'mediatek,*-iommu-*']],
  ['mtk-iommu-v1', ['mediatek,mt2701-m4u']],
  ['apple-dart', ['apple,t8103-dart', 'apple,t8110-dart', 'apple,t6000-dart']],
  ['exynos-sysmmu', ['samsung,exynos-sysmmu']],
  ['sun50i-iommu', ['allwinner,sun50i-h6-iommu', 'allwinner,sun50i-h616-iommu']],
  ['omap-iommu', ['ti,omap2-iommu', 'ti,omap4-iommu', 'ti,dra7-iommu', 'ti,dra7-dsp-iommu']],
  ['sprd-iommu', ['sprd,iommu-v1']],
  ['riscv-iommu', ['riscv,iommu']],
  ['virtio-iommu', ['virtio,mmio']],
];

export class IommuDriverTable {
  private readonly entries: IommuDriverInfo[];

  constructor(entries: Array<[string, string[]]> = LINUX_IOMMU_DRIVERS) {
    this.entries = entries.map(([linuxDriver, compatibles]) => ({ linuxDriver, compatibles, driver: null }));
  }

  /** Registers the model's implementation of a Linux IOMMU driver (adds the entry if new). */
  implement(linuxDriver: string, driver: Driver): void {
    let e = this.entries.find((x) => x.linuxDriver === linuxDriver);
    if (!e) {
      e = { linuxDriver, compatibles: driver.ofMatch ?? [], driver: null };
      this.entries.push(e);
    }
    e.driver = driver;
  }

  /** The entry whose compatibles match the node's most specific compatible first. */
  lookup(node: DtNode): IommuDriverInfo | undefined {
    for (const c of node.compatible) {
      const e = this.entries.find((x) => x.compatibles.some((p) => compatMatches(p, c)));
      if (e) return e;
    }
    return undefined;
  }

  /** Drivers to register at boot. */
  implementedDrivers(): Driver[] {
    return this.entries.flatMap((e) => (e.driver ? [e.driver] : []));
  }

  /** One line on why a node has no driver. */
  noDriverReason(node: DtNode): string {
    const e = this.lookup(node);
    if (e) return `handled by Linux driver ${e.linuxDriver}, not implemented in iommu-lab yet`;
    return `no known IOMMU driver for compatible ${node.compatible.map((c) => `"${c}"`).join(', ') || '(none)'}`;
  }
}

/** The process-wide table that IOMMU drivers register into. */
export const iommuDriverTable = new IommuDriverTable();
