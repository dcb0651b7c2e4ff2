/**
 * The one command-line grammar of iommu-lab: `iommu-lab [global options] COMMAND [args and
 * options]`. Global options go anywhere on the line; after the command name, an option the
 * command declares itself wins over a global one of the same name (`decode --log FILE` reads a
 * kernel log; `--log FILE decode` is the global option, which decode refuses). Both parts are
 * parsed by `node:util.parseArgs` in strict mode from the declarations in commands.ts.
 */

import { resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from './errors.ts';
import type { Command, GlobalName, GlobalOptions, OptionSpec, OptionValues } from './types.ts';

/** The global options: the four a command may declare, and --help and --version, which every command takes. */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'seed',
    type: 'string',
    value: 'N',
    help: "seed of the run's PRNG, 0 to 4294967295 (default 1); same seed, same output",
  },
  { name: 'json', type: 'boolean', help: 'machine-readable JSON on stdout instead of text' },
  {
    name: 'trace',
    type: 'string',
    value: 'FILE',
    output: true,
    help: 'write a Chrome/Perfetto trace-event JSON file (open it in ui.perfetto.dev)',
  },
  {
    name: 'log',
    type: 'string',
    value: 'FILE',
    output: true,
    help: 'write the dmesg-style log of the run to FILE',
  },
  { name: 'help', type: 'boolean', short: 'h', help: 'show help (also: iommu-lab help COMMAND)' },
  { name: 'version', type: 'boolean', short: 'V', help: 'print the version' },
];

/** Why a global option means nothing to a command that does not declare it. */
const NOT_APPLICABLE: Record<GlobalName, string> = {
  seed: 'nothing in it depends on a seed',
  json: 'it has no JSON output',
  trace: 'it produces no trace',
  log: 'it writes no log',
};

export type CommandLine =
  | { kind: 'version' }
  | { kind: 'help'; command: Command | null }
  | {
      kind: 'run';
      command: Command;
      args: string[];
      options: OptionValues;
      global: GlobalOptions;
      /** Every file the run may write, as [option, path]: --trace, --log, the command's own outputs. */
      outputs: [string, string][];
    };

type Token = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number];

function config(specs: readonly OptionSpec[]): NonNullable<ParseArgsConfig['options']> {
  const c: NonNullable<ParseArgsConfig['options']> = {};
  for (const s of specs)
    c[s.name] = s.short === undefined ? { type: s.type } : { type: s.type, short: s.short };
  return c;
}

/** parseArgs' errors, said the way the rest of the CLI says things. */
function usageError(e: unknown, where: string): UsageError {
  const err = e as { code?: string; message?: string };
  const msg = String(err.message ?? e);
  const opt = /^(?:Unknown option|Option) '(-{1,2}[^' ]*)/.exec(msg)?.[1] ?? '';
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new UsageError(`unknown option '${opt}'${where}`);
  if (/argument missing/.test(msg)) return new UsageError(`${opt} needs a value`);
  if (/ambiguous/.test(msg)) {
    return new UsageError(`${opt} needs a value (for one that starts with '-', write ${opt}=-VALUE)`);
  }
  if (/does not take an argument/.test(msg)) return new UsageError(`${opt} takes no value`);
  if (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) return new UsageError(msg);
  throw e;
}

/** What is wrong with a number option's value (a plain decimal number in the declared range), if anything. */
function rangeProblem(s: OptionSpec, v: string): string | null {
  const r = s.range;
  if (r === undefined) return null;
  const n = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) ? Number(v) : Number.NaN;
  if ((n >= r.min && n <= r.max && (!r.integer || Number.isInteger(n))) || r.special?.includes(n))
    return null;
  const also = r.special?.length ? ` or ${r.special.join(', ')}` : '';
  return `--${s.name} takes ${r.integer ? 'an integer' : 'a number'} from ${r.min} to ${r.max}${also} (got '${v}')`;
}

function checkSeed(v: string): number {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(v) || Number(v) > 0xffffffff) {
    throw new UsageError(`--seed needs an integer between 0 and 4294967295 (got '${v}')`);
  }
  return Number(v);
}

function given(tokens: readonly Token[]): { name: string; value: string | undefined }[] {
  return tokens.flatMap((t) => (t.kind === 'option' ? [{ name: t.name, value: t.value }] : []));
}

/**
 * Parse a whole command line. Throws UsageError (with `command` set once the command is known)
 * for anything that cannot run as given.
 */
export function parseCommandLine(argv: readonly string[], commands: readonly Command[]): CommandLine {
  // Where is the command name? parseArgs with the global options finds the first positional,
  // skipping the values of global options (`--trace out.json demo`).
  const scan = parseArgs({
    args: [...argv],
    options: config(GLOBAL_OPTIONS),
    strict: false,
    allowPositionals: true,
    tokens: true,
  }).tokens;
  const first = scan.find((t) => t.kind === 'positional');
  const afterTerminator = scan.some(
    (t) => t.kind === 'option-terminator' && (!first || t.index < first.index),
  );
  const cmdIndex = first?.index ?? argv.length;
  const before = argv.slice(0, cmdIndex).filter((_, i) => !(afterTerminator && argv[i] === '--'));
  let pre: Token[];
  try {
    pre = parseArgs({ args: before, options: config(GLOBAL_OPTIONS), strict: true, tokens: true }).tokens;
  } catch (e) {
    throw usageError(e, " (a command's own options go after its name)");
  }
  const preGiven = given(pre);
  const has = (list: { name: string }[], n: string) => list.some((o) => o.name === n);
  if (has(preGiven, 'version')) return { kind: 'version' };
  let name = argv[cmdIndex];
  let rest = argv.slice(cmdIndex + 1);
  if (name === 'help') {
    // `iommu-lab help [COMMAND]`
    if (rest.length > 1) throw new UsageError(`help takes one command name (got ${rest.length})`);
    if (rest[0] === undefined) return { kind: 'help', command: null };
    name = rest[0];
    rest = ['--help'];
  }
  if (name === undefined) {
    if (has(preGiven, 'help')) return { kind: 'help', command: null };
    throw new UsageError('no command given');
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    throw new UsageError(`unknown command '${name}'. Commands: ${commands.map((c) => c.name).join(', ')}`);
  }
  const fail = (msg: string): never => {
    const e = new UsageError(msg);
    e.command = command.name;
    throw e;
  };

  // An option whose value is optional, given alone (`--sanitize`), takes its optionalValue;
  // only up to a '--' terminator (after it, everything is a positional argument)
  const alone = new Map(
    command.options
      .filter((o) => o.optionalValue !== undefined)
      .map((o) => [`--${o.name}`, o.optionalValue!]),
  );
  if (alone.size > 0 && !afterTerminator) {
    const stop = rest.indexOf('--');
    rest = rest.map((a, i) => ((stop < 0 || i < stop) && alone.has(a) ? `${a}=${alone.get(a)}` : a));
  }
  // After the name: the command's options, then the global ones it does not shadow.
  const own = new Set(command.options.map((o) => o.name));
  const table = [...command.options, ...GLOBAL_OPTIONS.filter((g) => !own.has(g.name))];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: afterTerminator ? ['--', ...rest] : rest,
      options: config(table),
      strict: true,
      allowPositionals: true,
      tokens: true,
    });
  } catch (e) {
    return fail(usageError(e, ` for ${command.name}`).message);
  }
  const postGiven = given(parsed.tokens ?? []);
  const globals = [...preGiven, ...postGiven.filter((o) => !own.has(o.name))];
  if (has(globals, 'version')) return { kind: 'version' };
  if (has(globals, 'help')) return { kind: 'help', command };

  // Global options that mean nothing to this command are refused, not ignored.
  for (const g of ['seed', 'json', 'trace', 'log'] as const) {
    if (!has(globals, g) || command.globals.includes(g)) continue;
    const shadowed = own.has(g) && has(preGiven, g);
    fail(
      shadowed
        ? `--${g} before the command name is the global option (${GLOBAL_OPTIONS.find((o) => o.name === g)!.help}), and ${command.name} takes none: ${NOT_APPLICABLE[g]}. For ${command.name}'s own --${g}, put it after '${command.name}'`
        : `--${g} does not apply to ${command.name}: ${NOT_APPLICABLE[g]}`,
    );
  }
  // an option given twice: the last one counts
  const last = (list: { name: string; value: string | undefined }[], n: string) =>
    list.filter((o) => o.name === n).pop()?.value;
  const global: GlobalOptions = { seed: 1, json: has(globals, 'json'), trace: null, log: null };
  const seed = last(globals, 'seed');
  if (seed !== undefined) global.seed = checkSeed(seed);

  const options: Record<string, string | boolean | undefined> = {};
  for (const s of command.options) {
    const v = last(postGiven, s.name);
    if (s.type === 'boolean') {
      options[s.name] = has(postGiven, s.name);
      continue;
    }
    if (v !== undefined && s.choices && !s.choices.includes(v)) {
      fail(`--${s.name} takes ${s.choices.join(', ')} (got '${v}')`);
    }
    const problem = v === undefined ? null : rangeProblem(s, v);
    if (problem !== null) fail(problem);
    options[s.name] = v ?? s.default;
  }

  // Output files: named, not '-', and not one file for two outputs.
  const outputs: [string, string][] = [];
  for (const k of ['trace', 'log'] as const) {
    const v = last(globals, k);
    if (v !== undefined) {
      global[k] = v;
      outputs.push([`--${k}`, v]);
    }
  }
  for (const s of command.options) {
    const v = options[s.name];
    if (s.output && typeof v === 'string') outputs.push([`--${s.name}`, v]);
  }
  for (const [flag, path] of outputs) {
    if (path === '') fail(`${flag} needs a file name`);
    if (path === '-') fail(`${flag} writes a file, not standard output: give a file name`);
    const other = outputs.find(([f, p]) => f !== flag && resolve(p) === resolve(path));
    if (other) fail(`${flag} and ${other[0]} name the same file (${path})`);
  }

  const args = parsed.positionals;
  if (args.length > command.maxArgs) {
    fail(
      command.maxArgs === 0
        ? `${command.name} takes no arguments (got '${args[0]}')`
        : `unexpected argument '${args[command.maxArgs]}' (${command.name} takes at most ${command.maxArgs})`,
    );
  }
  return { kind: 'run', command, args, options, global, outputs };
}
