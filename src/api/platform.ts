/** The machine's and hardware's types a scenario sees, documented as part of the public API. */

import type { SmmuV3Options as KSmmuV3Options } from '../hw/smmuv3/regs-idr.ts';
import type { BugReport as KBugReport } from '../platform/bugs.ts';
import type { Workqueue as KWorkqueue } from '../platform/exec.ts';
import type {
  DmaViolation as KDmaViolation,
  DmaViolationKind as KDmaViolationKind,
  SanitizeMode as KSanitizeMode,
} from '../platform/sanitizer.ts';
import { SANITIZE_MODES as K_SANITIZE_MODES } from '../platform/sanitizer.ts';
import type {
  TraceEvent as KTraceEvent,
  TraceLevel as KTraceLevel,
  TraceSink as KTraceSink,
} from '../platform/trace.ts';
import * as trace from '../platform/trace.ts';

/** A bug the machine caught: a might-sleep splat, a bad free, a DMA-API debug report, a crash. */
export type BugReport = KBugReport;
/** A workqueue: `queueFn(name, fn)` runs fn in a kernel worker (may sleep); `flush()` waits for it. */
export type Workqueue = KWorkqueue;
/** One trace event: virtual time (ns), component, name, level, message (the dmesg text) and fields. */
export type TraceEvent = KTraceEvent;
/** "debug", "info", "warn" or "err". */
export type TraceLevel = KTraceLevel;
/** A receiver of trace events (`write(e)`, optional `close()`). */
export type TraceSink = KTraceSink;
/** Implementation choices of an SMMUv3 model (stages, stall model, PRI, ATS, HTTU, queue and TLB sizes, latencies). */
export type SmmuV3Options = KSmmuV3Options;
/** "[    1.234567] component: message", as dmesg prints an event. */
export const formatDmesg = trace.formatDmesg;
/**
 * One report of the DMA-isolation sanitizer: kind, device, access, addresses, IDs, the
 * translation's origin, the missing invalidation, the page's allocation and free sites, and
 * `text`, the whole report as printed ("BUG: DMA use-after-free: ...").
 */
export type DmaViolation = KDmaViolation;
/** Class of a sanitizer report ("use-after-free", "write-to-table", "lazy-flush-window", ...). */
export type DmaViolationKind = KDmaViolationKind;
/** The DMA-isolation sanitizer's mode: "off", "report" or "panic". */
export type SanitizeMode = KSanitizeMode;
/** The sanitizer modes, for validation and help texts. */
export const SANITIZE_MODES: readonly SanitizeMode[] = K_SANITIZE_MODES;
