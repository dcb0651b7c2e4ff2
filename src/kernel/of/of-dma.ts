// of_dma_configure_id(): DMA masks, `dma-ranges`, `dma-coherent`, then of_iommu_configure.

import type { DriverCore } from '../base/core.ts';
import type { Device, DmaRange } from '../base/device.ts';
import { updateDirectDmaOps } from '../base/dma-mapping.ts';
import type { ProbeResult } from '../base/driver.ts';
import { type IommuFallbackPolicy, LINUX_IOMMU_POLICY, ofIommuConfigure } from './of-iommu.ts';
import { cellsToBigInt, type DeviceTree, type DtNode } from './tree.ts';

/** of_dma_is_coherent(): `dma-coherent` on the node or an ancestor. */
export function ofDmaIsCoherent(node: DtNode): boolean {
  for (let n: DtNode | null = node; n; n = n.parent) {
    if (n.has('dma-coherent')) return true;
    if (n.has('dma-noncoherent')) return false;
  }
  return false;
}

export type DmaRangesResult =
  | { ok: true; ranges: DmaRange[]; node: DtNode | null }
  | { ok: false; error: string };

/**
 * of_dma_get_range(): the first non-empty `dma-ranges` found from `node` upwards. An empty
 * `dma-ranges;` means 1:1 and the search goes on; none found means no translation (empty list).
 * Each entry is <child-bus-address parent-bus-address size> in the holder's #address-cells, its
 * parent's #address-cells and the holder's #size-cells. PCI (3-cell) child addresses use the low
 * two cells. Only one level of translation is applied (the model does not compose nested ranges).
 */
export function ofDmaGetRange(node: DtNode): DmaRangesResult {
  for (let n: DtNode | null = node; n; n = n.parent) {
    const raw = n.prop('dma-ranges');
    if (!raw || raw.length === 0) continue;
    const cells = n.u32Array('dma-ranges');
    const na = n.addressCells;
    const pna = n.parent?.addressCells ?? 2;
    const ns = n.sizeCells;
    const stride = na + pna + ns;
    if (!cells || stride === 0 || cells.length % stride !== 0) {
      return {
        ok: false,
        error: `${n.path}: bad dma-ranges length ${raw.length} for cells ${na}+${pna}+${ns}`,
      };
    }
    const ranges: DmaRange[] = [];
    for (let i = 0; i < cells.length; i += stride) {
      const childCells = Math.min(na, 2);
      const dmaStart = cellsToBigInt(cells, i + na - childCells, childCells);
      const cpuStart = cellsToBigInt(cells, i + na, pna);
      const size = cellsToBigInt(cells, i + na + pna, ns);
      ranges.push({ cpuStart, dmaStart, size });
    }
    return { ok: true, ranges, node: n };
  }
  return { ok: true, ranges: [], node: null };
}

function ilog2(v: bigint): number {
  let n = -1;
  while (v > 0n) {
    v >>= 1n;
    n++;
  }
  return n;
}

/**
 * of_dma_configure_id(dev, node, id): sets masks (32-bit default), bus limit and range map from
 * dma-ranges, coherency, then configures the IOMMU. Returns 0, a ProbeDefer, or a ProbeError.
 */
export function ofDmaConfigure(
  core: DriverCore,
  tree: DeviceTree,
  dev: Device,
  node: DtNode,
  id: number | null,
  policy: IommuFallbackPolicy = LINUX_IOMMU_POLICY,
): ProbeResult {
  const d = dev.dma;
  const r = ofDmaGetRange(node);
  if (r.ok && r.ranges.length > 0) {
    d.ranges = r.ranges;
    let end = 0n;
    for (const x of r.ranges) if (x.dmaStart + x.size - 1n > end) end = x.dmaStart + x.size - 1n;
    d.busLimit = end;
    const mask = (1n << BigInt(ilog2(end) + 1)) - 1n;
    d.mask &= mask;
    d.coherentMask &= mask;
  } else if (!r.ok) {
    core.log(`${dev.name}: ${r.error}; ignoring dma-ranges`);
  }
  d.coherent = ofDmaIsCoherent(node);
  const res = ofIommuConfigure(core, tree, dev, node, id, policy);
  switch (res.kind) {
    case 'defer':
      return res.defer;
    case 'fail':
      return res.error;
    case 'iommu': {
      d.ops = 'iommu';
      const inst = core.iommuFor(dev.iommu!.iommuNode);
      if (inst?.owner) core.addRuntimeLink(dev, inst.owner, 'iommu');
      return 0;
    }
    default:
      d.ops = 'direct';
      d.iommuNote = res.note;
      updateDirectDmaOps(core, dev);
      return 0;
  }
}
