/**
 * SMMUv1/v2-family hardware for a device tree: an SmmuV2 model at every available node whose
 * compatible is one of Linux's arm-smmu ones (arm,smmu-v1/v2, arm,mmu-400/401/500,
 * qcom,smmu-v2, qcom,<soc>-smmu-500 / qcom,smmu-500, nvidia,smmu-500 with one instance per
 * `reg` range, marvell,ap806-smmu-500), with ID registers sized the way the node implies:
 *
 *  - the register window fills the node's `reg` (4 KiB pages when 2 x NUMPAGE x 4 KiB matches
 *    it, else 64 KiB pages; when neither matches, the largest window that fits, and Linux's
 *    "differs from mapped region size" warning says so);
 *  - SMMUv2: as many context banks as the node has context interrupts (`interrupts` minus
 *    `#global-interrupts`), which is what Linux's probe requires, capped by the window;
 *    SMMUv1: 8 banks sharing the context interrupts by CBAR.IRPTNDX;
 *  - stream-match groups: 128 on MMU-500 implementations, 48 on other SMMUv2s, 16 on SMMUv1;
 *  - the global interrupts (the first `#global-interrupts`) and the context interrupts wired.
 */

import {
  ADRENO,
  type AdrenoBoardDevices,
  type AdrenoBoardOptions,
  createAdrenoDevices,
} from '../hw/boards/adreno.ts';
import { SmmuV2, type SmmuV2Compatible } from '../hw/smmuv2/index.ts';
import { ofAddressToResource, ofIrqGet } from '../kernel/of/of-address.ts';
import type { DeviceTree, DtNode } from '../kernel/of/tree.ts';
import type { Machine } from '../platform/machine.ts';

/** One SMMUv1/v2 node and its hardware (several instances for nvidia,smmu-500). */
export interface SmmuV2Node {
  node: DtNode;
  hw: SmmuV2[];
}

/** The compatibles Linux's arm-smmu driver matches (directly or through arm,mmu-500). */
export function isArmSmmuV2Node(n: DtNode): boolean {
  return n.compatible.some(
    (c) =>
      c === 'arm,smmu-v1' ||
      c === 'arm,smmu-v2' ||
      c === 'arm,mmu-400' ||
      c === 'arm,mmu-401' ||
      c === 'arm,mmu-500' ||
      c === 'qcom,smmu-v2' ||
      c === 'nvidia,smmu-500' ||
      c === 'marvell,ap806-smmu-500',
  );
}

/** The hardware variant a node describes. */
export function smmuV2Variant(n: DtNode): SmmuV2Compatible | null {
  const c = n.compatible;
  if (c.includes('nvidia,smmu-500')) return 'nvidia,smmu-500';
  if (c.includes('marvell,ap806-smmu-500')) return 'marvell,ap806-smmu-500';
  if (c.some((x) => /^qcom,.*smmu-500$/.test(x))) return 'qcom,smmu-500';
  if (c.some((x) => /^qcom,.*smmu-v2$/.test(x))) return 'qcom,smmu-v2';
  for (const v of ['arm,mmu-500', 'arm,mmu-401', 'arm,mmu-400', 'arm,smmu-v2', 'arm,smmu-v1'] as const) {
    if (c.includes(v)) return v;
  }
  return null;
}

const overlaps = (a: number, as: number, b: number, bs: number) => a < b + bs && b < a + as;

/** True when [base, base+size) overlaps the registers of an available SMMUv1/v2 node. */
export function smmuV2RegsOverlap(tree: DeviceTree, base: number, size: number): boolean {
  for (const n of tree.root.walk()) {
    if (!n.available || !isArmSmmuV2Node(n)) continue;
    for (let i = 0; i < 3; i++) {
      const r = ofAddressToResource(n, i);
      if (r === null) break;
      if (overlaps(base, size, r.start, r.size)) return true;
    }
  }
  return false;
}

/** Register page size and NUMPAGE for a window of `size` bytes. */
function windowFor(size: number, minPages: number): { pageSize: 4096 | 65536; numPage: number } {
  for (const pageSize of [4096, 65536] as const) {
    const n = size / (2 * pageSize);
    if (Number.isInteger(n) && n >= 2 && n <= 256 && (n & (n - 1)) === 0 && n >= minPages)
      return { pageSize, numPage: n };
  }
  let n = 2;
  while (n * 2 <= 256 && 2 * n * 2 * 4096 <= size) n *= 2;
  return { pageSize: 4096, numPage: n };
}

/** SmmuV2 models for every available SMMUv1/v2 node of `tree`; problems go to `notes`. */
export function buildSmmuV2s(machine: Machine, tree: DeviceTree, notes: string[]): SmmuV2Node[] {
  const out: SmmuV2Node[] = [];
  for (const n of tree.root.walk()) {
    if (!n.available || !isArmSmmuV2Node(n)) continue;
    const made = smmuV2ForNode(machine, tree, n, notes);
    if (made !== null) out.push({ node: n, hw: made });
  }
  return out;
}

function smmuV2ForNode(machine: Machine, tree: DeviceTree, n: DtNode, notes: string[]): SmmuV2[] | null {
  const variant = smmuV2Variant(n);
  if (variant === null) return null;
  const v1 = variant === 'arm,smmu-v1' || variant === 'arm,mmu-400' || variant === 'arm,mmu-401';
  const mmu500 = variant.endsWith('-500');
  const regs: Array<{ start: number; size: number }> = [];
  for (let i = 0; i < (variant === 'nvidia,smmu-500' ? 3 : 1); i++) {
    const r = ofAddressToResource(n, i);
    if (r === null) break;
    regs.push(r);
  }
  if (regs.length === 0 || regs[0]!.size < 0x2000) {
    notes.push(`${n.path}: no usable reg`);
    return null;
  }
  const ram = machine.mem.regions()[0];
  if (ram !== undefined && regs.some((r) => overlaps(r.start, r.size, ram.base, ram.size))) {
    notes.push(`${n.path}: registers overlap RAM`);
    return null;
  }
  const gi = n.u32('#global-interrupts') ?? 1;
  const irqs: number[] = [];
  for (let i = 0; i < 1024; i++) {
    const q = ofIrqGet(tree, n, i);
    if (q < 0) break;
    irqs.push(q);
  }
  const globalIrqs = irqs.slice(0, gi);
  const contextIrqs = irqs.slice(gi);
  const wanted = v1 ? 8 : Math.max(1, Math.min(128, contextIrqs.length));
  const win = windowFor(regs[0]!.size, Math.min(wanted, 256));
  const numCb = Math.max(1, Math.min(wanted, win.numPage, 128));
  const hw: SmmuV2[] = [];
  try {
    for (let i = 0; i < regs.length; i++) {
      hw.push(
        new SmmuV2(machine, {
          name: `smmuv2@${regs[i]!.start.toString(16)}`,
          compatible: variant,
          numContextBanks: numCb,
          numSmrg: mmu500 ? 128 : v1 ? 16 : 48,
          pageSize: win.pageSize,
          numPageNdxb: Math.log2(win.numPage) - 1,
          cttw: n.has('dma-coherent'),
          base: regs[i]!.start,
          globalIrqs,
          contextIrqs,
          stagOffset: i,
          stagStride: regs.length,
        }),
      );
    }
  } catch (e) {
    notes.push(`${n.path}: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  }
  return hw;
}

/**
 * The adreno board's masters (GPU, display, video) on the SMMU models made from its tree, or
 * null when the tree is not the adreno board's (root compatible "iommu-lab,adreno") or its SMMUs
 * are missing.
 */
export function adrenoDevicesFor(
  machine: Machine,
  tree: DeviceTree,
  smmus: readonly SmmuV2Node[],
  notes: string[],
  opts: AdrenoBoardOptions = {},
): AdrenoBoardDevices | null {
  if (!tree.root.isCompatible('iommu-lab,adreno')) return null;
  const gpuSmmu = smmus.find((s) => s.node.path === ADRENO.GPU_SMMU_PATH)?.hw[0];
  const apps = smmus.find((s) => s.node.path === ADRENO.APPS_SMMU_PATH)?.hw[0];
  if (gpuSmmu === undefined || apps === undefined) {
    notes.push('adreno board: an SMMU is missing (disabled?); no GPU, display or video hardware');
    return null;
  }
  return createAdrenoDevices(machine, gpuSmmu, apps, opts);
}
