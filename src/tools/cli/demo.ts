import { runBasicDemo } from '../demo/basic.ts';
import { startMachine } from './run-machine.ts';
import type { Command } from './types.ts';

const SCENARIOS = ['basic'] as const;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a built-in scenario on the simulated machine',
  help: `Usage: iommu-lab demo [SCENARIO] [--seed N] [--json] [--trace FILE] [--log FILE]

Runs a built-in scenario and prints its kernel-style log and a summary.

Scenarios:
  basic   (default) a DMA copy engine programmed through MMIO copies buffers and signals
          completion by MSI; one transfer hits a hole in the address map (bus error)

With --json the output is one JSON object: the scenario's results and every trace event
(virtual time in ns). The output depends only on the scenario and the seed.`,
  async run(args, opts, io) {
    const name = args[0] ?? 'basic';
    if (args.length > 1 || !(SCENARIOS as readonly string[]).includes(name)) {
      io.err(`iommu-lab demo: unknown scenario '${args.join(' ')}'. Scenarios: ${SCENARIOS.join(', ')}`);
      return 2;
    }
    const run = startMachine(opts, io);
    const result = await runBasicDemo(run.machine);
    await run.finish();
    if (opts.json) {
      io.out(JSON.stringify({ ...result, events: run.events }, null, 2));
    } else {
      io.out('');
      io.out(
        `demo '${name}' (seed ${opts.seed}): ${result.virtualTimeNs} ns of virtual time, ${result.schedulerEvents} events`,
      );
      io.out('  #  bytes    src          dst          status     time');
      for (const t of result.transfers) {
        io.out(
          `  ${t.index}  ${String(t.bytes).padEnd(7)}  ${t.src.padEnd(11)}  ${t.dst.padEnd(11)}  ${t.status.padEnd(9)}  ${t.endNs - t.startNs} ns${t.errorAddress ? ` (at ${t.errorAddress})` : ''}`,
        );
      }
      io.out(
        `  interrupts: ${result.interrupts}, pages still allocated: ${result.pagesInUse}, bugs: ${result.bugs.length}`,
      );
    }
    const expected = result.transfers.every((t) =>
      t.index === result.transfers.length - 1 ? t.status === 'bus-error' : t.status === 'ok',
    );
    return expected && result.bugs.length === 0 ? 0 : 1;
  },
};
