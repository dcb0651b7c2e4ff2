/**
 * `iommu-lab boot --check` and `lab.check()`: an audit of a booted board's DMA isolation, in the
 * manner of dtc's checks. Each finding names a check, a severity and a location: for a tree read
 * from .dts source the file, line and column of the property (cpp line markers followed, so into
 * the original .dtsi), and always the node path and property.
 *
 * Checks (severity):
 * - `untranslated-dma` (warning): a master that declares an IOMMU runs without translation
 *   (its IOMMU is disabled, unmodelled, or never registered, and the policy let it go on);
 * - `deferred-master` (error): a master still deferred when probing ended;
 * - `iommus-disabled` (warning): `iommus` / `iommu-map` points at a disabled IOMMU;
 * - `iommus-missing` (error): `iommus` / `iommu-map` points at no node, or at a node without
 *   `#iommu-cells`;
 * - `iommu-cells` (error): the `iommus` cells do not fit the IOMMU's `#iommu-cells`, or an IOMMU's
 *   `#iommu-cells` is not what its binding allows;
 * - `iommu-map-overlap` (error) and `iommu-map-gap` (warning): `iommu-map` entries that overlap,
 *   or requester IDs between entries that no entry translates;
 * - `shared-stream` (error): unrelated masters with the same StreamID (SMMUv2: overlapping SMR
 *   id/mask) on one IOMMU: the IOMMU cannot tell them apart, so they share a group and an address
 *   space — an isolation hazard;
 * - `dma-ranges` (error): `dma-ranges` that cannot be honoured (malformed, or reaching no RAM).
 */

import type { DriverCore } from '../kernel/base/core.ts';
import { ofDmaGetRange } from '../kernel/of/of-dma.ts';
import { ofIommuSpecs, parseIdMap } from '../kernel/of/of-iommu.ts';
import { isPciHostBridge, notPopulatedReason } from '../kernel/of/of-platform.ts';
import { cellsToBigInt, type DeviceTree, type DtNode, hex } from '../kernel/of/tree.ts';
import type { BootReport } from './boot-report.ts';

/** How bad a finding is: any error makes `boot --check` exit 1. */
export type FindingSeverity = 'error' | 'warning';

/** One finding of `boot --check` / `lab.check()`. */
export interface Finding {
  severity: FindingSeverity;
  /** The check that found it (see the module comment). */
  check: string;
  /** Node path. */
  node: string;
  /** Property, or null for the node itself. */
  property: string | null;
  message: string;
  /** Source position (DTS input only). */
  file?: string;
  line?: number;
  column?: number;
}

/** `#iommu-cells` values each IOMMU binding allows. */
const IOMMU_CELLS: Array<[RegExp, number[]]> = [
  [/^arm,smmu-v3$/, [1]],
  [
    /^(arm,smmu-v[12]|arm,mmu-40[01]|arm,mmu-500|qcom,.*smmu-(v2|500)|nvidia,.*smmu(-500)?|marvell,ap806-smmu-500|cavium,smmu-v2)$/,
    [1, 2],
  ],
  [/^rockchip,.*iommu$/, [0]],
];

function related(a: DtNode, b: DtNode): boolean {
  for (let p: DtNode | null = a; p; p = p.parent) if (p === b) return true;
  for (let p: DtNode | null = b; p; p = p.parent) if (p === a) return true;
  return false;
}

function at(node: DtNode, property: string | null): Pick<Finding, 'file' | 'line' | 'column'> {
  const p = (property !== null ? node.propPos?.get(property) : undefined) ?? node.srcPos;
  return p ? { file: p.file, line: p.line, column: p.column } : {};
}

/** RAM windows from /memory nodes. */
function ramWindows(tree: DeviceTree): Array<{ start: bigint; end: bigint }> {
  const out: Array<{ start: bigint; end: bigint }> = [];
  const na = tree.root.addressCells;
  const ns = tree.root.sizeCells;
  for (const n of tree.root.children) {
    if (n.string('device_type') !== 'memory' || !n.available) continue;
    const reg = n.u32Array('reg') ?? [];
    for (let i = 0; i + na + ns <= reg.length; i += na + ns) {
      const start = cellsToBigInt(reg, i, na);
      out.push({ start, end: start + cellsToBigInt(reg, i + na, ns) });
    }
  }
  return out;
}

/** Audit a booted board (see the module comment). Findings come in tree order. */
export function checkBoard(report: BootReport, tree: DeviceTree, core: DriverCore): Finding[] {
  const out: Finding[] = [];
  const add = (
    severity: FindingSeverity,
    check: string,
    node: DtNode,
    property: string | null,
    message: string,
  ) => out.push({ severity, check, node: node.path, property, message, ...at(node, property) });
  const byPath = new Map(report.devices.map((d) => [d.path, d]));
  const ram = ramWindows(tree);
  /** dma-ranges holders (or errors) already reported: one finding per property. */
  const rangesSeen = new Set<unknown>();
  /** Per IOMMU: the streams (id, mask) of each master, for shared-stream. */
  const streams = new Map<
    DtNode,
    Array<{ node: DtNode; prop: string; id: number; mask: number; last: number }>
  >();
  const stream = (iommu: DtNode, node: DtNode, prop: string, id: number, mask: number, last = id) => {
    let l = streams.get(iommu);
    if (l === undefined) streams.set(iommu, (l = []));
    l.push({ node, prop, id, mask, last });
  };

  for (const node of tree.nodes()) {
    if (node.has('#iommu-cells')) {
      const cells = node.u32('#iommu-cells');
      const rule = IOMMU_CELLS.find(([re]) => node.compatible.some((c) => re.test(c)));
      if (rule !== undefined && cells !== undefined && !rule[1].includes(cells))
        add(
          'error',
          'iommu-cells',
          node,
          '#iommu-cells',
          `is ${cells}; the ${node.compatible[0]} binding takes ${rule[1].join(' or ')}`,
        );
    }
    const isDevice = node.available && notPopulatedReason(node) === null;
    if (node.has('iommus') && node.available && notPopulatedReason(node) === null) {
      const p = ofIommuSpecs(tree, node);
      if (!p.ok) {
        const missing = /no node with phandle|has no #iommu-cells/.test(p.error);
        add('error', missing ? 'iommus-missing' : 'iommu-cells', node, 'iommus', p.error);
      }
      for (const e of p.entries) {
        if (!e.node.available)
          add(
            'warning',
            'iommus-disabled',
            node,
            'iommus',
            `points at ${e.node.path}, which is disabled: DMA is not translated`,
          );
        const cells = e.node.u32('#iommu-cells') ?? 0;
        // arm-smmu's of_xlate: the SMR mask is the second cell, else the SMMU's stream-match-mask
        const mask = cells >= 2 ? (e.args[1] ?? 0) : (e.node.u32('stream-match-mask') ?? 0);
        if (cells >= 1) stream(e.node, node, 'iommus', e.args[0]!, mask);
      }
    }
    if (node.has('iommu-map') && node.available && (isPciHostBridge(node) || isDevice)) {
      const m = parseIdMap(tree, node);
      if (m.error !== null) add('error', 'iommu-cells', node, 'iommu-map', m.error);
      const sorted = [...m.entries].sort((a, b) => a.ridBase - b.ridBase);
      for (let i = 0; i < sorted.length; i++) {
        const e = sorted[i]!;
        if (e.iommu === null)
          add(
            'error',
            'iommus-missing',
            node,
            'iommu-map',
            `entry for RID ${hex(e.ridBase)}: no node with phandle ${hex(e.phandle)}`,
          );
        else if (!e.iommu.has('#iommu-cells'))
          add(
            'error',
            'iommus-missing',
            node,
            'iommu-map',
            `entry for RID ${hex(e.ridBase)}: ${e.iommu.path} has no #iommu-cells`,
          );
        else {
          if (!e.iommu.available)
            add(
              'warning',
              'iommus-disabled',
              node,
              'iommu-map',
              `RIDs ${hex(e.ridBase)}..${hex(e.ridBase + e.length - 1)} go to ${e.iommu.path}, which is disabled: DMA is not translated`,
            );
          // iommu-map-mask is applied to the RID first: only masked RIDs reach the entry
          const span =
            m.mask === null ? e.length - 1 : Math.min(e.length - 1, Math.max(0, m.mask - e.ridBase));
          if (e.length > 0) stream(e.iommu, node, 'iommu-map', e.iommuBase, 0, e.iommuBase + span);
        }
        const next = sorted[i + 1];
        if (next === undefined) continue;
        const end = e.ridBase + e.length;
        if (next.ridBase < end)
          add(
            'error',
            'iommu-map-overlap',
            node,
            'iommu-map',
            `entries for RIDs ${hex(e.ridBase)}..${hex(end - 1)} and ${hex(next.ridBase)}..${hex(next.ridBase + next.length - 1)} overlap`,
          );
        else if (next.ridBase > end && (m.mask === null || (end & m.mask) >>> 0 === end))
          add(
            'warning',
            'iommu-map-gap',
            node,
            'iommu-map',
            `RIDs ${hex(end)}..${hex(next.ridBase - 1)} match no entry: their DMA is not translated`,
          );
      }
    }
    if (isDevice && (node.has('iommus') || node.has('dma-ranges'))) {
      const r = ofDmaGetRange(node);
      if (!r.ok) {
        if (!rangesSeen.has(r.error)) add('error', 'dma-ranges', node, 'dma-ranges', r.error);
        rangesSeen.add(r.error);
      } else if (r.ranges.length > 0 && ram.length > 0 && r.node !== null && !rangesSeen.has(r.node)) {
        rangesSeen.add(r.node);
        const reaches = r.ranges.some((x) =>
          ram.some((w) => x.cpuStart < w.end && w.start < x.cpuStart + x.size),
        );
        if (!reaches)
          add(
            'error',
            'dma-ranges',
            r.node,
            'dma-ranges',
            'no window reaches RAM: DMA of the devices below cannot be honoured',
          );
      }
    }
    const d = byPath.get(node.path);
    if (d !== undefined && d.iommu !== null) {
      const prop = node.has('iommus') ? 'iommus' : null;
      if (d.state === 'deferred')
        add('error', 'deferred-master', node, prop, `left deferred: ${d.reason ?? ''}`);
      else if (d.state === 'bound' && d.dmaOps !== 'iommu')
        add(
          'warning',
          'untranslated-dma',
          node,
          prop,
          `DMA is not translated (dma ops ${d.dmaOps}): ${d.reason ?? `IOMMU ${d.iommu} not in use`}`,
        );
    }
  }
  // PCI functions have no node of their own in most trees: report them on their host bridge
  for (const d of report.devices) {
    // functions with a node of their own were reported with it above
    if (d.bus !== 'pci' || d.iommu === null || tree.findByPath(d.path) !== undefined) continue;
    const dev = core.devices.find((x) => x.name === d.name);
    const host = dev?.pci?.hostBridge;
    if (host === undefined) continue;
    if (d.state === 'deferred')
      add('error', 'deferred-master', host, 'iommu-map', `${d.name}: left deferred: ${d.reason ?? ''}`);
    else if (d.state === 'bound' && d.dmaOps !== 'iommu')
      add(
        'warning',
        'untranslated-dma',
        host,
        'iommu-map',
        `${d.name}: DMA is not translated (dma ops ${d.dmaOps}): ${d.reason ?? ''}`,
      );
  }
  // shared streams: unrelated masters the IOMMU cannot tell apart
  for (const [iommu, list] of streams) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (a.node === b.node || related(a.node, b.node)) continue;
        const clash =
          a.last !== a.id || b.last !== b.id
            ? a.id <= b.last && b.id <= a.last
            : ((a.id ^ b.id) & ~(a.mask | b.mask) & 0xffffffff) === 0;
        if (!clash) continue;
        const what =
          a.mask || b.mask
            ? `SMR ${hex(a.id)}/${hex(a.mask)} matches ${hex(b.id)}/${hex(b.mask)}`
            : `StreamID ${hex(Math.max(a.id, b.id))}`;
        // an iommu-map range only says what a function there would get: a potential clash
        const range = a.last !== a.id || b.last !== b.id;
        add(
          range ? 'warning' : 'error',
          'shared-stream',
          b.node,
          b.prop,
          range
            ? `${what} on ${iommu.path} is also in the range ${a.node === b.node ? '' : `${(a.last !== a.id ? a : b).node.path}'s `}iommu-map gives PCI functions: a function there would share ${(a.last !== a.id ? b : a).node.path}'s address space`
            : `${what} on ${iommu.path} is also ${a.node.path}'s: the IOMMU cannot tell them apart (one group, one address space)`,
        );
      }
    }
  }

  return out;
}

/** One finding as dtc prints one: `file:line:column: severity (check): /path:property: message`. */
export function formatFinding(f: Finding, source: string): string {
  const where = f.file !== undefined ? `${f.file}:${f.line}:${f.column}` : source;
  return `${where}: ${f.severity} (${f.check}): ${f.node}${f.property ? `:${f.property}` : ''}: ${f.message}`;
}
