/**
 * Nested domains (minimal): a stage-1 configuration owned elsewhere — a guest's vSTE, whose
 * CD table and page tables live in the guest's IPA space — over a stage-2 parent domain.
 * Follows arm_vsmmu_alloc_domain_nested / arm_smmu_make_nested_domain_ste: the vSTE may only
 * carry V, Config (abort / bypass / S1), S1Fmt, S1ContextPtr, S1CDMax, S1DSS, S1CIR/COR/CSH and
 * S1STALLD; the physical STE is the parent's stage-2 STE with Config=nested, the vSTE's stage-1
 * fields, and MEV set (event merging limits a guest's event flood).
 */

import { fieldMask as m } from '../../../arch/smmuv3/bits.ts';
import { STE, STE_CONFIG } from '../../../arch/smmuv3/ste.ts';
import type { IommuDevice } from '../device.ts';
import { IOMMU_DOMAIN_NESTED, IommuDomain } from '../domain.ts';
import { EINVAL, ENODEV } from '../errno.ts';
import type { IommuDomainOps } from '../ops.ts';
import type { ArmSmmuV3Iommu, SmmuDomain } from './iommu.ts';
import { makeAbortSte, makeS2DomainSte } from './make-entry.ts';

const EIO = 5;

/** The guest's STE words 0 and 1 (what iommufd passes as struct iommu_hwpt_arm_smmuv3). */
export interface NestedData {
  vste: readonly bigint[];
}

const ALLOWED_Q0 = m(STE.V) | m(STE.Config) | m(STE.S1Fmt) | (((1n << 52n) - 1n) & ~63n) | m(STE.S1CDMax);
const ALLOWED_Q1 = m(STE.S1DSS) | m(STE.S1CIR) | m(STE.S1COR) | m(STE.S1CSH) | m(STE.S1STALLD);

/** arm_smmu_validate_vste: 0 or -EIO (-EINVAL for a malformed argument). */
export function validateVste(vste: readonly bigint[]): number {
  if (vste.length < 2) return -EINVAL;
  const q0 = vste[0]!;
  const q1 = vste[1]!;
  if ((q0 & m(STE.V)) === 0n) return 0; // invalid vSTE: abort, whatever else it holds
  const cfg = Number((q0 & m(STE.Config)) >> BigInt(STE.Config.lsb));
  if (cfg !== STE_CONFIG.ABORT && cfg !== STE_CONFIG.BYPASS && cfg !== STE_CONFIG.S1_TRANS) return -EIO;
  if (q0 & ~ALLOWED_Q0 || q1 & ~ALLOWED_Q1) return -EIO;
  for (let i = 2; i < vste.length; i++) if (vste[i] !== 0n) return -EIO;
  return 0;
}

export function allocNestedDomain(
  iommu: ArmSmmuV3Iommu,
  _dev: IommuDevice,
  parent: IommuDomain,
  data: unknown,
): IommuDomain | number {
  const p = parent.priv as SmmuDomain | null;
  if (!parent.isPaging || p === null || p.smmu !== iommu.smmu || p.stage !== 2) return -EINVAL;
  const d = data as NestedData | null;
  if (d === null || !Array.isArray(d.vste)) return -EINVAL;
  const r = validateVste(d.vste);
  if (r < 0) return r;
  const vste = [d.vste[0]!, d.vste[1]!];
  const ops: IommuDomainOps = {
    attachDev: async (dom, dev) => {
      const master = iommu.masterOf(dev);
      if (master === undefined) return -ENODEV;
      const ats = master.atsSupported;
      const s2 = makeS2DomainSte(iommu.smmu.writeFeatures, master, p.s2!, ats);
      const valid = (vste[0]! & m(STE.V)) !== 0n;
      const cfg = valid ? Number((vste[0]! & m(STE.Config)) >> BigInt(STE.Config.lsb)) : STE_CONFIG.ABORT;
      let target: bigint[];
      if (cfg === STE_CONFIG.S1_TRANS) {
        target = s2.slice();
        target[0] =
          m(STE.V) |
          (BigInt(STE_CONFIG.NESTED) << BigInt(STE.Config.lsb)) |
          (vste[0]! & ~m(STE.Config) & ~m(STE.V));
        target[1] = target[1]! | vste[1]! | m(STE.MEV);
      } else if (cfg === STE_CONFIG.BYPASS) target = s2;
      else target = makeAbortSte();
      return iommu.installSte(master, dom, target, ats && cfg !== STE_CONFIG.ABORT, 0);
    },
  };
  const dom = new IommuDomain(IOMMU_DOMAIN_NESTED, ops, { owner: iommu });
  dom.parent = parent;
  dom.priv = { vste };
  return dom;
}
