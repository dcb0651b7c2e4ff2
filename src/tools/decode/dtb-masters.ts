// `decode --log --dtb FILE`: which master a StreamID belongs to, from the board's device tree.
// Every SMMUv3 node's `iommus` users and `iommu-map` ranges, by StreamID; the SMMU that printed a
// record is found by its Linux device name ("9000000.iommu"), Xen's ("/smmuv3@9000000") or its unit
// address in the name, else — with one SMMUv3 only, or a StreamID only one SMMUv3 knows — by the
// StreamID alone.

import { pciName } from '../../kernel/base/device.ts';
import { ofIommuSpecs, parseIdMap } from '../../kernel/of/of-iommu.ts';
import { platformDeviceName } from '../../kernel/of/of-platform.ts';
import type { DeviceTree, DtNode } from '../../kernel/of/tree.ts';

/** Names the master of `sid` on the SMMU the log calls `device`, or null. */
export type MasterLookup = (device: string | null, sid: number) => string | null;

export function mastersFromTree(tree: DeviceTree): MasterLookup {
  const smmus = [...tree.root.walk()].filter((n) => n.isCompatible('arm,smmu-v3'));
  const bySmmu = new Map<DtNode, Array<{ lo: number; hi: number; name: (sid: number) => string }>>();
  const add = (smmu: DtNode, lo: number, hi: number, name: (sid: number) => string) => {
    let l = bySmmu.get(smmu);
    if (l === undefined) bySmmu.set(smmu, (l = []));
    l.push({ lo, hi, name });
  };
  for (const n of tree.nodes()) {
    if (n.has('iommus')) {
      for (const e of ofIommuSpecs(tree, n).entries)
        if (smmus.includes(e.node) && e.args.length > 0) add(e.node, e.args[0]!, e.args[0]!, () => n.path);
    }
    if (n.has('iommu-map')) {
      for (const e of parseIdMap(tree, n).entries) {
        if (e.iommu === null || !smmus.includes(e.iommu) || e.length === 0) continue;
        const { ridBase, iommuBase } = e;
        add(
          e.iommu,
          iommuBase,
          iommuBase + e.length - 1,
          (sid) => `${n.path} RID ${pciName(sid - iommuBase + ridBase)}`,
        );
      }
    }
  }
  const smmuOf = (device: string | null): DtNode | null => {
    if (device === null) return null;
    for (const s of smmus) {
      const unit = s.unitAddress;
      if (device === platformDeviceName(s) || device === s.path) return s;
      if (unit !== null && new RegExp(`(^|[^0-9a-f])(0x)?0*${unit}([^0-9a-f]|$)`, 'i').test(device)) return s;
    }
    return null;
  };
  const find = (s: DtNode, sid: number): string | null => {
    const names = (bySmmu.get(s) ?? []).filter((x) => sid >= x.lo && sid <= x.hi).map((x) => x.name(sid));
    return names.length === 0 ? null : names.join(', ');
  };
  return (device, sid) => {
    const s = smmuOf(device);
    if (s !== null) return find(s, sid);
    const hits = smmus.map((x) => find(x, sid)).filter((x): x is string => x !== null);
    if (hits.length === 1) return hits[0]!;
    return hits.length > 1 ? `one of ${hits.join('; ')} (which SMMU printed it is unknown)` : null;
  };
}
