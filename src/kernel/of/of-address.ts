/**
 * of_address / of_irq: a node's MMIO resources (`reg`, translated through the parents'
 * `ranges`) and its interrupts (`interrupts` / `interrupt-names`, resolved through
 * `interrupt-parent` to a GIC interrupt number).
 */

import { cellsOf, cellsToBigInt, type DeviceTree, type DtNode } from './tree.ts';

export interface Resource {
  start: number;
  size: number;
}

/** Translate a bus address at `node`'s level up through every parent's `ranges`; null if unmappable. */
function translateUp(node: DtNode, addr: bigint): bigint | null {
  let bus = node.parent;
  let a = addr;
  while (bus?.parent) {
    const ranges = bus.prop('ranges');
    if (ranges === undefined) return null; // no ranges: not memory-mapped from the parent's view
    const cells = cellsOf(ranges);
    if (cells.length === 0) {
      bus = bus.parent;
      continue; // empty ranges: identity
    }
    const childAc = bus.addressCells;
    const parentAc = bus.parent.addressCells;
    const sc = bus.sizeCells;
    const stride = childAc + parentAc + sc;
    let found = false;
    for (let i = 0; i + stride <= cells.length; i += stride) {
      const child = cellsToBigInt(cells, i, childAc);
      const parent = cellsToBigInt(cells, i + childAc, parentAc);
      const size = cellsToBigInt(cells, i + childAc + parentAc, sc);
      if (a >= child && a < child + size) {
        a = a - child + parent;
        found = true;
        break;
      }
    }
    if (!found) return null;
    bus = bus.parent;
  }
  return a;
}

/** of_address_to_resource(node, index): the CPU physical address range of `reg` entry `index`. */
export function ofAddressToResource(node: DtNode, index = 0): Resource | null {
  const reg = node.prop('reg');
  const parent = node.parent;
  if (reg === undefined || parent === null) return null;
  const ac = parent.addressCells;
  const sc = parent.sizeCells;
  const cells = cellsOf(reg);
  const at = index * (ac + sc);
  if (at + ac + sc > cells.length || ac === 0) return null;
  const addr = translateUp(node, cellsToBigInt(cells, at, ac));
  if (addr === null) return null;
  const size = cellsToBigInt(cells, at + ac, sc);
  if (addr + size > 2n ** 52n) return null;
  return { start: Number(addr), size: Number(size) };
}

/** The interrupt controller that serves `node` (interrupt-parent, inherited). */
export function ofIrqParent(tree: DeviceTree, node: DtNode): DtNode | null {
  for (let n: DtNode | null = node; n; n = n.parent) {
    const ph = n.u32('interrupt-parent');
    if (ph !== undefined) return tree.findByPhandle(ph) ?? null;
  }
  return null;
}

/**
 * of_irq_get / of_irq_get_byname: the Linux IRQ number of interrupt `which` (index or name).
 * GICv3 specifiers are <type number flags>: SPI (0) → number + 32, PPI (1) → number + 16.
 * Returns -ENXIO (-6) when absent or not decodable.
 */
export function ofIrqGet(tree: DeviceTree, node: DtNode, which: number | string): number {
  const ENXIO = -6;
  let index = typeof which === 'number' ? which : -1;
  if (typeof which === 'string') {
    index = node.strings('interrupt-names')?.indexOf(which) ?? -1;
    if (index < 0) return ENXIO;
  }
  const irqs = node.prop('interrupts');
  const parent = ofIrqParent(tree, node);
  if (irqs === undefined || parent === null) return ENXIO;
  const n = parent.u32('#interrupt-cells') ?? 1;
  const cells = cellsOf(irqs);
  if ((index + 1) * n > cells.length) return ENXIO;
  const spec = cells.slice(index * n, index * n + n);
  if (n >= 3) {
    if (spec[0] === 0) return spec[1]! + 32;
    if (spec[0] === 1) return spec[1]! + 16;
    return ENXIO;
  }
  return spec[0]!;
}
