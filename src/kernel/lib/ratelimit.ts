/**
 * printk_ratelimit in virtual time (Linux ___ratelimit): at most `burst` messages per
 * `intervalNs`; when a new interval starts, the number suppressed in the last one is reported.
 */
export class RateLimit {
  private begin = -1;
  private printed = 0;
  private missed = 0;

  constructor(
    readonly intervalNs = 5_000_000_000,
    readonly burst = 10,
  ) {}

  /** True if a message may be printed now. `onSuppressed(n)` is told of earlier suppressions. */
  allow(now: number, onSuppressed?: (n: number) => void): boolean {
    if (this.begin < 0 || now - this.begin >= this.intervalNs) {
      if (this.missed > 0) onSuppressed?.(this.missed);
      this.begin = now;
      this.printed = 0;
      this.missed = 0;
    }
    if (this.printed < this.burst) {
      this.printed++;
      return true;
    }
    this.missed++;
    return false;
  }

  get suppressed(): number {
    return this.missed;
  }
}
