/**
 * Device fault reporting, I/O page faults and page responses (drivers/iommu/io-pgfault.c and
 * the older per-device / per-domain fault handler API of iommu.c), vendor-neutral.
 *
 * The IOMMU driver reports every fault from its IRQ thread with reportDeviceFault(). For a
 * page request (a PRI request, or a stalled transaction turned into one) the core:
 *  1. finds the handler first, for every fault: the device's handler, else the handler of the
 *     domain the (device, PASID) is attached to; none → answered INVALID at once (even a
 *     non-last request), as Linux's iopf_error_response();
 *  2. keeps non-last requests on the device's partial list until the last of their group;
 *  3. on the last one builds the group (every partial with the same grpid, then the last),
 *     records it as pending and hands it to the handler;
 *  4. accepts exactly one response per group: from the handler's owner (pageResponse /
 *     groupResponse / domainResume), or automatically (handler failure or no room: FAILURE;
 *     timeout, flush, burst suppression: the configured code). Any further response is refused.
 *
 * Handlers run where the model says: device handlers and 'irq-thread' domain handlers inside
 * the IRQ thread with the fault lock held (atomic: might-sleep reports any sleep), 'workqueue'
 * domain handlers and domain iopf handlers from the device's iopf queue (a workqueue).
 *
 * Lifetime: detach, domain replace, PASID detach and device removal flush the device's faults
 * (the IOMMU core calls flush()/removeDevice()): the driver drains its hardware queue, pending
 * groups are answered INVALID and the device's running handler work is waited for, so a PASID
 * is never reused with stale faults behind it. Unanswered groups time out in virtual time.
 *
 * Storms: pending groups and partial requests are bounded per device (an allocation failure
 * beyond the bound: FAILURE, as Linux's err_abort); log lines are rate-limited per device; a
 * device handler may ask to see only the first fault of a burst (the rest are answered at once).
 */

import type { Workqueue } from '../../../platform/exec.ts';
import type { Machine } from '../../../platform/machine.ts';
import { RateLimit } from '../../lib/ratelimit.ts';
import type { IommuCore } from '../core.ts';
import type { IommuDevice } from '../device.ts';
import type { IommuDomain } from '../domain.ts';
import { EBUSY, EINVAL, ENODEV } from '../errno.ts';
import type { IommuOps, MaybePromise } from '../ops.ts';
import { IOMMU_NO_PASID } from '../pasid.ts';
import {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_UNRECOV_PASID_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_PASID_VALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFault,
  type IommuPageRequestFault,
  type IommuPageResponse,
  type IommuPageResponseCode,
  type IommuPageResponseMsg,
  type IommuUnrecoverableFault,
  isLastPage,
  PAGE_RESP_NAMES,
  permString,
} from './fault.ts';

/** Handler result: the response will come later (pageResponse / groupResponse / domainResume). */
export const IOMMU_FAULT_RESUME_LATER = 0x100;

/** The fault half of an IOMMU driver's ops (ops->page_response and the IOPF feature). */
export interface IopfDriverOps {
  /** Send `msg` for the group whose last fault is `last` (its private data untouched). */
  pageResponse(
    dev: IommuDevice,
    last: IommuPageRequestFault,
    msg: IommuPageResponseMsg,
  ): MaybePromise<number>;
  /** iommu_dev_enable_feature(IOMMU_DEV_FEAT_IOPF): stall or PRI on, device on the driver's iopf queue. */
  enableIopf?(dev: IommuDevice): MaybePromise<number>;
  disableIopf?(dev: IommuDevice): MaybePromise<number>;
  /** Report every fault of `dev` still in the hardware queues (called before a flush). */
  drain?(dev: IommuDevice): Promise<void>;
}

/** What a handler learns besides the fault. */
export interface FaultContext {
  readonly dev: IommuDevice;
  /** The private data given at registration. */
  readonly data: unknown;
  /** The page-request group (null for unrecoverable faults). */
  readonly group: IopfGroup | null;
}

/**
 * Per-device handler (iommu_register_device_fault_handler). Runs in the IRQ thread, atomic.
 * Returns 0: accepted (the response comes later, or was given); < 0: failed (FAILURE is sent).
 * For unrecoverable faults: 0 handled, < 0 the driver logs the fault.
 */
export type DeviceFaultHandler = (fault: IommuFault, ctx: FaultContext) => number;

export interface DeviceHandlerOptions {
  /**
   * Tell the handler only of the first fault of a burst: faults arriving within `quietNs`
   * (default 1 ms) of the previous one are answered at once with `code` (default INVALID).
   */
  firstOfBurst?: boolean | { quietNs?: number; code?: IommuPageResponseCode };
  /** Deadline for a response, virtual ns (0 = none). Default: the core's defaultTimeoutNs. */
  timeoutNs?: number;
}

/**
 * The older per-domain handler (iommu_set_fault_handler / report_iommu_fault). Returns 0:
 * resolved (SUCCESS is sent: the device retries); IOMMU_FAULT_RESUME_LATER: the domain's user
 * calls domainResume() later; < 0: failed (FAILURE).
 */
export type DomainFaultHandler = (
  domain: IommuDomain,
  dev: IommuDevice,
  fault: IommuFault,
  token: unknown,
) => number | Promise<number>;

export interface DomainHandlerOptions {
  /**
   * 'irq-thread' (default): called in the IRQ thread, atomic, must not sleep; 'workqueue': the
   * core calls it from the device's iopf workqueue, where it may sleep, and responds itself.
   */
  context?: 'irq-thread' | 'workqueue';
}

/**
 * domain->iopf_handler for domains that resolve faults themselves (SVA, iommufd): runs from the
 * device's iopf queue. Returns the response code to send, IOMMU_FAULT_RESUME_LATER (respond
 * with groupResponse later), or < 0 (FAILURE).
 */
export type DomainIopfHandler = (group: IopfGroup) => number | Promise<number>;

export type ResponseSource =
  | 'handler'
  | 'no-handler'
  | 'handler-failure'
  | 'alloc-failure'
  | 'burst'
  | 'timeout'
  | 'flush'
  | 'remove';

/** struct iopf_group. */
export class IopfGroup {
  /** Response given (null while pending). */
  response: IommuPageResponseCode | null = null;
  respondedAt = -1;
  respondedBy: ResponseSource | null = null;
  /** Virtual time after which the group is answered automatically. */
  deadline = Number.POSITIVE_INFINITY;

  constructor(
    readonly id: number,
    readonly dev: IommuDevice,
    /** Partial faults of the group, then the last one. */
    readonly faults: readonly IommuPageRequestFault[],
    /** The domain whose handler got the group (null for device handlers). */
    readonly domain: IommuDomain | null,
  ) {}

  get last(): IommuPageRequestFault {
    return this.faults[this.faults.length - 1]!;
  }

  get grpid(): number {
    return this.last.grpid;
  }

  /** The PASID, or IOMMU_NO_PASID. */
  get pasid(): number {
    const l = this.last;
    return l.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? l.pasid : IOMMU_NO_PASID;
  }
}

/** struct iopf_queue: the workqueue that runs fault work for the devices on it. */
export class IopfQueue {
  readonly devices = new Set<IommuDevice>();
  constructor(
    readonly name: string,
    readonly wq: Workqueue,
  ) {}
}

export interface DeviceFaultStats {
  reported: number;
  unrecoverable: number;
  pageRequests: number;
  /** Non-last requests kept for their group. */
  partial: number;
  groups: number;
  /** Faults / groups given to a handler. */
  delivered: number;
  /** Answered automatically as part of a burst. */
  suppressed: number;
  noHandler: number;
  responses: { success: number; invalid: number; failure: number };
  /** Responses the core sent itself (no handler, failure, burst, timeout, flush). */
  autoResponses: number;
  duplicatesRefused: number;
  timeouts: number;
  flushed: number;
  partialDiscarded: number;
  allocFailures: number;
  handlerFailures: number;
  maxPending: number;
  logSuppressed: number;
}

function newStats(): DeviceFaultStats {
  return {
    reported: 0,
    unrecoverable: 0,
    pageRequests: 0,
    partial: 0,
    groups: 0,
    delivered: 0,
    suppressed: 0,
    noHandler: 0,
    responses: { success: 0, invalid: 0, failure: 0 },
    autoResponses: 0,
    duplicatesRefused: 0,
    timeouts: 0,
    flushed: 0,
    partialDiscarded: 0,
    allocFailures: 0,
    handlerFailures: 0,
    maxPending: 0,
    logSuppressed: 0,
  };
}

/** One thing that happened, for observers (demos, tests). */
export type FaultRecord =
  | {
      kind: 'fault';
      time: number;
      dev: string;
      fault: IommuFault;
      outcome:
        | 'delivered'
        | 'partial'
        | 'suppressed'
        | 'no-handler'
        | 'alloc-failure'
        | 'unhandled'
        | 'handled';
      groupId: number | null;
    }
  | {
      kind: 'response';
      time: number;
      dev: string;
      groupId: number;
      grpid: number;
      /** PASID carried by the response, or null. */
      pasid: number | null;
      code: IommuPageResponseCode;
      by: ResponseSource;
      /** From the report of the group's last fault to the response. */
      latencyNs: number;
    }
  | { kind: 'refused'; time: number; dev: string; grpid: number; code: number; reason: string }
  | { kind: 'discard'; time: number; dev: string; count: number; why: string };

interface DeviceHandler {
  fn: DeviceFaultHandler;
  data: unknown;
  burst: { quietNs: number; code: IommuPageResponseCode } | null;
}

interface DomainHandler {
  fn: DomainFaultHandler;
  token: unknown;
  context: 'irq-thread' | 'workqueue';
}

/** struct iommu_fault_param: the per-device fault state. */
class FaultParam {
  queue: IopfQueue | null = null;
  handler: DeviceHandler | null = null;
  partial: IommuPageRequestFault[] = [];
  /** Groups awaiting their response, oldest first. */
  readonly pending = new Map<number, IopfGroup>();
  /** Context names of handler work of this device that is queued or running. */
  readonly inflight = new Set<string>();
  idleWaiters: Array<() => void> = [];
  timeoutNs: number;
  timer = 0;
  timerAt = Number.POSITIVE_INFINITY;
  burstLast = Number.NEGATIVE_INFINITY;
  readonly log = new RateLimit();
  readonly stats = newStats();

  constructor(
    readonly dev: IommuDevice,
    timeoutNs: number,
  ) {
    this.timeoutNs = timeoutNs;
  }
}

export interface IommuFaultsOptions {
  /** Default response deadline for a device's groups, virtual ns (0 = none). Default 100 ms. */
  defaultTimeoutNs?: number;
  /** Code sent when a group times out. Default INVALID. */
  timeoutCode?: IommuPageResponseCode;
  /** Pending groups per device before new ones are refused (FAILURE). Default 1024. */
  maxPendingPerDevice?: number;
  /** Non-last requests kept per device; the oldest is dropped beyond it. Default 256. */
  maxPartialPerDevice?: number;
}

const LAST_BY: Record<ResponseSource, string> = {
  handler: 'handler',
  'no-handler': 'no handler',
  'handler-failure': 'handler failed',
  'alloc-failure': 'no room',
  burst: 'burst',
  timeout: 'timeout',
  flush: 'flush',
  remove: 'device removal',
};

export class IommuFaults {
  readonly defaultTimeoutNs: number;
  readonly timeoutCode: IommuPageResponseCode;
  readonly maxPending: number;
  readonly maxPartial: number;
  /** Totals over every device (including removed ones). */
  readonly stats = newStats();
  /** Largest number of fault objects (pending groups + partial requests) held at once. */
  maxLive = 0;
  private live = 0;
  private readonly params = new Map<IommuDevice, FaultParam>();
  private readonly domainHandlers = new WeakMap<IommuDomain, DomainHandler>();
  private readonly iopfHandlers = new WeakMap<IommuDomain, DomainIopfHandler>();
  private readonly driverOps = new Map<IommuOps, IopfDriverOps>();
  private readonly noParamLog = new WeakMap<IommuDevice, RateLimit>();
  private readonly observers: Array<(r: FaultRecord) => void> = [];
  private readonly pendingIo = new Set<Promise<unknown>>();
  private defaultQueue: IopfQueue | null = null;
  private nextGroup = 1;

  constructor(
    readonly m: Machine,
    readonly core: IommuCore,
    opts: IommuFaultsOptions = {},
  ) {
    this.defaultTimeoutNs = opts.defaultTimeoutNs ?? 100_000_000;
    this.timeoutCode = opts.timeoutCode ?? IOMMU_PAGE_RESP_INVALID;
    this.maxPending = opts.maxPendingPerDevice ?? 1024;
    this.maxPartial = opts.maxPartialPerDevice ?? 256;
  }

  // ------------------------------------------------------------------ drivers

  /** Register the fault half of an IOMMU driver's ops (ops->page_response ...). */
  setDriverOps(ops: IommuOps, fops: IopfDriverOps): void {
    this.driverOps.set(ops, fops);
  }

  private fopsOf(dev: IommuDevice): IopfDriverOps | null {
    const di = this.core.devIommu(dev);
    return di ? (this.driverOps.get(di.iommu.ops) ?? null) : null;
  }

  /** iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_IOPF). */
  async enableIopf(dev: IommuDevice): Promise<number> {
    const f = this.fopsOf(dev);
    if (f?.enableIopf === undefined) return -ENODEV;
    return f.enableIopf(dev);
  }

  async disableIopf(dev: IommuDevice): Promise<number> {
    const f = this.fopsOf(dev);
    if (f?.disableIopf === undefined) return -ENODEV;
    return f.disableIopf(dev);
  }

  // ------------------------------------------------------------------ observers, stats

  /** Receive a record of every fault, response, refusal and discard; returns an unsubscribe. */
  observe(fn: (r: FaultRecord) => void): () => void {
    this.observers.push(fn);
    return () => {
      const i = this.observers.indexOf(fn);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  private emit(r: FaultRecord): void {
    for (const o of this.observers) o(r);
  }

  deviceStats(dev: IommuDevice): DeviceFaultStats | null {
    return this.params.get(dev)?.stats ?? null;
  }

  /** Groups of `dev` awaiting a response, oldest first. */
  pendingGroups(dev: IommuDevice): IopfGroup[] {
    return [...(this.params.get(dev)?.pending.values() ?? [])];
  }

  /** Partial (non-last) requests held for `dev`. */
  partialCount(dev: IommuDevice): number {
    return this.params.get(dev)?.partial.length ?? 0;
  }

  /** Fault objects held now (pending groups + partial requests) over all devices. */
  get liveObjects(): number {
    return this.live;
  }

  private addLive(n: number): void {
    this.live += n;
    if (this.live > this.maxLive) this.maxLive = this.live;
  }

  private param(dev: IommuDevice, create: boolean): FaultParam | null {
    let p = this.params.get(dev) ?? null;
    if (p === null && create) {
      p = new FaultParam(dev, this.defaultTimeoutNs);
      this.params.set(dev, p);
    }
    return p;
  }

  private log(dev: IommuDevice, p: FaultParam | null, msg: string, level: 'info' | 'warn' = 'info'): void {
    const t = this.m.trace;
    if (!t.enabled) return;
    let rl = p?.log;
    if (rl === undefined) {
      rl = this.noParamLog.get(dev);
      if (rl === undefined) this.noParamLog.set(dev, (rl = new RateLimit()));
    }
    const ok = rl.allow(this.m.sched.now, (n) =>
      t.emit('kernel.iopf', 'iopf.log', `${dev.name}: ${n} fault messages suppressed`, { n }, 'warn'),
    );
    if (!ok) {
      if (p) p.stats.logSuppressed++;
      this.stats.logSuppressed++;
      return;
    }
    t.emit('kernel.iopf', 'iopf.log', `${dev.name}: ${msg}`, {}, level);
  }

  // ------------------------------------------------------------------ handler registration

  /** iommu_register_device_fault_handler: -EBUSY if `dev` already has one. */
  registerDeviceFaultHandler(
    dev: IommuDevice,
    fn: DeviceFaultHandler,
    data: unknown,
    opts: DeviceHandlerOptions = {},
  ): number {
    const p = this.param(dev, true)!;
    if (p.handler !== null) return -EBUSY;
    const fb = opts.firstOfBurst;
    p.handler = {
      fn,
      data,
      burst:
        fb === undefined || fb === false
          ? null
          : {
              quietNs: (fb === true ? undefined : fb.quietNs) ?? 1_000_000,
              code: (fb === true ? undefined : fb.code) ?? IOMMU_PAGE_RESP_INVALID,
            },
    };
    if (opts.timeoutNs !== undefined) p.timeoutNs = opts.timeoutNs;
    p.burstLast = Number.NEGATIVE_INFINITY;
    return 0;
  }

  /** iommu_unregister_device_fault_handler: -EBUSY while groups await a response. */
  unregisterDeviceFaultHandler(dev: IommuDevice): number {
    const p = this.params.get(dev);
    if (p === undefined || p.handler === null) return -EINVAL;
    if (p.pending.size > 0) return -EBUSY;
    p.handler = null;
    this.dropPartial(p, () => true, 'handler unregistered');
    this.maybeDropParam(p);
    return 0;
  }

  /** Start a new burst: the next fault reaches a firstOfBurst handler again. */
  endBurst(dev: IommuDevice): void {
    const p = this.params.get(dev);
    if (p) p.burstLast = Number.NEGATIVE_INFINITY;
  }

  /** Response deadline of `dev`'s groups (virtual ns; 0 = none). */
  setTimeout(dev: IommuDevice, ns: number): void {
    const p = this.param(dev, true)!;
    p.timeoutNs = ns;
  }

  /** iommu_set_fault_handler: the domain's (older) fault handler; null clears it. */
  setDomainFaultHandler(
    domain: IommuDomain,
    fn: DomainFaultHandler | null,
    token: unknown = null,
    opts: DomainHandlerOptions = {},
  ): void {
    if (fn === null) this.domainHandlers.delete(domain);
    else this.domainHandlers.set(domain, { fn, token, context: opts.context ?? 'irq-thread' });
  }

  /**
   * Whether a fault of `dev` would reach a handler here: the device's handler, or one of
   * `domain` (the domain the fault happened in). Drivers that also have another reporting path
   * (arm-smmu's report_iommu_fault) offer a fault here first only when this holds.
   */
  hasHandler(dev: IommuDevice, domain: IommuDomain | null): boolean {
    const p = this.params.get(dev);
    if (p?.handler) return true;
    if (domain === null) return false;
    return this.domainHandlers.has(domain) || (this.iopfHandlers.has(domain) && (p?.queue ?? null) !== null);
  }

  /** domain->iopf_handler; null clears it. */
  setDomainIopfHandler(domain: IommuDomain, fn: DomainIopfHandler | null): void {
    if (fn === null) this.iopfHandlers.delete(domain);
    else this.iopfHandlers.set(domain, fn);
  }

  // ------------------------------------------------------------------ iopf queues

  /** iopf_queue_alloc: an unordered workqueue "iopf_queue/<name>". */
  iopfQueueAlloc(name: string): IopfQueue {
    return new IopfQueue(name, this.m.exec.createWorkqueue(`iopf_queue/${name}`));
  }

  /** iopf_queue_add_device: -EBUSY if already on a queue, -ENODEV if the driver cannot respond. */
  iopfQueueAddDevice(q: IopfQueue, dev: IommuDevice, opts: { timeoutNs?: number } = {}): number {
    if (this.fopsOf(dev) === null) return -ENODEV;
    const p = this.param(dev, true)!;
    if (p.queue !== null) return -EBUSY;
    p.queue = q;
    q.devices.add(dev);
    if (opts.timeoutNs !== undefined) p.timeoutNs = opts.timeoutNs;
    return 0;
  }

  /**
   * iopf_queue_remove_device: partial faults are freed, pending groups answered INVALID, and
   * the device's handler work waited for. The driver stops fault reception first.
   */
  async iopfQueueRemoveDevice(q: IopfQueue, dev: IommuDevice): Promise<void> {
    const p = this.params.get(dev);
    if (p === undefined || p.queue !== q) return;
    this.answerAll(p, undefined, 'remove');
    this.dropPartial(p, () => true, 'device left its iopf queue');
    await this.waitIdle(p);
    q.devices.delete(dev);
    p.queue = null;
    this.maybeDropParam(p);
  }

  /** iopf_queue_flush_dev: wait for the device's fault work; -ENODEV if it is on no queue. */
  async iopfQueueFlushDev(dev: IommuDevice): Promise<number> {
    const p = this.params.get(dev);
    if (p === undefined || p.queue === null) {
      this.m.reportBug('warn', `WARNING: iopf_queue_flush_dev: ${dev.name} is on no iopf queue`);
      return -ENODEV;
    }
    await this.fopsOf(dev)?.drain?.(dev);
    await this.waitIdle(p);
    return 0;
  }

  /**
   * iopf_queue_discard_partial: after a hardware queue overflow the last request of a group
   * may have been lost, so every partial request of the queue's devices is freed, unanswered.
   */
  iopfQueueDiscardPartial(q: IopfQueue | null): number {
    if (q === null) return -EINVAL;
    for (const dev of q.devices) {
      const p = this.params.get(dev);
      if (p) this.dropPartial(p, () => true, 'queue overflow');
    }
    return 0;
  }

  /** iopf_queue_free: remove every device (answering INVALID), then drop the queue. */
  async iopfQueueFree(q: IopfQueue): Promise<void> {
    for (const dev of [...q.devices]) await this.iopfQueueRemoveDevice(q, dev);
  }

  private maybeDropParam(p: FaultParam): void {
    if (p.handler === null && p.queue === null && p.pending.size === 0 && p.inflight.size === 0) {
      if (p.timer !== 0) this.m.sched.cancel(p.timer);
      p.timer = 0;
      this.params.delete(p.dev);
    }
  }

  // ------------------------------------------------------------------ reporting

  /**
   * iommu_report_device_fault, from the IOMMU driver's IRQ thread. Unrecoverable faults: 0 if a
   * handler took it (else the driver logs it). Page requests: 0 when the core owns the fault
   * (collected, delivered, or answered because of a failure), -EINVAL when there was no handler
   * (INVALID has been sent).
   */
  reportDeviceFault(dev: IommuDevice, fault: IommuFault): number {
    const p = this.params.get(dev) ?? null;
    this.stats.reported++;
    if (p) p.stats.reported++;
    if (fault.type === IOMMU_FAULT_DMA_UNRECOV) return this.reportUnrecoverable(dev, fault, p);
    this.stats.pageRequests++;
    if (p) p.stats.pageRequests++;
    const last = isLastPage(fault);
    // 1. the handler first, for every fault
    let domain: IommuDomain | null = null;
    let kind: 'device' | 'domain' | 'iopf' | null = null;
    if (p?.handler) kind = 'device';
    else {
      const pasidValid = (fault.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0;
      domain = pasidValid ? this.core.getDomainForDevPasid(dev, fault.pasid) : this.core.getDomainForDev(dev);
      if (domain !== null) {
        if (this.iopfHandlers.has(domain)) kind = p?.queue ? 'iopf' : null;
        else if (this.domainHandlers.has(domain)) kind = 'domain';
      }
    }
    if (kind === null) {
      // 2. no handler (or no iopf setup): INVALID at once, even for a non-last request
      this.stats.noHandler++;
      if (p) p.stats.noHandler++;
      this.emitFault(dev, fault, 'no-handler', null);
      if (this.m.trace.enabled)
        this.log(dev, p, `no fault handler: ${this.describe(fault)} -> INVALID`, 'warn');
      this.respond(
        new IopfGroup(this.nextGroup++, dev, [fault], null),
        IOMMU_PAGE_RESP_INVALID,
        'no-handler',
        p,
      );
      return -EINVAL;
    }
    const param = p ?? this.param(dev, true)!;
    // burst suppression (device handlers that asked for the first fault only)
    const burst = kind === 'device' ? param.handler!.burst : null;
    if (burst !== null && this.inBurst(param, burst.quietNs, last)) {
      if (!last) return 0; // its group is answered with the last request
      this.stats.suppressed++;
      param.stats.suppressed++;
      this.emitFault(dev, fault, 'suppressed', null);
      const g = new IopfGroup(this.nextGroup++, dev, this.takePartial(param, fault), null);
      this.respond(g, burst.code, 'burst', param);
      return 0;
    }
    // 3. partial requests wait for the last of their group
    if (!last) {
      if (param.partial.length >= this.maxPartial) {
        param.partial.shift();
        this.addLive(-1);
        param.stats.partialDiscarded++;
        this.stats.partialDiscarded++;
      }
      param.partial.push(fault);
      this.addLive(1);
      param.stats.partial++;
      this.stats.partial++;
      this.emitFault(dev, fault, 'partial', null);
      return 0;
    }
    // 4. the group: partials with the same grpid, then the last
    const g = new IopfGroup(this.nextGroup++, dev, this.takePartial(param, fault), domain);
    param.stats.groups++;
    this.stats.groups++;
    if (param.pending.size >= this.maxPending) {
      // iopf_group_alloc failed: the on-stack abort group is answered FAILURE
      param.stats.allocFailures++;
      this.stats.allocFailures++;
      this.emitFault(dev, fault, 'alloc-failure', g.id);
      this.log(dev, param, `iopf with pasid ${g.pasid} aborted (no room)`, 'warn');
      this.respond(g, IOMMU_PAGE_RESP_FAILURE, 'alloc-failure', param);
      return 0;
    }
    param.pending.set(g.id, g);
    this.addLive(1);
    if (param.pending.size > param.stats.maxPending) param.stats.maxPending = param.pending.size;
    if (param.pending.size > this.stats.maxPending) this.stats.maxPending = param.pending.size;
    if (param.timeoutNs > 0) {
      g.deadline = this.m.sched.now + param.timeoutNs;
      this.armTimer(param);
    }
    param.stats.delivered++;
    this.stats.delivered++;
    this.emitFault(dev, fault, 'delivered', g.id);
    if (this.m.trace.enabled)
      this.log(dev, param, `${this.describe(fault)} (group ${g.id}, ${g.faults.length} page(s))`);
    this.deliver(param, kind, g);
    return 0;
  }

  private inBurst(p: FaultParam, quietNs: number, countIt: boolean): boolean {
    const now = this.m.sched.now;
    const active = now - p.burstLast <= quietNs;
    if (countIt) p.burstLast = now;
    return active;
  }

  /** Remove the partials of `last`'s group from the device's list; returns the group's faults. */
  private takePartial(p: FaultParam, last: IommuPageRequestFault): IommuPageRequestFault[] {
    if (p.partial.length === 0) return [last];
    const out: IommuPageRequestFault[] = [];
    const keep: IommuPageRequestFault[] = [];
    for (const f of p.partial) (f.grpid === last.grpid ? out : keep).push(f);
    if (out.length > 0) {
      p.partial = keep;
      this.addLive(-out.length);
    }
    out.push(last);
    return out;
  }

  private reportUnrecoverable(
    dev: IommuDevice,
    fault: IommuUnrecoverableFault,
    p: FaultParam | null,
  ): number {
    this.stats.unrecoverable++;
    if (p) p.stats.unrecoverable++;
    if (p?.handler) {
      const h = p.handler;
      if (h.burst !== null && this.inBurst(p, h.burst.quietNs, true)) {
        p.stats.suppressed++;
        this.stats.suppressed++;
        this.emitFault(dev, fault, 'suppressed', null);
        return 0;
      }
      const r = this.callAtomic(dev, () => h.fn(fault, { dev, data: h.data, group: null }));
      this.emitFault(dev, fault, r === 0 ? 'handled' : 'unhandled', null);
      if (r === 0) {
        p.stats.delivered++;
        this.stats.delivered++;
      }
      return r;
    }
    const domain =
      fault.flags & IOMMU_FAULT_UNRECOV_PASID_VALID
        ? this.core.getDomainForDevPasid(dev, fault.pasid)
        : this.core.getDomainForDev(dev);
    const dh = domain ? this.domainHandlers.get(domain) : undefined;
    if (domain === null || dh === undefined) {
      this.emitFault(dev, fault, 'unhandled', null);
      return -ENODEV;
    }
    if (dh.context === 'workqueue') {
      const param = this.param(dev, true)!;
      this.queueWork(param, `unrecov ${fault.time}`, async () => {
        await dh.fn(domain, dev, fault, dh.token);
      });
      this.emitFault(dev, fault, 'handled', null);
      return 0;
    }
    const r = this.callAtomic(dev, () => dh.fn(domain, dev, fault, dh.token));
    this.emitFault(dev, fault, r === 0 || r === IOMMU_FAULT_RESUME_LATER ? 'handled' : 'unhandled', null);
    return r === IOMMU_FAULT_RESUME_LATER ? 0 : r;
  }

  /** Run a handler in the IRQ thread with the fault lock held: atomic, no sleeping. */
  private callAtomic(dev: IommuDevice, fn: () => number | Promise<number>): number {
    let r: number | Promise<number>;
    try {
      r = this.m.exec.atomic(`iopf handler (${dev.name})`, fn);
    } catch (err) {
      this.m.exec.crash(`iopf handler (${dev.name})`, err);
      return -EINVAL;
    }
    if (typeof r !== 'number') {
      // an async handler in atomic context: it would sleep; the fault is failed
      this.m.reportBug(
        'might-sleep',
        `BUG: iopf: fault handler of ${dev.name} returned a promise (would sleep) in atomic context`,
      );
      r.catch(() => {});
      return -EINVAL;
    }
    return r;
  }

  private deliver(p: FaultParam, kind: 'device' | 'domain' | 'iopf', g: IopfGroup): void {
    const dev = p.dev;
    if (kind === 'device') {
      const h = p.handler!;
      const r = this.callAtomic(dev, () => h.fn(g.last, { dev, data: h.data, group: g }));
      if (r < 0) this.handlerFailed(p, g);
      return;
    }
    const domain = g.domain!;
    if (kind === 'iopf') {
      const fn = this.iopfHandlers.get(domain)!;
      this.queueWork(p, `group ${g.id}`, async () => {
        const r = await fn(g);
        this.applyResult(p, g, r, true);
      });
      return;
    }
    const dh = this.domainHandlers.get(domain)!;
    if (dh.context === 'workqueue') {
      this.queueWork(p, `group ${g.id}`, async () => {
        const r = await dh.fn(domain, dev, g.last, dh.token);
        this.applyResult(p, g, r, false);
      });
      return;
    }
    this.applyResult(
      p,
      g,
      this.callAtomic(dev, () => dh.fn(domain, dev, g.last, dh.token)),
      false,
    );
  }

  /** A domain handler's result: a code to send (iopf) / 0 = SUCCESS (domain), later, or failure. */
  private applyResult(p: FaultParam, g: IopfGroup, r: number, isCode: boolean): void {
    if (r === IOMMU_FAULT_RESUME_LATER) return;
    if (r < 0) this.handlerFailed(p, g);
    else if (!isCode) this.respond(g, IOMMU_PAGE_RESP_SUCCESS, 'handler', p);
    else if (r === IOMMU_PAGE_RESP_SUCCESS || r === IOMMU_PAGE_RESP_INVALID || r === IOMMU_PAGE_RESP_FAILURE)
      this.respond(g, r, 'handler', p);
    else this.handlerFailed(p, g);
  }

  private handlerFailed(p: FaultParam, g: IopfGroup): void {
    if (g.response !== null) {
      this.respond(g, IOMMU_PAGE_RESP_FAILURE, 'handler-failure', p); // refused: counted, not sent
      return;
    }
    p.stats.handlerFailures++;
    this.stats.handlerFailures++;
    this.log(p.dev, p, `iopf with pasid ${g.pasid} aborted`, 'warn');
    this.respond(g, IOMMU_PAGE_RESP_FAILURE, 'handler-failure', p);
  }

  private queueWork(p: FaultParam, what: string, fn: () => Promise<void>): void {
    const q = p.queue ?? this.defaultIopfQueue();
    const name = `${p.dev.name} ${what}`;
    const ctxName = `${q.wq.name}/${name}`;
    p.inflight.add(ctxName);
    q.wq.queueFn(name, async () => {
      try {
        await fn();
      } catch (err) {
        this.m.exec.crash(ctxName, err);
      } finally {
        p.inflight.delete(ctxName);
        if (p.inflight.size === 0) {
          const ws = p.idleWaiters;
          p.idleWaiters = [];
          for (const w of ws) w();
          if (ws.length > 0) this.m.sched.wokeAsync = true;
        }
        this.maybeDropParam(p);
      }
    });
  }

  private defaultIopfQueue(): IopfQueue {
    this.defaultQueue ??= this.iopfQueueAlloc('default');
    return this.defaultQueue;
  }

  private describe(f: IommuPageRequestFault): string {
    const pasid = f.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? ` pasid ${f.pasid}` : '';
    return `page request${pasid} grpid ${f.grpid} addr 0x${f.addr.toString(16)} ${permString(f.perm)}${isLastPage(f) ? ' last' : ''}`;
  }

  private emitFault(
    dev: IommuDevice,
    fault: IommuFault,
    outcome: Extract<FaultRecord, { kind: 'fault' }>['outcome'],
    groupId: number | null,
  ): void {
    if (this.observers.length === 0) return;
    this.emit({ kind: 'fault', time: this.m.sched.now, dev: dev.name, fault, outcome, groupId });
  }

  // ------------------------------------------------------------------ responses

  /**
   * Answer a group (iopf_group_response): exactly once. Returns 0, or -EINVAL if it was answered
   * already (the duplicate is refused and never reaches the device). Callable from any context;
   * the driver's command is issued now and completes in the background.
   */
  groupResponse(group: IopfGroup, code: IommuPageResponseCode): number {
    return this.respond(group, code, 'handler', this.params.get(group.dev) ?? null);
  }

  /**
   * iommu_page_response(dev, {pasid, grpid, code}): answer the pending group `grpid` of `dev`
   * (the PASID must match when the group has one). Sleeps (takes the fault lock); 0, -EINVAL for
   * no such pending group (an unknown or already answered one), -ENODEV.
   */
  async pageResponse(dev: IommuDevice, resp: IommuPageResponse): Promise<number> {
    this.m.exec.mightSleep('iommu_page_response');
    const p = this.params.get(dev);
    if (p === undefined) return this.refuse(dev, resp.grpid, resp.code, 'no fault state for device', -ENODEV);
    let g: IopfGroup | null = null;
    for (const x of p.pending.values()) {
      if (x.grpid !== resp.grpid) continue;
      const l = x.last;
      if (l.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
        if (resp.pasid !== undefined && resp.pasid !== l.pasid) continue;
      } else if (resp.pasid !== undefined && resp.pasid !== IOMMU_NO_PASID) continue;
      g = x;
      break;
    }
    if (g === null) return this.refuse(dev, resp.grpid, resp.code, 'no such pending group', -EINVAL, p);
    const r = this.respond(g, resp.code, 'handler', p);
    await this.settleIo();
    return r;
  }

  /**
   * Resume a group a domain fault handler deferred (IOMMU_FAULT_RESUME_LATER): the "explicit
   * resume" of the per-domain API. -EINVAL if the group is not this domain's or already answered.
   */
  domainResume(domain: IommuDomain, group: IopfGroup, code: IommuPageResponseCode): number {
    if (group.domain !== domain)
      return this.refuse(group.dev, group.grpid, code, 'group belongs to another domain', -EINVAL);
    return this.groupResponse(group, code);
  }

  private refuse(
    dev: IommuDevice,
    grpid: number,
    code: number,
    reason: string,
    ret: number,
    p: FaultParam | null = null,
  ): number {
    this.stats.duplicatesRefused++;
    if (p) p.stats.duplicatesRefused++;
    if (this.observers.length)
      this.emit({ kind: 'refused', time: this.m.sched.now, dev: dev.name, grpid, code, reason });
    this.log(dev, p, `page response grpid ${grpid} refused: ${reason}`, 'warn');
    return ret;
  }

  private respond(
    g: IopfGroup,
    code: IommuPageResponseCode,
    by: ResponseSource,
    p: FaultParam | null,
  ): number {
    const dev = g.dev;
    if (g.response !== null)
      return this.refuse(
        dev,
        g.grpid,
        code,
        `group already answered (${PAGE_RESP_NAMES[g.response]})`,
        -EINVAL,
        p,
      );
    if (
      code !== IOMMU_PAGE_RESP_SUCCESS &&
      code !== IOMMU_PAGE_RESP_INVALID &&
      code !== IOMMU_PAGE_RESP_FAILURE
    )
      return this.refuse(dev, g.grpid, code, 'bad response code', -EINVAL, p);
    const now = this.m.sched.now;
    g.response = code;
    g.respondedAt = now;
    g.respondedBy = by;
    if (p?.pending.delete(g.id)) {
      this.addLive(-1);
      if (p.pending.size === 0 && p.timer !== 0) {
        this.m.sched.cancel(p.timer);
        p.timer = 0;
        p.timerAt = Number.POSITIVE_INFINITY;
      }
    }
    const s = p?.stats;
    const key =
      code === IOMMU_PAGE_RESP_SUCCESS ? 'success' : code === IOMMU_PAGE_RESP_INVALID ? 'invalid' : 'failure';
    this.stats.responses[key]++;
    if (s) s.responses[key]++;
    if (by !== 'handler') {
      this.stats.autoResponses++;
      if (s) s.autoResponses++;
    }
    // the response carries the PASID exactly when the fault has one and the device needs it
    const l = g.last;
    const withPasid =
      (l.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) !== 0 &&
      (l.flags & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID) !== 0;
    const msg: IommuPageResponseMsg = {
      flags: withPasid ? IOMMU_PAGE_RESP_PASID_VALID : 0,
      pasid: withPasid ? l.pasid : 0,
      grpid: l.grpid,
      code,
    };
    if (this.observers.length) {
      this.emit({
        kind: 'response',
        time: now,
        dev: dev.name,
        groupId: g.id,
        grpid: l.grpid,
        pasid: withPasid ? l.pasid : null,
        code,
        by,
        latencyNs: now - l.time,
      });
    }
    if (by !== 'burst' && by !== 'no-handler' && this.m.trace.enabled)
      this.log(dev, p, `group ${g.id} grpid ${l.grpid}: ${PAGE_RESP_NAMES[code]} (${LAST_BY[by]})`);
    const f = this.fopsOf(dev);
    if (f === null) return -ENODEV;
    let r: MaybePromise<number>;
    try {
      r = f.pageResponse(dev, l, msg);
    } catch (err) {
      this.m.exec.crash('ops->page_response', err);
      return -EINVAL;
    }
    if (typeof r === 'number') return r;
    const pr = r.catch((err: unknown) => this.m.exec.crash('ops->page_response', err));
    this.pendingIo.add(pr);
    void pr.finally(() => this.pendingIo.delete(pr));
    return 0;
  }

  /** Wait until the driver commands of the responses given so far have been issued. */
  private async settleIo(): Promise<void> {
    while (this.pendingIo.size > 0) await Promise.all([...this.pendingIo]);
  }

  // ------------------------------------------------------------------ timeouts

  private armTimer(p: FaultParam): void {
    if (p.timeoutNs <= 0) return;
    let first: IopfGroup | undefined;
    for (const g of p.pending.values()) {
      first = g;
      break;
    }
    if (first === undefined) return;
    const at = Math.max(first.deadline, this.m.sched.now);
    if (p.timer !== 0 && p.timerAt <= at) return;
    if (p.timer !== 0) this.m.sched.cancel(p.timer);
    p.timerAt = at;
    p.timer = this.m.sched.at(at, () => this.expire(p), `iopf timeout ${p.dev.name}`);
  }

  private expire(p: FaultParam): void {
    p.timer = 0;
    p.timerAt = Number.POSITIVE_INFINITY;
    const now = this.m.sched.now;
    for (const g of [...p.pending.values()]) {
      if (g.deadline > now) continue;
      p.stats.timeouts++;
      this.stats.timeouts++;
      this.log(p.dev, p, `group ${g.id} grpid ${g.grpid} not answered within ${p.timeoutNs} ns`, 'warn');
      this.respond(g, this.timeoutCode, 'timeout', p);
    }
    this.armTimer(p);
    this.m.sched.wokeAsync = true;
  }

  // ------------------------------------------------------------------ flush (core hooks)

  /**
   * Flush the faults of `dev` for `pasid` (IOMMU_NO_PASID: the RID; undefined: all): the
   * driver drains its hardware queue, partial requests are dropped, pending groups answered
   * INVALID, and running handler work of the device is waited for. Called by the IOMMU core
   * after detach, domain replace and PASID detach, before the PASID can be reused. Sleeps.
   */
  async flush(dev: IommuDevice, pasid?: number): Promise<void> {
    if (!this.params.has(dev)) return;
    this.m.exec.mightSleep('iopf flush');
    await this.fopsOf(dev)?.drain?.(dev);
    const p = this.params.get(dev);
    if (p === undefined) return;
    const match = (x: number) => pasid === undefined || x === pasid;
    this.dropPartial(
      p,
      (f) => match(f.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? f.pasid : IOMMU_NO_PASID),
      'flush',
    );
    this.answerAll(p, pasid, 'flush');
    await this.settleIo();
    await this.waitIdle(p);
  }

  /** Device removal (iommu_release_device): flush everything and forget the device. */
  async removeDevice(dev: IommuDevice): Promise<void> {
    if (!this.params.has(dev)) return;
    await this.fopsOf(dev)?.drain?.(dev);
    const p = this.params.get(dev);
    if (p === undefined) return;
    this.dropPartial(p, () => true, 'device removal');
    this.answerAll(p, undefined, 'remove');
    await this.settleIo();
    await this.waitIdle(p);
    p.queue?.devices.delete(dev);
    p.queue = null;
    p.handler = null;
    this.maybeDropParam(p);
  }

  private answerAll(p: FaultParam, pasid: number | undefined, by: 'flush' | 'remove'): void {
    for (const g of [...p.pending.values()]) {
      if (pasid !== undefined && g.pasid !== pasid) continue;
      p.stats.flushed++;
      this.stats.flushed++;
      this.respond(g, IOMMU_PAGE_RESP_INVALID, by, p);
    }
  }

  private dropPartial(p: FaultParam, match: (f: IommuPageRequestFault) => boolean, why: string): void {
    if (p.partial.length === 0) return;
    const keep = p.partial.filter((f) => !match(f));
    const n = p.partial.length - keep.length;
    if (n === 0) return;
    p.partial = keep;
    this.addLive(-n);
    p.stats.partialDiscarded += n;
    this.stats.partialDiscarded += n;
    if (this.observers.length)
      this.emit({ kind: 'discard', time: this.m.sched.now, dev: p.dev.name, count: n, why });
    this.log(p.dev, p, `${n} partial page request(s) discarded: ${why}`);
  }

  /** Wait until no handler work of the device is queued or running (unless we are that work). */
  private waitIdle(p: FaultParam): Promise<void> {
    if (p.inflight.size === 0) return Promise.resolve();
    for (
      let c: ReturnType<typeof this.m.exec.current> | null = this.m.exec.current();
      c !== null;
      c = c.parent
    ) {
      if (p.inflight.has(c.name)) return Promise.resolve();
    }
    this.m.exec.mightSleep('iopf_queue_flush_dev');
    return new Promise<void>((r) => p.idleWaiters.push(r));
  }
}
