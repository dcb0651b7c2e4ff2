/**
 * IOMMU groups (struct iommu_group): the smallest set of devices the IOMMU can isolate from each
 * other. Every device in a group is attached to the same domain; PASID attachments are per
 * group too (group->pasid_array). Attach, detach, PASID changes, probe and release of a group's
 * devices are serialised by the group mutex (group->mutex): driver callbacks under it may wait
 * for the hardware, and a second operation on the group waits until the first is done.
 */

import { type Executor, Mutex } from '../../platform/exec.ts';

import type { IommuDevice } from './device.ts';
import type { IommuDomain } from './domain.ts';
import type { IommuOps } from './ops.ts';

export class IommuGroup {
  readonly devices: IommuDevice[] = [];
  /** The domain every device translates through now (group->domain). */
  domain: IommuDomain | null = null;
  defaultDomain: IommuDomain | null = null;
  /** The core's BLOCKED domain for this group (allocated on first need). */
  blockingDomain: IommuDomain | null = null;
  /** PASID -> domain. */
  readonly pasidArray = new Map<number, IommuDomain>();
  /** Requester IDs (and aliases) of the PCI devices in the group. */
  readonly rids = new Set<number>();
  /** Owner claim (iommu_device_claim_dma_owner), e.g. by VFIO/iommufd. */
  owner: unknown = null;
  ownerCnt = 0;

  /** group->mutex. */
  readonly mutex: Mutex;

  constructor(
    readonly ops: IommuOps,
    exec: Executor,
    /** Group number, unique per IOMMU core (so runs on different machines number alike). */
    readonly id: number,
  ) {
    this.mutex = new Mutex(exec, `iommu group ${this.id}`);
  }

  toString(): string {
    return `iommu group ${this.id}`;
  }
}
