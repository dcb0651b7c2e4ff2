/**
 * Stall models as the driver sees them (arm_smmu_probe_device / arm_smmu_make_*): with stalls
 * configurable, only `dma-can-stall` masters stall and the others get S1STALLD; with stall
 * forced, every master is stall-enabled (CD.S) and no STE carries S1STALLD.
 */
import { describe, expect, it } from 'vitest';
import { CD } from '../../src/arch/smmuv3/cd.ts';
import { STE } from '../../src/arch/smmuv3/ste.ts';
import { bootStack, dev, PCI_PATH, smmuInstance } from './stack-helpers.ts';

const bit = (words: bigint[], f: { word: number; lsb: number }) => (words[f.word]! >> BigInt(f.lsb)) & 1n;

describe('SMMUv3 stall models', () => {
  it.each([
    ['stall', { gpu: 1n, pci: 0n }, { gpu: 0n, pci: 1n }],
    ['force', { gpu: 1n, pci: 1n }, { gpu: 0n, pci: 0n }],
  ] as const)('STALL_MODEL %s: CD.S and STE.S1STALLD per master', async (model, cdS, s1stalld) => {
    const s = await bootStack({ trace: false, board: { smmu: { stallModel: model } } });
    const { smmu, iommu } = smmuInstance(s.k);
    for (const [name, path, sid] of [
      ['gpu', '/soc/gpu@a000000', 0x100],
      ['pci', PCI_PATH, 8],
    ] as const) {
      const master = iommu.masterOf(dev(s.k, path))!;
      expect(master.stallEnabled, `${model} ${name}`).toBe(cdS[name] === 1n);
      expect(bit(smmu.readCd(master.cdTable!, 0), CD.S), `${model} ${name} CD.S`).toBe(cdS[name]);
      expect(bit(smmu.readSte(sid), STE.S1STALLD), `${model} ${name} S1STALLD`).toBe(s1stalld[name]);
    }
    // the hardware accepted every STE it was given (an ILLEGAL one would have raised C_BAD_STE)
    expect(s.board.smmu.stats().evtq!.written ?? 0).toBe(0);
  });
});
