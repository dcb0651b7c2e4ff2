/**
 * Verification mode: what a DMA would do at every instant of a live STE/CD update.
 *
 * A real SMMU may fetch an entry at any moment while software rewrites it, 64 bits at a time.
 * The observer watches the entry's bytes (a memory write watcher) and, after every store,
 * evaluates a set of probe transactions on a *shadow* SMMU: the same model, the same memory
 * and register configuration, but with no configuration cache or TLB, so it fetches the entry
 * as it is in memory at that instant. The real SMMU's caches are not disturbed.
 *
 * Each evaluation gives one outcome string per probe ("ok 0x80001000", "bypass 0x1000",
 * "abort", "fault C_BAD_STE", ...). A hitless update shows only the old and the new outcomes;
 * a breaking one may also show the invalid-entry outcome in between.
 */

import { eventName } from '../../arch/smmuv3/event.ts';
import type { Machine } from '../../platform/machine.ts';
import { PORT_STATUS_NAMES, PortResult } from './port.ts';
import { SmmuV3, type SmmuV3Config } from './smmu.ts';

export interface Probe {
  sid: number;
  /** SubstreamID, or -1 for none. */
  ssid: number;
  iova: number;
  /** ACCESS_* flags. */
  access: number;
}

export class EntryObserver {
  private readonly shadow: SmmuV3;
  private readonly res = new PortResult();
  private unwatch: Array<() => void> = [];
  /** One entry per evaluation: the probes' outcomes joined with " | ". */
  readonly timeline: string[] = [];
  /** Stores observed. */
  stores = 0;

  constructor(
    private readonly m: Machine,
    private readonly real: SmmuV3,
    /** The configuration the real SMMU was built with (the shadow must match it). */
    cfg: SmmuV3Config,
    readonly probes: readonly Probe[],
  ) {
    const { base: _base, engine: _engine, ...rest } = cfg;
    this.shadow = new SmmuV3(m, { ...rest, tlbSets: 0, name: `${real.name}-shadow` });
  }

  /** Copy the register state that decides translation from the real SMMU. */
  private syncRegs(): void {
    const s = this.shadow;
    const r = this.real;
    s.cr0 = r.cr0;
    s.cr0ack = r.cr0ack;
    s.cr2 = r.cr2;
    s.gbpa = r.gbpa;
    s.strtabBaseLo = r.strtabBaseLo;
    s.strtabBaseHi = r.strtabBaseHi;
    s.strtabBaseCfg = r.strtabBaseCfg;
    s.enabled = r.enabled;
  }

  /** The outcome of every probe if the SMMU fetched everything from memory now. */
  evaluate(): string {
    this.syncRegs();
    this.shadow.cache.invalidateAll();
    const out: string[] = [];
    for (const p of this.probes) {
      const st = this.shadow.port.translate(p.sid, p.ssid, p.iova, p.access, this.res);
      const name = PORT_STATUS_NAMES[st] ?? String(st);
      if (st === 0 || st === 1) out.push(`${name} 0x${this.res.oa.toString(16)}`);
      else if (this.res.fault) out.push(`${name} ${eventName(this.res.fault)}`);
      else out.push(name);
    }
    return out.join(' | ');
  }

  /** Start observing stores into [base, base+size) (an STE or a CD). */
  watch(base: number, size = 64): void {
    this.unwatch.push(
      this.m.mem.watch(base, size, () => {
        this.stores++;
        this.timeline.push(this.evaluate());
      }),
    );
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
  }

  /** Distinct outcomes in order of first appearance. */
  distinct(): string[] {
    return [...new Set(this.timeline)];
  }
}
