/**
 * Wires a Machine's trace to the CLI's outputs: text log on stdout (unless --json), a
 * dmesg-style --log file, a Perfetto --trace file, and the event list for --json.
 */

import {
  DmesgSink,
  formatDmesg,
  Machine,
  type MachineConfig,
  PerfettoSink,
  type TraceEvent,
} from '../../platform/index.ts';
import type { CliIo, GlobalOptions } from './types.ts';

export interface MachineRun {
  machine: Machine;
  events: TraceEvent[];
  /** Write --trace / --log files; call once at the end. */
  finish(): Promise<void>;
}

export function startMachine(opts: GlobalOptions, io: CliIo, cfg: MachineConfig = {}): MachineRun {
  return attachOutputs(new Machine({ ...cfg, seed: opts.seed }), opts, io);
}

/**
 * Route a machine's trace to the CLI outputs. `console` false keeps the dmesg view off stdout
 * (for commands whose stdout is a report).
 */
export function attachOutputs(machine: Machine, opts: GlobalOptions, io: CliIo, console = true): MachineRun {
  const events: TraceEvent[] = [];
  const logLines: string[] = [];
  // --json lists what the dmesg view shows (info and above); --trace FILE keeps every event
  if (opts.json) machine.trace.addSink({ write: (e) => e.level !== 'debug' && events.push(e) });
  else if (console) machine.trace.addSink(new DmesgSink(io.out));
  // --log FILE holds the dmesg view (info and above), like the console
  if (opts.log !== null)
    machine.trace.addSink({ write: (e) => e.level !== 'debug' && logLines.push(formatDmesg(e)) });
  const perfetto = opts.trace !== null ? new PerfettoSink() : null;
  if (perfetto) machine.trace.addSink(perfetto);
  return {
    machine,
    events,
    async finish() {
      machine.trace.close();
      if (perfetto && opts.trace) await io.writeFile(opts.trace, perfetto.toJSON());
      if (opts.log !== null) await io.writeFile(opts.log, logLines.length ? `${logLines.join('\n')}\n` : '');
    },
  };
}
