/**
 * The bundled demos: scenario modules in this folder (`NAME.ts`, built to `NAME.js`), run by the
 * same runner as a user's own (`iommu-lab demo NAME` is `iommu-lab run` on the module). Their
 * names and descriptions live here, once, so that `demo --help` can list them without loading
 * the model; each module takes its own from here.
 */

/** Every bundled demo; the first is the default. */
export const DEMOS = [
  {
    name: 'smmu',
    description:
      'the booted virt board: DMA from the GPU and a PCIe device through the DMA API and the SMMUv3, and a translation fault',
  },
  {
    name: 'basic',
    description: 'a DMA copy engine programmed through MMIO, MSI completion, one bus error',
  },
  {
    name: 'gpu-crash-dump',
    description:
      'a GPU job with a bad pointer: the fault handler snapshots the stalled GPU from a workqueue, then aborts; the fault storm is suppressed',
  },
  {
    name: 'adreno-stall',
    description:
      'an Adreno GPU on its own SMMUv2 hits a bad pointer: the crash state is captured while stalled, then terminated; stall off for 500 ms (Linux v6.16+)',
  },
  {
    name: 'adreno-stall-legacy',
    description:
      'the adreno-stall demo with the v5.14..v6.15 flow: a fault worker dumps the stalled GPU, then resume_translation terminates',
  },
  {
    name: 'pri',
    description:
      'a PCIe device with PRI touches unmapped pages; a fault handler maps them on demand and answers, the device retries and completes',
  },
] as const;

export type DemoName = (typeof DEMOS)[number]['name'];

/** The name and description a bundled demo's scenario definition starts with. */
export function demoInfo(name: DemoName): { name: DemoName; description: string } {
  const d = DEMOS.find((x) => x.name === name)!;
  return { name: d.name, description: d.description };
}

/** Left-justify `s` in `n` columns (the reports' tables). */
export const pad = (s: string | number, n: number): string => String(s).padEnd(n);
