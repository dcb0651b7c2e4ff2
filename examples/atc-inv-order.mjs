// Why the SMMUv3 driver invalidates the endpoints' ATCs only AFTER the TLB invalidation.
//
// An ATS endpoint keeps reading a buffer (every 300 ns) while the kernel unmaps it, on an SMMU
// whose command queue is slow (2 us per command). Linux's order - TLBI + CMD_SYNC, then
// ATC_INV + CMD_SYNC - leaves the endpoint nothing to refill its ATC from: once the TLBI has
// completed, its translation requests fail. The reversed order (the driver mutation
// "atc-inv-before-tlbi") invalidates the ATC first; the endpoint's next read misses, asks the
// SMMU, and gets the stale translation still in the SMMU's TLB. Its ATC keeps that entry after
// the unmap; the page is freed and reused, and the endpoint reads someone else's memory:
//
//   BUG: DMA use-after-free: 0000:00:03.0 read of 64 bytes at PA 0x... (IOVA 0x..., StreamID 0x18)
//     translation: ATC entry filled at virtual time ... ns for ASID ..., VMID 0
//     missing: the ATC_INV at t=... ns came before the TLBI at t=... ns that removed the
//              SMMU's TLB entry: the endpoint refilled its ATC at t=... ns from the stale TLB entry ...
//
// The scenario runs both orders on one lab and asserts: nothing with Linux's, one report with the
// mutation. `allowBugs: true` because the reported bug is the point.
//
//   npx iommu-lab run examples/atc-inv-order.mjs
import { defineScenario, IOMMU_READ, IOMMU_WRITE } from 'iommu-lab';

export default defineScenario({
  name: 'atc-inv-order',
  description: 'ATC_INV before the TLBI lets an ATS endpoint refill its ATC from a stale TLB entry',
  pciFunctions: [{ bdf: '00:03.0', name: 'ep', ats: true }],
  smmu: { cmdLatencyNs: 2000 },
  sanitize: 'report',
  allowBugs: true,

  async run({ lab, expect }) {
    const ep = lab.pci('ep');
    const dev = ep.device;
    expect(ep.atsEnabled, 'ATS enabled').toBe(true);
    const domain = await lab.iommu.domainAllocPaging(dev);
    expect(await lab.iommu.attachDevice(domain, dev), 'attach').toBe(0);

    // map a page at `iova`, let the endpoint use it, unmap it while the endpoint keeps reading,
    // free and reuse the page, read once more
    async function unmapUnderTraffic(iova, mutated) {
      const page = lab.allocPages(0, 'buffer');
      expect(await lab.iommu.map(domain, iova, page, 4096, IOMMU_READ | IOMMU_WRITE), 'map').toBe(0);
      expect((await ep.read(iova, 64)).ok, 'first read (fills the ATC)').toBe(true);
      if (mutated) lab.inject.enable('atc-inv-before-tlbi');
      let stop = false;
      const reader = lab.spawn('endpoint', async () => {
        while (!stop) {
          await ep.read(iova, 64);
          await lab.sleep(300);
        }
      });
      await lab.iommu.unmap(domain, iova, 4096);
      stop = true;
      await reader.wait();
      if (mutated) lab.inject.disable('atc-inv-before-tlbi');
      const atcLeft = ep.atc().filter((e) => e.iova === iova).length;
      lab.freePages(page);
      const reused = lab.allocPages(0, 'someone else');
      const late = await ep.read(iova, 64);
      lab.freePages(reused);
      return { atcLeft, lateReadOk: late.ok };
    }

    const linux = await unmapUnderTraffic(0x40000, false);
    expect(linux, "Linux's order: no ATC entry left, the late read fails").toEqual({
      atcLeft: 0,
      lateReadOk: false,
    });
    expect(lab.sanitizer.reports.length, "reports with Linux's order").toBe(0);

    const early = await unmapUnderTraffic(0x80000, true);
    expect(early, 'ATC_INV first: the refilled entry outlives the unmap').toEqual({
      atcLeft: 1,
      lateReadOk: true,
    });
    expect(lab.sanitizer.reports.length, 'reports with the ATC_INV first').toBe(1);
    const [r] = lab.sanitizer.reports;
    expect([r.kind, r.device, r.iova, r.sid, r.origin]).toEqual([
      'use-after-free',
      dev.name,
      0x80000,
      ep.streamId,
      'ATC entry',
    ]);
    expect(r.missing).toMatch(/^the ATC_INV at t=\d+ ns came before the TLBI at t=\d+ ns/);
    return { linux, early, report: r.text };
  },

  report: (r) => [
    `Linux's order (TLBI, then ATC_INV): ATC entries left ${r.linux.atcLeft}, late read ok ${r.linux.lateReadOk}`,
    `ATC_INV first: ATC entries left ${r.early.atcLeft}, late read ok ${r.early.lateReadOk}`,
    ...r.report.split('\n'),
  ],
});
