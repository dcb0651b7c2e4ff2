// Random command lines, for every command, run in-process: real and bogus options, values that
// fit and values that do not, anywhere on the line. Whatever the line, the CLI ends with 0, 1 or 2
// and says why on stderr — never an internal error (70) or an exception — and a refused line
// (exit 2) writes no file and prints nothing on stdout.

import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commands } from '../../src/tools/cli/commands.ts';
import { GLOBAL_OPTIONS } from '../../src/tools/cli/grammar.ts';
import { main } from '../../src/tools/cli/main.ts';
import type { OptionSpec } from '../../src/tools/cli/types.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

const LOG = [
  '[   12.345678] arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:',
  '[   12.345679] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000800000010',
  '[   12.345680] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000020a00000000',
  '[   12.345681] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x00000000deadb000',
  '[   12.345682] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000000000000',
].join('\n');
/** Files to read; any other name reads as ENOENT. */
const FILES: Record<string, Uint8Array | string> = {
  'board.dts': '/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; };\n',
  'bad.dts': '/dts-v1/;\n/ { a = <1 ; };',
  'bad.dtb': Uint8Array.from([0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 0x28, 1, 2, 3]),
  'kernel.log': LOG,
};
/** Scenario files (run reads them from disk): one passes, one fails some seeds, one is broken. */
const RUN_FILES = ['pass.mjs', 'fail.mjs', 'nodefault.mjs'].map((f) =>
  join(import.meta.dirname, 'fixtures-run', f),
);
FILES['r1.jsonl'] = [
  JSON.stringify({ type: 'sweep', scenario: 'x', file: 'x.mjs', seeds: '1..2', shard: null, count: 2 }),
  JSON.stringify({
    type: 'result',
    scenario: 'x',
    seed: 1,
    ok: true,
    virtualTimeNs: 5,
    result: null,
    error: null,
    bugs: [],
    lastLog: [],
  }),
].join('\n');
FILES['bad.jsonl'] = '{"type":"result"\n';
/** An output path that fails the check before a run. */
const READ_ONLY = 'ro/out.json';

/** Values for an option by its placeholder or name: some that fit, some that do not. */
const OPTION_VALUES: Record<string, string[]> = {
  seed: ['7', '0', '0x10', '4294967295', '4294967296', '-1', 'x'],
  trace: ['out.json', 'run.log', READ_ONLY, '-', ''],
  log: ['run.log', 'out.json', 'kernel.log', 'missing.log', READ_ONLY, '-', ''],
  timeout: ['0', '2.5', '1000000', '-1', '-2', '1e300', '1e7', 'NaN', ' '],
  stage: ['1', '2', '3'],
  granule: ['4k', '16k', '64kb', '8k'],
  level: ['0', '1', '3', '7'],
  client: ['gpu', ''],
  seeds: ['1..3', '2,5', '5..1', '1..x', ''],
  jobs: ['1', '2', '0', '300', 'many'],
  shard: ['1/2', '2/2', '3/2', 'auto/2', '0/0'],
  out: ['r.jsonl', READ_ONLY, ''],
  'virtual-time-limit': ['1s', '500ms', '0', 'soon'],
  'wall-time-limit': ['30s', '0.5ms', 'x'],
};
/** Positional arguments that mean something to each command. */
const POSITIONALS: Record<string, string[]> = {
  demo: ['basic', 'smmu', 'pri', 'nope'],
  run: [...RUN_FILES, 'missing.mjs', 'notes.txt'],
  report: ['r1.jsonl', 'bad.jsonl', 'missing.jsonl'],
  boot: [...Object.keys(FILES), 'missing.dtb'],
  // structure names (and one that is not), then words that are hex or not
  decode: 'event ste cd cmd pri pte bogus 0x10 0x3 0xffffffffffffffff 0x1ffffffffffffffff 0xZZ 1'.split(' '),
};
const BOGUS = [
  '--bogus',
  '-x',
  '-hx',
  '--json=1',
  '--no-json',
  '--seed=',
  '--trace=',
  '--=',
  '---',
  '--',
  '-',
];

const fromList = (xs: readonly string[]) => fc.constantFrom(...xs);
/** `--name value` or `--name=value` (a value that fits or not), or a boolean option. */
function optionPiece(o: OptionSpec): fc.Arbitrary<string[]> {
  if (o.type === 'boolean') return fc.constant([`--${o.name}`]);
  const values = fromList([...(o.choices ?? []), ...(OPTION_VALUES[o.name] ?? ['x']), 'bogus']);
  return fc
    .tuple(values, fc.boolean())
    .map(([v, inline]) => (inline ? [`--${o.name}=${v}`] : [`--${o.name}`, v]));
}
const globalPieces = GLOBAL_OPTIONS.map(optionPiece);

/** A command line for `name`: global options, the name, then its options, arguments and noise. */
function commandLine(name: string): fc.Arbitrary<string[]> {
  const c = commands.find((x) => x.name === name)!;
  const post = fc.oneof(
    { weight: 6, arbitrary: fc.oneof(...c.options.map(optionPiece), ...globalPieces) },
    { weight: 4, arbitrary: fromList(POSITIONALS[name] ?? ['x']).map((v) => [v]) },
    {
      weight: 1,
      arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => [`0x${v.toString(16)}`]),
    },
    { weight: 1, arbitrary: fromList(BOGUS).map((v) => [v]) },
    { weight: 1, arbitrary: fc.string({ maxLength: 6 }).map((v) => [v]) },
  );
  return fc
    .tuple(fc.array(fc.oneof(...globalPieces), { maxLength: 2 }), fc.array(post, { maxLength: 5 }))
    .map(([pre, rest]) => [...pre.flat(), name, ...rest.flat()]);
}

/** Any tokens at all, the command name among them or not. */
const anyLine = fc.array(
  fc.oneof(
    fromList([...commands.map((c) => c.name), 'help', ...BOGUS]),
    fc.oneof(...globalPieces).map((p) => p.join(' ')),
    fc.string({ maxLength: 6 }),
  ),
  { maxLength: 6 },
);

/**
 * Runs per command. A line that parses runs the real model, so lines for `demo` and `boot` cost
 * up to a few hundred ms; the slow demo scenario (gpu-crash-dump, seconds) is left out of the
 * values for that reason.
 */
const RUNS: Record<string, number> = { demo: 20, run: 40, report: 60, boot: 200, decode: 500 };
const NO_COMMAND_RUNS = 300;

async function check(argv: string[]): Promise<void> {
  const io = fakeIo(FILES, { stdin: LOG, readOnly: [READ_ONLY] });
  let rc: number;
  try {
    rc = await main(argv, io);
  } catch (e) {
    throw new Error(`main threw on ${JSON.stringify(argv)}: ${String(e)}`);
  }
  const ctx = `${JSON.stringify(argv)} -> ${rc}\n${io.stderr.join('\n')}`;
  expect([0, 1, 2], ctx).toContain(rc);
  if (rc !== 0) expect(io.stderr.join('').trim(), ctx).not.toBe('');
  if (rc === 2) expect([[...io.written.keys()], io.stdout], ctx).toEqual([[], []]);
  expect(io.written.has(READ_ONLY), ctx).toBe(false);
}

describe('CLI fuzz: random command lines', () => {
  it.each(commands.map((c) => c.name))(
    '%s: exits 0, 1 or 2 with a message; a refused line writes nothing',
    async (name) => {
      await fc.assert(fc.asyncProperty(commandLine(name), check), { numRuns: RUNS[name] ?? 100 });
    },
  );

  it('any line at all (the command name itself random)', async () => {
    await fc.assert(fc.asyncProperty(anyLine, check), { numRuns: NO_COMMAND_RUNS });
  });
});
