// The one command-line grammar: declarations in commands.ts, global options anywhere, options
// that mean nothing to a command refused, one set of exit codes, help at 80 columns.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { commands } from '../../src/tools/cli/commands.ts';
import { GLOBAL_OPTIONS } from '../../src/tools/cli/grammar.ts';
import { main } from '../../src/tools/cli/main.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

async function run(argv: string[], inputs: Record<string, string> = {}) {
  const io = fakeIo(inputs);
  const rc = await main(argv, io);
  return { rc, out: io.stdout.join('\n'), err: io.stderr.join('\n'), written: io.written };
}

describe('help', () => {
  it.each([[['--help']], [['help']], ...commands.map((c) => [[c.name, '--help']]), [['help', 'boot']]])(
    '%j fits in 80 columns',
    async (argv) => {
      const r = await run(argv);
      expect(r.rc).toBe(0);
      const long = r.out.split('\n').filter((l) => l.length > 80);
      expect(long).toEqual([]);
    },
  );

  it.each(commands.map((c) => c.name))(
    '%s --help lists its options and the global options it takes, and no others',
    async (name) => {
      const c = commands.find((x) => x.name === name)!;
      const { out } = await run([name, '--help']);
      for (const o of c.options) expect(out).toMatch(new RegExp(`^  --${o.name}\\b`, 'm'));
      for (const g of ['seed', 'json', 'trace', 'log'] as const) {
        const listed = new RegExp(`^  --${g}\\b`, 'm').test(out.slice(out.indexOf('Global options:')));
        expect([g, listed]).toEqual([g, c.globals.includes(g)]);
      }
      expect(out.replace(/\s+/g, ' ')).toMatch(
        /Exit status: 0 success; 1 .*; 2 usage error; 70 internal error/,
      );
    },
  );

  it('help COMMAND is COMMAND --help', async () => {
    expect((await run(['help', 'decode'])).out).toBe((await run(['decode', '--help'])).out);
  });

  it('the global help documents every exit code', async () => {
    const { out } = await run(['--help']);
    expect(out.replace(/\s+/g, ' ')).toMatch(
      /Exit status: 0 success; 1 the run failed or its input was bad .*; 2 usage error; 70 internal error \(a bug in iommu-lab/,
    );
  });
});

describe('declarations', () => {
  it('no command redefines a global short option or declares an option twice', () => {
    const globalShorts = GLOBAL_OPTIONS.flatMap((g) => (g.short ? [g.short] : []));
    for (const c of commands) {
      const names = c.options.map((o) => o.name);
      expect(new Set(names).size, c.name).toBe(names.length);
      for (const o of c.options) expect(globalShorts, `${c.name} --${o.name}`).not.toContain(o.short);
      for (const o of c.options) if (o.choices && o.default) expect(o.choices).toContain(o.default);
    }
  });

  it('--help and --version load nothing of the model: the CLI front imports none of it statically', () => {
    // Follow the static, non-type imports from main.ts; commands' implementations are dynamic imports.
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^import\s+(?!type\b)[^'";]*?from\s+'(\.[^']+)'/gm)) {
        visit(resolve(dirname(file), m[1]!));
      }
    };
    visit(join(root, 'src/tools/cli/main.ts'));
    const files = [...seen].map((f) => f.slice(root.length + 1)).sort();
    expect(files).toContain('src/tools/cli/commands.ts');
    expect(files.filter((f) => !/^src\/(tools\/cli\/[a-z-]+\.ts|version\.ts)$/.test(f))).toEqual([]);
    expect(files).not.toContain('src/tools/cli/run-machine.ts');
    for (const c of commands) expect(files).not.toContain(`src/tools/cli/${c.name}.ts`);
  });
});

describe('global options', () => {
  it('go anywhere on the line, before or after the command and its arguments', async () => {
    const a = await run(['--seed', '7', '--json', 'demo', 'basic']);
    const b = await run(['demo', 'basic', '--json', '--seed=7']);
    const c = await run(['--json', 'demo', '--seed', '7', 'basic']);
    expect(a.rc).toBe(0);
    expect(b.out).toBe(a.out);
    expect(c.out).toBe(a.out);
  });

  it.each([
    [['decode', '--trace', 'f.json', 'ste', '1'], /--trace does not apply to decode: it produces no trace/],
    [['--trace', 'f.json', 'decode', 'ste', '1'], /--trace does not apply to decode/],
    [['decode', 'ste', '1', '--seed', '3'], /--seed does not apply to decode/],
    [
      ['--log', 'kernel.log', 'decode'],
      /--log before the command name is the global option .* decode takes none: it writes no log\. For decode's own --log, put it after 'decode'/,
    ],
  ])(
    'that mean nothing to the command are refused (exit 2), and no file is written: %j',
    async (argv, msg) => {
      const r = await run(argv, { 'kernel.log': 'x' });
      expect([r.rc, r.out, r.written.size]).toEqual([2, '', 0]);
      expect(r.err).toMatch(msg);
    },
  );

  it('--version wins anywhere, and loads no command', async () => {
    const v = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    for (const argv of [['--version'], ['-V'], ['demo', '--version'], ['decode', 'bogus', '-V']]) {
      const r = await run(argv);
      expect([r.rc, r.out]).toEqual([0, v]);
    }
  });
});

describe('usage errors: exit 2 and a message that says what to fix', () => {
  it.each([
    [[], /no command given/],
    [['frobnicate'], /unknown command 'frobnicate'\. Commands: demo, run, report, boot, decode/],
    [['--all', 'decode'], /unknown option '--all' \(a command's own options go after its name\)/],
    [['demo', '--bogus'], /unknown option '--bogus' for demo/],
    [['demo', '--seed'], /--seed needs a value/],
    [
      ['demo', '--seed', '--json'],
      /--seed needs a value \(for one that starts with '-', write --seed=-VALUE\)/,
    ],
    [['demo', '--json=yes'], /--json takes no value/],
    [['demo', '--seed', '-1'], /--seed needs a value/],
    [['demo', '--seed=99999999999'], /--seed needs an integer between 0 and 4294967295/],
    [['boot', '--iommu-policy=nope'], /--iommu-policy takes linux, strict, bypass \(got 'nope'\)/],
    [
      ['boot', '--timeout', '-1'],
      /--timeout needs a value \(for one that starts with '-', write --timeout=-VALUE\)/,
    ],
    [['boot', 'a.dts', 'b.dts'], /unexpected argument 'b\.dts' \(boot takes at most 1\)/],
    [['demo', 'basic', '--trace', 'same.json', '--log', 'same.json'], /--trace and --log name the same file/],
    [['demo', '--trace', '-'], /--trace writes a file, not standard output/],
    [['demo', '--log='], /--log needs a file name/],
    [['help', 'demo', 'boot'], /help takes one command name/],
  ])('%j', async (argv, msg) => {
    const r = await run(argv);
    expect([r.rc, r.out, r.written.size]).toEqual([2, '', 0]);
    expect(r.err).toMatch(msg);
    expect(r.err).toMatch(/Try 'iommu-lab (\w+ )?--help'\./);
  });

  it('a command ends with 1 on bad input, the same code for each', async () => {
    const boot = await run(['boot', 'missing.dtb']);
    const decode = await run(['decode', '--log', 'missing.log']);
    expect([boot.rc, decode.rc]).toEqual([1, 1]);
    expect(boot.err).toMatch(/cannot read missing\.dtb/);
    expect(decode.err).toMatch(/cannot read missing\.log/);
  });
});
