/**
 * Execution contexts of the kernel model: process context, kernel threads, workqueues,
 * threaded IRQ handlers (all may sleep) and hard-IRQ handlers and spinlocked sections
 * (atomic: must not sleep).
 *
 * Kernel code is `async` where Linux code may sleep. The current context is a slot the
 * scheduler holds (Scheduler.task): the executor sets it around code it enters synchronously
 * (a hard-IRQ handler, a spinlocked section, the start of a task) and every wait primitive here
 * (sleep, udelay, completions, mutexes, workqueue flushes, `park`) records the context that
 * waits and has the scheduler resume it in that context; the scheduler resumes one task at a
 * time, each until it waits again, so the slot names the running task. No promise hooks.
 * Code outside the kernel that completes something a task waits for (a device model's callback)
 * should wake it through `park`; a plain promise resolved with `Scheduler.wokeAsync` set works
 * too (the task goes on at that virtual time), but the task then continues in the boot context
 * (process, not atomic), since nothing says whose promise it was.
 * A sleeping primitive called in atomic context is caught by `mightSleep` and reported with
 * both stacks, like Linux's "BUG: sleeping function called from invalid context". Stacks are
 * captured only for a report: the stack of a spinlocked section's entry is read off the report's
 * own stack (the section is still on it), or, for a section that waits (udelay) and goes on
 * after the wait, when it first waits.
 *
 * All waiting happens in virtual time: `sleep(ns)` is a scheduler event, completions and
 * mutexes wake waiters from scheduler events or other tasks, and the scheduler's async run
 * loops let the woken code run before time moves on.
 */

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

/** How V8 names the frame of Executor.atomic in a stack trace. */
const ATOMIC_FRAME = /\bExecutor\.atomic\b/;
/** Frames shown per stack in a report. */
const REPORT_FRAMES = 16;

/** A spinlocked section (atomic()); its entry stack is found only when something needs it. */
class AtomicSection implements ExecContext {
  readonly kind = 'atomic';
  readonly atomic = true;
  stack: string | null = null;
  constructor(
    readonly name: string,
    readonly parent: ExecContext | null,
  ) {}
  get entryStack(): string {
    return this.stack ?? '(not captured: the section went on after a wait)';
  }
}

/**
 * Give the spinlocked sections of `ctx`'s chain whose Executor.atomic frame is in `lines` (a
 * stack, innermost frame first) their entry stacks: the frames below their atomic() frame.
 */
function resolveEntryStacks(ctx: ExecContext, lines: readonly string[]): void {
  let k = -1;
  for (let c: ExecContext | null = ctx; c !== null; c = c.parent) {
    if (!(c instanceof AtomicSection)) continue;
    k = nextAtomicFrame(lines, k + 1);
    if (k < 0) return;
    if (c.stack === null) c.stack = lines.slice(k + 1, k + 1 + REPORT_FRAMES).join('\n');
  }
}

function nextAtomicFrame(lines: readonly string[], from: number): number {
  for (let i = from; i < lines.length; i++) if (ATOMIC_FRAME.test(lines[i]!)) return i;
  return -1;
}

function hasUnresolvedSection(ctx: ExecContext): boolean {
  for (let c: ExecContext | null = ctx; c !== null; c = c.parent) {
    if (c instanceof AtomicSection && c.stack === null) return true;
  }
  return false;
}

export interface Task {
  readonly name: string;
  readonly done: Promise<void>;
  finished: boolean;
  error: unknown;
}

/** A task waiting in a primitive: resumed in its own context with a value. */
export interface Waiter<T> {
  readonly task: unknown;
  readonly resolve: (v: T) => void;
  /** Timeout event (0: none). */
  timer: number;
}

export class Executor {
  constructor(
    readonly sched: Scheduler,
    private readonly report: (r: Omit<BugReport, 'time'>) => void,
  ) {}

  current(): ExecContext {
    return (this.sched.task as ExecContext | null) ?? BOOT;
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
    const lines = captureStack(2, 128).split('\n');
    resolveEntryStacks(ctx, lines);
    // the sleeping call: from the sleeping primitive out to the innermost spinlocked section
    const inner = nextAtomicFrame(lines, 0);
    const sleeping = lines.slice(0, inner >= 0 ? inner + 1 : REPORT_FRAMES).join('\n');
    const stacks: BugStack[] = [{ label: `sleeping call (${what})`, stack: sleeping }];
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
    const parent = this.sched.task as ExecContext | null;
    return this.enterSync({ kind: 'hardirq', name, atomic: true, entryStack, parent }, fn);
  }

  /** A spinlocked (atomic) section, e.g. `spin_lock_irqsave`. Synchronous code only. */
  atomic<T>(label: string, fn: () => T): T {
    return this.enterSync(new AtomicSection(label, this.sched.task as ExecContext | null), fn);
  }

  private enterSync<T>(ctx: ExecContext, fn: () => T): T {
    const s = this.sched;
    const prev = s.task;
    s.task = ctx;
    try {
      return fn();
    } finally {
      s.task = prev;
    }
  }

  /**
   * Run an async function in a sleepable context of `kind`. While an async run loop of the
   * scheduler runs, it starts once the tasks woken before it have waited again (at the same
   * virtual time); otherwise now (synchronously).
   */
  runIn(
    kind: Exclude<ContextKind, 'hardirq' | 'atomic'>,
    name: string,
    fn: () => Promise<void>,
  ): Promise<void> {
    const parent = this.sched.task as ExecContext | null;
    const ctx: ExecContext = { kind, name, atomic: parent?.atomic ?? false, entryStack: '', parent };
    if (!this.sched.running) {
      this.sched.wokeAsync = true;
      return this.start(ctx, fn);
    }
    return new Promise<void>((resolve, reject) => {
      this.sched.ready(ctx, () => this.start(ctx, fn).then(resolve, reject), undefined);
    });
  }

  private start(ctx: ExecContext, fn: () => Promise<void>): Promise<void> {
    const s = this.sched;
    const prev = s.task;
    s.task = ctx;
    try {
      return fn();
    } catch (err) {
      return Promise.reject(err);
    } finally {
      s.task = prev;
    }
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

  /**
   * A wait point for primitives built elsewhere (a device's completion word, a monitor): the
   * returned promise resolves with the value passed to `wake` (mapped through `resume`, which
   * runs when the waiter is resumed, in its context), and the waiter goes on in the context it
   * waited in. `arm` gets `wake` synchronously. Does not check might_sleep.
   */
  park<T, R = T>(arm: (wake: (v: T) => void) => void, resume?: (v: T) => R): Promise<R> {
    const task = this.parkingTask();
    const sched = this.sched;
    return new Promise<R>((resolve) => {
      if (resume === undefined) arm((v: T) => sched.ready(task, resolve as unknown as (v: T) => void, v));
      else arm((v: T) => sched.ready(task, (x: T) => resolve(resume(x)), v));
    });
  }

  /**
   * The context about to wait, for wait primitives that resume it with `sched.ready(task, …)`
   * (its spinlocked sections' entry stacks are taken now if needed).
   */
  parkingTask(): unknown {
    const task = this.sched.task;
    if (task !== null && (task as ExecContext).atomic && hasUnresolvedSection(task as ExecContext)) {
      resolveEntryStacks(task as ExecContext, captureStack(2, 128).split('\n'));
    }
    return task;
  }

  /** Resume a waiter with `v`. */
  wake<T>(w: Waiter<T>, v: T): void {
    this.sched.ready(w.task, w.resolve, v);
  }

  /** msleep/usleep_range: sleep `ns` of virtual time. */
  sleep(ns: number, what = 'msleep'): Promise<void> {
    this.mightSleep(what);
    return this.timed(ns, what);
  }

  /**
   * Busy-wait (udelay/ndelay, or a cpu_relax() polling loop): lets `ns` of virtual time pass
   * for this code path without sleeping, so it is allowed in atomic context.
   */
  delay(ns: number): Promise<void> {
    return this.timed(ns, 'udelay');
  }

  private timed(ns: number, label: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const w = this.newWaiter(resolve);
      this.sched.schedule(ns, () => this.wake(w, undefined), label);
    });
  }

  createWorkqueue(name: string, opts: { ordered?: boolean; maxActive?: number } = {}): Workqueue {
    return new Workqueue(this, name, opts.ordered ? 1 : (opts.maxActive ?? 256));
  }

  /** A waiter of the current context for a wait primitive (the caller checked might_sleep). */
  newWaiter<T>(resolve: (v: T) => void): Waiter<T> {
    return { task: this.parkingTask(), resolve, timer: 0 };
  }
}

/** Linux's struct completion: one-shot (or counted) event that sleepers wait for. */
export class Completion {
  private count = 0;
  private waiters: Array<Waiter<boolean>> = [];

  constructor(private readonly exec: Executor) {}

  get done(): boolean {
    return this.count > 0;
  }

  /** Wake one waiter (or let the next wait pass). Callable from any context. */
  complete(): void {
    const w = this.waiters.shift();
    if (w) this.finish(w);
    else this.count++;
  }

  completeAll(): void {
    this.count = Number.POSITIVE_INFINITY;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) this.finish(w);
  }

  private finish(w: Waiter<boolean>): void {
    if (w.timer !== 0) this.exec.sched.cancel(w.timer);
    this.exec.wake(w, true);
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
    return new Promise<void>((r) => this.waiters.push(this.exec.newWaiter<boolean>(() => r())));
  }

  /** wait_for_completion_timeout: resolves true if completed, false on timeout. */
  waitTimeout(ns: number): Promise<boolean> {
    this.exec.mightSleep('wait_for_completion_timeout');
    if (this.count > 0) {
      this.count--;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const w = this.exec.newWaiter(resolve);
      w.timer = this.exec.sched.schedule(
        ns,
        () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          this.exec.wake(w, false);
        },
        'completion timeout',
      );
      this.waiters.push(w);
    });
  }
}

/** A sleeping mutex (FIFO hand-off). */
export class Mutex {
  private locked = false;
  private waiters: Array<Waiter<void>> = [];
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
    await new Promise<void>((r) => this.waiters.push(this.exec.newWaiter(r)));
    this.owner = this.exec.current().name;
  }

  unlock(): void {
    const w = this.waiters.shift();
    if (w) this.exec.wake(w, undefined);
    else {
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
  private idleWaiters: Array<Waiter<void>> = [];
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
    return new Promise<void>((r) => this.idleWaiters.push(this.exec.newWaiter(r)));
  }

  private pump(): void {
    while (this.active < this.maxActive && this.items.length > 0) {
      const w = this.items.shift()!;
      w.pending = false;
      this.active++;
      this.exec
        .runIn('workqueue', `${this.name}/${w.name}`, async () => {
          await w.fn();
        })
        .then(
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
      for (const w of ws) this.exec.wake(w, undefined);
    }
  }
}
