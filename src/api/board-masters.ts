/**
 * The DMA masters a device tree describes, as hardware: for every available node with `iommus`
 * whose IOMMU is modelled on the board, a generic bus master with one port per `iommus` entry
 * (the entry's first cell is the StreamID it issues); for every available PCI host bridge with an
 * `iommu-map`, one PCI function per requester ID: the functions the tree describes under the
 * bridge, else the ones a user asks for (`--pci BDF@HOSTPATH`), else one at the first RID of each
 * `iommu-map` entry. A PCI function issues the StreamID that the bridge's `iommu-map` gives its
 * RID, as the root complex would.
 *
 * Nothing here knows an IOMMU kind: a master only needs the IOMMU's DMA port (`DmaIommu`).
 */

import { PciConfigSpace } from '../hw/devices/pci-config.ts';
import { PcieEcam } from '../hw/devices/pcie-ecam.ts';
import { PlatformDmaMaster } from '../hw/devices/platform-master.ts';
import type { DmaIommu } from '../hw/smmu-common/port.ts';
import { pciRidFromNode } from '../kernel/drivers/pci.ts';
import { ofAddressToResource } from '../kernel/of/of-address.ts';
import { ofIommuSpecs, ofMapId, parseIdMap } from '../kernel/of/of-iommu.ts';
import { isPciHostBridge, notPopulatedReason, pciIdsFromCompatible } from '../kernel/of/of-platform.ts';
import { DtNode, encodeCells, encodeStrings } from '../kernel/of/tree.ts';
import type { Machine } from '../platform/machine.ts';
import type { Board } from './board.ts';
import { LabError } from './errors.ts';

/** PCI IDs of the functions the board adds (QEMU's vendor ID, a generic device ID). */
export const GENERIC_PCI_FUNCTION = { vendor: 0x1b36, device: 0x00ff } as const;

/** A PCI function a user asks for behind a host bridge (`--pci BDF@HOSTPATH`). */
export interface PciRequest {
  /** Requester ID (bus << 8 | device << 3 | function). */
  rid: number;
  /** Device-tree path of the host bridge. */
  host: string;
}

/** One DMA master of the tree with its hardware. */
export interface DtMaster {
  /** Its node (for a PCI function: the function's node under the host bridge). */
  node: DtNode;
  /** For a PCI function: its requester ID and host bridge; null for a platform master. */
  pci: { rid: number; host: DtNode } | null;
  /** The IOMMU node its DMA goes to. */
  iommu: DtNode;
  /** One port per StreamID, in `iommus` order. */
  ports: PlatformDmaMaster[];
}

/** The board's modelled IOMMUs by node (every IOMMU model with a DMA port). */
export function iommuHardware(board: Board): Map<DtNode, DmaIommu> {
  const m = new Map<DtNode, DmaIommu>();
  for (const s of board.smmus) m.set(s.node, s.hw);
  // SMMUv1/v2-family models (board-smmuv2.ts): a node may have several instances programmed
  // alike (NVIDIA); a master's DMA goes through the first
  const v2 = (board as { smmuV2s?: ReadonlyArray<{ node: DtNode; hw: readonly DmaIommu[] }> }).smmuV2s;
  for (const s of v2 ?? []) if (s.hw.length > 0) m.set(s.node, s.hw[0]!);
  return m;
}

/** Add the hardware of every DMA master the tree describes (see the file comment). */
export function addTreeMasters(board: Board, pci: readonly PciRequest[] = []): DtMaster[] {
  const tree = board.tree;
  const hw = iommuHardware(board);
  const out: DtMaster[] = [];
  const taken = new Set<DtNode>(board.masters.map((m) => m.node));
  /** (IOMMU, StreamID) pairs that already have a stall listener. */
  const listening = new Set<string>();
  const port = (iommu: DtNode, h: DmaIommu, sid: number, name: string) => {
    const key = `${iommu.path}#${sid}`;
    const attach = !listening.has(key);
    listening.add(key);
    return new PlatformDmaMaster(h, sid, { name, canStall: false, attach });
  };
  for (const req of pci) {
    const host = tree.findByPath(req.host);
    if (host === undefined || !isPciHostBridge(host))
      throw new LabError(`--pci: no PCI host bridge at ${req.host}`);
  }
  for (const node of tree.nodes()) {
    if (taken.has(node) || !node.available || notPopulatedReason(node) !== null) continue;
    if (node.has('iommus')) {
      const specs = ofIommuSpecs(tree, node);
      if (!specs.ok || specs.entries.length === 0) continue;
      const iommu = specs.entries[0]!.node;
      const h = hw.get(iommu);
      if (h === undefined) continue;
      const sids = specs.entries.filter((e) => e.node === iommu).map((e) => e.args[0] ?? 0);
      const ports = sids.map((sid, i) =>
        port(iommu, h, sid, sids.length > 1 ? `${node.name}.${i}` : node.name),
      );
      out.push({ node, pci: null, iommu, ports });
    } else if (isPciHostBridge(node) && node.has('iommu-map')) {
      out.push(...hostFunctions(board, node, pci, hw, port));
    }
  }
  tree.invalidate();
  return out;
}

/** The ECAM window of a `pci-host-ecam-generic` bridge, when its `reg` is free MMIO space. */
function ecamWindow(board: Board, host: DtNode): PcieEcam | null {
  if (!host.isCompatible('pci-host-ecam-generic')) return null;
  const r = ofAddressToResource(host, 0);
  if (r === null || r.size < 0x100000) return null;
  try {
    return ecamFor(board, r.start, r.size);
  } catch {
    return null; // overlaps RAM or another device: leave config space unmodelled
  }
}

function hostFunctions(
  board: Board,
  host: DtNode,
  pci: readonly PciRequest[],
  hw: Map<DtNode, DmaIommu>,
  port: (iommu: DtNode, h: DmaIommu, sid: number, name: string) => PlatformDmaMaster,
): DtMaster[] {
  const tree = board.tree;
  const map = parseIdMap(tree, host);
  if (map.error !== null) return [];
  // the functions: described under the bridge, asked for, or one per iommu-map entry
  const described = host.children.filter(
    (c) => c.available && pciRidFromNode(c) !== null && pciIdsFromCompatible(c.compatible) !== null,
  );
  const asked = pci.filter((p) => p.host === host.path);
  const fns: Array<{ rid: number; node: DtNode | null }> =
    asked.length > 0
      ? asked.map((a) => ({ rid: a.rid, node: described.find((c) => pciRidFromNode(c) === a.rid) ?? null }))
      : described.length > 0
        ? described.map((c) => ({ rid: pciRidFromNode(c)!, node: c }))
        : map.entries.map((e) => ({ rid: e.ridBase, node: null }));
  const out: DtMaster[] = [];
  const seen = new Set<number>();
  for (const f of fns) {
    if (seen.has(f.rid)) continue;
    seen.add(f.rid);
    const m = ofMapId(tree, host, f.rid);
    if (!m.ok || m.target === null) continue;
    const h = hw.get(m.target);
    if (h === undefined) continue;
    let node = f.node;
    if (node === null) {
      const dev = (f.rid >> 3) & 0x1f;
      const fn = f.rid & 7;
      const bus = f.rid >> 8;
      node = new DtNode(`function@${bus ? `${bus.toString(16)},` : ''}${dev.toString(16)},${fn}`);
      if (host.child(node.name) !== undefined) continue;
      const id = GENERIC_PCI_FUNCTION;
      node.setProp('compatible', encodeStrings([`pci${id.vendor.toString(16)},${id.device.toString(16)}`]));
      node.setProp('reg', encodeCells([f.rid << 8, 0, 0, 0, 0]));
      host.addChild(node);
    }
    const name = `${host.name}/${node.name}`;
    out.push({ node, pci: { rid: f.rid, host }, iommu: m.target, ports: [port(m.target, h, m.id, name)] });
    // a generic ECAM bridge: the function's configuration space answers there (no capabilities)
    const ecam = ecamWindow(board, host);
    const ids = pciIdsFromCompatible(node.compatible) ?? GENERIC_PCI_FUNCTION;
    ecam?.attach(f.rid, new PciConfigSpace(ids.vendor, ids.device));
  }
  return out;
}

const ecams = new WeakMap<Machine, Map<number, PcieEcam>>();

/** A host bridge's ECAM window at `base`, mapped on the board's MMIO bus on first use. */
export function ecamFor(board: Board, base: number, size: number): PcieEcam {
  let byBase = ecams.get(board.machine);
  if (byBase === undefined) ecams.set(board.machine, (byBase = new Map()));
  let e = byBase.get(base);
  if (e === undefined) {
    e = new PcieEcam(`pcie-ecam@${base.toString(16)}`);
    board.machine.mmio.map(base, size, e);
    byBase.set(base, e);
  }
  return e;
}
