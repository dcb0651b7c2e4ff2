/**
 * The arm-smmu driver's side of the device fault API (../fault/io-pgfault.ts): a context fault
 * of a master that has a fault handler there (its own, or one of the domain it faulted in) is
 * reported as a fault record from the context-fault IRQ thread, before (and instead of) the
 * domain's report_iommu_fault.
 *
 *  - A stalled transaction (FSR.SS) becomes a page request: LAST_PAGE, grpid = the context
 *    bank, perm WRITE if FSYNR0.WNR else READ (EXEC if IND, PRIV if PNU), private data
 *    [instance, bank]. FSR is cleared at once; the transaction stays stalled until the response:
 *    SUCCESS writes RESUME = retry, anything else RESUME = terminate. While it waits, the bank's
 *    context interrupt is masked (SCTLR.CFIE clear): an MMU-500 keeps the line asserted while a
 *    transaction is stalled, which would otherwise be an interrupt storm.
 *  - A fault that did not stall becomes an unrecoverable fault (reason from FSR: TF translation,
 *    PF permission, AFF access flag, EF external abort); when no handler takes it, the driver's
 *    own path (report_iommu_fault, the "Unhandled context fault" print) runs.
 *  - A device removed or detached while stalled: the fault layer answers its pending groups
 *    INVALID, which terminates the transaction.
 */

import {
  CB,
  FSR_AFF,
  FSR_EF,
  FSR_PF,
  FSR_SS,
  FSR_TF,
  FSYNR0,
  getField,
  SCTLR,
} from '../../../arch/smmuv2/regs.ts';
import type { IommuDevice } from '../device.ts';
import { EINVAL } from '../errno.ts';
import {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFaultReason,
  type IommuPageRequestFault,
  type IommuPageResponseMsg,
  type IommuUnrecoverableFault,
} from '../fault/fault.ts';
import type { IommuFaults } from '../fault/io-pgfault.ts';
import type { ArmSmmuV2Iommu } from './iommu.ts';
import type { ArmSmmuContextFaultInfo, ArmSmmuDevice } from './smmu.ts';

export interface ArmSmmuV2FaultStats {
  /** Stalls reported as page requests. */
  stalls: number;
  /** Unrecoverable faults reported. */
  unrecoverable: number;
  /** Responses turned into RESUME writes. */
  responses: number;
}

const CFIE = 1 << SCTLR.CFIE.lsb;

function reasonOf(fsr: number): IommuFaultReason {
  if (fsr & FSR_TF) return IOMMU_FAULT_REASON.PTE_FETCH;
  if (fsr & FSR_PF) return IOMMU_FAULT_REASON.PERMISSION;
  if (fsr & FSR_AFF) return IOMMU_FAULT_REASON.ACCESS;
  if (fsr & FSR_EF) return IOMMU_FAULT_REASON.WALK_EABT;
  return IOMMU_FAULT_REASON.UNKNOWN;
}

export class ArmSmmuV2Faults {
  readonly stats: ArmSmmuV2FaultStats = { stalls: 0, unrecoverable: 0, responses: 0 };
  /** The stall being reported now, and a response given during the report (sent after it). */
  private reporting: IommuPageRequestFault | null = null;
  private deferred: IommuPageResponseMsg | null = null;

  constructor(
    readonly faults: IommuFaults,
    readonly smmu: ArmSmmuDevice,
    readonly iommu: ArmSmmuV2Iommu,
  ) {
    faults.setDriverOps(iommu, {
      pageResponse: (_dev, last, msg) => this.pageResponse(last, msg),
    });
    smmu.faultHook = (_s, inst, idx, cfi) => this.contextFault(inst, idx, cfi);
  }

  private contextFault(inst: number, idx: number, cfi: ArmSmmuContextFaultInfo): 'later' | 'done' | null {
    const smmu = this.smmu;
    const master = this.iommu.masterBySid(cfi.cbfrsynra & 0xffff);
    if (master === undefined) return null;
    const dev: IommuDevice = master.dev;
    const owner = smmu.cbs[idx]?.domain ?? null;
    if (!this.faults.hasHandler(dev, owner?.domain ?? null)) return null;
    let perm = getField(cfi.fsynr, FSYNR0.WNR) ? IOMMU_FAULT_PERM_WRITE : IOMMU_FAULT_PERM_READ;
    if (getField(cfi.fsynr, FSYNR0.IND)) perm |= IOMMU_FAULT_PERM_EXEC;
    if (getField(cfi.fsynr, FSYNR0.PNU)) perm |= IOMMU_FAULT_PERM_PRIV;
    const requester = { dev, sid: cfi.cbfrsynra & 0xffff, rid: null };
    const now = smmu.m.sched.now;
    const fsrPage = smmu.io.numpage + idx;
    if (cfi.fsr & FSR_SS) {
      this.stats.stalls++;
      const fault: IommuPageRequestFault = {
        type: IOMMU_FAULT_PAGE_REQ,
        requester,
        time: now,
        flags: IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE | IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
        pasid: 0,
        grpid: idx,
        perm,
        addr: cfi.iova,
        privateData: [inst, idx],
      };
      // FSR first (an MMU-500 ignores RESUME while any other FSR field is set); the
      // interrupt masked until the response, so the stalled bank does not storm
      smmu.io.writelInst(inst, fsrPage, CB.FSR, cfi.fsr);
      smmu.awaitingResponse.add(idx);
      smmu.rmwSctlr(idx, 0, CFIE);
      this.reporting = fault;
      this.deferred = null;
      this.faults.reportDeviceFault(dev, fault);
      this.reporting = null;
      const msg = this.deferred as IommuPageResponseMsg | null;
      this.deferred = null;
      if (msg !== null) this.sendResume(inst, idx, msg);
      return msg !== null ? 'done' : 'later';
    }
    this.stats.unrecoverable++;
    const fault: IommuUnrecoverableFault = {
      type: IOMMU_FAULT_DMA_UNRECOV,
      requester,
      time: now,
      reason: reasonOf(cfi.fsr),
      flags: IOMMU_FAULT_UNRECOV_ADDR_VALID,
      pasid: 0,
      perm,
      addr: cfi.iova,
      fetchAddr: 0,
    };
    if (this.faults.reportDeviceFault(dev, fault) < 0) return null;
    smmu.io.writelInst(inst, fsrPage, CB.FSR, cfi.fsr);
    return 'done';
  }

  /** ops->page_response: RESUME retry on SUCCESS, terminate otherwise. */
  pageResponse(last: IommuPageRequestFault, msg: IommuPageResponseMsg): number {
    if (last === this.reporting) {
      this.deferred = msg;
      return 0;
    }
    const [inst, idx] = last.privateData;
    if (idx < 0 || idx >= this.smmu.numContextBanks) return -EINVAL;
    this.sendResume(inst, idx, msg);
    return 0;
  }

  private sendResume(inst: number, idx: number, msg: IommuPageResponseMsg): void {
    const smmu = this.smmu;
    this.stats.responses++;
    smmu.resume(idx, msg.code !== IOMMU_PAGE_RESP_SUCCESS, inst);
    if (smmu.awaitingResponse.delete(idx) && smmu.cbs[idx]?.cfg) smmu.rmwSctlr(idx, CFIE, 0);
  }
}
