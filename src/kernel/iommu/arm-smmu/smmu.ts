/**
 * The arm-smmu (SMMUv1/v2, MMU-400/401/500) driver's per-SMMU state and everything it does with
 * the hardware: cfg_probe from the ID registers, reset, the stream-map shadow (SMR/S2CR) and
 * its allocation rule, context-bank programming, TLB maintenance and sync, and the global and
 * context fault interrupts. A port of drivers/iommu/arm/arm-smmu/arm-smmu.c, with its names.
 *
 * It reaches the SMMU only through MMIO registers and interrupts (../shared/DESIGN.md).
 *
 * Interrupts. Linux requests one handler per context bank when a domain is first attached
 * (IRQF_SHARED), threaded for the Qualcomm Adreno implementation since v6.16. The model's
 * interrupt lines take one handler each, so the driver requests each distinct line once at probe
 * and its handler looks at every bank (and the global space) wired to it — what several
 * IRQF_SHARED handlers on one line do. The primary handler only checks FSR / sGFSR and wakes
 * the thread; the Linux handler body runs in the thread. For implementations whose Linux
 * handler runs in hard-IRQ context, the domain's fault handler is called atomically (it must
 * not sleep), so the context rules stay Linux's.
 */

import { fsrFlagsLinux, fsynr0FlagsLinux } from '../../../arch/smmuv2/decode.ts';
import {
  CB,
  CBA2R,
  CBAR,
  CBAR_S1_BPSHCFG_NSH,
  CBAR_S1_MEMATTR_WB,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S2_TRANS,
  FSR_FAULT,
  FSR_SS,
  FSYNR0,
  GR0,
  GR0_S2CR,
  GR0_SMR,
  GR1_CBA2R,
  GR1_CBAR,
  GR1_CBFRSYNRA,
  getField,
  ID0,
  ID1,
  ID2,
  ID7,
  idSizeToBits,
  RESUME_TERMINATE,
  S2CR,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
  SCTLR,
  SMR,
  sCR0,
  setField,
  sGFSR,
  sTLBGSTATUS_GSACTIVE,
  TCR,
  TCR2,
  TCR2_SEP_UPSTREAM,
  TLBSTATUS_SACTIVE,
  VTCR,
} from '../../../arch/smmuv2/regs.ts';
import { IRQ_HANDLED, IRQ_NONE, IRQ_WAKE_THREAD, type IrqReturn } from '../../../platform/irq.ts';
import type { Machine } from '../../../platform/machine.ts';
import { hexAddr } from '../../../platform/u64.ts';
import { RateLimit } from '../../lib/ratelimit.ts';
import { SZ_1G, SZ_2M, SZ_4K, SZ_16K, SZ_32M, SZ_64K, SZ_512M } from '../../lib/sizes.ts';
import type { IommuDevice } from '../device.ts';
import type { IommuDomain } from '../domain.ts';
import { EAGAIN, EINVAL, ENODEV, ENOSPC, ENOSYS } from '../errno.ts';
import { IOMMU_FAULT_READ, IOMMU_FAULT_WRITE, reportIommuFault } from '../fault/report.ts';
import { IO_PGTABLE_QUIRK_ARM_TTBR1, type IoPgtableCfg } from '../io-pgtable/io-pgtable.ts';
import { ARM_SMMU_GR0, ARM_SMMU_GR1, type ArmSmmuIo } from './io.ts';

// ------------------------------------------------------------------ constants (arm-smmu.h)

export const ARM_SMMU_V1 = 1;
export const ARM_SMMU_V1_64K = 2;
export const ARM_SMMU_V2 = 3;
export type ArmSmmuArchVersion = typeof ARM_SMMU_V1 | typeof ARM_SMMU_V1_64K | typeof ARM_SMMU_V2;

/** enum arm_smmu_implementation. */
export type ArmSmmuModel = 'generic' | 'arm-mmu500' | 'qcom-smmuv2' | 'qcom-smmuv500' | 'cavium-smmuv2';

// ARM_SMMU_FEAT_*
export const FEAT_COHERENT_WALK = 1 << 0;
export const FEAT_STREAM_MATCH = 1 << 1;
export const FEAT_TRANS_S1 = 1 << 2;
export const FEAT_TRANS_S2 = 1 << 3;
export const FEAT_TRANS_NESTED = 1 << 4;
export const FEAT_TRANS_OPS = 1 << 5;
export const FEAT_VMID16 = 1 << 6;
export const FEAT_FMT_AARCH64_4K = 1 << 7;
export const FEAT_FMT_AARCH64_16K = 1 << 8;
export const FEAT_FMT_AARCH64_64K = 1 << 9;
export const FEAT_FMT_AARCH32_L = 1 << 10;
export const FEAT_FMT_AARCH32_S = 1 << 11;
export const FEAT_EXIDS = 1 << 12;
const FEAT_FMT_AARCH64 = FEAT_FMT_AARCH64_4K | FEAT_FMT_AARCH64_16K | FEAT_FMT_AARCH64_64K;

/** Context formats (enum arm_smmu_context_fmt). */
export type ArmSmmuContextFmt = 'aarch64' | 'aarch32-l';

/** QCOM_DUMMY_VAL: what Linux writes to write-only trigger registers. */
export const QCOM_DUMMY_VAL = 0xffffffff;
/** TLB_LOOP_TIMEOUT (µs) and TLB_SPIN_COUNT. */
const TLB_LOOP_TIMEOUT = 1_000_000;
const TLB_SPIN_COUNT = 10;
export const INVALID_SMENDX = -1;

// ------------------------------------------------------------------ state

/** struct arm_smmu_smr (the shadow). */
export interface ArmSmmuSmr {
  id: number;
  mask: number;
  valid: boolean;
}

/** struct arm_smmu_s2cr (the shadow). */
export interface ArmSmmuS2cr {
  /** The group the entry belongs to (arm_smmu_device_group). */
  group: unknown;
  count: number;
  type: number;
  privcfg: number;
  cbndx: number;
}

/** struct arm_smmu_cfg: a finalised domain's context bank. */
export interface ArmSmmuCfg {
  cbndx: number;
  irptndx: number;
  asid: number;
  vmid: number;
  cbar: number;
  fmt: ArmSmmuContextFmt;
  /** IO_PGTABLE_QUIRK_ARM_TTBR1 was used (TTBR1 holds the table). */
  ttbr1: boolean;
}

/** struct arm_smmu_cb: what arm_smmu_write_context_bank writes. */
export interface ArmSmmuCb {
  /** TCR and TCR2. */
  tcr: [number, number];
  /** TTBR0 / TTBR1 without the ASID, and the ASID field (bits 63:48) as `asid << 16` of the high word. */
  ttbr: [number, number];
  ttbrHi: [number, number];
  mair: [number, number];
  cfg: ArmSmmuCfg | null;
  /** The domain this bank serves (cbs[idx].cfg's container in Linux). */
  domain: ArmSmmuContextOwner | null;
}

/** What the fault handler needs of the domain that owns a context bank. */
export interface ArmSmmuContextOwner {
  readonly domain: IommuDomain;
}

/** struct arm_smmu_context_fault_info. */
export interface ArmSmmuContextFaultInfo {
  iova: number;
  fsr: number;
  fsynr: number;
  cbfrsynra: number;
}

/** struct arm_smmu_impl: per-implementation hooks. */
export interface ArmSmmuImpl {
  readonly name: string;
  /** After the ID registers were read: adjust features (0 or -errno). */
  cfgProbe?(smmu: ArmSmmuDevice): number;
  /** Before sCR0 is written at reset. */
  reset?(smmu: ArmSmmuDevice): void;
  /** A domain is being finalised on `dev`: adjust the io-pgtable configuration (0 or -errno). */
  initContext?(smmu: ArmSmmuDevice, cfg: ArmSmmuCfg, pgtbl: IoPgtableCfg, dev: IommuDevice): number;
  /** Pick a context bank (instead of the first free from `start`): index or -errno. */
  allocContextBank?(smmu: ArmSmmuDevice, stage: 1 | 2, dev: IommuDevice, start: number): number;
  writeSctlr?(smmu: ArmSmmuDevice, idx: number, reg: number): void;
  writeS2cr?(smmu: ArmSmmuDevice, idx: number): void;
  /** impl->def_domain_type. */
  defDomainType?(dev: IommuDevice): number;
  /** The context fault handler runs in an IRQ thread (Qualcomm Adreno, v6.16+). */
  readonly threadedContextIrq?: boolean;
}

/**
 * How a stalled transaction is resumed: 'handler' — the context fault handler writes RESUME
 * itself, retry on -EAGAIN, otherwise terminate (Linux v6.16+); 'driver' — the handler leaves
 * it stalled and the client driver resumes it later (qcom resume_translation, Linux v5.14..v6.15).
 */
export type ArmSmmuResumeStyle = 'handler' | 'driver';

export interface ArmSmmuDeviceOptions {
  /** dev_name, e.g. "5040000.iommu". */
  name: string;
  /** Linux arm-smmu.disable_bypass (CONFIG_ARM_SMMU_DISABLE_BYPASS_BY_DEFAULT=y: true). */
  disableBypass?: boolean;
  /** arm-smmu.force_stage (0: none). */
  forceStage?: 0 | 1 | 2;
  /** Resume style for stalled transactions. Default 'handler' (v6.16+). */
  resumeStyle?: ArmSmmuResumeStyle;
  /** The node says dma-coherent. */
  coherent?: boolean;
  /** Interrupt numbers: `#global-interrupts` of them first, then the context interrupts. */
  globalIrqs: readonly number[];
  contextIrqs: readonly number[];
}

/** Counters for tests, demos and benchmarks. */
export interface ArmSmmuStats {
  contextFaults: number;
  /** Context faults printed ("Unhandled context fault"), and those the rate limit swallowed. */
  contextFaultsLogged: number;
  contextFaultsSuppressed: number;
  globalFaults: number;
  resumes: number;
  terminates: number;
  tlbSyncs: number;
  tlbSyncTimeouts: number;
}

/**
 * The fault layer's hook (../fault/ glue): offered every context fault before the domain's
 * report_iommu_fault. Returns null when it does not take the fault; otherwise whether the
 * response is given later ('later': the driver must not resume now) or already ('done').
 */
export type ArmSmmuFaultHook = (
  smmu: ArmSmmuDevice,
  inst: number,
  idx: number,
  cfi: ArmSmmuContextFaultInfo,
) => 'later' | 'done' | null;

export class ArmSmmuDevice {
  readonly name: string;
  readonly component: string;
  version: ArmSmmuArchVersion = ARM_SMMU_V2;
  model: ArmSmmuModel = 'generic';
  features = 0;
  numContextBanks = 0;
  numS2ContextBanks = 0;
  numMappingGroups = 0;
  numContextIrqs = 0;
  streamidMask = 0;
  smrMaskMask = 0;
  vaSize = 0;
  ipaSize = 0;
  paSize = 0;
  pgsizeBitmap = 0;
  /** ID7.MAJOR. */
  major = 0;
  smrs: ArmSmmuSmr[] | null = null;
  s2crs: ArmSmmuS2cr[] = [];
  cbs: ArmSmmuCb[] = [];
  /** context_map: banks in use. */
  contextMap: boolean[] = [];
  private irptndx = 0;
  readonly stats: ArmSmmuStats = {
    contextFaults: 0,
    contextFaultsLogged: 0,
    contextFaultsSuppressed: 0,
    globalFaults: 0,
    resumes: 0,
    terminates: 0,
    tlbSyncs: 0,
    tlbSyncTimeouts: 0,
  };
  impl: ArmSmmuImpl | null = null;
  /** The fault layer, when present (../fault/ glue). */
  faultHook: ArmSmmuFaultHook | null = null;
  readonly disableBypass: boolean;
  readonly resumeStyle: ArmSmmuResumeStyle;
  /** Banks whose stall awaits a response from the fault layer (the context IRQ is masked meanwhile). */
  readonly awaitingResponse = new Set<number>();
  private readonly ctxRatelimit = new RateLimit();
  private readonly gRatelimit = new RateLimit();
  private readonly tlbRatelimit = new RateLimit();
  private requested: number[] = [];

  constructor(
    readonly m: Machine,
    readonly io: ArmSmmuIo,
    readonly opts: ArmSmmuDeviceOptions,
  ) {
    this.name = opts.name;
    this.component = `arm-smmu ${opts.name}`;
    this.disableBypass = opts.disableBypass ?? true;
    this.resumeStyle = opts.resumeStyle ?? 'handler';
  }

  // ------------------------------------------------------------------ logging (dev_info / dev_err)

  info(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg);
  }

  warn(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg, {}, 'warn');
  }

  err(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg, {}, 'err');
  }

  // ------------------------------------------------------------------ register helpers

  gr0Read(off: number, inst = 0): number {
    return this.io.readl(ARM_SMMU_GR0, off, inst);
  }

  gr0Write(off: number, v: number): void {
    this.io.writel(ARM_SMMU_GR0, off, v);
  }

  gr1Read(off: number, inst = 0): number {
    return this.io.readl(ARM_SMMU_GR1, off, inst);
  }

  gr1Write(off: number, v: number): void {
    this.io.writel(ARM_SMMU_GR1, off, v);
  }

  cbRead(idx: number, off: number, inst = 0): number {
    return this.io.readl(this.io.numpage + idx, off, inst);
  }

  cbWrite(idx: number, off: number, v: number): void {
    this.io.writel(this.io.numpage + idx, off, v);
  }

  cbReadq(idx: number, off: number, inst = 0): number {
    return this.io.readq(this.io.numpage + idx, off, inst);
  }

  /** cbReadq of an address register (FAR): sign-extended upper-half addresses come back negative. */
  cbReadqSigned(idx: number, off: number, inst = 0): number {
    return this.io.readqSigned(this.io.numpage + idx, off, inst);
  }

  cbWriteq(idx: number, off: number, v: number, hiBits = 0): void {
    this.io.writeq(this.io.numpage + idx, off, v, hiBits);
  }

  has(feat: number): boolean {
    return (this.features & feat) !== 0;
  }

  get isMmu500(): boolean {
    return this.model === 'arm-mmu500' || this.model === 'qcom-smmuv500';
  }

  // ------------------------------------------------------------------ probe

  /** arm_smmu_device_cfg_probe: 0 or -ENODEV. Logs what Linux logs. */
  cfgProbe(): number {
    const io = this.io;
    // the page size first: GR0 is page 0 whatever it is
    this.info('probing hardware configuration...');
    this.info(`SMMUv${this.version === ARM_SMMU_V2 ? 2 : 1} with:`);
    let id = this.gr0Read(GR0.ID0);
    const force = this.opts.forceStage ?? 0;
    if (force === 1) id &= ~((1 << ID0.S2TS.lsb) | (1 << ID0.NTS.lsb));
    else if (force === 2) id &= ~((1 << ID0.S1TS.lsb) | (1 << ID0.NTS.lsb));
    if (getField(id, ID0.S1TS)) {
      this.features |= FEAT_TRANS_S1;
      this.info('\tstage 1 translation');
    }
    if (getField(id, ID0.S2TS)) {
      this.features |= FEAT_TRANS_S2;
      this.info('\tstage 2 translation');
    }
    if (getField(id, ID0.NTS)) {
      this.features |= FEAT_TRANS_NESTED;
      this.info('\tnested translation');
    }
    if (!(this.features & (FEAT_TRANS_S1 | FEAT_TRANS_S2))) {
      this.err('\tno translation support!');
      return -ENODEV;
    }
    if (getField(id, ID0.S1TS) && (this.version < ARM_SMMU_V2 || !getField(id, ID0.ATOSNS))) {
      this.features |= FEAT_TRANS_OPS;
      this.info('\taddress translation ops');
    }
    // the firmware's dma-coherent wins over ID0.CTTW
    const cttwReg = getField(id, ID0.CTTW) !== 0;
    const cttwFw = this.opts.coherent ?? cttwReg;
    if (cttwFw) this.features |= FEAT_COHERENT_WALK;
    this.info(
      `\t${cttwFw ? '' : 'non-'}coherent table walk${cttwFw !== cttwReg ? ' (IDR0.CTTW overridden by FW configuration)' : ''}`,
    );
    let size: number;
    if (this.version === ARM_SMMU_V2 && getField(id, ID0.EXIDS)) {
      this.features |= FEAT_EXIDS;
      size = 1 << 16;
    } else size = 1 << getField(id, ID0.NUMSIDB);
    this.streamidMask = size - 1;
    if (getField(id, ID0.SMS)) {
      this.features |= FEAT_STREAM_MATCH;
      size = getField(id, ID0.NUMSMRG);
      if (size === 0) {
        this.err('stream-matching supported, but no SMRs present!');
        return -ENODEV;
      }
      this.smrs = Array.from({ length: size }, () => ({ id: 0, mask: 0, valid: false }));
      this.info(`\tstream matching with ${size} register groups`);
    }
    const s2crInit = this.disableBypass ? S2CR_TYPE_FAULT : S2CR_TYPE_BYPASS;
    this.s2crs = Array.from({ length: size }, () => ({
      group: null,
      count: 0,
      type: s2crInit,
      privcfg: 0,
      cbndx: 0,
    }));
    this.numMappingGroups = size;
    if (this.version < ARM_SMMU_V2 || !getField(id, ID0.PTFS_NO_AARCH32)) {
      this.features |= FEAT_FMT_AARCH32_L;
      if (!getField(id, ID0.PTFS_NO_AARCH32S)) this.features |= FEAT_FMT_AARCH32_S;
    }

    id = this.gr0Read(GR0.ID1);
    io.pgshift = getField(id, ID1.PAGESIZE) ? 16 : 12;
    const numpage = 1 << (getField(id, ID1.NUMPAGENDXB) + 1);
    const spaceSize = (2 * numpage) << io.pgshift;
    if (io.size !== spaceSize) {
      this.warn(
        `SMMU address space size (0x${spaceSize.toString(16)}) differs from mapped region size (0x${io.size.toString(16)})!`,
      );
    }
    io.numpage = numpage;
    this.numS2ContextBanks = getField(id, ID1.NUMS2CB);
    this.numContextBanks = getField(id, ID1.NUMCB);
    if (this.numS2ContextBanks > this.numContextBanks) {
      this.err('impossible number of S2 context banks!');
      return -ENODEV;
    }
    this.info(`\t${this.numContextBanks} context banks (${this.numS2ContextBanks} stage-2 only)`);
    this.cbs = Array.from({ length: this.numContextBanks }, () => ({
      tcr: [0, 0],
      ttbr: [0, 0],
      ttbrHi: [0, 0],
      mair: [0, 0],
      cfg: null,
      domain: null,
    }));
    this.contextMap = new Array<boolean>(this.numContextBanks).fill(false);

    id = this.gr0Read(GR0.ID2);
    this.ipaSize = idSizeToBits(getField(id, ID2.IAS));
    this.paSize = idSizeToBits(getField(id, ID2.OAS));
    if (getField(id, ID2.VMID16)) this.features |= FEAT_VMID16;
    if (this.version < ARM_SMMU_V2) {
      this.vaSize = this.ipaSize;
      if (this.version === ARM_SMMU_V1_64K) this.features |= FEAT_FMT_AARCH64_64K;
    } else {
      this.vaSize = idSizeToBits(getField(id, ID2.UBS));
      if (getField(id, ID2.PTFS_4K)) this.features |= FEAT_FMT_AARCH64_4K;
      if (getField(id, ID2.PTFS_16K)) this.features |= FEAT_FMT_AARCH64_16K;
      if (getField(id, ID2.PTFS_64K)) this.features |= FEAT_FMT_AARCH64_64K;
    }
    this.major = getField(this.gr0Read(GR0.ID7), ID7.MAJOR);
    if (this.impl?.cfgProbe) {
      const r = this.impl.cfgProbe(this);
      if (r) return r;
    }
    // the page sizes of every format the SMMU can use (AArch32 short-descriptor is not modelled)
    let bm = 0;
    if (this.features & (FEAT_FMT_AARCH64_4K | FEAT_FMT_AARCH32_L)) bm += SZ_4K + SZ_2M + SZ_1G;
    if (this.features & FEAT_FMT_AARCH64_16K) bm += SZ_16K + SZ_32M;
    if (this.features & FEAT_FMT_AARCH64_64K) bm += SZ_64K + SZ_512M;
    this.pgsizeBitmap = bm;
    this.info(`\tSupported page sizes: 0x${bm.toString(16).padStart(8, '0')}`);
    if (this.features & FEAT_TRANS_S1)
      this.info(`\tStage-1: ${this.vaSize}-bit VA -> ${this.ipaSize}-bit IPA`);
    if (this.features & FEAT_TRANS_S2)
      this.info(`\tStage-2: ${this.ipaSize}-bit IPA -> ${this.paSize}-bit PA`);
    // SMMUv2 needs an interrupt per context bank
    this.numContextIrqs = this.opts.contextIrqs.length;
    if (this.version === ARM_SMMU_V2 && this.numContextBanks > this.numContextIrqs) {
      this.err(`found only ${this.numContextIrqs} context irq(s) but ${this.numContextBanks} required`);
      return -ENODEV;
    }
    return 0;
  }

  /** arm_smmu_device_reset. */
  reset(): void {
    // clear global FSR
    const gfsr = this.gr0Read(GR0.sGFSR);
    this.gr0Write(GR0.sGFSR, gfsr);
    // every stream mapping group: SMRs invalid, S2CRs bypass or fault
    for (let i = 0; i < this.numMappingGroups; i++) this.writeSme(i);
    // every context bank disabled (or reprogrammed), FSR cleared
    for (let i = 0; i < this.numContextBanks; i++) {
      this.writeContextBank(i);
      this.cbWrite(i, CB.FSR, FSR_FAULT >>> 0);
    }
    // invalidate the TLB, just in case
    this.gr0Write(GR0.TLBIALLH, QCOM_DUMMY_VAL);
    this.gr0Write(GR0.TLBIALLNSNH, QCOM_DUMMY_VAL);
    let reg = this.gr0Read(GR0.sCR0);
    reg = setField(reg, sCR0.GFRE, 1);
    reg = setField(reg, sCR0.GFIE, 1);
    reg = setField(reg, sCR0.GCFGFRE, 1);
    reg = setField(reg, sCR0.GCFGFIE, 1);
    // disable TLB broadcasting
    reg = setField(reg, sCR0.VMIDPNE, 1);
    reg = setField(reg, sCR0.PTM, 1);
    // client access on, unmatched streams as configured
    reg = setField(reg, sCR0.CLIENTPD, 0);
    reg = setField(reg, sCR0.USFCFG, this.disableBypass ? 1 : 0);
    reg = setField(reg, sCR0.FB, 0);
    reg = setField(reg, sCR0.BSU, 0);
    if (this.features & FEAT_VMID16) reg = setField(reg, sCR0.VMID16EN, 1);
    if (this.features & FEAT_EXIDS) reg = setField(reg, sCR0.EXIDENABLE, 1);
    this.impl?.reset?.(this);
    // push the button
    this.tlbSyncGlobal();
    this.gr0Write(GR0.sCR0, reg);
  }

  /**
   * arm_smmu_runtime_resume: the SMMU was powered down (its registers lost), so reset writes
   * everything again from the shadow state — also what makes a v5.14..v6.15 set_stall count.
   */
  runtimeResume(): void {
    this.reset();
  }

  /** arm_smmu_test_smr_masks: which SMR ID and MASK bits are implemented. */
  testSmrMasks(): void {
    const smrs = this.smrs;
    if (smrs === null) return;
    const i = smrs.findIndex((s) => !s.valid);
    if (i < 0) return; // not having a free SMR implies the test is not needed
    this.gr0Write(GR0_SMR(i), setField(0, SMR.ID, this.streamidMask));
    this.streamidMask = getField(this.gr0Read(GR0_SMR(i)), SMR.ID);
    this.gr0Write(GR0_SMR(i), setField(0, SMR.MASK, this.streamidMask));
    this.smrMaskMask = getField(this.gr0Read(GR0_SMR(i)), SMR.MASK);
  }

  /** shutdown: sCR0 = CLIENTPD, every interrupt freed. */
  shutdown(): void {
    this.gr0Write(GR0.sCR0, 1 << sCR0.CLIENTPD.lsb);
    for (const irq of this.requested) this.m.irq.freeIrq(irq);
    this.requested = [];
  }

  // ------------------------------------------------------------------ stream mapping

  /** arm_smmu_write_s2cr. */
  writeS2cr(idx: number): void {
    if (this.impl?.writeS2cr) {
      this.impl.writeS2cr(this, idx);
      return;
    }
    this.gr0Write(GR0_S2CR(idx), this.s2crValue(idx, this.s2crs[idx]!.type, this.s2crs[idx]!.cbndx));
  }

  /** The S2CR value for entry `idx` with `type` and `cbndx` (the rest from the shadow). */
  s2crValue(idx: number, type: number, cbndx: number): number {
    const s = this.s2crs[idx]!;
    let reg = setField(0, S2CR.TYPE, type);
    reg = setField(reg, S2CR.CBNDX, cbndx);
    reg = setField(reg, S2CR.PRIVCFG, s.privcfg);
    if (this.features & FEAT_EXIDS && this.smrs?.[idx]?.valid) reg = setField(reg, S2CR.EXIDVALID, 1);
    return reg;
  }

  /** arm_smmu_write_smr. */
  writeSmr(idx: number): void {
    const s = this.smrs![idx]!;
    let reg = setField(0, SMR.ID, s.id);
    reg = setField(reg, SMR.MASK, s.mask);
    if (!(this.features & FEAT_EXIDS) && s.valid) reg = setField(reg, SMR.VALID, 1);
    this.gr0Write(GR0_SMR(idx), reg);
  }

  /** arm_smmu_write_sme: S2CR first, then the SMR (a valid SMR turns matching on). */
  writeSme(idx: number): void {
    this.writeS2cr(idx);
    if (this.smrs) this.writeSmr(idx);
  }

  /**
   * arm_smmu_find_sme: the entry for (id, mask), an existing one that covers it, a free one, or
   * -EINVAL when it partially overlaps an existing entry (a stream match conflict) / -ENOSPC.
   */
  findSme(id: number, mask: number): number {
    const smrs = this.smrs;
    if (smrs === null) return id; // stream indexing
    let free = -ENOSPC;
    for (let i = 0; i < this.numMappingGroups; i++) {
      const s = smrs[i]!;
      if (!s.valid) {
        if (free < 0) free = i;
        continue;
      }
      // a subset of an existing entry: share it
      if ((mask & s.mask) === mask && !((id ^ s.id) & ~s.mask)) return i;
      // any other overlap: a transaction could match both
      if (!((id ^ s.id) & ~(s.mask | mask))) return -EINVAL;
    }
    return free;
  }

  /** arm_smmu_free_sme: true when the entry became unused (the caller writes it). */
  freeSme(idx: number): boolean {
    const s2cr = this.s2crs[idx]!;
    if (--s2cr.count) return false;
    s2cr.type = this.disableBypass ? S2CR_TYPE_FAULT : S2CR_TYPE_BYPASS;
    s2cr.cbndx = 0;
    s2cr.group = null;
    if (this.smrs) this.smrs[idx]!.valid = false;
    return true;
  }

  /**
   * arm_smmu_master_alloc_smes: an entry per fwspec ID (shadow first, every entry or none),
   * then the registers, S2CR before SMR. Returns 0 or -errno with nothing changed.
   */
  masterAllocSmes(ids: readonly number[], smendx: number[]): number {
    for (let i = 0; i < ids.length; i++) {
      const sid = getField(ids[i]!, SMR.ID);
      const mask = getField(ids[i]!, SMR.MASK);
      if (smendx[i] !== INVALID_SMENDX) {
        this.rollbackSmes(smendx, i);
        return -17; // -EEXIST
      }
      const idx = this.findSme(sid, mask);
      if (idx < 0) {
        this.rollbackSmes(smendx, i);
        return idx;
      }
      if (this.smrs && this.s2crs[idx]!.count === 0) this.smrs[idx] = { id: sid, mask, valid: true };
      this.s2crs[idx]!.count++;
      smendx[i] = idx;
    }
    for (const idx of smendx) this.writeSme(idx);
    return 0;
  }

  private rollbackSmes(smendx: number[], n: number): void {
    for (let i = 0; i < n; i++) {
      this.freeSme(smendx[i]!);
      smendx[i] = INVALID_SMENDX;
    }
  }

  /** arm_smmu_master_free_smes. */
  masterFreeSmes(smendx: number[]): void {
    for (let i = 0; i < smendx.length; i++) {
      const idx = smendx[i]!;
      if (idx === INVALID_SMENDX) continue;
      if (this.freeSme(idx)) this.writeSme(idx);
      smendx[i] = INVALID_SMENDX;
    }
  }

  /** arm_smmu_master_install_s2crs: point every entry of a master at `type` / `cbndx`. */
  installS2crs(smendx: readonly number[], type: number, cbndx: number): void {
    for (const idx of smendx) {
      const s = this.s2crs[idx]!;
      if (s.type === type && s.cbndx === cbndx) continue;
      s.type = type;
      s.cbndx = cbndx;
      this.writeS2cr(idx);
    }
  }

  // ------------------------------------------------------------------ context banks

  /** __arm_smmu_alloc_bitmap(context_map, start, end): the first free bank in [start, end). */
  allocContextBankBitmap(start: number, end: number): number {
    for (let i = start; i < Math.min(end, this.numContextBanks); i++) {
      if (!this.contextMap[i]) {
        this.contextMap[i] = true;
        return i;
      }
    }
    return -ENOSPC;
  }

  freeContextBank(idx: number): void {
    this.contextMap[idx] = false;
  }

  /** The next context interrupt of an SMMUv1 (round robin); SMMUv2: the bank's own. */
  nextIrptndx(cbndx: number): number {
    if (this.version >= ARM_SMMU_V2) return cbndx;
    this.irptndx++;
    return this.numContextIrqs > 0 ? this.irptndx % this.numContextIrqs : 0;
  }

  /** arm_smmu_init_context_bank: what the bank will hold, from the io-pgtable configuration. */
  initContextBank(cfg: ArmSmmuCfg, pgtbl: IoPgtableCfg, owner: ArmSmmuContextOwner): void {
    const cb = this.cbs[cfg.cbndx]!;
    const stage1 = cfg.cbar !== CBAR_TYPE_S2_TRANS;
    cb.cfg = cfg;
    cb.domain = owner;
    if (stage1) {
      const t = pgtbl.armLpaeS1Cfg!;
      let tcr = armSmmuLpaeTcr(pgtbl);
      let tcr2 = setField(0, TCR2.PASIZE, t.tcr.ips);
      tcr2 = setField(tcr2, TCR2.SEP, TCR2_SEP_UPSTREAM);
      if (cfg.fmt === 'aarch64') tcr2 = setField(tcr2, TCR2.AS, 1);
      else tcr = setField(tcr, TCR.EAE, 1);
      cb.tcr = [tcr, tcr2];
      // IO_PGTABLE_QUIRK_ARM_TTBR1: the table goes in TTBR1, TTBR0 holds only the ASID
      cfg.ttbr1 = (pgtbl.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) !== 0;
      cb.ttbr = cfg.ttbr1 ? [0, t.ttbr] : [t.ttbr, 0];
      cb.ttbrHi = [cfg.asid << 16, cfg.asid << 16];
      cb.mair = [t.mair >>> 0, Math.floor(t.mair / 4294967296) >>> 0];
    } else {
      const v = pgtbl.armLpaeS2Cfg!;
      let vtcr = setField(0, VTCR.RES1, 1);
      vtcr = setField(vtcr, VTCR.SH0, v.vtcr.sh);
      vtcr = setField(vtcr, VTCR.ORGN0, v.vtcr.orgn);
      vtcr = setField(vtcr, VTCR.IRGN0, v.vtcr.irgn);
      vtcr = setField(vtcr, VTCR.SL0, v.vtcr.sl);
      vtcr = setField(vtcr, VTCR.T0SZ, v.vtcr.tsz);
      vtcr = setField(vtcr, VTCR.TG0, v.vtcr.tg);
      vtcr = setField(vtcr, VTCR.PS, v.vtcr.ps);
      cb.tcr = [vtcr, 0];
      cb.ttbr = [v.vttbr, 0];
      cb.ttbrHi = [0, 0];
      cb.mair = [0, 0];
    }
  }

  /** Forget a bank's configuration (arm_smmu_destroy_domain_context's cbs[idx].cfg = NULL). */
  clearContextBank(idx: number): void {
    const cb = this.cbs[idx]!;
    cb.cfg = null;
    cb.domain = null;
  }

  /** arm_smmu_write_context_bank: the register write order of Linux (§A.8). */
  writeContextBank(idx: number): void {
    const cb = this.cbs[idx]!;
    const cfg = cb.cfg;
    if (cfg === null) {
      this.cbWrite(idx, CB.SCTLR, 0);
      return;
    }
    const stage1 = cfg.cbar !== CBAR_TYPE_S2_TRANS;
    // CBA2R
    if (this.version > ARM_SMMU_V1) {
      let reg = cfg.fmt === 'aarch64' ? setField(0, CBA2R.VA64, 1) : 0;
      if (this.features & FEAT_VMID16) reg = setField(reg, CBA2R.VMID16, cfg.vmid);
      this.gr1Write(GR1_CBA2R(idx), reg);
    }
    // CBAR
    let reg = setField(0, CBAR.TYPE, cfg.cbar);
    if (this.version < ARM_SMMU_V2) reg = setField(reg, CBAR.IRPTNDX, cfg.irptndx);
    if (stage1) {
      // the weakest shareability / memory types, so that the TCR / PTE attributes win
      reg = setField(reg, CBAR.S1_BPSHCFG, CBAR_S1_BPSHCFG_NSH);
      reg = setField(reg, CBAR.S1_MEMATTR, CBAR_S1_MEMATTR_WB);
    } else if (!(this.features & FEAT_VMID16)) {
      reg = setField(reg, CBAR.VMID, cfg.vmid);
    }
    this.gr1Write(GR1_CBAR(idx), reg);
    // TCR (before the TTBRs: TCR2.AS sets the ASID width)
    if (stage1 && this.version > ARM_SMMU_V1) this.cbWrite(idx, CB.TCR2, cb.tcr[1]);
    this.cbWrite(idx, CB.TCR, cb.tcr[0]);
    // TTBRs
    this.cbWriteq(idx, CB.TTBR0, cb.ttbr[0], cb.ttbrHi[0]);
    if (stage1) this.cbWriteq(idx, CB.TTBR1, cb.ttbr[1], cb.ttbrHi[1]);
    // MAIRs (stage 1 only)
    if (stage1) {
      this.cbWrite(idx, CB.MAIR0, cb.mair[0]);
      this.cbWrite(idx, CB.MAIR1, cb.mair[1]);
    }
    // SCTLR last
    let sctlr = 0;
    for (const fl of [SCTLR.CFIE, SCTLR.CFRE, SCTLR.AFE, SCTLR.TRE, SCTLR.M]) sctlr = setField(sctlr, fl, 1);
    if (stage1) sctlr = setField(sctlr, SCTLR.ASIDPNE, 1);
    if (this.impl?.writeSctlr) this.impl.writeSctlr(this, idx, sctlr);
    else this.cbWrite(idx, CB.SCTLR, sctlr);
  }

  // ------------------------------------------------------------------ TLB maintenance

  /**
   * __arm_smmu_tlb_sync: write the sync register, then poll the status (TLB_SPIN_COUNT reads a
   * pass, udelay doubling up to TLB_LOOP_TIMEOUT). A busy-wait: allowed in atomic context.
   * With several instances (NVIDIA) the status of every one is ORed.
   */
  private tlbSync(page: number, sync: number, status: number, activeBit: number): void {
    const io = this.io;
    this.stats.tlbSyncs++;
    io.writel(page, sync, QCOM_DUMMY_VAL);
    const n = io.broadcast ? io.instances : 1;
    for (let delay = 1; delay < TLB_LOOP_TIMEOUT; delay *= 2) {
      for (let spin = TLB_SPIN_COUNT; spin > 0; spin--) {
        let active = 0;
        for (let i = 0; i < n; i++) active |= io.readl(page, status, i);
        if (!(active & activeBit)) return;
      }
      this.m.sched.runForSync(delay * 1000);
    }
    this.stats.tlbSyncTimeouts++;
    if (this.tlbRatelimit.allow(this.m.sched.now)) this.err('TLB sync timed out -- SMMU may be deadlocked');
  }

  /** arm_smmu_tlb_sync_global. */
  tlbSyncGlobal(): void {
    this.tlbSync(ARM_SMMU_GR0, GR0.sTLBGSYNC, GR0.sTLBGSTATUS, sTLBGSTATUS_GSACTIVE);
  }

  /** arm_smmu_tlb_sync_context. */
  tlbSyncContext(idx: number): void {
    this.tlbSync(this.io.numpage + idx, CB.TLBSYNC, CB.TLBSTATUS, TLBSTATUS_SACTIVE);
  }

  /** arm_smmu_tlb_inv_context_s1: TLBIASID + CB sync. */
  tlbInvContextS1(cfg: ArmSmmuCfg): void {
    this.cbWrite(cfg.cbndx, CB.TLBIASID, cfg.asid);
    this.tlbSyncContext(cfg.cbndx);
  }

  /** arm_smmu_tlb_inv_context_s2: TLBIVMID + global sync. */
  tlbInvContextS2(cfg: ArmSmmuCfg): void {
    this.gr0Write(GR0.TLBIVMID, cfg.vmid);
    this.tlbSyncGlobal();
  }

  /** arm_smmu_tlb_inv_range_s1: TLBIVA / TLBIVAL per granule (`reg`), no sync. */
  tlbInvRangeS1(cfg: ArmSmmuCfg, iova: number, size: number, granule: number, reg: number): void {
    const idx = cfg.cbndx;
    if (cfg.fmt !== 'aarch64') {
      for (let a = iova; a < iova + size; a += granule)
        this.cbWrite(idx, reg, ((Math.floor(a / 4096) * 4096) >>> 0) | cfg.asid);
      return;
    }
    const hi = cfg.asid << 16;
    // iova >>= 12 on the 64-bit address: an upper-half (negative) IOVA's ones reach bit 51, and,
    // as in Linux, bits 51:48 are ORed into the ASID field along with the ASID
    let a = Math.floor(iova / 4096);
    if (a < 0) a += 2 ** 52;
    for (; size > 0; size -= granule, a += granule / 4096) {
      this.cbWriteq(idx, reg, a, hi);
    }
  }

  /** arm_smmu_tlb_inv_range_s2: TLBIIPAS2 / TLBIIPAS2L per granule (`reg`), no sync. */
  tlbInvRangeS2(cfg: ArmSmmuCfg, iova: number, size: number, granule: number, reg: number): void {
    for (let a = Math.floor(iova / 4096); size > 0; size -= granule, a += granule / 4096) {
      if (cfg.fmt === 'aarch64') this.cbWriteq(cfg.cbndx, reg, a);
      else this.cbWrite(cfg.cbndx, reg, a);
    }
  }

  // ------------------------------------------------------------------ interrupts

  /**
   * Request the interrupts: each distinct line once (see the file comment). Global lines are
   * checked for global faults; every line for the context banks wired to it.
   */
  requestIrqs(): number {
    const lines = new Set<number>([...this.opts.globalIrqs, ...this.opts.contextIrqs]);
    for (const irq of lines) {
      const global = this.opts.globalIrqs.includes(irq);
      const r = this.m.irq.requestThreadedIrq(
        irq,
        `arm-smmu ${this.name}`,
        () => this.hardIrq(irq, global),
        () => this.threadIrq(irq, global),
      );
      if (r < 0) {
        this.err(`failed to request ${global ? 'global' : 'context'} IRQ ${irq}`);
        for (const q of this.requested) this.m.irq.freeIrq(q);
        this.requested = [];
        return r;
      }
      this.requested.push(irq);
    }
    return 0;
  }

  /** Banks wired to `irq` that hold a context (Linux requests only those). */
  private banksOn(irq: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.numContextBanks; i++) {
      const cfg = this.cbs[i]!.cfg;
      if (cfg === null) continue;
      if (this.opts.contextIrqs[cfg.irptndx] === irq) out.push(i);
    }
    return out;
  }

  private hardIrq(irq: number, global: boolean): IrqReturn {
    for (let inst = 0; inst < this.io.instances; inst++) {
      if (global && this.gr0Read(GR0.sGFSR, inst) !== 0) return IRQ_WAKE_THREAD;
      for (const idx of this.banksOn(irq)) {
        if (this.awaitingResponse.has(idx)) continue;
        if (this.cbRead(idx, CB.FSR, inst) & FSR_FAULT) return IRQ_WAKE_THREAD;
      }
    }
    return IRQ_NONE;
  }

  private async threadIrq(irq: number, global: boolean): Promise<void> {
    for (let inst = 0; inst < this.io.instances; inst++) {
      if (global) this.globalFault(inst);
      for (const idx of this.banksOn(irq)) {
        if (this.awaitingResponse.has(idx)) continue;
        await this.contextFault(inst, idx);
      }
    }
  }

  /** arm_smmu_global_fault (one instance). */
  globalFault(inst = 0): IrqReturn {
    const gfsr = this.gr0Read(GR0.sGFSR, inst);
    const gfsynr0 = this.gr0Read(GR0.sGFSYNR0, inst);
    const gfsynr1 = this.gr0Read(GR0.sGFSYNR1, inst);
    const gfsynr2 = this.gr0Read(GR0.sGFSYNR2, inst);
    if (!gfsr) return IRQ_NONE;
    this.stats.globalFaults++;
    if (
      this.gRatelimit.allow(this.m.sched.now, (n) =>
        this.warn(`arm_smmu_global_fault: ${n} callbacks suppressed`),
      )
    ) {
      if (this.disableBypass && getField(gfsr, sGFSR.USF)) {
        this.err(
          `Blocked unknown Stream ID 0x${(gfsynr1 & 0xffff).toString(16)}; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications`,
        );
      } else {
        this.err('Unexpected global fault, this could be serious');
        this.err(
          `\tGFSR 0x${hex8(gfsr)}, GFSYNR0 0x${hex8(gfsynr0)}, GFSYNR1 0x${hex8(gfsynr1)}, GFSYNR2 0x${hex8(gfsynr2)}`,
        );
      }
    }
    this.io.writelInst(inst, ARM_SMMU_GR0, GR0.sGFSR, gfsr);
    return IRQ_HANDLED;
  }

  /** arm_smmu_read_context_fault_info. */
  readContextFaultInfo(idx: number, inst = 0): ArmSmmuContextFaultInfo {
    return {
      fsr: this.cbRead(idx, CB.FSR, inst),
      fsynr: this.cbRead(idx, CB.FSYNR0, inst),
      iova: this.cbReadqSigned(idx, CB.FAR, inst),
      cbfrsynra: this.gr1Read(GR1_CBFRSYNRA(idx), inst),
    };
  }

  /** arm_smmu_print_context_fault_info (v6.12+). */
  printContextFaultInfo(idx: number, cfi: ArmSmmuContextFaultInfo): void {
    this.err(
      `Unhandled context fault: fsr=0x${cfi.fsr.toString(16)}, iova=${cfi.iova < 0 ? hexAddr(cfi.iova) : `0x${cfi.iova.toString(16).padStart(8, '0')}`}, fsynr=0x${cfi.fsynr.toString(16)}, cbfrsynra=0x${cfi.cbfrsynra.toString(16)}, cb=${idx}`,
    );
    this.err(`FSR    = ${hex8(cfi.fsr)} [${fsrFlagsLinux(cfi.fsr)}], SID=0x${cfi.cbfrsynra.toString(16)}`);
    this.err(`FSYNR0 = ${hex8(cfi.fsynr)} [${fsynr0FlagsLinux(cfi.fsynr)}]`);
  }

  /** Write RESUME (0: retry, TERMINATE) on one instance's bank. */
  resume(idx: number, terminate: boolean, inst = 0): void {
    if (terminate) this.stats.terminates++;
    else this.stats.resumes++;
    this.io.writelInst(inst, this.io.numpage + idx, CB.RESUME, terminate ? RESUME_TERMINATE : 0);
  }

  /**
   * arm_smmu_context_fault for bank `idx` of instance `inst`: the fault layer first (a device
   * fault handler, or a handler the fault layer holds for the domain), else report_iommu_fault
   * on the domain; the rate-limited print when nobody handled it; FSR cleared; a stalled
   * transaction retried on -EAGAIN and terminated otherwise (resume style 'handler'), or left
   * for the client driver (style 'driver').
   */
  async contextFault(inst: number, idx: number): Promise<IrqReturn> {
    const cfi = this.readContextFaultInfo(idx, inst);
    if (!(cfi.fsr & FSR_FAULT)) return IRQ_NONE;
    this.stats.contextFaults++;
    const owner = this.cbs[idx]!.domain;
    const hooked = this.faultHook?.(this, inst, idx, cfi) ?? null;
    if (hooked !== null) return IRQ_HANDLED;
    let ret = -ENOSYS;
    if (owner !== null) {
      const flags = getField(cfi.fsynr, FSYNR0.WNR) ? IOMMU_FAULT_WRITE : IOMMU_FAULT_READ;
      const r = this.impl?.threadedContextIrq
        ? reportIommuFault(owner.domain, null, cfi.iova, flags)
        : this.m.exec.atomic(`arm-smmu context fault cb${idx}`, () =>
            reportIommuFault(owner.domain, null, cfi.iova, flags),
          );
      if (typeof r === 'number') ret = r;
      else if (this.impl?.threadedContextIrq) ret = await r;
      else {
        this.m.reportBug(
          'might-sleep',
          `BUG: sleeping function called from invalid context: iommu fault handler of ${this.name} cb${idx} returned a promise in hardirq context`,
        );
        r.catch(() => {});
        ret = -EINVAL;
      }
    }
    if (ret === -ENOSYS) {
      if (
        this.ctxRatelimit.allow(this.m.sched.now, (n) =>
          this.warn(`arm_smmu_context_fault: ${n} callbacks suppressed`),
        )
      ) {
        this.stats.contextFaultsLogged++;
        this.printContextFaultInfo(idx, cfi);
      } else this.stats.contextFaultsSuppressed++;
    }
    this.io.writelInst(inst, this.io.numpage + idx, CB.FSR, cfi.fsr);
    if (cfi.fsr & FSR_SS && this.resumeStyle === 'handler') this.resume(idx, ret !== -EAGAIN, inst);
    return IRQ_HANDLED;
  }

  /** SCTLR read-modify-write under cb_lock (qcom set_stall, the fault layer's IRQ masking). */
  rmwSctlr(idx: number, set: number, clear: number): void {
    const v = this.cbRead(idx, CB.SCTLR);
    this.cbWrite(idx, CB.SCTLR, ((v & ~clear) | set) >>> 0);
  }
}

function hex8(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/**
 * arm_smmu_lpae_tcr: TCR for io-pgtable's stage-1 configuration: the TTBR0 half with EPD1 set,
 * or with IO_PGTABLE_QUIRK_ARM_TTBR1 the fields shifted to the TTBR1 half (TG1, SH1, ORGN1,
 * IRGN1, T1SZ), A1 clear and EPD0 set.
 */
export function armSmmuLpaeTcr(pgtbl: IoPgtableCfg): number {
  const t = pgtbl.armLpaeS1Cfg!.tcr;
  if (pgtbl.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) {
    let tcr = setField(0, TCR.EPD0, 1);
    tcr = setField(tcr, TCR.TG1, t.tg);
    tcr = setField(tcr, TCR.SH1, t.sh);
    tcr = setField(tcr, TCR.ORGN1, t.orgn);
    tcr = setField(tcr, TCR.IRGN1, t.irgn);
    return setField(tcr, TCR.T1SZ, t.tsz);
  }
  let tcr = setField(0, TCR.EPD1, 1);
  tcr = setField(tcr, TCR.TG0, t.tg);
  tcr = setField(tcr, TCR.SH0, t.sh);
  tcr = setField(tcr, TCR.ORGN0, t.orgn);
  tcr = setField(tcr, TCR.IRGN0, t.irgn);
  return setField(tcr, TCR.T0SZ, t.tsz);
}

/** CBAR type of a stage. */
export function cbarForStage(stage: 1 | 2): number {
  return stage === 1 ? CBAR_TYPE_S1_TRANS_S2_BYPASS : CBAR_TYPE_S2_TRANS;
}

/** The formats the SMMU offers, in Linux's order of preference on a 64-bit kernel. */
export function chooseContextFmt(features: number): ArmSmmuContextFmt | null {
  if (features & FEAT_FMT_AARCH64) return 'aarch64';
  if (features & FEAT_FMT_AARCH32_L) return 'aarch32-l';
  return null;
}

export { S2CR_TYPE_BYPASS, S2CR_TYPE_FAULT, S2CR_TYPE_TRANS };
