/**
 * DMA API throughput on the whole stack: dma_map_single + dma_unmap_single pairs (4 KiB,
 * to-device) for the PCI test device behind the SMMUv3 (the arm-smmu-v3 driver, the SMMUv3
 * hardware model, io-pgtable), in strict mode (every unmap: TLBI + CMD_SYNC, ATC_INV + CMD_SYNC
 * for the ATS-capable device, waited for in virtual time) and lazy mode (the flush queue, drained
 * by flush_iotlb_all when full or on its 10 ms virtual-time timer), with the commands the driver
 * issued. Also the IOVA allocator alone (alloc_iova_fast + free_iova_fast pairs, mixed sizes).
 */

import { IovaDomain } from '../src/kernel/iommu/dma/iova.ts';
import { bootStack, dev, PCI_PATH, smmuInstance } from '../test/integration/stack-helpers.ts';
import type { BenchCase, BenchResult } from './types.ts';

const PAIRS = 20_000;

async function pairs(strict: boolean): Promise<{ rate: number; commands: number }> {
  const s = await bootStack({ trace: false, kernel: { iommu: { strict } } });
  const pci = dev(s.k, PCI_PATH);
  const { smmu } = smmuInstance(s.k);
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
  const dt = await timed(PAIRS);
  return { rate: PAIRS / dt, commands: smmu.stats.commands - c0 };
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
        { name: 'dma.map_single.strict.invalidations', value: strict.commands, unit: `cmds/${PAIRS} pairs` },
        { name: 'dma.map_single.lazy', value: lazy.rate, unit: 'pairs/s' },
        { name: 'dma.map_single.lazy.invalidations', value: lazy.commands, unit: `cmds/${PAIRS} pairs` },
        { name: 'dma.iova.alloc_free', value: iovaAllocFree(), unit: 'ops/s' },
      ];
      return out;
    },
  },
];
