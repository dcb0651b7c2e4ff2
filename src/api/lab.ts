/**
 * The Lab: one simulated machine with its hardware and a booted kernel model, and the handles a
 * scenario uses to act as a driver would (DMA API, IOMMU API, fault handlers), make devices do
 * DMA, break the kernel model on purpose, and look at what the hardware did.
 *
 * Kernel code waits for hardware in virtual time, so kernel calls that may sleep run as kernel
 * tasks while the scheduler moves time. Inside a scenario's `run` (or `lab.run`) that is already
 * so; called from plain top-level code, an API call that returns a promise drives virtual time
 * itself until its promise settles. Either way, awaiting works as a driver author expects.
 */

import { readFile } from 'node:fs/promises';
import { type AdrenoBoardOptions, adrenoDts } from '../hw/boards/adreno.ts';
import type { SmmuV3Options } from '../hw/smmuv3/regs-idr.ts';
import type { Device } from '../kernel/base/device.ts';
import { Kernel } from '../kernel/init/kernel.ts';
import type { ArmSmmuInstance } from '../kernel/iommu/arm-smmu-v3/driver.ts';
import { DEFAULT_PLATFORM_DTS } from '../kernel/of/default-platform.ts';
import { DtsError, parseDts, parseDtsAsync } from '../kernel/of/dts.ts';
import { FDT_MAGIC, FdtError, parseFdt } from '../kernel/of/fdt.ts';
import { type IommuFallbackPolicy, LINUX_IOMMU_POLICY } from '../kernel/of/of-iommu.ts';
import type { DeviceTree } from '../kernel/of/tree.ts';
import type { BugReport } from '../platform/bugs.ts';
import type { Workqueue } from '../platform/exec.ts';
import type { Machine } from '../platform/machine.ts';
import { type DmaViolation, SANITIZE_MODES, type SanitizeMode } from '../platform/sanitizer.ts';
import { formatDmesg, type TraceEvent, type TraceSink } from '../platform/trace.ts';
import { type AdrenoHandle, adrenoHandle, type SmmuV2View, smmuV2View } from './adreno.ts';
import {
  type Board,
  buildBoard,
  type MasterSpec,
  type PciFunctionSpec,
  type PciRequest,
  type VirtDeviceOptions,
} from './board.ts';
import { runDmaChecks } from './board-boot.ts';
import { checkBoard, type Finding } from './board-check.ts';
import { type BootReport, buildBootReport } from './boot-report.ts';
import { LabError } from './errors.ts';
import { type InjectionName, Injector } from './inject.ts';
import { type DmaApi, type FaultApi, IommuApi } from './kernel.ts';
import { DmaMaster, type MasterHandle, PciFunction } from './master.ts';
import { SmmuView } from './observe.ts';

/** Where the board comes from. */
export type BoardSource =
  /** The embedded virt board: an SMMUv3, a GPU, a PCIe test device with ATS/PRI/PASID, DMA engines. */
  | 'virt'
  /**
   * The embedded adreno board (SDM845-like): an Adreno-style GPU on its own stall-capable
   * qcom,smmu-v2 SMMU, and display and video blocks sharing an MMU-500 "apps" SMMU.
   */
  | 'adreno'
  /** Device-tree source text (`/include/` is resolved relative to `fileName`'s folder). */
  | { dts: string; fileName?: string }
  /** A compiled device tree (the bytes of a .dtb). */
  | { dtb: Uint8Array }
  /** A .dts or .dtb file (by extension, or by the FDT magic number). */
  | { file: string };

/** How the kernel model is configured, as on its command line. */
export interface KernelSettings {
  /** iommu.strict: true (default) invalidates on every unmap; false uses flush queues (lazy). */
  strict?: boolean;
  /** iommu.passthrough: identity default domains. Default false. */
  passthrough?: boolean;
  /**
   * When a declared IOMMU never registers: "linux" (defer, then DMA without it; default),
   * "strict" (defer, then fail the master), "bypass" (do not wait).
   */
  iommuPolicy?: 'linux' | 'strict' | 'bypass';
  /** deferred_probe_timeout in virtual ns (default 10 s; -1 never). */
  deferredProbeTimeoutNs?: number;
  /** SWIOTLB pool bytes (default 4 MiB; 0 none). */
  swiotlbBytes?: number;
  /** swiotlb=force. */
  swiotlbForce?: boolean;
  /** CONFIG_DMA_API_DEBUG (default on). */
  dmaDebug?: boolean;
  /** init_on_free=1: freed pages are zeroed when freed. Default false. */
  initOnFree?: boolean;
  /**
   * How the arm-smmu (SMMUv1/v2) driver resumes a stalled transaction: "handler" — its context
   * fault handler retries on -EAGAIN and terminates otherwise (Linux v6.16+, default); "driver"
   * — it leaves the transaction stalled for the client driver's resume_translation (v5.14..v6.15).
   */
  armSmmuStallResume?: 'handler' | 'driver';
  /** arm-smmu.disable_bypass: unmatched streams fault (default true) or bypass. */
  armSmmuDisableBypass?: boolean;
}

/** Everything `boot` needs; every field has a default. */
export interface LabOptions {
  /** Seed of the run: same seed, same run, byte for byte. Default 1. */
  seed?: number;
  /** The board. Default "virt". */
  board?: BoardSource;
  /**
   * Implementation choices of every SMMUv3 model (stall model, PRI, ATS, HTTU, queue sizes, TLB
   * geometry, latencies, ...): see SmmuV3Options.
   */
  smmu?: SmmuV3Options;
  /** Options of the virt board's own GPU and PCIe test device. */
  virt?: VirtDeviceOptions;
  /** Options of the adreno board's GPU (warps, latencies). */
  adreno?: AdrenoBoardOptions;
  /** Generic DMA masters to add to the board. */
  masters?: MasterSpec[];
  /** PCIe functions to add behind a host bridge. */
  pciFunctions?: PciFunctionSpec[];
  /** Kernel command-line settings. */
  kernel?: KernelSettings;
  /** Faults to inject into the kernel model from boot on (see Injector; `lab.inject` turns them on later). */
  inject?: InjectionName[];
  /** Keep trace events in memory for `lab.events` (default true; false for speed). */
  trace?: boolean;
  /** More receivers of every trace event, from before boot on (a log file, a live console). */
  traceSinks?: TraceSink[];
  /** A virtual-time budget for `lab.run` and driven calls, ns (default 60 s of virtual time). */
  virtualTimeLimitNs?: number;
  /**
   * The DMA-isolation sanitizer (KASAN for device DMA): 'off' (default), 'report' (collect
   * reports in `lab.sanitizer.reports`), or 'panic' (stop the run at the first: the running
   * call throws a SanitizerPanic).
   */
  sanitize?: SanitizeMode;
  /**
   * A real board's own DMA masters (every node the tree puts behind a modelled IOMMU, and PCI
   * functions behind host bridges) get hardware models, the generic client drivers bind what no
   * modelled driver claims, and each master bound through an IOMMU does the proof DMA
   * (`lab.bootReport()` shows the outcomes; its access after unmap is a fault the IOMMU reports,
   * so the log holds one fault per such master). Default true for boards given as dts, dtb or
   * file; false for the built-in boards.
   */
  treeMasters?: boolean;
  /** PCI functions to put behind host bridges (instead of one per iommu-map entry). */
  pci?: PciRequest[];
}

/** A kernel task started with `lab.spawn`. */
export interface TaskHandle<T> {
  readonly name: string;
  /** Settles with the task's result, or rejects with what it threw (for code outside tasks). */
  readonly done: Promise<T>;
  /** The task has returned or thrown. */
  readonly finished: boolean;
  /** From another task: wait for this one (like kthread_stop's wait), its result or its error. */
  wait(): Promise<T>;
}

/** What `lab.sanitizer` shows of the DMA-isolation sanitizer. */
export interface SanitizerView {
  /** 'report' or 'panic'. */
  readonly mode: 'report' | 'panic';
  /** The reports so far, in order (one per distinct violation; `count` says how often it happened). */
  readonly reports: readonly DmaViolation[];
  /** Every report as text, as printed at the end of a run. */
  format(): string;
}

/** Thrown by the running lab call when the sanitizer, in panic mode, reports a violation. */
export class SanitizerPanic extends LabError {
  /** The report that stopped the run. */
  readonly report: DmaViolation;
  constructor(report: DmaViolation) {
    super(`DMA sanitizer panic:\n${report.text}`);
    this.report = report;
  }
}

const DEFAULT_VTIME_LIMIT = 60e9;
/** Virtual time is a double of ns: past 2^53 it loses nanoseconds. */
export const MAX_VIRTUAL_TIME_NS = 2 ** 53;

const utf8 = new TextDecoder('utf-8');

async function loadTree(src: BoardSource, adreno?: AdrenoBoardOptions): Promise<DeviceTree> {
  try {
    if (src === 'virt') return parseDts(DEFAULT_PLATFORM_DTS, { fileName: '<virt board>' });
    if (src === 'adreno') {
      const soc = adreno?.gpuSmmu;
      if (soc !== undefined && soc !== 'sdm845' && soc !== 'msm8996')
        throw new LabError(`adreno.gpuSmmu must be "sdm845" or "msm8996" (got ${JSON.stringify(soc)})`);
      return parseDts(adrenoDts(adreno), { fileName: '<adreno board>' });
    }
    if (typeof src !== 'object' || src === null) {
      throw new LabError(
        `board must be "virt", "adreno", { dts }, { dtb } or { file } (got ${JSON.stringify(src)})`,
      );
    }
    if ('dts' in src) {
      if (typeof src.dts !== 'string') throw new LabError('board.dts must be device-tree source text');
      if (src.fileName === undefined) return parseDts(src.dts, { fileName: '<dts>' });
      return await parseDtsAsync(src.dts, {
        fileName: src.fileName,
        readFile: async (p) => utf8.decode(await readFile(p)),
      });
    }
    if ('dtb' in src) {
      if (!(src.dtb instanceof Uint8Array)) throw new LabError('board.dtb must be a Uint8Array');
      return parseFdt(src.dtb);
    }
    if ('file' in src) {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await readFile(src.file));
      } catch (e) {
        throw new LabError(`cannot read ${src.file}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const magic =
        bytes.length >= 4 ? ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0 : 0;
      if (!/\.dtsi?$/i.test(src.file) && (magic === FDT_MAGIC || /\.dtbo?$/i.test(src.file)))
        return parseFdt(bytes);
      return await parseDtsAsync(utf8.decode(bytes), {
        fileName: src.file,
        readFile: async (p) => utf8.decode(await readFile(p)),
      });
    }
  } catch (e) {
    if (e instanceof FdtError || e instanceof DtsError) {
      const where = typeof src === 'object' && 'file' in src ? `${src.file}: ` : '';
      throw new LabError(`bad device tree: ${where}${e.message}`);
    }
    throw e;
  }
  throw new LabError(
    `board must be "virt", "adreno", { dts }, { dtb } or { file } (got ${JSON.stringify(src)})`,
  );
}

function policyOf(p: KernelSettings['iommuPolicy']): IommuFallbackPolicy {
  const policy: IommuFallbackPolicy = { ...LINUX_IOMMU_POLICY };
  if (p === undefined || p === 'linux') return policy;
  if (p !== 'strict' && p !== 'bypass')
    throw new LabError(`kernel.iommuPolicy must be linux, strict or bypass (got ${String(p)})`);
  policy.noDriver = p;
  policy.probeFailed = p;
  return policy;
}

function armSmmuOptions(ks: KernelSettings): { resumeStyle?: 'handler' | 'driver'; disableBypass?: boolean } {
  const r = ks.armSmmuStallResume;
  if (r !== undefined && r !== 'handler' && r !== 'driver')
    throw new LabError(`kernel.armSmmuStallResume must be handler or driver (got ${String(r)})`);
  const b = ks.armSmmuDisableBypass;
  if (b !== undefined && typeof b !== 'boolean')
    throw new LabError(`kernel.armSmmuDisableBypass must be a boolean (got ${String(b)})`);
  return { resumeStyle: r, disableBypass: b };
}

/**
 * Boot a lab: build the board (with the options' masters), boot the kernel model on it, and run
 * virtual time until probing is over. Throws a LabError for options that cannot be honoured.
 */
export async function boot(opts: LabOptions = {}): Promise<Lab> {
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new LabError(`seed must be an integer in 0..4294967295 (got ${String(seed)})`);
  }
  const tree = await loadTree(opts.board ?? 'virt', opts.adreno);
  const ks = opts.kernel ?? {};
  // a board of the user's (dts, dtb, file), not one of the built-in boards with their own devices
  const real = opts.treeMasters ?? (typeof opts.board === 'object' && opts.board !== null);
  const board = buildBoard(tree, {
    seed,
    smmu: opts.smmu,
    masters: opts.masters,
    pciFunctions: opts.pciFunctions,
    initOnFree: ks.initOnFree,
    virt: opts.virt,
    treeMasters: real ? { pci: opts.pci } : false,
    adreno: opts.adreno,
  });
  const events: TraceEvent[] = [];
  const m = board.machine;
  const mode = opts.sanitize ?? 'off';
  if (!SANITIZE_MODES.includes(mode))
    throw new LabError(`sanitize must be one of ${SANITIZE_MODES.join(', ')} (got ${JSON.stringify(mode)})`);
  // before the kernel allocates anything, so that every page's allocation site is known
  m.enableSanitizer(mode);
  if (opts.trace !== false) m.trace.addSink({ write: (e) => events.push(e) });
  for (const sink of opts.traceSinks ?? []) m.trace.addSink(sink);
  const k = new Kernel({
    machine: m,
    tree,
    iommu: { strict: ks.strict ?? true, passthrough: ks.passthrough ?? false },
    dma: { swiotlbBytes: ks.swiotlbBytes, swiotlbForce: ks.swiotlbForce, debug: ks.dmaDebug },
    policy: policyOf(ks.iommuPolicy),
    deferredProbeTimeoutNs: ks.deferredProbeTimeoutNs,
    smmu: { smmuOptions: { inject: Injector.bootFlags(opts.inject ?? []) } },
    clientDrivers: real,
    armSmmu: armSmmuOptions(ks),
  });
  const lab = new Lab(board, k, events, opts);
  lab.inject.preset(opts.inject ?? []);
  await k.boot();
  lab.resolveMasters();
  if (real) await runDmaChecks(k, board, lab.dmaChecks);
  return lab;
}

/**
 * A booted lab: the machine, its hardware and the kernel model, and the handles a scenario uses.
 * Make one with `boot()`.
 */
export class Lab {
  /** The seed the lab was booted with. */
  readonly seed: number;
  /** The DMA API (dma_map_single & co.), as a device driver calls it. */
  readonly dma: DmaApi;
  /** The IOMMU API (domains, attach, map/unmap, PASIDs), as a driver or iommufd calls it. */
  readonly iommu: IommuApi;
  /** Fault reporting: per-device handlers, I/O page faults, page responses. */
  readonly faults: FaultApi;
  /** Fault injection into the kernel model's behaviour, by name. */
  readonly inject: Injector;
  /** The machine underneath (physical memory, MMIO bus, scheduler): for advanced use. */
  readonly machine: Machine;
  /** The kernel model underneath: for advanced use; its shape may change between versions. */
  readonly kernel: Kernel;
  /** The board underneath: hardware models by name; for advanced use. */
  readonly board: Board;
  private readonly masterHandles = new Map<string, MasterHandle>();
  /** @internal the proof DMA's outcome per device (LabOptions.treeMasters). */
  readonly dmaChecks = new Map<Device, string>();
  private driving = false;
  private readonly limitNs: number;
  private readonly eventLog: TraceEvent[];

  /** @internal use boot(). */
  constructor(board: Board, kernel: Kernel, events: TraceEvent[], opts: LabOptions) {
    this.board = board;
    this.machine = board.machine;
    this.kernel = kernel;
    this.seed = board.machine.seed;
    this.eventLog = events;
    this.limitNs = Math.min(opts.virtualTimeLimitNs ?? DEFAULT_VTIME_LIMIT, MAX_VIRTUAL_TIME_NS);
    this.dma = driven(this, kernel.dma) as unknown as DmaApi;
    this.iommu = driven(this, new IommuApi(kernel)) as IommuApi;
    this.faults = driven(this, kernel.faults) as unknown as FaultApi;
    this.inject = new Injector(this);
  }

  /**
   * The DMA-isolation sanitizer's reports (LabOptions.sanitize), or null when it is off.
   * Each report reads like KASAN's (`text`) and has its fields typed (DmaViolation).
   */
  get sanitizer(): SanitizerView | null {
    const s = this.machine.sanitizer;
    if (s === null) return null;
    return {
      mode: s.mode,
      reports: s.reports,
      format: () => s.format(),
    };
  }

  /** @internal bind the masters' hardware to the devices the kernel created for them. */
  resolveMasters(): void {
    for (const hw of this.board.masters) {
      const dev = this.kernel.core.devices.find((d) => d.ofNode === hw.node) ?? null;
      const h = hw.kind === 'platform' ? new DmaMaster(this, hw, dev) : new PciFunction(this, hw, dev);
      // sanitizer reports name devices as the kernel does ("0000:00:01.0")
      const san = this.machine.sanitizer;
      if (san !== null && dev !== null) {
        if (hw.kind === 'pci') san.alias(hw.endpoint.name, dev.name);
        else for (const p of hw.ports) san.alias(p.name, dev.name);
      }
      this.masterHandles.set(h.name, h);
    }
    const v = this.board.virt;
    if (v !== null) {
      const node = '/soc/pcie@40000000/pcie-testdev@1,0';
      const dev = this.kernel.device(node) ?? null;
      if (dev !== null) this.machine.sanitizer?.alias(v.pcieTestdev.name, dev.name);
      const h = new PciFunction(
        this,
        {
          kind: 'pci',
          spec: { bdf: '00:01.0', name: 'pcie-testdev' },
          node: dev?.ofNode ?? this.board.tree.findByPath(node)!,
          rid: v.pcieTestdev.rid,
          endpoint: v.pcieTestdev,
          smmu: v.smmu,
        },
        dev,
      );
      this.masterHandles.set(h.name, h);
    }
  }

  /**
   * What booted, per IOMMU and per device: state, deferral reason, IOMMU, StreamIDs, group,
   * domain type, DMA ops, probe attempts, bind time and the proof DMA's outcome — the report
   * `iommu-lab boot` prints.
   */
  bootReport(): BootReport {
    const k = this.kernel;
    return buildBootReport({
      core: k.core,
      tree: k.tree,
      table: k.iommuTable,
      source: 'lab',
      policy: k.opts.policy ?? null,
      groupOf: (d) => k.iommu.groupOf(d),
      dmaChecks: this.dmaChecks,
    });
  }

  /**
   * Audit the board's DMA isolation as `iommu-lab boot --check` does: findings with a severity
   * and a location (file:line:column for DTS input, node and property always).
   */
  check(): Finding[] {
    return checkBoard(this.bootReport(), this.kernel.tree, this.kernel.core);
  }

  // ------------------------------------------------------------------ time and tasks

  /** Current virtual time, ns. */
  get now(): number {
    return this.machine.sched.now;
  }

  /**
   * Run `fn` as a kernel task in process context while virtual time runs, and resolve with what
   * it returned (or reject with what it threw). Called from inside a task, it starts another task
   * and resolves when that one finishes. Throws a LabError when the task can never finish (it
   * waits for something that nothing left in the machine will do) or the virtual-time budget is
   * spent.
   */
  async run<T>(fn: () => Promise<T> | T, name = 'scenario'): Promise<T> {
    const t = this.spawn(name, fn);
    if (this.driving) return t.wait();
    await this.driveUntil(() => t.finished, `task "${name}"`);
    return t.done;
  }

  /** Start a kernel task (process context) now; it runs as virtual time moves. */
  spawn<T>(name: string, fn: () => Promise<T> | T): TaskHandle<T> {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {}); // a caller that never awaits must not crash the process
    type Outcome = { ok: true; value: T } | { ok: false; error: unknown };
    let outcome: Outcome | null = null;
    const waiters: Array<(o: Outcome) => void> = [];
    const exec = this.machine.exec;
    const h: TaskHandle<T> = {
      name,
      done,
      get finished() {
        return outcome !== null;
      },
      // another task waits as for any completion: it goes on in its own context
      wait: async () => {
        const o: Outcome = outcome ?? (await exec.park<Outcome>((wake) => waiters.push(wake)));
        if (!o.ok) throw o.error;
        return o.value;
      },
    };
    exec.spawn(name, async () => {
      try {
        outcome = { ok: true, value: await fn() };
        resolve(outcome.value);
      } catch (e) {
        outcome = { ok: false, error: e };
        reject(e);
      }
      for (const w of waiters.splice(0)) w(outcome);
    });
    return h;
  }

  /** msleep in virtual time (from a task). */
  sleep(ns: number): Promise<void> {
    checkNs(ns, 'sleep');
    if (!this.driving) return this.run(() => this.machine.exec.sleep(ns, 'lab.sleep'), 'sleep');
    return this.machine.exec.sleep(ns, 'lab.sleep');
  }

  /** Let `ns` of virtual time pass, running whatever is due (outside tasks: from top-level code). */
  async advance(ns: number): Promise<void> {
    checkNs(ns, 'advance');
    if (this.driving) return this.sleep(ns);
    const end = this.now + ns;
    this.driving = true;
    try {
      const san = this.machine.sanitizer;
      await this.machine.sched.runUntil(() => san !== null && san.panicked !== null, end - this.now);
      this.checkPanic();
    } finally {
      this.driving = false;
    }
  }

  /**
   * Let virtual time run until `cond()` holds (checked every `stepNs`, default 1 µs) or
   * `timeoutNs` passed (default 1 s); resolves whether it held. For things that happen a little
   * later, such as the event thread logging a fault.
   */
  async waitFor(cond: () => boolean, opts: { timeoutNs?: number; stepNs?: number } = {}): Promise<boolean> {
    const timeout = opts.timeoutNs ?? 1e9;
    const step = opts.stepNs ?? 1000;
    checkNs(timeout, 'waitFor timeout');
    if (!(step > 0)) throw new LabError('waitFor: stepNs must be > 0');
    const poll = async () => {
      const end = this.now + timeout;
      while (!cond()) {
        if (this.now >= end) return false;
        await this.machine.exec.sleep(Math.min(step, end - this.now), 'lab.waitFor');
      }
      return true;
    };
    return this.driving ? poll() : this.run(poll, 'waitFor');
  }

  /** A workqueue (alloc_workqueue): where a fault handler defers work that may sleep. */
  workqueue(name: string, opts: { ordered?: boolean } = {}): Workqueue {
    return this.machine.exec.createWorkqueue(name, opts);
  }

  /**
   * @internal Run the scheduler until `done()` holds. Throws a LabError when nothing is left to
   * run or the virtual-time budget is spent first.
   */
  async driveUntil(done: () => boolean, what: string): Promise<void> {
    if (this.driving)
      throw new LabError(`${what}: already running virtual time (await it inside the task instead)`);
    this.driving = true;
    try {
      const sched = this.machine.sched;
      const budget = this.limitNs - this.now;
      // stop as soon as nothing is left to run: a task waiting for nothing would otherwise sit
      // there until the budget is spent
      let blocked = false;
      if (budget > 0) {
        const san = this.machine.sanitizer;
        await sched.runUntil(() => {
          if (done()) return true;
          if (san !== null && san.panicked !== null) return true;
          blocked = sched.pending === 0;
          return blocked;
        }, budget);
      }
      this.checkPanic();
      if (done()) return;
      if (blocked) {
        throw new LabError(
          `${what} never finishes: it waits for something that nothing left in the machine will do (virtual time ${this.now} ns)`,
        );
      }
      throw new LabError(`${what} did not finish within the virtual-time limit of ${this.limitNs} ns`);
    } finally {
      this.driving = false;
    }
  }

  /** Throw the sanitizer's panic (panic mode, after its first report). */
  private checkPanic(): void {
    const p = this.machine.sanitizer?.panicked;
    if (p !== undefined && p !== null) throw new SanitizerPanic(p);
  }

  /** @internal Run virtual time until `p` settles (for calls made while nobody runs it). */
  async settle<T>(p: Promise<T>, what: string): Promise<T> {
    let settled = false;
    p.then(
      () => (settled = true),
      () => (settled = true),
    );
    await this.driveUntil(() => settled, what);
    return p;
  }

  /** @internal whether the scheduler is already being run (inside a task or a driven call). */
  get isDriving(): boolean {
    return this.driving;
  }

  // ------------------------------------------------------------------ devices

  /** The kernel's device for a device-tree path ("/soc/gpu@a000000") or a Linux name ("0000:00:01.0"). */
  device(pathOrName: string): Device {
    const d = this.kernel.device(pathOrName);
    if (d === undefined) {
      const h = this.masterHandles.get(pathOrName);
      if (h?.device) return h.device;
      throw new LabError(
        `no device ${JSON.stringify(pathOrName)} (devices: ${this.devices()
          .map((x) => x.name)
          .join(', ')})`,
      );
    }
    return d;
  }

  /** Every device the kernel created, with its state. */
  devices(): Array<{
    name: string;
    path: string | null;
    state: string;
    driver: string | null;
    dmaOps: string;
  }> {
    return this.kernel.core.devices.map((d) => ({
      name: d.name,
      path: d.ofNode?.path ?? null,
      state: d.state,
      driver: d.driver?.name ?? null,
      dmaOps: d.dma.ops,
    }));
  }

  /** A generic DMA master added with `masters`, by name. */
  master(name: string): DmaMaster {
    const h = this.masterHandles.get(name);
    if (h instanceof DmaMaster) return h;
    throw new LabError(
      `no DMA master ${JSON.stringify(name)}${h ? ' (it is a PCI function: use lab.pci())' : ''} (masters: ${
        [...this.masterHandles.values()]
          .filter((x) => x instanceof DmaMaster)
          .map((x) => x.name)
          .join(', ') || 'none'
      })`,
    );
  }

  /** A PCIe function (added with `pciFunctions`, or the virt board's "pcie-testdev"), by name or BDF. */
  pci(nameOrBdf: string): PciFunction {
    for (const h of this.masterHandles.values()) {
      if (
        h instanceof PciFunction &&
        (h.name === nameOrBdf || h.bdf === nameOrBdf || h.device?.name === nameOrBdf)
      )
        return h;
    }
    throw new LabError(
      `no PCI function ${JSON.stringify(nameOrBdf)} (functions: ${
        [...this.masterHandles.values()]
          .filter((x) => x instanceof PciFunction)
          .map((x) => x.name)
          .join(', ') || 'none'
      })`,
    );
  }

  // ------------------------------------------------------------------ memory (the CPU's view)

  /** Allocate 2^order physical pages from the kernel's page allocator (zeroed); returns the PA. */
  allocPages(order = 0, owner = 'scenario'): number {
    if (!Number.isInteger(order) || order < 0 || order > 10)
      throw new LabError(`allocPages: order must be 0..10 (got ${order})`);
    const pa = this.machine.pages.alloc(order, owner);
    if (pa < 0) throw new LabError(`allocPages: out of memory for order ${order}`);
    this.machine.mem.fill(pa, 4096 << order, 0);
    return pa;
  }

  /** Free pages from allocPages (a bad free is reported as a bug, as Linux would). */
  freePages(pa: number): void {
    this.machine.pages.freePages(pa);
  }

  /** Read `len` bytes of physical memory, as the CPU sees it. */
  read(pa: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    this.machine.mem.readBytes(pa, b);
    return b;
  }

  /** Write bytes to physical memory, as the CPU would. */
  write(pa: number, data: Uint8Array): void {
    this.machine.mem.writeBytes(pa, data);
  }

  // ------------------------------------------------------------------ observation

  /** The SMMUv3 at a device-tree path (default: the first), decoded from its registers, memory and caches. */
  smmu(path?: string): SmmuView {
    const s = path === undefined ? this.board.smmus[0] : this.board.smmus.find((x) => x.node.path === path);
    if (s === undefined) {
      throw new LabError(
        `no SMMUv3${path ? ` at ${path}` : ''} (SMMUs: ${this.board.smmus.map((x) => x.node.path).join(', ') || 'none'})`,
      );
    }
    return new SmmuView(this, s.node, s.hw);
  }

  /**
   * The SMMUv1/v2-family SMMU (arm-smmu driver: MMU-400/401/500, Qualcomm, NVIDIA) at a
   * device-tree path (default: the first): the driver's counters and the registers.
   */
  smmuV2(path?: string): SmmuV2View {
    try {
      return smmuV2View(this, path);
    } catch (e) {
      throw e instanceof LabError ? e : new LabError(String(e));
    }
  }

  /** The adreno board's GPU, as its msm-like driver sees it. Throws a LabError on other boards. */
  adreno(): AdrenoHandle {
    const h = adrenoHandle(this);
    if (h === null) throw new LabError('adreno(): the board has no Adreno GPU (boot with board: "adreno")');
    return h;
  }

  /** @internal the SMMUv3 driver's instances. */
  smmuDriverInstances(): ArmSmmuInstance[] {
    return this.kernel.smmuDriver.instances;
  }

  /** Trace events so far (info and above unless `debug`), oldest first. */
  events(opts: { debug?: boolean; component?: string; name?: string } = {}): TraceEvent[] {
    return this.eventLog.filter(
      (e) =>
        (opts.debug || e.level !== 'debug') &&
        (opts.component === undefined || e.component === opts.component) &&
        (opts.name === undefined || e.name === opts.name),
    );
  }

  /** The kernel's log so far as dmesg lines ("[    0.000123] component: message"). */
  dmesg(): string[] {
    return this.events().map(formatDmesg);
  }

  /** Receive every trace event from now on; returns a function that stops it. */
  onTrace(fn: (e: TraceEvent) => void): () => void {
    const sink: TraceSink = { write: fn };
    this.machine.trace.addSink(sink);
    return () => this.machine.trace.removeSink(sink);
  }

  /** Bugs the machine caught so far (might-sleep splats, bad frees, DMA-API debug reports, crashes). */
  get bugs(): readonly BugReport[] {
    return this.machine.bugs;
  }

  /** Counters of the SMMUs and the masters. */
  stats(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const s of this.board.smmus) out[s.node.path] = s.hw.stats();
    for (const h of this.masterHandles.values()) out[h.name] = h.stats();
    return out;
  }
}

function checkNs(ns: number, what: string): void {
  if (typeof ns !== 'number' || !(ns >= 0) || !Number.isFinite(ns) || ns > MAX_VIRTUAL_TIME_NS) {
    throw new LabError(`${what}: ns must be a number in 0..2^53 (got ${String(ns)})`);
  }
}

/**
 * Wrap a kernel object so that a method returning a promise, called while nobody runs virtual
 * time, runs as a kernel task and drives the scheduler until it settles.
 */
function driven<T extends object>(lab: Lab, target: T): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const r = (v as (...a: unknown[]) => unknown).apply(obj, args);
        if (!(r instanceof Promise) || lab.isDriving) return r;
        return lab.settle(r, String(prop));
      };
    },
  });
}
