// The arm-smmu driver on the SMMUv1/v2-family boards of the corpus: every available SMMU gets a
// hardware model sized from its node and is probed by the driver; the counts are asserted per
// board (SMMUs, hardware instances, context banks, stream-match groups as the driver read them).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildBoard } from '../../../src/api/board.ts';
import { isArmSmmuV2Node } from '../../../src/api/board-smmuv2.ts';
import { Kernel } from '../../../src/kernel/init/kernel.ts';
import { parseFdt } from '../../../src/kernel/of/fdt.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const corpusDir = path.resolve(repoRoot, '../shared/corpus/dtb');

/** Per board: SMMU path -> [instances, context banks, stream-match groups]. */
const EXPECTED: Record<string, Record<string, [number, number, number]>> = {
  'sdm845-db845c.dtb': { '/soc@0/iommu@5040000': [1, 8, 48], '/soc@0/iommu@15000000': [1, 64, 128] },
  'qrb5165-rb5.dtb': { '/soc@0/iommu@3da0000': [1, 8, 128], '/soc@0/iommu@15000000': [1, 96, 128] },
  'apq8096-db820c.dtb': {
    '/soc@0/iommu@b40000': [1, 2, 48],
    '/soc@0/iommu@d00000': [1, 2, 48],
    '/soc@0/iommu@d40000': [1, 7, 48],
    '/soc@0/iommu@da0000': [1, 2, 48],
    '/soc@0/iommu@1600000': [1, 12, 48],
  },
  'juno-r2.dtb': {
    '/iommu@2b500000': [1, 8, 16],
    '/iommu@2b600000': [1, 8, 16],
    '/iommu@7fb00000': [1, 8, 16],
    '/iommu@7fb10000': [1, 8, 16],
    '/iommu@7fb20000': [1, 8, 16],
    '/iommu@7fb30000': [1, 8, 16],
  },
  'tegra234-p3737-0000-p3701-0000.dtb': {
    '/bus@0/iommu@8000000': [2, 128, 128],
    '/bus@0/iommu@10000000': [1, 128, 128],
    '/bus@0/iommu@12000000': [2, 128, 128],
  },
  'tegra194-p2972-0000.dtb': { '/bus@0/iommu@12000000': [2, 64, 128] },
  'imx8qm-mek.dtb': { '/iommu@51400000': [1, 32, 128] },
  'fsl-ls1028a-rdb.dtb': { '/soc/iommu@5000000': [1, 64, 128] },
  'x1e80100-crd.dtb': { '/soc@0/iommu@3da0000': [1, 25, 128], '/soc@0/iommu@15000000': [1, 96, 128] },
  'glymur-crd.dtb': { '/soc@0/iommu@15000000': [1, 112, 128] },
  // its AP806 SMMU is disabled in this tree
  'armada-8040-mcbin.dtb': {},
};

describe.skipIf(!existsSync(corpusDir))('arm-smmu on the corpus boards', () => {
  if (!existsSync(corpusDir)) console.log(`skipping arm-smmu corpus tests: ${corpusDir} not found`);
  for (const [file, want] of Object.entries(EXPECTED)) {
    it(`${file}: every available SMMUv1/v2 probed`, async () => {
      const tree = parseFdt(new Uint8Array(await readFile(path.join(corpusDir, file))));
      const board = buildBoard(tree, { seed: 1 });
      const k = new Kernel({ machine: board.machine, tree });
      await k.boot();
      const available = [...tree.root.walk()]
        .filter((n) => n.available && isArmSmmuV2Node(n))
        .map((n) => n.path);
      expect(available.sort()).toEqual(Object.keys(want).sort());
      const got: Record<string, [number, number, number]> = {};
      for (const inst of k.armSmmuDriver.instances) {
        got[inst.dev.ofNode!.path] = [
          inst.smmu.io.instances,
          inst.smmu.numContextBanks,
          inst.smmu.numMappingGroups,
        ];
        // registered with the IOMMU core and of_iommu
        expect(k.core.iommuFor(inst.dev.ofNode!)?.ops.name).toBe('arm-smmu');
      }
      expect(got).toEqual(want);
      // the hardware agrees with what the driver read
      for (const s of board.smmuV2s) {
        expect(s.hw[0]!.features.numCb).toBe(want[s.node.path]![1]);
        // reset ran: client access on, unmatched streams fault (disable_bypass)
        expect(s.hw.every((h) => (h.scr0 & 1) === 0 && ((h.scr0 >>> 10) & 1) === 1)).toBe(true);
      }
      // NVIDIA: the instances behind one node are programmed identically
      for (const s of board.smmuV2s.filter((x) => x.hw.length > 1)) {
        const [a, ...rest] = s.hw;
        for (const b of rest) {
          expect(b!.scr0).toBe(a!.scr0);
          expect([...b!.s2cr]).toEqual([...a!.s2cr]);
          expect([...b!.smr]).toEqual([...a!.smr]);
          expect([...b!.cbar]).toEqual([...a!.cbar]);
        }
      }
      expect(board.machine.bugs).toEqual([]);
    });
  }
});
