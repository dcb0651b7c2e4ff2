/**
 * A generic platform DMA master behind an SMMU (v3 or v2: any `DmaIommu`): it reads, writes and copies through its
 * StreamID (and SubstreamID, if any) via the SMMU's DMA port, one transaction per chunk of at
 * most `txBytes`, one transaction every `txNs` of virtual time per operation.
 *
 * Stalls (IHI 0070 §3.12.2). When the SMMU stalls a transaction (PORT_STALLED + STAG) the
 * transaction is not finished: the SMMU later calls `stallCompleted` exactly once (RESUME
 * Retry → the new translation; RESUME Abort / STALL_TERM / disable → terminated). A
 * stall-capable master (`dma-can-stall` in the device tree) simply waits; several of its
 * transactions may be stalled at once. A master that cannot stall gives up after
 * `completionTimeoutNs` (as a PCIe or AXI completion timeout would) and reports an error;
 * when the SMMU finally completes the abandoned transaction its data is dropped.
 *
 * `StreamMaster` is the per-StreamID transaction layer shared by the device models (this
 * master, the GPU): it issues a transaction, moves the bytes on success, and parks stalled
 * transactions until the SMMU completes them.
 */

import type { Machine } from '../../platform/machine.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_WRITE,
  type DmaIommu,
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PORT_STALLED,
  PORT_STATUS_NAMES,
  PortResult,
  type StallListener,
} from '../smmu-common/port.ts';

const PAGE = 4096;

/** Who waits for a stalled transaction (a DMA operation, a GPU warp, a command fetcher). */
export interface StallWaiter {
  /**
   * The held transaction finished: `status` PORT_OK (bytes moved), PORT_RAZWI (read as zero /
   * write ignored) or PORT_FAULT / PORT_ABORT (terminated; a read buffer is zeroed). `token`
   * is what the waiter passed to `access`, so that it can tell a completion meant for work it
   * has since abandoned (reset, timeout).
   */
  stallDone(status: number, token: number, fault: number): void;
}

/** A transaction held in the SMMU, as the master remembers it. */
interface Held {
  waiter: StallWaiter;
  token: number;
  iova: number;
  ssid: number;
  buf: Uint8Array;
  off: number;
  len: number;
  write: boolean;
  /** The master stopped waiting (cannot stall: completion timeout); drop the data. */
  abandoned: boolean;
  timer: number;
}

export interface StreamMasterStats {
  transactions: number;
  ok: number;
  /** Transactions terminated with an abort (fault, abort, abandoned stall). */
  faults: number;
  /** Transactions completed as RAZ/WI (the master cannot tell them from success). */
  razwi: number;
  /** Transactions the SMMU stalled. */
  stalls: number;
  /** Stalled transactions later completed successfully (RESUME Retry). */
  retried: number;
  /** Stalled transactions later terminated (RESUME Abort, STALL_TERM, disable, re-fault). */
  terminated: number;
  /** Stalls the master gave up waiting for (cannot stall). */
  timeouts: number;
  /** Completions that arrived for a transaction the master had abandoned. */
  late: number;
  /** Memory accesses at the output address that the bus rejected. */
  busErrors: number;
}

export interface StreamMasterOptions {
  name?: string;
  /** SubstreamID of every transaction, or -1 (default) for none. */
  ssid?: number;
  /** The device tolerates stalled transactions (`dma-can-stall`). Default true. */
  canStall?: boolean;
  /** A master that cannot stall gives up on a stalled transaction after this long. Default 100 µs. */
  completionTimeoutNs?: number;
  /** Register with the SMMU for stall completions. Default true. */
  attach?: boolean;
}

/** One StreamID's transactions through an SMMU's DMA port. */
export class StreamMaster implements StallListener {
  readonly name: string;
  readonly ssid: number;
  readonly canStall: boolean;
  readonly completionTimeoutNs: number;
  readonly stats: StreamMasterStats = {
    transactions: 0,
    ok: 0,
    faults: 0,
    razwi: 0,
    stalls: 0,
    retried: 0,
    terminated: 0,
    timeouts: 0,
    late: 0,
    busErrors: 0,
  };
  /** Result of the last transaction issued (or completed). */
  readonly out = new PortResult();
  /** STAG of the last transaction that stalled. */
  lastStag = -1;
  /** Called when the number of held transactions changes (for a STALLED status bit). */
  onStallCountChange: ((count: number) => void) | null = null;
  private readonly held = new Map<number, Held>();

  constructor(
    readonly smmu: DmaIommu,
    readonly sid: number,
    opts: StreamMasterOptions = {},
  ) {
    this.name = opts.name ?? `master-${sid}`;
    this.ssid = opts.ssid ?? -1;
    this.canStall = opts.canStall ?? true;
    this.completionTimeoutNs = opts.completionTimeoutNs ?? 100_000;
    if (opts.attach ?? true) smmu.upstream.attach(sid, this);
  }

  get machine(): Machine {
    return this.smmu.machine;
  }

  /** Transactions of this master currently held in the SMMU (as the master knows it). */
  get stalledCount(): number {
    return this.held.size;
  }

  /** STAGs of the held transactions, in the order they stalled. */
  stalledTags(): number[] {
    return [...this.held.keys()];
  }

  /**
   * One transaction: translate `iova` and, on success, move `len` bytes (within one 4 KiB
   * page) between buf[off..] and memory. Returns PORT_OK / PORT_BYPASS / PORT_RAZWI (done),
   * PORT_FAULT / PORT_ABORT (terminated; a read buffer is zeroed), or PORT_STALLED: the
   * waiter's `stallDone` will be called later with `token` (stall-capable masters), or the
   * transaction is abandoned after the completion timeout (masters that cannot stall).
   * `ssid` tags this transaction with a SubstreamID (default: the master's own, -1 for none).
   */
  access(
    waiter: StallWaiter,
    token: number,
    iova: number,
    accessKind: number,
    buf: Uint8Array,
    off: number,
    len: number,
    ssid = this.ssid,
  ): number {
    const write = (accessKind & ACCESS_WRITE) !== 0;
    const r = this.out;
    const s = this.stats;
    s.transactions++;
    const st = this.smmu.port.translate(this.sid, ssid, iova, accessKind, r);
    if (st === PORT_OK || st === PORT_BYPASS) {
      const san = this.machine.mem.sanitizer;
      if (san !== null) san.checkDma(this.name, this.sid, ssid, iova, r.oa, len, write, r);
      if (this.move(r.oa, buf, off, len, write)) s.ok++;
      else {
        if (!write) buf.fill(0, off, off + len);
        s.faults++;
        r.status = PORT_FAULT;
        return PORT_FAULT;
      }
      return st;
    }
    if (st === PORT_RAZWI) {
      if (!write) buf.fill(0, off, off + len);
      s.razwi++;
      return st;
    }
    if (st === PORT_STALLED) {
      s.stalls++;
      const stag = r.stag;
      this.lastStag = stag;
      const h: Held = { waiter, token, iova, ssid, buf, off, len, write, abandoned: false, timer: 0 };
      this.held.set(stag, h);
      if (!this.canStall) {
        h.timer = this.machine.sched.schedule(
          this.completionTimeoutNs,
          () => this.timeout(stag, h),
          `${this.name} completion timeout`,
        );
      }
      this.traceStall(stag, iova, write, r.fault);
      this.onStallCountChange?.(this.held.size);
      return st;
    }
    // PORT_FAULT / PORT_ABORT: the abort response reaches the device.
    if (!write) buf.fill(0, off, off + len);
    s.faults++;
    return st;
  }

  /** UpstreamMaster: the SMMU finished a stalled transaction. */
  stallCompleted(sid: number, stag: number, status: number, result: PortResult): void {
    const h = this.held.get(stag);
    if (h === undefined || sid !== this.sid) return; // not ours: nothing to do
    this.held.delete(stag);
    const s = this.stats;
    let st = status;
    if (h.timer !== 0) this.machine.sched.cancel(h.timer);
    if (status === PORT_OK || status === PORT_BYPASS) {
      const san = this.machine.mem.sanitizer;
      if (san !== null && !h.abandoned)
        san.checkDma(this.name, this.sid, h.ssid, h.iova, result.oa, h.len, h.write, result);
      if (h.abandoned) {
        s.late++;
      } else if (this.move(result.oa, h.buf, h.off, h.len, h.write)) {
        s.retried++;
        s.ok++;
      } else {
        st = PORT_FAULT;
        s.faults++;
      }
    } else if (status === PORT_RAZWI) {
      if (h.abandoned) s.late++;
      else if (!h.write) h.buf.fill(0, h.off, h.off + h.len);
      s.terminated++;
      s.razwi++;
    } else {
      if (h.abandoned) s.late++;
      else {
        if (!h.write) h.buf.fill(0, h.off, h.off + h.len);
        s.faults++;
      }
      s.terminated++;
    }
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'dma.stall.done',
        `stag ${stag} iova 0x${h.iova.toString(16)}: ${PORT_STATUS_NAMES[st] ?? st}${h.abandoned ? ' (abandoned)' : ''}`,
        { sid, stag, iova: `0x${h.iova.toString(16)}`, status: st, abandoned: h.abandoned },
        'debug',
      );
    }
    this.onStallCountChange?.(this.held.size);
    if (!h.abandoned) h.waiter.stallDone(st, h.token, result.fault);
  }

  /** Stop listening to the SMMU (the device is removed). */
  detach(): void {
    this.smmu.upstream.detach(this.sid);
  }

  private timeout(stag: number, h: Held): void {
    h.timer = 0;
    if (this.held.get(stag) !== h || h.abandoned) return;
    h.abandoned = true;
    this.stats.timeouts++;
    this.stats.faults++;
    if (!h.write) h.buf.fill(0, h.off, h.off + h.len);
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'dma.timeout',
        `stalled transaction stag ${stag} at 0x${h.iova.toString(16)} timed out (device cannot stall)`,
        { sid: this.sid, stag, iova: `0x${h.iova.toString(16)}` },
        'warn',
      );
    }
    h.waiter.stallDone(PORT_ABORT, h.token, 0);
  }

  /** The data phase at the output address. 4-byte writes use a register-width access (MSIs). */
  private move(pa: number, buf: Uint8Array, off: number, len: number, write: boolean): boolean {
    const mem = this.machine.mem;
    let rc: number;
    if (write && len === 4 && (pa & 3) === 0) {
      rc = mem.write32(pa, buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24));
    } else rc = write ? mem.writeBytes(pa, buf, off, len) : mem.readBytes(pa, buf, off, len);
    if (rc !== 0) this.stats.busErrors++;
    return rc === 0;
  }

  private traceStall(stag: number, iova: number, write: boolean, fault: number): void {
    const t = this.machine.trace;
    if (!t.enabled) return;
    t.emit(
      this.name,
      'dma.stalled',
      `${write ? 'write' : 'read'} at 0x${iova.toString(16)} stalled (stag ${stag}, event 0x${fault.toString(16)})`,
      { sid: this.sid, stag, iova: `0x${iova.toString(16)}`, write, fault },
      'debug',
    );
  }
}

// ------------------------------------------------------------------------------ the master

export type DmaOpKind = 'read' | 'write' | 'copy';

/** Transaction attributes of one operation. */
export interface DmaOpAttrs {
  /** SubstreamID (PASID) of every transaction, or -1 for none. Default: the master's. */
  ssid?: number;
  /** Privileged transactions (PnU = 1). */
  priv?: boolean;
  /** Instruction fetch (InD = 1) for reads; writes are always data accesses. */
  exec?: boolean;
}

/** One read / write / copy in flight or finished. */
export class DmaOp implements StallWaiter {
  state: 'running' | 'done' | 'failed' = 'running';
  /** Bytes completed (for a copy: written to the destination). */
  bytesDone = 0;
  /** Port status that failed the operation (PORT_FAULT / PORT_ABORT), else PORT_OK. */
  status = PORT_OK;
  /** Bus address of the failing transaction, or -1. */
  errorAddr = -1;
  /** Event number behind the failure (0 if unknown). */
  fault = 0;
  /** A transaction of this op is stalled in the SMMU right now. */
  stalled = false;
  /** Times this op was stalled. */
  stalls = 0;
  /** Virtual time the op finished, or -1. */
  finishedAt = -1;
  /** For 'read', the bytes read; for 'copy', the staging buffer of the current chunk. */
  readonly data: Uint8Array;
  onDone: ((op: DmaOp) => void) | null = null;
  /** SubstreamID of the op's transactions, or -1. */
  readonly ssid: number;
  private readonly readAccess: number;
  private readonly writeAccess: number;
  /** For a copy: the current chunk has been read and waits to be written. */
  private haveChunk = false;
  private chunk = 0;
  private readonly step = () => this.run();

  constructor(
    private readonly master: PlatformDmaMaster,
    readonly kind: DmaOpKind,
    /** Source bus address (read, copy), or -1. */
    readonly src: number,
    /** Destination bus address (write, copy), or -1. */
    readonly dst: number,
    readonly len: number,
    payload: Uint8Array | null,
    /** Per-operation transaction attributes (default: the master's). */
    attrs: DmaOpAttrs = {},
  ) {
    this.ssid = attrs.ssid ?? master.sm.ssid;
    const extra = (attrs.priv ? ACCESS_PRIV : 0) | (attrs.exec ? ACCESS_EXEC : 0);
    this.readAccess = master.readAccess | extra;
    this.writeAccess = master.writeAccess | (attrs.priv ? ACCESS_PRIV : 0);
    if (kind === 'copy') this.data = new Uint8Array(Math.min(master.txBytes, len));
    else this.data = payload ?? new Uint8Array(len);
  }

  /** Schedule the next transaction. */
  kick(): void {
    this.master.machine.sched.schedule(this.master.txNs, this.step, `${this.master.name} dma`);
  }

  private run(): void {
    if (this.state !== 'running') return;
    if (this.bytesDone >= this.len) {
      this.finish(PORT_OK, -1, 0);
      return;
    }
    const m = this.master;
    const done = this.bytesDone;
    const tx = m.txBytes;
    let st: number;
    if (this.kind === 'copy') {
      if (!this.haveChunk) {
        const a = this.src + done;
        this.chunk = Math.min(this.len - done, tx - (a % tx), PAGE - (a % PAGE));
        const b = this.dst + done;
        this.chunk = Math.min(this.chunk, tx - (b % tx), PAGE - (b % PAGE));
        st = m.sm.access(this, 0, a, this.readAccess, this.data, 0, this.chunk, this.ssid);
      } else {
        st = m.sm.access(this, 1, this.dst + done, this.writeAccess, this.data, 0, this.chunk, this.ssid);
      }
    } else {
      const base = this.kind === 'read' ? this.src : this.dst;
      const a = base + done;
      this.chunk = Math.min(this.len - done, tx - (a % tx), PAGE - (a % PAGE));
      st = m.sm.access(
        this,
        0,
        a,
        this.kind === 'read' ? this.readAccess : this.writeAccess,
        this.data,
        done,
        this.chunk,
        this.ssid,
      );
    }
    if (st === PORT_STALLED) {
      this.stalled = true;
      this.stalls++;
      return;
    }
    this.advance(st, m.sm.out.fault);
  }

  stallDone(status: number, _token: number, fault: number): void {
    this.stalled = false;
    if (this.state !== 'running') return;
    this.advance(status, fault);
  }

  private advance(st: number, fault: number): void {
    const copyRead = this.kind === 'copy' && !this.haveChunk;
    if (st === PORT_FAULT || st === PORT_ABORT) {
      const base = this.kind === 'read' || copyRead ? this.src : this.dst;
      this.finish(st, base + this.bytesDone, fault);
      return;
    }
    if (copyRead) this.haveChunk = true;
    else {
      this.haveChunk = false;
      this.bytesDone += this.chunk;
    }
    this.kick();
  }

  private finish(status: number, errorAddr: number, fault: number): void {
    this.state = status === PORT_OK ? 'done' : 'failed';
    this.status = status;
    this.errorAddr = errorAddr;
    this.fault = fault;
    const m = this.master;
    this.finishedAt = m.machine.sched.now;
    m.finished(this);
    this.onDone?.(this);
  }
}

export interface PlatformDmaMasterOptions extends StreamMasterOptions {
  /** Bytes per transaction (power of two, 4..4096). Default 4096. */
  txBytes?: number;
  /** Virtual ns between two transactions of one operation. Default 100. */
  txNs?: number;
  /** Transactions are privileged (ACCESS_PRIV). Default false. */
  privileged?: boolean;
}

export interface PlatformDmaMasterStats {
  started: number;
  completed: number;
  failed: number;
}

/**
 * A platform device that masters DMA through one StreamID: a programmable stand-in for
 * display controllers, crypto engines, camera ISPs. Operations run concurrently; each issues
 * its transactions in order.
 */
export class PlatformDmaMaster {
  readonly name: string;
  readonly sm: StreamMaster;
  readonly txBytes: number;
  readonly txNs: number;
  readonly readAccess: number;
  readonly writeAccess: number;
  readonly stats: PlatformDmaMasterStats = { started: 0, completed: 0, failed: 0 };
  private readonly active = new Set<DmaOp>();

  constructor(smmu: DmaIommu, sid: number, opts: PlatformDmaMasterOptions = {}) {
    this.name = opts.name ?? `dma-master-${sid}`;
    this.sm = new StreamMaster(smmu, sid, { ...opts, name: this.name });
    const tx = opts.txBytes ?? PAGE;
    if (!(tx >= 4 && tx <= PAGE && (tx & (tx - 1)) === 0)) {
      throw new RangeError(`${this.name}: txBytes ${tx} must be a power of two in 4..4096`);
    }
    this.txBytes = tx;
    this.txNs = opts.txNs ?? 100;
    const priv = opts.privileged ? ACCESS_PRIV : 0;
    this.readAccess = priv;
    this.writeAccess = ACCESS_WRITE | priv;
  }

  get machine(): Machine {
    return this.sm.machine;
  }

  get sid(): number {
    return this.sm.sid;
  }

  /** Operations not finished yet. */
  get inFlight(): number {
    return this.active.size;
  }

  /** Transactions of this master held in the SMMU right now. */
  get stalledCount(): number {
    return this.sm.stalledCount;
  }

  /** Read `len` bytes at bus address `iova` into op.data. */
  read(iova: number, len: number, onDone?: (op: DmaOp) => void, attrs?: DmaOpAttrs): DmaOp {
    return this.start(new DmaOp(this, 'read', iova, -1, len, null, attrs), onDone);
  }

  /** Write `data` at bus address `iova`. */
  write(iova: number, data: Uint8Array, onDone?: (op: DmaOp) => void, attrs?: DmaOpAttrs): DmaOp {
    return this.start(new DmaOp(this, 'write', -1, iova, data.length, data, attrs), onDone);
  }

  /** Copy `len` bytes from `src` to `dst` (bus addresses), chunk by chunk: read, then write. */
  copy(src: number, dst: number, len: number, onDone?: (op: DmaOp) => void, attrs?: DmaOpAttrs): DmaOp {
    return this.start(new DmaOp(this, 'copy', src, dst, len, null, attrs), onDone);
  }

  /** Called by an op when it finishes. */
  finished(op: DmaOp): void {
    this.active.delete(op);
    if (op.state === 'done') this.stats.completed++;
    else this.stats.failed++;
    const t = this.machine.trace;
    if (t.enabled) {
      const ok = op.state === 'done';
      t.emit(
        this.name,
        ok ? 'dma.done' : 'dma.error',
        ok
          ? `${op.kind} of ${op.len} bytes done`
          : `${op.kind} failed at 0x${op.errorAddr.toString(16)} after ${op.bytesDone} bytes: ${PORT_STATUS_NAMES[op.status]}`,
        { kind: op.kind, bytes: op.bytesDone, error: !ok },
        ok ? 'info' : 'err',
      );
    }
  }

  private start(op: DmaOp, onDone?: (op: DmaOp) => void): DmaOp {
    if (onDone) op.onDone = onDone;
    this.active.add(op);
    this.stats.started++;
    op.kick();
    return op;
  }
}

export { PORT_ABORT, PORT_FAULT, PORT_OK, PORT_RAZWI, PORT_STALLED };
