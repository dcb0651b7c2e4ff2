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
import {
  type AdrenoCrashState,
  type AdrenoFaultFlow,
  type AdrenoGpu,
  type AdrenoPagetable,
  type AdrenoStats,
  adrenoSignExtend,
} from '../kernel/drivers/gpu/adreno.ts';
import type { ArmSmmuV2Instance } from '../kernel/iommu/arm-smmu/driver.ts';
import type { ArmSmmuStats } from '../kernel/iommu/arm-smmu/smmu.ts';
import type { IommuDomain } from '../kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../kernel/iommu/prot.ts';
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
  /**
   * FAR: the faulting input address. A sign-extended upper-half (TTBR1) address, e.g. from the
   * GPU's kernel range, is the negative Number with its 64-bit two's-complement value.
   */
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
      // a sign-extended (TTBR1-half) address reads as its negative two's-complement value
      far: (hi | 0) * 2 ** 32 + lo,
      cbfrsynra: this.read(2 ** f.pgshift + GR1_CBFRSYNRA(index)),
    };
  }

  private read(off: number): number {
    return this.lab.machine.mem.read32(this.hw[0]!.base + off) >>> 0;
  }
}

/**
 * A buffer the GPU can reach: physically contiguous pages mapped at `va` in one address space
 * (a process's TTBR0 table, or the kernel's global one). The CPU reads and writes it directly.
 */
export class AdrenoBuffer {
  /** @internal */
  constructor(
    private readonly lab: Lab,
    /** The GPU address (49-bit: bit 48 set for a global buffer with split page tables). */
    readonly va: number,
    /** Bytes mapped (whole pages). */
    readonly size: number,
    /** Physical address of the first byte. */
    readonly pa: number,
  ) {}

  /** Read `len` bytes at `offset` (CPU access). */
  read(offset: number, len: number): Uint8Array {
    this.check(offset, len);
    const out = new Uint8Array(len);
    this.lab.machine.mem.readBytes(this.pa + offset, out);
    return out;
  }

  /** Write `data` at `offset` (CPU access). */
  write(offset: number, data: Uint8Array): void {
    this.check(offset, data.length);
    this.lab.machine.mem.writeBytes(this.pa + offset, data);
  }

  /** Read the little-endian 32-bit word at `offset`. */
  readU32(offset: number): number {
    this.check(offset, 4);
    return this.lab.machine.mem.read32(this.pa + offset) >>> 0;
  }

  /** Fill the buffer with the 32-bit little-endian `value` (CPU access). */
  fill32(value: number): void {
    for (let o = 0; o < this.size; o += 4) this.lab.machine.mem.write32(this.pa + o, value >>> 0);
  }

  private check(offset: number, len: number): void {
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(len) ||
      offset < 0 ||
      len < 0 ||
      offset + len > this.size
    )
      throw new LabError(`buffer access [${offset}, +${len}) outside the buffer's ${this.size} bytes`);
  }
}

/** What a process's GPU job did. */
export interface AdrenoJobResult {
  /** The job's fence was reached (false: it hung, or its table could not be installed). */
  readonly completed: boolean;
  /** Faulting transactions of the GPU during the job (its FAULT_COUNT register's increase). */
  readonly faults: number;
}

function sizeArg(what: string, size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size > 2 ** 30)
    throw new LabError(`${what}: size must be an integer in 1..2^30 (got ${String(size)})`);
}

/**
 * A process's GPU address space (drm/msm's per-process pagetable, created with
 * msm_iommu_pagetable_create): its own TTBR0 table, below GPU address 2^48, that the GPU uses
 * while the process's jobs run. Two processes can map different buffers at the same address;
 * neither's jobs can reach the other's. The kernel's global buffers (allocGlobal, the TTBR1
 * half) are reachable from every process.
 */
export class AdrenoProcess {
  private readonly buffers = new Map<number, AdrenoBuffer>();

  /** @internal */
  constructor(
    private readonly lab: Lab,
    private readonly g: AdrenoGpu,
    private readonly pt: AdrenoPagetable,
  ) {}

  /** A name for traces ("pagetable1", ...). */
  get name(): string {
    return this.pt.name;
  }

  /** The table's base address: what TTBR0 holds (with the context's ASID in bits 63:48) while its jobs run. */
  get ttbr0(): number {
    return this.pt.cfg.armLpaeS1Cfg!.ttbr;
  }

  /** Its table is the one in TTBR0 now. */
  get current(): boolean {
    return this.g.currentPagetable === this.pt;
  }

  /** Table pages allocated. */
  get tablePages(): number {
    return this.pt.tablePages;
  }

  /**
   * Allocate `size` bytes (whole pages, physically contiguous) and map them at GPU address `va`
   * (page-aligned, below 2^48) in this process's table, read/write (read-only with
   * `{ writable: false }`). Returns the buffer, or a negative errno: -EINVAL (unaligned),
   * -ERANGE (outside the process's half), -EEXIST (something is mapped there), -ENOMEM.
   */
  map(va: number, size: number, opts: { writable?: boolean } = {}): AdrenoBuffer | number {
    if (!Number.isSafeInteger(va)) throw new LabError(`map: va must be an integer (got ${String(va)})`);
    sizeArg('map', size);
    const pages = Math.ceil(size / 4096);
    const order = Math.ceil(Math.log2(pages));
    const bytes = 2 ** order * 4096;
    const pa = this.lab.machine.pages.alloc(order, 'msm-bo');
    if (pa < 0) return -12;
    const prot = IOMMU_READ | (opts.writable === false ? 0 : IOMMU_WRITE);
    const r = this.pt.map(va, pa, bytes, prot);
    if (r !== 0) {
      this.lab.machine.pages.freePages(pa);
      return r;
    }
    const b = new AdrenoBuffer(this.lab, va, bytes, pa);
    this.buffers.set(va, b);
    return b;
  }

  /**
   * Unmap a buffer this process mapped (and free its memory): msm_iommu_pagetable_unmap, which
   * flushes the GPU context's TLB. Resolves to the bytes unmapped (0 if it was not mapped here).
   */
  async unmap(buffer: AdrenoBuffer): Promise<number> {
    if (this.buffers.get(buffer.va) !== buffer) return 0;
    const n = await this.lab.run(() => this.pt.unmap(buffer.va, buffer.size), 'msm pagetable unmap');
    this.buffers.delete(buffer.va);
    this.lab.machine.pages.freePages(buffer.pa);
    return n;
  }

  /** The physical address GPU address `va` translates to in this process's table, or 0. */
  iovaToPhys(va: number): number {
    return this.pt.iovaToPhys(va);
  }

  /**
   * Run a job of this process: the GPU switches to its table (TTBR0; the driver does it between
   * jobs with set_ttbr0_cfg and a TLBIASID, where msm's ring does CP_SMMU_TABLE_UPDATE), runs
   * `commands`, and the driver waits for the job's fence (virtual time, `timeoutNs`). While an
   * earlier job (of another process) is still running — it missed its fence — the table cannot
   * change: the job is not run (`completed: false`).
   */
  async submit(commands: readonly GpuCommand[], timeoutNs = 100_000_000): Promise<AdrenoJobResult> {
    if (!Array.isArray(commands)) throw new LabError('submit: commands must be an array of GPU commands');
    const before = this.g.regs.readl(GpuReg.FAULT_COUNT);
    const r = await this.lab.run(() => this.g.runJob(this.pt, commands, timeoutNs), 'adreno job');
    await this.lab.waitFor(() => this.lab.adreno().stalledTransactions === 0);
    const faults = this.g.regs.readl(GpuReg.FAULT_COUNT) - before;
    return { completed: r === true, faults };
  }

  /** Destroy the address space (switched out first if current) and free its buffers. */
  async destroy(): Promise<void> {
    await this.lab.run(() => this.pt.destroy(), 'msm pagetable destroy');
    for (const b of this.buffers.values()) this.lab.machine.pages.freePages(b.pa);
    this.buffers.clear();
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

  /**
   * The GPU's own paging domain (msm_iommu_gpu_new); map buffers into it with lab.iommu. With
   * split page tables it is the kernel's upper (TTBR1) half: map at `toIova(gpuAddress)`, the
   * negative sign-extended IOVA of a GPU address with bit 48 set (see kernelVa).
   */
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

  /**
   * The SMMU gave the GPU split page tables (IO_PGTABLE_QUIRK_ARM_TTBR1; every SMMU but
   * qcom,msm8996-smmu-v2): the GPU's domain is the kernel's upper half and processes can have
   * their own tables (createProcess).
   */
  get splitPagetables(): boolean {
    return this.g.splitPagetables;
  }

  /**
   * The kernel IOVA of GPU address `va` in the GPU's domain: with split page tables a 49-bit
   * address with bit 48 set is sign-extended (msm_iommu_map), i.e. the negative Number
   * va - 2^49; other addresses are unchanged. Use it to map into `domain` with lab.iommu.
   */
  toIova(va: number): number {
    return adrenoSignExtend(va);
  }

  /** The GPU address of the kernel's (TTBR1) range at `offset` (2^48 + offset with split tables). */
  kernelVa(offset: number): number {
    return this.g.kernelVa(offset);
  }

  /**
   * Allocate a global buffer: `size` bytes (whole pages) mapped in the GPU's own domain, the
   * kernel's address space every process's jobs see (the TTBR1 half with split page tables).
   * Returns the buffer (its `va` is the GPU's 49-bit address) or a negative errno.
   */
  allocGlobal(size: number): AdrenoBuffer | number {
    sizeArg('allocGlobal', size);
    const r = this.g.allocGlobal(size);
    if (typeof r === 'number') return r;
    return new AdrenoBuffer(this.lab, r.va, Math.ceil(size / 4096) * 4096, r.pa);
  }

  /**
   * A new process address space with its own TTBR0 table (msm_iommu_pagetable_create), or -EINVAL
   * (-22) without split page tables: set_ttbr0_cfg refuses (the msm8996 fallback, one global table).
   */
  createProcess(): AdrenoProcess | number {
    const pt = this.g.createPagetable();
    if (typeof pt === 'number') return pt;
    return new AdrenoProcess(this.lab, this.g, pt);
  }

  /** Table switches the driver has done (set_ttbr0_cfg and the TLB flush between jobs). */
  get pagetableSwitches(): number {
    return this.g.pagetableSwitches;
  }

  /**
   * Submit a GPU command (aXxx_submit: re-enables stall when its time has come). It runs with
   * the TTBR0 table installed now: the last process's whose job ran (none before any, or after
   * that process was destroyed); the kernel's half is always there.
   */
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
