// What `iommu-lab boot` reports: per IOMMU node, per device node, per iommu-map, as data (JSON) and text.
//
// "Devices" are the nodes with a `compatible` that are not IOMMUs (no `#iommu-cells`), plus every
// node with `iommus` or `iommu-map` (even an IOMMU or a node without compatible), plus PCI functions
// added at run time without a node. The root and the /cpus, /chosen, /aliases and /__symbols__
// subtrees are left out. "IOMMUs" are the nodes with `#iommu-cells`.

import type { DriverCore } from '../../kernel/base/core.ts';
import type { Device } from '../../kernel/base/device.ts';
import type { IommuDriverTable } from '../../kernel/drivers/iommu-table.ts';
import { ofIommuSpecs, parseIdMap } from '../../kernel/of/of-iommu.ts';
import { notPopulatedReason } from '../../kernel/of/of-platform.ts';
import { type DeviceTree, type DtNode, hex } from '../../kernel/of/tree.ts';

export type IommuState = 'registered' | 'no-driver' | 'deferred' | 'failed' | 'disabled';
export type DeviceReportState = 'bound' | 'deferred' | 'failed' | 'no-driver' | 'disabled';

export interface IommuReport {
  path: string;
  compatible: string[];
  status: 'okay' | 'disabled';
  state: IommuState;
  /** The model's driver bound to it, or null. */
  driver: string | null;
  /** The Linux driver that handles this compatible, if known. */
  linuxDriver: string | null;
  iommuCells: number | null;
  reason: string | null;
  probeAttempts: number;
}

export interface DeviceReport {
  path: string;
  name: string | null;
  compatible: string[];
  status: 'okay' | 'disabled';
  bus: 'platform' | 'pci' | 'none';
  driver: string | null;
  state: DeviceReportState;
  reason: string | null;
  dmaOps: 'iommu' | 'direct' | 'swiotlb' | 'none';
  dmaCoherent: boolean;
  dmaMask: string | null;
  /** From `iommus` (raw cells), or for PCI functions the iommu-map translation of their RID. */
  iommus: Array<{ iommu: string; args: string[] }>;
  iommusError?: string;
  /** IOMMU in use after of_xlate and the IDs (StreamIDs) it recorded. */
  iommu: string | null;
  streamIds: string[];
  probeAttempts: number;
}

export interface IommuMapReport {
  path: string;
  entries: Array<{ ridBase: string; iommu: string | null; iommuBase: string; length: string }>;
  mask: string | null;
  error?: string;
}

export interface BootReport {
  source: string;
  model: string | null;
  compatible: string[];
  virtualTimeNs: number;
  deferredProbeTimeoutNs: number;
  probeTimedOut: boolean;
  policy: unknown;
  stats: { probeAttempts: number; binds: number; deferrals: number };
  iommus: IommuReport[];
  devices: DeviceReport[];
  iommuMaps: IommuMapReport[];
  devicesDeferred: Array<{ device: string; reason: string }>;
}

const OMIT_SUBTREES = new Set(['cpus', 'chosen', 'aliases', '__symbols__', '__fixups__', '__local_fixups__']);

function omitted(node: DtNode): boolean {
  if (!node.parent) return true;
  let top = node;
  while (top.parent?.parent) top = top.parent;
  return OMIT_SUBTREES.has(top.baseName);
}

function disabledReason(node: DtNode): string | null {
  if (!node.available) return `status = "${node.string('status')}"`;
  for (let p = node.parent; p; p = p.parent) if (!p.available) return `parent ${p.path} is disabled`;
  return null;
}

function status(node: DtNode): 'okay' | 'disabled' {
  return node.available ? 'okay' : 'disabled';
}

function deviceState(dev: Device): DeviceReportState {
  switch (dev.state) {
    case 'bound':
    case 'deferred':
    case 'failed':
    case 'no-driver':
      return dev.state;
    default:
      return 'no-driver';
  }
}

function iommuReport(core: DriverCore, table: IommuDriverTable, node: DtNode): IommuReport {
  const dev = core.deviceForNode(node);
  const info = table.lookup(node);
  const base = {
    path: node.path,
    compatible: node.compatible,
    status: status(node),
    driver: dev?.driver?.name ?? null,
    linuxDriver: info?.linuxDriver ?? null,
    iommuCells: node.u32('#iommu-cells') ?? null,
    probeAttempts: dev?.probeAttempts ?? 0,
  };
  const dis = disabledReason(node);
  if (dis) return { ...base, state: 'disabled', reason: dis };
  if (core.iommuFor(node)) return { ...base, state: 'registered', reason: null };
  if (dev?.state === 'deferred') return { ...base, state: 'deferred', reason: dev.reason };
  if (dev?.state === 'failed') return { ...base, state: 'failed', reason: dev.reason };
  if (dev?.state === 'bound')
    return { ...base, state: 'failed', reason: 'driver bound but registered no IOMMU' };
  const why = dev ? table.noDriverReason(node) : `not a device: ${notPopulatedReason(node)}`;
  return { ...base, state: 'no-driver', reason: why };
}

function hexes(v: readonly number[]): string[] {
  return v.map((x) => hex(x));
}

function deviceReport(tree: DeviceTree, node: DtNode | null, dev: Device | undefined): DeviceReport {
  const iommus: Array<{ iommu: string; args: string[] }> = [];
  let iommusError: string | undefined;
  if (node?.has('iommus')) {
    const p = ofIommuSpecs(tree, node);
    for (const e of p.entries) iommus.push({ iommu: e.node.path, args: hexes(e.args) });
    if (!p.ok) iommusError = p.error;
  } else if (dev?.pci) {
    const m = parseIdMap(tree, dev.pci.hostBridge);
    const mask = m.mask ?? 0xffffffff;
    const rid = (dev.pci.rid & mask) >>> 0;
    const e = m.entries.find((x) => rid >= x.ridBase && rid - x.ridBase < x.length);
    if (e?.iommu) iommus.push({ iommu: e.iommu.path, args: [hex((rid - e.ridBase + e.iommuBase) >>> 0)] });
  }
  const path = node?.path ?? (dev?.pci ? `${dev.pci.hostBridge.path}/${dev.name}` : (dev?.name ?? '?'));
  const compatible =
    node?.compatible ??
    (dev?.pci ? [`pci${dev.pci.vendor.toString(16)},${dev.pci.device.toString(16)}`] : []);
  let state: DeviceReportState;
  let reason: string | null;
  const dis = node ? disabledReason(node) : null;
  if (dis) {
    state = 'disabled';
    reason = dis;
  } else if (dev) {
    state = deviceState(dev);
    reason =
      dev.reason ??
      (dev.state === 'no-driver' ? `no driver for ${compatible.join(', ') || 'this device'}` : null);
  } else {
    state = 'no-driver';
    const np = node ? notPopulatedReason(node) : null;
    reason = `not a device: ${np ?? 'not populated'}`;
  }
  const r: DeviceReport = {
    path,
    name: dev?.name ?? null,
    compatible,
    status: node ? status(node) : 'okay',
    bus: dev ? (dev.busName === 'pci' ? 'pci' : 'platform') : 'none',
    driver: dev?.driver?.name ?? null,
    state,
    reason,
    dmaOps: dev && state === 'bound' ? dev.dma.ops : 'none',
    dmaCoherent: dev?.dma.coherent ?? false,
    dmaMask: dev && state === 'bound' && dev.dma.ops !== 'none' ? hex(dev.dma.mask) : null,
    iommus,
    iommu: dev?.iommu?.iommuNode.path ?? null,
    streamIds: dev?.iommu ? hexes(dev.iommu.ids) : [],
    probeAttempts: dev?.probeAttempts ?? 0,
  };
  if (iommusError !== undefined) r.iommusError = iommusError;
  return r;
}

export function buildBootReport(opts: {
  core: DriverCore;
  tree: DeviceTree;
  table: IommuDriverTable;
  source: string;
  policy: unknown;
}): BootReport {
  const { core, tree, table } = opts;
  const iommus: IommuReport[] = [];
  const devices: DeviceReport[] = [];
  const iommuMaps: IommuMapReport[] = [];
  const seen = new Set<Device>();
  for (const node of tree.nodes()) {
    if (omitted(node)) continue;
    const isIommu = node.has('#iommu-cells');
    if (isIommu) iommus.push(iommuReport(core, table, node));
    const isMaster = node.has('iommus') || node.has('iommu-map');
    if ((node.has('compatible') && !isIommu) || isMaster) {
      const dev = core.deviceForNode(node);
      if (dev) seen.add(dev);
      devices.push(deviceReport(tree, node, dev));
    }
    if (node.has('iommu-map')) {
      const m = parseIdMap(tree, node);
      const r: IommuMapReport = {
        path: node.path,
        entries: m.entries.map((e) => ({
          ridBase: hex(e.ridBase),
          iommu: e.iommu?.path ?? null,
          iommuBase: hex(e.iommuBase),
          length: hex(e.length),
        })),
        mask: m.mask === null ? null : hex(m.mask),
      };
      if (m.error) r.error = m.error;
      iommuMaps.push(r);
    }
  }
  // PCI functions (and other run-time devices) without a node of their own.
  for (const dev of core.devices) {
    if (seen.has(dev) || (dev.ofNode && core.deviceForNode(dev.ofNode) === dev)) continue;
    devices.push(deviceReport(tree, null, dev));
  }
  return {
    source: opts.source,
    model: tree.root.string('model') ?? null,
    compatible: tree.root.compatible,
    virtualTimeNs: core.timer.now,
    deferredProbeTimeoutNs: core.deferredProbeTimeoutNs,
    probeTimedOut: core.probeTimedOut,
    policy: opts.policy,
    stats: { ...core.stats },
    iommus,
    devices,
    iommuMaps,
    devicesDeferred: core.devicesDeferred().map((d) => ({ device: d.device.name, reason: d.reason })),
  };
}

/** Human-readable form. */
export function formatBootReport(r: BootReport): string {
  const out: string[] = [];
  out.push(`platform: ${r.model ?? '(no model)'} [${r.compatible.join(', ')}] from ${r.source}`);
  out.push(
    `boot finished at ${(r.virtualTimeNs / 1e9).toFixed(3)} s virtual; deferred-probe timeout ${r.probeTimedOut ? 'fired' : 'did not fire'}; ${r.stats.probeAttempts} probe attempts, ${r.stats.binds} bound`,
  );
  out.push('');
  out.push(`IOMMUs (${r.iommus.length}):`);
  for (const i of r.iommus) {
    out.push(
      `  ${i.path}  [${i.compatible.join(', ')}]  ${i.state}  driver=${i.driver ?? '-'}${i.reason ? `  (${i.reason})` : ''}`,
    );
  }
  out.push('');
  out.push(`Devices (${r.devices.length}):`);
  for (const d of r.devices) {
    const iommu = d.iommus.map((x) => `${x.iommu}<${x.args.join(' ')}>`).join(', ');
    out.push(`  ${d.path}  [${d.compatible.join(', ')}]`);
    out.push(
      `      bus=${d.bus} driver=${d.driver ?? '-'} state=${d.state} dma=${d.dmaOps} iommu=${iommu || '-'} sids=${d.streamIds.join(',') || '-'} attempts=${d.probeAttempts}`,
    );
    if (d.reason) out.push(`      reason: ${d.reason}`);
    if (d.iommusError) out.push(`      iommus: ${d.iommusError}`);
  }
  if (r.iommuMaps.length > 0) {
    out.push('');
    out.push(`iommu-maps (${r.iommuMaps.length}):`);
    for (const m of r.iommuMaps) {
      out.push(`  ${m.path}  mask=${m.mask ?? '-'}${m.error ? `  error: ${m.error}` : ''}`);
      for (const e of m.entries) {
        out.push(
          `      rid ${e.ridBase}..+${e.length} -> ${e.iommu ?? '(unresolved phandle)'} id ${e.iommuBase}`,
        );
      }
    }
  }
  if (r.devicesDeferred.length > 0) {
    out.push('');
    out.push('devices_deferred:');
    for (const d of r.devicesDeferred) out.push(`  ${d.device}\t${d.reason}`);
  }
  return out.join('\n');
}
