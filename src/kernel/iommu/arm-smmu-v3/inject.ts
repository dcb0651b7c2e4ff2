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
 *   item 8, queued instead of done before the free).
 */

/** The mutation switches (all false: the driver as Linux has it). */
export interface DriverMutations {
  skipAtcInvRid: boolean;
  skipAtcInvPasid: boolean;
  dropPasidAtcUsers: boolean;
  skipWalkFlush: boolean;
  lateWalkFlush: boolean;
}

/** Every mutation off. */
export const NO_MUTATION: Readonly<DriverMutations> = {
  skipAtcInvRid: false,
  skipAtcInvPasid: false,
  dropPasidAtcUsers: false,
  skipWalkFlush: false,
  lateWalkFlush: false,
};

/** The mutations' injection names, with their switch. */
export const MUTATION_FLAGS = {
  'skip-atc-inv-rid': 'skipAtcInvRid',
  'skip-atc-inv-pasid': 'skipAtcInvPasid',
  'drop-pasid-atc-users': 'dropPasidAtcUsers',
  'skip-walk-flush': 'skipWalkFlush',
  'late-walk-flush': 'lateWalkFlush',
} as const satisfies Record<string, keyof DriverMutations>;

/** Whether an ATC_INV for `ssid` (null: no SubstreamID) is mutated away. */
export function atcInvSkipped(m: DriverMutations, ssid: number | null): boolean {
  return ssid === null ? m.skipAtcInvRid : m.skipAtcInvPasid;
}
