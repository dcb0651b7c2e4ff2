/**
 * The arm-smmu-v3 platform driver: binds to `arm,smmu-v3` nodes, maps the registers, finds the
 * interrupts, probes and resets the SMMU, and registers it with the IOMMU core and with
 * of_iommu (of_xlate records the StreamIDs of each master).
 */

import type { Machine } from '../../../platform/machine.ts';
import type { DriverCore } from '../../base/core.ts';
import type { Device } from '../../base/device.ts';
import { type Driver, ProbeError, type ProbeResult } from '../../base/driver.ts';
import { fwspecAddIds } from '../../base/iommu-provider.ts';
import { getClocksAndPower } from '../../drivers/resources.ts';
import { MmioRegion } from '../../lib/io.ts';
import { ofAddressToResource, ofIrqGet } from '../../of/of-address.ts';
import { platformDeviceName } from '../../of/of-platform.ts';
import {
  PciConfig,
  pciAtsSupported,
  pciDisableAts,
  pciDisablePasid,
  pciEnableAts,
  pciEnablePasid,
  pciMaxPasidBits,
  pciPrgRespPasidRequired,
  pciPriSupported,
} from '../../pci/config.ts';
import type { IommuCore } from '../core.ts';
import type { IommuDevice } from '../device.ts';
import { type ArmSmmuIommuOptions, ArmSmmuV3Iommu, type MasterCaps } from './iommu.ts';
import { ArmSmmuDevice, type ArmSmmuOptions } from './smmu.ts';

export interface ArmSmmuDriverEnv {
  machine: Machine;
  iommuCore: IommuCore;
  /** Options for every SMMU this driver binds (fault injection, bypass policy, ...). */
  smmuOptions?: Partial<ArmSmmuOptions>;
  iommuOptions?: ArmSmmuIommuOptions;
}

/** A bound SMMU: the hardware-facing half and the iommu_ops half. */
export interface ArmSmmuInstance {
  dev: Device;
  smmu: ArmSmmuDevice;
  iommu: ArmSmmuV3Iommu;
}

/** ECAM base of a PCI device's host bridge (its first `reg`). */
function ecamOf(dev: Device): number | null {
  if (dev.pci === null) return null;
  // config space through ECAM is what the model knows; a vendor's host bridge (DesignWare glue,
  // ...) has its own config access, which the model does not have: no capabilities then
  if (!dev.pci.hostBridge.isCompatible('pci-host-ecam-generic')) return null;
  return ofAddressToResource(dev.pci.hostBridge, 0)?.start ?? null;
}

export function armSmmuV3Driver(env: ArmSmmuDriverEnv): Driver & { instances: ArmSmmuInstance[] } {
  const instances: ArmSmmuInstance[] = [];
  return {
    name: 'arm-smmu-v3',
    bus: 'platform',
    ofMatch: ['arm,smmu-v3'],
    instances,
    async probe(dev: Device, core: DriverCore): Promise<ProbeResult> {
      const node = dev.ofNode;
      if (node === null) return -19;
      const res = getClocksAndPower(core, dev);
      if (res !== null) return res;
      const reg = ofAddressToResource(node, 0);
      if (reg === null) return new ProbeError(-22, 'invalid resource');
      if (reg.size < 0x20000) return new ProbeError(-22, 'MMIO region too small');
      const tree = core.tree!;
      const irq = (name: string) => {
        const n = ofIrqGet(tree, node, name);
        return n >= 0 ? n : undefined;
      };
      const name = platformDeviceName(node);
      const smmu = new ArmSmmuDevice(env.machine, new MmioRegion(env.machine.mem, reg.start, reg.size), {
        name,
        base: reg.start,
        irqs: { eventq: irq('eventq'), gerror: irq('gerror'), priq: irq('priq') },
        ...env.smmuOptions,
      });
      const ret = await smmu.probe();
      if (ret !== 0) return new ProbeError(ret, 'SMMU probe failed');
      const m = env.machine;
      const discover = (d: IommuDevice): MasterCaps | null => {
        const bd = d as Device;
        if (bd.iommu?.iommuNode !== undefined && bd.iommu.iommuNode !== node) return null;
        if (bd.pci) {
          const ecam = ecamOf(bd);
          const cfg = ecam === null ? null : new PciConfig(m.mem, ecam, bd.pci.rid);
          if (cfg === null || !cfg.present())
            return { ats: false, pri: false, priPasidRequired: false, pasidBits: 0, canStall: false };
          return {
            ats: (bd.iommu?.pciRcAts ?? false) && pciAtsSupported(cfg),
            pri: pciPriSupported(cfg),
            priPasidRequired: pciPrgRespPasidRequired(cfg),
            pasidBits: pciMaxPasidBits(cfg),
            canStall: false,
            enableAts: () => void pciEnableAts(cfg, 12),
            disableAts: () => pciDisableAts(cfg),
            enablePasid: () => void pciEnablePasid(cfg),
            disablePasid: () => pciDisablePasid(cfg),
          };
        }
        const dn = bd.ofNode;
        return {
          ats: false,
          pri: false,
          priPasidRequired: false,
          pasidBits: dn?.u32('pasid-num-bits') ?? 0,
          canStall: dn?.has('dma-can-stall') ?? false,
        };
      };
      const iommu = new ArmSmmuV3Iommu(m, smmu, discover, env.iommuOptions);
      env.iommuCore.register(name, iommu);
      const r = core.registerIommu(
        node,
        { name: 'arm-smmu-v3', ofXlate: (d, args) => fwspecAddIds(d, args) },
        dev,
      );
      if (r < 0) return r;
      dev.driverData = iommu;
      instances.push({ dev, smmu, iommu });
      return 0;
    },
    async remove(dev: Device): Promise<void> {
      const i = instances.findIndex((x) => x.dev === dev);
      if (i < 0) return;
      await instances[i]!.smmu.remove();
      instances.splice(i, 1);
    },
  };
}
