// Wired interrupt lines that several sources drive together (a wired OR): SMMUv1 context banks
// that share an interrupt by CBAR.IRPTNDX, and the NVIDIA instances whose global and context
// interrupts are combined. A line is high while any source asserts it.

import type { InterruptController } from '../../platform/irq.ts';

const registries = new WeakMap<InterruptController, WiredOr>();

export class WiredOr {
  private readonly high = new Map<number, Set<object>>();

  private constructor(private readonly irq: InterruptController) {}

  /** The wired-OR registry of an interrupt controller (one per controller). */
  static of(irq: InterruptController): WiredOr {
    let r = registries.get(irq);
    if (r === undefined) {
      r = new WiredOr(irq);
      registries.set(irq, r);
    }
    return r;
  }

  /** Source `src` drives `line` high or low. */
  set(line: number, src: object, high: boolean): void {
    let s = this.high.get(line);
    const before = s !== undefined && s.size > 0;
    if (high) {
      if (s === undefined) {
        s = new Set();
        this.high.set(line, s);
      }
      s.add(src);
    } else s?.delete(src);
    const after = s !== undefined && s.size > 0;
    if (after !== before) this.irq.setLevel(line, after);
  }

  /** The line is asserted by some source. */
  isHigh(line: number): boolean {
    return (this.high.get(line)?.size ?? 0) > 0;
  }
}
