import { fileURLToPath } from 'node:url';
import { DEMOS } from '../demo/index.ts';
import { runScenarioCommand } from '../scenario/run-command.ts';
import { UsageError } from './errors.ts';
import { wrapLine } from './help.ts';
import { runIo, sanitizeOption } from './run.ts';
import type { RunContext } from './types.ts';

/** A bundled demo's module, beside this one: .ts in the sources, .js once built. */
function demoModule(name: string): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`../demo/${name}${ext}`, import.meta.url));
}

/** The bundled scenarios, for `demo --help`. */
export function scenarioList(): string {
  const lines = DEMOS.flatMap((s, i) =>
    wrapLine(`  ${s.name.padEnd(16)}${i === 0 ? '(default) ' : ''}${s.description}`, 18),
  );
  return `Scenarios:\n${lines.join('\n')}`;
}

export async function run(ctx: RunContext): Promise<number> {
  const name = ctx.args[0] ?? DEMOS[0].name;
  if (!DEMOS.some((s) => s.name === name)) {
    throw new UsageError(`unknown scenario '${name}'. Scenarios: ${DEMOS.map((s) => s.name).join(', ')}`);
  }
  return runScenarioCommand(
    {
      file: demoModule(name),
      seed: ctx.global.seed,
      seeds: null,
      jobs: null,
      shard: null,
      out: null,
      json: ctx.global.json,
      trace: ctx.global.trace !== null,
      log: ctx.global.log !== null,
      virtualTimeLimit: null,
      wallTimeLimit: null,
      reproPrefix: `iommu-lab demo ${name}`,
      sanitize: sanitizeOption(ctx.options),
    },
    runIo(ctx),
  );
}
