/**
 * Deterministic discrete-event scheduler in virtual nanoseconds.
 *
 * Events at the same time run in the order they were scheduled (a sequence number breaks
 * ties), so a run is a function of its inputs and seed. Nothing here reads the wall clock.
 *
 * Two ways to run:
 *  - the *Sync methods run events back to back; use them when only hardware models are
 *    involved (no kernel-model async code waiting on events);
 *  - the async methods additionally run the kernel tasks that an event woke, each until it
 *    waits again, before the clock moves on, exactly at the virtual time at which they were
 *    woken.
 *
 * Kernel tasks (../platform/exec.ts) are async functions. A task woken by a wait primitive
 * (a sleep that ended, a completion that fired, a mutex handed over) is put on the ready queue
 * with `ready(task, fn, arg)`; the async run loops resume ready tasks one at a time, in the
 * order they were woken, each with `task` (the current-task slot) set to it, and let it run
 * until it waits again before resuming the next one: one task runs at a time, as on one CPU.
 * Code that resolves some other promise (a device model answering a scenario) sets
 * `wokeAsync` instead, and the loops let everything that is runnable run before time moves on.
 *
 * "Until it waits again" is the point where the microtask queue is empty: a process.nextTick
 * queued from a microtask runs exactly then, which costs far less than a macrotask turn.
 *
 * Pending events live in a binary heap of stable slots; an event's handle names its slot and
 * the slot's generation, so cancel() is O(1): it drops the callback at once and the heap entry
 * goes the next time it reaches the top, or earlier when cancelled entries make up half the
 * heap (then the heap is rebuilt without them). Nothing is retained per cancelled event.
 */

export type EventFn = () => void;

/**
 * Latest virtual time, ns: 2^53 - 1 (about 104 days), the last Number at which every nanosecond
 * is distinct. Past it event times would round silently, so the scheduler refuses to go there.
 */
export const MAX_VIRTUAL_NS = Number.MAX_SAFE_INTEGER;
const pastBound = (t: number) =>
  `virtual time ${t} ns is past 2^53 ns (about 104 days), where it loses precision`;

/** Handle of a scheduled event; 0 is never a valid handle. */
export type TimerId = number;

/** Handles encode slot + 1 + generation * SLOT_SPAN (exact: generations stay below 2^27). */
const SLOT_SPAN = 2 ** 26;
const GEN_LIMIT = 2 ** 27 - 1;
/** Let the host's event loop turn (timers, I/O) once every this many drains. */
const DRAINS_PER_TURN = 1024;

/** A promise resolved once the microtask queue is empty (see the file comment). */
function afterMicrotasks(resolve: () => void): void {
  queueMicrotask(() => process.nextTick(resolve));
}
/** The same, called from a microtask: the tick can be queued at once. */
function onNextTick(resolve: () => void): void {
  process.nextTick(resolve);
}
function microtasksDrained(inMicrotask: boolean): Promise<void> {
  return new Promise<void>(inMicrotask ? onNextTick : afterMicrotasks);
}
function noop(): void {}
function eventLoopTurn(): Promise<void> {
  return new Promise<void>((r) => setImmediate(r));
}

export class Scheduler {
  /** Current virtual time, ns. */
  now = 0;
  /** Events executed so far. */
  executed = 0;
  /**
   * The current kernel task (an ExecContext of ../platform/exec.ts; opaque here): set while a
   * ready task is resumed, null while events run. The executor sets it around the code it
   * enters synchronously.
   */
  task: unknown = null;
  /**
   * Set by code that resolves a promise outside the ready queue; tells the async run loops
   * that continuations are pending and must run before virtual time advances.
   */
  wokeAsync = false;
  /** Optional observer of every executed event (tracing). */
  onEvent: ((time: number, label: string | undefined) => void) | null = null;

  // binary min-heap keyed by (time, seq), over parallel typed arrays; each entry names a slot
  private hTime = new Float64Array(64);
  private hSeq = new Float64Array(64);
  private hSlot = new Int32Array(64);
  private n = 0;
  // slots: callback, label and generation of each pending (or free) event
  private sFn: (EventFn | null)[] = [];
  private sLabel: (string | undefined)[] = [];
  private sGen = new Int32Array(64);
  private nSlots = 0;
  private free = new Int32Array(64);
  private nFree = 0;
  private seq = 0;
  private nCancelled = 0;
  // ready queue: tasks to resume, FIFO
  private rTask: unknown[] = [];
  private rFn: Array<(arg: unknown) => void> = [];
  private rArg: unknown[] = [];
  private rHead = 0;
  private rTail = 0;
  /** Async run loops active (nested loops share the ready queue). */
  private looping = 0;
  private drains = 0;
  /** A drain is under way (resumeNext cleans up after it). */
  private draining = false;

  /** Run `fn` after `delayNs` (>= 0) of virtual time. */
  schedule(delayNs: number, fn: EventFn, label?: string): TimerId {
    if (!(delayNs >= 0))
      throw new RangeError(`scheduler: bad delay ${delayNs}${label ? ` for ${label}` : ''}`);
    if (!(this.now + delayNs <= MAX_VIRTUAL_NS))
      throw new RangeError(`scheduler: ${pastBound(this.now + delayNs)}`);
    return this.push(this.now + delayNs, fn, label);
  }

  /** Run `fn` at absolute virtual time `timeNs` (not in the past). */
  at(timeNs: number, fn: EventFn, label?: string): TimerId {
    if (!(timeNs >= this.now))
      throw new RangeError(`scheduler: time ${timeNs} is in the past (now ${this.now})`);
    if (!(timeNs <= MAX_VIRTUAL_NS)) throw new RangeError(`scheduler: ${pastBound(timeNs)}`);
    return this.push(timeNs, fn, label);
  }

  /** Cancel a pending event, in O(1). Returns false if it already ran or was cancelled. */
  cancel(id: TimerId): boolean {
    if (!(id > 0) || !Number.isInteger(id)) return false;
    const slot = (id - 1) % SLOT_SPAN;
    if (slot >= this.nSlots || this.sGen[slot] !== (id - 1 - slot) / SLOT_SPAN) return false;
    if (this.sFn[slot] === null) return false;
    this.sFn[slot] = null;
    this.sLabel[slot] = undefined;
    this.nCancelled++;
    if (this.nCancelled > 32 && 2 * this.nCancelled > this.n) this.compact();
    return true;
  }

  /** Number of pending (not cancelled) events. */
  get pending(): number {
    return this.n - this.nCancelled;
  }

  /** Heap entries held, cancelled ones included (bounded by twice the pending events, plus 32). */
  get heapSize(): number {
    return this.n;
  }

  /** Time of the next pending event, or Infinity. */
  nextTime(): number {
    this.skipCancelled();
    return this.n > 0 ? this.hTime[0]! : Number.POSITIVE_INFINITY;
  }

  /** Run the next event, if any. Returns false when idle. */
  step(): boolean {
    this.skipCancelled();
    if (this.n === 0) return false;
    const t = this.hTime[0]!;
    const slot = this.hSlot[0]!;
    const fn = this.sFn[slot]!;
    const label = this.sLabel[slot];
    this.pop();
    this.release(slot);
    this.now = t;
    this.executed++;
    if (this.onEvent !== null) this.onEvent(t, label);
    // events run outside any kernel task
    const task = this.task;
    this.task = null;
    try {
      fn();
    } finally {
      this.task = task;
    }
    return true;
  }

  /** Run events until none is left or `maxEvents` ran. Returns the number run. */
  runUntilIdleSync(maxEvents = Number.POSITIVE_INFINITY): number {
    let n = 0;
    while (n < maxEvents && this.step()) n++;
    return n;
  }

  /** Run every event due within the next `ns`, then set the clock to now+ns. */
  runForSync(ns: number): number {
    const end = this.now + ns;
    if (!(end <= MAX_VIRTUAL_NS)) throw new RangeError(`scheduler: ${pastBound(end)}`);
    let n = 0;
    while (this.nextTime() <= end && this.step()) n++;
    // (an event may itself have run the clock further: a kernel busy-wait spinning on hardware)
    if (end > this.now) this.now = end;
    return n;
  }

  /** Async: run until idle, letting woken kernel tasks run at each event's time. */
  runUntilIdle(maxEvents = Number.POSITIVE_INFINITY): Promise<number> {
    return this.run(null, Number.POSITIVE_INFINITY, maxEvents);
  }

  /** Async: run for `ns` of virtual time. */
  async runFor(ns: number): Promise<number> {
    const end = this.now + ns;
    if (!(end <= MAX_VIRTUAL_NS)) throw new RangeError(`scheduler: ${pastBound(end)}`);
    const n = await this.run(null, end, Number.POSITIVE_INFINITY);
    if (end > this.now) this.now = end; // (a task may have spun the clock past it: a busy-wait)
    return n;
  }

  /**
   * Async: run until `done()` holds, checked after every event. Returns true if it held,
   * false if the queue ran dry or `timeoutNs` of virtual time passed first.
   */
  async runUntil(done: () => boolean, timeoutNs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const end = this.now + timeoutNs;
    await this.run(done, end, Number.POSITIVE_INFINITY);
    if (done()) return true;
    // nothing more was due by then (the bound keeps virtual time exact; never backwards)
    if (end <= MAX_VIRTUAL_NS && end > this.now) this.now = end;
    return false;
  }

  /**
   * The async run loop: events in order while `done` (checked before each) does not hold, the
   * next one is due by `end` and fewer than `max` ran; after each, the tasks it woke run until
   * they wait again. Also first what the caller started. Returns the number of events run.
   */
  private async run(done: (() => boolean) | null, end: number, max: number): Promise<number> {
    let n = 0;
    this.looping++;
    try {
      this.wokeAsync = true; // async work started by the caller runs to its first wait first
      let mt = false;
      for (let p = this.resumeNext(mt); p !== null; p = this.resumeNext(true)) {
        await p;
        mt = true;
      }
      while (n < max && (done === null || !done()) && this.nextTime() <= end && this.step()) {
        n++;
        if (this.wokeAsync || this.rHead !== this.rTail)
          for (let p = this.resumeNext(mt); p !== null; p = this.resumeNext(true)) {
            await p;
            mt = true;
          }
      }
    } finally {
      this.looping--;
    }
    return n;
  }

  /** True while an async run loop is running (ready tasks are then resumed by it). */
  get running(): boolean {
    return this.looping > 0;
  }

  /**
   * Make a woken task runnable: while an async run loop runs, `fn(arg)` (which resumes it) is
   * called by the loop with `task` set to `task`, after the tasks woken before it have waited
   * again; otherwise at once (nobody else would), with `wokeAsync` set.
   */
  ready<A>(task: unknown, fn: (arg: A) => void, arg: A): void {
    if (this.looping === 0) {
      this.wokeAsync = true;
      fn(arg);
      return;
    }
    const t = this.rTail++;
    this.rTask[t] = task;
    this.rFn[t] = fn as (arg: unknown) => void;
    this.rArg[t] = arg;
  }

  /**
   * Let the tasks woken at the current time run until they all wait again: first whatever
   * was woken outside the ready queue, then each ready task in turn.
   */
  async settle(): Promise<void> {
    for (let p = this.resumeNext(false); p !== null; p = this.resumeNext(true)) await p;
  }

  /**
   * One step of settle(): let what was woken outside the ready queue run, or resume the next
   * ready task; returns the drain to await (after it, everything runnable has waited again),
   * or null when nothing is runnable. The run loops call it inline (no async call per event).
   * `inMicrotask`: the caller runs in a microtask (it has awaited), so the drain's tick can be
   * queued directly.
   */
  private resumeNext(inMicrotask: boolean): Promise<void> | null {
    if (this.draining) {
      // a drain ended: whatever was resolved during it has run too
      this.draining = false;
      this.wokeAsync = false;
      this.task = null;
    }
    if (this.wokeAsync) {
      this.wokeAsync = false;
      this.task = null;
    } else {
      const h = this.rHead;
      if (h === this.rTail) {
        this.rHead = this.rTail = 0; // empty: reuse the arrays from the start
        return null;
      }
      const fn = this.rFn[h]!;
      const arg = this.rArg[h];
      this.task = this.rTask[h];
      this.rTask[h] = null;
      this.rFn[h] = noop;
      this.rArg[h] = null;
      this.rHead = h + 1;
      fn(arg);
    }
    this.draining = true;
    return ++this.drains % DRAINS_PER_TURN === 0 ? eventLoopTurn() : microtasksDrained(inMicrotask);
  }

  // ------------------------------------------------------------------ heap and slots

  private push(time: number, fn: EventFn, label: string | undefined): TimerId {
    let slot: number;
    if (this.nFree > 0) slot = this.free[--this.nFree]!;
    else {
      slot = this.nSlots++;
      if (slot >= this.sGen.length) this.sGen = grow(this.sGen, slot + 1);
    }
    this.sFn[slot] = fn;
    this.sLabel[slot] = label;
    const seq = ++this.seq;
    let i = this.n++;
    if (i >= this.hTime.length) {
      this.hTime = grow(this.hTime, i + 1);
      this.hSeq = grow(this.hSeq, i + 1);
      this.hSlot = grow(this.hSlot, i + 1);
    }
    const ht = this.hTime;
    const hs = this.hSeq;
    const hl = this.hSlot;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (ht[p]! < time || (ht[p] === time && hs[p]! < seq)) break;
      ht[i] = ht[p]!;
      hs[i] = hs[p]!;
      hl[i] = hl[p]!;
      i = p;
    }
    ht[i] = time;
    hs[i] = seq;
    hl[i] = slot;
    return this.sGen[slot]! * SLOT_SPAN + slot + 1;
  }

  /** Remove the heap's top entry. */
  private pop(): void {
    const n = --this.n;
    if (n === 0) return;
    this.siftDown(0, this.hTime[n]!, this.hSeq[n]!, this.hSlot[n]!, n);
  }

  private siftDown(i: number, t: number, s: number, slot: number, n: number): void {
    const ht = this.hTime;
    const hs = this.hSeq;
    const hl = this.hSlot;
    for (;;) {
      const a = 2 * i + 1;
      if (a >= n) break;
      const b = a + 1;
      let c = a;
      if (b < n && (ht[b]! < ht[a]! || (ht[b] === ht[a] && hs[b]! < hs[a]!))) c = b;
      if (t < ht[c]! || (t === ht[c] && s < hs[c]!)) break;
      ht[i] = ht[c]!;
      hs[i] = hs[c]!;
      hl[i] = hl[c]!;
      i = c;
    }
    ht[i] = t;
    hs[i] = s;
    hl[i] = slot;
  }

  /** A slot's event ran or was dropped: a new generation, back on the free list. */
  private release(slot: number): void {
    this.sFn[slot] = null;
    this.sLabel[slot] = undefined;
    const g = this.sGen[slot]! + 1;
    this.sGen[slot] = g;
    if (g >= GEN_LIMIT) return; // retired: its handles must stay unique
    if (this.nFree >= this.free.length) this.free = grow(this.free, this.nFree + 1);
    this.free[this.nFree++] = slot;
  }

  private skipCancelled(): void {
    while (this.n > 0 && this.nCancelled > 0) {
      const slot = this.hSlot[0]!;
      if (this.sFn[slot] !== null) return;
      this.pop();
      this.release(slot);
      this.nCancelled--;
    }
  }

  /** Drop every cancelled entry and rebuild the heap (O(n)). */
  private compact(): void {
    const ht = this.hTime;
    const hs = this.hSeq;
    const hl = this.hSlot;
    let k = 0;
    for (let i = 0; i < this.n; i++) {
      const slot = hl[i]!;
      if (this.sFn[slot] === null) {
        this.release(slot);
        continue;
      }
      ht[k] = ht[i]!;
      hs[k] = hs[i]!;
      hl[k] = slot;
      k++;
    }
    this.n = k;
    this.nCancelled = 0;
    for (let i = (k >> 1) - 1; i >= 0; i--) this.siftDown(i, ht[i]!, hs[i]!, hl[i]!, k);
  }
}

function grow<T extends Float64Array | Int32Array>(a: T, min: number): T {
  let len = a.length * 2;
  while (len < min) len *= 2;
  const b = new (a.constructor as new (n: number) => T)(len);
  b.set(a);
  return b;
}
