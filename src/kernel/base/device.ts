// struct device, reduced to what the driver model, deferral and DMA configuration need.

import type { DtNode } from '../of/tree.ts';
import type { Driver } from './driver.ts';
import type { IommuOps } from './iommu-provider.ts';

/**
 * Where a device is in its life:
 * - `unbound`: added, no probe tried yet (or unbound by hand, which does not re-probe, as in sysfs);
 * - `no-driver`: no registered driver matches it;
 * - `deferred`: a probe returned ProbeDefer (or a supplier is missing); it waits on the deferred list;
 * - `bound`: a driver's probe succeeded;
 * - `failed`: the matching driver's probe failed with an error other than -EPROBE_DEFER;
 * - `removed`: deleted from the system (hot-unplug).
 */
export type DeviceState = 'unbound' | 'no-driver' | 'deferred' | 'bound' | 'failed' | 'removed';

export type DmaOpsKind = 'iommu' | 'direct' | 'swiotlb' | 'none';

/** struct iommu_fwspec: the IOMMU this device sits behind and its IDs (StreamIDs for SMMUs). */
export interface IommuFwspec {
  iommuNode: DtNode;
  ops: IommuOps;
  ids: number[];
  /** The host bridge declares ATS support (`ats-supported`). */
  pciRcAts: boolean;
}

/** One dma-ranges window (struct bus_dma_region). Addresses are bigint: they may exceed 2^53. */
export interface DmaRange {
  cpuStart: bigint;
  dmaStart: bigint;
  size: bigint;
}

/** The DMA side of struct device. */
export interface DmaConfig {
  ops: DmaOpsKind;
  /** dev->dma_mask; 32-bit by default as in of_dma_configure. */
  mask: bigint;
  /** dev->coherent_dma_mask. */
  coherentMask: bigint;
  /** dev->bus_dma_limit (0 = none), from dma-ranges. */
  busLimit: bigint;
  /** dev->dma_range_map from dma-ranges (empty = 1:1). */
  ranges: DmaRange[];
  /** dev->dma_coherent (from `dma-coherent`). */
  coherent: boolean;
  /** Why the IOMMU was not used although one was declared (null otherwise). */
  iommuNote: string | null;
}

export function defaultDmaConfig(): DmaConfig {
  return {
    ops: 'none',
    mask: 0xffff_ffffn,
    coherentMask: 0xffff_ffffn,
    busLimit: 0n,
    ranges: [],
    coherent: false,
    iommuNote: null,
  };
}

/** PCI identity of a device on the PCI bus. */
export interface PciInfo {
  /** Requester ID: bus[15:8] | device[7:3] | function[2:0]. */
  rid: number;
  vendor: number;
  device: number;
  /** The host bridge's device-tree node (where iommu-map lives). */
  hostBridge: DtNode;
}

export class Device {
  readonly name: string;
  readonly busName: string;
  readonly ofNode: DtNode | null;
  readonly parent: Device | null;
  readonly pci: PciInfo | null;
  driver: Driver | null = null;
  state: DeviceState = 'unbound';
  /** Like /sys/kernel/debug/devices_deferred: why the last probe deferred (or failed). */
  reason: string | null = null;
  /** -errno of the last failed probe, 0 otherwise. */
  error = 0;
  /** Times really_probe ran for this device (a driver matched and we tried). */
  probeAttempts = 0;
  /** Virtual time (ns) of the last successful probe, or -1. */
  boundNs = -1;
  dma: DmaConfig = defaultDmaConfig();
  iommu: IommuFwspec | null = null;
  /** Driver private data (dev_get_drvdata). */
  driverData: unknown = null;

  constructor(opts: {
    name: string;
    bus: string;
    ofNode?: DtNode | null;
    parent?: Device | null;
    pci?: PciInfo | null;
  }) {
    this.name = opts.name;
    this.busName = opts.bus;
    this.ofNode = opts.ofNode ?? null;
    this.parent = opts.parent ?? null;
    this.pci = opts.pci ?? null;
  }

  toString(): string {
    return this.name;
  }
}

/** PCI device name as Linux prints it: 0000:BB:DD.F. */
export function pciName(rid: number, domain = 0): string {
  const h = (v: number, w: number) => v.toString(16).padStart(w, '0');
  return `${h(domain, 4)}:${h(rid >> 8, 2)}:${h((rid >> 3) & 0x1f, 2)}.${rid & 7}`;
}

/**
 * What Linux's dev_printk puts before a device's message: dev_driver_string (the bound driver's
 * name, else the bus name) and dev_name, e.g. "platform 2cc00000.display", "pci 0000:00:01.0".
 */
export function devPrefix(dev: {
  readonly name: string;
  readonly busName: string;
  driver?: { name: string } | null;
}): string {
  return `${dev.driver?.name ?? dev.busName} ${dev.name}`;
}
