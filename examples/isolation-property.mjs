// An isolation property, meant for sweeps over many seeds.
//
// Several masters - platform masters and a PCIe function with ATS - map and unmap buffers through
// the DMA API in a random order (the seed picks it) and do DMA in between. A shadow model keeps
// what each device may reach. After every step: a device reaches exactly the pages mapped for it
// now, with their data; an IOVA that is no longer mapped for it - its own stale one, or another
// device's - faults. A driver bug that leaves a translation behind (a missing TLBI, ATC_INV or
// CFGI) shows up as a DMA that succeeds where it must fault. The DMA-isolation sanitizer runs too
// (sanitize: 'report') and must report nothing: no device access reached a freed page, a table,
// or a page through a translation older than its free.
//
//   npx iommu-lab run examples/isolation-property.mjs --seeds 1..2000
import { defineScenario } from 'iommu-lab';

const STEPS = 40;
const PAGE = 4096;

export default defineScenario({
  name: 'isolation-property',
  description: 'random map/unmap/DMA interleavings on four masters; every access is checked',
  masters: [
    { name: 'm0', streamIds: [0x200] },
    { name: 'm1', streamIds: [0x201] },
    { name: 'm2', streamIds: [0x202] },
  ],
  pciFunctions: [{ bdf: '00:03.0', name: 'ats-ep', ats: true, pri: false }],
  sanitize: 'report',

  async run({ lab, rng, expect }) {
    const devs = [
      ...['m0', 'm1', 'm2'].map((n) => ({ name: n, h: lab.master(n) })),
      { name: 'ats-ep', h: lab.pci('ats-ep') },
    ].map((d) => ({ ...d, dev: d.h.device, live: new Map(), dead: [] }));
    let tag = 1;
    let checks = 0;

    // the live mapping of `d` that covers `iova`, and the page of it
    const lookup = (d, iova) => {
      for (const [start, m] of d.live) {
        if (iova >= start && iova < start + m.size) return { m, page: (iova - start) / PAGE };
      }
      return null;
    };
    // what `d` must see at `iova`: the mapped page's tag, or a fault
    const expectAccess = async (d, iova, why) => {
      checks++;
      const r = await d.h.read(iova, 8);
      const hit = lookup(d, iova);
      const where = `${why}: ${d.name} read of 0x${iova.toString(16)}`;
      if (hit === null) {
        expect(r.ok, `${where} (not mapped for it)`).toBe(false);
      } else {
        expect(r.ok, `${where} (mapped)`).toBe(true);
        expect([r.data[0] | (r.data[1] << 8), r.data[2]], `${where}: tag and page`).toEqual([
          hit.m.tag,
          hit.page,
        ]);
      }
    };

    for (let step = 0; step < STEPS; step++) {
      const d = rng.pick(devs);
      const op = rng.int(0, 9);
      if (op < 4 || d.live.size === 0) {
        // map 1..4 pages, tagged
        const order = rng.int(0, 2);
        const pa = lab.allocPages(order, `${d.name} buffer`);
        const size = PAGE << order;
        const t = tag++ & 0xffff;
        for (let k = 0; k < 1 << order; k++) lab.write(pa + k * PAGE, new Uint8Array([t & 0xff, t >> 8, k]));
        const iova = lab.dma.mapSingle(d.dev, pa, size, 'bidirectional');
        expect(iova, `dma_map_single for ${d.name}`).not.toBe(-1);
        d.live.set(iova, { pa, size, tag: t });
        d.dead = d.dead.filter((x) => x !== iova);
        await expectAccess(d, iova, `after map #${step}`);
      } else if (op < 7) {
        // unmap one, then its IOVA must fault at once (strict mode)
        const iova = rng.pick([...d.live.keys()]);
        const m = d.live.get(iova);
        await lab.dma.unmapSingle(d.dev, iova, m.size, 'bidirectional');
        d.live.delete(iova);
        lab.freePages(m.pa);
        d.dead.push(iova);
        await expectAccess(d, iova, `after unmap #${step}`);
      } else {
        // DMA somewhere: a page of its own live buffers, its own stale IOVAs, or another device's
        const other = rng.pick(devs);
        const pages = (dd) =>
          [...dd.live].flatMap(([s, m]) => Array.from({ length: m.size / PAGE }, (_, k) => s + k * PAGE));
        const pool = [...pages(d), ...d.dead, ...pages(other)];
        if (pool.length > 0) await expectAccess(d, rng.pick(pool), `step #${step}`);
      }
    }
    expect(
      lab.sanitizer.reports.map((r) => r.text),
      'DMA-isolation sanitizer reports',
    ).toEqual([]);
    return { checks, mappingsLeft: devs.reduce((n, d) => n + d.live.size, 0) };
  },

  report: (r) => [`${r.checks} accesses checked, ${r.mappingsLeft} mappings left`],
});
