// The CLI never loses a user's file: --trace / --log files are touched only when the run
// writes them, in one step, and a failing write is a clear error (exit 1), not a crash.
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultIo, main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';

/** The real file system, with stdout and stderr captured. */
function fsIo(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { ...defaultIo(), stdout, stderr, out: (s) => stdout.push(s), err: (s) => stderr.push(s) };
}

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'iommu-lab-out-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('CLI output files', () => {
  it.each([
    ['--log FILE before decode (decode writes no log)', ['--log', '@', 'decode']],
    ['--trace FILE with a bad boot option', ['--trace', '@', 'boot', '--bogus']],
    ['--trace FILE with an unknown demo', ['demo', 'nope', '--trace', '@']],
    ['--log FILE with a bad --seed', ['--log', '@', '--seed', 'x', 'demo']],
  ])('a usage error leaves the file as it was: %s', async (_what, argv) => {
    const file = join(dir, 'precious.txt');
    writeFileSync(file, 'the user kept this\n');
    const t = fsIo();
    expect(
      await main(
        argv.map((a) => (a === '@' ? file : a)),
        t,
      ),
    ).toBe(2);
    expect(t.stderr.join('\n')).not.toBe('');
    expect(readFileSync(file, 'utf8')).toBe('the user kept this\n');
    expect(readdirSync(dir)).toEqual(['precious.txt']);
  });

  it('a run writes its files in one step and leaves no temporary file behind', async () => {
    const trace = join(dir, 'out.json');
    const log = join(dir, 'run.log');
    writeFileSync(trace, 'old');
    const t = fsIo();
    expect(await main(['demo', 'basic', '--trace', trace, '--log', log], t)).toBe(0);
    expect(JSON.parse(readFileSync(trace, 'utf8')).traceEvents.length).toBeGreaterThan(3);
    expect(readFileSync(log, 'utf8')).toMatch(/demo: /);
    expect(readdirSync(dir).sort()).toEqual(['out.json', 'run.log']);
  });

  it.runIf(existsSync('/dev/full'))(
    'a write that fails after the run (--trace /dev/full) is a clear error, exit 1',
    async () => {
      const t = fsIo();
      expect(await main(['demo', 'basic', '--trace', '/dev/full'], t)).toBe(1);
      const err = t.stderr.join('\n');
      expect(err).toMatch(/--trace: cannot write \/dev\/full: .*(ENOSPC|no space)/i);
      expect(err).not.toMatch(/internal error|\n\s+at /);
    },
  );

  it('an output path that cannot be written fails before the run (exit 1), and nothing runs', async () => {
    for (const [path, why] of [
      [join(dir, 'no/such/dir/x.json'), /ENOENT/],
      [dir, /is a directory/],
    ] as const) {
      const t = fsIo();
      expect(await main(['demo', 'basic', '--trace', path], t)).toBe(1);
      expect(t.stderr.join('\n')).toMatch(/--trace: cannot write /);
      expect(t.stderr.join('\n')).toMatch(why);
      expect(t.stdout).toEqual([]);
    }
  });

  it('writes through a symbolic link (the link stays) and keeps the permissions of the file it replaces', async () => {
    mkdirSync(join(dir, 'real'));
    const real = join(dir, 'real/run.log');
    writeFileSync(real, 'old\n');
    chmodSync(real, 0o640);
    symlinkSync(real, join(dir, 'link.log'));
    const t = fsIo();
    expect(await main(['demo', 'basic', '--log', join(dir, 'link.log')], t)).toBe(0);
    expect(lstatSync(join(dir, 'link.log')).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toMatch(/demo: /);
    expect(statSync(real).mode & 0o777).toBe(0o640);
    expect(readdirSync(join(dir, 'real'))).toEqual(['run.log']);
  });

  it.runIf(existsSync('/dev/null'))(
    'writes a device such as /dev/null in place, never renaming over it',
    async () => {
      const t = fsIo();
      expect(await main(['demo', 'basic', '--trace', '/dev/null'], t)).toBe(0);
      expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
    },
  );
});
