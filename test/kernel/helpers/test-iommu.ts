// Test doubles: an IOMMU driver with a configurable probe outcome, and a generic DMA master driver.
//
// The IOMMU's outcome comes from its node:
//   test,probe = "ok" (default) | "error" | "defer"   test,defer-count = <N> (defer N times, then ok)
// and it takes its clocks and power domains first (so it "depends on a clock" when it has `clocks`).

import type { DriverCore } from '../../../src/kernel/base/core.ts';
import type { Device } from '../../../src/kernel/base/device.ts';
import { dmaSetMaskAndCoherent } from '../../../src/kernel/base/dma-mapping.ts';
import { type Driver, ProbeDefer, ProbeError } from '../../../src/kernel/base/driver.ts';
import { EIO } from '../../../src/kernel/base/errno.ts';
import { fwspecAddIds, type IommuOps } from '../../../src/kernel/base/iommu-provider.ts';
import { getClocksAndPower } from '../../../src/kernel/drivers/resources.ts';

export interface TestIommuLog {
  probes: string[];
  xlates: Array<{ dev: string; iommu: string; args: number[] }>;
}

export function makeTestIommuDriver(
  log: TestIommuLog = { probes: [], xlates: [] },
): Driver & { log: TestIommuLog } {
  const deferred = new Map<string, number>();
  return {
    name: 'test-iommu',
    bus: 'platform',
    ofMatch: ['iommu-lab,test-iommu'],
    log,
    probe(dev: Device, core: DriverCore) {
      const node = dev.ofNode!;
      log.probes.push(node.path);
      const res = getClocksAndPower(core, dev);
      if (res) return res;
      const mode = node.string('test,probe') ?? 'ok';
      // -EIO: a failed probe (-ENODEV / -ENXIO would reject the match: "not my device")
      if (mode === 'error') return new ProbeError(-EIO, 'test IOMMU configured to fail');
      const n = deferred.get(node.path) ?? 0;
      const want = node.u32('test,defer-count') ?? (mode === 'defer' ? 1_000_000 : 0);
      if (n < want) {
        deferred.set(node.path, n + 1);
        return new ProbeDefer(`test IOMMU deferral ${n + 1}/${want}`);
      }
      const ops: IommuOps = {
        name: 'test-iommu',
        ofXlate(master, args) {
          log.xlates.push({ dev: master.name, iommu: node.path, args: [...args] });
          return fwspecAddIds(master, args);
        },
      };
      const r = core.registerIommu(node, ops, dev);
      return r;
    },
    remove(dev: Device, core: DriverCore) {
      core.unregisterIommu(dev.ofNode!);
    },
  };
}

export const testMasterDriver: Driver = {
  name: 'test-master',
  bus: 'platform',
  ofMatch: ['iommu-lab,test-master'],
  probe(dev: Device, core: DriverCore) {
    const r = getClocksAndPower(core, dev);
    if (r) return r;
    const bits = dev.ofNode!.u32('test,dma-bits');
    if (bits !== undefined) {
      const e = dmaSetMaskAndCoherent(core, dev, bits);
      if (e) return e;
    }
    return 0;
  },
};
