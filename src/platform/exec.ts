/**
 * Execution contexts of the kernel model: process context, kernel threads, workqueues,
 * threaded IRQ handlers (all may sleep) and hard-IRQ handlers and spinlocked sections
 * (atomic: must not sleep).
 *
 * Kernel code is `async` where Linux code may sleep. The current context follows the code
 * across `await`s (AsyncLocalStorage), so a sleeping primitive called from a hard-IRQ
 * handler — even after an await inside it — is caught by `mightSleep` and reported with
 * both stacks, like Linux's "BUG: sleeping function called from invalid context".
 *
 * All waiting happens in virtual time: `sleep(ns)` is a scheduler event, completions and
 * mutexes wake waiters from scheduler events, and the scheduler's async run loops let the
 * woken code run before time moves on.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { type BugReport, type BugStack, captureStack } from './bugs.ts';
import type { Scheduler } from './scheduler.ts';

export type ContextKind = 'process' | 'workqueue' | 'threaded-irq' | 'hardirq' | 'atomic';

export interface ExecContext {
  readonly kind: ContextKind;
  readonly name: string;
  /** True in hard-IRQ handlers and spinlocked sections. */
  readonly atomic: boolean;
  /** Where this context was entered (hard IRQ: where the handler was requested). */
  readonly entryStack: string;
  readonly parent: ExecContext | null;
}

const BOOT: ExecContext = {
  kind: 'process',
  name: 'swapper/0 (boot)',
  atomic: false,
  entryStack: '',
  parent: null,
};

export interface Task {
  readonly name: string;
  readonly done: Promise<void>;
  finished: boolean;
  error: unknown;
}

export class Executor {
  private readonly als = new AsyncLocalStorage<ExecContext>();
  /** Capture a stack on every spin_lock-style atomic entry (costly; on by default). */
  captureAtomicStacks = true;

  constructor(
    readonly sched: Scheduler,
    private readonly report: (r: Omit<BugReport, 'time'>) => void,
  ) {}

  current(): ExecContext {
    return this.als.getStore() ?? BOOT;
  }

  inAtomic(): boolean {
    return this.current().atomic;
  }

  /**
   * Linux's might_sleep(): report a bug if called from atomic context. `what` names the
   * sleeping operation. Returns true if the check fired.
   */
  mightSleep(what: string): boolean {
    const ctx = this.current();
    if (!ctx.atomic) return false;
    const stacks: BugStack[] = [{ label: `sleeping call (${what})`, stack: captureStack(2) }];
    for (let c: ExecContext | null = ctx; c !== null; c = c.parent) {
      if (c.atomic) stacks.push({ label: `${c.kind} context entered: ${c.name}`, stack: c.entryStack });
    }
    this.report({
      kind: 'might-sleep',
      message: `BUG: sleeping function called from invalid context: ${what} in ${ctx.kind} context "${ctx.name}"`,
      stacks,
    });
    return true;
  }

  /** Run `fn` as a hard-IRQ handler (atomic). `entryStack` names where it was registered. */
  runHardIrq<T>(name: string, entryStack: string, fn: () => T): T {
    return this.als.run(this.enter('hardirq', name, true, entryStack), fn);
  }

  /** A spinlocked (atomic) section, e.g. `spin_lock_irqsave`. Synchronous code only. */
  atomic<T>(label: string, fn: () => T): T {
    const stack = this.captureAtomicStacks ? captureStack(2) : '(stack capture off)';
    return this.als.run(this.enter('atomic', label, true, stack), fn);
  }

  /** Run an async function in a sleepable context of `kind`, starting now (synchronously). */
  runIn(
    kind: Exclude<ContextKind, 'hardirq' | 'atomic'>,
    name: string,
    fn: () => Promise<void>,
  ): Promise<void> {
    const ctx = this.enter(kind, name, false, '');
    this.sched.wokeAsync = true;
    return this.als.run(ctx, fn);
  }

  /**
   * Start a kernel thread / process-context task at the current virtual time (as a scheduler
   * event). A task that throws is reported as a crash, never propagated into the scheduler.
   */
  spawn(name: string, fn: () => Promise<void>): Task {
    let resolve!: () => void;
    const task: Task = {
      name,
      done: new Promise<void>((r) => (resolve = r)),
      finished: false,
      error: undefined,
    };
    this.sched.schedule(
      0,
      () => {
        this.runIn('process', name, fn).then(
          () => {
            task.finished = true;
            this.sched.wokeAsync = true;
            resolve();
          },
          (err: unknown) => {
            task.finished = true;
            task.error = err;
            this.crash(name, err);
            resolve();
          },
        );
      },
      `spawn ${name}`,
    );
    return task;
  }

  /** Report an exception that escaped kernel code (an oops); the machine keeps running. */
  crash(where: string, err: unknown): void {
    this.report({
      kind: 'task-crash',
      message: `"${where}" crashed: ${err instanceof Error ? err.message : String(err)}`,
      stacks: [{ label: 'exception', stack: err instanceof Error ? (err.stack ?? '') : '' }],
    });
    this.sched.wokeAsync = true;
  }

  /** msleep/usleep_range: sleep `ns` of virtual time. */
  sleep(ns: number, what = 'msleep'): Promise<void> {
    this.mightSleep(what);
    return new Promise<void>((resolve) => {
      this.sched.schedule(
        ns,
        () => {
          this.sched.wokeAsync = true;
          resolve();
        },
        what,
      );
    });
  }

  /**
   * Busy-wait (udelay/ndelay, or a cpu_relax() polling loop): lets `ns` of virtual time pass
   * for this code path without sleeping, so it is allowed in atomic context.
   */
  delay(ns: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.sched.schedule(
        ns,
        () => {
          this.sched.wokeAsync = true;
          resolve();
        },
        'udelay',
      );
    });
  }

  createWorkqueue(name: string, opts: { ordered?: boolean; maxActive?: number } = {}): Workqueue {
    return new Workqueue(this, name, opts.ordered ? 1 : (opts.maxActive ?? 256));
  }

  private enter(kind: ContextKind, name: string, atomic: boolean, entryStack: string): ExecContext {
    const parent = this.als.getStore() ?? null;
    return { kind, name, atomic: atomic || (parent?.atomic ?? false), entryStack, parent };
  }
}

/** Linux's struct completion: one-shot (or counted) event that sleepers wait for. */
export class Completion {
  private count = 0;
  private waiters: Array<() => void> = [];

  constructor(private readonly exec: Executor) {}

  get done(): boolean {
    return this.count > 0;
  }

  /** Wake one waiter (or let the next wait pass). Callable from any context. */
  complete(): void {
    const w = this.waiters.shift();
    if (w) {
      this.exec.sched.wokeAsync = true;
      w();
    } else this.count++;
  }

  completeAll(): void {
    this.count = Number.POSITIVE_INFINITY;
    const ws = this.waiters;
    this.waiters = [];
    if (ws.length) this.exec.sched.wokeAsync = true;
    for (const w of ws) w();
  }

  reinit(): void {
    this.count = 0;
  }

  /** wait_for_completion (sleeps). */
  wait(): Promise<void> {
    this.exec.mightSleep('wait_for_completion');
    if (this.count > 0) {
      this.count--;
      return Promise.resolve();
    }
    return new Promise<void>((r) => this.waiters.push(r));
  }

  /** wait_for_completion_timeout: resolves true if completed, false on timeout. */
  waitTimeout(ns: number): Promise<boolean> {
    this.exec.mightSleep('wait_for_completion_timeout');
    if (this.count > 0) {
      this.count--;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const waiter = () => {
        if (settled) return;
        settled = true;
        this.exec.sched.cancel(timer);
        resolve(true);
      };
      const timer = this.exec.sched.schedule(
        ns,
        () => {
          if (settled) return;
          settled = true;
          this.waiters = this.waiters.filter((w) => w !== waiter);
          this.exec.sched.wokeAsync = true;
          resolve(false);
        },
        'completion timeout',
      );
      this.waiters.push(waiter);
    });
  }
}

/** A sleeping mutex (FIFO hand-off). */
export class Mutex {
  private locked = false;
  private waiters: Array<() => void> = [];
  owner: string | null = null;

  constructor(
    private readonly exec: Executor,
    readonly name = 'mutex',
  ) {}

  get isLocked(): boolean {
    return this.locked;
  }

  async lock(): Promise<void> {
    this.exec.mightSleep(`mutex_lock(${this.name})`);
    if (!this.locked) {
      this.locked = true;
      this.owner = this.exec.current().name;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
    this.owner = this.exec.current().name;
  }

  unlock(): void {
    const w = this.waiters.shift();
    if (w) {
      this.exec.sched.wokeAsync = true;
      w();
    } else {
      this.locked = false;
      this.owner = null;
    }
  }

  async with<T>(fn: () => Promise<T>): Promise<T> {
    await this.lock();
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }
}

/** A work item; queueing an item that is already pending is a no-op (returns false), as in Linux. */
export class Work {
  pending = false;
  constructor(
    readonly name: string,
    readonly fn: () => Promise<void> | void,
  ) {}
}

/**
 * A workqueue. Ordered queues run one item at a time in queueing order; unordered ones run
 * up to `maxActive` items concurrently (interleaved at their sleeps in virtual time).
 */
export class Workqueue {
  private items: Work[] = [];
  private active = 0;
  private idleWaiters: Array<() => void> = [];
  executed = 0;

  constructor(
    private readonly exec: Executor,
    readonly name: string,
    readonly maxActive: number,
  ) {}

  /** queue_work: returns false if the item was already pending. */
  queue(work: Work): boolean {
    if (work.pending) return false;
    work.pending = true;
    this.items.push(work);
    this.exec.sched.schedule(0, () => this.pump(), `wq ${this.name}`);
    return true;
  }

  /** Queue a one-off function as a work item. */
  queueFn(name: string, fn: () => Promise<void> | void): void {
    this.queue(new Work(name, fn));
  }

  /** queue_delayed_work. */
  queueDelayed(work: Work, delayNs: number): boolean {
    if (work.pending) return false;
    work.pending = true;
    this.exec.sched.schedule(
      delayNs,
      () => {
        this.items.push(work);
        this.pump();
      },
      `wq ${this.name} delayed`,
    );
    return true;
  }

  get busy(): boolean {
    return this.active > 0 || this.items.length > 0;
  }

  /** flush_workqueue: sleep until nothing is queued or running. */
  flush(): Promise<void> {
    this.exec.mightSleep(`flush_workqueue(${this.name})`);
    if (!this.busy) return Promise.resolve();
    return new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (this.active < this.maxActive && this.items.length > 0) {
      const w = this.items.shift()!;
      w.pending = false;
      this.active++;
      const run = async () => {
        await w.fn();
      };
      this.exec.runIn('workqueue', `${this.name}/${w.name}`, run).then(
        () => this.finish(),
        (err: unknown) => {
          this.exec.crash(`${this.name}/${w.name}`, err);
          this.finish();
        },
      );
    }
  }

  private finish(): void {
    this.active--;
    this.executed++;
    this.exec.sched.wokeAsync = true;
    if (this.items.length > 0) this.pump();
    else if (this.active === 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of ws) r();
    }
  }
}
