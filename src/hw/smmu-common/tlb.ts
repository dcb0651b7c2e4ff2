/**
 * The SMMU TLB, shared by every SMMU model (as QEMU's smmu-common IOTLB is): leaf translations
 * tagged by world, VMID and ASID (global entries match any ASID of their VMID), each covering
 * the whole page or block it was walked from.
 *
 * Structure: `sets` × `ways` slots in typed arrays (default 2048 × 4). The set is a hash of the
 * virtual page number at the entry's own size, the VMID, world and kind; lookups probe once per
 * page size present in the TLB, smallest first (one probe when only 4K pages are cached). The
 * way match is branch-free for 4 ways. Replacement: an invalid way if the set has one, else
 * round-robin per set (documented, deterministic).
 *
 * Kinds: KIND_S1 entries translate an input address (stage 1, or stage 1 + stage 2 combined,
 * tagged ASID+VMID); KIND_S2 entries are stage-2 only (IPA -> PA, tagged VMID), used for
 * stage-2-only streams and for the stage-2 translations of stage-1 table and CD addresses.
 *
 * Scoped invalidation never scans the whole TLB: every entry sits on two intrusive doubly
 * linked lists over the slot arrays — its exact context (world, kind, VMID, ASID or "global")
 * and its VMID (world, VMID; stage-1 kind) — so TLBI by ASID or VMID costs the number of
 * entries removed. VA/IPA (range) invalidation probes the sets of each page in the range, or
 * walks the context lists when that is cheaper. `visited` counts the slots examined.
 *
 * Nothing is removed except by an invalidation call or by replacement: stale entries are the
 * point (software that forgets a TLBI keeps getting the old translation).
 */

import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import { TWO32 } from '../../platform/u64.ts';

export const KIND_S1 = 0;
export const KIND_S2 = 1;

const VALID = 1 << 20;
const HI_WORLD_SHIFT = 16;
const HI_KIND_SHIFT = 18;
const HI_SIZE_SHIFT = 12;
/** Tag-high bits that are not part of the context (VPN bits 43:32 and the size class). */
const HI_VPN_SIZE = 0xffff;
/** Tag-high bits holding VPN bits 43:32 (the rest: size class, world, kind, VALID). */
export const HI_VPN = 0xfff;
/** tagMask for entries matched on VMID only (global stage-1 entries and stage-2 entries). */
export const MASK_VMID_ONLY = 0xffff0000 | 0;
export const MASK_EXACT = -1;

/** Page/block sizes an entry can have (log2), indexed by size class. */
export const SIZE_SHIFTS: readonly number[] = [12, 14, 16, 21, 25, 29, 30, 42];
const SIZE_INDEX = new Int8Array(64).fill(-1);
SIZE_SHIFTS.forEach((s, i) => {
  SIZE_INDEX[s] = i;
});

// list-key tags (second key word of a context)
const LIST_CTX = 1;
const LIST_GLOBAL = 2;
const LIST_VMID = 3;

/** Entry flags (perm bits 16+). */
export const EF_DBM1 = 1 << 16; // stage-1 writable only after a hardware dirty update
export const EF_DBM2 = 1 << 17; // stage-2 likewise
export const EF_NESTED = 1 << 18; // combined S1+S2 entry (ipa[] valid)

export interface TlbOptions {
  sets?: number;
  ways?: number;
}

export interface TlbCounters {
  readonly hits: number;
  readonly misses: number;
  readonly fills: number;
  readonly evictions: number;
  /** Invalidation requests (commands) handled. */
  readonly invalidations: number;
  /** Entries removed by invalidation. */
  readonly invalidated: number;
  /** Slots examined by invalidation (the cost measure: scoped invalidation visits only its own entries). */
  readonly visited: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Context table: (k0, k1) int32 pair -> small id, with a list head and count per id.
 * Open addressing with backward-shift deletion; ids are recycled when a list empties.
 */
class ContextTable {
  private hk0 = new Int32Array(64);
  private hk1 = new Int32Array(64);
  private hid = new Int32Array(64).fill(-1);
  private mask = 63;
  head = new Int32Array(32).fill(-1);
  count = new Int32Array(32);
  private freeIds: number[] = [];
  private nextId = 0;
  private used = 0;

  private hash(k0: number, k1: number): number {
    return (Math.imul(k0 ^ Math.imul(k1, 0x27d4eb2d), 0x9e3779b1) >>> 7) & this.mask;
  }

  /** Id for a key, or -1. */
  find(k0: number, k1: number): number {
    let i = this.hash(k0, k1);
    for (;;) {
      const id = this.hid[i]!;
      if (id < 0) return -1;
      if (this.hk0[i] === k0 && this.hk1[i] === k1) return id;
      i = (i + 1) & this.mask;
    }
  }

  // two-entry cache of get() (a fill looks up its context list and its VMID list); cleared
  // whenever an id is released, since ids are recycled
  private c0k0 = 0;
  private c0k1 = 0;
  private c0id = -1;
  private c1k0 = 0;
  private c1k1 = 0;
  private c1id = -1;

  /** Id for a key, creating an empty list if needed. */
  get(k0: number, k1: number): number {
    if (this.c0id >= 0 && this.c0k0 === k0 && this.c0k1 === k1) return this.c0id;
    if (this.c1id >= 0 && this.c1k0 === k0 && this.c1k1 === k1) return this.c1id;
    const id = this.getSlow(k0, k1);
    this.c1k0 = this.c0k0;
    this.c1k1 = this.c0k1;
    this.c1id = this.c0id;
    this.c0k0 = k0;
    this.c0k1 = k1;
    this.c0id = id;
    return id;
  }

  private getSlow(k0: number, k1: number): number {
    const f = this.find(k0, k1);
    if (f >= 0) return f;
    if ((this.used + 1) * 2 > this.hid.length) this.rehash(this.hid.length * 2);
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.nextId++;
    if (id >= this.head.length) {
      const h = new Int32Array(this.head.length * 2).fill(-1);
      h.set(this.head);
      this.head = h;
      const c = new Int32Array(this.count.length * 2);
      c.set(this.count);
      this.count = c;
    }
    this.head[id] = -1;
    this.count[id] = 0;
    this.put(k0, k1, id);
    this.used++;
    return id;
  }

  private put(k0: number, k1: number, id: number): void {
    let i = this.hash(k0, k1);
    while (this.hid[i]! >= 0) i = (i + 1) & this.mask;
    this.hk0[i] = k0;
    this.hk1[i] = k1;
    this.hid[i] = id;
  }

  private rehash(size: number): void {
    const o0 = this.hk0;
    const o1 = this.hk1;
    const oid = this.hid;
    this.hk0 = new Int32Array(size);
    this.hk1 = new Int32Array(size);
    this.hid = new Int32Array(size).fill(-1);
    this.mask = size - 1;
    for (let i = 0; i < oid.length; i++) if (oid[i]! >= 0) this.put(o0[i]!, o1[i]!, oid[i]!);
  }

  /** Forget an empty context (its id becomes reusable). */
  remove(k0: number, k1: number): void {
    const mask = this.mask;
    let i = this.hash(k0, k1);
    for (;;) {
      const id = this.hid[i]!;
      if (id < 0) return;
      if (this.hk0[i] === k0 && this.hk1[i] === k1) break;
      i = (i + 1) & mask;
    }
    this.freeIds.push(this.hid[i]!);
    this.used--;
    this.c0id = -1;
    this.c1id = -1;
    // backward-shift deletion keeps probe chains intact
    let j = i;
    for (;;) {
      this.hid[i] = -1;
      for (;;) {
        j = (j + 1) & mask;
        if (this.hid[j]! < 0) return;
        const h = this.hash(this.hk0[j]!, this.hk1[j]!);
        // move j back to i unless its home lies cyclically in (i, j]
        if (i <= j ? i < h && h <= j : i < h || h <= j) continue;
        break;
      }
      this.hk0[i] = this.hk0[j]!;
      this.hk1[i] = this.hk1[j]!;
      this.hid[i] = this.hid[j]!;
      i = j;
    }
  }

  clear(): void {
    this.c0id = -1;
    this.c1id = -1;
    this.hid.fill(-1);
    this.freeIds.length = 0;
    this.nextId = 0;
    this.used = 0;
  }

  get size(): number {
    return this.used;
  }
}

/** Ints per slot in Tlb.slots (one way of one set: tag and payload, 32 bytes). */
const SLOT = 8;
/**
 * The way (0..3) of the 4-way set at word q of `t` whose tag is (vlo, vhi) and whose context
 * word matches `ctx` under its mask, or -1. The ways whose first tag word matches are found
 * branch-free (which way hits is random: a compare-and-branch per way mispredicts), then the
 * full tag of each candidate is checked: in practice one way on a hit, none on a miss. So a
 * miss costs four loads, not sixteen (comparing every word of every way, branch-free, cost
 * 250 instructions per lookup: bounds checks and spills). d == 0 on a match of the first word;
 * ((d - 1) & ~d) has the sign bit set exactly when d == 0 (int32 arithmetic, no overflow case).
 */
function way4(t: Int32Array, q: number, vlo: number, vhi: number, ctx: number): number {
  const d0 = t[q]! ^ vlo;
  const d1 = t[q + 8]! ^ vlo;
  const d2 = t[q + 16]! ^ vlo;
  const d3 = t[q + 24]! ^ vlo;
  let m =
    ((((d0 - 1) | 0) & ~d0) >>> 31) |
    (((((d1 - 1) | 0) & ~d1) >>> 31) << 1) |
    (((((d2 - 1) | 0) & ~d2) >>> 31) << 2) |
    (((((d3 - 1) | 0) & ~d3) >>> 31) << 3);
  while (m !== 0) {
    const w = 31 - Math.clz32(m & -m);
    const p = q + (w << 3);
    if (t[p + 1] === vhi && ((t[p + 2]! ^ ctx) & t[p + 3]!) === 0) return w;
    m &= m - 1;
  }
  return -1;
}

/** Slot fields (offsets in Tlb.slots from slot << 3). */
export const S_VLO = 0; // VPN bits 31:0
export const S_VHI = 1; // VPN bits 43:32 | size class | world | kind | VALID; 0 = empty slot
export const S_CTX = 2; // VMID << 16 | ASID
export const S_MASK = 3; // context mask: -1, or VMID-only for global/stage-2 entries
export const S_OALO = 4; // output address of the region base, bits 31:0
export const S_OAHI = 5; // ... bits 51:32
export const S_PERM = 6; // s1 permission mask | s2 permission mask << 8 | EF_* flags
export const S_ATTR_INFO = 7; // attr (16 bits) | info << 16
// list links (Tlb.links, LINK ints per slot): context list (A) and VMID list (V)
const LINK = 8;
const L_A = 0; // list id, next, prev at L_A, L_A + 1, L_A + 2
const L_V = 3;

export class Tlb {
  readonly sets: number;
  readonly ways: number;
  readonly entries: number;
  /** The set of a tag: (hash >>> 1) >>> setShift, times ways (see setBase). */
  readonly setShift: number;
  private readonly wayShift: number;
  /**
   * Tag and payload of every slot, SLOT ints each (see S_*), slots of a set adjacent: the 4 ways
   * of a set are 128 bytes, so a lookup and the hit's payload touch two adjacent cache lines.
   * attr is the result attr (MAIR byte | SH << 8 | S2 MemAttr << 12); info is s1 level |
   * s1 granule << 4 | s2 level << 8 | s2 granule << 12 (granules as log2 - 10).
   */
  readonly slots: Int32Array;
  /** IPA of the region base (combined S1+S2 entries: to report a stage-2 permission fault). */
  readonly ipa: Float64Array;
  /** List membership (LINK ints per slot): list id, next, prev for lists A and V. */
  private readonly links: Int32Array;
  /** Round-robin replacement pointer of each set (the way insert() evicts next). */
  readonly rr: Uint8Array;
  private readonly ctx = new ContextTable();
  // size classes present
  private readonly sizeCount = new Int32Array(SIZE_SHIFTS.length);
  private readonly present = new Int32Array(SIZE_SHIFTS.length);
  private nPresent = 0;
  private used = 0;
  /** Size (log2) of the entry the last successful lookup() found. */
  hitShift = 0;
  /**
   * Every entry held is a 4K one and the TLB has 4 ways: lookup4k() is then the whole of
   * lookup(), small enough for the caller's compiler to inline.
   */
  only4k = false;
  /**
   * The set a missing 4K key maps to, as found by the last lookup4k() that missed: a caller
   * that fills the entry right after (the engine's fast walk) need not hash the key again.
   */
  missSet = 0;
  /**
   * The counts, except what fastFills holds (read `counters`, which adds it in). The engine's
   * fast paths write here directly: hits, and misses the fast walk did not fill in place.
   */
  readonly raw: Mutable<TlbCounters> = {
    hits: 0,
    misses: 0,
    fills: 0,
    evictions: 0,
    invalidations: 0,
    invalidated: 0,
    visited: 0,
  };
  /**
   * TLB misses that the engine's fast walk (TranslationEngine.translate64) filled in place, by
   * the number of descriptors its walk read (index 1..4). Each is a miss, an eviction and a
   * fill here, and a stage-1 walk of that many reads for the Walker: counted once, in one
   * place, instead of five (a Float64Array: exact to 2^53, no overflow check).
   */
  readonly fastFills = new Float64Array(5);
  /** Hits, misses, fills, evictions and invalidation work so far (own enumerable getters). */
  readonly counters: TlbCounters;
  /** The DMA-isolation sanitizer (null: off); with it, each fill records when and from what. */
  san: DmaSanitizer | null = null;
  /** Per slot, with the sanitizer: fill sequence, fill time, last descriptor read by its walk. */
  fillSeq: Float64Array | null = null;
  fillTime: Float64Array | null = null;
  fillTbl: Float64Array | null = null;

  /**
   * Check every insert for an entry of another size that overlaps it in the same context (two
   * translations for one address: a break-before-make step was skipped). Off by default: on
   * with the sanitizer or with F_TLB_CONFLICT aborts configured. The result is in `conflict`.
   */
  checkConflicts = false;
  /** Slot of the entry the last insert() found overlapping the new one, or -1. */
  conflict = -1;

  /** Record, from now on, when and from which walk every entry is filled (the sanitizer's needs). */
  track(san: DmaSanitizer): void {
    this.san = san;
    const n = this.entries;
    this.fillSeq = new Float64Array(n);
    this.fillTime = new Float64Array(n);
    this.fillTbl = new Float64Array(n).fill(-1);
  }

  /** Copy the sanitizer's record of slot `w` into `res` (a hit). */
  hitOrigin(w: number, res: { fillSeq: number; fillTime: number; ctx: number; tbl: number }): void {
    res.fillSeq = this.fillSeq![w]!;
    res.fillTime = this.fillTime![w]!;
    res.tbl = this.fillTbl![w]!;
    res.ctx = this.slots[(w << 3) + S_CTX]!;
  }

  constructor(opts: TlbOptions = {}) {
    const sets = opts.sets ?? 2048;
    const ways = opts.ways ?? 4;
    if (!(sets >= 1 && (sets & (sets - 1)) === 0 && sets <= 1 << 20)) {
      throw new RangeError(`tlb: sets must be a power of two (got ${sets})`);
    }
    if (!(ways >= 1 && (ways & (ways - 1)) === 0 && ways <= 16)) {
      throw new RangeError(`tlb: ways must be 1, 2, 4, 8 or 16 (got ${ways})`);
    }
    this.sets = sets;
    this.ways = ways;
    this.entries = sets * ways;
    this.setShift = 31 - Math.log2(sets); // applied after >>> 1, so one set works too
    this.wayShift = Math.log2(ways);
    const n = this.entries;
    this.slots = new Int32Array(n * SLOT);
    this.ipa = new Float64Array(n);
    this.links = new Int32Array(n * LINK).fill(-1);
    this.rr = new Uint8Array(sets);
    const raw = this.raw;
    const nFast = () => this.fastWalks().walks;
    this.counters = {
      get hits() {
        return raw.hits;
      },
      get misses() {
        return raw.misses + nFast();
      },
      get fills() {
        return raw.fills + nFast();
      },
      get evictions() {
        return raw.evictions + nFast();
      },
      get invalidations() {
        return raw.invalidations;
      },
      get invalidated() {
        return raw.invalidated;
      },
      get visited() {
        return raw.visited;
      },
    };
  }

  /** Stage-1 walks done for the fills in fastFills, and the descriptors they read. */
  fastWalks(): { walks: number; reads: number } {
    const f = this.fastFills;
    return { walks: f[1]! + f[2]! + f[3]! + f[4]!, reads: f[1]! + 2 * f[2]! + 3 * f[3]! + 4 * f[4]! };
  }

  /** Valid entries currently held. */
  get occupancy(): number {
    return this.used;
  }

  /** The tag-high word for a world and kind (without page number and size class). */
  static hiTag(world: number, kind: number): number {
    return VALID | (world << HI_WORLD_SHIFT) | (kind << HI_KIND_SHIFT);
  }

  private setBase(vlo: number, vhi: number, vmid: number): number {
    // 1 + vmid: keeps set 0 from collecting every (vpn 0, vmid 0) probe of each size class
    const h = Math.imul(vlo ^ Math.imul(vhi ^ Math.imul(vmid + 1, 0x27d4eb2d), 0x85ebca6b), 0x9e3779b1);
    return ((h >>> 1) >>> this.setShift) << this.wayShift;
  }

  /**
   * Find the entry translating address key (kLo = bits 31:0, kHi = bits 55:32) for a context
   * `ctx` = vmid << 16 | asid, with hiTag from Tlb.hiTag(). Returns the slot or -1; on a hit,
   * hitShift holds the entry's size. Counts a hit or a miss. Pass kLo as an int32 (x | 0): a
   * uint32 above 2^31 is a heap number at a call boundary.
   */
  lookup(kLo: number, kHi: number, hiTag: number, ctx: number, vmid: number): number {
    const np = this.nPresent;
    const t = this.slots;
    for (let p = 0; p < np; p++) {
      const si = this.present[p]!;
      const sh = SIZE_SHIFTS[si]!;
      let vlo: number;
      let vhi: number;
      if (sh < 32) {
        vlo = (kLo >>> sh) | (kHi << (32 - sh));
        vhi = (kHi >>> sh) | hiTag | (si << HI_SIZE_SHIFT);
      } else {
        vlo = kHi >>> (sh - 32);
        vhi = hiTag | (si << HI_SIZE_SHIFT);
      }
      const b = this.setBase(vlo, vhi, vmid);
      if (this.ways === 4) {
        const w = way4(t, b << 3, vlo, vhi, ctx);
        if (w >= 0) {
          this.raw.hits++;
          this.hitShift = sh;
          return b + w;
        }
      } else {
        const e = b + this.ways;
        for (let w = b; w < e; w++) {
          const q = w << 3;
          if (t[q] === vlo && t[q + 1] === vhi && ((t[q + 2]! ^ ctx) & t[q + 3]!) === 0) {
            this.raw.hits++;
            this.hitShift = sh;
            return w;
          }
        }
      }
    }
    this.raw.misses++;
    return -1;
  }

  /**
   * lookup() when only4k: one probe of the 4K size class, same result; it counts a hit, but a
   * miss is left to the caller to count (in raw.misses, or as a fastFills entry).
   */
  lookup4k(kLo: number, kHi: number, hiTag: number, ctx: number, vmid: number): number {
    const vlo = (kLo >>> 12) | (kHi << 20);
    const vhi = (kHi >>> 12) | hiTag; // size class 0
    const h = Math.imul(vlo ^ Math.imul(vhi ^ Math.imul(vmid + 1, 0x27d4eb2d), 0x85ebca6b), 0x9e3779b1);
    // the set's first word in slots (setBase(...) << 3): below 2^25 since sets <= 2^20; the mask
    // (a no-op) tells the compiler so, and the offsets below then need no overflow checks
    const q = (((h >>> 1) >>> this.setShift) << 5) & 0x1ffffe0;
    const w = way4(this.slots, q, vlo, vhi, ctx);
    if (w >= 0) {
      this.raw.hits++;
      this.hitShift = 12;
      return (q >>> 3) + w;
    }
    this.missSet = q >>> 5;
    return -1;
  }

  // ---------------------------------------------------------------- payload of slot w

  /** Output address of the region base. */
  entryOa(w: number): number {
    return this.slots[(w << 3) + S_OAHI]! * TWO32 + (this.slots[(w << 3) + S_OALO]! >>> 0);
  }

  /** s1 permission mask | s2 permission mask << 8 | EF_* flags. */
  entryPerm(w: number): number {
    return this.slots[(w << 3) + S_PERM]!;
  }

  /** The result attr (MAIR byte | SH << 8 | S2 MemAttr << 12). */
  entryAttr(w: number): number {
    return this.slots[(w << 3) + S_ATTR_INFO]! & 0xffff;
  }

  /** s1 level | s1 granule << 4 | s2 level << 8 | s2 granule << 12 (granules as log2 - 10). */
  entryInfo(w: number): number {
    return this.slots[(w << 3) + S_ATTR_INFO]! >>> 16;
  }

  /**
   * Insert a translation of the `2^sh`-byte region containing key (kLo, kHi). `global`
   * entries (nG = 0) match every ASID of the VMID; KIND_S2 entries always do. The output
   * address comes as its int32 halves (no double at the call). Returns the slot used.
   */
  insert(
    kLo: number,
    kHi: number,
    sh: number,
    world: number,
    kind: number,
    vmid: number,
    asid: number,
    global: boolean,
    oaLo: number,
    oaHi: number,
    ipa: number,
    perm: number,
    attr: number,
    info: number,
  ): number {
    const si = SIZE_INDEX[sh]!;
    if (si < 0) return -1; // a size this TLB does not hold: not cached (legal: caching is optional)
    const hiTag = Tlb.hiTag(world, kind);
    let vlo: number;
    let vhi: number;
    if (sh < 32) {
      vlo = (kLo >>> sh) | (kHi << (32 - sh));
      vhi = (kHi >>> sh) | hiTag | (si << HI_SIZE_SHIFT);
    } else {
      vlo = kHi >>> (sh - 32);
      vhi = hiTag | (si << HI_SIZE_SHIFT);
    }
    const t = this.slots;
    if (this.checkConflicts) {
      this.conflict =
        this.nPresent === 0 || (this.nPresent === 1 && this.sizeCount[si]! > 0)
          ? -1
          : this.findOverlap(kLo, kHi, sh, world, kind, vmid, asid, global || kind === KIND_S2);
    }
    const b = this.setBase(vlo, vhi, vmid);
    let w = -1;
    for (let i = b; i < b + this.ways; i++) {
      if (t[(i << 3) + S_VHI] === 0) {
        w = i;
        break;
      }
    }
    const isGlobal = global || kind === KIND_S2;
    const ctxWord = ((vmid & 0xffff) << 16) | (isGlobal ? 0 : asid & 0xffff);
    const mask = isGlobal ? MASK_VMID_ONLY : MASK_EXACT;
    let inPlace = false;
    if (w < 0) {
      const set = b >>> this.wayShift;
      w = b + this.rr[set]!;
      this.rr[set] = (this.rr[set]! + 1) & (this.ways - 1);
      this.raw.evictions++;
      const q = w << 3;
      const old = t[q + S_VHI]!;
      if (t[q + S_CTX] === ctxWord && t[q + S_MASK] === mask && ((old ^ hiTag) & ~HI_VPN_SIZE) === 0) {
        // the victim has the same context, hence is on the same lists: the new entry takes
        // its place in them (no list or context-table update)
        inPlace = true;
        const oldSi = (old >>> HI_SIZE_SHIFT) & 0xf;
        if (oldSi !== si) {
          if (--this.sizeCount[oldSi]! === 0) this.rebuildPresent();
          if (this.sizeCount[si]++ === 0) this.rebuildPresent();
        }
      } else this.remove(w);
    }
    const q = w << 3;
    t[q] = vlo;
    t[q + S_VHI] = vhi;
    t[q + S_CTX] = ctxWord;
    t[q + S_MASK] = mask;
    t[q + S_OALO] = oaLo;
    t[q + S_OAHI] = oaHi;
    t[q + S_PERM] = perm;
    t[q + S_ATTR_INFO] = (attr & 0xffff) | (info << 16);
    // only combined S1+S2 entries use ipa[] (to report a stage-2 permission fault)
    if ((perm & EF_NESTED) !== 0) this.ipa[w] = ipa;
    const san = this.san;
    if (san !== null) {
      this.fillSeq![w] = san.seq;
      this.fillTime![w] = san.now;
      this.fillTbl![w] = san.lastWalkPa;
    }
    if (!inPlace) {
      const kt = (world << 4) | (kind << 6);
      this.link(w, this.ctx.get(ctxWord, (isGlobal ? LIST_GLOBAL : LIST_CTX) | kt), L_A);
      if (kind === KIND_S1) this.link(w, this.ctx.get(ctxWord & MASK_VMID_ONLY, LIST_VMID | kt), L_V);
      this.used++;
      if (this.sizeCount[si]++ === 0) this.rebuildPresent();
    }
    this.raw.fills++;
    return w;
  }

  /**
   * An entry of another size in the context of a new (world, kind, vmid, asid) entry of 2^sh
   * bytes at key (kLo, kHi) whose region overlaps the new one, or -1. Larger sizes: one probe
   * each; smaller sizes: the VMID's stage-1 list (a slow path: only while checkConflicts).
   */
  private findOverlap(
    kLo: number,
    kHi: number,
    sh: number,
    world: number,
    kind: number,
    vmid: number,
    asid: number,
    global: boolean,
  ): number {
    const t = this.slots;
    const hiTag = Tlb.hiTag(world, kind);
    const ctxWord = ((vmid & 0xffff) << 16) | (global ? 0 : asid & 0xffff);
    const match = (q: number) => global || ((t[q + S_CTX]! ^ ctxWord) & t[q + S_MASK]!) === 0;
    let smaller = false;
    for (let p = 0; p < this.nPresent; p++) {
      const si2 = this.present[p]!;
      const sh2 = SIZE_SHIFTS[si2]!;
      if (sh2 === sh) continue;
      if (sh2 < sh) {
        smaller = true;
        continue;
      }
      let vlo: number;
      let vhi: number;
      if (sh2 < 32) {
        vlo = (kLo >>> sh2) | (kHi << (32 - sh2));
        vhi = (kHi >>> sh2) | hiTag | (si2 << HI_SIZE_SHIFT);
      } else {
        vlo = kHi >>> (sh2 - 32);
        vhi = hiTag | (si2 << HI_SIZE_SHIFT);
      }
      const b = this.setBase(vlo, vhi, vmid);
      for (let w = b; w < b + this.ways; w++) {
        const q = w << 3;
        if (t[q] === vlo && t[q + S_VHI] === vhi && match(q)) return w;
      }
    }
    if (!smaller || kind !== KIND_S1) return -1;
    const id = this.ctx.find(
      ((vmid & 0xffff) << 16) & MASK_VMID_ONLY,
      LIST_VMID | (world << 4) | (kind << 6),
    );
    if (id < 0) return -1;
    const base = (kHi >>> 0) * TWO32 + (kLo >>> 0);
    const lo = base - (base % 2 ** sh);
    const hi = lo + 2 ** sh;
    for (let w = this.ctx.head[id]!; w >= 0; w = this.links[w * LINK + L_V + 1]!) {
      const q = w << 3;
      if (this.entryShift(w) >= sh || !match(q)) continue;
      const eb = this.entryBase(w);
      if (eb >= lo && eb < hi) return w;
    }
    return -1;
  }

  private link(w: number, id: number, l: number): void {
    const lk = this.links;
    const h = this.ctx.head[id]!;
    lk[w * LINK + l] = id;
    lk[w * LINK + l + 2] = -1;
    lk[w * LINK + l + 1] = h;
    if (h >= 0) lk[h * LINK + l + 2] = w;
    this.ctx.head[id] = w;
    this.ctx.count[id]!++;
  }

  private unlink(w: number, l: number, k0: number, k1: number): void {
    const lk = this.links;
    const id = lk[w * LINK + l]!;
    if (id < 0) return;
    const p = lk[w * LINK + l + 2]!;
    const n = lk[w * LINK + l + 1]!;
    if (p >= 0) lk[p * LINK + l + 1] = n;
    else this.ctx.head[id] = n;
    if (n >= 0) lk[n * LINK + l + 2] = p;
    lk[w * LINK + l] = -1;
    if (--this.ctx.count[id]! === 0) this.ctx.remove(k0, k1);
  }

  private rebuildPresent(): void {
    let n = 0;
    for (let i = 0; i < SIZE_SHIFTS.length; i++) if (this.sizeCount[i]! > 0) this.present[n++] = i;
    this.nPresent = n;
    this.only4k = n === 1 && this.present[0] === 0 && this.ways === 4;
  }

  /** Remove the entry in slot w (no-op if empty). */
  remove(w: number): void {
    const t = this.slots;
    const q = w << 3;
    const hi = t[q + S_VHI]!;
    if (hi === 0) return;
    const ctxWord = t[q + S_CTX]!;
    const kind = (hi >>> HI_KIND_SHIFT) & 1;
    const kt = (((hi >>> HI_WORLD_SHIFT) & 3) << 4) | (kind << 6);
    const isGlobal = t[q + S_MASK] !== MASK_EXACT;
    this.unlink(w, L_A, ctxWord, (isGlobal ? LIST_GLOBAL : LIST_CTX) | kt);
    if (kind === KIND_S1) this.unlink(w, L_V, ctxWord & MASK_VMID_ONLY, LIST_VMID | kt);
    const si = (hi >>> HI_SIZE_SHIFT) & 0xf;
    if (--this.sizeCount[si]! === 0) this.rebuildPresent();
    t[q + S_VHI] = 0;
    t[q] = 0;
    this.used--;
  }

  // ---------------------------------------------------------------- entry decoding (slow paths, tests)

  /** log2 size of the entry in slot w. */
  entryShift(w: number): number {
    return SIZE_SHIFTS[(this.slots[(w << 3) + S_VHI]! >>> HI_SIZE_SHIFT) & 0xf]!;
  }

  /** Input-address (key) base of the region the entry in slot w covers. */
  entryBase(w: number): number {
    const hi = this.slots[(w << 3) + S_VHI]!;
    const sh = SIZE_SHIFTS[(hi >>> HI_SIZE_SHIFT) & 0xf]!;
    const vpn = (hi & 0xfff) * TWO32 + (this.slots[w << 3]! >>> 0);
    return vpn * 2 ** sh;
  }

  entryWorld(w: number): number {
    return (this.slots[(w << 3) + S_VHI]! >>> HI_WORLD_SHIFT) & 3;
  }

  entryKind(w: number): number {
    return (this.slots[(w << 3) + S_VHI]! >>> HI_KIND_SHIFT) & 1;
  }

  entryVmid(w: number): number {
    return this.slots[(w << 3) + S_CTX]! >>> 16;
  }

  entryAsid(w: number): number {
    return this.slots[(w << 3) + S_CTX]! & 0xffff;
  }

  entryGlobal(w: number): boolean {
    return this.slots[(w << 3) + S_MASK] !== MASK_EXACT;
  }

  /** Snapshot of the valid entries (allocates; for inspection and tests). */
  dump(): Array<{
    slot: number;
    world: number;
    kind: number;
    vmid: number;
    asid: number;
    global: boolean;
    base: number;
    shift: number;
    oa: number;
  }> {
    const out = [];
    for (let w = 0; w < this.entries; w++) {
      if (this.slots[(w << 3) + S_VHI] === 0) continue;
      out.push({
        slot: w,
        world: this.entryWorld(w),
        kind: this.entryKind(w),
        vmid: this.entryVmid(w),
        asid: this.entryAsid(w),
        global: this.entryGlobal(w),
        base: this.entryBase(w),
        shift: this.entryShift(w),
        oa: this.entryOa(w),
      });
    }
    return out;
  }

  // ---------------------------------------------------------------- invalidation

  /** Every entry (e.g. SMMU reset). */
  invalidateAll(): number {
    this.raw.invalidations++;
    const n = this.used;
    for (let q = 0; q < this.slots.length; q += SLOT) {
      this.slots[q] = 0;
      this.slots[q + S_VHI] = 0;
    }
    for (let q = 0; q < this.links.length; q += LINK) {
      this.links[q + L_A] = -1;
      this.links[q + L_V] = -1;
    }
    this.ctx.clear();
    this.sizeCount.fill(0);
    this.nPresent = 0;
    this.only4k = false;
    this.used = 0;
    this.raw.invalidated += n;
    this.raw.visited += this.entries;
    return n;
  }

  /**
   * Every entry of the given worlds (bit mask 1 << world), both kinds: TLBI_NSNH_ALL (EL1 world)
   * and TLBI_EL2_ALL (EL2 and EL2-E2H worlds). A whole-TLB sweep, as these commands are global.
   */
  invalidateWorlds(worldMask: number): number {
    this.raw.invalidations++;
    let n = 0;
    for (let w = 0; w < this.entries; w++) {
      const hi = this.slots[(w << 3) + S_VHI]!;
      if (hi !== 0 && ((worldMask >>> ((hi >>> HI_WORLD_SHIFT) & 3)) & 1) !== 0) {
        this.remove(w);
        n++;
      }
    }
    this.raw.visited += this.entries;
    this.raw.invalidated += n;
    return n;
  }

  private dropList(id: number, l: number): number {
    if (id < 0) return 0;
    const lk = this.links;
    let n = 0;
    let w = this.ctx.head[id]!;
    while (w >= 0) {
      const nx = lk[w * LINK + l + 1]!;
      this.raw.visited++;
      if (lk[w * LINK + l] === id) {
        this.remove(w);
        n++;
      }
      w = nx;
    }
    return n;
  }

  /**
   * Stage-1 entries of one VMID (TLBI_NH_ALL; TLBI_EL2_ALL-like for a world), and with
   * `includeS2` its stage-2 entries too (TLBI_S12_VMALL). Cost: the entries removed.
   */
  invalidateVmid(world: number, vmid: number, includeS2: boolean): number {
    this.raw.invalidations++;
    const base = (vmid & 0xffff) << 16;
    let n = this.dropList(this.ctx.find(base, LIST_VMID | (world << 4)), L_V);
    if (includeS2) n += this.dropList(this.ctx.find(base, LIST_GLOBAL | (world << 4) | (KIND_S2 << 6)), L_A);
    this.raw.invalidated += n;
    return n;
  }

  /** Non-global stage-1 entries of (VMID, ASID): TLBI_NH_ASID, TLBI_EL2_ASID. Globals stay. */
  invalidateAsid(world: number, vmid: number, asid: number): number {
    this.raw.invalidations++;
    const ctxWord = ((vmid & 0xffff) << 16) | (asid & 0xffff);
    const n = this.dropList(this.ctx.find(ctxWord, LIST_CTX | (world << 4)), L_A);
    this.raw.invalidated += n;
    return n;
  }

  /**
   * Stage-1 entries overlapping [base, base+len) of the input address space (VA bits 55:0):
   * TLBI_NH_VA / TLBI_EL2_VA with asid >= 0 (entries of that ASID, and global entries),
   * TLBI_NH_VAA / TLBI_EL2_VAA with asid = -1 (every ASID). `ttl` (1..3, 0 = none) and `tg`
   * (granule log2, 0 = any) are the TTL/TG hints: when given, only entries whose leaf was at
   * that level of that granule are removed, as hardware may do when trusting the hint.
   */
  invalidateVa(
    world: number,
    vmid: number,
    asid: number,
    base: number,
    len: number,
    ttl = 0,
    tg = 0,
  ): number {
    this.raw.invalidations++;
    const n = this.invRange(world, KIND_S1, vmid, asid, base, len, ttl, tg);
    this.raw.invalidated += n;
    return n;
  }

  /** Stage-2 entries overlapping [base, base+len) of the IPA space: TLBI_S2_IPA. Combined entries stay. */
  invalidateIpa(world: number, vmid: number, base: number, len: number, ttl = 0, tg = 0): number {
    this.raw.invalidations++;
    const n = this.invRange(world, KIND_S2, vmid, -1, base, len, ttl, tg);
    this.raw.invalidated += n;
    return n;
  }

  private matches(
    w: number,
    hiTag: number,
    vmid: number,
    asid: number,
    base: number,
    end: number,
    ttl: number,
    tg: number,
  ): boolean {
    const hi = this.slots[(w << 3) + S_VHI]!;
    if ((hi & ~0xffff) !== hiTag) return false;
    const c = this.slots[(w << 3) + S_CTX]!;
    if (c >>> 16 !== vmid) return false;
    if (asid >= 0 && this.slots[(w << 3) + S_MASK] === MASK_EXACT && (c & 0xffff) !== asid) return false;
    if (ttl !== 0) {
      const inf = this.entryInfo(w);
      const kind = (hi >>> HI_KIND_SHIFT) & 1;
      const lv = kind === KIND_S1 ? inf & 0xf : (inf >>> 8) & 0xf;
      const g = kind === KIND_S1 ? (inf >>> 4) & 0xf : (inf >>> 12) & 0xf;
      if (lv !== ttl || (tg !== 0 && g !== tg - 10)) return false;
    }
    const eb = this.entryBase(w);
    return eb < end && base < eb + 2 ** this.entryShift(w);
  }

  private invRange(
    world: number,
    kind: number,
    vmid: number,
    asid: number,
    base: number,
    len: number,
    ttl: number,
    tg: number,
  ): number {
    vmid &= 0xffff;
    if (asid >= 0) asid &= 0xffff;
    const end = base + len;
    const hiTag = Tlb.hiTag(world, kind);
    const kt = (world << 4) | (kind << 6);
    // cost of probing every page of the range at every size present...
    let probe = 0;
    for (let p = 0; p < this.nPresent; p++) {
      const sh = SIZE_SHIFTS[this.present[p]!]!;
      const sz = 2 ** sh;
      probe += (Math.ceil(end / sz) - Math.floor(base / sz)) * this.ways;
    }
    // ...against walking the lists that can hold matching entries
    const vb = vmid << 16;
    let lists: number[];
    if (kind === KIND_S2) lists = [this.ctx.find(vb, LIST_GLOBAL | kt)];
    else if (asid >= 0)
      lists = [this.ctx.find(vb | asid, LIST_CTX | kt), this.ctx.find(vb, LIST_GLOBAL | kt)];
    else lists = [-2, this.ctx.find(vb, LIST_VMID | kt)];
    let listCost = 0;
    for (const id of lists) if (id >= 0) listCost += this.ctx.count[id]!;
    let n = 0;
    if (listCost <= probe) {
      for (let i = 0; i < lists.length; i++) {
        const id = lists[i]!;
        if (id < 0) continue;
        const useV = kind === KIND_S1 && asid < 0;
        const l = useV ? L_V : L_A;
        const lk = this.links;
        let w = this.ctx.head[id]!;
        while (w >= 0) {
          const nx = lk[w * LINK + l + 1]!;
          this.raw.visited++;
          if (lk[w * LINK + l] === id && this.matches(w, hiTag, vmid, asid, base, end, ttl, tg)) {
            this.remove(w);
            n++;
          }
          w = nx;
        }
      }
      return n;
    }
    for (let p = 0; p < this.nPresent; p++) {
      const si = this.present[p]!;
      const sh = SIZE_SHIFTS[si]!;
      const sz = 2 ** sh;
      for (let vpn = Math.floor(base / sz); vpn * sz < end; vpn++) {
        const vlo = vpn >>> 0;
        const vhi = (Math.floor(vpn / TWO32) & 0xfff) | hiTag | (si << HI_SIZE_SHIFT);
        const b = this.setBase(vlo | 0, vhi, vmid);
        for (let w = b; w < b + this.ways; w++) {
          this.raw.visited++;
          if (this.slots[w << 3] === (vlo | 0) && this.slots[(w << 3) + S_VHI] === vhi) {
            if (this.matches(w, hiTag, vmid, asid, base, end, ttl, tg)) {
              this.remove(w);
              n++;
            }
          }
        }
      }
      // removing the last entry of a size class may have shrunk the present list
      if (this.sizeCount[si] === 0) p--;
    }
    return n;
  }
}
