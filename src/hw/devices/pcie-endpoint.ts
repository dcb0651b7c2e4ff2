// A PCIe endpoint with ATS, PRI and PASID (the kind of accelerator that asks for pages):
// configuration space with the three capabilities (pci-config.ts, reachable through the ECAM
// window, pcie-ecam.ts), an Address Translation Cache, and DMA engines that tag their
// requests with PASIDs.
//
// Behaviour (PCIe ATS/PRI as Linux's drivers/pci/ats.c drives it):
//  - ATS disabled (ATS Control.Enable == 0): DMA is Untranslated, translated by the SMMU port.
//  - ATS enabled: each page is looked up in the ATC; a miss sends a Translation Request. A
//    completion granting the access fills the ATC and the access goes out as a Translated
//    transaction. A completion granting no access (R == W == 0, or no W for a write), with PRI
//    enabled and not stopped, sends a Page Request (its own PRG, Last = 1) using one credit of
//    the Outstanding Page Request Allocation, and the engine waits; a Success PRG Response
//    makes it retry the translation (up to `maxPageRequestRetries` times), Invalid Request
//    makes the DMA fail, Response Failure sets PRI Status.RF, stops PRI and fails the DMA.
//    UR / CA completions fail the DMA. A response for a PRG index with nothing outstanding sets
//    PRI Status.UPRGI.
//  - PASID: a request carries the engine's PASID only while PASID Control.Enable is set;
//    Exec / Privileged only while their enables are set.
//  - ATC invalidations from the SMMU (CMD_ATC_INV) drop matching entries and are acknowledged
//    `atcInvAckNs` of virtual time later (0: at once).
// The device registers itself as the UpstreamMaster of its StreamID on the SMMU.

import type { Machine } from '../../platform/machine.ts';
import { type DmaOrigin, ORIGIN_ATC } from '../../platform/sanitizer.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_WRITE,
  PORT_BYPASS,
  PORT_OK,
  PORT_RAZWI,
  PortResult,
} from '../smmuv3/port.ts';
import {
  ATS_OK,
  AtsCompletion,
  PRI_RESP_FAILURE,
  PRI_RESP_SUCCESS,
  type PriResponseCode,
  type SmmuUpstreamPort,
  type UpstreamMaster,
} from '../smmuv3/upstream.ts';
import {
  ATS_CAP_OFFSET,
  PASID_CAP_OFFSET,
  PCI_ATS_CAP,
  PCI_ATS_CAP_PAGE_ALIGNED,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_PASID_CAP,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
  PciConfigSpace,
  PRI_CAP_OFFSET,
} from './pci-config.ts';

/** How the endpoint reaches its IOMMU (an SmmuV3 satisfies it). */
export interface IommuLink {
  readonly port: {
    translate(sid: number, ssid: number, iova: number, access: number, out: PortResult): number;
  };
  readonly upstream: SmmuUpstreamPort;
}

export interface PcieEndpointOptions {
  name?: string;
  /** Requester ID (bus << 8 | dev << 3 | fn). */
  rid: number;
  /** StreamID on the SMMU. Default: the RID (iommu-map 1:1). */
  sid?: number;
  vendor?: number;
  device?: number;
  /** Capabilities present. Defaults: all three. */
  ats?: boolean;
  pri?: boolean;
  pasid?: boolean;
  /** PASID capability Max PASID Width. Default 20. */
  pasidBits?: number;
  /** PRI Outstanding Page Request Capacity. Default 32. */
  priCapacity?: number;
  /** PRI Status "PRG Response PASID Required". Default true. */
  prgResponsePasidRequired?: boolean;
  /** ATC entries. Default 16. */
  atcEntries?: number;
  /** Virtual ns before an ATC invalidation is acknowledged. Default 0. */
  atcInvAckNs?: number;
  /** Page requests per page before the DMA gives up. Default 4. */
  maxPageRequestRetries?: number;
}

/** One DMA of an engine. */
export interface DmaJob {
  /** PASID to tag the requests with, or -1. */
  ssid: number;
  iova: number;
  /** Source (write) or destination (read) buffer; its length is the transfer size. */
  buf: Uint8Array;
  write: boolean;
  priv?: boolean;
  exec?: boolean;
  /** Completion: ok, bytes moved, and why it stopped when not ok. */
  onDone(ok: boolean, bytes: number, why: string): void;
}

interface AtcEntry {
  ssid: number;
  base: number;
  shift: number;
  pa: number;
  r: boolean;
  w: boolean;
  x: boolean;
  /** Sanitizer record (see DmaOrigin): sequence and time of the fill, the SMMU's TLB context. */
  fillSeq: number;
  fillTime: number;
  ctx: number;
}

interface Running {
  job: DmaJob;
  done: number;
  retries: number;
  prg: number;
}

export interface PcieEndpointStats {
  translationRequests: number;
  atcHits: number;
  atcMisses: number;
  atcInvalidations: number;
  pageRequests: number;
  stopMarkers: number;
  prgResponses: number;
  translated: number;
  untranslated: number;
  dmaOk: number;
  dmaFailed: number;
}

const PAGE = 4096;

export class PcieEndpoint implements UpstreamMaster {
  readonly name: string;
  readonly rid: number;
  readonly sid: number;
  readonly config: PciConfigSpace;
  readonly stats: PcieEndpointStats = {
    translationRequests: 0,
    atcHits: 0,
    atcMisses: 0,
    atcInvalidations: 0,
    pageRequests: 0,
    stopMarkers: 0,
    prgResponses: 0,
    translated: 0,
    untranslated: 0,
    dmaOk: 0,
    dmaFailed: 0,
  };
  /** The ATC, oldest first (FIFO replacement). */
  readonly atc: AtcEntry[] = [];
  /** The origin handed to the sanitizer for an ATC-translated access (reused). */
  private readonly atcOrigin: DmaOrigin = { origin: ORIGIN_ATC, fillSeq: 0, fillTime: 0, ctx: -1, tbl: -1 };
  private readonly atcMax: number;
  private readonly hasAts: boolean;
  private readonly hasPri: boolean;
  private readonly hasPasid: boolean;
  private readonly maxRetries: number;
  private readonly ackNs: number;
  /** PRG index -> engine waiting for its response. */
  private readonly waiting = new Map<number, Running>();
  private nextPrg = 0;
  private readonly comp = new AtsCompletion();
  private readonly pr = new PortResult();

  constructor(
    private readonly machine: Machine,
    private readonly iommu: IommuLink,
    o: PcieEndpointOptions,
  ) {
    this.name = o.name ?? `pcie-ep-${o.rid.toString(16)}`;
    this.rid = o.rid & 0xffff;
    this.sid = o.sid ?? this.rid;
    this.hasAts = o.ats ?? true;
    this.hasPri = this.hasAts && (o.pri ?? true);
    this.hasPasid = o.pasid ?? true;
    this.atcMax = Math.max(1, o.atcEntries ?? 16);
    this.ackNs = o.atcInvAckNs ?? 0;
    this.maxRetries = o.maxPageRequestRetries ?? 4;
    const c = new PciConfigSpace(o.vendor ?? 0x13b5, o.device ?? 0xa7a5);
    this.config = c;
    if (this.hasAts) {
      c.addExtCap(ATS_CAP_OFFSET, PCI_EXT_CAP_ID_ATS);
      c.set16(ATS_CAP_OFFSET + PCI_ATS_CAP, PCI_ATS_CAP_PAGE_ALIGNED); // queue depth 0 = 32
      c.mask16(ATS_CAP_OFFSET + PCI_ATS_CTRL, PCI_ATS_CTRL_ENABLE | 0x1f);
    }
    if (this.hasPri) {
      c.addExtCap(PRI_CAP_OFFSET, PCI_EXT_CAP_ID_PRI);
      c.mask16(PRI_CAP_OFFSET + PCI_PRI_CTRL, PCI_PRI_CTRL_ENABLE | PCI_PRI_CTRL_RESET);
      c.w1c16(PRI_CAP_OFFSET + PCI_PRI_STATUS, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI);
      c.set16(
        PRI_CAP_OFFSET + PCI_PRI_STATUS,
        PCI_PRI_STATUS_STOPPED | ((o.prgResponsePasidRequired ?? true) ? PCI_PRI_STATUS_PASID : 0),
      );
      c.set32(PRI_CAP_OFFSET + PCI_PRI_MAX_REQ, o.priCapacity ?? 32);
      c.mask32(PRI_CAP_OFFSET + PCI_PRI_ALLOC_REQ, 0xffffffff);
    }
    if (this.hasPasid) {
      c.addExtCap(PASID_CAP_OFFSET, PCI_EXT_CAP_ID_PASID);
      c.set16(
        PASID_CAP_OFFSET + PCI_PASID_CAP,
        PCI_PASID_CAP_EXEC | PCI_PASID_CAP_PRIV | ((o.pasidBits ?? 20) << 8),
      );
      c.mask16(
        PASID_CAP_OFFSET + PCI_PASID_CTRL,
        PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC | PCI_PASID_CTRL_PRIV,
      );
    }
    c.onWrite = (off) => this.configWritten(off);
    iommu.upstream.attach(this.sid, this);
  }

  // ------------------------------------------------------------------------------ capability state

  get atsEnabled(): boolean {
    return this.hasAts && (this.config.get16(ATS_CAP_OFFSET + PCI_ATS_CTRL) & PCI_ATS_CTRL_ENABLE) !== 0;
  }

  get priEnabled(): boolean {
    return this.hasPri && (this.config.get16(PRI_CAP_OFFSET + PCI_PRI_CTRL) & PCI_PRI_CTRL_ENABLE) !== 0;
  }

  private get pasidCtrl(): number {
    return this.hasPasid ? this.config.get16(PASID_CAP_OFFSET + PCI_PASID_CTRL) : 0;
  }

  get priStatus(): number {
    return this.hasPri ? this.config.get16(PRI_CAP_OFFSET + PCI_PRI_STATUS) : 0;
  }

  /** Outstanding page requests (credits in use). */
  get outstandingPageRequests(): number {
    return this.waiting.size;
  }

  private get priAllocation(): number {
    return this.config.get32(PRI_CAP_OFFSET + PCI_PRI_ALLOC_REQ);
  }

  private setPriStatus(set: number, clear: number): void {
    const o = PRI_CAP_OFFSET + PCI_PRI_STATUS;
    this.config.set16(o, (this.config.get16(o) | set) & ~clear);
  }

  private configWritten(off: number): void {
    const c = this.config;
    if (this.hasAts && off === ATS_CAP_OFFSET + 4 && !this.atsEnabled) this.atc.length = 0;
    if (this.hasPri && off === PRI_CAP_OFFSET + 4) {
      const ctl = c.get16(PRI_CAP_OFFSET + PCI_PRI_CTRL);
      if ((ctl & PCI_PRI_CTRL_RESET) !== 0) {
        // Reset (only meaningful while disabled): forget outstanding requests and errors.
        c.set16(PRI_CAP_OFFSET + PCI_PRI_CTRL, ctl & ~PCI_PRI_CTRL_RESET);
        if ((ctl & PCI_PRI_CTRL_ENABLE) === 0) {
          for (const r of this.waiting.values()) this.finish(r, false, 'PRI reset');
          this.waiting.clear();
          this.setPriStatus(0, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI);
        }
      }
      this.updateStopped();
    }
  }

  /** PRI Status.Stopped: disabled and no request outstanding. */
  private updateStopped(): void {
    if (!this.hasPri) return;
    const stopped = !this.priEnabled && this.waiting.size === 0;
    this.setPriStatus(stopped ? PCI_PRI_STATUS_STOPPED : 0, stopped ? 0 : PCI_PRI_STATUS_STOPPED);
  }

  // ------------------------------------------------------------------------------ DMA

  /** Start a DMA; it completes (job.onDone) now or later in virtual time. */
  dma(job: DmaJob): void {
    this.run({ job, done: 0, retries: 0, prg: -1 });
  }

  /** Send a PCIe Stop Marker for `pasid` (a PRG-less Last request with R = W = 0). */
  stopMarker(pasid: number): void {
    if (!this.priEnabled || (this.pasidCtrl & PCI_PASID_CTRL_ENABLE) === 0) return;
    this.stats.stopMarkers++;
    this.iommu.upstream.priRequest(this.sid, pasid, 0, 0, true, false, false, false, false);
  }

  private run(r: Running): void {
    const job = r.job;
    const len = job.buf.length;
    const mem = this.machine.mem;
    const pasidOn = (this.pasidCtrl & PCI_PASID_CTRL_ENABLE) !== 0;
    if (job.ssid >= 0 && !pasidOn) {
      this.finish(r, false, 'PASID not enabled');
      return;
    }
    const ssid = pasidOn ? job.ssid : -1;
    let access = job.write ? ACCESS_WRITE : 0;
    if (ssid >= 0 && job.priv && (this.pasidCtrl & PCI_PASID_CTRL_PRIV) !== 0) access |= ACCESS_PRIV;
    if (ssid >= 0 && job.exec && !job.write && (this.pasidCtrl & PCI_PASID_CTRL_EXEC) !== 0)
      access |= ACCESS_EXEC;
    while (r.done < len) {
      const a = job.iova + r.done;
      const n = Math.min(len - r.done, PAGE - (a % PAGE));
      let pa: number;
      if (this.atsEnabled) {
        const e = this.atcLookup(ssid, a, access);
        if (e === null) {
          const w = this.translate(r, ssid, a, access);
          if (w === 'wait') return;
          if (typeof w === 'string') {
            this.finish(r, false, w);
            return;
          }
          continue; // ATC filled: look up again
        }
        const t = this.pr;
        this.stats.translated++;
        if (this.iommu.upstream.translated(this.sid, e.pa + (a - e.base), n, access, t) !== PORT_OK) {
          this.finish(r, false, `translated transaction aborted (event 0x${t.fault.toString(16)})`);
          return;
        }
        pa = t.oa;
        const san = mem.sanitizer;
        if (san !== null) {
          const o = this.atcOrigin;
          o.fillSeq = e.fillSeq;
          o.fillTime = e.fillTime;
          o.ctx = e.ctx;
          san.checkDma(this.name, this.sid, ssid, a, pa, n, job.write, o);
        }
      } else {
        const t = this.pr;
        this.stats.untranslated++;
        const st = this.iommu.port.translate(this.sid, ssid, a, access, t);
        if (st === PORT_RAZWI) {
          if (!job.write) job.buf.fill(0, r.done, r.done + n);
          r.done += n;
          continue;
        }
        if (st !== PORT_OK && st !== PORT_BYPASS) {
          this.finish(
            r,
            false,
            `untranslated transaction terminated (status ${st}, event 0x${t.fault.toString(16)})`,
          );
          return;
        }
        pa = t.oa;
        const san = mem.sanitizer;
        if (san !== null) san.checkDma(this.name, this.sid, ssid, a, pa, n, job.write, t);
      }
      const rc = job.write ? mem.writeBytes(pa, job.buf, r.done, n) : mem.readBytes(pa, job.buf, r.done, n);
      if (rc !== 0) {
        this.finish(r, false, `bus error at 0x${pa.toString(16)}`);
        return;
      }
      r.done += n;
      r.retries = 0; // the retry budget is per page
    }
    this.finish(r, true, '');
  }

  /** Translation Request for the page of `a`; fills the ATC, or sends a page request ('wait'), or fails (string). */
  private translate(r: Running, ssid: number, a: number, access: number): null | string {
    const c = this.comp;
    this.stats.translationRequests++;
    const page = a - (a % PAGE);
    this.iommu.upstream.atsTranslate(this.sid, ssid, page, access, c);
    if (c.status !== ATS_OK) return `translation request failed (${c.status === 1 ? 'UR' : 'CA'})`;
    const write = (access & ACCESS_WRITE) !== 0;
    if (write ? c.write : c.read) {
      this.atcInsert({
        ssid,
        base: page - (page % 2 ** c.sizeShift),
        shift: c.sizeShift,
        pa: c.pa,
        r: c.read,
        w: c.write,
        x: c.exec,
        fillSeq: c.fillSeq,
        fillTime: this.machine.sched.now,
        ctx: c.ctx,
      });
      return null;
    }
    // No access: ask for the page.
    if (!this.priEnabled || (this.priStatus & PCI_PRI_STATUS_RF) !== 0) return 'translation fault (no PRI)';
    if (r.retries >= this.maxRetries) return 'page request retries exhausted';
    if (this.waiting.size >= this.priAllocation) return 'no page request credit';
    const prg = this.allocPrg();
    r.prg = prg;
    r.retries++;
    this.waiting.set(prg, r);
    this.updateStopped();
    this.stats.pageRequests++;
    const exec = (access & ACCESS_EXEC) !== 0;
    const priv = (access & ACCESS_PRIV) !== 0;
    // R is always requested (a write needs the page readable too, as SVA devices ask).
    this.iommu.upstream.priRequest(this.sid, ssid, page, prg, true, true, write, exec, priv);
    return 'wait';
  }

  private allocPrg(): number {
    for (let i = 0; i < 512; i++) {
      const p = (this.nextPrg + i) % 512;
      if (!this.waiting.has(p)) {
        this.nextPrg = (p + 1) % 512;
        return p;
      }
    }
    return 0;
  }

  private finish(r: Running, ok: boolean, why: string): void {
    if (ok) this.stats.dmaOk++;
    else this.stats.dmaFailed++;
    r.job.onDone(ok, r.done, why);
  }

  // ------------------------------------------------------------------------------ ATC

  private atcLookup(ssid: number, a: number, access: number): AtcEntry | null {
    for (const e of this.atc) {
      if (e.ssid === ssid && a >= e.base && a < e.base + 2 ** e.shift) {
        const ok = (access & ACCESS_WRITE) !== 0 ? e.w : (access & ACCESS_EXEC) !== 0 ? e.x : e.r;
        if (ok) {
          this.stats.atcHits++;
          return e;
        }
      }
    }
    this.stats.atcMisses++;
    return null;
  }

  private atcInsert(e: AtcEntry): void {
    const i = this.atc.findIndex((x) => x.ssid === e.ssid && x.base === e.base);
    if (i >= 0) this.atc.splice(i, 1);
    if (this.atc.length >= this.atcMax) this.atc.shift();
    this.atc.push(e);
  }

  // ------------------------------------------------------------------------------ UpstreamMaster

  atcInvalidate(
    _sid: number,
    ssid: number,
    address: number,
    size: number,
    global: boolean,
    done: () => void,
  ): void {
    this.stats.atcInvalidations++;
    const end = address + size;
    for (let i = this.atc.length - 1; i >= 0; i--) {
      const e = this.atc[i]!;
      const match = ssid < 0 || e.ssid === ssid || (global && e.ssid >= 0);
      if (match && e.base < end && e.base + 2 ** e.shift > address) this.atc.splice(i, 1);
    }
    if (this.ackNs <= 0) done();
    else this.machine.sched.schedule(this.ackNs, done, `${this.name} atc inv ack`);
  }

  priResponse(_sid: number, _ssid: number, prgIndex: number, code: PriResponseCode): void {
    this.stats.prgResponses++;
    const r = this.waiting.get(prgIndex);
    if (r === undefined) {
      this.setPriStatus(PCI_PRI_STATUS_UPRGI, 0);
      return;
    }
    this.waiting.delete(prgIndex);
    r.prg = -1;
    if (code === PRI_RESP_SUCCESS) {
      this.updateStopped();
      this.run(r); // retry the translation
    } else if (code === PRI_RESP_FAILURE) {
      // Response Failure: PRI stops (RF set, the function issues no further requests).
      this.setPriStatus(PCI_PRI_STATUS_RF, 0);
      this.updateStopped();
      this.finish(r, false, 'page request: Response Failure');
    } else {
      this.updateStopped();
      this.finish(r, false, 'page request: Invalid Request');
    }
  }
}
