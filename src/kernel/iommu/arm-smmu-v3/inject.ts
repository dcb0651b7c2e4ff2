/**
 * Driver mutations: each removes one invalidation or ordering step of the arm-smmu-v3 driver,
 * so that a test (the isolation property under the DMA-isolation sanitizer) can show that the
 * step matters — with it removed, some interleaving lets a device reach memory it should not.
 * They extend the driver's injection switches (SmmuInjectFlags) and are turned on by name
 * through `lab.inject` like the other injections:
 *
 * - skipAtcInvRid ("skip-atc-inv-rid"): no ATC_INV without a SubstreamID (the RID's ATC
 *   entries survive unmaps and domain changes);
 * - skipAtcInvPasid ("skip-atc-inv-pasid"): no ATC_INV with a SubstreamID (a PASID's entries
 *   survive);
 * - dropPasidAtcUsers ("drop-pasid-atc-users"): detaching the RID from a domain also forgets
 *   the master's PASID attachments to it, so later unmaps send no ATC_INV for those PASIDs
 *   (the bug of issue 20, fixed by tracking ATC users per (master, SSID));
 * - skipWalkFlush ("skip-walk-flush"): io-pgtable's tlb_flush_walk does nothing, so a table
 *   removed by an unmap (or replaced by a block) is freed while the TLB still holds the
 *   translations walked through it;
 * - lateWalkFlush ("late-walk-flush"): tlb_flush_walk only marks the domain for a full flush at
 *   its next iotlb_sync, so the table is freed before its TLBI (the walk flush of issue 20
 *   item 8, queued instead of done before the free);
 * - atcInvBeforeTlbi ("atc-inv-before-tlbi"): an unmap's (or a flush's) ATC_INV and its CMD_SYNC
 *   are issued and complete before the TLBI, not after it. Linux invalidates the ATCs only once
 *   the TLBI's CMD_SYNC has completed (arm_smmu_tlb_inv_range_domain: __arm_smmu_tlb_inv_range,
 *   which submits with a sync, then arm_smmu_atc_inv_domain): an ATS endpoint that sends a
 *   translation request between an early ATC_INV and the TLBI gets the stale translation from
 *   the SMMU's TLB, refills its ATC with it, and nothing invalidates that entry afterwards.
 */

/** The mutation switches (all false: the driver as Linux has it). */
export interface DriverMutations {
  skipAtcInvRid: boolean;
  skipAtcInvPasid: boolean;
  dropPasidAtcUsers: boolean;
  skipWalkFlush: boolean;
  lateWalkFlush: boolean;
  atcInvBeforeTlbi: boolean;
}

/** Every mutation off. */
export const NO_MUTATION: Readonly<DriverMutations> = {
  skipAtcInvRid: false,
  skipAtcInvPasid: false,
  dropPasidAtcUsers: false,
  skipWalkFlush: false,
  lateWalkFlush: false,
  atcInvBeforeTlbi: false,
};

/** The mutations' injection names, with their switch. */
export const MUTATION_FLAGS = {
  'skip-atc-inv-rid': 'skipAtcInvRid',
  'skip-atc-inv-pasid': 'skipAtcInvPasid',
  'drop-pasid-atc-users': 'dropPasidAtcUsers',
  'skip-walk-flush': 'skipWalkFlush',
  'late-walk-flush': 'lateWalkFlush',
  'atc-inv-before-tlbi': 'atcInvBeforeTlbi',
} as const satisfies Record<string, keyof DriverMutations>;

/** Whether an ATC_INV for `ssid` (null: no SubstreamID) is mutated away. */
export function atcInvSkipped(m: DriverMutations, ssid: number | null): boolean {
  return ssid === null ? m.skipAtcInvRid : m.skipAtcInvPasid;
}
