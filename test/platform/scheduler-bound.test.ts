// Virtual time is a Number of nanoseconds: exact only below 2^53 ns (about 104 days). The
// scheduler refuses to go past it instead of silently rounding event times.
import { describe, expect, it } from 'vitest';
import { MAX_VIRTUAL_NS, Scheduler } from '../../src/platform/scheduler.ts';

describe('scheduler virtual-time bound', () => {
  it('is 2^53 - 1 ns, the last time at which every nanosecond is distinct', () => {
    expect(MAX_VIRTUAL_NS).toBe(2 ** 53 - 1);
    expect(MAX_VIRTUAL_NS + 1 === MAX_VIRTUAL_NS + 2).toBe(true); // past it, 1 ns steps vanish
  });

  it('refuses an event past the bound, by delay or by absolute time, and keeps its state', () => {
    const s = new Scheduler();
    s.runForSync(10);
    s.schedule(1000, () => {});
    expect(() => s.schedule(MAX_VIRTUAL_NS, () => {}, 'far')).toThrow(/2\^53 ns/);
    expect(() => s.schedule(1e300, () => {})).toThrow(RangeError);
    expect(() => s.at(2 ** 53, () => {})).toThrow(/2\^53 ns/);
    expect(s.pending).toBe(1);
    // the bound itself is still a valid time
    let ran = 0;
    s.at(MAX_VIRTUAL_NS, () => ran++);
    s.runUntilIdleSync();
    expect([ran, s.now]).toEqual([1, MAX_VIRTUAL_NS]);
  });

  it('refuses to run the clock past the bound', async () => {
    const s = new Scheduler();
    s.runForSync(5);
    expect(() => s.runForSync(MAX_VIRTUAL_NS)).toThrow(/2\^53 ns/);
    await expect(s.runFor(1e300)).rejects.toThrow(/2\^53 ns/);
    expect(s.now).toBe(5);
    // a huge timeout on an empty queue waits "forever": the clock does not jump past the bound
    expect(await s.runUntil(() => false, 1e300)).toBe(false);
    expect(s.now).toBe(5);
  });
});
