/**
 * The per-domain fault handler of Linux's iommu.c (iommu_set_fault_handler and
 * report_iommu_fault), which SMMUv1/v2 drivers (arm-smmu, qcom_iommu) and their users (drm/msm,
 * remoteproc) use: the driver reports a context fault with its address and direction, and the
 * handler's return value tells the driver what to do. For arm-smmu (v6.16+): -EAGAIN retries a
 * stalled transaction, anything else terminates it, and -ENOSYS (no handler) makes the driver
 * print the fault.
 *
 * This is the int-returning form drivers call with an address and a direction. The fault layer
 * (io-pgfault.ts) keeps its own handlers, which take struct iommu_fault records and answer with
 * page responses; arm-smmu offers a fault there first when it has a handler for it.
 *
 * The handler runs where the driver calls it: a hard-IRQ handler (atomic: it must return a
 * number), or an IRQ thread (it may sleep: a Promise is awaited).
 */

import type { IommuDevice } from '../device.ts';
import type { IommuDomain } from '../domain.ts';
import { ENOSYS } from '../errno.ts';

/** report_iommu_fault flags. */
export const IOMMU_FAULT_READ = 0x0;
export const IOMMU_FAULT_WRITE = 0x1;

/** iommu_fault_handler_t: (domain, dev or null, iova, flags, token) -> 0, -EAGAIN, -ENOSYS, ... */
export type IommuFaultHandlerFn = (
  domain: IommuDomain,
  dev: IommuDevice | null,
  iova: number,
  flags: number,
  token: unknown,
) => number | Promise<number>;

interface Installed {
  readonly fn: IommuFaultHandlerFn;
  readonly token: unknown;
}

const handlers = new WeakMap<IommuDomain, Installed>();

/** iommu_set_fault_handler; `fn` null removes it. */
export function iommuSetFaultHandler(
  domain: IommuDomain,
  fn: IommuFaultHandlerFn | null,
  token?: unknown,
): void {
  if (fn === null) handlers.delete(domain);
  else handlers.set(domain, { fn, token });
}

/** True when the domain has a handler. */
export function iommuHasFaultHandler(domain: IommuDomain): boolean {
  return handlers.has(domain);
}

/** report_iommu_fault: the handler's answer, or -ENOSYS when the domain has none. */
export function reportIommuFault(
  domain: IommuDomain,
  dev: IommuDevice | null,
  iova: number,
  flags: number,
): number | Promise<number> {
  const h = handlers.get(domain);
  if (h === undefined) return -ENOSYS;
  return h.fn(domain, dev, iova, flags, h.token);
}
