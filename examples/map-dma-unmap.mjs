// map -> DMA -> unmap -> DMA faults.
//
// The everyday life of a DMA mapping, as a driver sees it: dma_map_single() gives the device an
// IOVA, the device reads and writes through the SMMU, dma_unmap_single() tears the mapping down
// (in strict mode the SMMUv3 driver issues TLBI + CMD_SYNC before it returns), and the next
// access to that IOVA is a translation fault that the arm-smmu-v3 driver logs exactly as Linux
// prints it.
//
//   npx iommu-lab run examples/map-dma-unmap.mjs
import { defineScenario } from 'iommu-lab';

export default defineScenario({
  name: 'map-dma-unmap',
  description: 'dma_map_single, device DMA, dma_unmap_single, then the same DMA faults',
  // our own bus master behind the virt board's SMMUv3, StreamID 0x200
  masters: [{ name: 'accel', streamIds: [0x200] }],

  async run({ lab, expect, rng }) {
    const accel = lab.master('accel');
    const dev = accel.device;

    // a buffer in kernel memory with something recognisable in it
    const buf = lab.allocPages(1); // two pages
    const pattern = rng.bytes(8192);
    lab.write(buf, pattern);

    const iova = lab.dma.mapSingle(dev, buf, 8192, 'bidirectional');
    expect(iova, 'dma_map_single').not.toBe(-1);

    // the device reads the buffer through the SMMU...
    const read = await accel.read(iova, 8192);
    expect(read.ok, 'read through the mapping').toBe(true);
    expect(Buffer.from(read.data).equals(Buffer.from(pattern)), 'data read').toBe(true);

    // ...and writes into its second page
    const wrote = await accel.write(iova + 4096, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    expect(wrote.ok, 'write through the mapping').toBe(true);
    expect([...lab.read(buf + 4096, 4)], 'bytes in memory').toEqual([0xde, 0xad, 0xbe, 0xef]);

    // tear down: in strict mode the TLB entries are gone when this resolves
    await lab.dma.unmapSingle(dev, iova, 8192, 'bidirectional');

    // the same access now faults: a terminated transaction and an event the driver logs
    const after = await accel.read(iova, 4);
    expect(after.ok, 'read after unmap').toBe(false);
    expect(after.fault, 'the SMMU event').toBe('F_TRANSLATION');

    // the event thread prints it a little later (it runs when the event-queue interrupt fires)
    const logged = await lab.waitFor(() => lab.dmesg().some((l) => l.includes('event 0x10 received')));
    expect(logged, 'the fault was logged').toBe(true);
    const log = lab.dmesg().join('\n');
    expect(log, 'kernel log').toMatch(/arm-smmu-v3 9000000\.iommu: event 0x10 received:/);
    expect(log, 'kernel log').toMatch(/event: F_TRANSLATION client: .*accel@200 sid: 0x200/);
    return { iova: `0x${iova.toString(16)}`, faultedAt: after.errorAddress };
  },

  report: (r) => [`mapped at ${r.iova}; after unmap the access at 0x${r.faultedAt.toString(16)} faulted`],
});
