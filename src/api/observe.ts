/**
 * What an SMMU holds, decoded: its stream table entries and context descriptors as they are in
 * memory now, the page-table walk an IOVA would take, and the TLB's entries. Everything is read
 * from the one source of truth (the bytes in simulated memory, the model's registers and
 * caches); nothing here changes the SMMU or keeps a copy.
 */

import { CD_FIELDS } from '../arch/smmuv3/cd.ts';
import { eventName } from '../arch/smmuv3/event.ts';
import { STE_CONFIG_NAMES, STE_FIELDS } from '../arch/smmuv3/ste.ts';
import { levelShift, s1StartLevel, s2StartLevel } from '../arch/vmsa/granule.ts';
import { decodePte, type PteGranule } from '../arch/vmsa/pte-decode.ts';
import { fetchCd, decodeCd as hwDecodeCd, locateCd } from '../hw/smmuv3/cd.ts';
import type { StreamConfig } from '../hw/smmuv3/config.ts';
import { ACCESS_EXEC, ACCESS_PRIV, ACCESS_WRITE, EngineBackend } from '../hw/smmuv3/port.ts';
import type { SmmuV3 } from '../hw/smmuv3/smmu.ts';
import { ConfigError, fetchSte, decodeSte as hwDecodeSte, locateSte } from '../hw/smmuv3/ste.ts';
import { EntryObserver, type Probe } from '../hw/smmuv3/verify.ts';
import type { DtNode } from '../kernel/of/tree.ts';
import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';

const hex = (v: number | bigint) => `0x${v.toString(16)}`;

/** A structure as it is in memory, with its fields decoded under the spec's names. */
export interface DecodedEntry {
  /** Physical address it was read from. */
  address: string;
  /** Its 64-bit words, as Linux prints them. */
  words: string[];
  /** Field name → value (hex). */
  fields: Record<string, string>;
  /** What the SMMU would make of it now ("valid", or why it is invalid / ILLEGAL). */
  verdict: string;
}

/** One level of a page-table walk. */
export interface WalkStep {
  level: number;
  /** Address of the descriptor read at this level. */
  descriptorAddress: string;
  descriptor: string;
  type: string;
  /** Output address (leaf) or next table (table), when the descriptor has one. */
  next: string | null;
  notes: readonly string[];
}

/** The walk an IOVA takes through the tables the STE/CD point at now (memory, not the TLB). */
export interface Walk {
  stage: 1 | 2;
  iova: string;
  granule: number;
  steps: WalkStep[];
  /** The physical address it reaches, or null. */
  pa: string | null;
  /** Why it stopped short ("invalid descriptor at level 3", ...), or null. */
  stop: string | null;
}

/** A live watch of an STE/CD update (see SmmuView.watchEntryUpdates). */
export interface EntryWatch {
  /** The probes' answers when the watch started ("ok 0x80001000 | fault F_TRANSLATION"). */
  readonly initial: string;
  /** 64-bit stores seen so far. */
  readonly stores: number;
  /** The probes' answers after each store, in order. */
  timeline(): string[];
  /** Distinct answers in order of first appearance, the initial one first. */
  distinct(): string[];
  /** The probes' answers now. */
  now(): string;
  /** Stop watching. */
  stop(): void;
}

/** A TLB entry. */
export interface TlbEntryView {
  vmid: number;
  asid: number;
  global: boolean;
  /** Stage-1 (or combined) entry, or a stage-2 entry. */
  kind: 'stage1' | 'stage2';
  iova: string;
  size: number;
  pa: string;
}

function wordsOf(dw: Uint32Array, n: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push((BigInt(dw[2 * i + 1]! >>> 0) << 32n) | BigInt(dw[2 * i]! >>> 0));
  return out;
}

function decodeWith(words: bigint[], fields: typeof STE_FIELDS): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fields) {
    const lo = f.word * 64 + f.lsb;
    let v = 0n;
    for (let b = 0; b < f.width; b++) {
      const bit = lo + b;
      if ((words[bit >> 6]! >> BigInt(bit & 63)) & 1n) v |= 1n << BigInt(b);
    }
    out[f.name] = hex(v);
  }
  return out;
}

/** An 8-word structure read at `pa`, decoded with `fields`. */
function decodedEntry(pa: number, dw: Uint32Array, fields: typeof STE_FIELDS, verdict: string): DecodedEntry {
  const words = wordsOf(dw, 8);
  return {
    address: hex(pa),
    words: words.map((w) => `0x${w.toString(16).padStart(16, '0')}`),
    fields: decodeWith(words, fields),
    verdict,
  };
}

/** An SMMUv3 as software and the hardware see it. */
export class SmmuView {
  /** @internal */
  constructor(
    private readonly lab: Lab,
    /** The SMMU's device-tree node. */
    readonly node: DtNode,
    private readonly hw: SmmuV3,
  ) {}

  /** Device-tree path of the SMMU. */
  get path(): string {
    return this.node.path;
  }

  private locateSte(sid: number): number {
    const err = new ConfigError();
    const h = this.hw;
    const pa = locateSte(
      this.lab.machine.mem,
      h.features,
      h.strtabBaseLo,
      h.strtabBaseHi,
      h.strtabBaseCfg,
      sid,
      err,
    );
    if (pa < 0)
      throw new LabError(`no STE for StreamID ${hex(sid)}: ${`${eventName(err.code)}: ${err.reason}`}`);
    return pa;
  }

  private stream(sid: number): { cfg: StreamConfig | null; pa: number; dw: Uint32Array; why: string } {
    const pa = this.locateSte(sid);
    const dw = new Uint32Array(16);
    const err = new ConfigError();
    if (!fetchSte(this.lab.machine.mem, pa, dw, err))
      return { cfg: null, pa, dw, why: `${eventName(err.code)}: ${err.reason}` };
    const cfg = hwDecodeSte(dw, sid, pa, this.hw.features, (this.hw.cr2 & 1) !== 0, err);
    return { cfg, pa, dw, why: cfg === null ? `${eventName(err.code)}: ${err.reason}` : 'valid' };
  }

  /** The stream table entry of `sid`, as it is in memory now. */
  ste(sid: number): DecodedEntry & { config: string } {
    const s = this.stream(sid);
    return {
      ...decodedEntry(s.pa, s.dw, STE_FIELDS, s.why),
      config: STE_CONFIG_NAMES[(s.dw[0]! >>> 1) & 7] ?? 'reserved',
    };
  }

  private contextOf(sid: number, ssid: number) {
    const s = this.stream(sid);
    if (s.cfg === null) throw new LabError(`StreamID ${hex(sid)} has no valid STE: ${s.why}`);
    if (!s.cfg.s1)
      throw new LabError(`StreamID ${hex(sid)}: stage 1 is not enabled (STE.Config ${s.cfg.config})`);
    const err = new ConfigError();
    const mem = this.lab.machine.mem;
    const toPa = (a: number) => {
      if (s.cfg!.s2)
        throw new LabError(`StreamID ${hex(sid)} is nested: CD addresses are IPAs (not decoded here)`);
      return a;
    };
    const pa = locateCd(mem, s.cfg, ssid, toPa, err);
    if (pa < 0)
      throw new LabError(
        `no CD for StreamID ${hex(sid)} SubstreamID ${ssid}: ${`${eventName(err.code)}: ${err.reason}`}`,
      );
    const dw = new Uint32Array(16);
    if (!fetchCd(mem, pa, dw, err))
      return { s, pa, dw, cd: null, why: `${eventName(err.code)}: ${err.reason}` };
    const cd = hwDecodeCd(dw, s.cfg, ssid, pa, this.hw.features, err);
    return { s, pa, dw, cd, why: cd === null ? `${eventName(err.code)}: ${err.reason}` : 'valid' };
  }

  /** The context descriptor of `sid` / `ssid` (SubstreamID 0 when the stream has no substreams). */
  cd(sid: number, ssid = 0): DecodedEntry {
    const c = this.contextOf(sid, ssid);
    return decodedEntry(c.pa, c.dw, CD_FIELDS, c.why);
  }

  /**
   * The walk `iova` of `sid` (and `ssid`, for stage 1 with substreams) would take through the
   * tables in memory now: stage 1 through the CD's TTB0 when stage 1 is enabled, else stage 2.
   */
  walk(sid: number, iova: number, opts: { ssid?: number } = {}): Walk {
    const s = this.stream(sid);
    if (s.cfg === null) throw new LabError(`StreamID ${hex(sid)} has no valid STE: ${s.why}`);
    const mem = this.lab.machine.mem;
    let stage: 1 | 2;
    let g: number;
    let ttb: number;
    let level: number;
    let ia: number;
    if (s.cfg.s1) {
      const c = this.contextOf(sid, opts.ssid ?? 0);
      if (c.cd === null) throw new LabError(`StreamID ${hex(sid)}: CD not valid: ${c.why}`);
      const s1 = c.cd.cfg.s1;
      stage = 1;
      g = s1.tg0;
      ttb = s1.ttb0;
      ia = 64 - s1.t0sz;
      level = s1StartLevel(g, ia);
    } else if (s.cfg.s2) {
      const s2 = s.cfg.s2cfg;
      stage = 2;
      g = s2.s2tg;
      ttb = s2.s2ttb;
      ia = 64 - s2.s2t0sz;
      level = s2StartLevel(g, s2.s2sl0);
    } else {
      throw new LabError(
        `StreamID ${hex(sid)} does not translate (STE.Config ${STE_CONFIG_NAMES[s.cfg.config]})`,
      );
    }
    const steps: WalkStep[] = [];
    const granule = (2 ** g) as PteGranule;
    let table = ttb - (ttb % 2 ** g);
    const start = level;
    for (; level <= 3; level++) {
      const shift = levelShift(g, level);
      // the start level resolves every bit up to the input size (stage 2: concatenated tables)
      const top = level === start ? ia : shift + g - 3;
      const idxBits = Math.max(0, Math.min(top, 52) - shift);
      const index = Math.floor(iova / 2 ** shift) % 2 ** idxBits;
      const da = table + index * 8;
      if (mem.read64(da) !== 0) {
        return {
          stage,
          iova: hex(iova),
          granule,
          steps,
          pa: null,
          stop: `descriptor read at ${hex(da)} failed (bus error)`,
        };
      }
      const d = (BigInt(mem.r64[1]! >>> 0) << 32n) | BigInt(mem.r64[0]! >>> 0);
      const dec = decodePte(d, { stage, granule, level });
      const next = dec.outputAddress;
      steps.push({
        level,
        descriptorAddress: hex(da),
        descriptor: `0x${d.toString(16).padStart(16, '0')}`,
        type: dec.type,
        next: next === null ? null : hex(next),
        notes: dec.notes,
      });
      if (dec.type === 'table' && next !== null) {
        table = Number(next);
        continue;
      }
      if ((dec.type === 'block' || dec.type === 'page') && next !== null) {
        const pa = Number(next) + (iova % 2 ** shift);
        return { stage, iova: hex(iova), granule, steps, pa: hex(pa), stop: null };
      }
      return {
        stage,
        iova: hex(iova),
        granule,
        steps,
        pa: null,
        stop: `${dec.type} descriptor at level ${level}`,
      };
    }
    return { stage, iova: hex(iova), granule, steps, pa: null, stop: 'no leaf by level 3' };
  }

  /**
   * Watch a live STE and the CDs it points at while software rewrites them: after every 64-bit
   * store the SMMU's answer to each probe is evaluated as if it fetched the entries from memory at
   * that instant (the real caches are not touched). A hitless update shows only the old and the
   * new answers. Call `stop()` when done.
   */
  watchEntryUpdates(opts: {
    sid: number;
    /** Substreams whose CD to watch whenever the STE has a CD table (default: substream 0). */
    substreams?: number[];
    /** Transactions to evaluate: default one read of IOVA 0 without a SubstreamID. */
    probes?: Array<{ iova: number; ssid?: number; write?: boolean; privileged?: boolean; exec?: boolean }>;
  }): EntryWatch {
    const probes: Probe[] = (opts.probes ?? [{ iova: 0 }]).map((p) => ({
      sid: opts.sid,
      ssid: p.ssid ?? -1,
      iova: p.iova,
      access: (p.write ? ACCESS_WRITE : 0) | (p.privileged ? ACCESS_PRIV : 0) | (p.exec ? ACCESS_EXEC : 0),
    }));
    const obs = new EntryObserver(this.lab.machine, this.hw, this.hw.config, probes);
    const initial = obs.evaluate();
    const watched = new Set<number>();
    const watchCds = () => {
      for (const ssid of opts.substreams ?? [0]) {
        let pa: number;
        try {
          pa = this.contextOf(opts.sid, ssid).pa;
        } catch {
          continue; // no CD table (yet): the STE watch will look again after its next store
        }
        if (!watched.has(pa)) {
          watched.add(pa);
          obs.watch(pa, 64);
        }
      }
    };
    obs.watch(this.locateSte(opts.sid), 64);
    watchCds();
    const unwatchSte = this.lab.machine.mem.watch(this.locateSte(opts.sid), 64, watchCds);
    return {
      initial,
      get stores() {
        return obs.stores;
      },
      timeline: () => [...obs.timeline],
      distinct: () => [...new Set([initial, ...obs.timeline])],
      now: () => obs.evaluate(),
      stop: () => {
        unwatchSte();
        obs.stop();
      },
    };
  }

  /** The TLB's entries now, optionally only those of one ASID and/or VMID. */
  tlb(filter: { asid?: number; vmid?: number } = {}): TlbEntryView[] {
    const e = this.hw.engine;
    const tlb = e instanceof EngineBackend ? e.engine.tlb : null;
    if (!tlb) return [];
    return tlb
      .dump()
      .filter(
        (x) =>
          (filter.asid === undefined || x.asid === filter.asid) &&
          (filter.vmid === undefined || x.vmid === filter.vmid),
      )
      .map((x) => ({
        vmid: x.vmid,
        asid: x.asid,
        global: x.global,
        kind: x.kind === 0 ? ('stage1' as const) : ('stage2' as const),
        iova: hex(x.base),
        size: 2 ** x.shift,
        pa: hex(x.oa),
      }));
  }

  /** The SMMU's counters (port, TLB, queues, stalls, PRI, ATS). */
  stats(): Record<string, Record<string, number>> {
    return this.hw.stats();
  }
}
