/**
 * One measurement of dma.map_single.strict against the library in the tree ROOT:
 * `node --import tsx bench/dma-strict-pairs.ts ROOT PAIRS` prints {"rate": pairs/s}. The loop
 * (dma-pairs.ts) is this tree's, the library ROOT's, so vs-base.bench.ts can alternate this tree
 * with an older one.
 */

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dmaPairs } from './dma-pairs.ts';

const [root, pairsArg] = process.argv.slice(2);
if (root === undefined) {
  console.error('usage: dma-strict-pairs.ts ROOT [PAIRS]');
  process.exit(2);
}
const helpers = await import(pathToFileURL(join(root, 'test/integration/stack-helpers.ts')).href);
const r = await dmaPairs(helpers, true, Number(pairsArg ?? 20_000));
process.stdout.write(`${JSON.stringify({ rate: r.rate })}\n`);
