// The configuration cache: resolved STEs keyed by StreamID and resolved CDs keyed by
// (StreamID, CD-table index), as an SMMU holds them after a fetch.
//
// An entry stays in use until a CMD_CFGI_* removes it or replacement evicts it, so software
// that rewrites an STE or CD and forgets the invalidation keeps seeing the old configuration.
// Invalid or ILLEGAL structures are never cached (every transaction refetches them).
//
// Replacement is CLOCK (second chance): a hit sets the entry's reference bit, eviction scans
// from the oldest entry, clearing reference bits, and evicts the first unreferenced one. A hit
// is one Map lookup and one store.
//
// Invalidation is scoped, like the TLB's: the CDs are also indexed by StreamID, so CFGI_STE,
// CFGI_STE_RANGE and CFGI_CD_ALL visit only the CDs of the streams they name (stats.cdVisited
// counts them), never the whole CD cache.

import type { Stage2Config, TranslationConfig } from '../smmu-common/translate-types.ts';

/** What a stream does with its traffic. */
export const STREAM_ABORT = 0;
export const STREAM_BYPASS = 1;
export const STREAM_TRANSLATE = 2;

/** A decoded, validated STE. */
export interface StreamConfig {
  readonly sid: number;
  /** STREAM_ABORT / STREAM_BYPASS / STREAM_TRANSLATE. */
  readonly kind: number;
  /** STE.Config, raw. */
  readonly config: number;
  readonly s1: boolean;
  readonly s2: boolean;
  /** STE address it was fetched from (for traces and decoders). */
  readonly steAddr: number;
  // stage 1 / substreams
  readonly s1ContextPtr: number;
  readonly s1Fmt: number;
  readonly s1CdMax: number;
  /** Effective S1DSS (reserved 0b11 reads as 0b00). */
  readonly s1Dss: number;
  readonly s1StallD: boolean;
  // attributes and controls carried for completeness
  readonly eats: number;
  /** STE.PPAR: PRI auto-responses carry the PASID (PCIe "PRG Response PASID Required"). */
  readonly ppar: boolean;
  readonly strw: number;
  readonly shcfg: number;
  readonly mev: boolean;
  /** STE.PRIVCFG / INSTCFG (0 = use incoming). */
  readonly privcfg: number;
  readonly instcfg: number;
  // stage 2 fault configuration
  readonly s2r: boolean;
  readonly s2s: boolean;
  /** TLB-tagging world and VMID the stream's translations use. */
  readonly world: number;
  readonly vmid: number;
  /** Stage-2 configuration (meaningful when s2). Shared by this stream's CD configs. */
  readonly s2cfg: Stage2Config;
  /**
   * Configuration for traffic that does not use a CD: the whole stream when stage 1 is off,
   * and transactions without a SubstreamID when S1DSS == bypass.
   */
  readonly direct: TranslationConfig;
  /** CLOCK reference bit. */
  ref: boolean;
}

/** A decoded, validated CD, bound to the stream it was fetched through. */
export interface ContextConfig {
  readonly sid: number;
  /** Index in the CD table (the SubstreamID, or 0 for the single CD / S1DSS substream 0). */
  readonly index: number;
  /** CD address (PA) it was fetched from. */
  readonly cdAddr: number;
  /** The stream entry this CD was fetched through (its s2cfg is linked into cfg.s2). */
  stream: StreamConfig;
  /** Replaced (never changed in place) when the CD is relinked to a re-fetched STE. */
  cfg: TranslationConfig;
  /** CD.R / CD.A / CD.S. */
  readonly r: boolean;
  readonly a: boolean;
  readonly s: boolean;
  ref: boolean;
}

export interface ConfigCacheStats {
  steHits: number;
  steMisses: number;
  steFills: number;
  steEvictions: number;
  steInvalidations: number;
  cdHits: number;
  cdMisses: number;
  cdFills: number;
  cdEvictions: number;
  cdInvalidations: number;
  /** CD entries examined by invalidations (scoped: only those of the streams invalidated). */
  cdVisited: number;
}

const SSID_SPAN = 1 << 20;

/** Key of a CD entry: StreamID (up to 32 bits) and table index (20 bits), exact below 2^53. */
export function cdKey(sid: number, index: number): number {
  return (sid >>> 0) * SSID_SPAN + index;
}

export class ConfigCache {
  private readonly stes = new Map<number, StreamConfig>();
  private readonly cds = new Map<number, ContextConfig>();
  /** StreamID -> the keys of its cached CDs. */
  private readonly cdsBySid = new Map<number, Set<number>>();
  /** STE.CONT spans by base StreamID: the STE first fetched for the span (contConflict). */
  private readonly spans = new Map<number, { cont: number; sid: number; raw: Uint32Array }>();
  private readonly steEvicted = (): void => {
    this.stats.steEvictions++;
  };
  private readonly cdEvicted = (k: number, e: ContextConfig): void => {
    this.stats.cdEvictions++;
    this.unindexCd(e.sid, k);
  };
  /** Bumped by every invalidation; lets a caller's one-entry memo know it is stale. */
  generation = 0;
  readonly stats: ConfigCacheStats = {
    steHits: 0,
    steMisses: 0,
    steFills: 0,
    steEvictions: 0,
    steInvalidations: 0,
    cdHits: 0,
    cdMisses: 0,
    cdFills: 0,
    cdEvictions: 0,
    cdInvalidations: 0,
    cdVisited: 0,
  };

  constructor(
    readonly steCapacity: number,
    readonly cdCapacity: number,
  ) {}

  get steCount(): number {
    return this.stes.size;
  }

  get cdCount(): number {
    return this.cds.size;
  }

  lookupSte(sid: number): StreamConfig | undefined {
    const e = this.stes.get(sid);
    if (e === undefined) {
      this.stats.steMisses++;
      return undefined;
    }
    this.stats.steHits++;
    e.ref = true;
    return e;
  }

  /** A hit on entries the caller already holds (its memo of the last lookup): count and reference them. */
  touch(st: StreamConfig, ctx: ContextConfig | null): void {
    this.stats.steHits++;
    st.ref = true;
    if (ctx !== null) {
      this.stats.cdHits++;
      ctx.ref = true;
    }
  }

  insertSte(e: StreamConfig): void {
    if (!this.stes.has(e.sid) && this.stes.size >= this.steCapacity) this.evict(this.stes, this.steEvicted);
    this.stes.set(e.sid, e);
    this.stats.steFills++;
  }

  lookupCd(sid: number, index: number): ContextConfig | undefined {
    const e = this.cds.get(cdKey(sid, index));
    if (e === undefined) {
      this.stats.cdMisses++;
      return undefined;
    }
    this.stats.cdHits++;
    e.ref = true;
    return e;
  }

  insertCd(e: ContextConfig): void {
    const k = cdKey(e.sid, e.index);
    if (!this.cds.has(k) && this.cds.size >= this.cdCapacity) this.evict(this.cds, this.cdEvicted);
    this.cds.set(k, e);
    let keys = this.cdsBySid.get(e.sid);
    if (keys === undefined) this.cdsBySid.set(e.sid, (keys = new Set()));
    keys.add(k);
    this.stats.cdFills++;
  }

  /** CMD_CFGI_STE: the STE and every CD cached through it. */
  invalidateSte(sid: number): void {
    this.generation++;
    if (this.stes.delete(sid)) this.stats.steInvalidations++;
    this.dropCds(sid);
  }

  /** CMD_CFGI_STE_RANGE / CMD_CFGI_ALL: StreamIDs [first, first + count). */
  invalidateSteRange(first: number, count: number): void {
    this.generation++;
    const end = first + count;
    if (count >= this.stes.size) {
      for (const sid of [...this.stes.keys()]) {
        if (sid >= first && sid < end) {
          this.stes.delete(sid);
          this.stats.steInvalidations++;
        }
      }
    } else {
      for (let s = first; s < end; s++) if (this.stes.delete(s)) this.stats.steInvalidations++;
    }
    // the streams that have CDs cached, or the range's StreamIDs: whichever is fewer
    if (count >= this.cdsBySid.size) {
      for (const s of [...this.cdsBySid.keys()]) if (s >= first && s < end) this.dropCds(s);
    } else {
      for (let s = first; s < end; s++) this.dropCds(s);
    }
  }

  /** CMD_CFGI_CD: the CD at `index` of the table reached through `sid`. */
  invalidateCd(sid: number, index: number): void {
    this.generation++;
    const k = cdKey(sid, index);
    if (this.cds.delete(k)) {
      this.stats.cdInvalidations++;
      this.unindexCd(sid, k);
    }
  }

  /** CMD_CFGI_CD_ALL: every CD reached through `sid`. */
  invalidateCdAll(sid: number): void {
    this.generation++;
    this.dropCds(sid);
  }

  invalidateAll(): void {
    this.generation++;
    this.stats.steInvalidations += this.stes.size;
    this.stats.cdInvalidations += this.cds.size;
    this.stes.clear();
    this.cds.clear();
    this.cdsBySid.clear();
    this.spans.clear();
  }

  /**
   * STE.CONT (IHI 0070 §5.2): an STE with CONT = n declares the 2^n STEs of its aligned span
   * identical, so an implementation may hold one for all of them. When an STE of the span is
   * fetched while another StreamID's STE of the same span is cached and the two differ (in
   * contents or in CONT), the SMMU holds two configurations for one span: F_CFG_CONFLICT.
   * Returns the StreamID the new STE (`raw`, of `sid`) conflicts with, or -1 (and remembers it).
   */
  contConflict(sid: number, cont: number, raw: Uint32Array): number {
    const base = sid - (sid % 2 ** cont);
    const prev = this.spans.get(base);
    if (prev !== undefined && prev.sid !== sid && this.stes.has(prev.sid)) {
      let same = prev.cont === cont;
      for (let i = 0; same && i < raw.length; i++) same = prev.raw[i] === raw[i];
      if (!same) return prev.sid;
      return -1;
    }
    this.spans.set(base, { cont, sid, raw: raw.slice() });
    return -1;
  }

  /** Cached StreamIDs (for inspectors). */
  cachedStreams(): number[] {
    return [...this.stes.keys()];
  }

  /** Cached (StreamID, index) pairs (for inspectors). */
  cachedContexts(): Array<{ sid: number; index: number }> {
    return [...this.cds.values()].map((c) => ({ sid: c.sid, index: c.index }));
  }

  /** Drop every cached CD of `sid`. */
  private dropCds(sid: number): void {
    const keys = this.cdsBySid.get(sid);
    if (keys === undefined) return;
    for (const k of keys) {
      this.stats.cdVisited++;
      if (this.cds.delete(k)) this.stats.cdInvalidations++;
    }
    this.cdsBySid.delete(sid);
  }

  private unindexCd(sid: number, k: number): void {
    const keys = this.cdsBySid.get(sid);
    if (keys === undefined) return;
    keys.delete(k);
    if (keys.size === 0) this.cdsBySid.delete(sid);
  }

  private evict<K, V extends { ref: boolean }>(m: Map<K, V>, evicted: (k: K, v: V) => void): void {
    this.generation++;
    // CLOCK: the Map's insertion order is the clock; a referenced entry gets a second chance
    // by moving to the back with its bit cleared. Terminates: every pass clears bits.
    for (;;) {
      const first = m.entries().next();
      if (first.done) return;
      const [k, v] = first.value;
      m.delete(k);
      if (v.ref) {
        v.ref = false;
        m.set(k, v);
        continue;
      }
      evicted(k, v);
      return;
    }
  }
}
