/**
 * Deterministic discrete-event scheduler in virtual nanoseconds.
 *
 * Events at the same time run in the order they were scheduled (a sequence number breaks
 * ties), so a run is a function of its inputs and seed. Nothing here reads the wall clock.
 *
 * Two ways to run:
 *  - the *Sync methods run events back to back; use them when only hardware models are
 *    involved (no kernel-model async code waiting on events);
 *  - the async methods additionally let promise continuations that an event woke (a kernel
 *    thread whose sleep ended, a completion that fired) run to their next wait before the
 *    clock moves on, exactly at the virtual time at which they were woken.
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

export class Scheduler {
  /** Current virtual time, ns. */
  now = 0;
  /** Events executed so far. */
  executed = 0;
  // binary min-heap over parallel arrays, keyed by (time, seq)
  private hTime: number[] = [];
  private hSeq: number[] = [];
  private hFn: EventFn[] = [];
  private hLabel: (string | undefined)[] = [];
  private seq = 0;
  private cancelled = new Set<number>();
  /**
   * Set by kernel-side primitives when they resolve a promise; tells the async run loops that
   * continuations are pending and must run before virtual time advances.
   */
  wokeAsync = false;
  /** Optional observer of every executed event (tracing). */
  onEvent: ((time: number, label: string | undefined) => void) | null = null;

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

  /** Cancel a pending event. Returns false if it already ran or was cancelled. */
  cancel(id: TimerId): boolean {
    if (id <= 0 || id > this.seq || this.cancelled.has(id)) return false;
    for (let i = 0; i < this.hSeq.length; i++) {
      if (this.hSeq[i] === id) {
        this.cancelled.add(id);
        return true;
      }
    }
    return false;
  }

  /** Number of pending (not cancelled) events. */
  get pending(): number {
    return this.hSeq.length - this.cancelled.size;
  }

  /** Time of the next pending event, or Infinity. */
  nextTime(): number {
    this.skipCancelled();
    return this.hTime.length > 0 ? this.hTime[0]! : Number.POSITIVE_INFINITY;
  }

  /** Run the next event, if any. Returns false when idle. */
  step(): boolean {
    this.skipCancelled();
    if (this.hTime.length === 0) return false;
    const t = this.hTime[0]!;
    const fn = this.hFn[0]!;
    const label = this.hLabel[0];
    this.pop();
    this.now = t;
    this.executed++;
    if (this.onEvent !== null) this.onEvent(t, label);
    fn();
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

  /** Async: run until idle, letting woken async continuations run at each event's time. */
  async runUntilIdle(maxEvents = Number.POSITIVE_INFINITY): Promise<number> {
    let n = 0;
    this.wokeAsync = true; // async work started by the caller runs to its first wait first
    await this.settle();
    while (n < maxEvents && this.step()) {
      n++;
      await this.settle();
    }
    return n;
  }

  /** Async: run for `ns` of virtual time. */
  async runFor(ns: number): Promise<number> {
    const end = this.now + ns;
    if (!(end <= MAX_VIRTUAL_NS)) throw new RangeError(`scheduler: ${pastBound(end)}`);
    let n = 0;
    this.wokeAsync = true;
    await this.settle();
    while (this.nextTime() <= end && this.step()) {
      n++;
      await this.settle();
    }
    if (end > this.now) this.now = end; // a continuation may have spun past it
    return n;
  }

  /**
   * Async: run until `done()` holds, checked after every event. Returns true if it held,
   * false if the queue ran dry or `timeoutNs` of virtual time passed first.
   */
  async runUntil(done: () => boolean, timeoutNs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const end = this.now + timeoutNs;
    this.wokeAsync = true;
    await this.settle();
    while (!done()) {
      if (this.nextTime() > end) {
        if (end <= MAX_VIRTUAL_NS && end > this.now) this.now = end;
        return false;
      }
      if (!this.step()) return false;
      await this.settle();
    }
    return true;
  }

  /**
   * Let promise continuations woken at the current time run until they all wait again.
   * Continuations may wake others, so repeat while something was woken.
   */
  async settle(): Promise<void> {
    while (this.wokeAsync) {
      this.wokeAsync = false;
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  private push(time: number, fn: EventFn, label: string | undefined): TimerId {
    const id = ++this.seq;
    const ht = this.hTime;
    const hs = this.hSeq;
    const hf = this.hFn;
    const hl = this.hLabel;
    let i = ht.length;
    ht.push(time);
    hs.push(id);
    hf.push(fn);
    hl.push(label);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (ht[p]! < time || (ht[p] === time && hs[p]! < id)) break;
      ht[i] = ht[p]!;
      hs[i] = hs[p]!;
      hf[i] = hf[p]!;
      hl[i] = hl[p];
      i = p;
    }
    ht[i] = time;
    hs[i] = id;
    hf[i] = fn;
    hl[i] = label;
    return id;
  }

  private pop(): void {
    const ht = this.hTime;
    const hs = this.hSeq;
    const hf = this.hFn;
    const hl = this.hLabel;
    const t = ht.pop()!;
    const s = hs.pop()!;
    const f = hf.pop()!;
    const l = hl.pop();
    const n = ht.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const a = 2 * i + 1;
      if (a >= n) break;
      const b = a + 1;
      let c = a;
      if (b < n && (ht[b]! < ht[a]! || (ht[b] === ht[a] && hs[b]! < hs[a]!))) c = b;
      if (t < ht[c]! || (t === ht[c] && s < hs[c]!)) break;
      ht[i] = ht[c]!;
      hs[i] = hs[c]!;
      hf[i] = hf[c]!;
      hl[i] = hl[c];
      i = c;
    }
    ht[i] = t;
    hs[i] = s;
    hf[i] = f;
    hl[i] = l;
  }

  private skipCancelled(): void {
    while (this.hSeq.length > 0 && this.cancelled.size > 0 && this.cancelled.has(this.hSeq[0]!)) {
      this.cancelled.delete(this.hSeq[0]!);
      this.pop();
    }
  }
}
