import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'pass',
  masters: [{ name: 'm', streamIds: [0x200] }],
  async run({ lab, expect, rng }) {
    const m = lab.master('m');
    const pa = lab.allocPages(0);
    const iova = lab.dma.mapSingle(m.device, pa, 4096, 'bidirectional');
    const w = await m.write(iova, rng.bytes(16));
    expect(w.ok).toBe(true);
    return { iova, pick: rng.int(0, 1000) };
  },
});
