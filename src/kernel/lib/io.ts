/**
 * MMIO accessors for the kernel model (Linux readl/writel/readq/writeq and the
 * readl_poll_timeout family). They are plain loads and stores on the machine's physical
 * address space — the only way kernel code reaches a device's registers.
 */

import type { Executor } from '../../platform/exec.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import { TWO32 } from '../../platform/u64.ts';

export class MmioRegion {
  constructor(
    readonly mem: PhysicalMemory,
    readonly base: number,
    readonly size: number,
  ) {}

  readl(off: number): number {
    return this.mem.read32(this.base + off) >>> 0;
  }

  writel(off: number, v: number): void {
    this.mem.write32(this.base + off, v >>> 0);
  }

  /** 64-bit register read as a Number (registers hold addresses < 2^53 or small fields). */
  readq(off: number): number {
    if (this.mem.read64(this.base + off) !== 0) return 0xffffffff;
    return (this.mem.r64[1]! >>> 0) * TWO32 + (this.mem.r64[0]! >>> 0);
  }

  /**
   * 64-bit register read as a signed Number: a sign-extended upper-half address (FAR of a TTBR1
   * fault) comes back negative, with its exact two's-complement value (magnitude <= 2^53).
   */
  readqSigned(off: number): number {
    if (this.mem.read64(this.base + off) !== 0) return -1;
    return (this.mem.r64[1]! | 0) * TWO32 + (this.mem.r64[0]! >>> 0);
  }

  /** 64-bit register write; `hiBits` are ORed into the high word (e.g. RA/WA hint bits). */
  writeq(off: number, v: number, hiBits = 0): void {
    this.mem.write64(this.base + off, v >>> 0, (Math.floor(v / TWO32) | hiBits) >>> 0);
  }
}

/**
 * The polling schedule of readl_poll_timeout: a read every `pollNs`, the interval doubling after
 * 64 polls up to 1/1000 of the timeout, so a device that never answers costs a bounded number of
 * events. Each call returns the ns to wait before the next read, or 0 once the time is up.
 */
function pollSchedule(exec: Executor, timeoutNs: number, pollNs: number): () => number {
  const sched = exec.sched;
  const end = sched.now + timeoutNs;
  const maxPoll = Math.max(pollNs, Math.floor(timeoutNs / 1000));
  let interval = pollNs;
  let n = 0;
  return () => {
    if (sched.now >= end) return 0;
    if (++n > 64 && interval < maxPoll) interval = Math.min(maxPoll, interval * 2);
    return Math.min(interval, end - sched.now) || 1;
  };
}

/** Reads until `done` holds or the time is up (the result); yields the ns to wait between reads. */
function* polling(
  exec: Executor,
  read: () => number,
  done: (v: number) => boolean,
  timeoutNs: number,
  pollNs: number,
): Generator<number, { ok: boolean; value: number }> {
  const next = pollSchedule(exec, timeoutNs, pollNs);
  for (;;) {
    const v = read();
    if (done(v)) return { ok: true, value: v };
    const wait = next();
    if (wait === 0) return { ok: false, value: v };
    yield wait;
  }
}

/**
 * readl_relaxed_poll_timeout: re-read `read()` every `pollNs` of virtual time until `done`
 * holds or `timeoutNs` passes. Busy-waits (no sleep), as the Linux macro does in atomic
 * callers; other kernel code runs meanwhile. Returns the last value read and whether the
 * condition held.
 */
export async function pollTimeout(
  exec: Executor,
  read: () => number,
  done: (v: number) => boolean,
  timeoutNs: number,
  pollNs = 100,
): Promise<{ ok: boolean; value: number }> {
  const p = polling(exec, read, done, timeoutNs, pollNs);
  for (let r = p.next(); ; r = p.next()) {
    if (r.done) return r.value;
    await exec.delay(r.value);
  }
}

/**
 * readl_poll_timeout_atomic, for callers that cannot wait asynchronously (a synchronous path such
 * as io-pgtable's map_pages asking for a walk flush): the CPU spins while virtual time runs the
 * hardware (scheduler events) forward; no other kernel code runs meanwhile. Same result and
 * schedule as pollTimeout.
 */
export function pollTimeoutAtomic(
  exec: Executor,
  read: () => number,
  done: (v: number) => boolean,
  timeoutNs: number,
  pollNs = 100,
): { ok: boolean; value: number } {
  const p = polling(exec, read, done, timeoutNs, pollNs);
  for (let r = p.next(); ; r = p.next()) {
    if (r.done) return r.value;
    exec.sched.runForSync(r.value);
  }
}

/**
 * smp_cond_load_relaxed() on arm64 (LDXR + WFE): wait until `done()` holds, re-checking each
 * time memory in [pa, pa+size) is written — the store clears the CPU's exclusive monitor, which
 * wakes WFE, as the SMMU's MSI write to a CMD_SYNC wakes arm_smmu_cmdq_poll_until_msi — or until
 * `timeoutNs` of virtual time passed. No polling events. A busy-wait: allowed in atomic context.
 * Resolves with `then(true)` when done() held, `then(false)` on timeout (`then` runs in the
 * waiter's context when it goes on).
 */
export function waitForWrite<R>(
  exec: Executor,
  mem: PhysicalMemory,
  pa: number,
  size: number,
  done: () => boolean,
  timeoutNs: number,
  then: (ok: boolean) => R,
): Promise<R> {
  if (done()) return Promise.resolve(then(true));
  const task = exec.parkingTask();
  const sched = exec.sched;
  // (closures only as call arguments: under tsx, a named closure costs a defineProperty each)
  return new Promise<R>((resolve) => {
    const w = new WriteWait(resolve, then);
    let timer = 0;
    const unwatch = mem.watch(pa, size, () => {
      if (!done()) return;
      unwatch();
      sched.cancel(timer);
      w.ok = true;
      sched.ready(task, resumeWriteWait, w);
    });
    timer = sched.schedule(
      timeoutNs,
      () => {
        unwatch();
        sched.ready(task, resumeWriteWait, w);
      },
      'wfe timeout',
    );
  });
}

/** How a waitForWrite goes on: `then(ok)` in the waiter's context. */
class WriteWait<R> {
  ok = false;
  constructor(
    private readonly resolve: (v: R) => void,
    private readonly then: (ok: boolean) => R,
  ) {}
  resume(): void {
    this.resolve(this.then(this.ok));
  }
}

function resumeWriteWait(w: { resume(): void }): void {
  w.resume();
}
