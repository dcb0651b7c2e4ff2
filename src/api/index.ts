/**
 * iommu-lab's public API: boot a simulated machine with an Arm SMMUv3 and a model of Linux's
 * IOMMU subsystem, add DMA masters, call the kernel as a driver would, make devices do DMA,
 * inject faults, and observe what the hardware did. See README.md "Write your own scenario".
 *
 * @packageDocumentation
 */

/** The version of iommu-lab, as in its package.json. */
export { VERSION as version } from '../version.ts';
export {
  AdrenoBuffer,
  type AdrenoCrashState,
  type AdrenoFaultFlow,
  AdrenoHandle,
  type AdrenoJobResult,
  AdrenoProcess,
  type AdrenoStats,
  type ArmSmmuStats,
  type ContextBankView,
  GPU_OP,
  type GpuCommand,
  SmmuV2View,
} from './adreno.ts';
export {
  type Board,
  type DtMaster,
  type MasterSpec,
  type PciFunctionSpec,
  type PciRequest,
  parseBdf,
  type VirtDeviceOptions,
} from './board.ts';
export { type Finding, type FindingSeverity, formatFinding } from './board-check.ts';
export type {
  BootReport,
  DeviceReport,
  DeviceReportState,
  DomainTypeName,
  IommuMapReport,
  IommuReport,
  IommuState,
} from './boot-report.ts';
export { LabError, ScenarioFailure } from './errors.ts';
export { INJECTIONS, type InjectionName, type InjectionOptions, Injector } from './inject.ts';
export { type DmaApi, type FaultApi, IommuApi } from './kernel.ts';
export {
  type BoardSource,
  boot,
  type KernelSettings,
  Lab,
  type LabOptions,
  MAX_VIRTUAL_TIME_NS,
  SanitizerPanic,
  type SanitizerView,
  type TaskHandle,
} from './lab.ts';
export * from './linux.ts';
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
  type ArmLpaeTcr,
  type ArmLpaeVtcr,
  allocIoPgtable,
  IoPgtable,
  type IoPgtableFmt,
  type IoPgtableOptions,
} from './pgtable.ts';
export type { SmmuV3Options } from './platform.ts';
export {
  type BugReport,
  type DmaViolation,
  type DmaViolationKind,
  formatDmesg,
  SANITIZE_MODES,
  type SanitizeMode,
  type TraceEvent,
  type TraceLevel,
  type TraceSink,
  type Workqueue,
} from './platform.ts';
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
