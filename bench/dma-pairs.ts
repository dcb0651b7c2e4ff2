/**
 * dma_map_single + dma_unmap_single pairs (4 KiB, to-device) for the PCI test device behind the
 * SMMUv3, on the whole stack, as dma.bench.ts measures them; `helpers` is a tree's
 * test/integration/stack-helpers.ts, so that the same loop can run against another checkout
 * (vs-base.bench.ts). Uses only what 081b3c5 already had.
 */

type Helpers = typeof import('../test/integration/stack-helpers.ts');

export async function dmaPairs(
  h: Helpers,
  strict: boolean,
  pairs: number,
): Promise<{ rate: number; commands: number }> {
  const s = await h.bootStack({ trace: false, kernel: { iommu: { strict } } });
  const pci = h.dev(s.k, h.PCI_PATH);
  const { smmu } = h.smmuInstance(s.k);
  const buf = s.m.pages.alloc(10, 'bench buffers');
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const a = s.k.dma.mapSingle(pci, buf + (i & 1023) * 4096, 4096, 'to-device');
      await s.k.dma.unmapSingle(pci, a, 4096, 'to-device');
    }
  };
  const timed = async (n: number): Promise<number> => {
    const t0 = performance.now();
    const task = s.m.exec.spawn('bench', () => run(n));
    await s.m.sched.runUntil(() => task.finished);
    // lazy: let the pending flush-queue timer fire (part of the work the mode defers)
    await s.m.sched.runUntilIdle();
    return (performance.now() - t0) / 1000;
  };
  for (let w = 0; w < 3; w++) await timed(1000); // warm-up in separate calls
  const c0 = smmu.stats.commands;
  const dt = await timed(pairs);
  if (s.m.bugs.length) throw new Error(s.m.bugs.map((b) => b.message).join('; '));
  return { rate: pairs / dt, commands: smmu.stats.commands - c0 };
}
