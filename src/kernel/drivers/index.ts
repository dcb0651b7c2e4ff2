// The built-in drivers of the kernel model, in registration (initcall) order.

import type { Driver } from '../base/driver.ts';
import { dmaEngineDriver, dmaMasterDriver, gpuDriver } from './clients.ts';
import { fixedClockDriver, simpleClockControllerDriver } from './clk.ts';
import { gicV3Driver, gicV3ItsDriver } from './gic.ts';
import { pciHostEcamDriver, pciTestDeviceDriver } from './pci.ts';
import { simplePowerControllerDriver } from './power.ts';
import { simpleBusDriver } from './simple-bus.ts';
import { qcomClockControllerStandIn, scpiPowerDomainsStandIn } from './soc-clocks.ts';

export function builtinDrivers(): Driver[] {
  return [
    simpleBusDriver,
    gicV3Driver,
    gicV3ItsDriver,
    // Client drivers before their providers, so that boot exercises deferral like a real kernel whose
    // initcall order does not follow the dependency order.
    gpuDriver,
    dmaEngineDriver,
    dmaMasterDriver,
    pciHostEcamDriver,
    pciTestDeviceDriver,
    simplePowerControllerDriver,
    simpleClockControllerDriver,
    fixedClockDriver,
    qcomClockControllerStandIn,
    scpiPowerDomainsStandIn,
  ];
}
