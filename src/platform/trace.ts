/**
 * Typed trace events and their sinks.
 *
 * Every event carries virtual time, the component that emitted it, a name, and typed fields.
 * One run can be rendered as a dmesg-style log, as JSON lines, or as a Chrome/Perfetto
 * trace-event file. Emitting checks `tracer.enabled` first, so a run with no sinks pays for
 * one branch per trace point.
 */

export type FieldValue = string | number | boolean | null;
export type Fields = Readonly<Record<string, FieldValue>>;

export type TraceLevel = 'debug' | 'info' | 'warn' | 'err';

export interface TraceEvent {
  /** Virtual time, ns. */
  readonly time: number;
  /** Emitting component, e.g. "smmuv3.0", "dma-engine", "kernel.iommu". */
  readonly component: string;
  /** Event name, e.g. "cmdq.sync", "irq.deliver". */
  readonly name: string;
  readonly level: TraceLevel;
  /** Human-readable one-line message (the dmesg text). */
  readonly message: string;
  readonly fields: Fields;
  /** For spans: duration in ns (Perfetto "X" events). */
  readonly durationNs?: number;
}

export interface TraceSink {
  write(e: TraceEvent): void;
  /** Called once at the end of a run. */
  close?(): void;
}

export class Tracer {
  private sinks: TraceSink[] = [];
  enabled = false;

  constructor(private readonly clock: { readonly now: number }) {}

  addSink(s: TraceSink): void {
    this.sinks.push(s);
    this.enabled = true;
  }

  removeSink(s: TraceSink): void {
    this.sinks = this.sinks.filter((x) => x !== s);
    this.enabled = this.sinks.length > 0;
  }

  emit(
    component: string,
    name: string,
    message: string,
    fields: Fields = {},
    level: TraceLevel = 'info',
    durationNs?: number,
  ): void {
    if (!this.enabled) return;
    const e: TraceEvent =
      durationNs === undefined
        ? { time: this.clock.now, component, name, level, message, fields }
        : { time: this.clock.now, component, name, level, message, fields, durationNs };
    for (const s of this.sinks) s.write(e);
  }

  close(): void {
    for (const s of this.sinks) s.close?.();
  }
}

/** Keeps the last `capacity` events. */
export class RingSink implements TraceSink {
  private buf: TraceEvent[] = [];
  private head = 0;
  total = 0;
  constructor(readonly capacity = 4096) {}

  write(e: TraceEvent): void {
    this.total++;
    if (this.buf.length < this.capacity) this.buf.push(e);
    else {
      this.buf[this.head] = e;
      this.head = (this.head + 1) % this.capacity;
    }
  }

  events(): TraceEvent[] {
    return this.buf.slice(this.head).concat(this.buf.slice(0, this.head));
  }
}

/** `[    0.000123] component: message`, as printk prints seconds.microseconds. */
export function formatDmesgTime(ns: number): string {
  const us = Math.floor(ns / 1000);
  const sec = Math.floor(us / 1e6);
  const frac = us % 1e6;
  return `[${String(sec).padStart(5, ' ')}.${String(frac).padStart(6, '0')}]`;
}

export function formatDmesg(e: TraceEvent): string {
  return `${formatDmesgTime(e.time)} ${e.component}: ${e.message}`;
}

export class DmesgSink implements TraceSink {
  constructor(
    private readonly out: (line: string) => void,
    private readonly minLevel: TraceLevel = 'info',
  ) {}

  write(e: TraceEvent): void {
    if (LEVELS[e.level] >= LEVELS[this.minLevel]) this.out(formatDmesg(e));
  }
}

const LEVELS: Record<TraceLevel, number> = { debug: 0, info: 1, warn: 2, err: 3 };

/** One JSON object per line: {time, component, name, level, message, fields[, durationNs]}. */
export class JsonLinesSink implements TraceSink {
  constructor(private readonly out: (line: string) => void) {}
  write(e: TraceEvent): void {
    this.out(JSON.stringify(e));
  }
}

/**
 * Chrome trace-event JSON (loadable in ui.perfetto.dev and chrome://tracing): one process,
 * one thread ("track") per component, instant events or complete ("X") spans, timestamps in
 * microseconds of virtual time.
 */
export class PerfettoSink implements TraceSink {
  private tids = new Map<string, number>();
  private events: object[] = [];

  write(e: TraceEvent): void {
    let tid = this.tids.get(e.component);
    if (tid === undefined) {
      tid = this.tids.size + 1;
      this.tids.set(e.component, tid);
      this.events.push({ name: 'thread_name', ph: 'M', pid: 1, tid, args: { name: e.component } });
    }
    const base = {
      name: e.name,
      cat: e.component,
      pid: 1,
      tid,
      ts: e.time / 1000,
      args: { ...e.fields, message: e.message },
    };
    if (e.durationNs !== undefined) this.events.push({ ...base, ph: 'X', dur: e.durationNs / 1000 });
    else this.events.push({ ...base, ph: 'i', s: 't' });
  }

  /** The whole trace as a JSON string. */
  toJSON(): string {
    return JSON.stringify({
      displayTimeUnit: 'ns',
      otherData: { generator: 'iommu-lab', clock: 'virtual' },
      traceEvents: [
        { name: 'process_name', ph: 'M', pid: 1, tid: 0, args: { name: 'iommu-lab machine' } },
        ...this.events,
      ],
    });
  }
}
