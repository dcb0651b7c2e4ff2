/**
 * The sweep manifests the README shows (docs/sweeps: a GitHub Actions matrix and a Kubernetes
 * Indexed Job) hold command lines that iommu-lab accepts, and their shards cover the campaign's
 * seeds exactly once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';

const root = join(import.meta.dirname, '../..');
const read = (f: string) => readFileSync(join(root, f), 'utf8');

/** Run `argv` (after "npx iommu-lab") as a dry run from the repository root. */
async function dryRun(
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    readFile: async () => new Uint8Array(),
    readStdin: async () => '',
    writeFile: async () => {
      throw new Error('a dry run writes nothing');
    },
  };
  const saved = { ...process.env };
  const cwd = process.cwd();
  Object.assign(process.env, env);
  process.chdir(root);
  try {
    const code = await main([...argv, '--dry-run'], io);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    process.chdir(cwd);
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
  }
}

const words = (line: string) => line.trim().split(/\s+/);
const coverage = (outs: string[]) =>
  outs.map((o) => Number(/over (\d+) seed/.exec(o)?.[1] ?? Number.NaN)).reduce((a, b) => a + b, 0);

describe('sweep manifests in docs/sweeps', () => {
  it('the GitHub Actions matrix: every shard parses, and together they cover 1..100000', async () => {
    const y = read('docs/sweeps/github-actions.yml');
    const shards = /shard: \[([\d, ]+)\]/
      .exec(y)![1]!
      .split(',')
      .map((x) => x.trim());
    const run = /- run: npx iommu-lab (run .*)$/m.exec(y)![1]!;
    const outs: string[] = [];
    for (const s of shards) {
      const r = await dryRun(words(run.replace(/\$\{\{ matrix\.shard \}\}/g, s)));
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      outs.push(r.out);
    }
    expect(coverage(outs)).toBe(100_000);
    expect(/npx iommu-lab (report .*)$/m.exec(y)).not.toBeNull();
  });

  it('the Kubernetes Indexed Job: the command parses for every completion index', async () => {
    const y = read('docs/sweeps/k8s-indexed-job.yaml');
    const completions = Number(/completions: (\d+)/.exec(y)![1]);
    const cmd = /- npx iommu-lab (run .*)$/m.exec(y)![1]!;
    expect(y).toMatch(/completionMode: Indexed/);
    const outs: string[] = [];
    for (let k = 0; k < completions; k++) {
      const line = cmd.replaceAll('$JOB_COMPLETION_INDEX', String(k));
      const r = await dryRun(words(line), { JOB_COMPLETION_INDEX: String(k) });
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`shard ${k + 1}/${completions} of 100000`));
      outs.push(r.out);
    }
    expect(coverage(outs)).toBe(100_000);
  });
});
