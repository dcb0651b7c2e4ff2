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
 */

import { GPU_ID_VALUE, type GpuCommand, GpuReg } from '../../../arch/devices/gpu.ts';
import { FSR_EF, FSR_PF, FSR_SS, FSR_TF } from '../../../arch/smmuv2/regs.ts';
import type { Workqueue } from '../../../platform/exec.ts';
import type { Machine } from '../../../platform/machine.ts';
import type { DriverCore } from '../../base/core.ts';
import type { Device } from '../../base/device.ts';
import { type Driver, ProbeError, type ProbeResult } from '../../base/driver.ts';
import { type AdrenoSmmuFaultInfo, type AdrenoSmmuPriv, adrenoSmmuPriv } from '../../iommu/arm-smmu/qcom.ts';
import type { IommuCore } from '../../iommu/core.ts';
import { type IommuDomain, iommuMap } from '../../iommu/domain.ts';
import { IOMMU_FAULT_WRITE, iommuSetFaultHandler } from '../../iommu/fault/report.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../iommu/prot.ts';
import { MmioRegion } from '../../lib/io.ts';
import { RateLimit } from '../../lib/ratelimit.ts';
import { ofAddressToResource } from '../../of/of-address.ts';
import { getClocksAndPower } from '../resources.ts';
import { GpuDevice, gpuStartRing } from './iommu-lab-gpu.ts';

/** Where the driver maps the ring in the GPU's address space (msm's kernel VA range start). */
export const ADRENO_RING_IOVA = 0x0100_0000;
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

const hex = (v: number) => `0x${v.toString(16)}`;

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
      `*** gpu fault: ttbr0=${r.info.ttbr0.toString(16).padStart(16, '0')} iova=${r.iova.toString(16).padStart(16, '0')} dir=${r.write ? 'WRITE' : 'READ'} type=${r.type} source=${faultBlock(r.block)} (${scratch.join(',')})`,
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
      // the ring: a page of memory mapped at a GPU address
      const pa = m.pages.alloc(0, 'msm-ring');
      if (pa < 0) return new ProbeError(-12, 'cannot allocate the ring');
      if (iommuMap(d, ADRENO_RING_IOVA, pa, 0x1000, IOMMU_READ | IOMMU_WRITE) !== 0)
        return new ProbeError(-12, 'cannot map the ring');
      gpuStartRing(regs, ADRENO_RING_IOVA);
      const gd = new GpuDevice(m, dev, regs, { cpuAddr: pa, dmaAddr: ADRENO_RING_IOVA });
      const g = new AdrenoGpu(m, dev, gd, d, priv, m.exec.createWorkqueue('gpu-worker', { ordered: true }));
      priv.setStall(true);
      iommuSetFaultHandler(d, (_dom, _dev, iova, flags) => g.faultHandler(iova, flags), g);
      dev.driverData = g;
      gpus.push(g);
      return 0;
    },
  };
}
