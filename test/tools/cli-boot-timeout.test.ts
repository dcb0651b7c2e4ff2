// boot --timeout is bounded so that virtual time stays exact (below 2^53 ns): out-of-range values
// are usage errors (exit 2) with a message that names the bound, never an internal error.
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

const io = fakeIo;

describe('boot --timeout', () => {
  it.each(['1e300', '1e7', 'Infinity', '-2', 'NaN', '', ' '])(
    'refuses --timeout=%j with exit 2',
    async (v) => {
      const t = io();
      expect(await main(['boot', `--timeout=${v}`, '--json'], t)).toBe(2);
      expect(t.stderr.join('\n')).toMatch(/--timeout .*(1000000|-1)/);
      expect(t.stdout).toEqual([]);
    },
  );

  it('takes the largest allowed timeout, and the deferred-probe timer fires at it', async () => {
    const t = io();
    expect(await main(['boot', '--timeout', '1000000', '--json'], t)).toBe(0);
    const r = JSON.parse(t.stdout.join('\n'));
    expect(r.probeTimedOut).toBe(true);
    expect(r.virtualTimeNs).toBeGreaterThanOrEqual(1e15);
    expect(r.virtualTimeNs).toBeLessThan(1e15 + 1e6);
    expect(Number.isSafeInteger(r.virtualTimeNs)).toBe(true);
  });
});
