import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { JsonLinesSink, Machine, Scheduler } from '../../src/platform/index.ts';

/** A small random workload: timers that spawn timers, with delays drawn from the machine's PRNG. */
async function runWorkload(seed: number): Promise<string> {
  const m = new Machine({ seed });
  const lines: string[] = [];
  m.trace.addSink(new JsonLinesSink((l) => lines.push(l)));
  let budget = 300;
  const tick = (id: number) => {
    m.trace.emit('wl', 'tick', `timer ${id}`, { id, r: m.rng.below(1000) });
    if (budget-- > 0) {
      const n = 1 + m.rng.below(2);
      for (let i = 0; i < n; i++) m.sched.schedule(m.rng.below(5000), () => tick(id * 2 + i), `t${id}`);
    }
  };
  m.sched.schedule(0, () => tick(1));
  m.exec.spawn('sleeper', async () => {
    for (let i = 0; i < 20; i++) {
      await m.exec.sleep(1000 + m.rng.below(3000));
      m.trace.emit('wl', 'woke', `sleeper ${i}`, { i });
    }
  });
  await m.sched.runUntilIdle();
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

describe('scheduler', () => {
  it('runs events in time order, ties in scheduling order', () => {
    const s = new Scheduler();
    const order: string[] = [];
    s.schedule(10, () => order.push('b'));
    s.schedule(5, () => order.push('a'));
    s.schedule(10, () => order.push('c'));
    s.schedule(0, () => s.schedule(10, () => order.push('d')));
    s.runUntilIdleSync();
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    expect(s.now).toBe(10);
  });

  it('cancels, runs for a duration, and rejects bad delays', () => {
    const s = new Scheduler();
    const hits: number[] = [];
    const id = s.schedule(50, () => hits.push(50));
    s.schedule(100, () => hits.push(100));
    s.schedule(300, () => hits.push(300));
    expect(s.cancel(id)).toBe(true);
    expect(s.cancel(id)).toBe(false);
    s.runForSync(200);
    expect(hits).toEqual([100]);
    expect(s.now).toBe(200);
    expect(() => s.schedule(-1, () => {})).toThrow(/bad delay/);
    expect(s.pending).toBe(1);
  });

  it('time never runs backwards when code inside a run spins the clock further (a kernel busy-wait)', async () => {
    const s = new Scheduler();
    const seen: number[] = [];
    // an event that busy-waits 1 ms, and async code woken inside runFor that does the same
    s.schedule(10, () => s.runForSync(1_000_000));
    s.schedule(20, () => seen.push(s.now));
    s.runForSync(100);
    expect(s.now).toBe(1_000_010);
    await s.runFor(50);
    expect(s.now).toBe(1_000_060);
    let woke = false;
    s.schedule(10, () => {
      s.wokeAsync = true;
      void Promise.resolve().then(() => {
        woke = true;
        s.runForSync(5_000_000);
      });
    });
    await s.runFor(100);
    expect(woke).toBe(true);
    expect(s.now).toBe(6_000_070);
    expect(await s.runUntil(() => false, 10)).toBe(false);
    expect(s.now).toBe(6_000_080);
    expect(seen).toEqual([20]); // the event at 20 ran inside the spin, at its own time
  });

  it('cancels in O(1): stale handles stay invalid after their slot is reused; cancelled timers leave the heap', () => {
    const s = new Scheduler();
    const a = s.schedule(10, () => {});
    s.runUntilIdleSync();
    const b = s.schedule(10, () => {}); // reuses a's slot
    expect(s.cancel(a)).toBe(false);
    expect(s.cancel(0)).toBe(false);
    expect(s.cancel(-1)).toBe(false);
    expect(s.cancel(1.5)).toBe(false);
    expect(s.cancel(b)).toBe(true);
    // 100,000 long timers, each cancelled soon after (a response deadline that is met)
    const fired: number[] = [];
    let maxHeap = 0;
    let cancelled = 0;
    for (let i = 0; i < 100_000; i++) {
      const t = s.schedule(1_000_000, () => fired.push(i));
      s.schedule(1, () => {});
      s.runForSync(1);
      if (s.cancel(t)) cancelled++;
      maxHeap = Math.max(maxHeap, s.heapSize);
    }
    expect(cancelled).toBe(100_000);
    expect(maxHeap).toBeLessThanOrEqual(66); // never more than 2 x pending (0..1) + 64
    s.schedule(5, () => fired.push(-1));
    s.runUntilIdleSync();
    expect(fired).toEqual([-1]);
    expect(s.pending).toBe(0);
    expect(s.heapSize).toBe(0);
  });

  it('same seed, same trace (hash); different seeds differ', async () => {
    const a = await runWorkload(7);
    const b = await runWorkload(7);
    const c = await runWorkload(8);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  it('lets async kernel code run at the virtual time it was woken', async () => {
    const m = new Machine();
    const seen: number[] = [];
    m.exec.spawn('t', async () => {
      seen.push(m.sched.now);
      await m.exec.sleep(1500);
      seen.push(m.sched.now);
      await m.exec.sleep(500);
      seen.push(m.sched.now);
    });
    m.sched.schedule(10_000, () => seen.push(-m.sched.now));
    await m.sched.runUntilIdle();
    expect(seen).toEqual([0, 1500, 2000, -10_000]);
  });
});
