/**
 * The kernel's own names, as a driver author expects them: protection flags, domain types, fault
 * and page-response codes, errno values, and the types the DMA, IOMMU and fault APIs take and
 * return. They are the kernel model's values, documented here as part of the public API.
 */

import type { Device as KDevice } from '../kernel/base/device.ts';
import type { CoherentBuffer as KCoherentBuffer } from '../kernel/iommu/dma/mapping.ts';
import type {
  DmaDirection as KDmaDirection,
  ScatterEntry as KScatterEntry,
} from '../kernel/iommu/dma/types.ts';
import * as dmaTypes from '../kernel/iommu/dma/types.ts';
import type { IommuDomain as KIommuDomain } from '../kernel/iommu/domain.ts';
import * as dom from '../kernel/iommu/domain.ts';
import type {
  IommuFault as KIommuFault,
  IommuPageRequestFault as KIommuPageRequestFault,
  IommuPageResponse as KIommuPageResponse,
  IommuPageResponseCode as KIommuPageResponseCode,
  IommuUnrecoverableFault as KIommuUnrecoverableFault,
} from '../kernel/iommu/fault/fault.ts';
import * as fault from '../kernel/iommu/fault/fault.ts';
import type {
  DeviceFaultHandler as KDeviceFaultHandler,
  DeviceHandlerOptions as KDeviceHandlerOptions,
  DomainFaultHandler as KDomainFaultHandler,
  DomainIopfHandler as KDomainIopfHandler,
  FaultContext as KFaultContext,
  FaultRecord as KFaultRecord,
  IopfGroup as KIopfGroup,
} from '../kernel/iommu/fault/io-pgfault.ts';
import * as iopf from '../kernel/iommu/fault/io-pgfault.ts';
import type { IommuFaultHandlerFn as KIommuFaultHandlerFn } from '../kernel/iommu/fault/report.ts';
import * as report from '../kernel/iommu/fault/report.ts';
import type { IommuGroup as KIommuGroup } from '../kernel/iommu/group.ts';
import type { IommuAllocFlags as KIommuAllocFlags } from '../kernel/iommu/ops.ts';
import * as prot from '../kernel/iommu/prot.ts';
import * as errno from '../kernel/lib/errno.ts';

// ---- types

/** struct device: a device the kernel model created (from a device-tree node or PCI enumeration). */
export type Device = KDevice;
/** struct iommu_domain: a translation context a device or PASID is attached to. */
export type IommuDomain = KIommuDomain;
/** struct iommu_group: the devices the IOMMU cannot tell apart; they share one domain. */
export type IommuGroup = KIommuGroup;
/** Allocation flags of iommu_paging_domain_alloc_flags (IOMMU_HWPT_ALLOC_NEST_PARENT). */
export type IommuAllocFlags = KIommuAllocFlags;
/** enum dma_data_direction: "bidirectional", "to-device", "from-device" or "none". */
export type DmaDirection = KDmaDirection;
/** One scatterlist entry (struct scatterlist), in and out of dma_map_sg. */
export type ScatterEntry = KScatterEntry;
/** What dma_alloc_coherent gives: the CPU's address and the device's. */
export type CoherentBuffer = KCoherentBuffer;
/** struct iommu_fault: an unrecoverable fault or a page request. */
export type IommuFault = KIommuFault;
/** A recoverable fault: a PRI page request, or a stalled transaction (its STAG as grpid). */
export type IommuPageRequestFault = KIommuPageRequestFault;
/** A fault the device cannot retry: the IOMMU terminated the transaction. */
export type IommuUnrecoverableFault = KIommuUnrecoverableFault;
/** struct iommu_page_response: the answer to a page request or stall (grpid, code, PASID). */
export type IommuPageResponse = KIommuPageResponse;
/** IOMMU_PAGE_RESP_SUCCESS, _INVALID or _FAILURE. */
export type IommuPageResponseCode = KIommuPageResponseCode;
/** A per-device fault handler: runs in the IRQ thread (must not sleep); 0 accepted, < 0 failed. */
export type DeviceFaultHandler = KDeviceFaultHandler;
/** Options of registerDeviceFaultHandler: first-of-burst reporting, response deadline. */
export type DeviceHandlerOptions = KDeviceHandlerOptions;
/** The fault layer's per-domain handler (lab.faults.setDomainFaultHandler), taking fault records. */
export type DomainFaultHandler = KDomainFaultHandler;
/**
 * iommu_fault_handler_t of iommu_set_fault_handler / report_iommu_fault (lab.iommu.setFaultHandler):
 * (domain, dev or null, iova, flags, token) -> 0, -EAGAIN (arm-smmu: retry the stalled transaction), ...
 */
export type IommuFaultHandlerFn = KIommuFaultHandlerFn;
/** domain->iopf_handler: resolves a page-request group from the iopf workqueue (may sleep). */
export type DomainIopfHandler = KDomainIopfHandler;
/** What a device fault handler learns besides the fault: the device, its data, the group. */
export type FaultContext = KFaultContext;
/** A page-request group (struct iopf_group): the faults of one PRG, answered together. */
export type IopfGroup = KIopfGroup;
/** One fault, response, refusal or discard, as `lab.faults.observe` reports it. */
export type FaultRecord = KFaultRecord;

// ---- constants

/** iommu_map prot: the device may read. */
export const IOMMU_READ = prot.IOMMU_READ;
/** iommu_map prot: the device may write. */
export const IOMMU_WRITE = prot.IOMMU_WRITE;
/** iommu_map prot: cacheable, coherent with the CPU's caches. */
export const IOMMU_CACHE = prot.IOMMU_CACHE;
/** iommu_map prot: no instruction fetch. */
export const IOMMU_NOEXEC = prot.IOMMU_NOEXEC;
/** iommu_map prot: device memory (MMIO). */
export const IOMMU_MMIO = prot.IOMMU_MMIO;
/** iommu_map prot: privileged accesses only. */
export const IOMMU_PRIV = prot.IOMMU_PRIV;
/** What a failed dma_map_* returns. */
export const DMA_MAPPING_ERROR = dmaTypes.DMA_MAPPING_ERROR;
/** DMA attribute: the mapping is for privileged accesses. */
export const DMA_ATTR_PRIVILEGED = dmaTypes.DMA_ATTR_PRIVILEGED;
/** Build a scatterlist from physical pieces. */
export const sgTable = dmaTypes.sgTable;
/** Domain type: blocks all DMA. */
export const IOMMU_DOMAIN_BLOCKED = dom.IOMMU_DOMAIN_BLOCKED;
/** Domain type: passthrough, no translation. */
export const IOMMU_DOMAIN_IDENTITY = dom.IOMMU_DOMAIN_IDENTITY;
/** Domain type: a paging domain its user manages (iommu_map / iommu_unmap). */
export const IOMMU_DOMAIN_UNMANAGED = dom.IOMMU_DOMAIN_UNMANAGED;
/** Domain type: the DMA API's paging domain, strict invalidation. */
export const IOMMU_DOMAIN_DMA = dom.IOMMU_DOMAIN_DMA;
/** Domain type: the DMA API's paging domain with a flush queue (lazy invalidation). */
export const IOMMU_DOMAIN_DMA_FQ = dom.IOMMU_DOMAIN_DMA_FQ;
/** The name Linux prints for a domain type ("Translated", "Passthrough", ...). */
export const domainTypeName = dom.domainTypeName;
/** Fault type: an unrecoverable DMA fault. */
export const IOMMU_FAULT_DMA_UNRECOV = fault.IOMMU_FAULT_DMA_UNRECOV;
/** report_iommu_fault flags: the faulting access was a read. */
export const IOMMU_FAULT_READ = report.IOMMU_FAULT_READ;
/** report_iommu_fault flags: the faulting access was a write. */
export const IOMMU_FAULT_WRITE = report.IOMMU_FAULT_WRITE;
/** Fault type: a page request (PRI, or a stalled transaction). */
export const IOMMU_FAULT_PAGE_REQ = fault.IOMMU_FAULT_PAGE_REQ;
/** Fault permission bit: read. */
export const IOMMU_FAULT_PERM_READ = fault.IOMMU_FAULT_PERM_READ;
/** Fault permission bit: write. */
export const IOMMU_FAULT_PERM_WRITE = fault.IOMMU_FAULT_PERM_WRITE;
/** Fault permission bit: instruction fetch. */
export const IOMMU_FAULT_PERM_EXEC = fault.IOMMU_FAULT_PERM_EXEC;
/** Fault permission bit: privileged. */
export const IOMMU_FAULT_PERM_PRIV = fault.IOMMU_FAULT_PERM_PRIV;
/** Page response: the fault is resolved, retry the access. */
export const IOMMU_PAGE_RESP_SUCCESS = fault.IOMMU_PAGE_RESP_SUCCESS;
/** Page response: the request is invalid, the access fails (stall: abort). */
export const IOMMU_PAGE_RESP_INVALID = fault.IOMMU_PAGE_RESP_INVALID;
/** Page response: fatal failure (PRI: the device stops issuing page requests). */
export const IOMMU_PAGE_RESP_FAILURE = fault.IOMMU_PAGE_RESP_FAILURE;
/** Handler result: the answer comes later (pageResponse / groupResponse / domainResume). */
export const IOMMU_FAULT_RESUME_LATER = iopf.IOMMU_FAULT_RESUME_LATER;
/** "r-w-" style text of IOMMU_FAULT_PERM_* bits. */
export const permString = fault.permString;
/** errno EBUSY (16): busy, e.g. a second attach without replace. */
export const EBUSY = errno.EBUSY;
/** errno 11: try again (a fault handler's "retry the stalled transaction"). */
export const EAGAIN = errno.EAGAIN;
/** errno 38: not implemented (report_iommu_fault without a handler). */
export const ENOSYS = errno.ENOSYS;
/** errno EINVAL (22): invalid argument. */
export const EINVAL = errno.EINVAL;
/** errno ENODEV (19): no such device (no IOMMU for it). */
export const ENODEV = errno.ENODEV;
/** errno ENOMEM (12): out of memory. */
export const ENOMEM = errno.ENOMEM;
/** errno ENOSPC (28): no space (IOVA space, ASIDs, ...). */
export const ENOSPC = errno.ENOSPC;
/** errno EOPNOTSUPP (95): the IOMMU or driver does not support it. */
export const EOPNOTSUPP = errno.EOPNOTSUPP;
/** errno ERANGE (34): out of range (IOVA beyond the aperture). */
export const ERANGE = errno.ERANGE;
/** "-EINVAL" for -22: the name of a (negative) errno. */
export const errnoName = errno.errnoName;
