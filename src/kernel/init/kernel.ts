/**
 * A booted kernel model on a machine: the driver core, the IOMMU core, the DMA API and the
 * drivers, wired the way Linux wires them (iommu_init hooks into the driver core; the
 * SMMUv3 driver registers as the implementation of `arm,smmu-v3`).
 */

import type { Machine } from '../../platform/machine.ts';
import type { DeferStrategy, DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { genericClientDrivers } from '../drivers/clients.ts';
import { adrenoGpuDriver } from '../drivers/gpu/adreno.ts';
import { iommuLabGpuDriver } from '../drivers/gpu/iommu-lab-gpu.ts';
import { builtinDrivers } from '../drivers/index.ts';
import { IommuDriverTable } from '../drivers/iommu-table.ts';
import { type ArmSmmuV2DriverOptions, armSmmuV2Driver } from '../iommu/arm-smmu/driver.ts';
import { ArmSmmuV2Faults } from '../iommu/arm-smmu/fault.ts';
import { type ArmSmmuDriverEnv, armSmmuV3Driver } from '../iommu/arm-smmu-v3/driver.ts';
import { ArmSmmuV3Faults } from '../iommu/arm-smmu-v3/fault.ts';
import { IommuCore, type IommuCoreConfig } from '../iommu/core.ts';
import { DmaApi, type DmaApiOptions } from '../iommu/dma/mapping.ts';
import { IommuFaults, type IommuFaultsOptions } from '../iommu/fault/io-pgfault.ts';
import type { IommuFallbackPolicy } from '../of/of-iommu.ts';
import type { DeviceTree } from '../of/tree.ts';
import { bootKernel, runUntilProbeDone } from './boot.ts';

export interface KernelOptions {
  machine: Machine;
  tree: DeviceTree;
  iommu?: IommuCoreConfig;
  dma?: DmaApiOptions;
  smmu?: Pick<ArmSmmuDriverEnv, 'smmuOptions' | 'iommuOptions'>;
  /** The arm-smmu (SMMUv1/v2) driver's module parameters and resume style. */
  armSmmu?: ArmSmmuV2DriverOptions;
  policy?: IommuFallbackPolicy;
  deferredProbeTimeoutNs?: number;
  deferStrategy?: DeferStrategy;
  modules?: boolean;
  /** The fault layer (io-pgfault); false: none (the SMMU driver logs and denies, as without it). */
  faults?: IommuFaultsOptions | false;
  /**
   * Register the generic client drivers (a catch-all driver for DMA masters behind an IOMMU and
   * for PCI functions, and a generic PCI host bridge driver). Default false.
   */
  clientDrivers?: boolean;
  /** Drivers (by name) not to register: a kernel built without them ("arm-smmu-v3", ...). */
  omitDrivers?: readonly string[];
  /** Also receive the driver core's dmesg-style lines. */
  log?: (line: string) => void;
}

export class Kernel {
  readonly machine: Machine;
  readonly tree: DeviceTree;
  readonly iommu: IommuCore;
  readonly dma: DmaApi;
  readonly smmuDriver: ReturnType<typeof armSmmuV3Driver>;
  /** The arm-smmu (SMMUv1/v2, MMU-500) driver. */
  readonly armSmmuDriver: ReturnType<typeof armSmmuV2Driver>;
  /** The msm-like Adreno GPU driver (the adreno board's GPU). */
  readonly adrenoDriver: ReturnType<typeof adrenoGpuDriver>;
  readonly iommuTable = new IommuDriverTable();
  /** Fault reporting, I/O page faults and page responses (issue 8). */
  readonly faults: IommuFaults;
  /** The SMMUv3 driver's fault glue, one per bound SMMU (installed at the end of boot). */
  readonly smmuFaults: ArmSmmuV3Faults[] = [];
  /** The arm-smmu driver's fault glue, one per bound SMMUv1/v2. */
  readonly armSmmuFaults: ArmSmmuV2Faults[] = [];
  core!: DriverCore;

  constructor(readonly opts: KernelOptions) {
    this.machine = opts.machine;
    this.tree = opts.tree;
    this.iommu = new IommuCore(opts.machine, opts.iommu);
    this.dma = new DmaApi(opts.machine, this.iommu, opts.dma);
    this.smmuDriver = armSmmuV3Driver({ machine: opts.machine, iommuCore: this.iommu, ...opts.smmu });
    this.iommuTable.implement('arm-smmu-v3', this.smmuDriver);
    this.armSmmuDriver = armSmmuV2Driver({
      machine: opts.machine,
      iommuCore: this.iommu,
      options: opts.armSmmu,
    });
    this.iommuTable.implement('arm-smmu', this.armSmmuDriver);
    this.adrenoDriver = adrenoGpuDriver({ machine: opts.machine, iommu: this.iommu });
    // fault layer: the core flushes outstanding faults on domain changes and device removal
    this.faults = new IommuFaults(opts.machine, this.iommu, opts.faults || {});
    if (opts.faults !== false) this.iommu.faultHooks = this.faults;
  }

  /**
   * start_kernel as far as devices go, then run virtual time until probing is over. Boot runs
   * as the init task; drivers whose probe waits for hardware (the SMMU's CR0ACK, CMD_SYNC)
   * block it while virtual time moves on, as on a real machine.
   */
  async boot(): Promise<void> {
    const m = this.machine;
    // subsys_initcall(iommu_subsys_init)
    this.iommu.subsysInit();
    let booted: Awaited<ReturnType<typeof bootKernel>> | null = null;
    const init = m.exec.spawn('init', async () => {
      booted = await bootKernel({
        tree: this.tree,
        timer: m.sched,
        // the GPU gets its real driver (ring in DMA memory); the rest are the built-in ones
        drivers: [
          ...builtinDrivers().filter((d) => d.name !== 'iommu-lab-gpu'),
          iommuLabGpuDriver({ machine: m, dma: this.dma }),
          this.adrenoDriver,
          this.smmuDriver,
          this.armSmmuDriver,
          ...(this.opts.clientDrivers === true ? genericClientDrivers() : []),
        ].filter((d) => !this.opts.omitDrivers?.includes(d.name)),
        iommuTable: this.iommuTable,
        policy: this.opts.policy,
        deferredProbeTimeoutNs: this.opts.deferredProbeTimeoutNs,
        deferStrategy: this.opts.deferStrategy,
        modules: this.opts.modules,
        log: (line, dev) => {
          this.opts.log?.(line);
          // a device's message goes out as dev_printk prints it: "<driver or bus> <device>: ..."
          if (dev !== undefined) m.trace.emit(dev.prefix, 'log', dev.message, {}, dev.level);
          else m.trace.emit('driver-core', 'log', line.replace(/^\[[^\]]*\] /, ''), {}, 'info');
        },
        beforePopulate: (core) => {
          this.core = core;
          core.iommuHooks = {
            probeDevice: (dev: Device) => this.iommu.probeDevice(dev),
            releaseDevice: (dev: Device) => this.iommu.releaseDevice(dev),
          };
        },
      });
    });
    await m.sched.runUntil(() => init.finished);
    if (booted === null)
      throw new Error(`kernel boot did not complete${init.error ? `: ${String(init.error)}` : ''}`);
    await runUntilProbeDone(this.core, m.sched);
    // the SMMUv3 driver's event / PRI hooks go to the fault layer (io-pgfault)
    if (this.opts.faults !== false)
      for (const inst of this.smmuDriver.instances)
        this.smmuFaults.push(new ArmSmmuV3Faults(this.faults, inst.smmu, inst.iommu));
    if (this.opts.faults !== false)
      for (const inst of this.armSmmuDriver.instances)
        this.armSmmuFaults.push(new ArmSmmuV2Faults(this.faults, inst.smmu, inst.iommu));
  }

  device(pathOrName: string): Device | undefined {
    return this.core.devices.find((d) => d.name === pathOrName || d.ofNode?.path === pathOrName);
  }
}
