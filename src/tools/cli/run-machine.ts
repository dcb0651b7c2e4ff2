/**
 * Wires a Machine's trace to the CLI's outputs: text log on stdout (unless --json), a
 * dmesg-style --log file, a Perfetto --trace file, and the event list for --json.
 */

import { DmesgSink, formatDmesg, type Machine, PerfettoSink, type TraceEvent } from '../../platform/index.ts';
import type { RunContext } from './types.ts';

export interface MachineRun {
  machine: Machine;
  events: TraceEvent[];
  /** Close the trace and hand the --trace / --log contents to the CLI; call once at the end. */
  finish(): void;
}

/**
 * Route a machine's trace to the CLI outputs. `console` false keeps the dmesg view off stdout
 * (for commands whose stdout is a report).
 */
export function attachOutputs(machine: Machine, ctx: RunContext, console = true): MachineRun {
  const { json, trace, log } = ctx.global;
  const events: TraceEvent[] = [];
  const logLines: string[] = [];
  // --json lists what the dmesg view shows (info and above); --trace FILE keeps every event
  if (json && console) machine.trace.addSink({ write: (e) => e.level !== 'debug' && events.push(e) });
  else if (console) machine.trace.addSink(new DmesgSink(ctx.io.out));
  // --log FILE holds the dmesg view (info and above), like the console
  if (log !== null)
    machine.trace.addSink({ write: (e) => e.level !== 'debug' && logLines.push(formatDmesg(e)) });
  const perfetto = trace !== null ? new PerfettoSink() : null;
  if (perfetto) machine.trace.addSink(perfetto);
  return {
    machine,
    events,
    finish() {
      machine.trace.close();
      if (perfetto) ctx.output('trace', () => perfetto.toJSON());
      if (log !== null) ctx.output('log', () => (logLines.length ? `${logLines.join('\n')}\n` : ''));
    },
  };
}
