// Fuzz (issue 22): a board whose IOMMU references are random — `iommus` cells, `#iommu-cells`,
// `iommu-map` entries and mask, StreamIDs up to 2^32-1, an SMMU reg too small or missing —
// boots with `boot --json` and `boot --check` to a report or findings: exit 0 or 1, never an
// internal error.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import { socBoard } from './dts.ts';

const u32 = fc.oneof(fc.nat(0x20), fc.constantFrom(0, 0xffff, 0x10000, 0xffffffff), fc.nat());

const board = fc
  .record({
    cells: fc.nat(3),
    masterCells: fc.array(u32, { maxLength: 5 }),
    master2Cells: fc.array(u32, { maxLength: 3 }),
    map: fc.array(fc.tuple(u32, u32, u32), { maxLength: 4 }),
    mask: fc.option(u32, { nil: undefined }),
    smmuSize: fc.constantFrom(0x20000, 0x1000, 0),
    disabled: fc.boolean(),
    ranges: fc.option(fc.tuple(u32, u32), { nil: undefined }),
  })
  .map((b) =>
    socBoard(`		smmu: iommu@9000000 {
			compatible = "arm,smmu-v3";
			${b.smmuSize ? `reg = <0x0 0x09000000 0x0 ${b.smmuSize}>;` : ''}
			#iommu-cells = <${b.cells}>;
			${b.disabled ? 'status = "disabled";' : ''}
		};
		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&smmu ${b.masterCells.join(' ')}>; };
		crypto@a100000 {
			compatible = "vendor,crypto";
			reg = <0x0 0xa100000 0x0 0x1000>;
			iommus = <&smmu ${b.master2Cells.join(' ')}>;
			${b.ranges ? `dma-ranges = <${b.ranges[0]} ${b.ranges[1]}>;` : ''}
		};
		pcie@40000000 {
			compatible = "pci-host-ecam-generic";
			device_type = "pci";
			reg = <0x0 0x40000000 0x0 0x1000000>;
			#address-cells = <3>;
			#size-cells = <2>;
			${b.map.length ? `iommu-map = <${b.map.map(([r, o, l]) => `${r} &smmu ${o} ${l}`).join(' ')}>;` : ''}
			${b.mask !== undefined ? `iommu-map-mask = <${b.mask}>;` : ''}
		};`),
  );

async function run(argv: string[], dts: string) {
  let out = '';
  let err = '';
  const rc = await main(['boot', ...argv, 'fuzz.dts'], {
    out: (s) => {
      out += `${s}\n`;
    },
    err: (s) => {
      err += `${s}\n`;
    },
    readFile: async (p) => {
      if (p === 'fuzz.dts') return new TextEncoder().encode(dts);
      throw new Error(`no ${p}`);
    },
    readStdin: async () => '',
    writeFile: async () => {},
  });
  return { rc, out, err };
}

describe('fuzz: boards with random IOMMU references (issue 22)', () => {
  it('boot --json and boot --check: exit 0 or 1, never an internal error', async () => {
    await fc.assert(
      fc.asyncProperty(board, async (dts) => {
        for (const argv of [['--json'], ['--check']]) {
          const r = await run(argv, dts);
          expect(r.err).not.toMatch(/internal error/);
          expect([0, 1]).toContain(r.rc);
          if (argv[0] === '--json') expect(r.rc).toBe(0);
        }
      }),
      { numRuns: 40, seed: 22 },
    );
  });
});
