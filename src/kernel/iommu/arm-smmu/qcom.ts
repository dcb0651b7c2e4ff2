/**
 * The Qualcomm implementation (arm-smmu-qcom.c) and the Adreno GPU's interface to its SMMU
 * (include/linux/adreno-smmu-priv.h).
 *
 *  - Every Qualcomm domain flushes walks with TLBIASID (flush_walk_prefer_tlbiasid).
 *  - Firmware that forbids S2CR BYPASS (cfg_probe reads back a BYPASS written to the last
 *    group): the last context bank is reserved as a bypass bank (SCTLR 0, S1 with S2 bypass),
 *    groups are capped at 128, and S2CR writes turn BYPASS into TRANS to that bank and FAULT
 *    into BYPASS.
 *  - Adreno (`qcom,adreno-smmu`): the GPU (the master with StreamID 0) gets context bank 0 and
 *    everyone else starts at 1; SCTLR gets HUPCF always and CFCFG when stall is enabled for the
 *    bank; SMMUv2 hides the 16K granule; the GPU driver gets an AdrenoSmmuPriv through
 *    adrenoSmmuPriv(dev): get_fault_info, set_stall, set_ttbr0_cfg, get_ttbr1_cfg and — with
 *    the v5.14..v6.15 resume style — resume_translation. With the v6.16 style the context fault
 *    handler is threaded and set_stall takes effect at once on SCTLR.CFCFG.
 *  - Split page tables (qcom_adreno_smmu_init_context): the GPU's domain gets
 *    IO_PGTABLE_QUIRK_ARM_TTBR1 when the SMMU can do it (qcom_adreno_can_do_ttbr1: not
 *    `qcom,msm8996-smmu-v2`) and the bank is an AArch64 stage 1. Its tables are then the TTBR1
 *    (upper-half) ones: the kernel's global GPU mappings, at sign-extended IOVAs — negative
 *    Numbers in the kernel model (0xffff_0001_0000_0000 is -2^48 + 2^32) — which the GPU
 *    issues as 49-bit addresses (bit 48 set) that the SMMU sign-extends (TCR2.SEP = UPSTREAM).
 *    TTBR0 starts disabled (EPD0); set_ttbr0_cfg installs a per-process table there (the
 *    context's ASID) or, with null, disables it again. Without the split (msm8996) the domain
 *    is an ordinary TTBR0 one and set_ttbr0_cfg answers -EINVAL: the GPU driver falls back to
 *    one global table.
 */

import {
  CB,
  CBAR,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S2_TRANS,
  GR0_S2CR,
  GR1_CBAR,
  GR1_CBFRSYNRA,
  getField,
  S2CR,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
  SCTLR,
  setField,
  TCR,
} from '../../../arch/smmuv2/regs.ts';
import type { DtNode } from '../../of/tree.ts';
import type { IommuDevice } from '../device.ts';
import { IOMMU_DOMAIN_IDENTITY } from '../domain.ts';
import { EINVAL } from '../errno.ts';
import { IO_PGTABLE_QUIRK_ARM_TTBR1, type IoPgtableCfg } from '../io-pgtable/io-pgtable.ts';
import { armMmu500Reset } from './mmu500.ts';
import {
  ARM_SMMU_V2,
  type ArmSmmuCfg,
  type ArmSmmuDevice,
  type ArmSmmuImpl,
  armSmmuLpaeTcr,
  FEAT_FMT_AARCH64_16K,
} from './smmu.ts';

/** The GPU always uses StreamID 0 (QCOM_ADRENO_SMMU_GPU_SID). */
export const QCOM_ADRENO_SMMU_GPU_SID = 0;

/** struct adreno_smmu_fault_info. */
export interface AdrenoSmmuFaultInfo {
  far: number;
  ttbr0: number;
  contextidr: number;
  fsr: number;
  fsynr0: number;
  fsynr1: number;
  cbfrsynra: number;
}

/** struct adreno_smmu_priv: what the SMMU driver hands the GPU driver. */
export interface AdrenoSmmuPriv {
  readonly cookie: unknown;
  /** The context bank serving the GPU. */
  readonly cbndx: number;
  /** get_ttbr1_cfg: the io-pgtable configuration of the GPU's (kernel) tables. */
  getTtbr1Cfg(): IoPgtableCfg | null;
  /**
   * set_ttbr0_cfg: install the stage-1 (ARM_64_LPAE_S1, no TTBR1 quirk) table of `cfg` in TTBR0
   * with the context's ASID and clear EPD0; null disables TTBR0 again (EPD0 set, TTBR0 = ASID
   * only). 0, or -EINVAL when the domain has no split tables (EPD1 set), when enabling with TTBR0
   * already enabled or disabling with it disabled, or (not Linux, which would use it anyway) when
   * `cfg` is no TTBR0 stage-1 configuration. It does no TLB maintenance: the caller does.
   */
  setTtbr0Cfg(cfg: IoPgtableCfg | null): number;
  /** get_fault_info: the bank's fault registers. */
  getFaultInfo(): AdrenoSmmuFaultInfo;
  /** set_stall: CFCFG for the bank (v6.16+: at once; before: at the next context-bank write). */
  setStall(enabled: boolean): void;
  /**
   * The GPU powering up resumes its SMMU (the device link's runtime PM: arm_smmu_runtime_resume
   * rewrites every context bank). Not in Linux's struct: what pm_runtime_get_sync(gpu) does to
   * the supplier, which the model has no runtime PM for. It is when a v5.14..v6.15 set_stall
   * reaches SCTLR.
   */
  runtimeResumeSupplier(): void;
  /** resume_translation (v5.14..v6.15 only; absent with the v6.16 resume style). */
  resumeTranslation?(terminate: boolean): void;
}

const privs = new WeakMap<IommuDevice, AdrenoSmmuPriv>();

/** The adreno_smmu_priv the SMMU driver filled in for `dev` (the GPU), or null. */
export function adrenoSmmuPriv(dev: IommuDevice): AdrenoSmmuPriv | null {
  return privs.get(dev) ?? null;
}

/** Per-SMMU Qualcomm state (struct qcom_smmu). */
interface QcomSmmu {
  /** Banks with stall enabled (stall_enabled bitmask). */
  stallEnabled: Set<number>;
  /** The reserved bypass bank, or -1. */
  bypassCbndx: number;
  adreno: boolean;
  /** qcom_adreno_can_do_ttbr1: split page tables are possible (not on qcom,msm8996-smmu-v2). */
  canDoTtbr1: boolean;
}

const qcomState = new WeakMap<ArmSmmuDevice, QcomSmmu>();

function isGpuDevice(dev: IommuDevice): boolean {
  return (dev.iommu?.ids ?? []).some((id) => (id & 0xffff) === QCOM_ADRENO_SMMU_GPU_SID);
}

/** qcom_smmu_cfg_probe: detect firmware that forbids bypass. */
function qcomCfgProbe(smmu: ArmSmmuDevice): number {
  const q = qcomState.get(smmu)!;
  const last = smmu.numMappingGroups - 1;
  if (last < 0) return 0;
  const reg = setField(0, S2CR.TYPE, S2CR_TYPE_BYPASS);
  smmu.gr0Write(GR0_S2CR(last), reg);
  if (getField(smmu.gr0Read(GR0_S2CR(last)), S2CR.TYPE) !== S2CR_TYPE_BYPASS) {
    q.bypassCbndx = smmu.numContextBanks - 1;
    smmu.contextMap[q.bypassCbndx] = true;
    // a stage-1 bank with stage-2 bypass and translation off: a bypass by another name
    smmu.gr1Write(GR1_CBAR(q.bypassCbndx), setField(0, CBAR.TYPE, CBAR_TYPE_S1_TRANS_S2_BYPASS));
    smmu.cbWrite(q.bypassCbndx, CB.SCTLR, 0);
    if (smmu.numMappingGroups > 128) {
      smmu.numMappingGroups = 128;
      smmu.info('\tLimiting the stream matching groups to 128');
    }
  }
  return 0;
}

/** qcom_smmu_write_s2cr: with the bypass quirk, BYPASS -> TRANS to the bypass bank, FAULT -> BYPASS. */
function qcomWriteS2cr(smmu: ArmSmmuDevice, idx: number): void {
  const q = qcomState.get(smmu)!;
  const s = smmu.s2crs[idx]!;
  let type = s.type;
  let cbndx = s.cbndx;
  if (q.bypassCbndx >= 0) {
    if (type === S2CR_TYPE_BYPASS) {
      type = S2CR_TYPE_TRANS;
      cbndx = q.bypassCbndx;
    } else if (type === S2CR_TYPE_FAULT) {
      type = S2CR_TYPE_BYPASS;
      cbndx = 0xff;
    }
  }
  smmu.gr0Write(GR0_S2CR(idx), smmu.s2crValue(idx, type, cbndx));
}

/** qcom_adreno_smmu_write_sctlr: HUPCF always, CFCFG when stall is enabled for the bank. */
function adrenoWriteSctlr(smmu: ArmSmmuDevice, idx: number, reg: number): void {
  const q = qcomState.get(smmu)!;
  let v = setField(reg, SCTLR.HUPCF, 1);
  if (q.stallEnabled.has(idx)) v = setField(v, SCTLR.CFCFG, 1);
  smmu.cbWrite(idx, CB.SCTLR, v);
}

/** qcom_adreno_smmu_alloc_context_bank: bank 0 for the GPU, the others from 1. */
function adrenoAllocContextBank(smmu: ArmSmmuDevice, _stage: 1 | 2, dev: IommuDevice): number {
  if (isGpuDevice(dev)) return smmu.allocContextBankBitmap(0, 1);
  return smmu.allocContextBankBitmap(1, smmu.numContextBanks);
}

/** qcom_adreno_smmu_init_context: fill the GPU's adreno_smmu_priv. */
function adrenoInitContext(
  smmu: ArmSmmuDevice,
  cfg: ArmSmmuCfg,
  pgtbl: IoPgtableCfg,
  dev: IommuDevice,
): number {
  if (!isGpuDevice(dev)) return 0;
  const q = qcomState.get(smmu)!;
  const idx = cfg.cbndx;
  // split page tables only for an AArch64 stage-1 bank (the arm-smmu code assumes it with the quirk)
  if (q.canDoTtbr1 && cfg.cbar !== CBAR_TYPE_S2_TRANS && cfg.fmt === 'aarch64')
    pgtbl.quirks |= IO_PGTABLE_QUIRK_ARM_TTBR1;
  const priv: AdrenoSmmuPriv = {
    cookie: cfg,
    cbndx: idx,
    getTtbr1Cfg: () => pgtbl,
    setTtbr0Cfg: (c) => adrenoSetTtbr0Cfg(smmu, idx, pgtbl, c),
    getFaultInfo: () => ({
      fsr: smmu.cbRead(idx, CB.FSR),
      fsynr0: smmu.cbRead(idx, CB.FSYNR0),
      fsynr1: smmu.cbRead(idx, CB.FSYNR1),
      far: smmu.cbReadqSigned(idx, CB.FAR),
      cbfrsynra: smmu.gr1Read(GR1_CBFRSYNRA(idx)),
      ttbr0: smmu.cbReadq(idx, CB.TTBR0),
      contextidr: smmu.cbRead(idx, CB.CONTEXTIDR),
    }),
    runtimeResumeSupplier: () => smmu.runtimeResume(),
    setStall: (enabled) => {
      const changed = q.stallEnabled.has(idx) !== enabled;
      if (enabled) q.stallEnabled.add(idx);
      else q.stallEnabled.delete(idx);
      // v6.16+: the device is on, so SCTLR changes now (CFCFG is sampled per fault: no TLBI)
      if (changed && smmu.resumeStyle === 'handler') {
        const bit = 1 << SCTLR.CFCFG.lsb;
        smmu.rmwSctlr(idx, enabled ? bit : 0, enabled ? 0 : bit);
      }
    },
  };
  if (smmu.resumeStyle === 'driver') {
    (priv as { resumeTranslation?: (t: boolean) => void }).resumeTranslation = (terminate) =>
      smmu.resume(idx, terminate);
  }
  privs.set(dev, priv);
  return 0;
}

/** qcom_adreno_smmu_set_ttbr0_cfg. */
function adrenoSetTtbr0Cfg(
  smmu: ArmSmmuDevice,
  idx: number,
  own: IoPgtableCfg,
  c: IoPgtableCfg | null,
): number {
  const cb = smmu.cbs[idx]!;
  if (cb.cfg === null) return -EINVAL;
  // the domain must have split page tables already
  if (getField(cb.tcr[0], TCR.EPD1)) return -EINVAL;
  // not Linux: a table that is no TTBR0 stage-1 one would be installed with garbage fields
  if (c !== null && (c.armLpaeS1Cfg === undefined || c.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1)) return -EINVAL;
  if (c === null) {
    if (getField(cb.tcr[0], TCR.EPD0)) return -EINVAL;
    cb.tcr[0] = armSmmuLpaeTcr(own);
    cb.ttbr[0] = 0;
  } else {
    if (!getField(cb.tcr[0], TCR.EPD0)) return -EINVAL;
    let tcr = cb.tcr[0] | armSmmuLpaeTcr(c);
    tcr = setField(setField(tcr, TCR.EPD0, 0), TCR.EPD1, 0);
    cb.tcr[0] = tcr;
    cb.ttbr[0] = c.armLpaeS1Cfg!.ttbr;
  }
  cb.ttbrHi[0] = cb.cfg.asid << 16;
  smmu.writeContextBank(idx);
  return 0;
}

/** Marks every Qualcomm domain's walk flushes as TLBIASID (set from iommu.ts through initContext). */
export function isQcom(smmu: ArmSmmuDevice): boolean {
  return qcomState.has(smmu);
}

const QCOM_COMPAT = /^qcom,/;

/**
 * qcom_smmu_client_of_match: clients that get an identity default domain (the GPU and display
 * set up their own translation; firmware may still be scanning out a splash screen).
 */
export const QCOM_SMMU_CLIENTS: readonly string[] = [
  'qcom,adreno',
  'qcom,adreno-gmu',
  'qcom,mdp4',
  'qcom,mdss',
  'qcom,qcm2290-mdss',
  'qcom,sar2130p-mdss',
  'qcom,sc7180-mdss',
  'qcom,sc7180-mss-pil',
  'qcom,sc7280-mdss',
  'qcom,sc7280-mss-pil',
  'qcom,sc8180x-mdss',
  'qcom,sc8280xp-mdss',
  'qcom,sdm670-mdss',
  'qcom,sdm845-mdss',
  'qcom,sdm845-mss-pil',
  'qcom,sm6350-mdss',
  'qcom,sm6375-mdss',
  'qcom,sm8150-mdss',
  'qcom,sm8250-mdss',
  'qcom,x1e80100-mdss',
];

/** qcom_smmu_def_domain_type: IDENTITY for the listed clients, else no preference. */
function qcomDefDomainType(dev: IommuDevice): number {
  const node = (dev as { ofNode?: DtNode | null }).ofNode;
  if (node?.compatible.some((c) => QCOM_SMMU_CLIENTS.includes(c))) return IOMMU_DOMAIN_IDENTITY;
  return 0;
}

/** qcom_smmu_impl_init: the Qualcomm implementation for `node`, or null for other vendors. */
export function qcomSmmuImplInit(smmu: ArmSmmuDevice, node: DtNode): ArmSmmuImpl | null {
  if (!node.compatible.some((c) => QCOM_COMPAT.test(c) && /smmu/.test(c))) return null;
  const adreno = node.isCompatible('qcom,adreno-smmu');
  const mmu500 = node.isCompatible('arm,mmu-500') || node.compatible.some((c) => /smmu-500$/.test(c));
  if (mmu500) smmu.model = 'qcom-smmuv500';
  qcomState.set(smmu, {
    stallEnabled: new Set(),
    bypassCbndx: -1,
    adreno,
    canDoTtbr1: !node.isCompatible('qcom,msm8996-smmu-v2'),
  });
  const base: ArmSmmuImpl = {
    name: adreno ? 'qcom-adreno-smmu' : 'qcom-smmu',
    cfgProbe: (s) => {
      if (adreno && s.version === ARM_SMMU_V2 && !mmu500) s.features &= ~FEAT_FMT_AARCH64_16K;
      return qcomCfgProbe(s);
    },
    reset: mmu500 ? armMmu500Reset : undefined,
    writeS2cr: qcomWriteS2cr,
    defDomainType: qcomDefDomainType,
  };
  if (!adreno) return base;
  return {
    ...base,
    allocContextBank: adrenoAllocContextBank,
    initContext: adrenoInitContext,
    writeSctlr: adrenoWriteSctlr,
    threadedContextIrq: smmu.resumeStyle === 'handler',
  };
}
