/**
 * Loading a user's scenario module: `.mjs` / `.js` through Node's own loader, `.ts` / `.mts`
 * through tsx's API (only then: the CLI itself is plain JavaScript). Every way a file can be
 * wrong ends in a LoadError with a message a user can act on, never in a stack trace.
 */

import { existsSync, statSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ScenarioDefinition, scenarioShapeError } from '../../api/scenario.ts';

export class LoadError extends Error {
  override readonly name = 'LoadError';
}

const EXTS = new Set(['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts']);

/** Check that `file` can be a scenario (exists, is a file, has a known extension). */
export function checkScenarioFile(file: string): string | null {
  const ext = extname(file).toLowerCase();
  if (!EXTS.has(ext))
    return `${file}: a scenario is a .js, .mjs or .ts module (got "${ext || 'no extension'}")`;
  if (!existsSync(file)) return `${file}: no such file`;
  if (!statSync(file).isFile()) return `${file}: not a file`;
  return null;
}

function describe(e: unknown): string {
  if (e instanceof SyntaxError) return `syntax error: ${e.message}`;
  if (e instanceof Error) {
    // tsx/esbuild transform errors carry the location in the message
    const first = e.message.split('\n').find((l) => l.trim() !== '') ?? e.message;
    return `${e.name === 'Error' ? '' : `${e.name}: `}${first}`;
  }
  return String(e);
}

let tsxRegistered = false;

async function registerTsx(): Promise<void> {
  if (tsxRegistered) return;
  const { register } = (await import('tsx/esm/api')) as { register: () => unknown };
  register();
  tsxRegistered = true;
}

/** Import `file` and return its default export as a scenario definition. */
export async function loadScenario(file: string): Promise<ScenarioDefinition> {
  const bad = checkScenarioFile(file);
  if (bad !== null) throw new LoadError(bad);
  const url = pathToFileURL(resolve(file)).href;
  const ext = extname(file).toLowerCase();
  let mod: Record<string, unknown>;
  try {
    // TypeScript: register tsx's loader once (running from the sources it already is), then a
    // plain import, so the scenario shares this thread's copy of iommu-lab
    if ((ext === '.ts' || ext === '.mts' || ext === '.cts') && !import.meta.url.endsWith('.ts'))
      await registerTsx();
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw new LoadError(`${file}: cannot load: ${describe(e)}`);
  }
  let def = mod.default;
  // a CommonJS or transpiled module may nest the default export once
  if (def !== null && typeof def === 'object' && 'default' in def && !('run' in def))
    def = (def as { default: unknown }).default;
  if (def === undefined) {
    const names = Object.keys(mod).filter((k) => k !== 'default');
    throw new LoadError(
      `${file}: no default export; a scenario module ends with \`export default defineScenario({ name, async run(ctx) { ... } })\`${names.length ? ` (it exports ${names.join(', ')})` : ''}`,
    );
  }
  const why = scenarioShapeError(def);
  if (why !== null) throw new LoadError(`${file}: the default export is not a scenario: ${why}`);
  return def as ScenarioDefinition;
}
