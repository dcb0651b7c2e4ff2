// Clock providers of the model: fixed-clock (drivers/clk/clk-fixed-rate.c) and the default
// platform's simple clock controller, which gates its parent clock into numbered outputs.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { type Driver, ProbeDefer, ProbeError } from '../base/driver.ts';
import { EINVAL } from '../base/errno.ts';
import { type Clk, type ClockProvider, clkGet } from './resources.ts';

export const fixedClockDriver: Driver = {
  name: 'fixed-clock',
  bus: 'platform',
  ofMatch: ['fixed-clock'],
  probe(dev: Device, core: DriverCore) {
    const node = dev.ofNode!;
    const rate = node.u32('clock-frequency');
    if (rate === undefined) return new ProbeError(-EINVAL, `${node.path}: no clock-frequency`);
    const clk: Clk = { name: node.string('clock-output-names') ?? node.name, rateHz: rate, enabled: false };
    const provider: ClockProvider = { get: (args) => (args.length === 0 ? clk : null) };
    core.registerProvider('clock', node, provider, dev);
    dev.driverData = clk;
    return 0;
  },
};

/** `iommu-lab,clock-controller`: #clock-cells = <1>; output i runs at the parent's rate. */
export const simpleClockControllerDriver: Driver = {
  name: 'iommu-lab-clkc',
  bus: 'platform',
  ofMatch: ['iommu-lab,clock-controller'],
  probe(dev: Device, core: DriverCore) {
    const node = dev.ofNode!;
    const parent = clkGet(core, dev, 0);
    if (parent instanceof ProbeDefer || parent instanceof ProbeError) return parent;
    parent.enabled = true;
    const count = node.u32('iommu-lab,clock-count') ?? 8;
    const names = node.strings('clock-output-names') ?? [];
    const outputs: Clk[] = [];
    for (let i = 0; i < count; i++) {
      outputs.push({ name: names[i] ?? `${node.name}.${i}`, rateHz: parent.rateHz, enabled: false });
    }
    const provider: ClockProvider = {
      get: (args) => (args.length === 1 ? (outputs[args[0]!] ?? null) : null),
    };
    core.registerProvider('clock', node, provider, dev);
    dev.driverData = outputs;
    return 0;
  },
};
