// The DMA-isolation sanitizer (KASAN for device DMA) catching a use-after-free.
//
// A network driver unmaps its receive buffer and frees the page, but the TLB invalidation never
// reaches the SMMU (injected here: "skip-tlbi"). The kernel hands the page to someone else; the
// device, late, writes one more packet through the translation still in the SMMU's TLB. Nothing
// faults - the device "succeeds" - but the sanitizer reports the write, KASAN style:
//
//   BUG: DMA use-after-free: /soc/nic@210 write of 64 bytes at PA 0x... (IOVA 0x..., StreamID 0x210)
//     translation: TLB entry filled at virtual time ... ns for ASID 1, VMID 0
//     missing: no TLBI for IOVA 0x... ASID 1 between the unmap at t=... and this access ...
//     allocated at ... by: ...   freed at ... by: ...
//
// The scenario asserts the report; `allowBugs: true` because the bug is the point.
//
//   npx iommu-lab run examples/sanitizer-use-after-free.mjs
//   npx iommu-lab run examples/teardown-missing-tlbi.mjs --sanitize     (the same bug, caught)
import { defineScenario } from 'iommu-lab';

export default defineScenario({
  name: 'sanitizer-use-after-free',
  description: 'a DMA through a stale TLB entry into a freed and reused page, reported by the sanitizer',
  masters: [{ name: 'nic', streamIds: [0x210] }],
  sanitize: 'report',
  allowBugs: true,

  async run({ lab, expect }) {
    const nic = lab.master('nic');
    const dev = nic.device;
    const rx = lab.allocPages(0, 'rx buffer');
    const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
    expect((await nic.write(iova, new Uint8Array(64).fill(0x11))).ok, 'DMA into the rx buffer').toBe(true);
    expect(lab.sanitizer.reports.length, 'reports while the buffer is mapped').toBe(0);
    // teardown without the TLBI; the page is freed and reused at once
    await lab.inject.during('skip-tlbi', () => lab.dma.unmapSingle(dev, iova, 4096, 'from-device'));
    lab.freePages(rx);
    const reused = lab.allocPages(0, 'someone else');
    expect(reused, 'the freed page handed out again').toBe(rx);
    // the late packet: the SMMU lets it through (a stale TLB entry) ...
    expect((await nic.write(iova, new Uint8Array(64).fill(0x66))).ok, 'late DMA').toBe(true);
    // ... and the sanitizer says what happened
    const [r] = lab.sanitizer.reports;
    expect(lab.sanitizer.reports.length, 'reports').toBe(1);
    expect(r.kind).toBe('use-after-free');
    expect(r.text).toMatch(
      /^BUG: DMA use-after-free: \/soc\/nic@210 write of 64 bytes at PA 0x[0-9a-f]+ \(IOVA 0x[0-9a-f]+, StreamID 0x210\)/,
    );
    expect([r.device, r.pa, r.iova, r.sid, r.origin]).toEqual([dev.name, rx, iova, 0x210, 'TLB entry']);
    expect(r.missing).toMatch(
      /^no TLBI for IOVA 0x[0-9a-f]+ ASID \d+ between the unmap at t=\d+ ns and this access/,
    );
    expect(r.allocSite).toMatch(/allocPages/);
    expect(r.freeSite).toMatch(/freePages/);
    lab.freePages(reused);
    return { report: r.text };
  },

  report: (r) => r.report.split('\n'),
});
