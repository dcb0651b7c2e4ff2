/**
 * The iommu-lab `virt` board: the hardware behind the embedded default device tree
 * (src/kernel/of/default-platform.ts describes the same addresses, as a firmware would).
 * Like QEMU's board code, it knows where each model sits; the kernel learns it from the DT.
 */

import type { Machine } from '../../platform/machine.ts';
import { DmaEngine, physicalBus } from '../devices/dma-engine.ts';
import { Gpu, type GpuOptions } from '../devices/gpu.ts';
import { PcieEcam } from '../devices/pcie-ecam.ts';
import { PcieEndpoint, type PcieEndpointOptions } from '../devices/pcie-endpoint.ts';
import { SmmuV3, type SmmuV3Config } from '../smmuv3/smmu.ts';

export const VIRT = {
  SMMU_BASE: 0x0900_0000,
  /** GIC SPIs 74..77 (eventq, gerror, priq, cmdq-sync) as interrupt numbers (SPI + 32). */
  SMMU_IRQS: { eventq: 106, gerror: 107, priq: 108, cmdqSync: 109 },
  GPU_BASE: 0x0a00_0000,
  GPU_SID: 0x100,
  DMA0_BASE: 0x0a01_0000,
  DMA1_BASE: 0x0a02_0000,
  ECAM_BASE: 0x4000_0000,
  ECAM_SIZE: 0x1000_0000,
  /** The PCIe test device at 00:01.0; its StreamID is its RID (iommu-map is 1:1). */
  PCIE_TESTDEV_RID: 0x08,
} as const;

export interface VirtBoard {
  machine: Machine;
  smmu: SmmuV3;
  /** The DMA engine without an IOMMU (direct DMA). */
  dma0: DmaEngine;
  /** The DMA engine behind an IOMMU the board does not implement (it masters physical memory). */
  dma1: DmaEngine;
  /** The GPU behind the SMMU (StreamID 0x100, can stall). */
  gpu: Gpu;
  ecam: PcieEcam;
  /** The PCIe test device 00:01.0 (1b36:0005) with ATS, PRI and PASID. */
  pcieTestdev: PcieEndpoint;
}

export interface VirtBoardOptions {
  smmu?: SmmuV3Config;
  gpu?: GpuOptions;
  pcie?: Partial<PcieEndpointOptions>;
}

export function createVirtBoard(machine: Machine, opts: VirtBoardOptions = {}): VirtBoard {
  const smmu = new SmmuV3(machine, {
    base: VIRT.SMMU_BASE,
    irqs: VIRT.SMMU_IRQS,
    sidBits: 16,
    ssidBits: 20,
    ...opts.smmu,
  });
  const dma0 = new DmaEngine(machine, physicalBus(machine, 'dma-engine.0'), { name: 'dma-engine.0' });
  machine.mmio.map(VIRT.DMA0_BASE, 0x1000, dma0);
  const dma1 = new DmaEngine(machine, physicalBus(machine, 'dma-engine.1'), { name: 'dma-engine.1' });
  machine.mmio.map(VIRT.DMA1_BASE, 0x1000, dma1);
  const gpu = new Gpu(smmu, VIRT.GPU_SID, { name: 'gpu', canStall: true, ...opts.gpu }).map(VIRT.GPU_BASE);
  const ecam = new PcieEcam('pcie-ecam');
  machine.mmio.map(VIRT.ECAM_BASE, VIRT.ECAM_SIZE, ecam);
  const pcieTestdev = new PcieEndpoint(machine, smmu, {
    name: 'pcie-testdev',
    rid: VIRT.PCIE_TESTDEV_RID,
    vendor: 0x1b36,
    device: 0x0005,
    ...opts.pcie,
  });
  ecam.attach(pcieTestdev.rid, pcieTestdev.config);
  return { machine, smmu, dma0, dma1, gpu, ecam, pcieTestdev };
}
