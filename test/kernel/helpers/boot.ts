import type { DeferStrategy } from '../../../src/kernel/base/core.ts';
import type { Device } from '../../../src/kernel/base/device.ts';
import type { Driver } from '../../../src/kernel/base/driver.ts';
import { builtinDrivers } from '../../../src/kernel/drivers/index.ts';
import { IommuDriverTable } from '../../../src/kernel/drivers/iommu-table.ts';
import { bootKernel, runUntilProbeDone } from '../../../src/kernel/init/boot.ts';
import { parseDts } from '../../../src/kernel/of/dts.ts';
import { type IommuFallbackPolicy, LINUX_IOMMU_POLICY } from '../../../src/kernel/of/of-iommu.ts';
import { Scheduler } from '../../../src/platform/scheduler.ts';
import { makeTestIommuDriver, testMasterDriver } from './test-iommu.ts';

export interface TestBootOptions {
  drivers?: Driver[];
  policy?: Partial<IommuFallbackPolicy>;
  modules?: boolean;
  timeoutNs?: number;
  strategy?: DeferStrategy;
  /** Stop after late_initcall, before virtual time runs (the timeout has not fired). */
  noTime?: boolean;
}

export async function bootDts(dts: string, o: TestBootOptions = {}) {
  const tree = parseDts(dts);
  const sched = new Scheduler();
  const testIommu = makeTestIommuDriver();
  const k = await bootKernel({
    tree,
    timer: sched,
    drivers: o.drivers ?? [...builtinDrivers(), testIommu, testMasterDriver],
    iommuTable: new IommuDriverTable(),
    policy: { ...LINUX_IOMMU_POLICY, ...o.policy },
    modules: o.modules,
    deferredProbeTimeoutNs: o.timeoutNs,
    deferStrategy: o.strategy,
  });
  if (!o.noTime) await runUntilProbeDone(k.core, sched);
  const dev = (path: string): Device => {
    const n = tree.findByPath(path);
    if (!n) throw new Error(`no node ${path}`);
    const d = k.core.deviceForNode(n);
    if (!d) throw new Error(`no device for ${path}`);
    return d;
  };
  const run = () => runUntilProbeDone(k.core, sched);
  return { ...k, sched, dev, testIommu, run };
}

/** A DTS skeleton: 32-bit-cell root with 1 GiB of RAM at 0x8000_0000, plus `body`. */
export function dts(body: string, memory = '<0x0 0x80000000 0x0 0x40000000>'): string {
  return `/dts-v1/;
/ {
  #address-cells = <2>;
  #size-cells = <2>;
  memory@80000000 { device_type = "memory"; reg = ${memory}; };
${body}
};
`;
}
