/**
 * The arm-smmu platform driver (arm_smmu_device_probe): binds to the SMMUv1/v2 compatibles,
 * maps the registers (every `reg` range for the NVIDIA implementation), counts the global and
 * context interrupts, picks the implementation, reads the configuration from the ID registers,
 * requests the interrupts, resets the SMMU, tests the SMR masks and registers the SMMU with the
 * IOMMU core and of_iommu (of_xlate: #iommu-cells 1 with stream-match-mask, or 2).
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
import type { IommuCore } from '../core.ts';
import type { IommuDevice } from '../device.ts';
import { ENODEV } from '../errno.ts';
import { ARM_SMMU_COMPATIBLES, armSmmuImplInit, matchData } from './impl.ts';
import { ArmSmmuIo } from './io.ts';
import { ArmSmmuV2Iommu } from './iommu.ts';
import { ArmSmmuDevice, type ArmSmmuResumeStyle } from './smmu.ts';

/** Module parameters and model options of the arm-smmu driver. */
export interface ArmSmmuV2DriverOptions {
  /** arm-smmu.disable_bypass. Default true (CONFIG_ARM_SMMU_DISABLE_BYPASS_BY_DEFAULT). */
  disableBypass?: boolean;
  /** arm-smmu.force_stage. Default 0. */
  forceStage?: 0 | 1 | 2;
  /** How stalled transactions are resumed: 'handler' (v6.16+, default) or 'driver' (v5.14..v6.15). */
  resumeStyle?: ArmSmmuResumeStyle;
}

export interface ArmSmmuV2DriverEnv {
  machine: Machine;
  iommuCore: IommuCore;
  options?: ArmSmmuV2DriverOptions;
}

/** A bound SMMU: the hardware-facing half and the iommu_ops half. */
export interface ArmSmmuV2Instance {
  dev: Device;
  smmu: ArmSmmuDevice;
  iommu: ArmSmmuV2Iommu;
}

/** arm_smmu_of_xlate: SMR.ID from the first cell, SMR.MASK from the second or stream-match-mask. */
function ofXlate(dev: Device, args: readonly number[], node: { u32(n: string): number | undefined }): number {
  let fwid = 0;
  if (args.length > 0) fwid |= args[0]! & 0xffff;
  if (args.length > 1) fwid |= (args[1]! & 0xffff) << 16;
  else {
    const mask = node.u32('stream-match-mask');
    if (mask !== undefined) fwid |= (mask & 0xffff) << 16;
  }
  return fwspecAddIds(dev, [fwid >>> 0]);
}

export function armSmmuV2Driver(env: ArmSmmuV2DriverEnv): Driver & { instances: ArmSmmuV2Instance[] } {
  const instances: ArmSmmuV2Instance[] = [];
  return {
    name: 'arm-smmu',
    bus: 'platform',
    ofMatch: [...ARM_SMMU_COMPATIBLES],
    instances,
    async probe(dev: Device, core: DriverCore): Promise<ProbeResult> {
      const node = dev.ofNode;
      if (node === null) return -ENODEV;
      const res = getClocksAndPower(core, dev);
      if (res !== null) return res;
      const data = matchData(node);
      if (data === null) return -ENODEV;
      const regions: MmioRegion[] = [];
      for (let i = 0; i < 8; i++) {
        const r = ofAddressToResource(node, i);
        if (r === null) break;
        regions.push(new MmioRegion(env.machine.mem, r.start, r.size));
        // only the NVIDIA implementation has more than one instance
        if (!node.isCompatible('nvidia,smmu-500')) break;
      }
      if (regions.length === 0) return new ProbeError(-22, 'invalid resource');
      const name = platformDeviceName(node);
      const globalIrqs = node.u32('#global-interrupts');
      if (globalIrqs === undefined) return new ProbeError(-ENODEV, 'missing #global-interrupts property');
      const tree = core.tree!;
      const irqs: number[] = [];
      for (let i = 0; i < 1024; i++) {
        const q = ofIrqGet(tree, node, i);
        if (q < 0) break;
        irqs.push(q);
      }
      if (irqs.length < globalIrqs) {
        return new ProbeError(-ENODEV, `found ${irqs.length} interrupts but expected at least ${globalIrqs}`);
      }
      const io = new ArmSmmuIo(regions);
      const smmu = new ArmSmmuDevice(env.machine, io, {
        name,
        disableBypass: env.options?.disableBypass,
        forceStage: env.options?.forceStage,
        resumeStyle: env.options?.resumeStyle,
        coherent: node.has('dma-coherent'),
        globalIrqs: irqs.slice(0, globalIrqs),
        contextIrqs: irqs.slice(globalIrqs),
      });
      smmu.version = data.version;
      smmu.model = data.model;
      smmu.impl = armSmmuImplInit(smmu, node, io);
      const r = smmu.cfgProbe();
      if (r) return new ProbeError(r, 'SMMU configuration probe failed');
      const q = smmu.requestIrqs();
      if (q < 0) return new ProbeError(q, 'failed to request interrupts');
      smmu.reset();
      smmu.testSmrMasks();
      const owns = (d: IommuDevice) => (d as Device).iommu?.iommuNode === node;
      const iommu = new ArmSmmuV2Iommu(env.machine, smmu, owns);
      env.iommuCore.register(name, iommu);
      const reg = core.registerIommu(
        node,
        { name: 'arm-smmu', ofXlate: (d, args) => ofXlate(d, args, node) },
        dev,
      );
      if (reg < 0) {
        smmu.shutdown();
        return reg;
      }
      dev.driverData = iommu;
      instances.push({ dev, smmu, iommu });
      return 0;
    },
    async remove(dev: Device): Promise<void> {
      const i = instances.findIndex((x) => x.dev === dev);
      if (i < 0) return;
      instances[i]!.smmu.shutdown();
      instances.splice(i, 1);
    },
  };
}
