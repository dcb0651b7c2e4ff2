// The minimal contract between the driver model / of_iommu and IOMMU drivers, until the IOMMU core
// (src/kernel/iommu/) lands. An IOMMU driver's probe calls core.registerIommu(node, ops, dev)
// (iommu_device_register); of_iommu finds the instance by its firmware node (the DT node) and calls
// ops.ofXlate for each specifier (of_iommu_xlate → ops->of_xlate). The later IOMMU core will wrap this
// registry; drivers keep calling the same two functions.

import type { DtNode } from '../of/tree.ts';
import type { Device } from './device.ts';

export interface IommuOps {
  /** Driver name, for reports ("arm-smmu-v3"). */
  readonly name: string;
  /**
   * ops->of_xlate: record the specifier cells `args` (the cells after the phandle in `iommus`, or the
   * StreamID from `iommu-map`) for `dev`, typically with fwspecAddIds(dev, ...). 0 or -errno.
   */
  ofXlate(dev: Device, args: readonly number[]): number;
}

/** A registered IOMMU instance (struct iommu_device). */
export interface IommuInstance {
  node: DtNode;
  ops: IommuOps;
  /** The device whose driver registered it (becomes the supplier of its masters), if any. */
  owner: Device | null;
}

/** iommu_fwspec_add_ids(). */
export function fwspecAddIds(dev: Device, ids: readonly number[]): number {
  if (!dev.iommu) return -22; // -EINVAL: no fwspec
  dev.iommu.ids.push(...ids.map((v) => v >>> 0));
  return 0;
}
