// The DMA port every SMMU model offers its client devices, and what a device model needs to
// know of the IOMMU in front of it. A device written against `DmaIommu` (the platform DMA
// master, the GPU) sits behind an SMMUv3 or an SMMUv2 without knowing which.
//
// A transaction is one synchronous call, `port.translate(sid, ssid, iova, access, out)`, which
// returns the outcome in `out` (a caller-owned PortResult, reused: nothing allocates):
//   PORT_OK / PORT_BYPASS          -> out.oa is the output address;
//   PORT_ABORT / PORT_FAULT         -> terminated, the device sees an abort (bus error);
//   PORT_RAZWI                      -> terminated, reads as zero and writes are ignored;
//   PORT_STALLED                    -> the transaction faulted and is *held* by the SMMU (out.stag
//                                      names it). The device must not consider it finished: the
//                                      SMMU later calls `StallListener.stallCompleted` exactly
//                                      once, from the scheduler, when software resumes (retry)
//                                      or terminates it.

import type { Machine } from '../../platform/machine.ts';
import {
  type DmaOrigin,
  type DmaSanitizer,
  ORIGIN_BYPASS,
  ORIGIN_TLB,
  ORIGIN_WALK,
} from '../../platform/sanitizer.ts';
import type { TranslationResult } from './translate-types.ts';

export { ACCESS_EXEC, ACCESS_PRIV, ACCESS_READ, ACCESS_WRITE } from './translate-types.ts';

/** Transaction outcomes. */
export const PORT_OK = 0;
/** Not translated: output = input (SMMU disabled or bypassing, a bypass stream). */
export const PORT_BYPASS = 1;
/** Aborted without translation (disabled with abort, an abort/fault stream), no fault record. */
export const PORT_ABORT = 2;
/** Terminated by a fault or configuration error, abort returned to the device. */
export const PORT_FAULT = 3;
/** Terminated, completing with reads-as-zero / writes ignored (SMMUv3 CD.A == 0, SMMUv2 CFRE == 0). */
export const PORT_RAZWI = 4;
/** Held by the SMMU's stall model until software resumes or terminates it (out.stag identifies it). */
export const PORT_STALLED = 5;

export const PORT_STATUS_NAMES = ['ok', 'bypass', 'abort', 'fault', 'raz/wi', 'stalled'] as const;

/** Outcome of one transaction; allocate once per device and reuse. */
export class PortResult implements DmaOrigin {
  /** PORT_OK / PORT_BYPASS / PORT_ABORT / PORT_FAULT / PORT_RAZWI (/ PORT_STALLED). */
  status = PORT_OK;
  /** Output physical address (PORT_OK, PORT_BYPASS). */
  oa = 0;
  /** log2 of the size of the translated region containing oa (12 for bypass). */
  pageShift = 12;
  /** Permission mask of the translation (see translate-types PERM_*). */
  perm = 0;
  /** Memory attributes (engine encoding). */
  attr = 0;
  /**
   * The translation fault (arch/vmsa/faults.ts codes, which are SMMUv3's event numbers) of a
   * PORT_FAULT / PORT_RAZWI / PORT_STALLED transaction, also when no record was written.
   */
  fault = 0;
  /** A fault record was written for this transaction (SMMUv3 event, SMMUv2 FSR / sGFSR). */
  recorded = false;
  /** The translation came from the TLB. */
  tlbHit = false;
  /** PORT_STALLED: the tag of the held transaction (SMMUv3: the STAG of its event record). */
  stag = -1;
  /**
   * With the DMA-isolation sanitizer on (else not written): how the translation was obtained
   * (ORIGIN_* of platform/sanitizer.ts), when it was created (sanitizer sequence and virtual
   * time), its TLB context (VMID << 16 | ASID, -1 unknown) and the last descriptor its walk read.
   */
  origin = ORIGIN_BYPASS;
  /** Infinity until a sanitized port writes it: a translation of unknown age is never stale. */
  fillSeq = Number.POSITIVE_INFINITY;
  fillTime = -1;
  ctx = -1;
  tbl = -1;
}

/**
 * Sanitizer side of a port's translate(): name the transaction for walk reports and preset
 * `res` as a fresh translation (paths that do not hit a tracked TLB entry leave it so).
 */
export function portSanBegin(
  san: DmaSanitizer,
  device: string,
  sid: number,
  ssid: number,
  iova: number,
  res: TranslationResult,
): void {
  san.txDevice = device;
  san.txSid = sid;
  san.txSsid = ssid;
  san.txIova = iova;
  san.lastWalkPa = -1;
  san.txCfgSeq = Number.POSITIVE_INFINITY;
  res.fillSeq = san.seq;
  res.fillTime = san.now;
  res.ctx = -1;
  res.tbl = -1;
}

/** Sanitizer side of a finished transaction: record in `out` how its translation was obtained. */
export function portSanEnd(san: DmaSanitizer, out: PortResult, res: TranslationResult, status: number): void {
  if (status === PORT_OK && out.tlbHit) {
    out.origin = ORIGIN_TLB;
    out.fillSeq = res.fillSeq;
    out.fillTime = res.fillTime;
    out.ctx = res.ctx;
    out.tbl = res.tbl;
  } else {
    out.origin = status === PORT_OK ? ORIGIN_WALK : ORIGIN_BYPASS;
    out.fillSeq = san.seq;
    out.fillTime = san.now;
    out.ctx = -1;
    out.tbl = -1;
  }
}

/** Transaction counters every SMMU port keeps (for the CLI and demos). */
export interface PortCounts {
  transactions: number;
  ok: number;
  bypass: number;
  abort: number;
  fault: number;
  razwi: number;
  /** Transactions held (PORT_STALLED). */
  stalled: number;
}

export function newPortCounts(): PortCounts {
  return { transactions: 0, ok: 0, bypass: 0, abort: 0, fault: 0, razwi: 0, stalled: 0 };
}

/** Start a transaction: count it, and clear what the last one left in `out`. */
export function portBegin(out: PortResult, stats: PortCounts): void {
  stats.transactions++;
  out.recorded = false;
  out.fault = 0;
  out.tlbHit = false;
}

/** Finish a translated transaction with the engine's result. Returns PORT_OK. */
export function portTranslated(out: PortResult, stats: PortCounts, res: TranslationResult): number {
  out.oa = res.oa;
  out.pageShift = res.pageShift;
  out.perm = res.perm;
  out.attr = res.attr;
  out.tlbHit = res.tlbHit;
  return portDone(out, stats, PORT_OK);
}

/** Finish a transaction: its status into `out`, counted in `stats`. Returns the status. */
export function portDone(out: PortResult, stats: PortCounts, status: number): number {
  out.status = status;
  if (status === PORT_OK) stats.ok++;
  else if (status === PORT_BYPASS) stats.bypass++;
  else if (status === PORT_ABORT) stats.abort++;
  else if (status === PORT_FAULT) stats.fault++;
  else if (status === PORT_RAZWI) stats.razwi++;
  else if (status === PORT_STALLED) stats.stalled++;
  return status;
}

/** The transaction interface of an SMMU. */
export interface DmaPort {
  /** Translate one transaction; `ssid` -1 when it has no SubstreamID. Returns out.status. */
  translate(sid: number, ssid: number, iova: number, access: number, out: PortResult): number;
}

/** What a device implements to hear about its stalled transactions. */
export interface StallListener {
  /** A stalled transaction finished: status PORT_OK (result: the new translation) or a termination. */
  stallCompleted?(sid: number, stag: number, status: number, result: PortResult): void;
}

/** What a device model sees of the IOMMU in front of it (an SmmuV3 or an SmmuV2). */
export interface DmaIommu {
  readonly machine: Machine;
  readonly port: DmaPort;
  readonly upstream: {
    /** Register the listener for a StreamID's stall completions (one per StreamID). */
    attach(sid: number, master: StallListener): void;
    detach(sid: number): void;
  };
}

/**
 * Move `len` bytes between `buf[off..]` and the device address `iova` through `port`, one
 * transaction per page (or per translated region): what a simple DMA engine does. Stops at the
 * first transaction that does not complete (fault, abort, stall; `r.status` says which) and
 * returns the bytes moved. A bus error at the output address ends it with PORT_FAULT.
 */
export function portDma(
  port: DmaPort,
  machine: Machine,
  r: PortResult,
  sid: number,
  ssid: number,
  iova: number,
  buf: Uint8Array,
  off: number,
  len: number,
  access: number,
  write: boolean,
): number {
  const mem = machine.mem;
  const san = mem.sanitizer;
  let done = 0;
  while (done < len) {
    const a = iova + done;
    const st = port.translate(sid, ssid, a, access, r);
    const size = st === PORT_OK ? 2 ** r.pageShift : 4096;
    const n = Math.min(len - done, size - (a % size));
    if (st === PORT_OK || st === PORT_BYPASS) {
      if (san !== null) san.checkDma(`StreamID ${sid}`, sid, ssid, a, r.oa, n, write, r);
      const rc = write ? mem.writeBytes(r.oa, buf, off + done, n) : mem.readBytes(r.oa, buf, off + done, n);
      if (rc !== 0) {
        r.status = PORT_FAULT;
        return done;
      }
    } else if (st === PORT_RAZWI) {
      if (!write) buf.fill(0, off + done, off + done + n);
    } else return done;
    done += n;
  }
  return done;
}
