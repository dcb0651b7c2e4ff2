/**
 * A machine for a device tree: the embedded default platform runs on the virt board; any other
 * tree gets RAM where its /memory node says and an SMMUv3 hardware model at every available
 * `arm,smmu-v3` node, so the kernel model's SMMUv3 driver has real registers to probe.
 * Devices the model has no hardware for are simply absent, as on a board with empty slots.
 */

import { createVirtBoard } from '../../hw/boards/virt.ts';
import { SmmuV3 } from '../../hw/smmuv3/smmu.ts';
import { ofAddressToResource, ofIrqGet } from '../../kernel/of/of-address.ts';
import type { DeviceTree } from '../../kernel/of/tree.ts';
import { DEFAULT_ITS_BASE, DEFAULT_RAM, Machine } from '../../platform/machine.ts';

export interface Board {
  machine: Machine;
  smmus: SmmuV3[];
  /** Nodes that have no hardware model here, with why (for reports). */
  notes: string[];
}

const GIB = 2 ** 30;

export function boardForTree(tree: DeviceTree, seed: number): Board {
  const root = tree.root;
  if (root.isCompatible('iommu-lab,virt')) {
    const machine = new Machine({ seed });
    const b = createVirtBoard(machine);
    return { machine, smmus: [b.smmu], notes: [] };
  }
  const notes: string[] = [];
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
  const overlaps = (a: number, as: number, b: number, bs: number) => a < b + bs && b < a + as;
  let itsBase = itsRes !== null && itsRes.size >= 0x20000 ? itsRes.start : DEFAULT_ITS_BASE;
  if (overlaps(itsBase, 0x20000, ram.base, ram.size)) itsBase = ram.base + ram.size + 0x100_0000;
  const machine = new Machine({ seed, ram: [ram], itsBase });
  const smmus: SmmuV3[] = [];
  for (const n of root.walk()) {
    if (!n.isCompatible('arm,smmu-v3') || !n.available) continue;
    const r = ofAddressToResource(n, 0);
    if (r === null || r.size < 0x20000) {
      notes.push(`${n.path}: no usable reg`);
      continue;
    }
    if (overlaps(r.start, 0x20000, ram.base, ram.size)) {
      notes.push(`${n.path}: registers overlap RAM`);
      continue;
    }
    const irq = (name: string) => {
      const v = ofIrqGet(tree, n, name);
      return v >= 0 ? v : undefined;
    };
    try {
      smmus.push(
        new SmmuV3(machine, {
          base: r.start,
          irqs: {
            eventq: irq('eventq'),
            gerror: irq('gerror'),
            priq: irq('priq'),
            cmdqSync: irq('cmdq-sync'),
          },
          msi: n.has('msi-parent'),
          sidBits: 16,
          name: `smmuv3@${r.start.toString(16)}`,
        }),
      );
    } catch (e) {
      notes.push(`${n.path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { machine, smmus, notes };
}
