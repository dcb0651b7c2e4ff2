/**
 * The DMA-isolation sanitizer: KASAN for device DMA. It watches every access that reaches
 * memory on behalf of a device (DMA through an SMMU — from a TLB entry, a walk, or an ATC entry
 * of an ATS endpoint —, bypass DMA, MSI writes) and every SMMU table walk, and reports:
 *
 *  - a device access to a free page, or to a page freed (and maybe reallocated) since the
 *    translation that allowed the access was created (a TLB or ATC entry that outlived an
 *    unmap: the missing or late invalidation is named from the kernel's and the SMMU's notes);
 *  - a device write into a page-table, stream-table/CD or queue page;
 *  - an SMMU walk that reads a freed page (a configuration or walk cached past a free);
 *  - an access in the window a lazy (flush-queue) unmap leaves open, as its own class.
 *
 * It lives in platform/ and sees hardware and kernel only through the hooks they call; it never
 * changes what the model does (panic mode stops the run, through the lab, at the first report).
 *
 * Page lifecycle: the page allocator keeps, per frame, its kind and a generation (always, in
 * typed arrays; see PageAllocator.frameKind/frameGen); with the sanitizer on it also records the
 * allocation and free sites (short kernel-model stacks) and a free sequence number per frame.
 * A translation records the sequence number current when it was created (TLB fill, ATC fill);
 * a frame freed after that (free sequence > fill sequence) makes every later use of the
 * translation a violation. SWIOTLB slots are tracked the same way at their own 2 KiB size.
 *
 * Cost: off, a null check at each hook (no allocation, no BigInt). On, a few typed-array loads
 * per access; reports (strings) are built only when something is wrong.
 */

import { findSourceMap } from 'node:module';
import type { PageAllocator } from './page-alloc.ts';

/** What the sanitizer does: nothing, collect reports, or stop the run at the first. */
export type SanitizeMode = 'off' | 'report' | 'panic';

/** The modes, for validation and help texts. */
export const SANITIZE_MODES: readonly SanitizeMode[] = ['off', 'report', 'panic'];

/** Kind of a tracked memory unit (frame or SWIOTLB slot); 0 = free. */
export const MEM_FREE = 0;
/** A page-allocator page of no more specific kind (a driver's buffer, a scenario's page). */
export const MEM_PAGE = 1;
/** Coherent DMA memory (dma_alloc_coherent). */
export const MEM_COHERENT = 2;
/** A SWIOTLB bounce slot (or the pool holding them). */
export const MEM_SWIOTLB = 3;
/** A page-table page written by io-pgtable. */
export const MEM_PGTABLE = 4;
/** A stream-table or context-descriptor page. */
export const MEM_CONFIG = 5;
/** An SMMU queue page (command, event, PRI queue). */
export const MEM_QUEUE = 6;
/** A process page (SVA; reserved for the process model). */
export const MEM_PROCESS = 7;

/** Names of the MEM_* kinds, by value. */
export const MEM_KIND_NAMES: readonly string[] = [
  'free',
  'page',
  'coherent DMA',
  'SWIOTLB slot',
  'page-table page',
  'stream-table/CD page',
  'queue page',
  'process page',
];

/** The kind an allocation's owner tag implies (the kernel model's tags: see the allocators' callers). */
export function memKindOfOwner(owner: string): number {
  if (owner === 'io-pgtable' || owner.includes('pgtable')) return MEM_PGTABLE;
  if (owner.includes('strtab') || owner.includes('cdtab')) return MEM_CONFIG;
  if (owner.includes('queue') || /\b(cmdq|evtq|priq)\b/.test(owner)) return MEM_QUEUE;
  if (owner === 'swiotlb') return MEM_SWIOTLB;
  if (owner.startsWith('dma-coherent')) return MEM_COHERENT;
  if (owner.startsWith('process')) return MEM_PROCESS;
  return MEM_PAGE;
}

/** How a transaction's translation was obtained (DmaOrigin.origin). */
export const ORIGIN_BYPASS = 0;
/** A walk done for this transaction (fresh). */
export const ORIGIN_WALK = 1;
/** A TLB entry filled earlier. */
export const ORIGIN_TLB = 2;
/** An ATC entry of an ATS endpoint (a Translated transaction). */
export const ORIGIN_ATC = 3;
/** An MSI write (no translation, or a translation the device does not keep). */
export const ORIGIN_MSI = 4;

const ORIGIN_NAMES = ['bypass', 'walk', 'TLB entry', 'ATC entry', 'MSI'];

/** What the check needs to know of the translation behind an access (PortResult implements it). */
export interface DmaOrigin {
  /** ORIGIN_*. */
  origin: number;
  /** Sanitizer sequence number when the translation was created (DmaSanitizer.seq). */
  fillSeq: number;
  /** Virtual time of the fill, ns. */
  fillTime: number;
  /** TLB context of the entry: VMID << 16 | ASID (-1 unknown). */
  ctx: number;
  /** Physical address of the last descriptor the walk behind it read (-1 unknown). */
  tbl: number;
}

/** Violation classes. */
export type DmaViolationKind =
  /** An access to a page freed after the translation that allowed it was created. */
  | 'use-after-free'
  /** An access to a free page through a translation created while it was free (the driver mapped freed memory). */
  | 'access-to-free-page'
  /** A device write into a page-table, stream-table/CD or queue page. */
  | 'write-to-table'
  /** An SMMU table walk read a freed page. */
  | 'walk-of-freed-table'
  /** A translation was cached from a page-table page that was freed since (walk-cache entry outlived its table). */
  | 'freed-table-translation'
  /** An access inside the documented window between a lazy unmap and the flush queue's flush. */
  | 'lazy-flush-window'
  /** Two cached translations overlap (a break-before-make step was skipped). */
  | 'break-before-make';

/** One report, as printed and as listed by `--json`. */
export interface DmaViolation {
  readonly kind: DmaViolationKind;
  /** Virtual time of the access, ns. */
  readonly time: number;
  /** The device (or the SMMU, for a walk). */
  readonly device: string;
  readonly write: boolean;
  readonly size: number;
  readonly pa: number;
  /** Input address of the access, or -1 (bypass, MSI, walk). */
  readonly iova: number;
  /** StreamID, or -1. */
  readonly sid: number;
  /** SubstreamID (PASID), or -1. */
  readonly ssid: number;
  /** 'TLB entry', 'ATC entry', 'walk', 'bypass', 'MSI'. */
  readonly origin: string;
  /** When the translation was created (ns), or -1. */
  readonly fillTime: number;
  readonly asid: number;
  readonly vmid: number;
  /** Kind of the page now ('free', 'page-table page', ...). */
  readonly pageKind: string;
  /** The invalidation that was missing or late, in words (empty if unknown). */
  readonly missing: string;
  /** Allocation and free of the page: time (ns, -1 unknown) and kernel-model call site. */
  readonly allocTime: number;
  readonly allocSite: string;
  readonly freeTime: number;
  readonly freeSite: string;
  /** Times the same violation (kind, device, page, translation) happened; the first is reported. */
  count: number;
  /** The whole report, KASAN style (first line "BUG: ..."). */
  readonly text: string;
}

/** A note of what the kernel or the SMMU did, for naming the missing step. */
interface Note {
  time: number;
  /** 'unmap' | 'tlbi' | 'atc-inv' | 'cfgi' | 'ste' | 'free' */
  what: string;
  asid: number;
  vmid: number;
  sid: number;
  ssid: number;
  addr: number;
  size: number;
  lazy: boolean;
  flushed: boolean;
  text: string;
}

const MAX_NOTES = 512;
const hex = (n: number): string => `0x${n.toString(16)}`;

/** Per-unit lifecycle arrays of one tracked region (the page pool, or a SWIOTLB pool's slots). */
class Track {
  readonly end: number;
  /**
   * Per-unit records, grown on demand (a pool's units are touched from its low end as it is
   * used: tracking a whole 1 GiB of RAM up front costs more than most runs touch). A unit
   * beyond `cap` has never been allocated or freed.
   */
  private cap = 0;
  freeSeqs = new Float64Array(0);
  allocSites = new Int32Array(0);
  freeSites = new Int32Array(0);
  allocTimes = new Float64Array(0);
  freeTimes = new Float64Array(0);
  /** Sub-pools: the device each unit is mapped for (a site-table id), or -1 (anyone). */
  owners = new Int32Array(0);
  constructor(
    readonly base: number,
    readonly unit: number,
    readonly n: number,
    /** MEM_* per unit (MEM_FREE = free). */
    readonly kind: Uint8Array,
    /** Generation per unit (changes at every allocation and free). */
    readonly gen: Uint32Array,
  ) {
    this.end = base + unit * n;
  }

  /** Room for units [0, end). */
  ensure(end: number): void {
    if (end <= this.cap) return;
    const cap = Math.min(this.n, Math.max(end, this.cap * 2, 1024));
    const grow = <T extends Float64Array | Int32Array>(a: T, make: (n: number) => T, fill: number): T => {
      const b = make(cap);
      b.set(a);
      if (fill !== 0) b.fill(fill, this.cap);
      return b;
    };
    this.freeSeqs = grow(this.freeSeqs, (k) => new Float64Array(k), 0);
    this.allocSites = grow(this.allocSites, (k) => new Int32Array(k), -1);
    this.freeSites = grow(this.freeSites, (k) => new Int32Array(k), -1);
    this.allocTimes = grow(this.allocTimes, (k) => new Float64Array(k), -1);
    this.freeTimes = grow(this.freeTimes, (k) => new Float64Array(k), -1);
    this.owners = grow(this.owners, (k) => new Int32Array(k), -1);
    this.cap = cap;
  }

  /** The free sequence number of unit u's last free (0: never freed). */
  freeSeq(u: number): number {
    return u < this.cap ? this.freeSeqs[u]! : 0;
  }
  allocSite(u: number): number {
    return u < this.cap ? this.allocSites[u]! : -1;
  }
  freeSite(u: number): number {
    return u < this.cap ? this.freeSites[u]! : -1;
  }
  allocTime(u: number): number {
    return u < this.cap ? this.allocTimes[u]! : -1;
  }
  freeTime(u: number): number {
    return u < this.cap ? this.freeTimes[u]! : -1;
  }
  owner(u: number): number {
    return u < this.cap ? this.owners[u]! : -1;
  }
}

/**
 * One frame of an allocation or free site as a report shows it: "Lab.allocPages (api/lab.ts:493)",
 * the position source-mapped when the code runs from TypeScript; null for frames that say
 * nothing: the allocators' own (sources and build alike), Node's, other packages' (an installed
 * iommu-lab is under node_modules: its frames count).
 */
function frameText(c: NodeJS.CallSite): string | null {
  let file = (c.getFileName() ?? '').replace(/^file:\/\//, '');
  if (
    /\/(page-alloc|sanitizer|swiotlb)\.[jt]s$|^node:|\/node_modules\/(?!iommu-lab\/)/.test(file) ||
    file === ''
  )
    return null;
  let line = c.getLineNumber() ?? 0;
  const mapped = findSourceMap(file)?.findEntry(line - 1, (c.getColumnNumber() ?? 1) - 1);
  if (mapped && 'originalLine' in mapped) {
    line = mapped.originalLine + 1;
    file = mapped.originalSource.replace(/^file:\/\//, '');
  }
  const type = c.isToplevel() ? null : c.getTypeName();
  const fn0 = c.getFunctionName() ?? c.getMethodName();
  const fn =
    fn0 === null ? '<anonymous>' : type !== null && !fn0.startsWith(`${type}.`) ? `${type}.${fn0}` : fn0;
  const where = file.replace(/^.*\/(src|dist)\/(?=(api|arch|hw|kernel|platform|tools)\/)/, '');
  return `${c.isAsync() ? 'async ' : ''}${fn} (${where}:${line})`;
}

/**
 * The sanitizer of one machine (Machine.enableSanitizer). Hardware models call checkDma /
 * checkWalk / noteInval; the kernel model calls noteUnmap / markLazy / lazyFlushed / noteSte;
 * the page allocator and SWIOTLB call onAlloc / onFree.
 */
export class DmaSanitizer {
  /** Reports so far (report mode: all of them; panic mode: the first). */
  readonly reports: DmaViolation[] = [];
  /** The first report of a panic-mode run (the run stops there), else null. */
  panicked: DmaViolation | null = null;
  /** Called at every new report (the lab stops the run in panic mode). */
  onReport: ((r: DmaViolation) => void) | null = null;
  /**
   * Sequence number: increases at every free of a tracked unit. A translation records it when
   * filled; a unit freed since has a larger free sequence.
   */
  seq = 0;
  /** PA of the last descriptor an SMMU walk read (recorded into the TLB entry it fills). */
  lastWalkPa = -1;
  // the transaction being translated (set by the SMMU port when on), for walk reports
  txDevice = '';
  txSid = -1;
  txSsid = -1;
  txIova = -1;
  /**
   * Sequence number when the configuration (STE/CD) the transaction uses was cached
   * (Infinity: unknown). The walk's first read, at the table root the configuration names, is
   * stale if that page was freed since, even when it was reallocated.
   */
  txCfgSeq = Number.POSITIVE_INFINITY;
  private readonly pages: Track | null;
  private readonly subs: Track[] = [];
  private readonly sites: string[] = [];
  private readonly siteIndex = new Map<string, number>();
  private readonly seen = new Map<string, DmaViolation>();
  private readonly notes: Note[] = [];
  private readonly names = new Map<string, string>();
  /** A call site's text per code position (null: a frame left out). */
  private readonly frameText = new Map<string, string | null>();

  constructor(
    readonly mode: 'report' | 'panic',
    private readonly clock: { readonly now: number },
    pages: PageAllocator | null,
  ) {
    this.pages =
      pages === null ? null : new Track(pages.base, 4096, pages.totalFrames, pages.frameKind, pages.frameGen);
  }

  /** Name the device model `hw` as `name` in reports (a PCI endpoint as its Linux name, "0000:00:01.0"). */
  alias(hw: string, name: string): void {
    this.names.set(hw, name);
  }

  /** Virtual time now, ns. */
  get now(): number {
    return this.clock.now;
  }

  // ------------------------------------------------------------------ lifecycle (allocators)

  /** A block of `count` units of `track` starting at unit `u` was allocated (kind already set). */
  private alloc(t: Track, u: number, count: number): void {
    const site = this.site();
    const now = this.clock.now;
    t.ensure(u + count);
    t.allocSites.fill(site, u, u + count);
    t.allocTimes.fill(now, u, u + count);
  }

  private free(t: Track, u: number, count: number): void {
    const site = this.site();
    const now = this.clock.now;
    const s = ++this.seq;
    t.ensure(u + count);
    t.freeSeqs.fill(s, u, u + count);
    t.freeSites.fill(site, u, u + count);
    t.freeTimes.fill(now, u, u + count);
  }

  /** PageAllocator hook: frames [f, f+count) of the pool were allocated. */
  onPagesAlloc(f: number, count: number): void {
    if (this.pages !== null) this.alloc(this.pages, f, count);
  }

  /** PageAllocator hook: frames [f, f+count) of the pool were freed. */
  onPagesFree(f: number, count: number): void {
    if (this.pages !== null) this.free(this.pages, f, count);
  }

  /**
   * Track a pool carved into slots by its own allocator (SWIOTLB): `unit`-byte slots of kind
   * `kind` from `base`. Returns a handle for subAlloc/subFree.
   */
  registerPool(base: number, unit: number, n: number): number {
    this.subs.push(new Track(base, unit, n, new Uint8Array(n), new Uint32Array(n)));
    return this.subs.length - 1;
  }

  /**
   * Slots [i, i+count) of pool `h` were handed out as `kind`, for the device named `owner` (its
   * kernel name; '' for anyone): another device's access to them is a use of a reused slot.
   */
  subAlloc(h: number, i: number, count: number, kind: number, owner = ''): void {
    const t = this.subs[h]!;
    t.ensure(i + count);
    t.owners.fill(owner === '' ? -1 : this.intern(owner), i, i + count);
    t.kind.fill(kind, i, i + count);
    for (let k = i; k < i + count; k++) t.gen[k]!++;
    this.alloc(t, i, count);
  }

  /** Slots [i, i+count) of pool `h` were released. */
  subFree(h: number, i: number, count: number): void {
    const t = this.subs[h]!;
    t.kind.fill(MEM_FREE, i, i + count);
    for (let k = i; k < i + count; k++) t.gen[k]!++;
    this.free(t, i, count);
  }

  private intern(s: string): number {
    let id = this.siteIndex.get(s);
    if (id === undefined) {
      id = this.sites.length;
      this.sites.push(s);
      this.siteIndex.set(s, id);
    }
    return id;
  }

  /**
   * Kernel-model call site of the caller: a few function names, innermost first. Taken from the
   * structured call sites (no stack text is formatted), each frame's text made once per code
   * position and kept: allocations and frees repeat from a handful of places.
   */
  private site(): number {
    const prevPrepare = Error.prepareStackTrace;
    const prevLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 14;
    Error.prepareStackTrace = (_e, cs) => cs;
    let frames: NodeJS.CallSite[] | undefined;
    try {
      const holder: { stack?: unknown } = {};
      Error.captureStackTrace(holder, DmaSanitizer.prototype.site);
      frames = holder.stack as NodeJS.CallSite[] | undefined;
    } finally {
      Error.prepareStackTrace = prevPrepare;
      Error.stackTraceLimit = prevLimit;
    }
    const names: string[] = [];
    for (const c of frames ?? []) {
      const key = `${c.getFileName() ?? ''}:${c.getLineNumber() ?? 0}:${c.getColumnNumber() ?? 0}`;
      let f = this.frameText.get(key);
      if (f === undefined) {
        f = frameText(c);
        this.frameText.set(key, f);
      }
      if (f === null) continue;
      names.push(f);
      if (names.length === 4) break;
    }
    return this.intern(names.length > 0 ? names.join(' < ') : '(unknown)');
  }

  // ------------------------------------------------------------------ notes (kernel, SMMU)

  private note(n: Omit<Note, 'flushed' | 'lazy'> & { lazy?: boolean }): void {
    if (this.notes.length >= MAX_NOTES) this.notes.shift();
    this.notes.push({ lazy: false, flushed: false, ...n });
  }

  /** The kernel removed [iova, iova+size) from a domain tagged asid/vmid (-1: not that stage). */
  noteUnmap(iova: number, size: number, asid: number, vmid: number, text = ''): void {
    this.note({ time: this.clock.now, what: 'unmap', asid, vmid, sid: -1, ssid: -1, addr: iova, size, text });
  }

  /** The last unmaps of [iova, iova+size) were lazy: their IOTLB flush waits for the flush queue. */
  markLazy(iova: number, size: number): void {
    for (let i = this.notes.length - 1; i >= 0; i--) {
      const n = this.notes[i]!;
      if (n.what === 'unmap' && n.addr < iova + size && iova < n.addr + n.size) n.lazy = true;
    }
  }

  /** The flush queue flushed: every lazy unmap noted so far is covered. */
  lazyFlushed(): void {
    for (const n of this.notes) if (n.lazy) n.flushed = true;
  }

  /** The kernel wrote the STE of `sid` (a configuration change that needs a CFGI). */
  noteSte(sid: number, text = ''): void {
    this.note({
      time: this.clock.now,
      what: 'ste',
      asid: -1,
      vmid: -1,
      sid,
      ssid: -1,
      addr: 0,
      size: 0,
      text,
    });
  }

  /**
   * The SMMU executed an invalidation: what 'tlbi' | 'atc-inv' | 'cfgi'; -1 fields are
   * wildcards (all ASIDs, all SSIDs, ...); size 0 means everything.
   */
  noteInval(
    what: 'tlbi' | 'atc-inv' | 'cfgi',
    asid: number,
    vmid: number,
    sid: number,
    ssid: number,
    addr: number,
    size: number,
    text: string,
  ): void {
    this.note({ time: this.clock.now, what, asid, vmid, sid, ssid, addr, size, text });
  }

  // ------------------------------------------------------------------ checks

  private trackOf(pa: number): Track | null {
    const subs = this.subs;
    for (let i = 0; i < subs.length; i++) {
      const s = subs[i]!;
      if (pa >= s.base && pa < s.end) return s;
    }
    const p = this.pages;
    return p !== null && pa >= p.base && pa < p.end ? p : null;
  }

  /**
   * A device access of `len` bytes at `pa` (input address `iova`, -1 if none) under the
   * translation `o`. Reports what is wrong; changes nothing.
   */
  checkDma(
    device: string,
    sid: number,
    ssid: number,
    iova: number,
    pa: number,
    len: number,
    write: boolean,
    o: DmaOrigin,
  ): void {
    const t = this.trackOf(pa);
    if (t !== null) {
      const first = Math.floor((pa - t.base) / t.unit);
      const last = Math.min(t.n - 1, Math.floor((pa + Math.max(len, 1) - 1 - t.base) / t.unit));
      for (let u = first; u <= last; u++) {
        const kind = t.kind[u]!;
        const stale = t.freeSeq(u) > o.fillSeq;
        if (kind === MEM_FREE || stale) {
          this.violation(
            stale ? 'use-after-free' : 'access-to-free-page',
            device,
            sid,
            ssid,
            iova,
            pa,
            len,
            write,
            o,
            t,
            u,
          );
          return;
        }
        // a slot mapped for another device (only for devices whose kernel name is known: a
        // hardware model's own name is not the name the DMA API tagged the slot with)
        const own = t.owner(u);
        const kname = own >= 0 ? this.names.get(device) : undefined;
        if (kname !== undefined && this.sites[own] !== kname) {
          this.violation('use-after-free', device, sid, ssid, iova, pa, len, write, o, t, u);
          return;
        }
        if (write && kind >= MEM_PGTABLE && kind <= MEM_QUEUE) {
          this.violation('write-to-table', device, sid, ssid, iova, pa, len, write, o, t, u);
          return;
        }
      }
    }
    // the translation came from a table page freed since (a cached walk outliving its table)
    if (o.tbl >= 0 && o.origin === ORIGIN_TLB) {
      const p = this.pages;
      if (p !== null && o.tbl >= p.base && o.tbl < p.end) {
        const u = Math.floor((o.tbl - p.base) / 4096);
        if (p.freeSeq(u) > o.fillSeq)
          this.violation('freed-table-translation', device, sid, ssid, iova, pa, len, write, o, p, u);
      }
    }
  }

  /** An SMMU walk reads the descriptor at `pa` for the transaction in tx*. */
  checkWalk(pa: number): void {
    const root = this.lastWalkPa < 0;
    this.lastWalkPa = pa;
    const t = this.trackOf(pa);
    if (t === null) return;
    const u = Math.floor((pa - t.base) / t.unit);
    if (t.kind[u] !== MEM_FREE && !(root && t.freeSeq(u) > this.txCfgSeq)) return;
    this.violation(
      'walk-of-freed-table',
      this.txDevice,
      this.txSid,
      this.txSsid,
      this.txIova,
      pa,
      8,
      false,
      WALK_ORIGIN,
      t,
      u,
    );
  }

  /**
   * An MSI write of `len` bytes to `pa` by `device`: a write to a free page is reported. (Not
   * one into a queue page: Linux points CMD_SYNC's MSI at the command's own queue slot.)
   */
  checkMsi(device: string, sid: number, pa: number, len: number): void {
    const t = this.trackOf(pa);
    if (t === null) return;
    const u = Math.floor((pa - t.base) / t.unit);
    if (t.kind[u] === MEM_FREE) {
      MSI_ORIGIN.fillSeq = this.seq;
      this.violation('access-to-free-page', device, sid, -1, -1, pa, len, true, MSI_ORIGIN, t, u);
    }
  }

  /** A bypass access (no IOMMU in front of `device`) of `len` bytes at `pa`. */
  checkBypass(device: string, pa: number, len: number, write: boolean): void {
    BYPASS_ORIGIN.fillSeq = this.seq;
    this.checkDma(device, -1, -1, -1, pa, len, write, BYPASS_ORIGIN);
  }

  /**
   * Report a break-before-make violation found by a cache holding two entries for one access:
   * the TLB (two sizes overlapping), or, with `config`, the configuration cache (the STEs of an
   * STE.CONT span that differ).
   */
  reportConflict(
    device: string,
    sid: number,
    ssid: number,
    iova: number,
    what: string,
    config = false,
  ): void {
    device = this.names.get(device) ?? device;
    const key = `bbm|${device}|${iova}|${what}`;
    const old = this.seen.get(key);
    if (old !== undefined) {
      old.count++;
      return;
    }
    const ids = `StreamID ${hex(sid)}${ssid >= 0 ? `, PASID ${ssid}` : ''}`;
    const text = [
      config
        ? `BUG: SMMU configuration conflict: ${device} (${ids})`
        : `BUG: DMA break-before-make violation: ${device} access at IOVA ${hex(iova)} (${ids})`,
      `  ${what}`,
      config
        ? '  missing: the span rewritten as a whole before its CFGI (identical STEs, or STE.CONT cleared first): break-before-make for the configuration'
        : '  missing: the invalidation between removing the old entry and writing the new one (break-before-make)',
    ].join('\n');
    this.add(key, {
      kind: 'break-before-make',
      time: this.clock.now,
      device,
      write: false,
      size: 0,
      pa: -1,
      iova,
      sid,
      ssid,
      origin: 'TLB entry',
      fillTime: -1,
      asid: -1,
      vmid: -1,
      pageKind: '',
      missing: config ? 'consistent STE.CONT span' : 'break-before-make invalidation',
      allocTime: -1,
      allocSite: '',
      freeTime: -1,
      freeSite: '',
      count: 1,
      text,
    });
  }

  private add(key: string, r: DmaViolation): void {
    this.seen.set(key, r);
    if (this.mode === 'panic' && this.panicked !== null) return; // the run is stopping
    this.reports.push(r);
    if (this.mode === 'panic' && this.panicked === null) this.panicked = r;
    this.onReport?.(r);
  }

  private violation(
    kind0: DmaViolationKind,
    device: string,
    sid: number,
    ssid: number,
    iova: number,
    pa: number,
    len: number,
    write: boolean,
    o: DmaOrigin,
    t: Track,
    u: number,
  ): void {
    device = this.names.get(device) ?? device;
    const key = `${kind0}|${device}|${t.base + u * t.unit}|${o.fillSeq}|${o.origin}`;
    const old = this.seen.get(key);
    if (old !== undefined) {
      old.count++;
      return;
    }
    const asid = o.ctx >= 0 ? o.ctx & 0xffff : -1;
    const vmid = o.ctx >= 0 ? o.ctx >>> 16 : -1;
    const unmap = iova >= 0 ? this.findUnmap(iova, asid, vmid, o.fillTime) : null;
    let kind = kind0;
    if ((kind === 'use-after-free' || kind === 'freed-table-translation') && unmap?.lazy && !unmap.flushed)
      kind = 'lazy-flush-window';
    const missing = this.missing(kind, o, iova, sid, ssid, asid, vmid, unmap, t, u);
    const title = TITLES[kind];
    const what =
      kind === 'walk-of-freed-table'
        ? 'read of 8 bytes (table walk)'
        : `${write ? 'write' : 'read'} of ${len} bytes`;
    const ids = [
      iova >= 0 ? `IOVA ${hex(iova)}` : '',
      sid >= 0 ? `StreamID ${hex(sid)}` : '',
      ssid >= 0 ? `PASID ${ssid}` : '',
    ].filter((s) => s !== '');
    const lines = [
      `BUG: ${title}: ${device} ${what} at PA ${hex(pa)}${ids.length > 0 ? ` (${ids.join(', ')})` : ''}`,
    ];
    const ctx = [
      asid >= 0 ? `ASID ${asid}` : '',
      vmid >= 0 ? `VMID ${vmid}` : '',
      ssid >= 0 ? `PASID ${ssid}` : '',
    ]
      .filter((s) => s !== '')
      .join(', ');
    if (o.origin === ORIGIN_TLB || o.origin === ORIGIN_ATC)
      lines.push(
        `  translation: ${ORIGIN_NAMES[o.origin]} filled at virtual time ${o.fillTime} ns${ctx ? ` for ${ctx}` : ''}`,
      );
    else lines.push(`  translation: ${ORIGIN_NAMES[o.origin] ?? 'unknown'}${ctx ? ` (${ctx})` : ''}`);
    if (kind === 'lazy-flush-window')
      lines.push(
        "  the access falls in the window between a lazy (flush-queue) unmap and the queue's flush: documented behaviour of iommu.strict=0, not a caller bug",
      );
    if (missing !== '') lines.push(`  missing: ${missing}`);
    const base = t.base + u * t.unit;
    const pageKind = MEM_KIND_NAMES[t.kind[u]!] ?? 'page';
    lines.push(
      `  page: ${hex(base)} (${t.unit === 4096 ? '4 KiB frame' : `${t.unit}-byte slot`}), now ${pageKind}, generation ${t.gen[u]}`,
    );
    const allocSite = t.allocSite(u) >= 0 ? this.sites[t.allocSite(u)]! : '';
    const freeSite = t.freeSite(u) >= 0 ? this.sites[t.freeSite(u)]! : '';
    lines.push(`  allocated at t=${t.allocTime(u)} ns by: ${allocSite || '(before tracking)'}`);
    if (t.freeTime(u) >= 0) lines.push(`  freed at t=${t.freeTime(u)} ns by: ${freeSite || '(unknown)'}`);
    this.add(key, {
      kind,
      time: this.clock.now,
      device,
      write,
      size: kind === 'walk-of-freed-table' ? 8 : len,
      pa,
      iova,
      sid,
      ssid,
      origin: ORIGIN_NAMES[o.origin] ?? 'unknown',
      fillTime: o.origin === ORIGIN_TLB || o.origin === ORIGIN_ATC ? o.fillTime : -1,
      asid,
      vmid,
      pageKind,
      missing,
      allocTime: t.allocTime(u),
      allocSite,
      freeTime: t.freeTime(u),
      freeSite,
      count: 1,
      text: lines.join('\n'),
    });
  }

  /** The last unmap note covering `iova` (for the translation's context) since `since`. */
  private findUnmap(iova: number, asid: number, vmid: number, since: number): Note | null {
    for (let i = this.notes.length - 1; i >= 0; i--) {
      const n = this.notes[i]!;
      if (n.what !== 'unmap' || n.time < since) continue;
      if (iova < n.addr || iova >= n.addr + n.size) continue;
      if (asid >= 0 && n.asid >= 0 && n.asid !== asid) continue;
      if (vmid > 0 && n.vmid > 0 && n.vmid !== vmid) continue;
      return n;
    }
    return null;
  }

  private lastNote(what: string, since: number, match: (n: Note) => boolean): Note | null {
    for (let i = this.notes.length - 1; i >= 0; i--) {
      const n = this.notes[i]!;
      if (n.time < since) break;
      if (n.what === what && match(n)) return n;
    }
    return null;
  }

  /**
   * An ATC entry filled after an unmap and after an ATC_INV that covered it, but before the TLBI
   * that removed the translation from the SMMU's TLB: the endpoint's translation request got the
   * stale TLB entry because the ATC_INV came before the TLBI had completed. The step, in words
   * ('' when the notes do not show that order).
   */
  private atcRefilledBeforeTlbi(
    fill: number,
    iova: number,
    sid: number,
    ssid: number,
    asid: number,
    vmid: number,
  ): string {
    let tlbi: Note | null = null;
    let inv: Note | null = null;
    for (let i = this.notes.length - 1; i >= 0; i--) {
      const n = this.notes[i]!;
      if (n.size !== 0 && (iova < n.addr || iova >= n.addr + n.size)) continue;
      const ctx =
        (n.asid < 0 || asid < 0 || n.asid === asid) && (n.vmid <= 0 || vmid <= 0 || n.vmid === vmid);
      if (n.time > fill) {
        if (n.what === 'tlbi' && ctx) tlbi = n; // the first one after the fill
      } else if (n.what === 'atc-inv') {
        if (inv === null && (n.sid < 0 || n.sid === sid) && (n.ssid < 0 || n.ssid === ssid)) inv = n;
      } else if (n.what === 'unmap' && ctx) {
        if (inv === null || tlbi === null) return '';
        return `the ATC_INV at t=${inv.time} ns came before the TLBI at t=${tlbi.time} ns that removed the SMMU's TLB entry: the endpoint refilled its ATC at t=${fill} ns from the stale TLB entry, after the unmap at t=${n.time} ns (the ATC_INV must follow the completed TLBI)`;
      }
    }
    return '';
  }

  /** The missing (or late) step, in words. */
  private missing(
    kind: DmaViolationKind,
    o: DmaOrigin,
    iova: number,
    sid: number,
    ssid: number,
    asid: number,
    vmid: number,
    unmap: Note | null,
    t: Track,
    u: number,
  ): string {
    const freeTime = t.freeTime(u);
    if (kind === 'write-to-table')
      return 'nothing the kernel forgot: the device was allowed to write into a table the IOMMU reads (a mapping of a table page)';
    if (kind === 'walk-of-freed-table') {
      const ste = sid >= 0 ? this.lastNote('ste', 0, (n) => n.sid === sid) : null;
      if (ste !== null) {
        const cfgi = this.lastNote('cfgi', ste.time, (n) => n.sid < 0 || n.sid === sid);
        if (cfgi === null) {
          const cmd = ste.text.startsWith('CD') ? 'CFGI_CD' : 'CFGI_STE';
          return `no ${cmd} for StreamID ${hex(sid)} after its ${ste.text || 'STE'} was rewritten at t=${ste.time} ns: the SMMU still walks the old configuration's tables (freed at t=${freeTime} ns)`;
        }
      }
      return `the table page was freed at t=${freeTime} ns while the SMMU could still walk it (no invalidation of the configuration or walk caches that reach it before the free)`;
    }
    const own = t.owner(u);
    if (own >= 0 && kind === 'use-after-free' && freeTime >= 0 && t.kind[u] !== MEM_FREE)
      return `the slot was released at t=${freeTime} ns and is now mapped for ${this.sites[own]}: the device still used its old bus address (no dma_unmap ordering with the device's last access)`;
    if (kind === 'access-to-free-page')
      return `the page was freed at t=${freeTime} ns while still mapped for the device (no unmap before the free)`;
    if (kind === 'freed-table-translation')
      return `the page-table page ${hex(o.tbl)} that this translation was walked through was freed at t=${this.pages!.freeTime(Math.floor((o.tbl - this.pages!.base) / 4096))} ns before a TLBI removed the entries cached from it`;
    // use-after-free / lazy window
    if (o.origin === ORIGIN_ATC) {
      const at = unmap?.time ?? o.fillTime;
      const inv = this.lastNote(
        'atc-inv',
        at,
        (n) =>
          (n.sid < 0 || n.sid === sid) &&
          (n.ssid < 0 || n.ssid === ssid) &&
          (n.size === 0 || (iova >= n.addr && iova < n.addr + n.size)),
      );
      const from = unmap !== null ? `the unmap at t=${unmap.time} ns` : `the free at t=${freeTime} ns`;
      const early =
        inv === null && unmap === null
          ? this.atcRefilledBeforeTlbi(o.fillTime, iova, sid, ssid, asid, vmid)
          : '';
      if (early !== '') return early;
      if (inv === null)
        return `no ATC_INV for StreamID ${hex(sid)}${ssid >= 0 ? ` PASID ${ssid}` : ' (no PASID)'} covering IOVA ${hex(iova)} between ${from} and this access`;
      return `the ATC_INV at t=${inv.time} ns came after ${from}`;
    }
    if (o.origin === ORIGIN_TLB) {
      const ctx = asid >= 0 ? `ASID ${asid}` : `VMID ${vmid}`;
      if (unmap === null)
        return `no unmap of IOVA ${hex(iova)} (${ctx}) was recorded before the free at t=${freeTime} ns: the page was freed while mapped`;
      const inv = this.lastNote(
        'tlbi',
        unmap.time,
        (n) =>
          (n.asid < 0 || asid < 0 || n.asid === asid) &&
          (n.vmid < 0 || vmid < 0 || n.vmid === vmid) &&
          (n.size === 0 || (iova >= n.addr && iova < n.addr + n.size)),
      );
      if (inv === null)
        return `no TLBI for IOVA ${hex(iova)} ${ctx} between the unmap at t=${unmap.time} ns and this access (page freed at t=${freeTime} ns)`;
      return `the TLBI at t=${inv.time} ns did not remove the entry (wrong scope?) after the unmap at t=${unmap.time} ns`;
    }
    return '';
  }

  /** All reports as text, one block each (what report mode prints at the end). */
  format(): string {
    return this.reports.map((r) => (r.count > 1 ? `${r.text}\n  (${r.count} times)` : r.text)).join('\n\n');
  }
}

const TITLES: Record<DmaViolationKind, string> = {
  'use-after-free': 'DMA use-after-free',
  'access-to-free-page': 'DMA to a free page',
  'write-to-table': 'DMA write into an IOMMU table',
  'walk-of-freed-table': 'SMMU walk of a freed page',
  'freed-table-translation': 'DMA through a freed page table',
  'lazy-flush-window': 'DMA in lazy-flush window',
  'break-before-make': 'DMA break-before-make violation',
};

const WALK_ORIGIN: DmaOrigin = {
  origin: ORIGIN_WALK,
  fillSeq: Number.POSITIVE_INFINITY,
  fillTime: -1,
  ctx: -1,
  tbl: -1,
};
const BYPASS_ORIGIN: DmaOrigin = { origin: ORIGIN_BYPASS, fillSeq: 0, fillTime: -1, ctx: -1, tbl: -1 };
const MSI_ORIGIN: DmaOrigin = { origin: ORIGIN_MSI, fillSeq: 0, fillTime: -1, ctx: -1, tbl: -1 };
