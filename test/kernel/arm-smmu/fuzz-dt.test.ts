// Fuzz of the arm-smmu driver's input from firmware: device trees with SMMUv1/v2 nodes of any
// variant and odd shape (register windows of any size, #global-interrupts missing or larger
// than the interrupt list, too few context interrupts, #iommu-cells 0..3, masks and StreamIDs
// beyond what the SMMU implements) and masters pointing at them. Boot never throws, no kernel
// task crashes, and every node ends registered, or refused with a reason (Linux's answers:
// -ENODEV for missing interrupts, -EINVAL for an out-of-range StreamID ...).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildBoard } from '../../../src/api/board.ts';
import { Kernel } from '../../../src/kernel/init/kernel.ts';
import { parseDts } from '../../../src/kernel/of/dts.ts';

const COMPATS = [
  '"arm,mmu-500"',
  '"arm,mmu-401", "arm,smmu-v1"',
  '"arm,mmu-400", "arm,smmu-v1"',
  '"arm,smmu-v2"',
  '"qcom,sdm845-smmu-v2", "qcom,adreno-smmu", "qcom,smmu-v2"',
  '"qcom,sm8250-smmu-500", "qcom,smmu-500", "arm,mmu-500"',
  '"nvidia,tegra194-smmu", "nvidia,smmu-500"',
  '"marvell,ap806-smmu-500", "arm,mmu-500"',
];

interface NodeSpec {
  compat: string;
  regSize: number;
  globals: number | undefined;
  irqs: number;
  cells: number;
  mask: number | undefined;
  masters: number[][];
}

const node: fc.Arbitrary<NodeSpec> = fc.record({
  compat: fc.constantFrom(...COMPATS),
  regSize: fc.constantFrom(0x1000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x12345),
  globals: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
  irqs: fc.integer({ min: 0, max: 40 }),
  cells: fc.integer({ min: 0, max: 3 }),
  mask: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  masters: fc.array(fc.array(fc.integer({ min: 0, max: 0x1ffff }), { maxLength: 3 }), { maxLength: 3 }),
});

function dts(n: NodeSpec): string {
  const irqs = Array.from({ length: n.irqs }, (_, i) => `<0 ${100 + i} 4>`).join(', ');
  return `/dts-v1/;
/ {
  #address-cells = <2>;
  #size-cells = <2>;
  interrupt-parent = <&gic>;
  memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x40000000>; };
  gic: interrupt-controller@8000000 { compatible = "arm,gic-v3"; #interrupt-cells = <3>; interrupt-controller; reg = <0x0 0x8000000 0x0 0x10000>; };
  smmu: iommu@10000000 {
    compatible = ${n.compat};
    reg = <0x0 0x10000000 0x0 0x${n.regSize.toString(16)}>, <0x0 0x11000000 0x0 0x${n.regSize.toString(16)}>;
    ${n.globals === undefined ? '' : `#global-interrupts = <${n.globals}>;`}
    ${irqs ? `interrupts = ${irqs};` : ''}
    #iommu-cells = <${n.cells}>;
    ${n.mask === undefined ? '' : `stream-match-mask = <0x${n.mask.toString(16)}>;`}
  };
${n.masters
  .map(
    (c, i) => `  m@${(0xa000000 + i * 0x1000).toString(16)} {
    compatible = "iommu-lab,dma-master";
    reg = <0x0 0x${(0xa000000 + i * 0x1000).toString(16)} 0x0 0x1000>;
    iommus = <&smmu${c.map((x) => ` 0x${x.toString(16)}`).join('')}>;
  };`,
  )
  .join('\n')}
};
`;
}

describe('arm-smmu: fuzzed device trees', () => {
  it('boot never throws; every SMMU node registers or is refused with a reason', async () => {
    const outcomes = { registered: 0, refused: 0, mastersProbed: 0 };
    await fc.assert(
      fc.asyncProperty(node, async (n) => {
        const tree = parseDts(dts(n));
        const board = buildBoard(tree, { seed: 1 });
        const k = new Kernel({ machine: board.machine, tree, deferredProbeTimeoutNs: 1_000_000 });
        await k.boot();
        expect(board.machine.bugs.filter((b) => b.kind === 'task-crash')).toEqual([]);
        const smmuNode = tree.findByPath('/iommu@10000000')!;
        const registered = k.core.iommuFor(smmuNode) !== undefined;
        const dev = k.core.deviceForNode(smmuNode);
        outcomes[registered ? 'registered' : 'refused']++;
        if (!registered) {
          // a refused probe says why, with an errno
          expect(dev).toBeDefined();
          expect(dev!.state).not.toBe('bound');
          expect(dev!.reason).toBeTruthy();
          if (dev!.state === 'failed') expect(dev!.error).toBeLessThan(0);
        }
        if (registered) {
          const inst = k.armSmmuDriver.instances[0]!;
          // masters: each one probed by the SMMU or not; nothing half-allocated
          for (const m of inst.iommu.allMasters())
            for (const i of m.smendx) expect(i).toBeGreaterThanOrEqual(0);
          outcomes.mastersProbed += inst.iommu.allMasters().length;
          const used = inst.smmu.s2crs.reduce((a, s) => a + s.count, 0);
          expect(used).toBe(inst.iommu.allMasters().reduce((a, m) => a + m.smendx.length, 0));
        }
      }),
      { numRuns: 60, seed: 21 },
    );
    // the generator reaches both outcomes, and masters behind registered SMMUs
    expect(outcomes.registered).toBeGreaterThan(5);
    expect(outcomes.refused).toBeGreaterThan(5);
    expect(outcomes.mastersProbed).toBeGreaterThan(0);
  });
});
