/**
 * The names of the fault injections (see inject.ts), in a module of their own that imports
 * nothing, so that the CLI's help can list them without loading the model.
 */

/** The injection names, for help texts and validation. */
export const INJECTIONS = [
  'skip-tlbi',
  'skip-cfgi',
  'skip-atc-inv',
  'skip-cmd-sync',
  'delay-completion',
  'skip-atc-inv-rid',
  'skip-atc-inv-pasid',
  'drop-pasid-atc-users',
  'skip-walk-flush',
  'late-walk-flush',
  'atc-inv-before-tlbi',
] as const;

/**
 * - "skip-tlbi": the SMMUv3 driver issues no TLB invalidation (unmap, domain teardown);
 * - "skip-cfgi": it issues no CFGI after rewriting an STE or CD;
 * - "skip-atc-inv": it issues no ATC_INV to ATS-enabled endpoints;
 * - "skip-cmd-sync": it publishes its commands but issues no CMD_SYNC and waits for none, so an
 *   unmap or an STE update returns before the SMMU has consumed the invalidation;
 * - "delay-completion": it sends the completion of a faulting transaction (CMD_RESUME for a
 *   stall, CMD_PRI_RESP for a page request) late, by `ns` (default 1 ms of virtual time);
 * - driver mutations, one invalidation or ordering step each (kernel/iommu/arm-smmu-v3/inject.ts):
 *   "skip-atc-inv-rid" / "skip-atc-inv-pasid" (no ATC_INV without / with a SubstreamID),
 *   "drop-pasid-atc-users" (detaching the RID forgets the PASID attachments' ATC users: the bug
 *   of issue 20), "skip-walk-flush" (a removed table is freed with no TLBI), "late-walk-flush"
 *   (its TLBI waits for the next iotlb_sync, after the free), "atc-inv-before-tlbi" (an unmap's
 *   ATC_INV and its CMD_SYNC complete before the TLBI instead of after it: an endpoint can refill
 *   its ATC from the stale TLB entry in between).
 */
export type InjectionName = (typeof INJECTIONS)[number];
