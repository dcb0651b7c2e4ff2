/**
 * DMA API throughput on the whole stack: dma_map_single + dma_unmap_single pairs (4 KiB,
 * to-device) for the PCI test device behind the SMMUv3 (the arm-smmu-v3 driver, the SMMUv3
 * hardware model, io-pgtable), in strict mode (every unmap: TLBI + CMD_SYNC, ATC_INV + CMD_SYNC
 * for the ATS-capable device, waited for in virtual time) and lazy mode (the flush queue, drained
 * by flush_iotlb_all when full or on its 10 ms virtual-time timer), with the commands the driver
 * issued. Also the IOVA allocator alone (alloc_iova_fast + free_iova_fast pairs, mixed sizes).
 */

import { IovaDomain } from '../src/kernel/iommu/dma/iova.ts';
import * as helpers from '../test/integration/stack-helpers.ts';
import { dmaPairs } from './dma-pairs.ts';
import type { BenchCase, BenchResult } from './types.ts';

const PAIRS = 20_000;

const pairs = (strict: boolean) => dmaPairs(helpers, strict, PAIRS);

function iovaAllocFree(): number {
  const iovad = new IovaDomain(4096, 1);
  const live = new Float64Array(64);
  const sizes = new Int32Array(64);
  let s = 0x2545f491;
  const n = 2_000_000;
  const run = (k: number) => {
    for (let i = 0; i < k; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const slot = (s >>> 0) & 63;
      if (sizes[slot]! > 0) iovad.freeIovaFast(live[slot]!, sizes[slot]!);
      const size = 1 << ((s >>> 8) & 3);
      live[slot] = iovad.allocIovaFast(size, 0xf_ffff);
      sizes[slot] = size;
    }
  };
  run(100_000);
  const t0 = performance.now();
  run(n);
  return (2 * n) / ((performance.now() - t0) / 1000);
}

export const benchmarks: BenchCase[] = [
  {
    name: 'dma',
    run: async () => {
      const strict = await pairs(true);
      const lazy = await pairs(false);
      const out: BenchResult[] = [
        { name: 'dma.map_single.strict', value: strict.rate, unit: 'pairs/s' },
        { name: 'dma.map_single.strict.invalidations', value: strict.commands, unit: `cmds/${PAIRS} pairs` },
        { name: 'dma.map_single.lazy', value: lazy.rate, unit: 'pairs/s' },
        { name: 'dma.map_single.lazy.invalidations', value: lazy.commands, unit: `cmds/${PAIRS} pairs` },
        { name: 'dma.iova.alloc_free', value: iovaAllocFree(), unit: 'ops/s' },
      ];
      return out;
    },
  },
];
