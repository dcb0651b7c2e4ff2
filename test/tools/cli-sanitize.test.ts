/**
 * `--sanitize[=report|panic]` on demo, run and boot, through the CLI's main(): the grammar
 * (alone it means report; a bad mode is a usage error), the reports printed at the end, the JSON
 * listing, panic stopping the run at the first report, and boot's report.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';

const example = (f: string) => join(import.meta.dirname, '../../examples', f);

function io(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (s) => stdout.push(s),
    err: (s) => stderr.push(s),
    readFile: async () => new Uint8Array(),
    readStdin: async () => '',
    writeFile: async () => {},
  };
}

async function cli(args: string[]) {
  const t = io();
  const code = await main(args, t);
  return { code, out: t.stdout.join('\n'), err: t.stderr.join('\n') };
}

describe('--sanitize', () => {
  it('run --sanitize (report mode) prints the report at the end and fails the run', async () => {
    const r = await cli(['run', example('teardown-missing-tlbi.mjs'), '--sanitize']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL teardown-missing-tlbi \(seed 1\) at virtual time \d+ ns: sanitizer/);
    expect(r.out).toMatch(
      /DMA sanitizer \(report\): 1 violation\(s\)\nBUG: DMA use-after-free: \/soc\/nic@210 write of 16 bytes at PA 0x/,
    );
    expect(r.out).toMatch(/missing: no TLBI for IOVA 0x[0-9a-f]+ ASID \d+ between the unmap/);
    expect(r.out).toMatch(/reproduce: iommu-lab run .*teardown-missing-tlbi\.mjs --sanitize=report --seed 1/);
  });

  it('run --sanitize=panic stops the run at the first report; --json lists the reports', async () => {
    const r = await cli(['run', example('teardown-missing-tlbi.mjs'), '--sanitize=panic', '--json']);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out);
    expect(j.error.kind).toBe('sanitizer');
    expect(j.error.message).toMatch(/^DMA sanitizer panic:\nBUG: DMA use-after-free/);
    expect(j.sanitizer.mode).toBe('panic');
    expect(j.sanitizer.reports).toHaveLength(1);
    expect(j.sanitizer.reports[0]).toMatchObject({
      kind: 'use-after-free',
      device: '/soc/nic@210',
      sid: 0x210,
      origin: 'TLB entry',
    });
    // stopped there: the scenario's own later assertions never ran
    expect(j.result).toBeNull();
  });

  it('a correct scenario passes with the sanitizer and says so', async () => {
    const r = await cli(['run', example('map-dma-unmap.mjs'), '--sanitize=report']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/DMA sanitizer \(report\): no violations/);
  });

  it('demo takes it too; a bad mode is a usage error', async () => {
    const d = await cli(['demo', '--sanitize']);
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/DMA sanitizer \(report\): no violations/);
    const bad = await cli(['demo', '--sanitize=loud']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--sanitize takes off, report, panic \(got 'loud'\)/);
  });

  it('boot --sanitize reports in text and adds the findings to the JSON report', async () => {
    const t = await cli(['boot', '--sanitize']);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/DMA sanitizer \(report\): no violations/);
    const j = await cli(['boot', '--sanitize', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out).sanitizer).toEqual({ mode: 'report', reports: [] });
  });
});
