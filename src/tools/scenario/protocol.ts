/** Messages between the scenario runner (main thread) and its worker threads. */

import type { InjectionName } from '../../api/inject.ts';
import type { ScenarioResult } from '../../api/scenario.ts';
import type { SanitizeMode } from '../../platform/sanitizer.ts';
import type { TraceEvent } from '../../platform/trace.ts';

export interface WorkerSetup {
  /** The scenario module. */
  file: string;
  /** Override of the scenario's virtual-time limit, ns. */
  virtualTimeLimitNs?: number;
  /** Override of the scenario's DMA-isolation sanitizer mode. */
  sanitize?: SanitizeMode;
  /** Injections to turn on from boot (--inject). */
  inject?: InjectionName[];
  /** Send the run's trace events to the main thread (single runs: console, --trace, --log). */
  streamEvents: boolean;
  /** With streamEvents: debug-level events too (for --trace). */
  debugEvents: boolean;
}

export type ToWorker = { type: 'run'; seed: number } | { type: 'exit' };

export type FromWorker =
  | { type: 'ready'; name: string; description: string | null }
  | { type: 'load-error'; message: string }
  | { type: 'events'; events: TraceEvent[] }
  | { type: 'result'; result: ScenarioResult; report: string[] };
