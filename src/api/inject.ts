/**
 * Fault injection: make the kernel model's drivers forget a step on purpose, or damage a table
 * entry as a stray CPU store would, to see what the hardware then does. Injections are named,
 * turned on and off at any time, and apply to every SMMU driver instance.
 */

import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';

/**
 * - "skip-tlbi": the SMMUv3 driver issues no TLB invalidation (unmap, domain teardown);
 * - "skip-cfgi": it issues no CFGI after rewriting an STE or CD;
 * - "skip-atc-inv": it issues no ATC_INV to ATS-enabled endpoints.
 */
export type InjectionName = 'skip-tlbi' | 'skip-cfgi' | 'skip-atc-inv';

const FLAGS: Record<InjectionName, 'skipTlbi' | 'skipCfgi' | 'skipAtcInv'> = {
  'skip-tlbi': 'skipTlbi',
  'skip-cfgi': 'skipCfgi',
  'skip-atc-inv': 'skipAtcInv',
};

/** The injection names, for help texts and validation. */
export const INJECTIONS: readonly InjectionName[] = Object.keys(FLAGS) as InjectionName[];

/** Turns injections on and off (`lab.inject`). */
export class Injector {
  private readonly on = new Set<InjectionName>();

  /** @internal */
  constructor(private readonly lab: Lab) {}

  private check(name: string): InjectionName {
    if (!(name in FLAGS))
      throw new LabError(`unknown injection ${JSON.stringify(name)} (known: ${INJECTIONS.join(', ')})`);
    return name as InjectionName;
  }

  /** Turn an injection on (from now on, for every SMMU driver instance, including later ones). */
  enable(name: InjectionName): void {
    this.on.add(this.check(name));
    this.apply();
  }

  /** Turn it off again. */
  disable(name: InjectionName): void {
    this.on.delete(this.check(name));
    this.apply();
  }

  /** Run `fn` with `name` on, then turn it off (also when `fn` throws). */
  async during<T>(name: InjectionName, fn: () => Promise<T> | T): Promise<T> {
    this.enable(name);
    try {
      return await fn();
    } finally {
      this.disable(name);
    }
  }

  /** The injections that are on. */
  active(): InjectionName[] {
    return [...this.on];
  }

  /** @internal the driver option that turns `names` on from boot. */
  static bootFlags(names: readonly string[]): { skipTlbi: boolean; skipCfgi: boolean; skipAtcInv: boolean } {
    const out = { skipTlbi: false, skipCfgi: false, skipAtcInv: false };
    for (const n of names) {
      if (!(n in FLAGS))
        throw new LabError(`unknown injection ${JSON.stringify(n)} (known: ${INJECTIONS.join(', ')})`);
      out[FLAGS[n as InjectionName]] = true;
    }
    return out;
  }

  /** @internal record injections that boot already turned on. */
  preset(names: readonly InjectionName[]): void {
    for (const n of names) this.on.add(n);
  }

  /** @internal push the switches into the driver instances (also those bound after enable()). */
  apply(): void {
    const drv = this.lab.kernel.smmuDriver as {
      instances: Array<{ smmu: { inject: Record<string, boolean> } }>;
    };
    for (const inst of drv.instances) {
      for (const [n, flag] of Object.entries(FLAGS)) inst.smmu.inject[flag] = this.on.has(n as InjectionName);
    }
  }

  /**
   * Damage 8 bytes of memory as a stray CPU store would: XOR `mask` into the 64-bit word at `pa`
   * (e.g. an STE from `lab.smmu().ste(sid).address`, or a descriptor from `walk()`).
   */
  corrupt(pa: number, mask: bigint): void {
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % 8 !== 0)
      throw new LabError(`corrupt: bad address ${String(pa)} (8-byte aligned)`);
    const mem = this.lab.machine.mem;
    if (mem.read64(pa) !== 0) throw new LabError(`corrupt: nothing readable at 0x${pa.toString(16)}`);
    const lo = (mem.r64[0]! ^ Number(mask & 0xffffffffn)) | 0;
    const hi = (mem.r64[1]! ^ Number((mask >> 32n) & 0xffffffffn)) | 0;
    mem.write64(pa, lo, hi);
  }
}
