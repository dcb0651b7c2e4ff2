/**
 * The public face of the SMMUv1/v2 side of a lab: a view of an SMMUv2-family SMMU (what its
 * driver and its registers say) and, on the adreno board, the GPU as its msm-like driver sees
 * it (submit, fences, the fault flow, the crash state).
 */

import { GpuOp, GpuReg, type GpuCommand as KGpuCommand } from '../arch/devices/gpu.ts';
import { CB, GR0, GR1_CBFRSYNRA } from '../arch/smmuv2/regs.ts';
import { ADRENO, type AdrenoBoardDevices } from '../hw/boards/adreno.ts';
import type { SmmuV2 } from '../hw/smmuv2/index.ts';
import type { Device } from '../kernel/base/device.ts';
import type {
  AdrenoCrashState,
  AdrenoFaultFlow,
  AdrenoGpu,
  AdrenoStats,
} from '../kernel/drivers/gpu/adreno.ts';
import type { ArmSmmuV2Instance } from '../kernel/iommu/arm-smmu/driver.ts';
import type { ArmSmmuStats } from '../kernel/iommu/arm-smmu/smmu.ts';
import type { IommuDomain } from '../kernel/iommu/domain.ts';
import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';

export type { AdrenoCrashState, AdrenoFaultFlow, AdrenoStats, ArmSmmuStats };

/** A command for the adreno board's GPU (the iommu-lab GPU command format): op, a, b, value, len, k. */
export type GpuCommand = KGpuCommand;

/**
 * GPU opcodes: NOP; COPY a -> b, len bytes; FILL a with the 32-bit value, len bytes; SHADER
 * b[i] = a[i] + k; FENCE (write value to a if nonzero, set the FENCE register).
 */
export const GPU_OP: Readonly<{ NOP: number; COPY: number; FILL: number; SHADER: number; FENCE: number }> =
  GpuOp;

/** One context bank as its registers read now. */
export interface ContextBankView {
  /** Bank index. */
  readonly index: number;
  /** The driver has a domain on it. */
  readonly inUse: boolean;
  readonly sctlr: number;
  readonly fsr: number;
  readonly fsynr0: number;
  readonly far: number;
  /** GR1 CBFRSYNRA: the StreamID of the bank's last fault. */
  readonly cbfrsynra: number;
}

/** An SMMUv1/v2-family SMMU (arm-smmu driver): what the driver counted and the registers say. */
export class SmmuV2View {
  /** @internal */
  constructor(
    private readonly lab: Lab,
    /** Its device-tree node's path. */
    readonly path: string,
    private readonly hw: readonly SmmuV2[],
    private readonly inst: ArmSmmuV2Instance | null,
  ) {}

  /** The driver's instance name (dev_name), or null when the driver did not probe it. */
  get name(): string | null {
    return this.inst?.smmu.name ?? null;
  }

  /** Hardware instances behind the node (2 or 3 for nvidia,smmu-500). */
  get instances(): number {
    return this.hw.length;
  }

  /** Context banks and stream-match groups, as the driver read them from ID0/ID1 (null: not probed). */
  get config(): { contextBanks: number; s2OnlyBanks: number; streamMatchGroups: number } | null {
    const s = this.inst?.smmu;
    if (!s) return null;
    return {
      contextBanks: s.numContextBanks,
      s2OnlyBanks: s.numS2ContextBanks,
      streamMatchGroups: s.numMappingGroups,
    };
  }

  /** The driver's counters (faults, prints, resumes, terminations, TLB syncs). */
  get stats(): ArmSmmuStats | null {
    return this.inst ? { ...this.inst.smmu.stats } : null;
  }

  /** The hardware's counters (context / global faults, stalls, RESUMEs, TLB operations). */
  get hardware(): SmmuV2['counters'] {
    return { ...this.hw[0]!.counters };
  }

  /** sGFSR now. */
  get gfsr(): number {
    return this.read(GR0.sGFSR);
  }

  /** Context bank `index` as its registers read now. */
  contextBank(index: number): ContextBankView {
    const f = this.hw[0]!.features;
    if (!Number.isInteger(index) || index < 0 || index >= f.numCb)
      throw new LabError(`context bank ${index} out of range (0..${f.numCb - 1})`);
    const page = (f.numPage + index) * 2 ** f.pgshift;
    const lo = this.read(page + CB.FAR);
    const hi = this.read(page + CB.FAR + 4);
    return {
      index,
      inUse: this.inst?.smmu.contextMap[index] ?? false,
      sctlr: this.read(page + CB.SCTLR),
      fsr: this.read(page + CB.FSR),
      fsynr0: this.read(page + CB.FSYNR0),
      far: hi * 2 ** 32 + lo,
      cbfrsynra: this.read(2 ** f.pgshift + GR1_CBFRSYNRA(index)),
    };
  }

  private read(off: number): number {
    return this.lab.machine.mem.read32(this.hw[0]!.base + off) >>> 0;
  }
}

/** The adreno board's GPU as its msm-like driver sees it. */
export class AdrenoHandle {
  /** @internal */
  constructor(
    private readonly lab: Lab,
    private readonly g: AdrenoGpu,
    private readonly hw: AdrenoBoardDevices,
  ) {}

  /** The GPU's device (for the IOMMU and fault APIs). */
  get device(): Device {
    return this.g.dev;
  }

  /** The GPU's own paging domain (msm_iommu_gpu_new); map buffers into it with lab.iommu. */
  get domain(): IommuDomain {
    return this.g.domain;
  }

  /** Which drm/msm fault flow runs: 'v6.15' (fault worker, resume_translation) or 'v6.16' (stall off for 500 ms). */
  get flow(): AdrenoFaultFlow {
    return this.g.flow;
  }

  /** The GPU's context bank on its SMMU. */
  get contextBank(): number {
    return this.g.priv.cbndx;
  }

  /** Stall on fault is enabled (adreno_gpu->stall_enabled). */
  get stallEnabled(): boolean {
    return this.g.stallEnabled;
  }

  /** When stall comes back on at the next submit (virtual ns; 0 while it is on). */
  get stallReenableTime(): number {
    return this.g.stallReenableTime;
  }

  /** The driver's counters (faults seen, lines printed and suppressed, crash dumps, stall toggles). */
  get stats(): AdrenoStats {
    return { ...this.g.stats };
  }

  /** The devcoredump, once a fault has produced one (null until then, and after it is read). */
  get crashState(): AdrenoCrashState | null {
    return this.g.crashState;
  }

  /** Read (and free) the devcoredump, as userspace does: stall may come back on after it. */
  readCrashState(): AdrenoCrashState | null {
    return this.g.clearCrashState();
  }

  /** Submit a GPU command (aXxx_submit: re-enables stall when its time has come). */
  submit(cmd: GpuCommand): void {
    this.g.submit(cmd);
  }

  /** Submit a fence and wait for the GPU to reach it; false on timeout (a hung job). */
  fenceWait(timeoutNs = 10_000_000): Promise<boolean> {
    return this.lab.run(() => this.g.fenceWait(timeoutNs), 'adreno fence');
  }

  /** The GPU's FAULT_COUNT register: every faulting transaction, stalled or terminated. */
  get hardwareFaultCount(): number {
    return this.g.regs.readl(GpuReg.FAULT_COUNT);
  }

  /**
   * Make the display or the video block (generic bus masters on the apps SMMU) read or write
   * `len` bytes at bus address `iova`; resolves true when the transfer completed, false when a
   * transaction faulted (the apps SMMU terminates at once: no stall there).
   */
  async blockDma(
    block: 'display' | 'video',
    kind: 'read' | 'write',
    iova: number,
    len: number,
  ): Promise<boolean> {
    const p = block === 'display' ? this.hw.display : block === 'video' ? this.hw.video : null;
    if (p === null) throw new LabError(`blockDma: block must be "display" or "video" (got ${String(block)})`);
    if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isInteger(len) || len <= 0 || len > 1 << 24)
      throw new LabError(`blockDma: bad iova ${String(iova)} or length ${String(len)}`);
    const op = kind === 'write' ? p.write(iova, new Uint8Array(len)) : p.read(iova, len);
    await this.lab.waitFor(() => op.state !== 'running');
    return op.state === 'done';
  }

  /** The display's or the video block's device (for the IOMMU and fault APIs). */
  blockDevice(block: 'display' | 'video'): Device {
    return this.lab.device(block === 'display' ? ADRENO.DISPLAY_PATH : ADRENO.VIDEO_PATH);
  }

  /** Transactions of the GPU held in its SMMU right now. */
  get stalledTransactions(): number {
    return this.hw.gpu.sm.stalledCount;
  }
}

/** @internal the SmmuV2View for `path` (default: the first). */
export function smmuV2View(lab: Lab, path?: string): SmmuV2View {
  const all = lab.board.smmuV2s;
  const s = path === undefined ? all[0] : all.find((x) => x.node.path === path);
  if (s === undefined) {
    throw new LabError(
      `no SMMUv1/v2${path ? ` at ${path}` : ''} (SMMUs: ${all.map((x) => x.node.path).join(', ') || 'none'})`,
    );
  }
  const inst = lab.kernel.armSmmuDriver.instances.find((i) => i.dev.ofNode === s.node) ?? null;
  return new SmmuV2View(lab, s.node.path, s.hw, inst);
}

/** @internal */
export function adrenoHandle(lab: Lab): AdrenoHandle | null {
  const hw = lab.board.adreno;
  const g = lab.kernel.adrenoDriver.gpus[0];
  if (hw === null || g === undefined) return null;
  return new AdrenoHandle(lab, g, hw);
}
