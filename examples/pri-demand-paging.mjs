// PRI demand paging: an accelerator touches pages nobody mapped, and the kernel pages them in.
//
// A PCIe function with ATS, PRI and PASID works in an empty address space attached to PASID 1.
// Each ATS translation comes back with no access, so the function sends a page request; the
// SMMU queues it in the PRI queue and the SMMUv3 driver reports it. The domain's I/O page fault
// handler runs from the iopf workqueue (it may sleep): it allocates a page, fills it ("reads it
// from the backing store") and maps it, then answers SUCCESS. The driver sends one CMD_PRI_RESP
// per page-request group - with the PASID, as the function's PRI capability asks - and the
// function retries its translation and completes.
//
//   npx iommu-lab run examples/pri-demand-paging.mjs
import {
  defineScenario,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_SUCCESS,
  IOMMU_READ,
  IOMMU_WRITE,
} from 'iommu-lab';

const PASID = 1;
const backing = (iova, i) => ((iova >>> 12) * 13 + i * 7) & 0xff;

export default defineScenario({
  name: 'pri-demand-paging',
  description: 'a PCIe function pages in 4 pages through PRI; one response per page-request group',
  pciFunctions: [{ bdf: '00:03.0', name: 'accel', ats: true, pri: true, pasid: true }],

  async run({ lab, expect }) {
    const fn = lab.pci('accel');
    const dev = fn.device;

    const dom = await lab.iommu.domainAllocPaging(dev);
    expect(typeof dom, 'domain allocation').toBe('object');
    expect(await lab.faults.enableIopf(dev), 'enable IOPF (PRI + PASID at the function)').toBe(0);
    expect(await lab.iommu.attachDevicePasid(dom, dev, PASID), 'attach PASID 1').toBe(0);

    let groups = 0;
    lab.faults.setDomainIopfHandler(dom, async (group) => {
      groups++;
      for (const f of group.faults) {
        const pa = lab.allocPages(0, 'demand page');
        await lab.sleep(1_000); // page-in from the backing store
        lab.write(
          pa,
          Uint8Array.from({ length: 4096 }, (_, i) => backing(f.addr, i)),
        );
        const prot = IOMMU_READ | (f.perm & IOMMU_FAULT_PERM_WRITE ? IOMMU_WRITE : 0);
        const r = await lab.iommu.map(group.domain, f.addr, pa, 4096, prot);
        if (r < 0) return r;
      }
      return IOMMU_PAGE_RESP_SUCCESS;
    });

    const iova = 0x20_0000;
    const got = await fn.read(iova, 4 * 4096, { pasid: PASID });
    expect(got.ok, `the read completed (${got.status})`).toBe(true);
    for (let i = 0; i < got.data.length; i++) {
      if (got.data[i] !== backing(iova + (i & ~4095), i & 4095)) expect(i, 'first wrong byte').toBe(-1);
    }
    const s = fn.stats();
    expect(s.pageRequests, 'page requests sent').toBe(4);
    expect(groups, 'groups the handler served').toBe(4);
    expect(s.prgResponses, 'one response per group').toBe(groups);
    expect(fn.atsEnabled && fn.priEnabled, 'ATS and PRI on').toBe(true);
    return { pageRequests: s.pageRequests, responses: s.prgResponses, atc: fn.atc().length };
  },

  report: (r) => [`${r.pageRequests} page requests, ${r.responses} responses; ${r.atc} ATC entries after`],
});
