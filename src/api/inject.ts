/**
 * Fault injection: make the kernel model's drivers forget a step on purpose, or damage a table
 * entry as a stray CPU store would, to see what the hardware then does. Injections are named,
 * turned on and off at any time, and apply to every SMMU driver instance.
 */

import { MUTATION_FLAGS } from '../kernel/iommu/arm-smmu-v3/inject.ts';
import { NO_INJECTION, type SmmuInjectFlags } from '../kernel/iommu/arm-smmu-v3/smmu.ts';
import { LabError } from './errors.ts';
import { INJECTIONS, type InjectionName } from './inject-names.ts';

export { INJECTIONS, type InjectionName };

import type { Lab } from './lab.ts';

/** Options of an injection: `ns` is the delay of "delay-completion". */
export interface InjectionOptions {
  /** Virtual nanoseconds (delay-completion; default 1,000,000). */
  ns?: number;
}

/** The default delay of "delay-completion": 1 ms of virtual time. */
const DEFAULT_DELAY_NS = 1_000_000;

type Flags = SmmuInjectFlags;

/** The switch each on/off injection sets ("delay-completion" also takes a delay: see setFlag). */
const SWITCHES = {
  'skip-tlbi': 'skipTlbi',
  'skip-cfgi': 'skipCfgi',
  'skip-atc-inv': 'skipAtcInv',
  'skip-cmd-sync': 'skipCmdSync',
  ...MUTATION_FLAGS,
} as const satisfies Record<Exclude<InjectionName, 'delay-completion'>, keyof Flags>;

/** Set the driver's switches for injection `name` on or off. */
function setFlag(f: Flags, name: InjectionName, on: boolean, o: InjectionOptions): void {
  if (name === 'delay-completion') f.delayCompletionNs = on ? (o.ns ?? DEFAULT_DELAY_NS) : 0;
  else f[SWITCHES[name]] = on;
}

function checkName(name: unknown): InjectionName {
  if (typeof name !== 'string' || !(INJECTIONS as readonly string[]).includes(name))
    throw new LabError(`unknown injection ${JSON.stringify(name)} (known: ${INJECTIONS.join(', ')})`);
  return name as InjectionName;
}

function checkOptions(name: InjectionName, o: InjectionOptions | undefined): InjectionOptions {
  if (o === undefined) return {};
  if (typeof o !== 'object' || o === null) throw new LabError(`inject ${name}: options must be an object`);
  if (o.ns !== undefined) {
    if (name !== 'delay-completion') throw new LabError(`inject ${name}: takes no ns option`);
    if (typeof o.ns !== 'number' || !Number.isSafeInteger(o.ns) || o.ns <= 0 || o.ns > 1e15)
      throw new LabError(
        `inject ${name}: ns must be a positive whole number of nanoseconds (got ${String(o.ns)})`,
      );
  }
  return { ...o };
}

/** Turns injections on and off (`lab.inject`). */
export class Injector {
  private readonly on = new Map<InjectionName, InjectionOptions>();

  /** @internal */
  constructor(private readonly lab: Lab) {}

  /**
   * Turn an injection on (from now on, for every SMMU driver instance, including later ones).
   * `opts.ns` sets the delay of "delay-completion".
   */
  enable(name: InjectionName, opts?: InjectionOptions): void {
    const n = checkName(name);
    this.on.set(n, checkOptions(n, opts));
    this.apply();
  }

  /** Turn it off again. */
  disable(name: InjectionName): void {
    this.on.delete(checkName(name));
    this.apply();
  }

  /** Run `fn` with `name` on, then turn it off (also when `fn` throws). */
  async during<T>(name: InjectionName, fn: () => Promise<T> | T, opts?: InjectionOptions): Promise<T> {
    this.enable(name, opts);
    try {
      return await fn();
    } finally {
      this.disable(name);
    }
  }

  /** The injections that are on. */
  active(): InjectionName[] {
    return [...this.on.keys()];
  }

  /** @internal the driver switches that turn `names` on from boot. */
  static bootFlags(names: readonly string[]): SmmuInjectFlags {
    const out = { ...NO_INJECTION };
    for (const n of names) setFlag(out, checkName(n), true, {});
    return out;
  }

  /** @internal record injections that boot already turned on. */
  preset(names: readonly InjectionName[]): void {
    for (const n of names) this.on.set(n, {});
  }

  /** @internal push the switches into the driver instances (also those bound after enable()). */
  apply(): void {
    const drv = this.lab.kernel.smmuDriver as { instances: Array<{ smmu: { inject: SmmuInjectFlags } }> };
    for (const inst of drv.instances) {
      for (const n of INJECTIONS) setFlag(inst.smmu.inject, n, this.on.has(n), this.on.get(n) ?? {});
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
