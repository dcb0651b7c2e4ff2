import { describe, expect, it } from 'vitest';
import { Completion, IRQ_HANDLED, IRQ_WAKE_THREAD, Machine, Mutex } from '../../src/platform/index.ts';

describe('execution contexts', () => {
  it('might_sleep fires for a sleep inside a hard-IRQ handler, naming both stacks', async () => {
    const m = new Machine();
    m.irq.configure(42, 'edge');
    m.irq.requestIrq(42, 'bad-driver', () => {
      void m.exec.sleep(1000, 'msleep');
      return IRQ_HANDLED;
    });
    m.irq.pulse(42);
    await m.sched.runUntilIdle();
    expect(m.bugs).toHaveLength(1);
    const bug = m.bugs[0]!;
    expect(bug.kind).toBe('might-sleep');
    expect(bug.message).toMatch(
      /sleeping function called from invalid context: msleep in hardirq context "irq 42 \(bad-driver\)"/,
    );
    expect(bug.stacks.map((s) => s.label)).toEqual([
      'sleeping call (msleep)',
      'hardirq context entered: irq 42 (bad-driver)',
    ]);
    expect(bug.stacks[0]!.stack).toMatch(/exec\.test\.ts/);
    expect(bug.stacks[1]!.stack).toMatch(/exec\.test\.ts/); // where the handler was requested
  });

  it('does not fire for sleeps in a workqueue, a threaded handler, or process context', async () => {
    const m = new Machine();
    const wq = m.exec.createWorkqueue('events', { ordered: true });
    const done: string[] = [];
    m.irq.configure(7, 'edge');
    m.irq.requestThreadedIrq(
      7,
      'good-driver',
      () => {
        wq.queueFn('w', async () => {
          await m.exec.sleep(1000);
          done.push(`work@${m.sched.now}`);
        });
        return IRQ_WAKE_THREAD;
      },
      async () => {
        await m.exec.sleep(200);
        done.push(`thread@${m.sched.now}`);
      },
    );
    m.exec.spawn('proc', async () => {
      await m.exec.sleep(10);
      m.irq.pulse(7);
    });
    await m.sched.runUntilIdle();
    expect(m.bugs).toEqual([]);
    expect(done).toEqual(['thread@310', 'work@1110']);
  });

  it('catches sleeping inside a spinlocked section', async () => {
    const m = new Machine();
    const mu = new Mutex(m.exec, 'cfg_lock');
    m.exec.spawn('t', async () => {
      m.exec.atomic('spin_lock(&smmu->lock)', () => {
        void mu.lock();
      });
    });
    await m.sched.runUntilIdle();
    expect(m.bugs.map((b) => b.kind)).toEqual(['might-sleep']);
    expect(m.bugs[0]!.message).toMatch(/mutex_lock\(cfg_lock\) in atomic context/);
    // both stacks: the sleeping call, and where the spinlocked section was entered
    const stacks = m.bugs[0]!.stacks;
    expect(stacks.map((s) => s.label)).toEqual([
      'sleeping call (mutex_lock(cfg_lock))',
      'atomic context entered: spin_lock(&smmu->lock)',
    ]);
    expect(stacks[0]!.stack).toMatch(/Mutex\.lock[\s\S]*exec\.test\.ts/);
    expect(stacks[1]!.stack).toMatch(/exec\.test\.ts/);
    expect(stacks[1]!.stack).not.toMatch(/Mutex\.lock/);
  });

  it('a spinlocked section that busy-waits and then sleeps is still atomic after the wait, with its entry stack', async () => {
    const m = new Machine();
    const mu = new Mutex(m.exec, 'cfg_lock');
    m.exec.spawn('t', async () => {
      const p = m.exec.atomic('spin_lock(&lock)', async () => {
        await m.exec.delay(100); // udelay: allowed
        expect(m.exec.current().kind).toBe('atomic');
        await mu.lock(); // a sleep after the wait: a bug
      });
      await p;
    });
    await m.sched.runUntilIdle();
    expect(m.bugs.map((b) => b.kind)).toEqual(['might-sleep']);
    const stacks = m.bugs[0]!.stacks;
    expect(stacks[1]!.label).toBe('atomic context entered: spin_lock(&lock)');
    expect(stacks[1]!.stack).toMatch(/exec\.test\.ts/);
  });

  it('the current context follows each task across its waits', async () => {
    const m = new Machine();
    const seen: Array<[string, string]> = [];
    const owners: Array<[string, string | null]> = [];
    const mu = new Mutex(m.exec, 'm');
    const c = new Completion(m.exec);
    const body = (me: string) => async () => {
      for (let i = 0; i < 3; i++) {
        await m.exec.sleep(100 * (i + 1));
        seen.push([me, m.exec.current().name]);
        await mu.with(async () => {
          await m.exec.delay(10);
          seen.push([me, m.exec.current().name]);
          owners.push([me, mu.owner]);
        });
      }
      if (me === 'a') c.complete();
      else await c.wait();
      await Promise.resolve(); // a wait that is no kernel primitive keeps the context too
      seen.push([me, m.exec.current().name]);
    };
    m.exec.spawn('a', body('a'));
    m.exec.spawn('b', body('b'));
    m.exec.createWorkqueue('events').queueFn('w', async () => {
      await m.exec.sleep(50);
      seen.push(['events/w', m.exec.current().name]);
    });
    await m.sched.runUntilIdle();
    expect(m.bugs).toEqual([]);
    expect(seen).toHaveLength(15);
    for (const [me, name] of seen) expect(name).toBe(me);
    for (const [me, owner] of owners) expect(owner).toBe(me);
  });

  it('a task awaiting a promise a device model resolves from an event goes on at that virtual time', async () => {
    const m = new Machine();
    const log: Array<[string, number, string]> = [];
    /** A device that completes 500 ns after it is started, calling back from a scheduler event. */
    const device = (done: () => void) => m.sched.schedule(500, done, 'device done');
    m.exec.spawn('scenario', async () => {
      // through exec.park the task goes on in its own context
      await m.exec.park<void>((wake) => device(() => wake()));
      log.push(['parked', m.sched.now, m.exec.current().name]);
      // a plain promise: resolve, and tell the scheduler continuations are pending; the task
      // goes on at the right time in process context (as the boot context: the scheduler
      // cannot tell whose promise it was)
      await new Promise<void>((resolve) =>
        device(() => {
          m.sched.wokeAsync = true;
          resolve();
        }),
      );
      log.push(['plain', m.sched.now, m.exec.current().kind]);
      await m.exec.sleep(100);
      log.push(['slept', m.sched.now, m.exec.current().kind]);
    });
    await m.sched.runUntilIdle();
    expect(log).toEqual([
      ['parked', 500, 'scenario'],
      ['plain', 1000, 'process'],
      ['slept', 1100, 'process'],
    ]);
    expect(m.bugs).toEqual([]);
  });

  it('ordered workqueues run items one at a time; unordered ones interleave', async () => {
    const m = new Machine();
    const log: string[] = [];
    const item = (wqName: string, n: string) => async () => {
      log.push(`${wqName}:${n}+${m.sched.now}`);
      await m.exec.sleep(100);
      log.push(`${wqName}:${n}-${m.sched.now}`);
    };
    const ord = m.exec.createWorkqueue('ord', { ordered: true });
    ord.queueFn('a', item('o', 'a'));
    ord.queueFn('b', item('o', 'b'));
    await m.sched.runUntilIdle();
    const un = m.exec.createWorkqueue('un');
    un.queueFn('a', item('u', 'a'));
    un.queueFn('b', item('u', 'b'));
    await m.sched.runUntilIdle();
    expect(log).toEqual([
      'o:a+0',
      'o:a-100',
      'o:b+100',
      'o:b-200',
      'u:a+200',
      'u:b+200',
      'u:a-300',
      'u:b-300',
    ]);
  });

  it('completions wake waiters and time out in virtual time; crashes are reported, not thrown', async () => {
    const m = new Machine();
    const c = new Completion(m.exec);
    const got: Array<[boolean, number]> = [];
    m.exec.spawn('w1', async () => void got.push([await c.waitTimeout(500), m.sched.now]));
    m.sched.schedule(200, () => c.complete());
    m.exec.spawn('w2', async () => {
      await m.exec.sleep(300);
      got.push([await c.waitTimeout(1000), m.sched.now]);
    });
    const t = m.exec.spawn('oops', async () => {
      throw new Error('NULL pointer dereference');
    });
    await m.sched.runUntilIdle();
    expect(got).toEqual([
      [true, 200],
      [false, 1300],
    ]);
    expect(t.finished).toBe(true);
    expect(m.bugs.map((b) => b.kind)).toEqual(['task-crash']);
  });
});
