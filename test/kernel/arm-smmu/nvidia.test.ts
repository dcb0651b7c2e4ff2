// NVIDIA Tegra194/234 (nvidia,smmu-500): two MMU-500 instances behind one node, programmed
// together (every write to both, reads from the first); a fault in either instance is found by
// the interrupt handlers, which scan every instance, and cleared in the instance that has it.

import { describe, expect, it } from 'vitest';
import { buildBoard } from '../../../src/api/board.ts';
import { PlatformDmaMaster } from '../../../src/hw/devices/platform-master.ts';
import { Kernel } from '../../../src/kernel/init/kernel.ts';
import { ArmSmmuV2Iommu } from '../../../src/kernel/iommu/arm-smmu/iommu.ts';
import { iommuMap } from '../../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { parseDts } from '../../../src/kernel/of/dts.ts';
import { inTask } from '../../integration/stack-helpers.ts';

const DTS = `/dts-v1/;
/ {
  #address-cells = <2>;
  #size-cells = <2>;
  interrupt-parent = <&gic>;
  memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x40000000>; };
  gic: interrupt-controller@8000000 { compatible = "arm,gic-v3"; #interrupt-cells = <3>; interrupt-controller; reg = <0x0 0x8000000 0x0 0x10000>; };
  smmu: iommu@12000000 {
    compatible = "nvidia,tegra194-smmu", "nvidia,smmu-500";
    reg = <0x0 0x12000000 0x0 0x800000>, <0x0 0x11000000 0x0 0x800000>;
    #global-interrupts = <2>;
    interrupts = <0 170 4>, <0 232 4>, ${Array.from({ length: 64 }, () => '<0 170 4>').join(', ')};
    #iommu-cells = <1>;
    stream-match-mask = <0x7f80>;
  };
  m@a000000 { compatible = "iommu-lab,dma-master"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&smmu 0x14>; };
};
`;

describe('nvidia,smmu-500', () => {
  it('both instances translate alike; a fault in the second is handled from the shared interrupt', async () => {
    const tree = parseDts(DTS);
    const board = buildBoard(tree, { seed: 1 });
    const k = new Kernel({ machine: board.machine, tree });
    await k.boot();
    const inst = k.armSmmuDriver.instances[0]!;
    expect(inst.smmu.io.instances).toBe(2);
    const [hw0, hw1] = board.smmuV2s[0]!.hw;
    const dev = k.core.devices.find((d) => d.ofNode?.path === '/m@a000000')!;
    const dom = await inTask(board.machine, async () => {
      const d = (await k.iommu.domainAllocPaging(dev)) as never;
      expect(await k.iommu.attachDevice(d, dev)).toBe(0);
      return d;
    });
    const sd = ArmSmmuV2Iommu.domainOf(dom)!;
    const pa = board.machine.pages.alloc(0, 'test');
    // the walk-cache erratum: PAGE_SIZE only
    expect(sd.domain.pgsizeBitmap).toBe(0x1000);
    expect(iommuMap(dom, 0x10_0000, pa, 0x1000, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    const m0 = new PlatformDmaMaster(hw0!, 0x14, { name: 'via0' });
    const m1 = new PlatformDmaMaster(hw1!, 0x14, { name: 'via1' });
    for (const m of [m0, m1]) {
      const ok = m.read(0x10_0000, 64);
      await board.machine.sched.runUntil(() => ok.state !== 'running');
      expect(ok.state).toBe('done');
    }
    // a fault through the second instance: found by the scan, printed, cleared there
    const bad = m1.read(0x20_0000, 64);
    await board.machine.sched.runUntil(() => bad.state !== 'running');
    await board.machine.sched.runUntilIdle();
    expect(bad.state).toBe('failed');
    expect(inst.smmu.stats.contextFaults).toBe(1);
    const cb = sd.cfg!.cbndx;
    expect(hw1!.banks[cb]!.fsr).toBe(0);
    expect(hw0!.banks[cb]!.fsr).toBe(0);
    expect(hw1!.counters.contextFaults).toBe(1);
    expect(hw0!.counters.contextFaults).toBe(0);
    expect(board.machine.bugs).toEqual([]);
  });
});
