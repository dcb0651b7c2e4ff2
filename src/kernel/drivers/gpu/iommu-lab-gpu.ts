/**
 * The kernel driver for the iommu-lab GPU (`iommu-lab,gpu`): maps its registers, puts its
 * command ring in coherent DMA memory (so the GPU fetches it through the IOMMU), and submits
 * commands that work on buffers mapped with the DMA API. Completion is observed through the
 * FENCE register; fault state through FAULT_STATUS / FAULT_ADDR / FAULT_COUNT.
 */

import {
  decodeGpuCommand,
  encodeGpuCommand,
  GPU_CMD_BYTES,
  GPU_CTRL_ENABLE,
  GPU_ID_VALUE,
  type GpuCommand,
  GpuReg,
} from '../../../arch/devices/gpu.ts';
import type { Machine } from '../../../platform/machine.ts';
import type { DriverCore } from '../../base/core.ts';
import type { Device } from '../../base/device.ts';
import { type Driver, ProbeError, type ProbeResult } from '../../base/driver.ts';
import type { CoherentBuffer, DmaApi } from '../../iommu/dma/mapping.ts';
import { MmioRegion, pollTimeout } from '../../lib/io.ts';
import { ofAddressToResource } from '../../of/of-address.ts';
import { getClocksAndPower } from '../resources.ts';

export const GPU_RING_LOG2 = 7; // 128 slots of 32 bytes: one page

/** Per-device driver state (dev_get_drvdata). */
export class GpuDevice {
  private tail = 0;
  private fence = 0;
  private readonly cmd = new Uint32Array(GPU_CMD_BYTES / 4);

  constructor(
    readonly m: Machine,
    readonly dev: Device,
    readonly regs: MmioRegion,
    readonly ring: CoherentBuffer,
  ) {}

  /** Write a command into the ring and ring the doorbell. */
  submit(c: GpuCommand): void {
    encodeGpuCommand(c, this.cmd);
    const slot = this.ring.cpuAddr + this.tail * GPU_CMD_BYTES;
    for (let i = 0; i < this.cmd.length; i++) this.m.mem.write32(slot + i * 4, this.cmd[i]!);
    this.tail = (this.tail + 1) & ((1 << GPU_RING_LOG2) - 1);
    this.regs.writel(GpuReg.RING_TAIL, this.tail);
  }

  /** Submit a FENCE and wait (busy-polling in virtual time) until the GPU reaches it. */
  async fenceWait(timeoutNs = 10_000_000): Promise<boolean> {
    const v = ++this.fence;
    this.submit({ op: 4, value: v });
    const r = await pollTimeout(
      this.m.exec,
      () => this.regs.readl(GpuReg.FENCE),
      (x) => x === v,
      timeoutNs,
      500,
    );
    return r.ok;
  }

  /**
   * The ring around `slot` as a crash dump records it: the slots `slot - before` ..
   * `slot + after` (wrapping), each decoded from ring memory.
   */
  ringAround(
    slot: number,
    before = 1,
    after = 1,
  ): Array<{ slot: number; current: boolean; command: ReturnType<typeof decodeGpuCommand> }> {
    const slots = 1 << GPU_RING_LOG2;
    const out: Array<{ slot: number; current: boolean; command: ReturnType<typeof decodeGpuCommand> }> = [];
    const w = new Uint32Array(GPU_CMD_BYTES / 4);
    for (let i = -before; i <= after; i++) {
      const s = (((slot + i) % slots) + slots) % slots;
      for (let j = 0; j < w.length; j++)
        w[j] = this.m.mem.read32(this.ring.cpuAddr + s * GPU_CMD_BYTES + j * 4);
      out.push({ slot: s, current: s === slot, command: decodeGpuCommand(w) });
    }
    return out;
  }

  /** The registers a crash dump records (the 64-bit ones, RING_BASE, MSI_ADDR, FAULT_ADDR, in full). */
  snapshotRegs(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, off] of Object.entries(GpuReg)) out[name] = this.regs.readl(off);
    for (const r64 of ['RING_BASE', 'MSI_ADDR', 'FAULT_ADDR'] as const)
      out[r64] = this.regs.readq(GpuReg[r64]);
    return out;
  }
}

/** Point the GPU's command processor at a ring (at bus address `ringDma`) and enable it. */
export function gpuStartRing(regs: MmioRegion, ringDma: number): void {
  regs.writel(GpuReg.CTRL, 0);
  regs.writeq(GpuReg.RING_BASE, ringDma);
  regs.writel(GpuReg.RING_LOG2, GPU_RING_LOG2);
  regs.writel(GpuReg.CTRL, GPU_CTRL_ENABLE);
}

export function iommuLabGpuDriver(env: { machine: Machine; dma: DmaApi }): Driver {
  return {
    name: 'iommu-lab-gpu',
    bus: 'platform',
    ofMatch: ['iommu-lab,gpu'],
    probe(dev: Device, core: DriverCore): ProbeResult {
      const res = getClocksAndPower(core, dev);
      if (res !== null) return res;
      const reg = dev.ofNode ? ofAddressToResource(dev.ofNode, 0) : null;
      if (reg === null) return new ProbeError(-22, 'no registers');
      const regs = new MmioRegion(env.machine.mem, reg.start, reg.size);
      if (regs.readl(GpuReg.ID) !== GPU_ID_VALUE) return new ProbeError(-19, 'no GPU at this address');
      const ring = env.dma.allocCoherent(dev, 1 << (GPU_RING_LOG2 + 5));
      if (ring === null) return new ProbeError(-12, 'cannot allocate the command ring');
      gpuStartRing(regs, ring.dmaAddr);
      dev.driverData = new GpuDevice(env.machine, dev, regs, ring);
      return 0;
    },
  };
}
