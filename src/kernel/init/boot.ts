// start_kernel() as far as devices go: populate the device tree, run the driver initcalls, then
// late_initcall (the deferred-probe pass) and let virtual time run until probing is over (including
// the deferred-probe timeout).

import { type CoreTimer, type DeferStrategy, DriverCore, type DriverCoreOptions } from '../base/core.ts';
import type { Driver } from '../base/driver.ts';
import { builtinDrivers } from '../drivers/index.ts';
import { type IommuDriverTable, iommuDriverTable } from '../drivers/iommu-table.ts';
import { type IommuFallbackPolicy, LINUX_IOMMU_POLICY } from '../of/of-iommu.ts';
import { createPciBus, createPlatformBus, ofPlatformPopulate, ofRamTop } from '../of/of-platform.ts';
import type { DeviceTree } from '../of/tree.ts';

export interface BootOptions {
  tree: DeviceTree;
  timer: CoreTimer;
  /** Drivers registered at initcall time; default builtinDrivers() + implemented IOMMU drivers. */
  drivers?: Driver[];
  iommuTable?: IommuDriverTable;
  policy?: IommuFallbackPolicy;
  deferStrategy?: DeferStrategy;
  deferredProbeTimeoutNs?: number;
  modules?: boolean;
  log?: DriverCoreOptions['log'];
  /** Called with the new driver core before devices are populated (iommu_init and friends). */
  beforePopulate?: (core: DriverCore) => void;
}

export interface BootedKernel {
  core: DriverCore;
  tree: DeviceTree;
  iommuTable: IommuDriverTable;
  policy: IommuFallbackPolicy;
}

/** Boots up to and including late_initcall. Run virtual time afterwards (runUntilProbeDone). */
export async function bootKernel(opts: BootOptions): Promise<BootedKernel> {
  const iommuTable = opts.iommuTable ?? iommuDriverTable;
  const policy = opts.policy ?? { ...LINUX_IOMMU_POLICY };
  const core = new DriverCore({
    timer: opts.timer,
    deferStrategy: opts.deferStrategy,
    deferredProbeTimeoutNs: opts.deferredProbeTimeoutNs,
    modules: opts.modules,
    log: opts.log,
  });
  core.tree = opts.tree;
  core.ramTop = ofRamTop(opts.tree);
  core.registerBus(createPlatformBus(opts.tree, policy));
  core.registerBus(createPciBus(opts.tree, policy));
  opts.beforePopulate?.(core);
  // arch_initcall: of_platform_default_populate_init
  await ofPlatformPopulate(core, opts.tree);
  // device_initcall / module_init
  const drivers = opts.drivers ?? [...builtinDrivers(), ...iommuTable.implementedDrivers()];
  for (const d of drivers) await core.registerDriver(d);
  await core.settled();
  await core.lateInitcall();
  await core.settled();
  return { core, tree: opts.tree, iommuTable, policy };
}

/** Runs virtual time until no timer is pending and no probe work is left. */
export async function runUntilProbeDone(
  core: DriverCore,
  sched: { readonly pending: number; runUntilIdle(): Promise<number> },
): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    await core.settled();
    if (sched.pending === 0) return;
    await sched.runUntilIdle();
  }
}
