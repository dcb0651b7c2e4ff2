// The default platform's DMA masters: a GPU and a DMA engine. They bind, take their clocks and power
// domains, and set their DMA masks the way the node describes. DMA itself is done by hardware models.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { dmaSetMaskAndCoherent } from '../base/dma-mapping.ts';
import { type Driver, ProbeError } from '../base/driver.ts';
import { isPciHostBridge } from '../of/of-platform.ts';
import { pciHostEcamDriver } from './pci.ts';
import { getClocksAndPower } from './resources.ts';

export interface GpuData {
  canStall: boolean;
  pasidBits: number;
}

/**
 * The probe of a bus master that needs nothing but its clocks, power and DMA mask: it records
 * what the node says about stalls and PASIDs. Binding runs of_dma_configure, and so puts the
 * device behind its IOMMU.
 */
function masterProbe(dev: Device, core: DriverCore) {
  const r = getClocksAndPower(core, dev);
  if (r) return r;
  const node = dev.ofNode!;
  const e = dmaSetMaskAndCoherent(core, dev, node.u32('iommu-lab,dma-bits') ?? 48);
  if (e) return new ProbeError(e, 'no suitable DMA mask');
  const data: GpuData = { canStall: node.has('dma-can-stall'), pasidBits: node.u32('pasid-num-bits') ?? 0 };
  dev.driverData = data;
  return 0;
}

export const gpuDriver: Driver = {
  name: 'iommu-lab-gpu',
  bus: 'platform',
  ofMatch: ['iommu-lab,gpu'],
  probe: masterProbe,
};

export interface DmaEngineData {
  channels: number;
}

export const dmaEngineDriver: Driver = {
  name: 'iommu-lab-dma',
  bus: 'platform',
  ofMatch: ['iommu-lab,dma-engine'],
  probe(dev: Device, core: DriverCore) {
    const r = getClocksAndPower(core, dev);
    if (r) return r;
    const node = dev.ofNode!;
    const e = dmaSetMaskAndCoherent(core, dev, node.u32('iommu-lab,dma-bits') ?? 32);
    if (e) return new ProbeError(e, 'no suitable DMA mask');
    const data: DmaEngineData = { channels: node.u32('dma-channels') ?? 1 };
    dev.driverData = data;
    if (node.has('#dma-cells')) core.registerProvider('dma', node, data, dev);
    return 0;
  },
};

/** What the generic bus master's driver keeps: the same as the GPU's. */
export type DmaMasterData = GpuData;

/**
 * A generic bus master (`iommu-lab,dma-master`): what a scenario attaches to a board to stand
 * for its own accelerator, display or crypto block. It binds like any platform driver (clocks,
 * power, DMA mask from `iommu-lab,dma-bits`, default 48); the scenario then drives it as its
 * driver would.
 */
export const dmaMasterDriver: Driver = {
  name: 'iommu-lab-dma-master',
  bus: 'platform',
  ofMatch: ['iommu-lab,dma-master'],
  probe: masterProbe,
};

/** What the generic client driver keeps. */
export interface GenericClientData {
  generic: true;
  /** DMA mask width it set. */
  dmaBits: number;
}

/**
 * The generic client driver: binds any DMA master the tree puts behind an IOMMU (a platform
 * device with `iommus`, or any PCI function) that no modelled driver claims, and probes the way
 * a real driver does. Its bus has already run of_dma_configure (really_probe → dma_configure):
 * of_iommu_configure, of_xlate into the fwspec, iommu_probe_device (group, default domain) —
 * or deferred it while the IOMMU is declared but not registered. The probe sets the DMA mask
 * (`iommu-lab,dma-bits`, default 48, as a typical SoC driver would). Clocks, resets and power
 * domains of unmodelled providers are taken as on: this driver stands for every driver the model
 * lacks, not for their resource handling.
 */
export const genericClientDriver: Driver = {
  name: 'iommu-lab-generic-client',
  bus: 'platform',
  fallback: (dev) => dev.ofNode?.has('iommus') === true,
  probe(dev: Device, core: DriverCore) {
    const bits = dev.ofNode?.u32('iommu-lab,dma-bits') ?? 48;
    const e = dmaSetMaskAndCoherent(core, dev, bits);
    if (e) return new ProbeError(e, 'no suitable DMA mask');
    const data: GenericClientData = { generic: true, dmaBits: bits };
    dev.driverData = data;
    return 0;
  },
};

/** The generic client driver on the PCI bus: any function without a driver of its own. */
export const genericPciClientDriver: Driver = {
  name: 'iommu-lab-generic-client',
  bus: 'pci',
  fallback: (dev) => dev.pci !== null,
  probe(dev: Device, core: DriverCore) {
    const e = dmaSetMaskAndCoherent(core, dev, 64);
    if (e) return new ProbeError(e, 'no suitable DMA mask');
    const data: GenericClientData = { generic: true, dmaBits: 64 };
    dev.driverData = data;
    return 0;
  },
};

/** The generic client drivers, registered unless `--no-client-drivers`. */
export function genericClientDrivers(): Driver[] {
  return [genericClientDriver, genericPciClientDriver, genericPciHostDriver];
}

/**
 * A host bridge the model has no driver for (a vendor's DesignWare glue, ...) but whose
 * `iommu-map` puts PCI functions behind an IOMMU: it enumerates the functions described under it,
 * as the generic ECAM host driver does.
 */
export const genericPciHostDriver: Driver = {
  name: 'iommu-lab-generic-pci-host',
  bus: 'platform',
  fallback: (dev) => dev.ofNode !== null && isPciHostBridge(dev.ofNode) && dev.ofNode.has('iommu-map'),
  probe: pciHostEcamDriver.probe,
  remove: pciHostEcamDriver.remove,
};
