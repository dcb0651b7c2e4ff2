// Stand-ins for SoC clock and power controllers whose real drivers the model does not have
// (Qualcomm GCC / GPUCC / MMCC / DISPCC / VIDEOCC, Arm SCPI power domains), as the boot firmware
// leaves them: every clock output on at a nominal rate, every power domain (GDSC) on. They let
// consumers such as the SMMUs of the real boards probe the way they do on Linux once those
// drivers are up; they model no clock tree, rates or gating.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import type { Driver } from '../base/driver.ts';
import type { Clk, ClockProvider, PowerDomain, PowerDomainProvider } from './resources.ts';

const NOMINAL_HZ = 19_200_000;

function registerAlwaysOn(dev: Device, core: DriverCore): number {
  const node = dev.ofNode!;
  const clocks = new Map<string, Clk>();
  const domains = new Map<string, PowerDomain>();
  if (node.has('#clock-cells')) {
    const p: ClockProvider = {
      get: (args) => {
        const k = args.join(',');
        let c = clocks.get(k);
        if (c === undefined)
          clocks.set(k, (c = { name: `${node.name}[${k}]`, rateHz: NOMINAL_HZ, enabled: true }));
        return c;
      },
    };
    core.registerProvider('clock', node, p, dev);
  }
  if (node.has('#power-domain-cells')) {
    const p: PowerDomainProvider = {
      get: (args) => {
        const k = args.join(',');
        let d = domains.get(k);
        if (d === undefined) domains.set(k, (d = { name: `${node.name}.pd[${k}]`, on: true }));
        return d;
      },
    };
    core.registerProvider('power-domain', node, p, dev);
  }
  dev.driverData = { clocks, domains };
  return 0;
}

/** Qualcomm clock controllers (gcc, gpucc, mmcc, dispcc, videocc, camcc): always-on stand-ins. */
export const qcomClockControllerStandIn: Driver = {
  name: 'qcom-cc (stand-in)',
  bus: 'platform',
  ofMatch: [
    'qcom,gcc-*',
    'qcom,*-gcc',
    'qcom,*-gpucc',
    'qcom,mmcc-*',
    'qcom,*-dispcc',
    'qcom,*-videocc',
    'qcom,*-camcc',
  ],
  probe: registerAlwaysOn,
};

/** Arm SCPI power domains (Juno): always-on stand-in. */
export const scpiPowerDomainsStandIn: Driver = {
  name: 'scpi-power-domains (stand-in)',
  bus: 'platform',
  ofMatch: ['arm,scpi-power-domains'],
  probe: registerAlwaysOn,
};
