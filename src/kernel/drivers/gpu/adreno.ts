/**
 * An msm-like driver for the adreno board's GPU (`qcom,adreno`): drm/msm's IOMMU and fault
 * handling around the iommu-lab GPU register interface (ring, FENCE, FAULT_* registers).
 *
 * Probe (msm_iommu_gpu_new): its own paging domain attached to the GPU (qcom's def_domain_type
 * gave it an identity default domain), the command ring mapped at a GPU virtual address,
 * set_stall(true) through the adreno_smmu_priv the SMMU driver filled in, and the domain's
 * fault handler (iommu_set_fault_handler -> msm_fault_handler -> adreno_fault_handler).
 *
 * The fault flow follows the SMMU driver's interface, as the two always ship together:
 *  - v5.14..v6.15 (the SMMU driver offers resume_translation): the handler runs in hard-IRQ
 *    context; the first fault (no crash state yet) saves the fault info and queues the fault
 *    worker, leaving the transaction stalled; the worker captures the crash state — GPU
 *    registers and the ring around the current slot — while the GPU is still stalled, then
 *    resumes with terminate. Later faults are terminated at once.
 *  - v6.16+ (no resume_translation): the handler runs in the SMMU's IRQ thread; it switches
 *    stall off (set_stall(false)) until 500 ms later, captures the crash state synchronously
 *    when the fault stalled and there is none yet, and returns 0, so the SMMU driver writes
 *    RESUME = terminate. adreno_check_and_reenable_stall at the next submit turns stall back
 *    on once the 500 ms have passed and the crash state has been read.
 * Every fault is counted; the "*** gpu fault" line is rate-limited (pr_warn_ratelimited).
 *
 * Address spaces (split page tables, when the SMMU gave the GPU's domain the TTBR1 quirk): the
 * GPU domain is the kernel's global address space in the TTBR1 half. The GPU uses 49-bit
 * addresses; those with bit 48 set are the kernel's (from ADRENO_KERNEL_VA_START), which the
 * kernel maps at their sign-extended IOVAs (msm_iommu_map: "The arm-smmu driver expects the
 * addresses to be sign extended"), negative Numbers here. Each process gets its own TTBR0
 * table (msm_iommu_pagetable_create: the TTBR1 cfg without the quirk, ARM_64_LPAE_S1), mapped
 * at GPU addresses below 2^48. A job runs with its process's table in TTBR0: a6xx_set_pagetable
 * switches it from the ring with CP_SMMU_TABLE_UPDATE (the CP writes TTBR0 and invalidates the
 * TLB); the model's GPU has no such command, so the driver switches between jobs from the CPU,
 * with the GPU idle: set_ttbr0_cfg(NULL), set_ttbr0_cfg(new), then a TLBIASID of the context
 * (every process table shares the context's ASID, as in msm). Unmapping from a process table
 * flushes the context too (msm_iommu_pagetable_unmap -> iommu_flush_iotlb_all of the parent).
 * Without split tables (msm8996) set_ttbr0_cfg is -EINVAL and there is one global table.
 */

import { GPU_ID_VALUE, GPU_STATUS_BUSY, type GpuCommand, GpuReg } from '../../../arch/devices/gpu.ts';
import { FSR_EF, FSR_PF, FSR_SS, FSR_TF } from '../../../arch/smmuv2/regs.ts';
import type { Workqueue } from '../../../platform/exec.ts';
import type { Machine } from '../../../platform/machine.ts';
import { hexAddr } from '../../../platform/u64.ts';
import type { DriverCore } from '../../base/core.ts';
import type { Device } from '../../base/device.ts';
import { type Driver, ProbeError, type ProbeResult } from '../../base/driver.ts';
import { type AdrenoSmmuFaultInfo, type AdrenoSmmuPriv, adrenoSmmuPriv } from '../../iommu/arm-smmu/qcom.ts';
import type { IommuCore } from '../../iommu/core.ts';
import { type IommuDomain, iommuFlushIotlbAll, iommuMap, iommuPgsize } from '../../iommu/domain.ts';
import { EBUSY, EINVAL, ENOMEM, ERANGE } from '../../iommu/errno.ts';
import { IOMMU_FAULT_WRITE, iommuSetFaultHandler } from '../../iommu/fault/report.ts';
import { type ArmLpaeIoPgtable, allocIoPgtableOps } from '../../iommu/io-pgtable/arm-lpae.ts';
import {
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  type IoPgtableCfg,
  machinePgtableEnv,
} from '../../iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../iommu/prot.ts';
import { MmioRegion } from '../../lib/io.ts';
import { RateLimit } from '../../lib/ratelimit.ts';
import { ofAddressToResource } from '../../of/of-address.ts';
import { getClocksAndPower } from '../resources.ts';
import { GpuDevice, gpuStartRing } from './iommu-lab-gpu.ts';

/**
 * Where the driver maps the ring: this offset in the GPU's kernel address range (at
 * ADRENO_KERNEL_VA_START + this with split page tables, else at this address).
 */
export const ADRENO_RING_IOVA = 0x0100_0000;
/**
 * The start of the kernel's (TTBR1) half in the GPU's 49-bit addresses: the domain's aperture
 * start with the bits above 48 cleared (adreno_iommu_create_address_space: start & GENMASK(48, 0)).
 */
export const ADRENO_KERNEL_VA_START = 2 ** 48;
/** Where global buffers (allocGlobal) start, above the ring, in the kernel's range. */
export const ADRENO_GLOBAL_VA_OFFSET = 0x1000_0000;

/**
 * msm_iommu_map's sign extension: the kernel IOVA of GPU address `va` (a 49-bit address with
 * bit 48 set becomes the negative Number of its sign-extended 64-bit value); others unchanged.
 */
export function adrenoSignExtend(va: number): number {
  return va >= 2 ** 48 && va < 2 ** 49 ? va - 2 ** 49 : va;
}

/**
 * A process's GPU page table (msm_iommu_pagetable): an ARM_64_LPAE_S1 table for TTBR0, at GPU
 * addresses below 2^48, that the GPU uses while one of the process's jobs runs.
 */
export class AdrenoPagetable {
  /** Table pages allocated (including the top level). */
  get tablePages(): number {
    return this.ops.tablePages;
  }
  private freed = false;
  private readonly count = new Float64Array(1);

  /** @internal */
  constructor(
    private readonly gpu: AdrenoGpu,
    /** The table's configuration (its TTBR and TCR are what set_ttbr0_cfg installs). */
    readonly cfg: IoPgtableCfg,
    private readonly ops: ArmLpaeIoPgtable,
    /** A name for traces. */
    readonly name: string,
  ) {}

  /** The table has been destroyed. */
  get destroyed(): boolean {
    return this.freed;
  }

  /**
   * msm_iommu_pagetable_map: map [va, va + size) to pa with the largest page sizes the alignment
   * allows. 0, or -errno with nothing left mapped (-EINVAL: unaligned or no access, -ERANGE:
   * outside [0, 2^48), -EEXIST: something is mapped there, -ENOMEM).
   */
  map(va: number, pa: number, size: number, prot: number): number {
    if (this.freed) return -EINVAL;
    if (!Number.isSafeInteger(va) || !Number.isSafeInteger(pa) || !Number.isSafeInteger(size)) return -EINVAL;
    if (va % 4096 !== 0 || pa % 4096 !== 0 || size % 4096 !== 0 || size <= 0 || pa < 0) return -EINVAL;
    if (va < 0 || va + size > 2 ** this.cfg.ias) return -ERANGE;
    let done = 0;
    while (done < size) {
      const pgsize = iommuPgsize(this.cfg.pgsizeBitmap, va + done, pa + done, size - done, this.count);
      const r = this.ops.mapPages(va + done, pa + done, pgsize, this.count[0]!, prot);
      if (r < 0) {
        if (done > 0) this.unmapNoFlush(va, done);
        return r;
      }
      done += r;
    }
    return 0;
  }

  private unmapNoFlush(va: number, size: number): number {
    let done = 0;
    while (done < size) {
      const pgsize = iommuPgsize(this.cfg.pgsizeBitmap, va + done, va + done, size - done, this.count);
      const r = this.ops.unmapPages(va + done, pgsize, this.count[0]!, null);
      if (r <= 0) break;
      done += r;
    }
    return done;
  }

  /**
   * msm_iommu_pagetable_unmap: unmap [va, va + size), then flush the whole GPU context's TLB
   * (iommu_flush_iotlb_all on the parent domain). Resolves to the bytes unmapped.
   */
  async unmap(va: number, size: number): Promise<number> {
    if (this.freed || !Number.isSafeInteger(va) || !Number.isSafeInteger(size) || va < 0 || size <= 0)
      return 0;
    const n = this.unmapNoFlush(va, size);
    await iommuFlushIotlbAll(this.gpu.domain);
    return n;
  }

  /** The physical address `va` translates to in this table, or 0. */
  iovaToPhys(va: number): number {
    if (this.freed || !Number.isSafeInteger(va) || va < 0) return 0;
    return this.ops.iovaToPhys(va);
  }

  /** msm_iommu_pagetable_destroy: switched out first if it is the GPU's current table, then freed. */
  async destroy(): Promise<void> {
    if (this.freed) return;
    if (this.gpu.currentPagetable === this) await this.gpu.setPagetable(null);
    this.freed = true;
    this.ops.free();
  }
}
/** How long stall stays off after a fault (v6.16+: stall_reenable_time = now + 500 ms). */
export const ADRENO_STALL_REENABLE_NS = 500_000_000;

/** Which drm/msm fault flow the driver runs (chosen by the SMMU driver's interface). */
export type AdrenoFaultFlow = 'v6.15' | 'v6.16';

/** gpu->fault_info / the crash state's fault record. */
export interface AdrenoFaultRecord {
  time: number;
  iova: number;
  write: boolean;
  /** "TRANSLATION", "PERMISSION", "EXTERNAL" or "UNKNOWN" (from FSR). */
  type: string;
  /** FSYNR1[7:0]: the GPU block that faulted. */
  block: number;
  stalled: boolean;
  info: AdrenoSmmuFaultInfo;
}

/** msm_gpu_state: what the devcoredump holds. */
export interface AdrenoCrashState {
  /** When it was captured (virtual ns). */
  time: number;
  /** Where: 'worker' (v6.15 fault worker) or 'irq-thread' (v6.16 handler). */
  capturedIn: 'worker' | 'irq-thread';
  fault: AdrenoFaultRecord;
  /** GPU registers, read while the faulting transaction was still stalled. */
  registers: Record<string, number>;
  /** Transactions the GPU had stalled in the SMMU when the registers were read. */
  stalledAtCapture: number;
  /** The ring around the current slot: previous, current and next command. */
  ring: Array<{ slot: number; current: boolean; command: string }>;
}

/** The msm-like GPU driver's counters. */
export interface AdrenoStats {
  /** Faults the handler saw. */
  faults: number;
  /** "*** gpu fault" lines printed / swallowed by the rate limit. */
  faultsLogged: number;
  faultsSuppressed: number;
  crashDumps: number;
  /** Faults terminated at once (a crash state already existed). */
  terminatedAtOnce: number;
  stallDisables: number;
  stallReenables: number;
  submits: number;
}

const hex = (v: number) => hexAddr(v);
/** %016llx of a 64-bit address held as a Number (negative: sign-extended). */
const hex16 = (v: number) => (v < 0 ? hexAddr(v).slice(2) : v.toString(16).padStart(16, '0'));

function faultType(fsr: number): string {
  if (fsr & FSR_TF) return 'TRANSLATION';
  if (fsr & FSR_PF) return 'PERMISSION';
  if (fsr & FSR_EF) return 'EXTERNAL';
  return 'UNKNOWN';
}

/** a6xx_fault_block names of FSYNR1[7:0] (the blocks the model's GPU has). */
function faultBlock(id: number): string {
  return id === 0 ? 'CP' : `UNKNOWN (0x${id.toString(16)})`;
}

/** Per-device state (struct adreno_gpu / msm_gpu). */
export class AdrenoGpu {
  readonly stats: AdrenoStats = {
    faults: 0,
    faultsLogged: 0,
    faultsSuppressed: 0,
    crashDumps: 0,
    terminatedAtOnce: 0,
    stallDisables: 0,
    stallReenables: 0,
    submits: 0,
  };
  /** gpu->crashstate: the devcoredump, until userspace reads it (clearCrashState). */
  crashState: AdrenoCrashState | null = null;
  /** The fault the worker is about to dump (gpu->fault_info). */
  faultInfo: AdrenoFaultRecord | null = null;
  /** adreno_gpu->stall_enabled. */
  stallEnabled = true;
  /** adreno_gpu->stall_reenable_time (virtual ns; 0 while stall is on). */
  stallReenableTime = 0;
  readonly flow: AdrenoFaultFlow;
  readonly component: string;
  /** The GPU has been powered up (its first submit). */
  poweredOn = false;
  /** The process table in TTBR0 now, or null (TTBR0 disabled: only the kernel's half). */
  currentPagetable: AdrenoPagetable | null = null;
  /** Pagetable switches done (set_ttbr0_cfg pairs plus the TLB flush). */
  pagetableSwitches = 0;
  private nextGlobal = ADRENO_GLOBAL_VA_OFFSET;
  private pagetables = 0;
  private readonly rl = new RateLimit();

  constructor(
    readonly m: Machine,
    readonly dev: Device,
    /** The ring, FENCE and register snapshot of the iommu-lab GPU interface. */
    readonly gpu: GpuDevice,
    readonly domain: IommuDomain,
    readonly priv: AdrenoSmmuPriv,
    /** gpu->worker (a kthread worker: ordered). */
    readonly worker: Workqueue,
  ) {
    this.flow = priv.resumeTranslation ? 'v6.15' : 'v6.16';
    this.component = `msm ${dev.name}`;
  }

  get regs(): MmioRegion {
    return this.gpu.regs;
  }

  /** The SMMU gave the GPU split page tables (its domain is the TTBR1 half). */
  get splitPagetables(): boolean {
    const c = this.priv.getTtbr1Cfg();
    return c !== null && (c.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) !== 0;
  }

  /** The GPU address of kernel-range offset `off` (49-bit, bit 48 set with split page tables). */
  kernelVa(off: number): number {
    return this.splitPagetables ? ADRENO_KERNEL_VA_START + off : off;
  }

  /**
   * Allocate `size` bytes (rounded up to pages, physically contiguous) and map them read/write
   * in the kernel's global address space (the TTBR1 half with split page tables), which every
   * process's jobs see. Returns the GPU address and the physical address, or -errno.
   */
  allocGlobal(size: number): { va: number; pa: number } | number {
    if (!Number.isSafeInteger(size) || size <= 0 || size > 2 ** 30) return -EINVAL;
    const pages = Math.ceil(size / 4096);
    const order = Math.ceil(Math.log2(pages));
    const pa = this.m.pages.alloc(order, 'msm-global');
    if (pa < 0) return -ENOMEM;
    const va = this.kernelVa(this.nextGlobal);
    this.nextGlobal += 2 ** order * 4096;
    const r = iommuMap(this.domain, adrenoSignExtend(va), pa, 2 ** order * 4096, IOMMU_READ | IOMMU_WRITE);
    if (r !== 0) {
      this.m.pages.freePages(pa);
      return r;
    }
    return { va, pa };
  }

  /**
   * msm_iommu_pagetable_create: a per-process table for TTBR0 (the TTBR1 configuration without
   * the quirk). Without split page tables set_ttbr0_cfg answers -EINVAL, which is returned (msm
   * then falls back to the one global table); -ENOMEM when no table can be allocated.
   */
  createPagetable(): AdrenoPagetable | number {
    const t1 = this.priv.getTtbr1Cfg();
    if (t1 === null) return -EINVAL;
    const cfg: IoPgtableCfg = {
      quirks: t1.quirks & ~IO_PGTABLE_QUIRK_ARM_TTBR1,
      pgsizeBitmap: t1.pgsizeBitmap,
      ias: t1.ias,
      oas: t1.oas,
      coherentWalk: t1.coherentWalk,
      // msm's per-process tables do their TLB maintenance on the parent domain (unmap)
      tlb: null,
    };
    const ops = allocIoPgtableOps('arm-64-lpae-s1', cfg, this, machinePgtableEnv(this.m));
    if (ops === null) return -ENOMEM;
    if (!this.splitPagetables) {
      // msm calls set_ttbr0_cfg for its first pagetable; without split tables the SMMU driver
      // refuses (-EINVAL) and msm keeps the one global address space
      const r = this.priv.setTtbr0Cfg(cfg);
      if (r !== 0) {
        ops.free();
        return r;
      }
    }
    return new AdrenoPagetable(this, cfg, ops, `pagetable${++this.pagetables}`);
  }

  /**
   * Make the GPU use `pt` in TTBR0 (null: no process table). With the GPU idle: set_ttbr0_cfg(NULL)
   * for the old table, set_ttbr0_cfg(pt) for the new, then a TLBIASID of the context — what
   * CP_SMMU_TABLE_UPDATE does from the ring in msm. 0 or -errno (-EINVAL without split tables).
   */
  async setPagetable(pt: AdrenoPagetable | null): Promise<number> {
    if (pt === this.currentPagetable) return 0;
    if (pt?.destroyed) return -EINVAL;
    if (this.currentPagetable !== null) {
      const r = this.priv.setTtbr0Cfg(null);
      if (r !== 0) return r;
      this.currentPagetable = null;
    }
    if (pt !== null) {
      const r = this.priv.setTtbr0Cfg(pt.cfg);
      if (r !== 0) return r;
      this.currentPagetable = pt;
    }
    await iommuFlushIotlbAll(this.domain);
    this.pagetableSwitches++;
    this.m.trace.emit(this.component, 'log', `pagetable switched to ${pt?.name ?? 'none'}`, {}, 'debug');
    return 0;
  }

  /**
   * Run a job of the process owning `pt`: switch the GPU to its table (the GPU idle between
   * jobs), submit the commands, and wait for the job's fence. Resolves false when the fence
   * was not reached in time (a hung job), or -errno when the table could not be installed
   * (-EBUSY: another process's table while the GPU is still busy with an earlier job).
   */
  async runJob(
    pt: AdrenoPagetable | null,
    cmds: readonly GpuCommand[],
    timeoutNs?: number,
  ): Promise<boolean | number> {
    // the table may change only between jobs: not under a job still running (one that hung)
    if (pt !== this.currentPagetable && this.regs.readl(GpuReg.STATUS) & GPU_STATUS_BUSY) return -EBUSY;
    const r = await this.setPagetable(pt);
    if (r !== 0) return r;
    for (const c of cmds) this.submit(c);
    return this.fenceWait(timeoutNs);
  }

  /** aXxx_submit: (v6.16+) re-enable stall if its time has come, then write the command. */
  submit(c: GpuCommand): void {
    this.beforeSubmit();
    this.gpu.submit(c);
  }

  /** Submit a FENCE and wait for it (virtual time). */
  fenceWait(timeoutNs?: number): Promise<boolean> {
    this.beforeSubmit();
    return this.gpu.fenceWait(timeoutNs);
  }

  private beforeSubmit(): void {
    this.stats.submits++;
    if (!this.poweredOn) {
      // pm_runtime_get_sync(gpu): the SMMU supplier resumes and rewrites its banks
      this.poweredOn = true;
      this.priv.runtimeResumeSupplier();
    }
    if (this.flow === 'v6.16') this.checkAndReenableStall();
  }

  /** Userspace read the devcoredump: it is freed (and stall may come back on). */
  clearCrashState(): AdrenoCrashState | null {
    const s = this.crashState;
    this.crashState = null;
    return s;
  }

  /** adreno_check_and_reenable_stall. */
  checkAndReenableStall(): void {
    if (this.stallEnabled) return;
    if (this.m.sched.now > this.stallReenableTime && this.crashState === null) {
      this.stallEnabled = true;
      this.stallReenableTime = 0;
      this.stats.stallReenables++;
      this.priv.setStall(true);
    }
  }

  /** msm_fault_handler -> adreno_fault_handler. */
  faultHandler(iova: number, flags: number): number | Promise<number> {
    this.stats.faults++;
    const info = this.priv.getFaultInfo();
    const rec: AdrenoFaultRecord = {
      time: this.m.sched.now,
      iova,
      write: (flags & IOMMU_FAULT_WRITE) !== 0,
      type: faultType(info.fsr),
      block: info.fsynr1 & 0xff,
      stalled: (info.fsr & FSR_SS) !== 0,
      info,
    };
    this.printFault(rec);
    if (this.flow === 'v6.15') {
      // hard-IRQ context: nothing here may sleep
      if (this.crashState !== null) {
        this.stats.terminatedAtOnce++;
        this.priv.resumeTranslation!(true);
        return 0;
      }
      // do_devcoredump: save the fault, queue the worker (once), leave it stalled
      const queued = this.faultInfo !== null;
      this.faultInfo = rec;
      if (!queued) this.worker.queueFn('fault_work', () => this.faultWorker());
      return 0;
    }
    // v6.16+: the IRQ thread; stall off for a while, the dump now, then the SMMU terminates it
    if (this.stallEnabled) {
      this.stallEnabled = false;
      this.stats.stallDisables++;
      this.priv.setStall(false);
    }
    this.stallReenableTime = this.m.sched.now + ADRENO_STALL_REENABLE_NS;
    if (rec.stalled && this.crashState === null) return this.capture(rec, 'irq-thread').then(() => 0);
    return 0;
  }

  /** fault_worker: capture while stalled, then resume (terminate). */
  private async faultWorker(): Promise<void> {
    const rec = this.faultInfo;
    if (rec === null) return;
    await this.capture(rec, 'worker');
    this.faultInfo = null;
    this.priv.resumeTranslation!(true);
  }

  /** msm_gpu_crashstate_capture: registers and ring, read from the GPU while it is stalled. */
  private async capture(fault: AdrenoFaultRecord, where: 'worker' | 'irq-thread'): Promise<void> {
    const regs = this.gpu.snapshotRegs();
    const time = this.m.sched.now;
    const cur = regs.CMD_SLOT!;
    const ring = this.gpu.ringAround(cur).map((x) => ({
      slot: x.slot,
      current: x.current,
      command: `${x.command.name} a=${hex(x.command.a)} b=${hex(x.command.b)} value=${hex(x.command.value)} len=${x.command.len}`,
    }));
    // writing the coredump out takes a while: a sleep, allowed in a worker or an IRQ thread
    await this.m.exec.sleep(20_000, 'msm_gpu_crashstate_capture');
    this.crashState = {
      time,
      capturedIn: where,
      fault,
      registers: regs,
      stalledAtCapture: regs.STALL_COUNT!,
      ring,
    };
    this.stats.crashDumps++;
    this.m.trace.emit(
      this.component,
      'log',
      `crash state captured (${where}): fault at ${hex(fault.iova)}, STALL_COUNT ${regs.STALL_COUNT}, FAULT_COUNT ${regs.FAULT_COUNT}, slot ${cur}`,
      {},
      'warn',
    );
  }

  /** adreno_fault_handler's pr_warn_ratelimited line. */
  private printFault(r: AdrenoFaultRecord): void {
    if (!this.rl.allow(this.m.sched.now)) {
      this.stats.faultsSuppressed++;
      return;
    }
    this.stats.faultsLogged++;
    const scratch = [GpuReg.RING_HEAD, GpuReg.RING_TAIL, GpuReg.FENCE, GpuReg.CMD_DONE].map((o) =>
      this.regs.readl(o),
    );
    this.m.trace.emit(
      this.component,
      'log',
      `*** gpu fault: ttbr0=${r.info.ttbr0.toString(16).padStart(16, '0')} iova=${hex16(r.iova)} dir=${r.write ? 'WRITE' : 'READ'} type=${r.type} source=${faultBlock(r.block)} (${scratch.join(',')})`,
      {},
      'warn',
    );
  }
}

/** The msm-like Adreno driver. */
export function adrenoGpuDriver(env: { machine: Machine; iommu: IommuCore }): Driver & { gpus: AdrenoGpu[] } {
  const gpus: AdrenoGpu[] = [];
  return {
    name: 'msm-adreno',
    bus: 'platform',
    ofMatch: ['qcom,adreno'],
    gpus,
    async probe(dev: Device, core: DriverCore): Promise<ProbeResult> {
      const m = env.machine;
      const res = getClocksAndPower(core, dev);
      if (res !== null) return res;
      const reg = dev.ofNode ? ofAddressToResource(dev.ofNode, 0) : null;
      if (reg === null) return new ProbeError(-22, 'no registers');
      const regs = new MmioRegion(m.mem, reg.start, reg.size);
      if (regs.readl(GpuReg.ID) !== GPU_ID_VALUE) return new ProbeError(-19, 'no GPU at this address');
      // msm_iommu_gpu_new: a paging domain of its own, attached to the GPU
      const d = await env.iommu.domainAllocPaging(dev);
      if (typeof d === 'number') return new ProbeError(d, 'cannot allocate the GPU domain');
      const r = await env.iommu.attachDevice(d, dev);
      if (r !== 0) return new ProbeError(r, 'cannot attach the GPU domain');
      const priv = adrenoSmmuPriv(dev);
      if (priv === null) return new ProbeError(-19, 'no adreno_smmu_priv (not behind a qcom,adreno-smmu)');
      // the ring: a page of memory mapped at a GPU address in the kernel's range (with split
      // page tables the TTBR1 half: mapped at the sign-extended IOVA, used in its 49-bit form)
      const split = (priv.getTtbr1Cfg()?.quirks ?? 0) & IO_PGTABLE_QUIRK_ARM_TTBR1;
      const ringVa = split ? ADRENO_KERNEL_VA_START + ADRENO_RING_IOVA : ADRENO_RING_IOVA;
      const pa = m.pages.alloc(0, 'msm-ring');
      if (pa < 0) return new ProbeError(-12, 'cannot allocate the ring');
      if (iommuMap(d, adrenoSignExtend(ringVa), pa, 0x1000, IOMMU_READ | IOMMU_WRITE) !== 0)
        return new ProbeError(-12, 'cannot map the ring');
      gpuStartRing(regs, ringVa);
      const gd = new GpuDevice(m, dev, regs, { cpuAddr: pa, dmaAddr: ringVa });
      const g = new AdrenoGpu(m, dev, gd, d, priv, m.exec.createWorkqueue('gpu-worker', { ordered: true }));
      priv.setStall(true);
      iommuSetFaultHandler(d, (_dom, _dev, iova, flags) => g.faultHandler(iova, flags), g);
      dev.driverData = g;
      gpus.push(g);
      return 0;
    },
  };
}
