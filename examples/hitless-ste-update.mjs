// Is an STE/CD update hitless? Watch the hardware after every 64-bit store.
//
// The arm-smmu-v3 driver rewrites a live STE or CD 64 bits at a time, with CFGIs in between, so
// that the SMMU - which may fetch the entry at any moment - only ever sees the old or the new
// configuration. Here the hardware model is asked, after every single store into the entry, what
// a DMA would do at that instant if the SMMU fetched the entry then. A hitless update shows only
// the old and the new answer; anything else (an abort, a fault, a third address) would be a DMA
// the device could see in the middle of the update. Some updates cannot be hitless (Linux's
// entry writer then invalidates the entry first, a "breaking" update): those may also show the
// invalid entry's answer (C_BAD_CD / C_BAD_STE) for a moment - but never a translation to a page
// that is neither the old nor the new one.
//
//   npx iommu-lab run examples/hitless-ste-update.mjs
import { defineScenario, IOMMU_READ, IOMMU_WRITE } from 'iommu-lab';

const SID = 0x200;
const IOVA = 0x4000_0000;

export default defineScenario({
  name: 'hitless-ste-update',
  description: 'switch a live stream between two domains and check every intermediate state',
  masters: [{ name: 'display', streamIds: [SID] }],

  async run({ lab, expect }) {
    const dev = lab.master('display').device;
    const smmu = lab.smmu();

    // two unmanaged domains mapping the same IOVA to different pages
    const pages = [lab.allocPages(0), lab.allocPages(0)];
    const doms = [];
    for (const pa of pages) {
      const d = await lab.iommu.domainAllocPaging(dev);
      expect(await lab.iommu.map(d, IOVA, pa, 4096, IOMMU_READ | IOMMU_WRITE), 'iommu_map').toBe(0);
      doms.push(d);
    }
    const ok = (pa) => `ok 0x${pa.toString(16)}`;
    const transitions = [];

    // attach, switch, and go back to the default DMA domain, watching each update
    const steps = [
      ['attach domain A', () => lab.iommu.attachDevice(doms[0], dev)],
      // iommu_attach_device() refuses a second domain (-EBUSY); switching is a replace
      ['switch to domain B', () => lab.iommu.replaceGroupDomain(lab.iommu.groupOf(dev), doms[1])],
      ['detach (back to the default domain)', () => lab.iommu.detachDevice(doms[1], dev)],
    ];
    for (const [what, step] of steps) {
      const watch = smmu.watchEntryUpdates({ sid: SID, probes: [{ iova: IOVA }] });
      const r = await step();
      expect(r ?? 0, what).toBe(0);
      watch.stop();
      const seen = watch.distinct();
      const first = seen[0];
      const last = seen.at(-1);
      const between = seen.slice(1, -1);
      // never a third translation; at most the invalid entry's answer in between
      for (const s of between)
        expect(s, `${what}: an answer between old and new`).toMatch(/^fault C_BAD_(CD|STE)$/);
      transitions.push({ what, stores: watch.stores, seen, hitless: between.length === 0, first, last });
    }
    // the answers are the ones each domain gives
    expect(transitions[0].last, 'after attach A').toBe(ok(pages[0]));
    expect([transitions[1].first, transitions[1].last], 'A -> B').toEqual([ok(pages[0]), ok(pages[1])]);
    expect(transitions[2].first, 'before detach').toBe(ok(pages[1]));
    expect(transitions[1].stores, 'stores into the live entries').toBeGreaterThan(0);
    return { transitions };
  },

  report: (r) =>
    r.transitions.map(
      (t) => `${t.what}: ${t.hitless ? 'hitless' : 'breaking'}, ${t.stores} stores: ${t.seen.join(' -> ')}`,
    ),
});
