// of_platform_populate() + fw_devlink: devices and their supplier links from the device tree,
// and the platform and PCI buses whose dma_configure runs of_dma_configure.
//
// Which nodes become platform devices (the model's rule, see populatableNodes()):
//   every available node with a `compatible`, in tree order, except the root; nodes under /cpus,
//   /chosen, /aliases, /__symbols__ and /reserved-memory; nodes under a disabled node; and nodes
//   under a PCI host bridge (device_type = "pci"), which the host bridge driver adds to the PCI bus
//   when it probes. Linux populates only children of the root and of bus nodes (simple-bus & co.) and
//   lets parent drivers create the rest; populating every compatible node gives each one a state, and
//   differs from Linux only for nodes whose parent driver is missing.

import type { DeviceLink, DriverCore } from '../base/core.ts';
import { Device } from '../base/device.ts';
import { type Bus, type Driver, ofMatchIndex } from '../base/driver.ts';
import { ofDmaConfigure } from './of-dma.ts';
import { type IommuFallbackPolicy, LINUX_IOMMU_POLICY, parseIdMap } from './of-iommu.ts';
import { cellsToBigInt, type DeviceTree, type DtNode, parsePhandleList } from './tree.ts';

const SKIP_SUBTREES = new Set([
  'cpus',
  'chosen',
  'aliases',
  '__symbols__',
  '__fixups__',
  '__local_fixups__',
  'reserved-memory',
]);

export function isPciHostBridge(node: DtNode): boolean {
  return node.string('device_type') === 'pci';
}

/** Why a node is not a platform device, or null if it is one. */
export function notPopulatedReason(node: DtNode): string | null {
  if (!node.parent) return 'root node';
  if (!node.has('compatible')) return 'no compatible';
  for (let n: DtNode | null = node.parent; n; n = n.parent) {
    if (n.parent === null) break;
    if (!n.available) return `parent ${n.path} is disabled`;
    if (isPciHostBridge(n)) return `on the PCI bus of ${n.path}`;
  }
  let top = node;
  while (top.parent?.parent) top = top.parent;
  if (SKIP_SUBTREES.has(top.baseName)) return `under /${top.name}`;
  // of_skipped_node_table: OPP tables have a compatible but are never devices
  if (node.isCompatible('operating-points-v2')) return 'an OPP table (of_skipped_node_table)';
  if (!node.available) return 'disabled';
  return null;
}

export function populatableNodes(tree: DeviceTree): DtNode[] {
  const out: DtNode[] = [];
  for (const n of tree.nodes()) if (notPopulatedReason(n) === null) out.push(n);
  return out;
}

/** fw_devlink supplier properties: list name, cells name, default cell count, optional? */
const SUPPLIER_PROPS: Array<{ prop: string; cells: string; optional: boolean }> = [
  { prop: 'clocks', cells: '#clock-cells', optional: false },
  { prop: 'power-domains', cells: '#power-domain-cells', optional: false },
  { prop: 'resets', cells: '#reset-cells', optional: false },
  // Optional: of_iommu handles a missing IOMMU (defer, then give up), the core does not block on it.
  { prop: 'iommus', cells: '#iommu-cells', optional: true },
  { prop: 'msi-parent', cells: '#msi-cells', optional: true },
];

export type FwLink = Omit<DeviceLink, 'consumer' | 'runtime'>;

/** The supplier links fw_devlink would create for a node. Malformed properties are skipped. */
export function ofFwLinks(tree: DeviceTree, node: DtNode): FwLink[] {
  const links: FwLink[] = [];
  const seen = new Set<string>();
  const add = (supplierNode: DtNode, kind: string, optional: boolean) => {
    if (supplierNode === node) return;
    // A node does not depend on its own ancestors (fw_devlink avoids parent/child cycles).
    for (let p = node.parent; p; p = p.parent) if (p === supplierNode) return;
    const key = `${supplierNode.path}|${kind}`;
    if (seen.has(key)) return;
    seen.add(key);
    links.push({ supplierNode, supplier: null, kind, optional });
  };
  for (const sp of SUPPLIER_PROPS) {
    if (!node.has(sp.prop)) continue;
    const r = parsePhandleList(tree, node, sp.prop, sp.cells, sp.prop === 'msi-parent' ? 0 : undefined);
    for (const e of r.entries) add(e.node, sp.prop, sp.optional);
  }
  if (node.has('iommu-map')) {
    for (const e of parseIdMap(tree, node).entries) if (e.iommu) add(e.iommu, 'iommu-map', true);
  }
  return links;
}

export function createPlatformBus(tree: DeviceTree, policy: IommuFallbackPolicy = LINUX_IOMMU_POLICY): Bus {
  return {
    name: 'platform',
    match: (dev: Device, drv: Driver) =>
      !!dev.ofNode && ofMatchIndex(drv.ofMatch, dev.ofNode.compatible) >= 0,
    dmaConfigure: (dev, core) => (dev.ofNode ? ofDmaConfigure(core, tree, dev, dev.ofNode, null, policy) : 0),
  };
}

/** PCI IDs from a "pciVVVV,DDDD" compatible. */
export function pciIdsFromCompatible(compat: readonly string[]): { vendor: number; device: number } | null {
  for (const c of compat) {
    const m = /^pci([0-9a-f]{1,4}),([0-9a-f]{1,4})$/i.exec(c);
    if (m) return { vendor: Number.parseInt(m[1]!, 16), device: Number.parseInt(m[2]!, 16) };
  }
  return null;
}

export function createPciBus(tree: DeviceTree, policy: IommuFallbackPolicy = LINUX_IOMMU_POLICY): Bus {
  return {
    name: 'pci',
    match: (dev, drv) => {
      const p = dev.pci;
      if (!p) return false;
      if (
        drv.pciIds?.some((id) => id.vendor === p.vendor && (id.device === 0xffff || id.device === p.device))
      ) {
        return true;
      }
      return !!dev.ofNode && ofMatchIndex(drv.ofMatch, dev.ofNode.compatible) >= 0;
    },
    // PCI masters are described by the host bridge's iommu-map, indexed by requester ID.
    dmaConfigure: (dev, core) =>
      dev.pci ? ofDmaConfigure(core, tree, dev, dev.pci.hostBridge, dev.pci.rid, policy) : 0,
  };
}

/** Platform device name as Linux builds it: "<first reg address>.<node name>", or the path. */
export function platformDeviceName(node: DtNode): string {
  const reg = node.u32Array('reg');
  const na = node.parent?.addressCells ?? 2;
  if (reg && reg.length >= na && na > 0) {
    return `${cellsToBigInt(reg, 0, na).toString(16)}.${node.baseName}`;
  }
  return node.path;
}

/** of_platform_device_create(): one device for one node (boot or hot-plug). */
export function ofPlatformDeviceCreate(core: DriverCore, tree: DeviceTree, node: DtNode): Promise<void> {
  const dev = new Device({ name: platformDeviceName(node), bus: 'platform', ofNode: node });
  return core.addDevice(dev, ofFwLinks(tree, node));
}

/** of_platform_populate() over the whole tree, in tree order. */
export function ofPlatformPopulate(core: DriverCore, tree: DeviceTree): Promise<void> {
  let last: Promise<void> = Promise.resolve();
  for (const n of populatableNodes(tree)) last = ofPlatformDeviceCreate(core, tree, n);
  return last.then(() => core.settled());
}

/** Highest RAM address + 1 from the /memory nodes (device_type = "memory"). */
export function ofRamTop(tree: DeviceTree): bigint {
  let top = 0n;
  const na = tree.root.addressCells;
  const ns = tree.root.sizeCells;
  for (const n of tree.root.children) {
    if (n.string('device_type') !== 'memory' || !n.available) continue;
    const reg = n.u32Array('reg');
    if (!reg) continue;
    for (let i = 0; i + na + ns <= reg.length; i += na + ns) {
      const end = cellsToBigInt(reg, i, na) + cellsToBigInt(reg, i + na, ns);
      if (end > top) top = end;
    }
  }
  return top;
}
