// The GICv3 and its ITS, as platform drivers. (Linux initialises irqchips early through
// IRQCHIP_DECLARE, before any device probes; here they simply bind first and register themselves as
// interrupt / MSI providers. Interrupt delivery itself is the platform's InterruptController.)

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import type { Driver } from '../base/driver.ts';

export const gicV3Driver: Driver = {
  name: 'gic-v3',
  bus: 'platform',
  ofMatch: ['arm,gic-v3'],
  probe(dev: Device, core: DriverCore) {
    core.registerProvider('interrupt', dev.ofNode!, { node: dev.ofNode }, dev);
    return 0;
  },
};

export const gicV3ItsDriver: Driver = {
  name: 'gic-v3-its',
  bus: 'platform',
  ofMatch: ['arm,gic-v3-its'],
  probe(dev: Device, core: DriverCore) {
    core.registerProvider('msi', dev.ofNode!, { node: dev.ofNode }, dev);
    return 0;
  },
};
