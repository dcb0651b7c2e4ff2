/**
 * The two fault demos through the CLI (bundled scenarios, run as 'iommu-lab run' runs a user's):
 * they behave as designed, are deterministic for a seed, and their --json result lists faults
 * and responses with virtual times.
 */
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';

async function demo(name: string, ...flags: string[]) {
  const stdout: string[] = [];
  const io: CliIo = {
    out: (s) => stdout.push(s),
    err: (s) => stdout.push(`ERR ${s}`),
    readFile: async () => new Uint8Array(),
    readStdin: async () => '',
    writeFile: async () => {},
  };
  const rc = await main(['demo', name, ...flags], io);
  return { rc, text: stdout.join('\n') };
}

describe('fault demos', () => {
  it('gpu-crash-dump: snapshot while stalled, abort, thousands of suppressed faults; deterministic --json', async () => {
    const a = await demo('gpu-crash-dump', '--json', '--seed', '5');
    expect(a.rc).toBe(0);
    const run = JSON.parse(a.text);
    expect(run).toMatchObject({ scenario: 'gpu-crash-dump', seed: 5, ok: true, bugs: [] });
    const r = run.result;
    expect(r.snapshot.stalledAtSnapshot).toBeGreaterThan(0);
    expect(r.snapshot.registers.FAULT_ADDR).toBe(r.badPointer);
    expect(r.snapshot.ring.find((x: { current: boolean }) => x.current).command).toMatch(/^FILL dst=/);
    expect(r.handlerCalls).toBe(1);
    expect(r.suppressed).toBeGreaterThanOrEqual(4000);
    expect(r.faults.length).toBe(r.faultsReported);
    expect(r.responseList.length).toBe(r.faultsReported);
    const first = r.responseList.find((x: { by: string }) => x.by === 'handler');
    expect(first).toMatchObject({ code: 'INVALID', latencyNs: 20_000 });
    expect(r.faults[0]).toMatchObject({ type: 'page-request', outcome: 'delivered', t: expect.any(Number) });
    expect(r.stalledAfter).toBe(0);
    const b = await demo('gpu-crash-dump', '--json', '--seed', '5');
    expect(b.text).toBe(a.text);
    const text = await demo('gpu-crash-dump', '--seed', '5');
    expect(text.text).toMatch(
      /crash dump \(taken at \d+ ns from a workqueue, \d+ transaction\(s\) stalled\)/,
    );
    expect(text.text).toMatch(/follow-on faults suppressed/);
  });

  it('pri: each group mapped on demand and answered; the device completes; deterministic --json', async () => {
    const a = await demo('pri', '--json', '--seed', '9');
    expect(a.rc).toBe(0);
    const run = JSON.parse(a.text);
    expect(run).toMatchObject({ scenario: 'pri', seed: 9, ok: true, bugs: [] });
    const r = run.result;
    expect(r.groups).toHaveLength(8);
    expect(
      r.groups.slice(0, 7).every((g: { response: { code: string } }) => g.response.code === 'SUCCESS'),
    ).toBe(true);
    expect(r.groups[4].response.pasid).toBe(1); // PASID 1 groups answered with the PASID
    expect(r.groups[0].response.pasid).toBeNull();
    expect(r.groups[7].response.code).toBe('INVALID');
    expect(r.transfers.map((t: { ok: boolean }) => t.ok)).toEqual([true, true, false]);
    for (const g of r.groups) expect(g.response.t).toBeGreaterThanOrEqual(g.fault.t);
    const b = await demo('pri', '--json', '--seed', '9');
    expect(b.text).toBe(a.text);
    const text = await demo('pri');
    expect(text.rc).toBe(0);
    expect(text.text).toMatch(/SUCCESS pasid 1/);
  });
});
