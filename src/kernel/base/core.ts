// The driver core (drivers/base/{core,dd,bus}.c): devices, drivers, matching, probe, deferral,
// device links, bind/unbind and hot-plug.
//
// Deferral. A probe that returns ProbeDefer puts the device on the deferred list with its reason.
// Linux retries the whole list whenever any driver binds; that is the 'retry-all' strategy here,
// kept so that the cost can be compared. The default 'targeted' strategy records what each deferred
// device waits for (a supplier device, or a provider's firmware node) and retries it only when that
// supplier binds or registers; devices that deferred without naming a supplier are still retried on
// every bind. Both strategies do a full pass at late_initcall (deferred_probe_initcall) and another
// when the deferred-probe timeout fires.
//
// Timeout. After initcalls, a timer of `deferredProbeTimeoutNs` virtual ns (Linux: 10 s with
// CONFIG_MODULES; re-armed when a driver registers) is armed. When it fires, optional dependencies
// (IOMMUs that never registered) are given up: deferredProbeCheckState() stops answering "defer".
//
// Probe work runs sequentially on one queue (like the deferred-probe workqueue); calls made from
// inside a probe (adding a child device, registering a provider) only enqueue work.

import type { DeviceTree, DtNode } from '../of/tree.ts';
import { type Device, type DeviceState, defaultDmaConfig, devPrefix } from './device.ts';
import { type Bus, type Driver, ofMatchIndex, ProbeDefer, ProbeError, type ProbeResult } from './driver.ts';
import { EEXIST, EIO, ENODEV, ENXIO, ETIMEDOUT, errnoName } from './errno.ts';
import type { IommuInstance, IommuOps } from './iommu-provider.ts';

export type DeferStrategy = 'targeted' | 'retry-all';

/** What the driver core needs of the virtual-time scheduler (platform Scheduler satisfies it). */
export interface CoreTimer {
  readonly now: number;
  schedule(delayNs: number, fn: () => void, label?: string): number;
  cancel(id: number): boolean;
  /** Set when an event woke async work (platform Scheduler: lets the async run loop settle it). */
  wokeAsync?: boolean;
}

/**
 * A consumer → supplier dependency (struct device_link). Links made from firmware (fw_devlink) name
 * the supplier's node; the supplier device is the one populated for that node or its nearest
 * ancestor. Optional links (iommus, iommu-map) are not enforced by the core: of_iommu decides.
 */
export interface DeviceLink {
  consumer: Device;
  supplierNode: DtNode | null;
  supplier: Device | null;
  /** The property it came from ('clocks', 'power-domains', 'iommus', ...) or 'iommu' for run-time links. */
  kind: string;
  optional: boolean;
  /** Created at probe time (IOMMU DMA ops); removed when the consumer unbinds. */
  runtime: boolean;
}

export interface DriverCoreOptions {
  timer: CoreTimer;
  deferStrategy?: DeferStrategy;
  /** Virtual ns after late_initcall before optional dependencies are given up; < 0 = never. Default 10 s. */
  deferredProbeTimeoutNs?: number;
  /** CONFIG_MODULES: if false, missing optional suppliers are given up as soon as initcalls end. Default true. */
  modules?: boolean;
  /**
   * dmesg-style log sink: the line, and for a device's message its dev_printk prefix
   * ("platform 2cc00000.display") and the message apart.
   */
  log?: (line: string, dev?: { prefix: string; message: string; level: 'debug' | 'info' | 'warn' }) => void;
}

/**
 * How the driver core reaches the IOMMU subsystem (Linux calls these from of_dma_configure /
 * device_release_driver): iommu_probe_device once a device's DMA was configured to go through
 * an IOMMU, and the release when it leaves.
 */
export interface IommuHooks {
  /** 0, or -errno (the probe then fails; -ENODEV: no IOMMU driver claims the device). */
  probeDevice(dev: Device): Promise<number> | number;
  releaseDevice(dev: Device): Promise<void> | void;
}

export const DEFAULT_DEFERRED_PROBE_TIMEOUT_NS = 10_000_000_000;

export class DriverCore {
  readonly timer: CoreTimer;
  readonly deferStrategy: DeferStrategy;
  readonly deferredProbeTimeoutNs: number;
  readonly modules: boolean;
  readonly buses = new Map<string, Bus>();
  readonly drivers: Driver[] = [];
  readonly devices: Device[] = [];
  /** initcalls done (late_initcall ran). */
  initcallsDone = false;
  /** The deferred-probe timeout fired. */
  probeTimedOut = false;
  /** The firmware tree devices came from (for phandle lookups by drivers), if any. */
  tree: DeviceTree | null = null;
  /** Highest RAM address + 1, for the dma-direct vs SWIOTLB decision. */
  ramTop = 0n;
  readonly stats = { probeAttempts: 0, binds: 0, deferrals: 0 };
  /** Virtual time (ns) of the last successful bind, or -1. */
  lastBindNs = -1;
  readonly logLines: string[] = [];

  private readonly logSink: DriverCoreOptions['log'];
  private readonly deviceSet = new Set<Device>();
  private readonly byNode = new Map<DtNode, Device>();
  private readonly linksOf = new Map<Device, DeviceLink[]>();
  private readonly deferred = new Set<Device>();
  /** Drivers whose probe rejected the match (-ENODEV / -ENXIO): the next matching driver is tried. */
  private readonly rejected = new WeakMap<Device, Set<Driver>>();
  private readonly waiters = new Map<object, Set<Device>>();
  private readonly waitKey = new Map<Device, object>();
  private readonly anyWaiters = new Set<Device>();
  private queue: Device[] = [];
  private qHead = 0;
  private readonly queued = new Set<Device>();
  private readonly probing = new Set<Device>();
  private running: Promise<void> | null = null;
  private draining = false;
  private timeoutTimer = 0;
  private readonly iommus = new Map<DtNode, IommuInstance>();
  private readonly providers = new Map<string, Map<DtNode, { provider: unknown; owner: Device | null }>>();

  /** Set by the IOMMU subsystem when it initialises (iommu_init). */
  iommuHooks: IommuHooks | null = null;

  constructor(opts: DriverCoreOptions) {
    this.timer = opts.timer;
    this.deferStrategy = opts.deferStrategy ?? 'targeted';
    this.deferredProbeTimeoutNs = opts.deferredProbeTimeoutNs ?? DEFAULT_DEFERRED_PROBE_TIMEOUT_NS;
    this.modules = opts.modules ?? true;
    this.logSink = opts.log;
  }

  log(line: string, dev?: { prefix: string; message: string; level: 'debug' | 'info' | 'warn' }): void {
    const t = this.timer.now / 1e9;
    const s = `[${t.toFixed(6).padStart(12)}] ${line}`;
    this.logLines.push(s);
    this.logSink?.(s, dev);
  }

  /** dev_info / dev_warn: `<driver or bus> <device>: message`, as Linux prints it. */
  devLog(dev: Device, message: string, level: 'debug' | 'info' | 'warn' = 'info'): void {
    const prefix = devPrefix(dev);
    this.log(`${prefix}: ${message}`, { prefix, message, level });
  }

  // ---- buses and drivers -------------------------------------------------------------------

  registerBus(bus: Bus): void {
    this.buses.set(bus.name, bus);
  }

  /** driver_register(): try every unbound device on the bus that it matches. */
  registerDriver(drv: Driver): Promise<void> {
    this.drivers.push(drv);
    for (const dev of this.devices) {
      if (dev.busName !== drv.bus || dev.state === 'bound' || this.probing.has(dev)) continue;
      // a generic (fallback) driver only takes devices no other driver matches
      if (this.matches(dev, drv) || (drv.fallback?.(dev) === true && this.matchDriver(dev) === drv))
        this.enqueue(dev);
    }
    // Linux re-arms the deferred-probe timeout whenever a driver registers after initcalls.
    if (this.initcallsDone && !this.probeTimedOut && this.timeoutTimer !== 0) this.armTimeout();
    // registered from a timer (a module loaded late): let the probes it starts run before time moves on
    if (this.timer.wokeAsync !== undefined) this.timer.wokeAsync = true;
    return this.kick();
  }

  unregisterDriver(drv: Driver): Promise<void> {
    const i = this.drivers.indexOf(drv);
    if (i < 0) return Promise.resolve();
    this.drivers.splice(i, 1);
    return this.serialize(async () => {
      for (const dev of this.devices) if (dev.driver === drv) await this.doUnbind(dev, false);
      for (const dev of this.devices) if (dev.driver === null && dev.state !== 'removed') this.enqueue(dev);
    });
  }

  /** Is there a registered driver that would match this node (on the platform bus)? */
  hasDriverFor(node: DtNode): boolean {
    const dev = this.byNode.get(node);
    if (dev) return this.matchDriver(dev) !== null;
    return this.drivers.some(
      (d) => d.fallback === undefined && ofMatchIndex(d.ofMatch, node.compatible) >= 0,
    );
  }

  private matches(dev: Device, drv: Driver): boolean {
    if (drv.fallback !== undefined) return false;
    const bus = this.buses.get(dev.busName);
    return bus ? bus.match(dev, drv) : false;
  }

  /** Best match: the driver matching the node's earliest compatible, then registration order. */
  matchDriver(dev: Device): Driver | null {
    let best: Driver | null = null;
    let bestIdx = Number.POSITIVE_INFINITY;
    const compat = dev.ofNode?.compatible;
    const rejected = this.rejected.get(dev);
    for (const drv of this.drivers) {
      if (drv.bus !== dev.busName || !this.matches(dev, drv) || rejected?.has(drv)) continue;
      const idx = compat && drv.ofMatch ? ofMatchIndex(drv.ofMatch, compat) : 0;
      const rank = Math.max(0, idx);
      if (rank < bestIdx) {
        best = drv;
        bestIdx = rank;
      }
    }
    if (best !== null) return best;
    // generic drivers take what nothing else matches
    for (const drv of this.drivers)
      if (drv.bus === dev.busName && drv.fallback?.(dev) === true && !rejected?.has(drv)) return drv;
    return null;
  }

  // ---- devices -------------------------------------------------------------------------------

  /** device_add(): add a device (boot or hot-plug) with its firmware links, and try to probe it. */
  addDevice(dev: Device, links: Array<Omit<DeviceLink, 'consumer' | 'runtime'>> = []): Promise<void> {
    if (this.deviceSet.has(dev)) return this.kick();
    this.devices.push(dev);
    this.deviceSet.add(dev);
    if (dev.ofNode && !this.byNode.has(dev.ofNode)) this.byNode.set(dev.ofNode, dev);
    this.linksOf.set(
      dev,
      links.map((l) => ({ ...l, consumer: dev, runtime: false })),
    );
    this.enqueue(dev);
    return this.kick();
  }

  /** device_del() (hot-unplug): unbinds it (and its consumers, and its child devices) and forgets it. */
  removeDevice(dev: Device): Promise<void> {
    return this.serialize(() => this.doRemove(dev));
  }

  private async doRemove(dev: Device): Promise<void> {
    if (!this.deviceSet.has(dev)) return;
    for (const child of this.devices.filter((d) => d.parent === dev)) await this.doRemove(child);
    await this.doUnbind(dev, true);
    this.clearWait(dev);
    this.deferred.delete(dev);
    this.queued.delete(dev);
    this.deviceSet.delete(dev);
    this.devices.splice(this.devices.indexOf(dev), 1);
    if (dev.ofNode && this.byNode.get(dev.ofNode) === dev) this.byNode.delete(dev.ofNode);
    this.linksOf.delete(dev);
    dev.state = 'removed';
    this.devLog(dev, 'removed');
  }

  deviceForNode(node: DtNode): Device | undefined {
    return this.byNode.get(node);
  }

  /** The device that supplies `node`: the node's own device or its nearest ancestor's (fw_devlink). */
  supplierDeviceFor(node: DtNode): Device | undefined {
    for (let n: DtNode | null = node; n; n = n.parent) {
      const d = this.byNode.get(n);
      if (d) return d;
    }
    return undefined;
  }

  links(dev: Device): readonly DeviceLink[] {
    return this.linksOf.get(dev) ?? [];
  }

  /** device_link_add() at run time (e.g. master → IOMMU once IOMMU DMA ops are set up). */
  addRuntimeLink(consumer: Device, supplier: Device, kind: string): void {
    const l = this.linksOf.get(consumer);
    if (!l || l.some((x) => x.runtime && x.supplier === supplier && x.kind === kind)) return;
    l.push({ consumer, supplier, supplierNode: null, kind, optional: false, runtime: true });
  }

  private linkSupplier(l: DeviceLink): Device | undefined {
    return l.supplier ?? (l.supplierNode ? this.supplierDeviceFor(l.supplierNode) : undefined);
  }

  /** Bound devices that depend on `dev` through a link. */
  consumersOf(dev: Device): Device[] {
    const out: Device[] = [];
    for (const [c, links] of this.linksOf) {
      if (c === dev) continue;
      if (links.some((l) => this.linkSupplier(l) === dev && (l.runtime || !l.optional))) out.push(c);
    }
    return out;
  }

  // ---- bind / unbind -------------------------------------------------------------------------

  /** Probe a device now (the sysfs `bind` file / device_attach). */
  bind(dev: Device): Promise<void> {
    if (this.deviceSet.has(dev) && dev.state !== 'bound') this.enqueue(dev);
    return this.kick();
  }

  /** Unbind a device's driver (the sysfs `unbind` file). Its consumers are unbound first and wait for it. */
  unbind(dev: Device): Promise<void> {
    return this.serialize(() => this.doUnbind(dev, false));
  }

  private async doUnbind(dev: Device, removing: boolean): Promise<void> {
    if (dev.state !== 'bound' || !dev.driver) return;
    for (const c of this.consumersOf(dev)) {
      if (c.state !== 'bound') continue;
      await this.doUnbind(c, false);
      this.defer(
        c,
        new ProbeDefer(`supplier ${dev.name} was ${removing ? 'removed' : 'unbound'}`, dev),
        false,
      );
    }
    const drv = dev.driver;
    this.devLog(dev, `unbinding ${drv.name}`);
    await drv.remove?.(dev, this);
    this.releaseResources(dev);
    dev.driver = null;
    dev.state = 'unbound';
    dev.reason = null;
    dev.driverData = null;
  }

  private releaseResources(dev: Device): void {
    // Providers and IOMMUs a driver forgot to unregister go with it (devres).
    for (const [node, inst] of this.iommus) if (inst.owner === dev) this.iommus.delete(node);
    for (const m of this.providers.values()) for (const [node, p] of m) if (p.owner === dev) m.delete(node);
    this.buses.get(dev.busName)?.dmaDeconfigure?.(dev, this);
    if (dev.dma.ops === 'iommu' && dev.iommu !== null) void this.iommuHooks?.releaseDevice(dev);
    const links = this.linksOf.get(dev);
    if (links)
      this.linksOf.set(
        dev,
        links.filter((l) => !l.runtime),
      );
    dev.iommu = null;
    dev.dma = defaultDmaConfig();
  }

  // ---- providers (clocks, power domains, IOMMUs, ...) ------------------------------------------

  /** of_clk_add_provider() & co: make `node` usable as a `kind` provider, and wake its waiters. */
  registerProvider(kind: string, node: DtNode, provider: unknown, owner: Device | null): void {
    let m = this.providers.get(kind);
    if (!m) this.providers.set(kind, (m = new Map()));
    m.set(node, { provider, owner });
    this.log(`${node.path}: registered ${kind} provider`);
    this.wake(node);
  }

  unregisterProvider(kind: string, node: DtNode): void {
    this.providers.get(kind)?.delete(node);
  }

  getProvider<T>(kind: string, node: DtNode): T | undefined {
    return this.providers.get(kind)?.get(node)?.provider as T | undefined;
  }

  /** iommu_device_register(): returns 0 or -EEXIST. Wakes devices deferred on this IOMMU. */
  registerIommu(node: DtNode, ops: IommuOps, owner: Device | null): number {
    if (this.iommus.has(node)) return -EEXIST;
    this.iommus.set(node, { node, ops, owner });
    this.log(`${node.path}: registered IOMMU (${ops.name})`);
    this.wake(node);
    return 0;
  }

  unregisterIommu(node: DtNode): void {
    this.iommus.delete(node);
  }

  iommuFor(node: DtNode): IommuInstance | undefined {
    return this.iommus.get(node);
  }

  registeredIommus(): IommuInstance[] {
    return [...this.iommus.values()];
  }

  /**
   * driver_deferred_probe_check_state(): what to do about an optional supplier that is not there.
   * 'defer' before initcalls end; -ENODEV after them without modules ("assuming no driver");
   * -ETIMEDOUT once the deferred-probe timeout fired; otherwise 'defer'.
   */
  deferredProbeCheckState(): 'defer' | number {
    if (!this.initcallsDone) return 'defer';
    if (!this.modules) return -ENODEV;
    if (this.probeTimedOut) return -ETIMEDOUT;
    return 'defer';
  }

  // ---- initcalls and the deferred-probe timeout ---------------------------------------------

  /** late_initcall(deferred_probe_initcall): full retry pass, then arm the timeout. */
  lateInitcall(): Promise<void> {
    this.initcallsDone = true;
    this.log(`deferred_probe_initcall: retrying ${this.deferred.size} deferred device(s)`);
    for (const d of this.deferred) this.enqueue(d);
    if (this.deferredProbeTimeoutNs >= 0) this.armTimeout();
    return this.kick();
  }

  private armTimeout(): void {
    if (this.timeoutTimer !== 0) this.timer.cancel(this.timeoutTimer);
    this.timeoutTimer = this.timer.schedule(
      this.deferredProbeTimeoutNs,
      () => {
        this.timeoutTimer = 0;
        this.probeTimedOut = true;
        // deferred_probe_timeout_work_func: retry everything once more, then name what is still
        // pending (only now: a deferral on its own is not worth a line)
        for (const d of this.deferred) this.enqueue(d);
        void this.kick().then(() => {
          for (const d of this.deferred) {
            const drv = this.matchDriver(d);
            const why = d.reason ? `${drv ? `${drv.name}: ` : ''}${d.reason}` : '(reason unknown)';
            this.devLog(d, `deferred probe pending: ${why}`, 'warn');
          }
        });
        if (this.timer.wokeAsync !== undefined) this.timer.wokeAsync = true;
      },
      'deferred-probe-timeout',
    );
  }

  /** The drivers whose probe rejected the match for `dev` (returned -ENODEV or -ENXIO). */
  rejectedDrivers(dev: Device): readonly Driver[] {
    return [...(this.rejected.get(dev) ?? [])];
  }

  /** Devices on the deferred list with their reasons (debugfs devices_deferred). */
  devicesDeferred(): Array<{ device: Device; reason: string }> {
    return [...this.deferred].map((d) => ({ device: d, reason: d.reason ?? '' }));
  }

  /** Resolves when no probe work is queued or running. */
  async settled(): Promise<void> {
    while (this.running || this.qHead < this.queue.length) {
      await (this.running ?? this.kick());
    }
  }

  // ---- the probe machinery -------------------------------------------------------------------

  private enqueue(dev: Device): void {
    if (this.queued.has(dev) || !this.deviceSet.has(dev)) return;
    this.queued.add(dev);
    this.queue.push(dev);
  }

  private kick(): Promise<void> {
    // Called from inside the probe loop (e.g. a probe adding a child device): the running loop
    // picks the work up. Never make such a caller wait for the loop it is part of.
    if (this.draining) return Promise.resolve();
    if (this.running) return this.running.then(() => this.kick());
    if (this.qHead >= this.queue.length) return Promise.resolve();
    const p: Promise<void> = this.drain().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  /** Run `fn` exclusively with respect to probe work, then process what it queued. */
  private serialize(fn: () => Promise<void>): Promise<void> {
    const prev = this.running ?? Promise.resolve();
    const p = prev.then(fn).then(() => this.drain());
    const all: Promise<void> = p.finally(() => {
      if (this.running === all) this.running = null;
    });
    this.running = all;
    return all;
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      await this.drainLoop();
    } finally {
      this.draining = false;
    }
  }

  private async drainLoop(): Promise<void> {
    while (this.qHead < this.queue.length) {
      const dev = this.queue[this.qHead++]!;
      if (this.qHead > 4096 && this.qHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.qHead);
        this.qHead = 0;
      }
      this.queued.delete(dev);
      const p = this.probeStart(dev);
      if (p) await p;
    }
  }

  /** really_probe(). Synchronous unless the driver's probe is async. */
  private probeStart(dev: Device): Promise<void> | undefined {
    if (dev.state === 'bound' || !this.deviceSet.has(dev)) return undefined;
    this.clearWait(dev);
    const drv = this.matchDriver(dev);
    if (!drv) {
      this.deferred.delete(dev);
      dev.state = 'no-driver';
      const rejected = this.rejected.get(dev);
      dev.reason = rejected ? `rejected by ${[...rejected].map((d) => d.name).join(', ')} (-ENODEV)` : null;
      return undefined;
    }
    dev.probeAttempts++;
    this.stats.probeAttempts++;

    const missing = this.checkSuppliers(dev);
    if (missing) {
      this.defer(dev, missing, true);
      return undefined;
    }
    const bus = this.buses.get(dev.busName);
    dev.dma = defaultDmaConfig();
    dev.iommu = null;
    const dr = bus?.dmaConfigure ? bus.dmaConfigure(dev, this) : 0;
    if (dr !== 0) {
      this.releaseResources(dev);
      this.finish(dev, drv, dr);
      return undefined;
    }
    if (dev.dma.ops === 'iommu' && this.iommuHooks !== null) {
      // of_dma_configure -> iommu_probe_device: the device's IOMMU groups and default domain
      const hooks = this.iommuHooks;
      this.probing.add(dev);
      const run = async (): Promise<void> => {
        const ir = await hooks.probeDevice(dev);
        if (ir < 0) {
          this.probing.delete(dev);
          this.releaseResources(dev);
          this.finish(dev, drv, new ProbeError(ir, `iommu_probe_device failed`));
          return;
        }
        await this.callProbe(dev, drv);
      };
      return run();
    }
    return this.callProbe(dev, drv);
  }

  private callProbe(dev: Device, drv: Driver): Promise<void> | undefined {
    dev.driver = drv;
    this.probing.add(dev);
    let r: ProbeResult | Promise<ProbeResult>;
    try {
      r = drv.probe(dev, this);
    } catch (e) {
      r = asProbeResult(e);
    }
    if (r instanceof Promise) {
      return r.then(
        (v) => this.finish(dev, drv, v, true),
        (e) => this.finish(dev, drv, asProbeResult(e), true),
      );
    }
    this.finish(dev, drv, r, true);
    return undefined;
  }

  private finish(dev: Device, drv: Driver, r: ProbeResult, fromDriver = false): void {
    this.probing.delete(dev);
    if (typeof r === 'number' && r >= 0) {
      dev.driver = drv;
      dev.state = 'bound';
      dev.reason = dev.dma.iommuNote;
      dev.error = 0;
      dev.boundNs = this.timer.now;
      this.lastBindNs = this.timer.now;
      this.deferred.delete(dev);
      this.stats.binds++;
      this.devLog(dev, `bound to ${drv.name}`);
      this.onBound(dev);
      return;
    }
    this.releaseResources(dev);
    dev.driver = null;
    if (r instanceof ProbeDefer) {
      this.defer(dev, r, true);
      return;
    }
    const errno = typeof r === 'number' ? r : r.errno;
    const why =
      typeof r === 'number' ? `probe failed: ${errnoName(r)}` : `${r.reason} (${errnoName(r.errno)})`;
    if (fromDriver && (errno === -ENODEV || errno === -ENXIO)) {
      // really_probe: -ENODEV / -ENXIO from the driver's probe mean "not my device": the match is
      // rejected (dev_dbg "probe with driver X rejects match -19") and the next driver is tried
      let set = this.rejected.get(dev);
      if (set === undefined) this.rejected.set(dev, (set = new Set()));
      set.add(drv);
      this.deferred.delete(dev);
      dev.state = 'no-driver';
      dev.reason = `${drv.name} rejected the match: ${why}`;
      this.devLog(dev, `probe with driver ${drv.name} rejects match ${errno}`, 'debug');
      this.enqueue(dev);
      return;
    }
    this.deferred.delete(dev);
    dev.state = 'failed';
    dev.error = errno;
    dev.reason = why;
    // really_probe's dev_err: "probe with driver X failed with error -N"
    this.devLog(dev, `probe with driver ${drv.name} failed with error ${errno}: ${why}`, 'warn');
  }

  /** Mandatory suppliers (clocks, power domains, resets, parent, run-time links) must be bound first. */
  private checkSuppliers(dev: Device): ProbeDefer | null {
    const links = this.linksOf.get(dev);
    if (!links) return null;
    for (const l of links) {
      if (l.optional) continue;
      // After the timeout, firmware links are relaxed ("timeout, ignoring dependency"); the driver's
      // own lookups still decide. Run-time links (IOMMU in use) stay enforced.
      if (this.probeTimedOut && !l.runtime) continue;
      if (l.supplierNode && !l.supplierNode.available) continue; // fw_devlink ignores disabled suppliers
      const sup = this.linkSupplier(l);
      if (sup === dev) continue;
      if (!sup) {
        // No device for that node (not populated). A provider registered early is enough.
        if (l.supplierNode && this.hasAnyProvider(l.supplierNode)) continue;
        if (this.initcallsDone) continue; // relaxed: the driver's own lookup decides
        return new ProbeDefer(
          `waiting for supplier ${l.supplierNode?.path ?? '?'} (${l.kind})`,
          l.supplierNode,
        );
      }
      if (sup.state === 'bound') continue;
      // fw_devlink relaxes links to suppliers that will not bind once initcalls are done; the
      // consumer's own resource lookup (clk_get & co) then decides.
      if (this.initcallsDone && (sup.state === 'no-driver' || sup.state === 'failed')) continue;
      return new ProbeDefer(`waiting for supplier ${sup.name} (${l.kind})`, sup);
    }
    return null;
  }

  private hasAnyProvider(node: DtNode): boolean {
    if (this.iommus.has(node)) return true;
    for (const m of this.providers.values()) if (m.has(node)) return true;
    return false;
  }

  private defer(dev: Device, d: ProbeDefer, _fromProbe: boolean): void {
    dev.state = 'deferred' satisfies DeviceState;
    dev.reason = d.reason;
    this.deferred.add(dev);
    this.stats.deferrals++;
    this.clearWait(dev);
    if (d.waitFor) {
      let s = this.waiters.get(d.waitFor);
      if (!s) this.waiters.set(d.waitFor, (s = new Set()));
      s.add(dev);
      this.waitKey.set(dev, d.waitFor);
    } else {
      this.anyWaiters.add(dev);
    }
  }

  private clearWait(dev: Device): void {
    const k = this.waitKey.get(dev);
    if (k !== undefined) {
      this.waiters.get(k)?.delete(dev);
      this.waitKey.delete(dev);
    }
    this.anyWaiters.delete(dev);
  }

  /** A supplier became available: retry devices that wait for it. */
  private wake(key: object): void {
    if (this.deferStrategy === 'retry-all') return; // retried on the next bind anyway
    const s = this.waiters.get(key);
    if (!s || s.size === 0) return;
    for (const d of s) this.enqueue(d);
    s.clear();
    void this.kick();
  }

  private onBound(dev: Device): void {
    if (this.deferStrategy === 'retry-all') {
      // driver_deferred_probe_trigger(): everything deferred goes round again.
      for (const d of this.deferred) this.enqueue(d);
      return;
    }
    this.wake(dev);
    if (dev.ofNode) this.wake(dev.ofNode);
    for (const d of this.anyWaiters) this.enqueue(d);
  }
}

function asProbeResult(e: unknown): ProbeResult {
  if (e instanceof ProbeDefer || e instanceof ProbeError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ProbeError(-EIO, `probe threw: ${msg}`);
}
