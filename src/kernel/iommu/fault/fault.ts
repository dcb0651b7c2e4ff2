/**
 * The fault data of the IOMMU fault API (include/linux/iommu.h, struct iommu_fault and
 * struct iommu_page_response), in the shape Linux had while it still carried unrecoverable
 * faults and the PRIV_DATA flag: a typed event that an IOMMU driver reports, and the response
 * that goes back to it.
 *
 * Permissions are their own bitfield (IOMMU_FAULT_PERM_*), not the mapping flags (IOMMU_READ
 * ...): a fault says what the device asked for, not what a mapping allows.
 */

import type { IommuDevice } from '../device.ts';

// enum iommu_fault_type (the pre-6.10 numbering, when both types existed)
export const IOMMU_FAULT_DMA_UNRECOV = 1;
export const IOMMU_FAULT_PAGE_REQ = 2;

/** enum iommu_fault_reason: why an unrecoverable fault happened. */
export const IOMMU_FAULT_REASON = {
  UNKNOWN: 0,
  /** Could not fetch the PASID table / context descriptor. */
  PASID_FETCH: 1,
  /** The PASID table / context descriptor entry is invalid or misconfigured. */
  BAD_PASID_ENTRY: 2,
  /** The PASID is out of range or not enabled. */
  PASID_INVALID: 3,
  /** External abort while walking the page tables. */
  WALK_EABT: 4,
  /** No valid translation (page-table entry fetch found nothing). */
  PTE_FETCH: 5,
  /** The access is not permitted by the translation. */
  PERMISSION: 6,
  /** Access flag fault. */
  ACCESS: 7,
  /** The address is outside the translatable range. */
  OOR_ADDRESS: 8,
} as const;
export type IommuFaultReason = (typeof IOMMU_FAULT_REASON)[keyof typeof IOMMU_FAULT_REASON];

export const IOMMU_FAULT_REASON_NAMES: readonly string[] = Object.keys(IOMMU_FAULT_REASON).map((k) =>
  k.toLowerCase(),
);

// struct iommu_fault_unrecoverable flags
export const IOMMU_FAULT_UNRECOV_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_UNRECOV_ADDR_VALID = 1 << 1;
export const IOMMU_FAULT_UNRECOV_FETCH_ADDR_VALID = 1 << 2;

// permissions the faulting access asked for
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

// struct iommu_fault_page_request flags
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA = 1 << 2;
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID = 1 << 3;

// enum iommu_page_response_code
/** Handled: the device retries. */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
/** Could not be handled: the device must not retry (PCIe Invalid Request). */
export const IOMMU_PAGE_RESP_INVALID = 1;
/** General failure (PCIe Response Failure: the device stops using PRI). */
export const IOMMU_PAGE_RESP_FAILURE = 2;
export type IommuPageResponseCode =
  | typeof IOMMU_PAGE_RESP_SUCCESS
  | typeof IOMMU_PAGE_RESP_INVALID
  | typeof IOMMU_PAGE_RESP_FAILURE;
export const PAGE_RESP_NAMES = ['SUCCESS', 'INVALID', 'FAILURE'] as const;

/** struct iommu_page_response flags. */
export const IOMMU_PAGE_RESP_PASID_VALID = 1 << 0;

/** Who issued the faulting transaction. */
export interface IommuFaultRequester {
  readonly dev: IommuDevice;
  /** The ID the IOMMU knows the requester by (SMMU StreamID). */
  readonly sid: number;
  /** PCI requester ID, or null for platform devices. */
  readonly rid: number | null;
}

interface FaultCommon {
  readonly requester: IommuFaultRequester;
  /** Virtual time at which the IOMMU driver reported it (ns). */
  readonly time: number;
}

/** struct iommu_fault with type IOMMU_FAULT_DMA_UNRECOV (struct iommu_fault_unrecoverable). */
export interface IommuUnrecoverableFault extends FaultCommon {
  readonly type: typeof IOMMU_FAULT_DMA_UNRECOV;
  readonly reason: IommuFaultReason;
  /** IOMMU_FAULT_UNRECOV_*. */
  readonly flags: number;
  readonly pasid: number;
  /** IOMMU_FAULT_PERM_*. */
  readonly perm: number;
  readonly addr: number;
  /** Address of the table entry whose fetch failed (FETCH_ADDR_VALID). */
  readonly fetchAddr: number;
}

/** struct iommu_fault with type IOMMU_FAULT_PAGE_REQ (struct iommu_fault_page_request). */
export interface IommuPageRequestFault extends FaultCommon {
  readonly type: typeof IOMMU_FAULT_PAGE_REQ;
  /** IOMMU_FAULT_PAGE_REQUEST_* and IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID. */
  readonly flags: number;
  readonly pasid: number;
  /** Page request group: PCIe PRG index, or the SMMU's STAG for a stalled transaction. */
  readonly grpid: number;
  /** IOMMU_FAULT_PERM_*. */
  readonly perm: number;
  readonly addr: number;
  /** Driver-private data (PRIV_DATA), handed back untouched with the response. */
  readonly privateData: readonly [number, number];
}

export type IommuFault = IommuUnrecoverableFault | IommuPageRequestFault;

/** struct iommu_page_response, as a fault's owner gives it to iommu_page_response(). */
export interface IommuPageResponse {
  /** Must match the fault's PASID when the fault has one. */
  pasid?: number;
  grpid: number;
  code: IommuPageResponseCode;
}

/** The response the core hands to the IOMMU driver (ops->page_response). */
export interface IommuPageResponseMsg {
  /** IOMMU_PAGE_RESP_PASID_VALID exactly when the response must carry the PASID. */
  readonly flags: number;
  readonly pasid: number;
  readonly grpid: number;
  readonly code: IommuPageResponseCode;
}

export function isLastPage(f: IommuPageRequestFault): boolean {
  return (f.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0;
}

export function hasPasid(f: IommuFault): boolean {
  return f.type === IOMMU_FAULT_PAGE_REQ
    ? (f.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0
    : (f.flags & IOMMU_FAULT_UNRECOV_PASID_VALID) !== 0;
}

/** "rw-p"-style rendering of IOMMU_FAULT_PERM_* for logs. */
export function permString(perm: number): string {
  return `${perm & IOMMU_FAULT_PERM_READ ? 'r' : '-'}${perm & IOMMU_FAULT_PERM_WRITE ? 'w' : '-'}${perm & IOMMU_FAULT_PERM_EXEC ? 'x' : '-'}${perm & IOMMU_FAULT_PERM_PRIV ? 'p' : 'u'}`;
}
