/**
 * One measurement of dma.map_single.strict (see dma.bench.ts) against the library in the tree
 * ROOT: `node --import tsx bench/dma-strict-pairs.ts ROOT PAIRS` prints {"rate": pairs/s}. The
 * same loop runs against any checkout (it uses only what 081b3c5 already had), so
 * vs-base.bench.ts can alternate this tree with an older one.
 */

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [root, pairsArg] = process.argv.slice(2);
if (root === undefined) {
  console.error('usage: dma-strict-pairs.ts ROOT [PAIRS]');
  process.exit(2);
}
const PAIRS = Number(pairsArg ?? 20_000);

type Helpers = typeof import('../test/integration/stack-helpers.ts');
const h = (await import(pathToFileURL(join(root, 'test/integration/stack-helpers.ts')).href)) as Helpers;

const s = await h.bootStack({ trace: false, kernel: { iommu: { strict: true } } });
const pci = h.dev(s.k, h.PCI_PATH);
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
  await s.m.sched.runUntilIdle();
  return (performance.now() - t0) / 1000;
};
for (let w = 0; w < 3; w++) await timed(1000);
const dt = await timed(PAIRS);
if (s.m.bugs.length) throw new Error(s.m.bugs.map((b) => b.message).join('; '));
process.stdout.write(`${JSON.stringify({ rate: PAIRS / dt })}\n`);
