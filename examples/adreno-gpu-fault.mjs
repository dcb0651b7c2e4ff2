// Rob Clark's GPU: an Adreno with its own SMMU, stall on fault, a crash dump while stalled.
//
// On the `adreno` board the GPU sits behind its own SMMUv2 (qcom,adreno-smmu: context bank 0,
// hit-under-fault, stall on fault), and the display and video blocks share the MMU-500 "apps"
// SMMU, where nobody enables stall. A GPU job writes through a bad pointer: the first fault
// stalls the GPU; the msm-like driver's fault handler captures the crash state (registers,
// ring) while the transaction is still held, then it is terminated. The follow-on faults are
// counted, not printed one by one. With Linux v6.16's flow, stall is off for 500 ms after the
// fault and comes back at the first submit after that. On the apps SMMU, a handler installed
// with iommu_set_fault_handler hears of the video block's fault instead of the kernel log.
//
//   npx iommu-lab run examples/adreno-gpu-fault.mjs
import { defineScenario, GPU_OP } from 'iommu-lab';

export default defineScenario({
  name: 'adreno-gpu-fault',
  description:
    'Adreno GPU fault: dump while stalled, terminate, stall off for 500 ms; video fault to a domain handler',
  board: 'adreno',
  adreno: { gpu: { warps: 16 } },

  async run({ lab, expect, rng }) {
    const gpu = lab.adreno();
    expect(gpu.flow, 'the fault flow (arm-smmu resumes in its handler)').toBe('v6.16');
    expect(gpu.stallEnabled, 'stall on at probe').toBe(true);

    // the job: FILL 1 MiB through a pointer nothing maps (the seed picks it)
    const bad = 0x10_0000_0000 + rng.int(0, 0xff) * 0x100_0000;
    gpu.submit({ op: GPU_OP.FILL, a: bad, value: 0xdeadbeef, len: 1 << 20 });
    expect(await gpu.fenceWait(1_000_000_000), 'the job ends (its faulting writes terminated)').toBe(true);
    await lab.waitFor(() => gpu.stalledTransactions === 0);

    const dump = gpu.readCrashState();
    expect(dump !== null, 'a crash state was captured').toBe(true);
    expect(dump.fault.iova, 'at the bad pointer').toBe(bad);
    expect(dump.stalledAtCapture, 'while the GPU was stalled').toBeGreaterThanOrEqual(1);
    expect(gpu.hardwareFaultCount, 'every faulting write counted by the GPU').toBe(256);
    expect(gpu.stats.faultsLogged, 'at most 10 "*** gpu fault" lines').toBeLessThan(11);

    // stall stays off for 500 ms of virtual time, then the next submit turns it back on
    expect(gpu.stallEnabled, 'stall off after the fault').toBe(false);
    await lab.sleep(500_000_000);
    expect(await gpu.fenceWait(), 'a good job').toBe(true);
    expect(gpu.stallEnabled, 'stall back on').toBe(true);

    // the video block on the apps SMMU: its own domain with a fault handler
    const video = gpu.blockDevice('video');
    const domain = await lab.iommu.domainAllocPaging(video);
    expect(await lab.iommu.attachDevice(domain, video), 'attach').toBe(0);
    const seen = [];
    lab.iommu.setFaultHandler(domain, (_d, _dev, iova, flags) => {
      seen.push({ iova, write: flags === 1 });
      return 0; // handled: no "Unhandled context fault" print
    });
    expect(await gpu.blockDma('video', 'read', 0x2000_0000, 64), 'the video read').toBe(false);
    await lab.sleep(100_000);
    expect(seen, 'the handler heard of it').toEqual([{ iova: 0x2000_0000, write: false }]);
    const apps = lab.smmuV2('/soc@0/iommu@15000000');
    expect(apps.stats.contextFaultsLogged, 'nothing printed for it').toBe(0);

    return {
      badPointer: `0x${bad.toString(16)}`,
      dumpTakenIn: dump.capturedIn,
      stalledAtCapture: dump.stalledAtCapture,
      gpuFaults: gpu.hardwareFaultCount,
      handlerCalls: gpu.stats.faults,
      linesPrinted: gpu.stats.faultsLogged,
      videoFaults: seen.length,
    };
  },
});
