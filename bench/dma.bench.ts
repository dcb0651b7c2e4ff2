/**
 * DMA API throughput: dma_map_single + dma_unmap_single pairs (4 KiB, to-device) through
 * dma-iommu over the real io-pgtable, in strict mode (invalidate every unmap) and lazy mode
 * (flush queue, drained by flush_iotlb_all when full or on its 10 ms virtual-time timer), with
 * the invalidation commands each issued, counted as the SMMUv3 driver would issue them (range
 * TLBI + CMD_SYNC per sync; TLBI by ASID + CMD_SYNC per flush-all). The IOMMU driver is the
 * test double from test/kernel/iommu (the SMMUv3 driver is not there yet). Also the IOVA
 * allocator alone (alloc_iova_fast + free_iova_fast pairs, mixed sizes).
 *
 * dma_unmap is async (it waits for the invalidation to complete); the test driver completes its
 * invalidations synchronously, so this measures the cost of the async unmap path itself.
 */

import { IommuCore } from '../src/kernel/iommu/core.ts';
import { IovaDomain } from '../src/kernel/iommu/dma/iova.ts';
import { DmaApi } from '../src/kernel/iommu/dma/mapping.ts';
import { Machine } from '../src/platform/machine.ts';
import { TestIommu, testDevice } from '../test/kernel/iommu/test-iommu-driver.ts';
import type { BenchCase, BenchResult } from './types.ts';

const PAIRS = 200_000;

async function pairs(strict: boolean): Promise<{ rate: number; invalidations: number }> {
  const m = new Machine({ seed: 1 });
  const core = new IommuCore(m, { strict });
  const drv = new TestIommu(m);
  core.register('test-iommu.0', drv);
  const dma = new DmaApi(m, core, { debug: false });
  const dev = testDevice('bench-nic', { pci: 0x100, maskBits: 64 });
  await core.probeDevice(dev);
  // warm-up in separate calls (optimised code, not OSR)
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const a = dma.mapSingle(dev, 0x8100_0000 + (i & 1023) * 4096, 4096, 'to-device');
      await dma.unmapSingle(dev, a, 4096, 'to-device');
    }
  };
  for (let w = 0; w < 5; w++) await run(5000);
  drv.invalidationCmds = 0;
  const t0 = performance.now();
  await run(PAIRS);
  const dt = (performance.now() - t0) / 1000;
  // lazy: let the pending flush-queue timer fire (part of the work the mode defers)
  await m.sched.runUntilIdle();
  return { rate: PAIRS / dt, invalidations: drv.invalidationCmds };
}

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
        {
          name: 'dma.map_single.strict.invalidations',
          value: strict.invalidations,
          unit: `cmds/${PAIRS} pairs`,
        },
        { name: 'dma.map_single.lazy', value: lazy.rate, unit: 'pairs/s' },
        { name: 'dma.map_single.lazy.invalidations', value: lazy.invalidations, unit: `cmds/${PAIRS} pairs` },
        { name: 'dma.iova.alloc_free', value: iovaAllocFree(), unit: 'ops/s' },
      ];
      return out;
    },
  },
];
