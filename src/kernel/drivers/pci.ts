// The generic ECAM PCIe host bridge (drivers/pci/controller/pci-host-generic.c) and a PCI endpoint
// driver for the QEMU-style test device.
//
// Enumeration: the model has no config-space access from the kernel side yet, so the host bridge
// enumerates the PCI device nodes described under it in the device tree (reg = <phys.hi 0 0 0 0>,
// phys.hi = bus[23:16] dev[15:11] fn[10:8]), and pciHotplugAdd() adds devices at run time. When the
// ECAM window is modelled on the MMIO bus, enumeration will read vendor/device IDs from it instead.

import type { DriverCore } from '../base/core.ts';
import { Device, pciName } from '../base/device.ts';
import { dmaSetMaskAndCoherent } from '../base/dma-mapping.ts';
import { type Driver, ProbeError } from '../base/driver.ts';
import { EINVAL } from '../base/errno.ts';
import { pciIdsFromCompatible } from '../of/of-platform.ts';
import type { DtNode } from '../of/tree.ts';

export function pciRidFromNode(node: DtNode): number | null {
  const reg = node.u32Array('reg');
  if (!reg || reg.length < 1) return null;
  return (reg[0]! >>> 8) & 0xffff;
}

/** Adds a PCI function below a bound host bridge (boot enumeration or hot-plug). */
export function pciHotplugAdd(
  core: DriverCore,
  host: Device,
  rid: number,
  ids: { vendor: number; device: number },
  node: DtNode | null = null,
): Device {
  const dev = new Device({
    name: pciName(rid),
    bus: 'pci',
    ofNode: node,
    parent: host,
    pci: { rid, vendor: ids.vendor, device: ids.device, hostBridge: host.ofNode! },
  });
  void core.addDevice(dev);
  return dev;
}

export const pciHostEcamDriver: Driver = {
  name: 'pci-host-generic',
  bus: 'platform',
  ofMatch: ['pci-host-ecam-generic'],
  probe(dev, core) {
    const node = dev.ofNode!;
    const busRange = node.u32Array('bus-range') ?? [0, 255];
    for (const child of node.children) {
      if (!child.available) continue;
      const rid = pciRidFromNode(child);
      const ids = pciIdsFromCompatible(child.compatible);
      if (rid === null || !ids) {
        core.log(`${child.path}: not a PCI function node (needs reg and "pciVVVV,DDDD"); skipped`);
        continue;
      }
      const bus = rid >> 8;
      if (bus < busRange[0]! || bus > busRange[1]!) {
        return new ProbeError(-EINVAL, `${child.path}: bus ${bus} outside bus-range`);
      }
      pciHotplugAdd(core, dev, rid, ids, child);
    }
    return 0;
  },
  remove(dev, core) {
    // Child functions go away with the bridge.
    for (const d of core.devices.filter((x) => x.parent === dev)) void core.removeDevice(d);
  },
};

/** QEMU's PCI test device (1b36:0005), as a generic DMA-capable PCIe endpoint. */
export const pciTestDeviceDriver: Driver = {
  name: 'pci-testdev',
  bus: 'pci',
  pciIds: [{ vendor: 0x1b36, device: 0x0005 }],
  probe(dev, core) {
    const e = dmaSetMaskAndCoherent(core, dev, 64);
    return e ? new ProbeError(e, 'no suitable DMA mask') : 0;
  },
};
