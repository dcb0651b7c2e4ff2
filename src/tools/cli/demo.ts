import { scenarios } from '../demo/index.ts';
import { UsageError } from './errors.ts';
import { wrapLine } from './help.ts';
import { startMachine } from './run-machine.ts';
import type { RunContext } from './types.ts';

/** The scenarios, for `demo --help`. */
export function scenarioList(): string {
  const lines = scenarios.flatMap((s, i) =>
    wrapLine(`  ${s.name.padEnd(16)}${i === 0 ? '(default) ' : ''}${s.summary}`, 18),
  );
  return `Scenarios:\n${lines.join('\n')}`;
}

export async function run(ctx: RunContext): Promise<number> {
  const name = ctx.args[0] ?? scenarios[0]!.name;
  const sc = scenarios.find((s) => s.name === name);
  if (sc === undefined) {
    throw new UsageError(`unknown scenario '${name}'. Scenarios: ${scenarios.map((s) => s.name).join(', ')}`);
  }
  const run = startMachine(ctx);
  const result = await sc.run(run.machine);
  run.finish();
  if (ctx.global.json) ctx.io.out(JSON.stringify({ ...(result as object), events: run.events }, null, 2));
  else {
    ctx.io.out('');
    for (const l of sc.report(result)) ctx.io.out(l);
  }
  return sc.ok(result) ? 0 : 1;
}
