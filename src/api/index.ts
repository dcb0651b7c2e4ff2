/**
 * iommu-lab's public API: boot a simulated machine with an Arm SMMUv3 and a model of Linux's
 * IOMMU subsystem, add DMA masters, call the kernel as a driver would, make devices do DMA,
 * inject faults, and observe what the hardware did. See README.md "Write your own scenario".
 *
 * @packageDocumentation
 */

export {
  type Board,
  type MasterSpec,
  type PciFunctionSpec,
  parseBdf,
  type VirtDeviceOptions,
} from './board.ts';
export { LabError, ScenarioFailure } from './errors.ts';
export { INJECTIONS, type InjectionName, Injector } from './inject.ts';
export { type DmaApi, type FaultApi, IommuApi } from './kernel.ts';
export {
  type BoardSource,
  boot,
  type KernelSettings,
  Lab,
  type LabOptions,
  MAX_VIRTUAL_TIME_NS,
  type TaskHandle,
} from './lab.ts';
export {
  type DmaAttrs,
  DmaMaster,
  type DmaOutcome,
  DmaTransfer,
  type MasterDmaAttrs,
  type MasterHandle,
  PciFunction,
} from './master.ts';
export {
  type DecodedEntry,
  type EntryWatch,
  SmmuView,
  type TlbEntryView,
  type Walk,
  type WalkStep,
} from './observe.ts';
export {
  defineScenario,
  type Expectation,
  type RunOptions,
  runScenario,
  type ScenarioContext,
  type ScenarioDefinition,
  type ScenarioResult,
  type ScenarioRng,
  scenarioShapeError,
} from './scenario.ts';

// ---- the kernel's own names, for calling it as a driver would

export type { Device } from '../kernel/base/device.ts';
export type { CoherentBuffer } from '../kernel/iommu/dma/mapping.ts';
export {
  DMA_ATTR_PRIVILEGED,
  DMA_MAPPING_ERROR,
  type DmaDirection,
  type ScatterEntry,
  sgTable,
} from '../kernel/iommu/dma/types.ts';
export type { IommuDomain } from '../kernel/iommu/domain.ts';
export {
  domainTypeName,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
} from '../kernel/iommu/domain.ts';
export {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFault,
  type IommuPageRequestFault,
  type IommuPageResponse,
  type IommuPageResponseCode,
  type IommuUnrecoverableFault,
  permString,
} from '../kernel/iommu/fault/fault.ts';
export {
  type DeviceFaultHandler,
  type DeviceHandlerOptions,
  type DomainFaultHandler,
  type FaultContext,
  type FaultRecord,
  IOMMU_FAULT_RESUME_LATER,
  type IopfGroup,
} from '../kernel/iommu/fault/io-pgfault.ts';
export type { IommuGroup } from '../kernel/iommu/group.ts';
export type { IommuAllocFlags } from '../kernel/iommu/ops.ts';
export {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from '../kernel/iommu/prot.ts';
export { EBUSY, EINVAL, ENODEV, ENOMEM, ENOSPC, EOPNOTSUPP, ERANGE, errnoName } from '../kernel/lib/errno.ts';

// ---- the machine's and hardware's types a scenario sees

export type { SmmuV3Options } from '../hw/smmuv3/regs-idr.ts';
export type { BugReport } from '../platform/bugs.ts';
export type { Workqueue } from '../platform/exec.ts';
export { formatDmesg, type TraceEvent, type TraceLevel, type TraceSink } from '../platform/trace.ts';
export {
  type ArmLpaeTcr,
  type ArmLpaeVtcr,
  allocIoPgtable,
  IoPgtable,
  type IoPgtableFmt,
  type IoPgtableOptions,
} from './pgtable.ts';
