/**
 * What `iommu-lab boot` (and `lab.bootReport()`) reports: per IOMMU node, per device, per
 * iommu-map, as data (JSON) and text.
 *
 * "Devices" are the devices the kernel made (platform devices from the tree, PCI functions), plus
 * disabled nodes that declare `iommus` or `iommu-map` (so that an audit sees them). Nodes Linux
 * never turns into devices (/reserved-memory children, OPP tables, /chosen, ...) are not listed.
 * "IOMMUs" are the nodes with `#iommu-cells`.
 *
 * @module
 */

import type { DriverCore } from '../kernel/base/core.ts';
import type { Device } from '../kernel/base/device.ts';
import type { IommuDriverTable } from '../kernel/drivers/iommu-table.ts';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
} from '../kernel/iommu/domain.ts';
import type { IommuGroup } from '../kernel/iommu/group.ts';
import { ofIommuSpecs, ofMapId, parseIdMap } from '../kernel/of/of-iommu.ts';
import { notPopulatedReason } from '../kernel/of/of-platform.ts';
import { type DeviceTree, type DtNode, hex } from '../kernel/of/tree.ts';

/** Where an IOMMU node ended: registered, or why not. */
export type IommuState = 'registered' | 'no-driver' | 'deferred' | 'failed' | 'disabled';
/** Where a device ended. */
export type DeviceReportState = 'bound' | 'deferred' | 'failed' | 'no-driver' | 'disabled';
/** The type of the domain a master's group is attached to ('none': no IOMMU in use). */
export type DomainTypeName = 'dma' | 'dma-fq' | 'identity' | 'blocked' | 'unmanaged' | 'none';

/** One IOMMU node. */
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

/** One device (or disabled master node). */
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
  /** The IOMMU its DMA goes to (DT path): the one in use, else the first one it declares. */
  iommu: string | null;
  /** The first cell of each `iommus` entry on that IOMMU, in DT order (PCI: the iommu-map result). */
  streamIds: number[];
  /** The second cells, on IOMMUs with `#iommu-cells` = 2 (SMR masks); absent otherwise. */
  streamMasks?: number[];
  /** The IOMMU IDs of_xlate recorded in the fwspec (hex), while the IOMMU is in use. */
  fwspecIds: string[];
  /** Its IOMMU group's number, or null. */
  group: number | null;
  /** The domain its group is attached to. */
  domainType: DomainTypeName;
  probeAttempts: number;
  /**
   * Drivers whose probe rejected the match (-ENODEV / -ENXIO: "not my device"), so that the next
   * matching driver was tried; each cost one probe attempt. Absent when none.
   */
  rejectedBy?: string[];
  /** Virtual time (ns) it bound, or null. */
  boundNs: number | null;
  /** The proof DMA's outcome: "ok", what failed, or null when none was run. */
  dmaCheck: string | null;
  /**
   * The declared IOMMU is of a kind the model has no driver for: the Linux driver, and what
   * Linux would do for this master.
   */
  unmodelledIommu?: { compatible: string; linuxDriver: string | null; linux: string };
}

/** One `iommu-map`. */
export interface IommuMapReport {
  path: string;
  entries: Array<{ ridBase: string; iommu: string | null; iommuBase: string; length: string }>;
  mask: string | null;
  error?: string;
}

/** The whole report. */
export interface BootReport {
  source: string;
  model: string | null;
  compatible: string[];
  virtualTimeNs: number;
  /** Virtual time (ns) of the last successful bind, or null. */
  lastBindNs: number | null;
  deferredProbeTimeoutNs: number;
  probeTimedOut: boolean;
  policy: unknown;
  stats: { probeAttempts: number; binds: number; deferrals: number };
  iommus: IommuReport[];
  devices: DeviceReport[];
  iommuMaps: IommuMapReport[];
  devicesDeferred: Array<{ device: string; reason: string }>;
}

/** What the report needs besides the driver core (see buildBootReport). */
export interface BootReportInput {
  core: DriverCore;
  tree: DeviceTree;
  table: IommuDriverTable;
  source: string;
  policy: unknown;
  /** The IOMMU core's group of a device (null: none). */
  groupOf?: (dev: Device) => IommuGroup | null;
  /** The proof DMA's outcome per device. */
  dmaChecks?: ReadonlyMap<Device, string>;
}

function domainTypeOf(g: IommuGroup | null): DomainTypeName {
  const t = g?.domain?.type;
  switch (t) {
    case undefined:
      return 'none';
    case IOMMU_DOMAIN_DMA:
      return 'dma';
    case IOMMU_DOMAIN_DMA_FQ:
      return 'dma-fq';
    case IOMMU_DOMAIN_IDENTITY:
      return 'identity';
    case IOMMU_DOMAIN_BLOCKED:
      return 'blocked';
    default:
      return 'unmanaged';
  }
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

function deviceReport(inp: BootReportInput, node: DtNode | null, dev: Device | undefined): DeviceReport {
  const { tree, table, core } = inp;
  const iommus: Array<{ iommu: string; args: string[] }> = [];
  let iommusError: string | undefined;
  let declared: DtNode | null = null;
  const streamIds: number[] = [];
  const streamMasks: number[] = [];
  if (node?.has('iommus') && !dev?.pci) {
    const p = ofIommuSpecs(tree, node);
    for (const e of p.entries) iommus.push({ iommu: e.node.path, args: hexes(e.args) });
    if (!p.ok) iommusError = p.error;
    declared = p.entries[0]?.node ?? null;
    for (const e of p.entries) {
      if (e.node !== declared || e.args.length === 0) continue;
      streamIds.push(e.args[0]!);
      if (e.args.length >= 2) streamMasks.push(e.args[1]!);
    }
  } else if (dev?.pci) {
    const m = ofMapId(tree, dev.pci.hostBridge, dev.pci.rid);
    if (m.ok && m.target) {
      iommus.push({ iommu: m.target.path, args: [hex(m.id)] });
      declared = m.target;
      streamIds.push(m.id);
    }
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
  const group = dev && state === 'bound' ? (inp.groupOf?.(dev) ?? null) : null;
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
    iommu: dev?.iommu?.iommuNode.path ?? declared?.path ?? null,
    streamIds,
    fwspecIds: dev?.iommu ? hexes(dev.iommu.ids) : [],
    group: group?.id ?? null,
    domainType: domainTypeOf(group),
    probeAttempts: dev?.probeAttempts ?? 0,
    boundNs: dev && state === 'bound' && dev.boundNs >= 0 ? dev.boundNs : null,
    dmaCheck: (dev && inp.dmaChecks?.get(dev)) ?? null,
  };
  if (streamMasks.length > 0) r.streamMasks = streamMasks;
  const rejected = dev ? core.rejectedDrivers(dev).map((d) => d.name) : [];
  if (rejected.length > 0) r.rejectedBy = rejected;
  if (iommusError !== undefined) r.iommusError = iommusError;
  if (declared?.available && !core.iommuFor(declared) && !table.lookup(declared)?.driver) {
    const info = table.lookup(declared);
    r.unmodelledIommu = {
      compatible: declared.compatible[0] ?? '',
      linuxDriver: info?.linuxDriver ?? null,
      linux: info
        ? `Linux's ${info.linuxDriver} driver would register ${declared.path}, and this master would get a group, a default DMA domain and IOMMU DMA ops; the model has no ${info.linuxDriver}, so it is handled as an IOMMU that never registers (policy)`
        : `no Linux driver is known for ${declared.compatible[0] ?? 'this IOMMU'}: Linux would defer this master until the deferred-probe timeout, then use it without translation`,
    };
  }
  return r;
}

/** Build the report of a booted kernel. */
export function buildBootReport(opts: BootReportInput): BootReport {
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
    const dev = core.deviceForNode(node);
    if (dev !== undefined && dev.pci === null) {
      seen.add(dev);
      devices.push(deviceReport(opts, node, dev));
    } else if (dev === undefined && isMaster && disabledReason(node) !== null) {
      devices.push(deviceReport(opts, node, undefined));
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
    if (seen.has(dev)) continue;
    devices.push(deviceReport(opts, dev.ofNode, dev));
  }
  return {
    source: opts.source,
    model: tree.root.string('model') ?? null,
    compatible: tree.root.compatible,
    virtualTimeNs: core.timer.now,
    lastBindNs: core.lastBindNs >= 0 ? core.lastBindNs : null,
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

/** The report as text, one block per IOMMU and device. */
export function formatBootReport(r: BootReport): string {
  const out: string[] = [];
  out.push(`platform: ${r.model ?? '(no model)'} [${r.compatible.join(', ')}] from ${r.source}`);
  const last = r.lastBindNs === null ? 'no device bound' : `last bind at ${secs(r.lastBindNs)} s virtual`;
  out.push(
    `boot finished at ${secs(r.virtualTimeNs)} s virtual; ${last}; deferred-probe timeout ${r.probeTimedOut ? 'fired' : 'did not fire'}; ${r.stats.probeAttempts} probe attempts, ${r.stats.binds} bound`,
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
      `      bus=${d.bus} driver=${d.driver ?? '-'} state=${d.state} dma=${d.dmaOps} iommu=${iommu || '-'} attempts=${d.probeAttempts}`,
    );
    if (d.iommu !== null) {
      const sids = d.streamIds.map((x) => hex(x)).join(',') || '-';
      const masks = d.streamMasks ? ` masks=${d.streamMasks.map((x) => hex(x)).join(',')}` : '';
      const bound = d.boundNs === null ? '' : ` bound@${secs(d.boundNs)}s`;
      out.push(
        `      streamIds=${sids}${masks} group=${d.group ?? '-'} domain=${d.domainType}${bound} dmaCheck=${d.dmaCheck ?? '-'}`,
      );
    }
    if (d.unmodelledIommu)
      out.push(`      unmodelled IOMMU ${d.unmodelledIommu.compatible}: ${d.unmodelledIommu.linux}`);
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

function secs(ns: number): string {
  return (ns / 1e9).toFixed(6);
}
