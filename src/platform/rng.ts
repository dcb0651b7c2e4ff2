/**
 * Seeded PRNG (xorshift128, state in an Int32Array so stepping never allocates).
 * The only source of randomness in a run; there is no unseeded randomness anywhere.
 */
export class Rng {
  private readonly s = new Int32Array(4);

  constructor(seed = 1) {
    this.reseed(seed);
  }

  reseed(seed: number): void {
    // splitmix32 expands the seed so that nearby seeds give unrelated streams
    let x = seed | 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = z ^ (z >>> 16);
    }
    if ((this.s[0]! | this.s[1]! | this.s[2]! | this.s[3]!) === 0) this.s[0] = 1;
  }

  /** Next uint32. */
  next32(): number {
    const s = this.s;
    let t = s[3]!;
    const u = s[0]!;
    s[3] = s[2]!;
    s[2] = s[1]!;
    s[1] = u;
    t ^= t << 11;
    t ^= t >>> 8;
    s[0] = t ^ u ^ (u >>> 19);
    return s[0]! >>> 0;
  }

  /** Uniform integer in [0, n), n <= 2^32. */
  below(n: number): number {
    return Math.floor((this.next32() / 4294967296) * n);
  }

  /** Uniform integer in [0, 2^53). */
  next53(): number {
    return (this.next32() >>> 11) * 4294967296 + this.next32();
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.next32() / 4294967296;
  }

  /** A new generator whose stream depends on this one's (for per-component streams). */
  fork(): Rng {
    return new Rng(this.next32());
  }
}
