/**
 * The arm-smmu-v3 driver's side of the fault API: it takes the driver's event and PRI hooks
 * and turns what the SMMU reports into faults for the core (../fault/io-pgfault.ts), and the
 * core's responses into commands.
 *
 *  - A stall event (Stall = 1) becomes a page request: LAST_PAGE, PASID_VALID if SSV (pasid =
 *    SubstreamID), grpid = STAG, perm READ if RnW else WRITE, EXEC if InD, PRIV if PnU (as
 *    arm_smmu_handle_evt). Its response becomes CMD_RESUME: Retry on SUCCESS, Abort otherwise,
 *    without CMD_SYNC. With no handler the driver logs the event and aborts the transaction
 *    itself, which is the INVALID answer (one CMD_RESUME, never two).
 *  - Other events with a known master become unrecoverable faults (reason from the event type);
 *    a handler that takes one keeps it out of the log.
 *  - A PRI queue entry becomes a page request (grpid = PRG index, LAST_PAGE from L, the
 *    PASID when SSV, NEEDS_PASID when the endpoint's PRI capability says "PRG Response PASID
 *    Required"); its response becomes CMD_PRI_RESP: SUCCESS -> Success, INVALID -> Denied
 *    (PCIe Invalid Request), FAILURE -> Failure, with SSV exactly when the core says so.
 *    Stop markers are dropped here and never reported or answered.
 *  - A PRI queue overflow (PRIQ_PROD.OVFLG toggled) may have lost last requests: once the
 *    queue is drained, the partial requests of every device on this SMMU's iopf queue are
 *    discarded (iopf_queue_discard_partial).
 * Private data of every page request: [SMMU_FAULT_STALL | SMMU_FAULT_PRI, StreamID].
 */

import { PRI_RESP_CODE } from '../../../arch/smmuv3/cmd.ts';
import type { Device } from '../../base/device.ts';
import { pollTimeout } from '../../lib/io.ts';
import { ofAddressToResource } from '../../of/of-address.ts';
import { PciConfig, pciDisablePri, pciEnablePasid, pciEnablePri } from '../../pci/config.ts';
import type { IommuDevice } from '../device.ts';
import { EINVAL, ENODEV } from '../errno.ts';
import {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID,
  IOMMU_FAULT_UNRECOV_PASID_VALID,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFaultReason,
  type IommuPageRequestFault,
  type IommuPageResponseMsg,
  type IommuUnrecoverableFault,
} from '../fault/fault.ts';
import type { IommuFaults, IopfQueue } from '../fault/io-pgfault.ts';
import type { ArmSmmuMaster, ArmSmmuV3Iommu } from './iommu.ts';
import type { SmmuQueue } from './queue.ts';
import type { ArmSmmuDevice } from './smmu.ts';

const TWO32 = 4294967296;

/** privateData[0] of a page request: where it came from. */
export const SMMU_FAULT_STALL = 1;
export const SMMU_FAULT_PRI = 2;

// event numbers (IHI 0070 §7.3)
const F_UUT = 0x01;
const F_STE_FETCH = 0x03;
const C_BAD_STE = 0x04;
const F_BAD_ATS_TREQ = 0x05;
const C_BAD_SUBSTREAMID = 0x08;
const F_CD_FETCH = 0x09;
const C_BAD_CD = 0x0a;
const F_WALK_EABT = 0x0b;
const F_TRANSLATION = 0x10;
const F_ADDR_SIZE = 0x11;
const F_ACCESS = 0x12;
const F_PERMISSION = 0x13;
const F_VMS_FETCH = 0x25;

function reasonOf(type: number): IommuFaultReason {
  switch (type) {
    case F_TRANSLATION:
      return IOMMU_FAULT_REASON.PTE_FETCH;
    case F_ADDR_SIZE:
      return IOMMU_FAULT_REASON.OOR_ADDRESS;
    case F_ACCESS:
      return IOMMU_FAULT_REASON.ACCESS;
    case F_PERMISSION:
      return IOMMU_FAULT_REASON.PERMISSION;
    case F_CD_FETCH:
      return IOMMU_FAULT_REASON.PASID_FETCH;
    case C_BAD_CD:
    case C_BAD_STE:
      return IOMMU_FAULT_REASON.BAD_PASID_ENTRY;
    case C_BAD_SUBSTREAMID:
      return IOMMU_FAULT_REASON.PASID_INVALID;
    case F_WALK_EABT:
      return IOMMU_FAULT_REASON.WALK_EABT;
    default:
      return IOMMU_FAULT_REASON.UNKNOWN;
  }
}

export interface ArmSmmuFaultStats {
  stallEvents: number;
  unrecoverableEvents: number;
  priRequests: number;
  stopMarkersDropped: number;
  /** Events / requests from a StreamID with no master. */
  unknownStream: number;
  priOverflows: number;
  resumes: number;
  priResponses: number;
}

export class ArmSmmuV3Faults {
  /** The SMMU's iopf queue ("iopf_queue/<smmu>"). */
  readonly iopf: IopfQueue;
  readonly stats: ArmSmmuFaultStats = {
    stallEvents: 0,
    unrecoverableEvents: 0,
    priRequests: 0,
    stopMarkersDropped: 0,
    unknownStream: 0,
    priOverflows: 0,
    resumes: 0,
    priResponses: 0,
  };
  /** The stall being reported right now, and a response given to it meanwhile (sent after the report). */
  private reporting: IommuPageRequestFault | null = null;
  private deferred: IommuPageResponseMsg | null = null;
  private lastPriOvf = 0;
  private priOverflowPending = false;

  constructor(
    readonly faults: IommuFaults,
    readonly smmu: ArmSmmuDevice,
    readonly iommu: ArmSmmuV3Iommu,
  ) {
    this.iopf = faults.iopfQueueAlloc(smmu.name);
    faults.setDriverOps(iommu, {
      pageResponse: (dev, last, msg) => this.pageResponse(dev, last, msg),
      enableIopf: (dev) => this.enableIopf(dev),
      disableIopf: (dev) => this.disableIopf(dev),
      drain: () => this.drain(),
    });
    smmu.handleEvent = (w) => this.handleEvent(w);
    smmu.handlePri = (w) => this.handlePri(w);
  }

  // ------------------------------------------------------------------ IOPF feature

  private pciConfig(dev: IommuDevice): PciConfig | null {
    const d = dev as Device;
    if (!d.pci) return null;
    const ecam = ofAddressToResource(d.pci.hostBridge, 0)?.start;
    return ecam === undefined ? null : new PciConfig(this.smmu.m.mem, ecam, d.pci.rid);
  }

  /**
   * arm_smmu_master_enable_iopf: a stall-capable master, or a PCI master with PRI (PASID and PRI
   * enabled at the endpoint), joins the SMMU's iopf queue.
   */
  async enableIopf(dev: IommuDevice): Promise<number> {
    const master = this.iommu.masterOf(dev);
    if (master === undefined) return -ENODEV;
    if (!master.stallEnabled) {
      if (!master.caps.pri || !this.smmu.features.pri) return -EINVAL;
      const cfg = this.pciConfig(dev);
      if (cfg === null) return -ENODEV;
      if (master.ssidBits > 0) pciEnablePasid(cfg);
      const r = pciEnablePri(cfg, 0xffff);
      if (r < 0) return r;
    }
    return this.faults.iopfQueueAddDevice(this.iopf, dev);
  }

  /** Stop fault reception, answer what is outstanding (INVALID), then disable PRI. */
  async disableIopf(dev: IommuDevice): Promise<number> {
    const master = this.iommu.masterOf(dev);
    if (master === undefined) return -ENODEV;
    await this.drain();
    await this.faults.iopfQueueRemoveDevice(this.iopf, dev);
    if (!master.stallEnabled) {
      const cfg = this.pciConfig(dev);
      if (cfg !== null) pciDisablePri(cfg);
    }
    return 0;
  }

  /** Wait (busy-polling, virtual time) until the event and PRI threads have read every entry. */
  async drain(): Promise<void> {
    const qs: SmmuQueue[] = [this.smmu.evtq];
    if (this.smmu.priq) qs.push(this.smmu.priq);
    const regs = this.smmu.regs;
    const drained = () =>
      qs.every((q) => {
        const mask = (1 << (q.shift + 1)) - 1;
        return (regs.readl(q.prodReg) & mask) === (q.cons & mask);
      });
    if (drained()) return;
    await pollTimeout(
      this.smmu.m.exec,
      () => (drained() ? 1 : 0),
      (v) => v === 1,
      10_000_000,
      200,
    );
  }

  // ------------------------------------------------------------------ events

  private requester(master: ArmSmmuMaster, sid: number) {
    const dev = master.dev;
    return { dev, sid, rid: dev.pci?.rid ?? null };
  }

  /**
   * smmu.handleEvent: 0 when the event is taken care of, else the driver logs it (and aborts a
   * stall). `dw`: the record's 8 dwords (IHI 0070 §7.3), low half of each 64-bit word first.
   */
  handleEvent(dw: Uint32Array): number {
    const d0 = dw[0]!;
    const d3 = dw[3]!;
    const type = d0 & 0xff;
    const sid = dw[1]! >>> 0;
    const ssv = (d0 & (1 << 11)) !== 0;
    const ssid = (d0 >>> 12) & 0xfffff;
    const master = this.iommu.masterBySid(sid);
    if (master === undefined) {
      this.stats.unknownStream++;
      return -ENODEV;
    }
    const dev = master.dev;
    const translation = type >= F_TRANSLATION && type <= F_PERMISSION;
    // word 1: RnW bit 35, InD bit 34, PnU bit 33 (dword 3 bits 3, 2, 1); Stall bit 31, STAG [15:0]
    const rnw = (d3 & 8) !== 0;
    let perm = 0;
    if (translation || type === F_UUT) {
      perm = rnw ? IOMMU_FAULT_PERM_READ : IOMMU_FAULT_PERM_WRITE;
      if (d3 & 4) perm |= IOMMU_FAULT_PERM_EXEC;
      if (d3 & 2) perm |= IOMMU_FAULT_PERM_PRIV;
    }
    const addr = (dw[5]! >>> 0) * TWO32 + (dw[4]! >>> 0);
    const now = this.smmu.m.sched.now;
    if (translation && (dw[2]! & 0x80000000) !== 0) {
      this.stats.stallEvents++;
      const fault: IommuPageRequestFault = {
        type: IOMMU_FAULT_PAGE_REQ,
        requester: this.requester(master, sid),
        time: now,
        flags:
          IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE |
          IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA |
          (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0),
        pasid: ssv ? ssid : 0,
        grpid: dw[2]! & 0xffff,
        perm,
        addr,
        privateData: [SMMU_FAULT_STALL, sid],
      };
      this.reporting = fault;
      this.deferred = null;
      const r = this.faults.reportDeviceFault(dev, fault);
      this.reporting = null;
      const msg = this.deferred as IommuPageResponseMsg | null;
      this.deferred = null;
      // no handler: the driver logs the event and aborts the stall (that abort is the INVALID)
      if (r < 0) return r;
      // answered during the report (a handler that responded at once, a burst): resume now
      if (msg !== null) this.sendResume(sid, msg);
      return 0;
    }
    this.stats.unrecoverableEvents++;
    const fetch = type === F_CD_FETCH || type === F_STE_FETCH || type === F_WALK_EABT || type === F_VMS_FETCH;
    const withAddr = translation || type === F_UUT || type === F_BAD_ATS_TREQ;
    const fault: IommuUnrecoverableFault = {
      type: IOMMU_FAULT_DMA_UNRECOV,
      requester: this.requester(master, sid),
      time: now,
      reason: reasonOf(type),
      flags:
        (ssv ? IOMMU_FAULT_UNRECOV_PASID_VALID : 0) |
        (withAddr ? IOMMU_FAULT_UNRECOV_ADDR_VALID : 0) |
        (fetch ? IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID : 0),
      pasid: ssv ? ssid : 0,
      perm,
      addr: withAddr ? addr : 0,
      fetchAddr: fetch ? (dw[7]! & 0x00ff_ffff) * TWO32 + ((dw[6]! & 0xffff_fff8) >>> 0) : 0,
    };
    return this.faults.reportDeviceFault(dev, fault);
  }

  // ------------------------------------------------------------------ PRI

  /** smmu.handlePri: one PRI queue entry (its 4 dwords, low half of each 64-bit word first). */
  handlePri(dw: Uint32Array): void {
    this.handlePpr(dw);
    this.checkPriOverflow();
  }

  private handlePpr(dw: Uint32Array): void {
    // word 0: StreamID [31:0], SubstreamID [51:32], Priv 58, Exec 59, Read 60, Write 61, L 62, SSV 63
    const d1 = dw[1]!;
    const sid = dw[0]! >>> 0;
    const ssv = (d1 & 0x80000000) !== 0;
    const ssid = d1 & 0xfffff;
    const priv = (d1 & (1 << 26)) !== 0;
    const exec = (d1 & (1 << 27)) !== 0;
    const read = (d1 & (1 << 28)) !== 0;
    const write = (d1 & (1 << 29)) !== 0;
    const last = (d1 & (1 << 30)) !== 0;
    // word 1: PRG index [8:0], page address [63:12]
    const prgi = dw[2]! & 0x1ff;
    const addr = (dw[3]! >>> 0) * TWO32 + ((dw[2]! & 0xfffff000) >>> 0);
    const t = this.smmu.m.trace;
    if (last && !read && !write) {
      // PCIe Stop Marker: the framework does not handle them; drop, never answer
      this.stats.stopMarkersDropped++;
      if (t.enabled)
        t.emit(
          this.smmu.component,
          'pri.stop-marker',
          `PRI stop marker sid 0x${sid.toString(16)} pasid ${ssid} dropped`,
          { sid, ssid },
          'debug',
        );
      return;
    }
    this.stats.priRequests++;
    const master = this.iommu.masterBySid(sid);
    if (master === undefined) {
      // as Linux's arm_smmu_handle_ppr: log it, deny the group
      this.stats.unknownStream++;
      this.smmu.info(`unexpected PRI request received: sid 0x${sid.toString(16)} prgi ${prgi}`);
      if (last) void this.issue(() => this.smmu.priResp(sid, ssv ? ssid : null, prgi, PRI_RESP_CODE.DENY));
      return;
    }
    let perm = 0;
    if (read) perm |= IOMMU_FAULT_PERM_READ;
    if (write) perm |= IOMMU_FAULT_PERM_WRITE;
    if (exec) perm |= IOMMU_FAULT_PERM_EXEC;
    if (priv) perm |= IOMMU_FAULT_PERM_PRIV;
    const fault: IommuPageRequestFault = {
      type: IOMMU_FAULT_PAGE_REQ,
      requester: this.requester(master, sid),
      time: this.smmu.m.sched.now,
      flags:
        IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA |
        (last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0) |
        (ssv ? IOMMU_FAULT_PAGE_REQUEST_PASID_VALID : 0) |
        (ssv && master.caps.priPasidRequired ? IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID : 0),
      pasid: ssv ? ssid : 0,
      grpid: prgi,
      perm,
      addr,
      privateData: [SMMU_FAULT_PRI, sid],
    };
    this.faults.reportDeviceFault(master.dev, fault);
  }

  /** After an overflow, once every surviving entry has been read, drop the partial groups. */
  private checkPriOverflow(): void {
    const q = this.smmu.priq;
    if (q === null) return;
    const prod = this.smmu.regs.readl(q.prodReg);
    if (q.ovf(prod) !== this.lastPriOvf) {
      this.lastPriOvf = q.ovf(prod);
      this.priOverflowPending = true;
      this.stats.priOverflows++;
    }
    const mask = (1 << (q.shift + 1)) - 1;
    if (this.priOverflowPending && (prod & mask) === (q.cons & mask)) {
      this.priOverflowPending = false;
      this.faults.iopfQueueDiscardPartial(this.iopf);
    }
  }

  // ------------------------------------------------------------------ responses

  /** ops->page_response (arm_smmu_page_response): CMD_RESUME or CMD_PRI_RESP, no CMD_SYNC. */
  pageResponse(_dev: IommuDevice, last: IommuPageRequestFault, msg: IommuPageResponseMsg): number {
    const [src, sid] = last.privateData;
    if (src === SMMU_FAULT_STALL) {
      if (this.reporting === last) {
        this.deferred = msg;
        return 0;
      }
      return this.sendResume(sid, msg);
    }
    if (src === SMMU_FAULT_PRI) {
      const resp =
        msg.code === IOMMU_PAGE_RESP_SUCCESS
          ? PRI_RESP_CODE.SUCC
          : msg.code === IOMMU_PAGE_RESP_INVALID
            ? PRI_RESP_CODE.DENY
            : PRI_RESP_CODE.FAIL;
      const ssid = msg.flags & IOMMU_PAGE_RESP_PASID_VALID ? msg.pasid : null;
      this.stats.priResponses++;
      return this.issue(() => this.smmu.priResp(sid, ssid, msg.grpid, resp));
    }
    return -EINVAL;
  }

  private sendResume(sid: number, msg: IommuPageResponseMsg): number {
    this.stats.resumes++;
    return this.issue(() => this.smmu.resume(sid, msg.grpid, msg.code === IOMMU_PAGE_RESP_SUCCESS));
  }

  /**
   * Issue a command; it goes out now (or, with the delay-completion injection, that much later),
   * completion (queue space) is not waited for by the caller.
   */
  private issue(fn: () => number | Promise<number>): number {
    const delay = this.smmu.inject.delayCompletionNs;
    if (delay > 0) {
      this.smmu.m.sched.schedule(delay, () => this.issueNow(fn), 'delayed page response');
      return 0;
    }
    return this.issueNow(fn);
  }

  private issueNow(fn: () => number | Promise<number>): number {
    let r: number | Promise<number>;
    try {
      r = fn();
    } catch (err) {
      this.smmu.m.exec.crash('arm-smmu-v3 page response', err);
      return 0;
    }
    if (typeof r !== 'number')
      r.catch((err: unknown) => this.smmu.m.exec.crash('arm-smmu-v3 page response', err));
    return 0;
  }
}
