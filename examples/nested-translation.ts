// Nested translation: a guest owns stage 1, the host owns stage 2.
//
// What a VMM does for a guest driving a virtual SMMUv3 (through iommufd): the host allocates a
// stage-2 "nest parent" domain that maps guest-physical addresses (IPAs) to host pages; the
// guest builds its own stage-1 page tables and context descriptor in its memory (addresses in
// it are IPAs); the host installs the guest's STE fields (the vSTE) in a nested domain. Every
// device access then goes IOVA -> IPA (guest tables, themselves read through stage 2) -> PA. A
// guest mapping that points at an IPA the host never backed faults at stage 2, and the event
// says so (S2 = 1, the IPA).
//
//   npx iommu-lab run examples/nested-translation.ts
import { allocIoPgtable, defineScenario, IOMMU_READ, IOMMU_WRITE, type IommuDomain } from 'iommu-lab';

const RW = IOMMU_READ | IOMMU_WRITE;
// the guest's RAM: host memory the host maps IPA == PA (where the lab allocates pages from)
const GUEST_RAM = { ipa: 0x8000_0000, size: 0x800_0000 };
const GUEST_PAGE_IPA = 0x1_0000_0000; // one more guest page, backed elsewhere
const UNBACKED_IPA = 0x2_0000_0000; // the guest maps it, the host never backed it

export default defineScenario({
  name: 'nested-translation',
  description: 'guest stage 1 over host stage 2: translation, and a stage-2 fault the guest cannot see',
  masters: [{ name: 'vf', streamIds: [0x300] }],

  async run({ lab, expect }) {
    const dev = lab.master('vf').device!;
    const vf = lab.master('vf');

    // host: the stage-2 parent, backing the guest's RAM 1:1 and one more page elsewhere
    const s2 = (await lab.iommu.domainAllocPaging(dev, { nestParent: true })) as IommuDomain;
    expect(typeof s2, 'nest-parent domain').toBe('object');
    expect(await lab.iommu.map(s2, GUEST_RAM.ipa, GUEST_RAM.ipa, GUEST_RAM.size, RW), 'map guest RAM').toBe(
      0,
    );
    const hostPage = lab.allocPages(0);
    expect(await lab.iommu.map(s2, GUEST_PAGE_IPA, hostPage, 4096, RW), 'map one guest page').toBe(0);

    // guest: stage-1 tables and a CD, in its RAM
    const guest = allocIoPgtable(lab, 'arm-64-lpae-s1');
    expect(guest.map(0x40000, GUEST_PAGE_IPA, 4096, RW), 'guest map').toBe(0);
    expect(guest.map(0x50000, UNBACKED_IPA, 4096, RW), 'guest map of an unbacked IPA').toBe(0);
    const cdTable = lab.allocPages(0);
    const cd = guest.contextDescriptor({ asid: 9 });
    for (const [i, w] of cd.entries()) lab.write(cdTable + i * 8, le64(w));
    expect(cdTable < GUEST_RAM.ipa + GUEST_RAM.size, 'the CD table is in guest RAM').toBe(true);

    // the vSTE: V, Config = S1 translate, S1ContextPtr = the CD table (an IPA)
    const vste = [1n | (5n << 1n) | BigInt(cdTable), 0n];
    const nested = (await lab.iommu.domainAllocNested(dev, s2, { vste })) as IommuDomain;
    expect(typeof nested, 'nested domain').toBe('object');
    expect(await lab.iommu.attachDevice(nested, dev), 'attach the nested domain').toBe(0);
    expect(lab.smmu().ste(0x300).config, 'STE.Config').toBe('nested (S1 and S2 translate)');

    // IOVA 0x40010 -> IPA 0x1_0000_0010 -> the host page
    lab.write(hostPage + 0x10, new Uint8Array([0xf0, 0x0d, 0xfe, 0xed]));
    const r = await vf.read(0x40010, 4);
    expect(r.ok, 'nested read').toBe(true);
    expect([...r.data!], 'bytes').toEqual([0xf0, 0x0d, 0xfe, 0xed]);

    // IOVA 0x50000 -> IPA 0x2_0000_0000 -> nothing: a stage-2 fault
    const bad = await vf.read(0x50000, 4);
    expect(bad.ok, 'read through the unbacked IPA').toBe(false);
    expect(bad.fault, 'event').toBe('F_TRANSLATION');
    await lab.waitFor(() =>
      lab.dmesg().some((l) => l.includes('event: F_TRANSLATION') && l.includes('sid: 0x300')),
    );
    const line =
      lab.dmesg().find((l) => l.includes('event: F_TRANSLATION') && l.includes('sid: 0x300')) ?? '';
    expect(line, 'the logged event carries the IPA').toMatch(/ipa: 0x200000000/);
    return { ste: lab.smmu().ste(0x300).config, faultLine: line.replace(/^\[[^\]]*\] /, '') };
  },

  report: (r) => [`STE: ${r.ste}`, `stage-2 fault: ${r.faultLine}`],
});

/** A 64-bit word as 8 little-endian bytes. */
function le64(w: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, w, true);
  return b;
}
