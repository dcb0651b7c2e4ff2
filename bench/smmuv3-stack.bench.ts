/**
 * Whole-stack SMMUv3 benchmarks: the virt board booted with the kernel model, the SMMUv3 driver
 * and the SMMUv3 hardware model, everything a driver does going through MMIO, memory and
 * virtual time (commands written to the queue, CMD_SYNC completion waited for in a kernel task).
 * Numbers are per second of wall time.
 *
 *  - smmuv3.stack.dma_map_unmap.strict / .lazy: dma_map_single (4 KiB) + one device DMA read
 *    through the SMMU model's port (64 bytes, a TLB miss and walk) + dma_unmap_single, by the
 *    PCI test device. Strict: every unmap is TLBI + CMD_SYNC; lazy (iommu.strict=0, DMA_FQ): the
 *    flush queue batches invalidations. `...commands_per_pair` is the number of commands
 *    (CMD_SYNC included) the driver issued per pair, the flush queue's final flush included.
 *  - smmuv3.stack.tlbi_sync: TLBI_NH_ASID + CMD_SYNC, issued and waited for by the driver.
 *  - smmuv3.stack.ste_update: live STE updates through the entry writer (arm_smmu_write_ste:
 *    each step + CFGI_STE + CMD_SYNC, then PREFETCH_CONFIG), alternating an abort and a bypass
 *    STE on one stream. `.attach` is the same through the IOMMU core: the PCI device's group
 *    alternating between the identity and the blocked domain (iommu_attach_device /
 *    iommu_group_replace_domain, group mutex, driver attach).
 */

import { makeAbortSte, makeBypassSte } from '../src/kernel/iommu/arm-smmu-v3/make-entry.ts';
import { bootStack, dev, PCI_PATH, PCI_RID, smmuInstance } from '../test/integration/stack-helpers.ts';
import type { BenchCase, BenchResult } from './types.ts';

type Stack = Awaited<ReturnType<typeof bootStack>>;

/** Run `body` as a kernel task and the scheduler until idle; wall seconds. */
async function timedTask(s: Stack, body: () => Promise<void>): Promise<number> {
  let err: unknown = null;
  const t0 = performance.now();
  s.m.exec.spawn('bench', async () => {
    try {
      await body();
    } catch (e) {
      err = e;
    }
  });
  await s.m.sched.runUntilIdle();
  const sec = (performance.now() - t0) / 1000;
  if (err !== null) throw err;
  return sec;
}

async function mapUnmap(strict: boolean): Promise<BenchResult[]> {
  const s = await bootStack({ trace: false, kernel: { iommu: { strict } } });
  const { k, m } = s;
  const board = s.board;
  const pci = dev(k, PCI_PATH);
  const { smmu } = smmuInstance(k);
  const buf = m.pages.alloc(0, 'bench buffer');
  const dst = new Uint8Array(64);
  let bad = 0;
  const pairs = (n: number) => async () => {
    for (let i = 0; i < n; i++) {
      const iova = k.dma.mapSingle(pci, buf, 4096, 'bidirectional');
      if (board.smmu.port.dmaRead(PCI_RID, -1, iova + 64, dst, 0, 64) !== 64) bad++;
      await k.dma.unmapSingle(pci, iova, 4096, 'bidirectional');
    }
  };
  await timedTask(s, pairs(2_000)); // warm-up
  const N = 20_000;
  const cmds0 = smmu.stats.commands;
  const sec = await timedTask(s, pairs(N));
  const cmds = smmu.stats.commands - cmds0;
  if (bad !== 0 || m.bugs.length !== 0)
    throw new Error(`bench DMA failed ${bad} times; bugs: ${m.bugs.map((b) => b.message).join('; ')}`);
  const mode = strict ? 'strict' : 'lazy';
  return [
    { name: `smmuv3.stack.dma_map_unmap.${mode}`, value: N / sec, unit: 'pairs/s' },
    { name: `smmuv3.stack.dma_map_unmap.${mode}.commands_per_pair`, value: cmds / N, unit: 'cmds/pair' },
  ];
}

export const benchmarks: BenchCase[] = [
  { name: 'smmuv3.stack.dma_map_unmap.strict', run: () => mapUnmap(true) },
  { name: 'smmuv3.stack.dma_map_unmap.lazy', run: () => mapUnmap(false) },
  {
    name: 'smmuv3.stack.tlbi_sync',
    async run() {
      const s = await bootStack({ trace: false });
      const { smmu } = smmuInstance(s.k);
      const loop = (n: number) => async () => {
        for (let i = 0; i < n; i++) {
          if ((await smmu.tlbiAsid(1 + (i & 7))) !== 0) throw new Error('TLBI + CMD_SYNC failed');
        }
      };
      await timedTask(s, loop(5_000));
      const N = 50_000;
      const syncs0 = smmu.stats.syncs;
      const sec = await timedTask(s, loop(N));
      if (smmu.stats.syncs - syncs0 !== N) throw new Error('one CMD_SYNC per TLBI expected');
      return [{ name: 'smmuv3.stack.tlbi_sync', value: N / sec, unit: 'ops/s' }];
    },
  },
  {
    name: 'smmuv3.stack.ste_update',
    async run() {
      const s = await bootStack({ trace: false });
      const { smmu, iommu } = smmuInstance(s.k);
      const out: BenchResult[] = [];
      // the entry writer alone, on an unused StreamID
      const sid = 0x42;
      const ste = [makeAbortSte(), makeBypassSte(smmu.writeFeatures)];
      const writes = (n: number) => async () => {
        for (let i = 0; i < n; i++) {
          const w = await smmu.writeSte(sid, ste[(i + 1) & 1]!);
          if (w.ret !== 0) throw new Error(`writeSte: ${w.ret}`);
        }
      };
      await timedTask(s, writes(2_000));
      const N = 20_000;
      const syncs0 = smmu.stats.syncs;
      const sec = await timedTask(s, writes(N));
      out.push({ name: 'smmuv3.stack.ste_update', value: N / sec, unit: 'ops/s' });
      out.push({
        name: 'smmuv3.stack.ste_update.syncs_per_update',
        value: (smmu.stats.syncs - syncs0) / N,
        unit: 'syncs',
      });
      // through the IOMMU core: identity <-> blocked on the PCI device's group
      const pci = dev(s.k, PCI_PATH);
      const group = s.k.iommu.groupOf(pci)!;
      const doms = [iommu.identityDomain, iommu.blockedDomain];
      const attaches = (n: number) => async () => {
        for (let i = 0; i < n; i++) {
          const r = await s.k.iommu.replaceGroupDomain(group, doms[i & 1]!);
          if (r !== 0) throw new Error(`replace: ${r}`);
        }
      };
      await timedTask(s, attaches(2_000));
      const sec2 = await timedTask(s, attaches(N));
      out.push({ name: 'smmuv3.stack.ste_update.attach', value: N / sec2, unit: 'ops/s' });
      return out;
    },
  },
];
