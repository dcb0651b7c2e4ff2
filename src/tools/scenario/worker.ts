/**
 * A scenario worker thread: loads the scenario once, then runs the seeds the main thread sends,
 * one at a time, each on a freshly booted lab, and posts back each result (and, for single runs,
 * the trace events as they happen). The main thread may terminate it at any moment (wall-clock
 * limit); nothing here writes files.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { runScenario, type ScenarioDefinition } from '../../api/scenario.ts';
import type { TraceEvent } from '../../platform/trace.ts';
import { LoadError, loadScenario } from './load.ts';
import type { FromWorker, ToWorker, WorkerSetup } from './protocol.ts';
import { jsonSafe } from './serialize.ts';

const setup = workerData as WorkerSetup;
const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

let def: ScenarioDefinition;
try {
  def = await loadScenario(setup.file);
  post({ type: 'ready', name: def.name, description: def.description ?? null });
} catch (e) {
  post({ type: 'load-error', message: e instanceof LoadError ? e.message : `${setup.file}: ${String(e)}` });
  process.exit(0);
}

port.on('message', async (msg: ToWorker) => {
  if (msg.type === 'exit') {
    port.close();
    return;
  }
  let batch: TraceEvent[] = [];
  const flush = () => {
    if (batch.length > 0) post({ type: 'events', events: batch });
    batch = [];
  };
  const sinks = setup.streamEvents
    ? [
        {
          write: (e: TraceEvent) => {
            if (!setup.debugEvents && e.level === 'debug') return;
            batch.push(e);
            if (batch.length >= 256) flush();
          },
        },
      ]
    : [];
  const result = await runScenario(def, {
    seed: msg.seed,
    sinks,
    virtualTimeLimitNs: setup.virtualTimeLimitNs,
    sanitize: setup.sanitize,
    inject: setup.inject,
  });
  flush();
  result.result = jsonSafe(result.result);
  let report: string[] = [];
  if (result.ok && def.report !== undefined) {
    try {
      report = def.report(result.result).map(String);
    } catch (e) {
      report = [`(report() threw: ${e instanceof Error ? e.message : String(e)})`];
    }
  }
  post({ type: 'result', result, report });
});
