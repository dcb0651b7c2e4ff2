/**
 * Interrupt controller: wired lines (level or edge) and MSIs.
 *
 * Hardware side: `setLevel(irq, high)` for level lines, `pulse(irq)` for edges, and MSI as a
 * 32-bit memory write of the interrupt number to the doorbell (modelled on the GICv3 ITS
 * GITS_TRANSLATER register), which reaches this controller through the MMIO bus like any
 * other store — a device that writes the wrong address simply raises nothing.
 *
 * Kernel side: `requestThreadedIrq` (Linux's request_threaded_irq): the primary handler runs in
 * hard-IRQ context (atomic); if it returns IRQ_WAKE_THREAD the thread function runs later in a
 * sleepable threaded-IRQ context. Level lines are masked while their thread runs (ONESHOT).
 * Delivery takes `latencyNs` of virtual time after the line goes active.
 */

import type { Executor } from './exec.ts';
import type { MmioDevice } from './mmio.ts';
import type { Scheduler } from './scheduler.ts';
import type { Tracer } from './trace.ts';

export const IRQ_NONE = 0;
export const IRQ_HANDLED = 1;
export const IRQ_WAKE_THREAD = 2;
export type IrqReturn = typeof IRQ_NONE | typeof IRQ_HANDLED | typeof IRQ_WAKE_THREAD;

export type IrqHandler = (irq: number) => IrqReturn;
export type IrqThreadFn = (irq: number) => Promise<void>;

/** Offset of the MSI doorbell inside the ITS window (GITS_TRANSLATER). */
export const GITS_TRANSLATER = 0x10040;
/** First interrupt number handed out for MSIs (GICv3 LPIs start at 8192). */
export const MSI_BASE = 8192;

interface Line {
  trigger: 'level' | 'edge';
  level: boolean;
  pending: boolean;
  scheduled: boolean;
  inHandler: boolean;
  masked: boolean;
  threadRunning: boolean;
  threadWanted: boolean;
  name: string;
  handler: IrqHandler | null;
  threadFn: IrqThreadFn | null;
  registeredAt: string;
  count: number;
  unhandled: number;
}

export interface MsiMessage {
  readonly irq: number;
  /** Doorbell physical address. */
  readonly address: number;
  readonly data: number;
}

export class InterruptController implements MmioDevice {
  readonly name = 'gic-its';
  private lines = new Map<number, Line>();
  private nextMsi = MSI_BASE;
  /** Virtual ns between a line going active and its handler running. */
  latencyNs = 100;
  /** Unhandled-interrupt count after which a line is disabled ("nobody cared"). */
  spuriousLimit = 100_000;

  constructor(
    private readonly sched: Scheduler,
    private readonly exec: Executor,
    private readonly trace: Tracer,
    /** Physical base of the ITS window (doorbell = base + GITS_TRANSLATER); set when mapped. */
    public itsBase = -1,
    private readonly reportBug: (message: string) => void = () => {},
  ) {}

  // ------------------------------------------------------------------ hardware side

  /** Drive a level-triggered line. */
  setLevel(irq: number, high: boolean): void {
    const l = this.line(irq, 'level');
    l.level = high;
    if (high) this.kick(irq, l);
  }

  /** Signal an edge (or an MSI). Edges arriving while one is pending merge into it. */
  pulse(irq: number): void {
    const l = this.line(irq, 'edge');
    l.pending = true;
    this.kick(irq, l);
  }

  /** The MSI doorbell address devices must write to. */
  get doorbell(): number {
    return this.itsBase < 0 ? -1 : this.itsBase + GITS_TRANSLATER;
  }

  read32(_offset: number): number {
    return 0;
  }

  write32(offset: number, value: number): void {
    if (offset === GITS_TRANSLATER) {
      this.trace.emit('gic-its', 'msi', `MSI data ${value}`, { irq: value }, 'debug');
      const l = this.lines.get(value);
      if (l === undefined || l.handler === null) {
        this.trace.emit(
          'gic-its',
          'msi.unmapped',
          `MSI to unmapped interrupt ${value} dropped`,
          { irq: value },
          'warn',
        );
        return;
      }
      this.pulse(value);
    }
  }

  // ------------------------------------------------------------------ kernel side

  /** Configure a wired line's trigger type before requesting it (default level). */
  configure(irq: number, trigger: 'level' | 'edge'): void {
    this.line(irq, trigger).trigger = trigger;
  }

  /** Allocate `count` MSI vectors; program each device's MSI address/data with them. */
  allocMsi(count: number): MsiMessage[] {
    const out: MsiMessage[] = [];
    for (let i = 0; i < count; i++) {
      const irq = this.nextMsi++;
      this.line(irq, 'edge');
      out.push({ irq, address: this.doorbell, data: irq });
    }
    return out;
  }

  /** Linux request_threaded_irq. Returns 0 or -EBUSY (-16) if the line already has a handler. */
  requestThreadedIrq(
    irq: number,
    name: string,
    handler: IrqHandler,
    threadFn: IrqThreadFn | null = null,
  ): number {
    const l = this.line(irq, this.lines.get(irq)?.trigger ?? 'level');
    if (l.handler !== null) return -16;
    l.name = name;
    l.handler = handler;
    l.threadFn = threadFn;
    l.masked = false;
    l.registeredAt = new Error().stack?.split('\n').slice(2).join('\n') ?? '';
    if (l.level || l.pending) this.kick(irq, l);
    return 0;
  }

  requestIrq(irq: number, name: string, handler: IrqHandler): number {
    return this.requestThreadedIrq(irq, name, handler, null);
  }

  freeIrq(irq: number): void {
    const l = this.lines.get(irq);
    if (l) {
      l.handler = null;
      l.threadFn = null;
    }
  }

  disableIrq(irq: number): void {
    this.line(irq, 'level').masked = true;
  }

  enableIrq(irq: number): void {
    const l = this.line(irq, 'level');
    l.masked = false;
    this.kick(irq, l);
  }

  /** Interrupts delivered on a line so far. */
  count(irq: number): number {
    return this.lines.get(irq)?.count ?? 0;
  }

  // ------------------------------------------------------------------ delivery

  private line(irq: number, trigger: 'level' | 'edge'): Line {
    let l = this.lines.get(irq);
    if (l === undefined) {
      l = {
        trigger,
        level: false,
        pending: false,
        scheduled: false,
        inHandler: false,
        masked: false,
        threadRunning: false,
        threadWanted: false,
        name: `irq${irq}`,
        handler: null,
        threadFn: null,
        registeredAt: '',
        count: 0,
        unhandled: 0,
      };
      this.lines.set(irq, l);
    }
    return l;
  }

  private active(l: Line): boolean {
    return l.trigger === 'level' ? l.level : l.pending;
  }

  private kick(irq: number, l: Line): void {
    if (l.scheduled || l.inHandler || l.masked || l.handler === null || !this.active(l)) return;
    l.scheduled = true;
    this.sched.schedule(this.latencyNs, () => this.deliver(irq, l), `irq ${irq}`);
  }

  private deliver(irq: number, l: Line): void {
    l.scheduled = false;
    if (l.masked || l.handler === null || !this.active(l)) return;
    if (l.trigger === 'edge') l.pending = false;
    l.inHandler = true;
    l.count++;
    const handler = l.handler;
    let ret: IrqReturn = IRQ_NONE;
    try {
      ret = this.exec.runHardIrq(`irq ${irq} (${l.name})`, l.registeredAt, () => handler(irq));
    } catch (err) {
      this.exec.crash(`irq ${irq} (${l.name}) handler`, err);
    }
    l.inHandler = false;
    if (ret === IRQ_NONE) {
      if (++l.unhandled >= this.spuriousLimit) {
        l.masked = true;
        this.reportBug(`irq ${irq}: nobody cared (${l.unhandled} unhandled interrupts); disabling`);
      }
    } else if (ret === IRQ_WAKE_THREAD && l.threadFn !== null) {
      // ONESHOT: keep a level line masked until the thread has run
      if (l.trigger === 'level') l.masked = true;
      this.wakeThread(irq, l);
    }
    this.kick(irq, l);
  }

  private wakeThread(irq: number, l: Line): void {
    if (l.threadRunning) {
      l.threadWanted = true;
      return;
    }
    l.threadRunning = true;
    const fn = l.threadFn!;
    this.sched.schedule(
      0,
      () => {
        this.exec
          .runIn('threaded-irq', `irq/${irq}-${l.name}`, () => fn(irq))
          .then(
            () => this.threadDone(irq, l),
            (err: unknown) => {
              this.exec.crash(`irq/${irq}-${l.name}`, err);
              this.threadDone(irq, l);
            },
          );
      },
      `irq thread ${irq}`,
    );
  }

  private threadDone(irq: number, l: Line): void {
    l.threadRunning = false;
    this.sched.wokeAsync = true;
    if (l.threadWanted) {
      l.threadWanted = false;
      this.wakeThread(irq, l);
      return;
    }
    if (l.trigger === 'level') l.masked = false;
    this.kick(irq, l);
  }
}
