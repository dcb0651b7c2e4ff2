/**
 * PASID attachments (iommu_attach_device_pasid / replace / detach): a domain per PASID of a
 * device, recorded in the group's pasid_array, with the errors Linux gives:
 *  - PASID 0 (IOMMU_NO_PASID), a domain of another IOMMU, a domain type that cannot be attached
 *    to a PASID (no set_dev_pasid, or BLOCKED): -EINVAL;
 *  - a device without PASID support: -EOPNOTSUPP; a PASID beyond the device's width: -EINVAL;
 *  - the PASID already has a domain: -EBUSY.
 * Attaching is transactional across the group's devices, and across the waits of the driver's
 * set_dev_pasid: every operation holds the group mutex.
 */

import type { IommuDevice } from './device.ts';
import { IOMMU_DOMAIN_BLOCKED, type IommuDomain } from './domain.ts';
import { EBUSY, EINVAL, ENODEV, EOPNOTSUPP } from './errno.ts';
import type { IommuGroup } from './group.ts';

export const IOMMU_NO_PASID = 0;

/** The part of the core PASID handling needs (kept as an interface: core.ts imports this file). */
export interface PasidCore {
  devIommu(dev: IommuDevice): { group: IommuGroup; maxPasids: number } | null;
  groupOf(dev: IommuDevice): IommuGroup | null;
  warnOnce(msg: string): void;
}

function validate(
  core: PasidCore,
  domain: IommuDomain,
  dev: IommuDevice,
  pasid: number,
): IommuGroup | number {
  const di = core.devIommu(dev);
  if (di === null) return -ENODEV;
  const g = di.group;
  if ((domain.owner !== null && domain.owner !== g.ops) || pasid === IOMMU_NO_PASID) return -EINVAL;
  if (domain.ops.setDevPasid === undefined || domain.type === IOMMU_DOMAIN_BLOCKED) return -EINVAL;
  if (!Number.isInteger(pasid) || pasid < 0) return -EINVAL;
  let anyPasid = false;
  for (const d of g.devices) {
    const max = core.devIommu(d)?.maxPasids ?? 0;
    // devices without PASID cannot issue PASID-tagged DMA; they do not constrain the group
    if (max > 0) {
      anyPasid = true;
      if (pasid >= max) return -EINVAL;
    }
  }
  if (!anyPasid) return -EOPNOTSUPP;
  return g;
}

/** Run `fn` with `dev`'s group mutex held; -ENODEV if `dev` has no group (or lost it meanwhile). */
async function withGroup<T>(
  core: PasidCore,
  dev: IommuDevice,
  none: T,
  fn: (g: IommuGroup) => Promise<T>,
): Promise<T> {
  const g = core.groupOf(dev);
  if (g === null) return none;
  await g.mutex.lock();
  try {
    if (core.groupOf(dev) !== g) return none;
    return await fn(g);
  } finally {
    g.mutex.unlock();
  }
}

/** Remove `pasid` of `dev`: the driver's blocked domain takes the PASID (iommu_remove_dev_pasid). */
async function removeDevPasid(
  g: IommuGroup,
  dev: IommuDevice,
  pasid: number,
  old: IommuDomain,
): Promise<void> {
  const blocked = g.ops.blockedDomain;
  if (blocked?.ops.setDevPasid !== undefined) await blocked.ops.setDevPasid(blocked, dev, pasid, old);
}

async function attachLocked(g: IommuGroup, domain: IommuDomain, pasid: number): Promise<number> {
  if (g.pasidArray.has(pasid)) return -EBUSY;
  const done: IommuDevice[] = [];
  for (const d of g.devices) {
    const r = await domain.ops.setDevPasid!(domain, d, pasid, null);
    if (r < 0) {
      for (const x of done) await removeDevPasid(g, x, pasid, domain);
      return r;
    }
    done.push(d);
  }
  g.pasidArray.set(pasid, domain);
  return 0;
}

export function pasidAttach(
  core: PasidCore,
  domain: IommuDomain,
  dev: IommuDevice,
  pasid: number,
): Promise<number> {
  return withGroup(core, dev, -ENODEV, async () => {
    const g = validate(core, domain, dev, pasid);
    if (typeof g === 'number') return g;
    return attachLocked(g, domain, pasid);
  });
}

/** iommu_detach_device_pasid with the group mutex held (also used by device release). */
export async function pasidDetachLocked(
  core: PasidCore,
  g: IommuGroup,
  domain: IommuDomain,
  dev: IommuDevice,
  pasid: number,
): Promise<void> {
  if (g.pasidArray.get(pasid) !== domain) {
    core.warnOnce(`${dev.name}: detach of PASID ${pasid} from a domain it is not attached to`);
    return;
  }
  for (const d of g.devices) await removeDevPasid(g, d, pasid, domain);
  g.pasidArray.delete(pasid);
}

export function pasidDetach(
  core: PasidCore,
  domain: IommuDomain,
  dev: IommuDevice,
  pasid: number,
): Promise<void> {
  return withGroup(core, dev, undefined, (g) => pasidDetachLocked(core, g, domain, dev, pasid));
}

export function pasidReplace(
  core: PasidCore,
  domain: IommuDomain,
  dev: IommuDevice,
  pasid: number,
): Promise<number> {
  return withGroup(core, dev, -ENODEV, async () => {
    const g = validate(core, domain, dev, pasid);
    if (typeof g === 'number') return g;
    const old = g.pasidArray.get(pasid);
    if (old === undefined) return attachLocked(g, domain, pasid);
    if (old === domain) return 0;
    const done: IommuDevice[] = [];
    for (const d of g.devices) {
      const r = await domain.ops.setDevPasid!(domain, d, pasid, old);
      if (r < 0) {
        // back to the old domain on the devices already switched
        for (const x of done) await old.ops.setDevPasid?.(old, x, pasid, domain);
        return r;
      }
      done.push(d);
    }
    g.pasidArray.set(pasid, domain);
    return 0;
  });
}
