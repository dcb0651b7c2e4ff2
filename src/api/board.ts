/**
 * A machine for a device tree, as a firmware and a board file would make it.
 *
 * The embedded default platform (compatible "iommu-lab,virt") runs on the virt board. Any other
 * tree gets RAM where its /memory node says and an SMMUv3 hardware model at every available
 * `arm,smmu-v3` node, so the kernel model's SMMUv3 driver has real registers to probe; devices
 * the model has no hardware for are simply absent, as on a board with empty slots.
 *
 * A scenario adds its own DMA masters without editing the board: a generic bus master becomes a
 * device-tree node (`iommu-lab,dma-master` with `iommus`, `dma-can-stall`, `pasid-num-bits`)
 * plus a hardware master on the SMMU; a PCIe function becomes a node under the host bridge plus
 * an endpoint model (ATS, PRI, PASID) in the bridge's ECAM window. The kernel learns about them
 * only from the tree, the hardware only from its wiring.
 */

import type { AdrenoBoardDevices, AdrenoBoardOptions } from '../hw/boards/adreno.ts';
import { createVirtBoard, type VirtBoard } from '../hw/boards/virt.ts';
import type { GpuOptions } from '../hw/devices/gpu.ts';
import { bdf as makeBdf } from '../hw/devices/pcie-ecam.ts';
import { PcieEndpoint, type PcieEndpointOptions } from '../hw/devices/pcie-endpoint.ts';
import { PlatformDmaMaster } from '../hw/devices/platform-master.ts';
import type { SmmuV3Options } from '../hw/smmuv3/regs-idr.ts';
import { SmmuV3 } from '../hw/smmuv3/smmu.ts';
import { ofAddressToResource, ofIrqGet } from '../kernel/of/of-address.ts';
import { parseIdMap } from '../kernel/of/of-iommu.ts';
import { isPciHostBridge } from '../kernel/of/of-platform.ts';
import { type DeviceTree, DtNode, encodeCells, encodeStrings, parsePhandleList } from '../kernel/of/tree.ts';
import { DEFAULT_ITS_BASE, DEFAULT_RAM, Machine } from '../platform/machine.ts';
import { addTreeMasters, type DtMaster, ecamFor, type PciRequest } from './board-masters.ts';
import { adrenoDevicesFor, buildSmmuV2s, type SmmuV2Node, smmuV2RegsOverlap } from './board-smmuv2.ts';
import { LabError } from './errors.ts';

/** A generic bus master a scenario adds to the board (a display, an accelerator, a crypto block). */
export interface MasterSpec {
  /** Name of the master; its device-tree node is `NAME@UNIT` and the lab finds it by this name. */
  name: string;
  /**
   * StreamIDs of the master (the `iommus` cells). Required for a new node; for `node` they come
   * from that node's `iommus` property.
   */
  streamIds?: number[];
  /** Model an existing device-tree node instead of adding one (its `iommus` give the StreamIDs). */
  node?: string;
  /** Device-tree path of the SMMU the master sits behind. Default: the first SMMUv3. */
  iommu?: string;
  /** The master tolerates stalled transactions (`dma-can-stall`). Default false. */
  canStall?: boolean;
  /** SubstreamID bits the master can issue (`pasid-num-bits`). Default 0 (no PASIDs). */
  pasidBits?: number;
  /** DMA mask width the driver sets (`iommu-lab,dma-bits`). Default 48. */
  dmaBits?: number;
  /** Bytes per bus transaction (power of two, 4..4096). Default 4096. */
  txBytes?: number;
  /** Virtual ns between two transactions of one operation. Default 100. */
  txNs?: number;
  /** A master that cannot stall gives up on a stalled transaction after this long. Default 100 µs. */
  completionTimeoutNs?: number;
}

/** A PCIe function a scenario adds behind a host bridge: an endpoint with ATS, PRI and PASID. */
export interface PciFunctionSpec {
  /** Bus:device.function, e.g. "00:03.0". */
  bdf: string;
  /** Name the lab finds it by. Default: Linux's device name, e.g. "0000:00:03.0". */
  name?: string;
  /** Device-tree path of the host bridge. Default: the first PCI host bridge. */
  host?: string;
  /** Capabilities present. Defaults: all three. */
  ats?: boolean;
  pri?: boolean;
  pasid?: boolean;
  /** PASID capability Max PASID Width. Default 20. */
  pasidBits?: number;
  /** ATC entries. Default 16. */
  atcEntries?: number;
  /** PRI Outstanding Page Request Capacity. Default 32. */
  priCapacity?: number;
  /** Virtual ns before the function acknowledges an ATC invalidation. Default 0. */
  atcInvAckNs?: number;
}

/** The hardware of one added master. */
/** The hardware of one added master or PCI function. */
export type MasterHardware =
  | { kind: 'platform'; spec: MasterSpec; node: DtNode; ports: PlatformDmaMaster[]; smmu: SmmuV3 }
  | { kind: 'pci'; spec: PciFunctionSpec; node: DtNode; rid: number; endpoint: PcieEndpoint; smmu: SmmuV3 };

/** What buildBoard needs besides the tree. */
export interface BoardOptions {
  seed: number;
  /** Options of every SMMUv3 model on the board. */
  smmu?: SmmuV3Options;
  masters?: readonly MasterSpec[];
  pciFunctions?: readonly PciFunctionSpec[];
  /** Linux's init_on_free. */
  initOnFree?: boolean;
  /** The virt board's own devices. */
  virt?: VirtDeviceOptions;
  /**
   * Give the tree's own DMA masters hardware (see addTreeMasters; not on the virt board, whose
   * devices have their own models). `pci`: the PCI functions to put behind host bridges.
   */
  treeMasters?: false | { pci?: readonly PciRequest[] };
  /** The adreno board's own devices. */
  adreno?: AdrenoBoardOptions;
}

/** Options of the virt board's own devices. */
export interface VirtDeviceOptions {
  /** The GPU (warps, ring size, stall capability, ...). */
  gpu?: GpuOptions;
  /** The PCIe test device 00:01.0 (ATS, PRI, PASID, ATC size, ...). */
  pcieTestdev?: Partial<Omit<PcieEndpointOptions, 'rid'>>;
}

/** The machine and hardware built for a device tree (see buildBoard). */
export interface Board {
  machine: Machine;
  tree: DeviceTree;
  /** Every SMMUv3 model, with its node. */
  smmus: Array<{ node: DtNode; hw: SmmuV3 }>;
  /** Every SMMUv1/v2-family model (arm-smmu driver), with its node (board-smmuv2.ts). */
  smmuV2s: SmmuV2Node[];
  /** The adreno board's GPU, display and video hardware, when it is the adreno board. */
  adreno: AdrenoBoardDevices | null;
  /** The virt board's own devices (GPU, PCIe test device, DMA engines), when it is the virt board. */
  virt: VirtBoard | null;
  /** The masters and PCI functions the options added. */
  masters: MasterHardware[];
  /** Nodes that have no hardware model here, with why (for reports). */
  notes: string[];
  /** The tree's own DMA masters with their hardware (BoardOptions.treeMasters). */
  treeMasters: DtMaster[];
}

const GIB = 2 ** 30;
const overlaps = (a: number, as: number, b: number, bs: number) => a < b + bs && b < a + as;

/** Build the machine and hardware for `tree`; the options' masters are added to the tree too. */
export function buildBoard(tree: DeviceTree, opts: BoardOptions): Board {
  const root = tree.root;
  const notes: string[] = [];
  let machine: Machine;
  let virt: VirtBoard | null = null;
  const smmus: Board['smmus'] = [];
  let smmuV2s: SmmuV2Node[] = [];
  let adreno: AdrenoBoardDevices | null = null;
  if (root.isCompatible('iommu-lab,virt')) {
    machine = new Machine({ seed: opts.seed, initOnFree: opts.initOnFree });
    virt = createVirtBoard(machine, { smmu: opts.smmu, gpu: opts.virt?.gpu, pcie: opts.virt?.pcieTestdev });
    const node = [...root.walk()].find((n) => n.isCompatible('arm,smmu-v3') && n.available);
    if (node !== undefined) smmus.push({ node, hw: virt.smmu });
  } else {
    machine = machineForTree(tree, opts, notes);
    for (const n of root.walk()) {
      if (!n.isCompatible('arm,smmu-v3') || !n.available) continue;
      const hw = smmuForNode(machine, tree, n, opts.smmu, notes);
      if (hw !== null) smmus.push({ node: n, hw });
    }
    smmuV2s = buildSmmuV2s(machine, tree, notes);
    adreno = adrenoDevicesFor(machine, tree, smmuV2s, notes, opts.adreno);
  }
  const board: Board = { machine, tree, smmus, smmuV2s, adreno, virt, masters: [], notes, treeMasters: [] };
  for (const spec of opts.masters ?? []) board.masters.push(addMaster(board, spec));
  for (const spec of opts.pciFunctions ?? []) board.masters.push(addPciFunction(board, spec));
  if (opts.treeMasters && virt === null) board.treeMasters = addTreeMasters(board, opts.treeMasters.pci);
  tree.invalidate();
  return board;
}

export type { DtMaster, PciRequest };

function machineForTree(tree: DeviceTree, opts: BoardOptions, notes: string[]): Machine {
  const root = tree.root;
  // RAM: the first /memory region (capped: the model is sparse, but the page allocator indexes it)
  let ram = { ...DEFAULT_RAM };
  for (const n of root.children) {
    if (n.string('device_type') !== 'memory' && n.baseName !== 'memory') continue;
    const r = ofAddressToResource(n, 0);
    if (r !== null && r.size >= 16 * 2 ** 20 && r.start % 4096 === 0) {
      ram = { base: r.start, size: Math.min(Math.floor(r.size / 4096) * 4096, GIB), name: 'dram' };
      break;
    }
  }
  const its = [...root.walk()].find((n) => n.isCompatible('arm,gic-v3-its'));
  const itsRes = its ? ofAddressToResource(its, 0) : null;
  let itsBase = itsRes !== null && itsRes.size >= 0x20000 ? itsRes.start : DEFAULT_ITS_BASE;
  if (overlaps(itsBase, 0x20000, ram.base, ram.size)) {
    notes.push(`MSI doorbell moved above RAM (0x${itsBase.toString(16)} is in RAM)`);
    itsBase = ram.base + ram.size + 0x100_0000;
  } else if (!its && smmuV2RegsOverlap(tree, itsBase, 0x20000)) {
    // no ITS in the tree: the model's default doorbell must not sit in an SMMU's registers
    notes.push(`MSI doorbell moved above RAM (0x${itsBase.toString(16)} is in an SMMU's registers)`);
    itsBase = ram.base + ram.size + 0x100_0000;
  }
  return new Machine({ seed: opts.seed, ram: [ram], itsBase, initOnFree: opts.initOnFree });
}

function smmuForNode(
  machine: Machine,
  tree: DeviceTree,
  n: DtNode,
  options: SmmuV3Options | undefined,
  notes: string[],
): SmmuV3 | null {
  const r = ofAddressToResource(n, 0);
  if (r === null || r.size < 0x20000) {
    notes.push(`${n.path}: no usable reg`);
    return null;
  }
  const ram = machine.mem.regions()[0];
  if (ram !== undefined && overlaps(r.start, 0x20000, ram.base, ram.size)) {
    notes.push(`${n.path}: registers overlap RAM`);
    return null;
  }
  const irq = (name: string) => {
    const v = ofIrqGet(tree, n, name);
    return v >= 0 ? v : undefined;
  };
  try {
    return new SmmuV3(machine, {
      // wide enough for every StreamID the tree sends to it (IDR1.SIDSIZE is the SoC's choice)
      sidBits: streamIdBitsFor(tree, n),
      msi: n.has('msi-parent'),
      ...options,
      base: r.start,
      irqs: { eventq: irq('eventq'), gerror: irq('gerror'), priq: irq('priq'), cmdqSync: irq('cmdq-sync') },
      name: `smmuv3@${r.start.toString(16)}`,
    });
  } catch (e) {
    notes.push(`${n.path}: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  }
}

/** Bits of the largest StreamID the tree's `iommus` and `iommu-map`s send to `iommu` (at least 16). */
function streamIdBitsFor(tree: DeviceTree, iommu: DtNode): number {
  let max = 0;
  for (const node of tree.nodes()) {
    if (node.has('iommus')) {
      for (const e of parsePhandleList(tree, node, 'iommus', '#iommu-cells').entries)
        if (e.node === iommu) max = Math.max(max, e.args[0] ?? 0);
    }
    if (node.has('iommu-map')) {
      for (const e of parseIdMap(tree, node).entries)
        if (e.iommu === iommu && e.length > 0) max = Math.max(max, e.iommuBase + e.length - 1);
    }
  }
  let bits = 16;
  while (bits < 32 && max >= 2 ** bits) bits++;
  return bits;
}

function smmuAt(board: Board, path: string | undefined, who: string): { node: DtNode; hw: SmmuV3 } {
  if (board.smmus.length === 0) throw new LabError(`${who}: the board has no SMMUv3 to sit behind`);
  if (path === undefined) return board.smmus[0]!;
  const s = board.smmus.find((x) => x.node.path === path);
  if (s === undefined) {
    throw new LabError(
      `${who}: no modelled SMMUv3 at ${path} (SMMUs: ${board.smmus.map((x) => x.node.path).join(', ')})`,
    );
  }
  return s;
}

function checkId(v: unknown, bits: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new LabError(`${what} must be an integer in 0..${2 ** bits - 1} (got ${String(v)})`);
  }
  return v;
}

function addMaster(board: Board, spec: MasterSpec): MasterHardware {
  const who = `master '${spec.name}'`;
  if (typeof spec.name !== 'string' || !/^[a-z][a-z0-9,._+-]*$/i.test(spec.name)) {
    throw new LabError(
      `a master needs a name of letters, digits and ,._+- (got ${JSON.stringify(spec.name)})`,
    );
  }
  if (board.masters.some((m) => (m.spec.name ?? '') === spec.name)) {
    throw new LabError(`${who}: two masters have this name`);
  }
  const tree = board.tree;
  let node: DtNode;
  let smmu: { node: DtNode; hw: SmmuV3 };
  let sids: number[];
  if (spec.node !== undefined) {
    const found = tree.findByPath(spec.node);
    if (found === undefined) throw new LabError(`${who}: no node ${spec.node} in the device tree`);
    node = found;
    const specs = parsePhandleList(tree, node, 'iommus', '#iommu-cells');
    if (!specs.ok || specs.entries.length === 0) {
      throw new LabError(`${who}: ${spec.node} has no usable iommus property`);
    }
    const target = board.smmus.find((s) => s.node === specs.entries[0]!.node);
    if (target === undefined) throw new LabError(`${who}: ${spec.node}'s IOMMU is not a modelled SMMUv3`);
    smmu = target;
    sids = specs.entries.filter((p) => p.node === target.node).map((p) => p.args[0] ?? 0);
  } else {
    smmu = smmuAt(board, spec.iommu, who);
    if (!Array.isArray(spec.streamIds) || spec.streamIds.length === 0) {
      throw new LabError(`${who}: give streamIds (at least one) or the node it models`);
    }
    sids = spec.streamIds.map((s, i) => checkId(s, 32, `${who}: streamIds[${i}]`));
    const phandle = ensurePhandle(tree, smmu.node);
    const cells = smmu.node.u32('#iommu-cells') ?? 1;
    if (cells !== 1) throw new LabError(`${who}: ${smmu.node.path} has #iommu-cells = ${cells}, not 1`);
    const parent = smmu.node.parent ?? tree.root;
    node = new DtNode(`${spec.name}@${sids[0]!.toString(16)}`);
    if (parent.child(node.name) !== undefined)
      throw new LabError(`${who}: ${parent.path}/${node.name} exists`);
    node.setProp('compatible', encodeStrings(['iommu-lab,dma-master']));
    node.setProp('iommus', encodeCells(sids.flatMap((s) => [phandle, s])));
    if (spec.canStall) node.setProp('dma-can-stall', new Uint8Array(0));
    if (spec.pasidBits !== undefined)
      node.setProp('pasid-num-bits', encodeCells([checkId(spec.pasidBits, 5, `${who}: pasidBits`)]));
    if (smmu.node.has('dma-coherent')) node.setProp('dma-coherent', new Uint8Array(0));
    if (spec.dmaBits !== undefined)
      node.setProp('iommu-lab,dma-bits', encodeCells([checkId(spec.dmaBits, 7, `${who}: dmaBits`)]));
    parent.addChild(node);
  }
  const ports = sids.map(
    (sid, i) =>
      new PlatformDmaMaster(smmu.hw, sid, {
        name: sids.length > 1 ? `${spec.name}.${i}` : spec.name,
        canStall: spec.canStall ?? node.has('dma-can-stall'),
        txBytes: spec.txBytes,
        txNs: spec.txNs,
        completionTimeoutNs: spec.completionTimeoutNs,
      }),
  );
  return { kind: 'platform', spec, node, ports, smmu: smmu.hw };
}

function ensurePhandle(tree: DeviceTree, node: DtNode): number {
  const ph = node.phandle;
  if (ph !== undefined) return ph;
  const next = tree.maxPhandle() + 1;
  node.setProp('phandle', encodeCells([next]));
  tree.invalidate();
  return next;
}

const BDF_RE = /^(?:([0-9a-f]{4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i;

/** "00:03.0" (or "0000:00:03.0") to a requester ID; throws a LabError for anything else. */
export function parseBdf(text: string): number {
  const m = BDF_RE.exec(text);
  const dev = m ? Number.parseInt(m[3]!, 16) : 32;
  if (m === null || dev > 31) {
    throw new LabError(
      `bad PCI address ${JSON.stringify(text)}: expected BB:DD.F (bus and device in hex, device < 0x20)`,
    );
  }
  return makeBdf(Number.parseInt(m[2]!, 16), dev, Number(m[4]));
}

function addPciFunction(board: Board, spec: PciFunctionSpec): MasterHardware {
  const rid = parseBdf(spec.bdf);
  const who = `PCI function ${spec.bdf}`;
  const tree = board.tree;
  const hosts = [...tree.root.walk()].filter((n) => isPciHostBridge(n) && n.available);
  const host = spec.host === undefined ? hosts[0] : hosts.find((h) => h.path === spec.host);
  if (host === undefined) {
    throw new LabError(
      `${who}: ${spec.host === undefined ? 'the board has no PCI host bridge' : `no PCI host bridge at ${spec.host}`}`,
    );
  }
  // the IOMMU that iommu-map sends this RID to
  const map = host.u32Array('iommu-map');
  if (map === undefined || map.length < 4) throw new LabError(`${who}: ${host.path} has no iommu-map`);
  let smmu: { node: DtNode; hw: SmmuV3 } | undefined;
  let sid = -1;
  const mask = host.u32('iommu-map-mask') ?? 0xffffffff;
  const id = rid & mask;
  for (let i = 0; i + 4 <= map.length; i += 4) {
    const [base, ph, out, len] = map.slice(i, i + 4) as [number, number, number, number];
    if (id < base || id >= base + len) continue;
    smmu = board.smmus.find((s) => s.node.phandle === ph);
    sid = out + (id - base);
    break;
  }
  if (smmu === undefined)
    throw new LabError(`${who}: iommu-map of ${host.path} sends it to no modelled SMMUv3`);
  const dev = (rid >> 3) & 0x1f;
  const fn = rid & 7;
  const node = new DtNode(`pci-fn@${dev.toString(16)},${fn}`);
  for (const c of host.children) {
    const reg = c.u32Array('reg');
    if (reg !== undefined && ((reg[0]! >>> 8) & 0xffff) === rid) {
      throw new LabError(`${who}: ${host.path} already has a function there (${c.path})`);
    }
  }
  if (rid >> 8 !== 0) {
    const range = host.u32Array('bus-range') ?? [0, 255];
    if (rid >> 8 < range[0]! || rid >> 8 > range[1]!)
      throw new LabError(`${who}: bus outside ${host.path}'s bus-range`);
  }
  node.setProp('compatible', encodeStrings(['pci1b36,5']));
  node.setProp('reg', encodeCells([rid << 8, 0, 0, 0, 0]));
  host.addChild(node);
  let ecam = board.virt?.ecam ?? null;
  if (ecam === null || !board.virt || host.path !== '/soc/pcie@40000000') {
    const win = ofAddressToResource(host, 0);
    if (win === null) throw new LabError(`${who}: ${host.path} has no ECAM reg`);
    ecam = ecamFor(board, win.start, win.size);
  }
  const endpoint = new PcieEndpoint(board.machine, smmu.hw, {
    name: spec.name ?? `pci-${spec.bdf}`,
    rid,
    sid,
    vendor: 0x1b36,
    device: 0x0005,
    ats: spec.ats,
    pri: spec.pri,
    pasid: spec.pasid,
    pasidBits: spec.pasidBits,
    atcEntries: spec.atcEntries,
    priCapacity: spec.priCapacity,
    atcInvAckNs: spec.atcInvAckNs,
  });
  ecam.attach(rid, endpoint.config);
  return { kind: 'pci', spec, node, rid, endpoint, smmu: smmu.hw };
}
