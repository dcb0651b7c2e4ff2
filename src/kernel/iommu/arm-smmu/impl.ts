/**
 * Implementation choice and quirks (arm-smmu-impl.c, arm-smmu-nvidia.c; Qualcomm in qcom.ts):
 * the version and model each compatible means (arm_smmu_match_data), and arm_smmu_impl_init.
 *
 *  - Arm MMU-500 (arm_mmu500_reset): sACR.CACHE_LOCK cleared from r2 on, SMTNMB_TLBEN and
 *    S2CRB_TLBEN set; the next-page prefetcher (ACTLR.CPRE) switched off in every bank for
 *    errata 841119 / 826419 (CONFIG_ARM_SMMU_MMU_500_CPRE_ERRATA=y), warning once if it stuck;
 *  - NVIDIA Tegra194/234: the instances behind one node are written together, read from the
 *    first, synced and fault-scanned all (io.ts, smmu.ts); page sizes limited to PAGE_SIZE;
 *  - Marvell AP806 (erratum 582743): 64-bit registers as two 32-bit accesses, and the AArch64
 *    formats hidden so that nothing needs a 64-bit access.
 */

import type { DtNode } from '../../of/tree.ts';
import type { ArmSmmuIo } from './io.ts';
import { armMmu500Reset } from './mmu500.ts';
import { qcomSmmuImplInit } from './qcom.ts';
import {
  ARM_SMMU_V1,
  ARM_SMMU_V1_64K,
  ARM_SMMU_V2,
  type ArmSmmuArchVersion,
  type ArmSmmuDevice,
  type ArmSmmuImpl,
  type ArmSmmuModel,
  FEAT_FMT_AARCH64_4K,
  FEAT_FMT_AARCH64_16K,
  FEAT_FMT_AARCH64_64K,
} from './smmu.ts';

/** arm_smmu_of_match: compatible -> (version, model). */
export const ARM_SMMU_OF_MATCH: ReadonlyArray<[string, ArmSmmuArchVersion, ArmSmmuModel]> = [
  ['arm,smmu-v1', ARM_SMMU_V1, 'generic'],
  ['arm,smmu-v2', ARM_SMMU_V2, 'generic'],
  ['arm,mmu-400', ARM_SMMU_V1, 'generic'],
  ['arm,mmu-401', ARM_SMMU_V1_64K, 'generic'],
  ['arm,mmu-500', ARM_SMMU_V2, 'arm-mmu500'],
  ['cavium,smmu-v2', ARM_SMMU_V2, 'cavium-smmuv2'],
  ['nvidia,smmu-500', ARM_SMMU_V2, 'arm-mmu500'],
  ['qcom,smmu-v2', ARM_SMMU_V2, 'qcom-smmuv2'],
];

/** The compatibles the driver binds (of_match_table). */
export const ARM_SMMU_COMPATIBLES: readonly string[] = ARM_SMMU_OF_MATCH.map((e) => e[0]);

/** of_device_get_match_data: the first of the node's compatibles that the table lists. */
export function matchData(node: DtNode): { version: ArmSmmuArchVersion; model: ArmSmmuModel } | null {
  for (const c of node.compatible) {
    const e = ARM_SMMU_OF_MATCH.find((x) => x[0] === c);
    if (e) return { version: e[1], model: e[2] };
  }
  return null;
}

export const armMmu500Impl: ArmSmmuImpl = { name: 'arm-mmu500', reset: armMmu500Reset };

const nvidiaImpl: ArmSmmuImpl = {
  name: 'nvidia-smmu',
  reset: armMmu500Reset,
  // nvidia_smmu_init_context: the Tegra194/234 walk-cache erratum; no block mappings (PAGE_SIZE only)
  initContext(smmu, _cfg, pgtbl) {
    smmu.pgsizeBitmap = 0x1000;
    pgtbl.pgsizeBitmap = 0x1000;
    return 0;
  },
};

const mrvlImpl: ArmSmmuImpl = {
  name: 'mrvl-mmu500',
  reset: armMmu500Reset,
  cfgProbe(smmu) {
    smmu.features &= ~(FEAT_FMT_AARCH64_4K | FEAT_FMT_AARCH64_16K | FEAT_FMT_AARCH64_64K);
    return 0;
  },
};

/**
 * arm_smmu_impl_init: the implementation for `node` (and how registers are reached, on `io`).
 */
export function armSmmuImplInit(smmu: ArmSmmuDevice, node: DtNode, io: ArmSmmuIo): ArmSmmuImpl | null {
  let impl: ArmSmmuImpl | null = smmu.model === 'arm-mmu500' ? armMmu500Impl : null;
  if (
    node.compatible.some((c) => /^nvidia,tegra(186|194|234)-smmu$/.test(c)) ||
    node.isCompatible('nvidia,smmu-500')
  ) {
    io.broadcast = true;
    return nvidiaImpl;
  }
  const q = qcomSmmuImplInit(smmu, node);
  if (q !== null) impl = q;
  if (node.isCompatible('marvell,ap806-smmu-500')) {
    io.split64 = true;
    impl = mrvlImpl;
  }
  return impl;
}
