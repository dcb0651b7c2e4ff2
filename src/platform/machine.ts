/**
 * The simulated machine: physical address space (RAM + MMIO), interrupt controller with MSI,
 * virtual time, execution contexts, page allocator, tracing and the bug log.
 * Hardware models and the kernel model are built on one Machine; they meet only through
 * its memory, MMIO bus and interrupts.
 */

import type { BugKind, BugReport, BugStack } from './bugs.ts';
import { Executor } from './exec.ts';
import { InterruptController } from './irq.ts';
import { PhysicalMemory } from './memory.ts';
import { MmioBus } from './mmio.ts';
import { PageAllocator } from './page-alloc.ts';
import { Rng } from './rng.ts';
import { DmaSanitizer, type SanitizeMode } from './sanitizer.ts';
import { Scheduler } from './scheduler.ts';
import { Tracer } from './trace.ts';

export interface MachineConfig {
  /** Seed of the machine's PRNG; every random choice in a run derives from it. */
  seed?: number;
  /** RAM regions; default 1 GiB at 0x8000_0000. */
  ram?: Array<{ base: number; size: number; name?: string }>;
  /** Base of the interrupt controller's ITS window (MSI doorbell at +0x10040); default 0x0808_0000. */
  itsBase?: number;
  /** Region the kernel page allocator manages; default the first RAM region. */
  pagePool?: { base: number; size: number };
  /**
   * Linux's init_on_free=1: the page allocator zeroes pages when they are freed, so zeroed
   * allocations skip the clear (and, as on Linux, a store into a page after its free — a stale
   * DMA — survives into its next allocation). Default false (init_on_alloc behaviour: freed
   * pages keep their stale contents until an allocation clears them).
   */
  initOnFree?: boolean;
}

export const DEFAULT_RAM = { base: 0x8000_0000, size: 0x4000_0000, name: 'dram' };
export const DEFAULT_ITS_BASE = 0x0808_0000;

export class Machine {
  readonly seed: number;
  readonly sched = new Scheduler();
  readonly rng: Rng;
  readonly trace: Tracer;
  readonly mmio = new MmioBus();
  readonly mem: PhysicalMemory;
  readonly exec: Executor;
  readonly irq: InterruptController;
  readonly pages: PageAllocator;
  readonly bugs: BugReport[] = [];

  constructor(cfg: MachineConfig = {}) {
    this.seed = cfg.seed ?? 1;
    this.rng = new Rng(this.seed);
    this.trace = new Tracer(this.sched);
    this.mem = new PhysicalMemory(this.mmio, cfg.ram ?? [DEFAULT_RAM]);
    this.mmio.onError = (e) =>
      this.trace.emit(
        'bus',
        'bus.error',
        `bus error: ${e.write ? 'write' : 'read'} of ${e.width} bytes at 0x${e.pa.toString(16)}: ${e.reason}`,
        { pa: `0x${e.pa.toString(16)}`, width: e.width, write: e.write, reason: e.reason },
        'warn',
      );
    this.exec = new Executor(this.sched, (r) => this.reportBug(r.kind, r.message, r.stacks));
    this.irq = new InterruptController(this.sched, this.exec, this.trace, -1, (m) =>
      this.reportBug('irq-nobody-cared', m),
    );
    const its = cfg.itsBase ?? DEFAULT_ITS_BASE;
    this.mmio.map(its, 0x20000, this.irq);
    this.irq.itsBase = its;
    const pool = cfg.pagePool ?? this.mem.regions()[0];
    if (pool === undefined) throw new RangeError('machine: no RAM');
    this.pages = new PageAllocator(
      this.mem,
      pool.base,
      pool.size,
      (kind, m) => this.reportBug(kind, m),
      cfg.initOnFree === true,
    );
  }

  /** The DMA-isolation sanitizer, or null when off (the default). */
  get sanitizer(): DmaSanitizer | null {
    return this.mem.sanitizer;
  }

  /**
   * Turn the DMA-isolation sanitizer on ('report' or 'panic'; 'off' does nothing). Do it before
   * the kernel allocates, so that every page's allocation site is known. Returns the sanitizer.
   */
  enableSanitizer(mode: SanitizeMode): DmaSanitizer | null {
    if (mode === 'off') return this.mem.sanitizer;
    if (this.mem.sanitizer !== null) return this.mem.sanitizer;
    const s = new DmaSanitizer(mode, this.sched, this.pages);
    this.mem.attachSanitizer(s);
    return s;
  }

  /** Record a bug found in code running on the machine (never thrown). */
  reportBug(kind: BugKind, message: string, stacks: readonly BugStack[] = []): void {
    const r: BugReport = { kind, time: this.sched.now, message, stacks };
    this.bugs.push(r);
    this.trace.emit('kernel', `bug.${kind}`, message, { kind }, 'err');
  }
}
