// A teardown bug: unmap without the TLB invalidation, and a device that still writes through.
//
// The driver unmaps a buffer and frees the pages, but the TLBI (and its CMD_SYNC) never reaches
// the SMMU - here injected on purpose ("skip-tlbi"), in real life a missed flush, a lazy flush
// queue someone forgot, or an invalidation racing the free. The page tables say "unmapped"; the
// SMMU's TLB still holds the old translation, so the device reaches the freed page - which the
// kernel has already handed to someone else. The same sequence without the injection faults.
//
//   npx iommu-lab run examples/teardown-missing-tlbi.mjs
import { defineScenario } from 'iommu-lab';

export default defineScenario({
  name: 'teardown-missing-tlbi',
  description: 'unmap with the TLBI skipped: the stale TLB entry lets the device write a reused page',
  masters: [{ name: 'nic', streamIds: [0x210] }],

  async run({ lab, expect }) {
    const nic = lab.master('nic');
    const dev = nic.device;
    const smmu = lab.smmu();

    async function teardown(skipTlbi) {
      const rx = lab.allocPages(0, 'rx buffer');
      const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
      // the device uses the buffer: its translation is now in the SMMU's TLB
      expect((await nic.write(iova, new Uint8Array(16).fill(0x11))).ok, 'DMA into the rx buffer').toBe(true);
      const cached = smmu.tlb().some((e) => Number(e.iova) === iova - (iova % 4096));
      // teardown: unmap (with or without its TLBI), free the page; the kernel reuses it at once
      if (skipTlbi)
        await lab.inject.during('skip-tlbi', () => lab.dma.unmapSingle(dev, iova, 4096, 'from-device'));
      else await lab.dma.unmapSingle(dev, iova, 4096, 'from-device');
      lab.freePages(rx);
      const reused = lab.allocPages(0, 'someone else');
      lab.write(reused, new TextEncoder().encode('secret key material'));
      // the device, late, DMAs one more packet to the old IOVA
      const late = await nic.write(iova, new Uint8Array(16).fill(0x66));
      const clobbered = new TextDecoder().decode(lab.read(reused, 6)) !== 'secret';
      lab.freePages(reused);
      return {
        cachedBeforeUnmap: cached,
        lateWriteOk: late.ok,
        fault: late.fault,
        reusedPageClobbered: clobbered,
        samePage: reused === rx,
      };
    }

    const buggy = await teardown(true);
    expect(buggy.cachedBeforeUnmap, 'translation cached in the TLB').toBe(true);
    expect(buggy.samePage, 'the freed page was handed out again').toBe(true);
    expect(buggy.lateWriteOk, 'late DMA after the buggy unmap').toBe(true);
    expect(buggy.reusedPageClobbered, "the new owner's data was overwritten").toBe(true);

    const correct = await teardown(false);
    expect(correct.lateWriteOk, 'late DMA after a correct unmap').toBe(false);
    expect(correct.fault, 'the SMMU event').toBe('F_TRANSLATION');
    expect(correct.reusedPageClobbered, "the new owner's data").toBe(false);
    return { buggy, correct };
  },

  report: (r) => [
    `without TLBI: late DMA ${r.buggy.lateWriteOk ? 'reached' : 'missed'} the reused page (clobbered: ${r.buggy.reusedPageClobbered})`,
    `with TLBI:    late DMA faulted (${r.correct.fault})`,
  ],
});
