// Issue 22, "Done when" 3 (the corpus part): `boot --check` on every corpus board, findings per
// board and class. untranslated-dma depends on which IOMMU kinds the model has, so it is checked
// against the report (one per master bound without translation); the other classes are fixed by
// the device trees and listed here.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { boardBootReport, bootBoard } from '../../src/api/board-boot.ts';
import { checkBoard, formatFinding } from '../../src/api/board-check.ts';
import { parseFdt } from '../../src/kernel/of/fdt.ts';
import { LINUX_IOMMU_POLICY } from '../../src/kernel/of/of-iommu.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const corpusDir = path.resolve(here, '../../../shared/corpus/dtb');
const haveCorpus = existsSync(corpusDir);
if (!haveCorpus) console.warn(`corpus checks skipped: ${corpusDir} not found`);
const boards = haveCorpus ? readdirSync(corpusDir).filter((f) => f.endsWith('.dtb')) : [];

/** Findings per board and class, untranslated-dma aside. */
const EXPECTED: Record<string, Record<string, number>> = {
  'apq8096-db820c': {},
  'armada-8040-mcbin': { 'iommus-disabled': 9 },
  'fsl-ls1028a-rdb': {},
  'fvp-base-revc': {},
  'glymur-crd': {},
  'hip07-d05': {},
  'imx8qm-mek': { 'shared-stream': 2 },
  'imx95-19x19-evk': { 'iommus-disabled': 14, 'iommu-map-gap': 9 },
  'juno-r2': { 'shared-stream': 1 },
  'morello-sdp': {},
  'qrb5165-rb5': { 'iommu-map-gap': 3, 'shared-stream': 8 },
  'rk3588-rock-5b': {},
  'sdm845-db845c': { 'iommu-map-gap': 30, 'shared-stream': 5 },
  'tegra194-p2972-0000': {},
  'tegra234-p3737-0000-p3701-0000': {},
  'x1e80100-crd': { 'shared-stream': 2 },
};

describe.skipIf(!haveCorpus)('boot --check on the corpus (issue 22)', () => {
  it.each(boards)('%s', async (file) => {
    const tree = parseFdt(readFileSync(path.join(corpusDir, file)));
    const b = await bootBoard(tree, { policy: { ...LINUX_IOMMU_POLICY } });
    const r = boardBootReport(b, file, null);
    const fs = checkBoard(r, tree, b.kernel.core);
    const counts: Record<string, number> = {};
    for (const f of fs) if (f.check !== 'untranslated-dma') counts[f.check] = (counts[f.check] ?? 0) + 1;
    expect(counts).toEqual(EXPECTED[file.replace(/\.dtb$/, '')] ?? {});
    const untranslated = r.devices.filter(
      (d) => d.iommu !== null && d.state === 'bound' && d.dmaOps !== 'iommu',
    );
    expect(fs.filter((f) => f.check === 'untranslated-dma')).toHaveLength(untranslated.length);
    // a .dtb has no source positions: findings name the node and property
    for (const f of fs) {
      expect(f.file).toBeUndefined();
      expect(formatFinding(f, file)).toMatch(
        new RegExp(`^${file.replace(/\./g, '\\.')}: (error|warning) \\(${f.check}\\): /`),
      );
    }
    // no master is left deferred with the default policy
    expect(fs.some((f) => f.check === 'deferred-master')).toBe(false);
  });
});
