// `iommu-lab,power-controller`: a power-domain provider (#power-domain-cells = <1>) that needs its
// own clock first, like most SoC power controllers.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { type Driver, ProbeDefer, ProbeError } from '../base/driver.ts';
import { clkBulkGetEnable, type PowerDomain, type PowerDomainProvider } from './resources.ts';

export const simplePowerControllerDriver: Driver = {
  name: 'iommu-lab-power',
  bus: 'platform',
  ofMatch: ['iommu-lab,power-controller'],
  probe(dev: Device, core: DriverCore) {
    const node = dev.ofNode!;
    const clks = clkBulkGetEnable(core, dev);
    if (clks instanceof ProbeDefer || clks instanceof ProbeError) return clks;
    const count = node.u32('iommu-lab,domain-count') ?? 4;
    const domains: PowerDomain[] = [];
    for (let i = 0; i < count; i++) domains.push({ name: `${node.name}.pd${i}`, on: false });
    const provider: PowerDomainProvider = {
      get: (args) => (args.length === 1 ? (domains[args[0]!] ?? null) : null),
    };
    core.registerProvider('power-domain', node, provider, dev);
    dev.driverData = domains;
    return 0;
  },
};
