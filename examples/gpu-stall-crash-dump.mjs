// A GPU job with a bad pointer: stall, snapshot, then resume (abort) later.
//
// The problem the per-device fault API was made for. A stall-capable GPU (`dma-can-stall`)
// writes through a pointer nothing maps; the SMMU stalls each faulting transaction instead of
// aborting it. The GPU driver's fault handler runs in the IRQ thread, where it must not sleep:
// it only queues a work item. The work item - which may sleep - takes a crash-dump snapshot
// while the faulting transaction is still held in the SMMU, writes it out, and only then answers
// the fault (INVALID: abort). The driver wants the first fault of a burst only; the core answers
// the follow-on faults itself, at once.
//
//   npx iommu-lab run examples/gpu-stall-crash-dump.mjs
import { defineScenario, IOMMU_PAGE_RESP_INVALID } from 'iommu-lab';

const WARPS = 32; // concurrent writers, each through its own page of the bad pointer

export default defineScenario({
  name: 'gpu-stall-crash-dump',
  description:
    'stalled GPU fault: snapshot from a workqueue while stalled, then abort; the burst is suppressed',
  masters: [{ name: 'gpu0', streamIds: [0x300], canStall: true }],

  async run({ lab, expect, rng }) {
    const gpu = lab.master('gpu0');
    const dev = gpu.device;

    // the driver's fault setup: stall faults go to the iopf machinery, one handler, first fault only
    expect(await lab.faults.enableIopf(dev), 'iommu_dev_enable_feature(IOPF)').toBe(0);
    const wq = lab.workqueue('gpu-crashdump', { ordered: true });
    let handlerCalls = 0;
    let snapshot = null;
    const handler = (fault) => {
      handlerCalls++;
      // IRQ thread: no sleeping here. Defer the dump.
      wq.queueFn('crash dump', async () => {
        snapshot = {
          takenAtNs: lab.now,
          faultAddr: `0x${fault.addr.toString(16)}`,
          stalledInSmmu: gpu.stalledCount, // the faulting transaction is still held
        };
        await lab.sleep(20_000); // writing the dump out takes a while (allowed: we are in a workqueue)
        const r = await lab.faults.pageResponse(dev, { grpid: fault.grpid, code: IOMMU_PAGE_RESP_INVALID });
        expect(r, 'page response').toBe(0);
      });
      return 0;
    };
    expect(
      lab.faults.registerDeviceFaultHandler(dev, handler, null, { firstOfBurst: { quietNs: 2_000_000 } }),
    ).toBe(0);

    // the job: every warp writes through the bad pointer (seed picks where it points)
    const bad = 0x40_0000_0000 + rng.int(0, 0xffff) * 0x100_0000;
    const writes = [];
    for (let w = 0; w < WARPS; w++) writes.push(gpu.write(bad + w * 4096, new Uint8Array(64).fill(w)));
    const outcomes = await Promise.all(writes);
    await wq.flush();

    expect(handlerCalls, 'faults the handler saw').toBe(1);
    expect(snapshot, 'crash dump').toBeTruthy();
    expect(snapshot.stalledInSmmu, 'transactions stalled while the dump was taken').toBeGreaterThan(0);
    expect(
      outcomes.every((o) => !o.ok && o.stalls === 1),
      'every write stalled once, then was aborted',
    ).toBe(true);
    const st = lab.faults.deviceStats(dev);
    expect(st.suppressed, 'follow-on faults answered by the core').toBe(WARPS - 1);
    expect(gpu.stalledCount, 'nothing left stalled').toBe(0);
    return {
      badPointer: `0x${bad.toString(16)}`,
      snapshot,
      suppressed: st.suppressed,
      responses: st.responses,
    };
  },

  report: (r) => [
    `bad pointer ${r.badPointer}: dump taken at ${r.snapshot.takenAtNs} ns with ${r.snapshot.stalledInSmmu} transaction(s) stalled`,
    `${r.suppressed} follow-on faults suppressed; responses: ${JSON.stringify(r.responses)}`,
  ],
});
