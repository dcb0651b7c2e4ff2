/**
 * `iommu-lab run` and `iommu-lab report` through the CLI's main(), with the scenario on worker
 * threads as users get it: passing and failing scenarios, every kind of broken scenario file
 * (each ends with a clear message and no hang), sweeps whose per-seed results do not depend on
 * --jobs or --shard, and report merging shards.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';

const fx = (f: string) => join(import.meta.dirname, 'fixtures-run', f);

function io(): CliIo & { stdout: string[]; stderr: string[]; files: Map<string, string> } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const files = new Map<string, string>();
  return {
    stdout,
    stderr,
    files,
    out: (s) => stdout.push(s),
    err: (s) => stderr.push(s),
    readFile: async (p) => new TextEncoder().encode(files.get(p) ?? ''),
    readStdin: async () => '',
    writeFile: async (p, d) => void files.set(p, d),
  };
}

async function run(args: string[]) {
  const t = io();
  const code = await main(args, t);
  return { code, out: t.stdout.join('\n'), err: t.stderr.join('\n'), files: t.files, t };
}

describe('iommu-lab run', () => {
  it('runs a passing scenario (mjs and ts) and exits 0', async () => {
    const a = await run(['run', fx('pass.mjs'), '--seed', '5']);
    expect(a.err).toBe('');
    expect(a.out).toMatch(/PASS pass \(seed 5\)/);
    expect(a.code).toBe(0);
    const b = await run(['run', fx('typed.ts'), '--seed', '7', '--json']);
    expect(b.code).toBe(0);
    const j = JSON.parse(b.out);
    expect(j).toMatchObject({ scenario: 'typed', seed: 7, ok: true, result: { seed: 7 } });
    expect(j.events.length).toBeGreaterThan(10);
  });

  it('a failed assertion exits 1 with the message, virtual time, last log lines and a reproduction line', async () => {
    const r = await run(['run', fx('fail.mjs'), '--seed', '6']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL fail \(seed 6\) at virtual time \d+ ns: assertion/);
    expect(r.out).toMatch(/seed mod 3: expected 0 not to be 0/);
    expect(r.out).toMatch(/at .*fail\.mjs:\d+:\d+/);
    expect(r.out).toMatch(/last kernel log lines:[\s\S]*about to check seed 6/);
    expect(r.out).toMatch(/reproduce: iommu-lab run .*fail\.mjs --seed 6/);
  });

  it.each([
    ['syntax.mjs', /syntax\.mjs: cannot load: .*(SyntaxError|syntax error|Unexpected)/],
    ['nodefault.mjs', /no default export.*exports scenario/],
    ['throws-import.mjs', /cannot load: no board file here/],
    ['missing.mjs', /missing\.mjs: no such file/],
    ['pass.txt', /a scenario is a \.js, \.mjs or \.ts module/],
  ])('a broken file (%s) gets a clear error and exit 1', async (f, msg) => {
    const r = await run(['run', fx(f)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(msg);
    expect(r.err).not.toMatch(/internal error| {4}at /);
  });

  it('a scenario that throws, never ends in virtual time, blocks, or spins fails instead of hanging', async () => {
    const t = await run(['run', fx('throws-run.mjs')]);
    expect(t.code).toBe(1);
    expect(t.out).toMatch(/exception[\s\S]*TypeError: Cannot read properties of null/);
    const v = await run(['run', fx('forever-virtual.mjs'), '--virtual-time-limit', '20s']);
    expect(v.code).toBe(1);
    expect(v.out).toMatch(
      /virtual-time-limit[\s\S]*did not finish within the virtual-time limit of 20000000000 ns/,
    );
    const b = await run(['run', fx('blocked.mjs')]);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(
      /blocked[\s\S]*never finishes: it waits for something that nothing left in the machine will do/,
    );
    const w = await run(['run', fx('forever-wall.mjs'), '--wall-time-limit', '3s']);
    expect(w.code).toBe(1);
    expect(w.out).toMatch(/wall-clock-limit[\s\S]*did not finish within the wall-clock limit of 3 s/);
  });

  it('--inject turns a driver bug on: the teardown example, which expects a fault after unmap, then fails', async () => {
    const ex = join(import.meta.dirname, '..', '..', 'examples', 'map-dma-unmap.mjs');
    const good = await run(['run', ex, '--seed', '3']);
    expect(good.code).toBe(0);
    const bad = await run(['run', ex, '--seed', '3', '--inject', 'skip-tlbi']);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/FAIL map-dma-unmap \(seed 3\)/);
    expect(bad.out).toMatch(/reproduce: iommu-lab run .*map-dma-unmap\.mjs --inject skip-tlbi --seed 3/);
    const unknown = await run(['run', ex, '--inject', 'skip-everything']);
    expect(unknown.err).toMatch(
      /--inject: unknown injection "skip-everything" \(known: skip-tlbi, .*delay-completion, .*late-walk-flush, atc-inv-before-tlbi\)/,
    );
  });

  it('refuses bad options with exit 2', async () => {
    for (const args of [
      ['run'],
      ['run', fx('pass.mjs'), fx('fail.mjs')],
      ['run', fx('pass.mjs'), '--bogus'],
      ['run', fx('pass.mjs'), '--seeds', '5..1'],
      ['run', fx('pass.mjs'), '--seeds', '1..4', '--shard', '5/4'],
      ['run', fx('pass.mjs'), '--seeds', '1..4', '--jobs', '0'],
      ['run', fx('pass.mjs'), '--shard', '1/2'],
      ['run', fx('pass.mjs'), '--seeds', '1..4', '--out'],
      ['run', fx('pass.mjs'), '--virtual-time-limit', 'soon'],
      ['run', fx('pass.mjs'), '--inject', 'skip-tlbi,skip-everything'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(/iommu-lab run: /);
      expect(r.files.size).toBe(0);
    }
  });

  it('a sweep gives each seed the same result whatever --jobs and --shard, and report merges the shards', async () => {
    const seeds = '1..24';
    const one = await run(['run', fx('fail.mjs'), '--seeds', seeds, '--jobs', '1', '--out', 'one.jsonl']);
    expect(one.code).toBe(1);
    expect(one.out).toMatch(/fail: 24 of 24 seeds run: 16 passed, 8 failed/);
    expect(one.out).toMatch(
      /seed 3: assertion: seed mod 3[\s\S]*reproduce: iommu-lab run .*fail\.mjs --seed 3/,
    );
    const lines = (s: string) => s.trim().split('\n').slice(1); // without the header
    const byJobs = await run([
      'run',
      fx('fail.mjs'),
      '--seeds',
      seeds,
      '--jobs',
      '3',
      '--out',
      'three.jsonl',
    ]);
    expect(lines(byJobs.files.get('three.jsonl')!)).toEqual(lines(one.files.get('one.jsonl')!));

    const shards: string[] = [];
    const t = io();
    for (let i = 1; i <= 4; i++) {
      const code = await main(
        ['run', fx('fail.mjs'), '--seeds', seeds, '--shard', `${i}/4`, '--jobs', '2', '--out', `s${i}.jsonl`],
        t,
      );
      expect(code).toBe(1);
      shards.push(...lines(t.files.get(`s${i}.jsonl`)!));
    }
    const seedOf = (l: string) => JSON.parse(l).seed as number;
    expect(shards.map(seedOf).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect([...shards].sort((a, b) => seedOf(a) - seedOf(b))).toEqual(lines(one.files.get('one.jsonl')!));

    // report: all four shards = the whole campaign; three of them = seeds missing
    const rep = io();
    for (const [k, v] of t.files) rep.files.set(k, v);
    expect(await main(['report', 's1.jsonl', 's2.jsonl', 's3.jsonl', 's4.jsonl'], rep)).toBe(1);
    expect(rep.stdout.join('\n')).toMatch(/fail: 24 of 24 seeds run: 16 passed, 8 failed$/m);
    const part = io();
    for (const [k, v] of t.files) part.files.set(k, v);
    expect(await main(['report', 's1.jsonl', 's2.jsonl', 's3.jsonl', '--json'], part)).toBe(1);
    expect(JSON.parse(part.stdout.join('\n'))).toMatchObject({
      campaign: 24,
      results: 18,
      missing: 6,
      failed: 6,
    });
  });

  it('--shard auto/N takes its index from JOB_COMPLETION_INDEX', async () => {
    const prev = process.env.JOB_COMPLETION_INDEX;
    process.env.JOB_COMPLETION_INDEX = '2';
    try {
      const r = await run([
        'run',
        fx('pass.mjs'),
        '--seeds',
        '1..9',
        '--shard',
        'auto/3',
        '--out',
        'k.jsonl',
      ]);
      expect(r.code).toBe(0);
      const seeds = r.files
        .get('k.jsonl')!
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => JSON.parse(l).seed);
      expect(seeds).toEqual([3, 6, 9]);
    } finally {
      if (prev === undefined) delete process.env.JOB_COMPLETION_INDEX;
      else process.env.JOB_COMPLETION_INDEX = prev;
    }
  });
});
