// Arm MMU-500 reset quirks (arm-smmu-impl.c arm_mmu500_reset), shared by every MMU-500-based
// implementation (Arm, Qualcomm, NVIDIA, Marvell).

import { ACTLR_MMU500, CB, GR0, getField, sACR_MMU500, setField } from '../../../arch/smmuv2/regs.ts';
import type { ArmSmmuDevice } from './smmu.ts';

/** arm_mmu500_reset. */
export function armMmu500Reset(smmu: ArmSmmuDevice): void {
  let reg = smmu.gr0Read(GR0.sACR);
  if (smmu.major >= 2) reg = setField(reg, sACR_MMU500.CACHE_LOCK, 0);
  reg = setField(reg, sACR_MMU500.SMTNMB_TLBEN, 1);
  reg = setField(reg, sACR_MMU500.S2CRB_TLBEN, 1);
  smmu.gr0Write(GR0.sACR, reg);
  let warned = false;
  for (let i = 0; i < smmu.numContextBanks; i++) {
    const a = smmu.cbRead(i, CB.ACTLR);
    smmu.cbWrite(i, CB.ACTLR, setField(a, ACTLR_MMU500.CPRE, 0));
    if (getField(smmu.cbRead(i, CB.ACTLR), ACTLR_MMU500.CPRE) && !warned) {
      warned = true;
      smmu.warn('Failed to disable prefetcher for errata workarounds, check SACR.CACHE_LOCK');
    }
  }
}
