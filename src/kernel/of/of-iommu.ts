// drivers/iommu/of_iommu.c and of_map_id(): from a master's firmware description to ops->of_xlate.
//
// The three cases, and the model's policy for the third (IommuFallbackPolicy, Linux defaults):
//  1. No IOMMU declared (no `iommus`, or no `iommu-map` entry for the RID): -ENODEV → dma-direct.
//  2. Declared and registered: of_xlate for every specifier → IOMMU DMA ops.
//  3. Declared but not registered:
//     a. node disabled: -ENODEV at once (`disabled: 'bypass'`), or fail the master (`'fail'`);
//     b. no registered driver can bind the IOMMU node (`noDriver`), or
//     c. its driver's probe failed for good (`probeFailed`):
//        'linux'  — Linux cannot tell these apart from "not yet": driver_deferred_probe_check_state
//                   defers the master until initcalls end (no modules) or the deferred-probe timeout
//                   (modules), then the master proceeds without the IOMMU (dma-direct), with a note;
//        'strict' — defer the same way, but when Linux would give up, fail the master with -ENODEV
//                   (no untranslated DMA for a device the firmware put behind an IOMMU);
//        'bypass' — proceed without the IOMMU at once.
//     d. its driver exists but has not probed yet, or deferred: always defer the master.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { ProbeDefer, ProbeError } from '../base/driver.ts';
import { EFAULT, EINVAL, ENODEV, errnoName } from '../base/errno.ts';
import { type DeviceTree, type DtNode, hex, type PhandleArgs, parsePhandleList } from './tree.ts';

export type IommuGiveUp = 'linux' | 'strict' | 'bypass';

export interface IommuFallbackPolicy {
  disabled: 'bypass' | 'fail';
  noDriver: IommuGiveUp;
  probeFailed: IommuGiveUp;
}

export const LINUX_IOMMU_POLICY: Readonly<IommuFallbackPolicy> = {
  disabled: 'bypass',
  noDriver: 'linux',
  probeFailed: 'linux',
};

/** The `iommus` specifiers of a master (of_for_each_phandle over "iommus", "#iommu-cells"). */
export function ofIommuSpecs(tree: DeviceTree, node: DtNode) {
  return parsePhandleList(tree, node, 'iommus', '#iommu-cells');
}

export interface IommuMapEntry {
  ridBase: number;
  phandle: number;
  /** Target node, or null if the phandle resolves to nothing. */
  iommu: DtNode | null;
  iommuBase: number;
  length: number;
}

export interface IommuMapInfo {
  entries: IommuMapEntry[];
  /** The `*-map-mask`, or null when absent. */
  mask: number | null;
  /** Set when the map is malformed (of_map_id would reject it). */
  error: string | null;
}

/** Decodes `iommu-map` (or `msi-map`): 4-cell entries <rid-base phandle out-base length>, as of_map_id reads them. */
export function parseIdMap(
  tree: DeviceTree,
  node: DtNode,
  mapName = 'iommu-map',
  maskName = 'iommu-map-mask',
): IommuMapInfo {
  const mask = node.has(maskName) ? (node.u32(maskName) ?? null) : null;
  const raw = node.prop(mapName);
  if (!raw) return { entries: [], mask, error: null };
  const cells = node.u32Array(mapName);
  if (!cells || cells.length === 0 || cells.length % 4 !== 0) {
    return {
      entries: [],
      mask,
      error: `bad ${mapName} length ${raw.length} (must be a multiple of 16 bytes)`,
    };
  }
  const entries: IommuMapEntry[] = [];
  for (let i = 0; i < cells.length; i += 4) {
    const phandle = cells[i + 1]!;
    entries.push({
      ridBase: cells[i]!,
      phandle,
      iommu: tree.findByPhandle(phandle) ?? null,
      iommuBase: cells[i + 2]!,
      length: cells[i + 3]!,
    });
  }
  return { entries, mask, error: null };
}

export type MapIdResult =
  | { ok: true; target: DtNode | null; id: number }
  | { ok: false; errno: number; reason: string };

/**
 * of_map_id(): translate `id` through `mapName` on `node`. With no map, or no matching entry, the
 * result is { target: null, id } (bypass); Linux then finds no IOMMU (-ENODEV).
 */
export function ofMapId(
  tree: DeviceTree,
  node: DtNode,
  id: number,
  mapName = 'iommu-map',
  maskName = 'iommu-map-mask',
  wanted: DtNode | null = null,
): MapIdResult {
  const info = parseIdMap(tree, node, mapName, maskName);
  if (!node.has(mapName)) return { ok: true, target: null, id };
  if (info.error) return { ok: false, errno: -EINVAL, reason: `${node.path}: ${info.error}` };
  const mask = info.mask ?? 0xffffffff;
  const masked = (id & mask) >>> 0;
  for (const e of info.entries) {
    if ((e.ridBase & ~mask) >>> 0 !== 0) {
      return {
        ok: false,
        errno: -EFAULT,
        reason: `${node.path}: invalid ${mapName} translation - ${maskName} (${hex(mask)}) ignores id-base (${hex(e.ridBase)})`,
      };
    }
    if (masked < e.ridBase || masked - e.ridBase >= e.length) continue;
    if (!e.iommu)
      return {
        ok: false,
        errno: -ENODEV,
        reason: `${node.path}: ${mapName} phandle ${hex(e.phandle)} not found`,
      };
    if (wanted && wanted !== e.iommu) continue;
    return { ok: true, target: e.iommu, id: (masked - e.ridBase + e.iommuBase) >>> 0 };
  }
  return { ok: true, target: null, id };
}

/** Result of of_iommu_configure: 0 (IOMMU set up), -ENODEV (no IOMMU: use dma-direct), defer, or failure. */
export type OfIommuResult =
  | { kind: 'iommu' }
  | { kind: 'none'; errno: number; note: string | null }
  | { kind: 'defer'; defer: ProbeDefer }
  | { kind: 'fail'; error: ProbeError };

function why(
  core: DriverCore,
  node: DtNode,
): { cause: 'noDriver' | 'probeFailed' | 'pending'; text: string } {
  const dev = core.deviceForNode(node);
  if (dev?.state === 'failed')
    return { cause: 'probeFailed', text: `probe of IOMMU ${node.path} failed: ${dev.reason}` };
  if (!core.hasDriverFor(node)) {
    return {
      cause: 'noDriver',
      text: `no driver for IOMMU ${node.path} (${node.compatible.join(', ') || 'no compatible'})`,
    };
  }
  if (dev?.state === 'deferred')
    return {
      cause: 'pending',
      text: `IOMMU ${node.path} not registered yet (its probe deferred: ${dev.reason})`,
    };
  return { cause: 'pending', text: `IOMMU ${node.path} not registered yet` };
}

/** of_iommu_xlate(): one specifier. */
function ofIommuXlate(
  core: DriverCore,
  dev: Device,
  spec: PhandleArgs,
  policy: IommuFallbackPolicy,
): OfIommuResult | null {
  const node = spec.node;
  if (!node.available) {
    const note = `IOMMU ${node.path} is disabled`;
    if (policy.disabled === 'fail')
      return { kind: 'fail', error: new ProbeError(-ENODEV, `${note} (policy: fail)`) };
    return { kind: 'none', errno: -ENODEV, note: `${note}; DMA is not translated` };
  }
  const inst = core.iommuFor(node);
  if (!inst) {
    const w = why(core, node);
    const giveUp: IommuGiveUp = w.cause === 'pending' ? 'linux' : policy[w.cause];
    if (giveUp === 'bypass')
      return { kind: 'none', errno: -ENODEV, note: `${w.text}; proceeding without it (policy: bypass)` };
    const st = core.deferredProbeCheckState();
    if (st === 'defer') return { kind: 'defer', defer: new ProbeDefer(`waiting for IOMMU: ${w.text}`, node) };
    // driver_deferred_probe_check_state's warnings (drivers/base/dd.c)
    core.devLog(
      dev,
      st === -ENODEV
        ? 'ignoring dependency for device, assuming no driver'
        : 'deferred probe timeout, ignoring dependency',
      'warn',
    );
    const given = `${w.text}; ${errnoName(st)}: gave up waiting`;
    if (giveUp === 'strict')
      return { kind: 'fail', error: new ProbeError(-ENODEV, `${given} (policy: strict)`) };
    return { kind: 'none', errno: st, note: `${given}, DMA is not translated` };
  }
  if (dev.iommu && dev.iommu.iommuNode !== node) {
    // iommu_fwspec_init(): one IOMMU instance per device.
    return {
      kind: 'none',
      errno: -EINVAL,
      note: `${dev.name} is already behind ${dev.iommu.iommuNode.path}; ${node.path} ignored`,
    };
  }
  if (!dev.iommu) dev.iommu = { iommuNode: node, ops: inst.ops, ids: [], pciRcAts: false };
  const r = inst.ops.ofXlate(dev, spec.args);
  if (r !== 0) return { kind: 'none', errno: r, note: `${inst.ops.name} of_xlate failed: ${errnoName(r)}` };
  return null;
}

/**
 * of_iommu_configure(dev, masterNode, id): PCI devices (id = RID) go through `iommu-map` on the host
 * bridge `masterNode`; other devices through their `iommus`. Errors other than deferral and policy
 * failures leave the device without an IOMMU (its fwspec is dropped), as in Linux.
 */
export function ofIommuConfigure(
  core: DriverCore,
  tree: DeviceTree,
  dev: Device,
  masterNode: DtNode,
  id: number | null,
  policy: IommuFallbackPolicy = LINUX_IOMMU_POLICY,
): OfIommuResult {
  let specs: PhandleArgs[];
  if (id !== null) {
    const m = ofMapId(tree, masterNode, id);
    if (!m.ok) return { kind: 'none', errno: m.errno, note: m.reason };
    if (!m.target) {
      const note = masterNode.has('iommu-map')
        ? `no iommu-map entry for RID ${hex(id)} on ${masterNode.path}`
        : null;
      return { kind: 'none', errno: -ENODEV, note };
    }
    specs = [{ node: m.target, args: [m.id] }];
  } else {
    const p = ofIommuSpecs(tree, masterNode);
    if (!p.ok) return { kind: 'none', errno: -EINVAL, note: `${masterNode.path}: ${p.error}` };
    specs = p.entries;
  }
  if (specs.length === 0) return { kind: 'none', errno: -ENODEV, note: null };
  for (const spec of specs) {
    const r = ofIommuXlate(core, dev, spec, policy);
    if (r) {
      dev.iommu = null;
      return r;
    }
  }
  if (dev.iommu && id !== null && masterNode.has('ats-supported')) dev.iommu.pciRcAts = true;
  return { kind: 'iommu' };
}
