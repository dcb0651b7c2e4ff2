/**
 * Faults through the whole stack: DMA after unmap faults and the driver logs the event in
 * Linux's format; forgotten invalidations (the driver's fault-injection switches) show up as
 * stale translations that a test catches; CMDQ illegal-command recovery on a live system; and
 * SMMU probe failure handled per the IOMMU fallback policy (LINUX_IOMMU_POLICY or strict).
 */
import { describe, expect, it } from 'vitest';
import { PORT_FAULT, PORT_OK, PORT_STALLED } from '../../src/hw/smmuv3/port.ts';
import { type IommuDomain, iommuMap } from '../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { LINUX_IOMMU_POLICY } from '../../src/kernel/of/of-iommu.ts';
import {
  bootStack,
  dev,
  eventDumps,
  fillPattern,
  GPU_PATH,
  inTask,
  PCI_PATH,
  PCI_RID,
  sidOf,
  smmuInstance,
  smmuLines,
  translate,
} from './stack-helpers.ts';

const hex16 = (v: bigint) => `\t0x${v.toString(16).padStart(16, '0')}`;

describe('SMMUv3 stack: unmap then DMA', () => {
  it('a PCI read after dma_unmap faults (F_TRANSLATION) and is logged exactly as Linux prints it', async () => {
    const { m, board, k, log } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'buffer');
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect(translate(board, PCI_RID, iova + 0x80, 0).status).toBe(PORT_OK); // cached in the TLB
    await inTask(m, () => k.dma.unmapSingle(pci, iova, 0x1000, 'to-device'));
    const r = translate(board, PCI_RID, iova + 0x80, 0);
    expect(r.status).toBe(PORT_FAULT);
    expect(r.fault).toBe(0x10);
    expect(r.recorded).toBe(true);
    await m.sched.runUntilIdle(); // the event-queue thread runs
    const dumps = eventDumps(log);
    expect(dumps).toHaveLength(1);
    const a = BigInt(iova + 0x80);
    expect(dumps[0]).toEqual([
      'event 0x10 received:',
      // EventType 0x10, StreamID 8 in [63:32]
      hex16(0x0000_0008_0000_0010n),
      // RnW (bit 35 of the second word) = read, CLASS (bits 41:40) = IN
      hex16((1n << 35n) | (2n << 40n)),
      hex16(a),
      hex16(0n),
      `event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0 iova: 0x${a.toString(16)} ipa: 0`,
      'unpriv data read s1 "Input address caused fault" stag: 0',
    ]);
    expect(smmuInstance(k).smmu.stats.eventsLogged).toBe(1);
  });

  it('a write after unmap faults too (RnW = 0), and the GPU (dma-can-stall) stalls then is aborted', async () => {
    const { m, board, k, log } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const gpu = dev(k, GPU_PATH);
    const buf = m.pages.alloc(1, 'buffers');
    const ip = k.dma.mapSingle(pci, buf, 0x1000, 'from-device');
    const ig = k.dma.mapSingle(gpu, buf + 0x1000, 0x1000, 'from-device');
    expect(translate(board, PCI_RID, ip, 1).status).toBe(PORT_OK);
    expect(translate(board, sidOf(gpu), ig, 1).status).toBe(PORT_OK);
    await inTask(m, async () => {
      await k.dma.unmapSingle(pci, ip, 0x1000, 'from-device');
      await k.dma.unmapSingle(gpu, ig, 0x1000, 'from-device');
    });
    const w = new Uint8Array(64).fill(0xee);
    expect(board.smmu.port.dmaWrite(PCI_RID, -1, ip, w, 0, 64)).toBe(0);
    expect(board.smmu.port.last.status).toBe(PORT_FAULT);
    const g = translate(board, sidOf(gpu), ig, 1);
    expect(g.status).toBe(PORT_STALLED);
    await m.sched.runUntilIdle();
    expect(board.smmu.upstream.stalledCount(sidOf(gpu))).toBe(0); // CMD_RESUME (abort) issued
    expect(m.mem.read32(buf) >>> 0).not.toBe(0xeeeeeeee);
    const dumps = eventDumps(log);
    expect(dumps).toHaveLength(2);
    expect(dumps[0]![2]).toBe(hex16(2n << 40n)); // write: RnW = 0
    expect(dumps[1]![6]).toMatch(/^unpriv data write s1 "Input address caused fault" stall stag: /);
    expect(smmuInstance(k).smmu.stats.byOpcode.RESUME).toBe(1);
  });
});

describe('SMMUv3 stack: forgotten invalidations are caught as stale translations', () => {
  /** Map, DMA (fills the TLB), unmap, DMA again: where does the second DMA go? */
  async function unmapThenDma(skipTlbi: boolean) {
    const s = await bootStack();
    const { m, board, k } = s;
    const { smmu } = smmuInstance(k);
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'victim page');
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'bidirectional');
    expect(translate(board, PCI_RID, iova, 1).status).toBe(PORT_OK);
    smmu.inject.skipTlbi = skipTlbi;
    const tlbis = smmu.stats.byOpcode.TLBI_NH_VA ?? 0;
    await inTask(m, () => k.dma.unmapSingle(pci, iova, 0x1000, 'bidirectional'));
    // the page goes back to the allocator and could be anyone's now
    const after = translate(board, PCI_RID, iova, 1);
    return { after, buf, tlbisIssued: (smmu.stats.byOpcode.TLBI_NH_VA ?? 0) - tlbis };
  }

  it('with inject.skipTlbi the device still reaches the unmapped page through the TLB', async () => {
    const { after, buf, tlbisIssued } = await unmapThenDma(true);
    expect(tlbisIssued).toBe(0);
    // the stale translation: status OK to a page no domain maps any more
    expect(after.status).toBe(PORT_OK);
    expect(after.tlbHit).toBe(true);
    expect(after.oa).toBe(buf);
  });

  it('with the switch off, the same sequence faults', async () => {
    const { after, tlbisIssued } = await unmapThenDma(false);
    expect(tlbisIssued).toBeGreaterThan(0);
    expect(after.status).toBe(PORT_FAULT);
  });

  it('with inject.skipCfgi a domain replace leaves the SMMU on the old domain’s CD', async () => {
    for (const skipCfgi of [true, false]) {
      const { m, board, k } = await bootStack();
      const { smmu } = smmuInstance(k);
      const pci = dev(k, PCI_PATH);
      const group = k.iommu.groupOf(pci)!;
      const pages = m.pages.alloc(1, 'pages');
      const IOVA = 0x2000_0000;
      const d1 = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
      const d2 = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
      iommuMap(d1, IOVA, pages, 0x1000, IOMMU_READ | IOMMU_WRITE);
      iommuMap(d2, IOVA, pages + 0x1000, 0x1000, IOMMU_READ | IOMMU_WRITE);
      expect(await inTask(m, () => k.iommu.attachDevice(d1, pci))).toBe(0);
      expect(translate(board, PCI_RID, IOVA, 0).oa).toBe(pages); // STE and CD now cached
      smmu.inject.skipCfgi = skipCfgi;
      expect(await inTask(m, () => k.iommu.replaceGroupDomain(group, d2))).toBe(0);
      const r = translate(board, PCI_RID, IOVA, 0);
      expect(r.status).toBe(PORT_OK);
      expect(r.oa).toBe(skipCfgi ? pages : pages + 0x1000);
    }
  });
});

describe('SMMUv3 stack: lazy invalidation and concurrent unmaps', () => {
  it('lazy (DMA_FQ): the unmapped IOVA may still translate until the flush queue flushes, then faults', async () => {
    const { m, board, k } = await bootStack({ kernel: { iommu: { strict: false } } });
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'buffer');
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect(translate(board, PCI_RID, iova, 0).status).toBe(PORT_OK);
    const t = m.exec.spawn('unmap', () => k.dma.unmapSingle(pci, iova, 0x1000, 'to-device'));
    await m.sched.runUntil(() => t.finished);
    const start = m.sched.now;
    // dma_unmap returned without invalidating: the TLB still has the entry (Linux's trade-off)
    const stale = translate(board, PCI_RID, iova, 0);
    expect(stale.status).toBe(PORT_OK);
    expect(stale.oa).toBe(buf);
    // the flush-queue timer (10 ms) invalidates; from then on the DMA faults
    await m.sched.runUntilIdle();
    expect(m.sched.now - start).toBeGreaterThanOrEqual(10_000_000);
    expect(translate(board, PCI_RID, iova, 0).status).toBe(PORT_FAULT);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('two tasks unmapping at the same time on two masters share the command queue correctly', async () => {
    const { m, board, k } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const gpu = dev(k, GPU_PATH);
    const bufs = m.pages.alloc(4, 'buffers'); // 16 pages
    const maps: Array<[typeof pci, number]> = [];
    for (let i = 0; i < 8; i++) {
      const d = i % 2 === 0 ? pci : gpu;
      const iova = k.dma.mapSingle(d, bufs + i * 0x1000, 0x1000, 'to-device');
      expect(translate(board, sidOf(d), iova, 0).oa).toBe(bufs + i * 0x1000);
      maps.push([d, iova]);
    }
    const done: boolean[] = [];
    for (const d of [pci, gpu]) {
      m.exec.spawn(`unmap ${d.name}`, async () => {
        for (const [dd, iova] of maps) if (dd === d) await k.dma.unmapSingle(d, iova, 0x1000, 'to-device');
        done.push(true);
      });
    }
    await m.sched.runUntilIdle();
    expect(done).toHaveLength(2);
    for (const [d, iova] of maps) {
      const r = translate(board, sidOf(d), iova, 0);
      expect(r.status === PORT_FAULT || r.status === PORT_STALLED).toBe(true);
    }
    await m.sched.runUntilIdle();
    expect(smmuInstance(k).smmu.stats.cmdqErrors).toBe(0);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: CMDQ error recovery on a live system', () => {
  it('an illegal command is logged and skipped; the unmap behind it still invalidates', async () => {
    const { m, board, k, log } = await bootStack();
    const { smmu } = smmuInstance(k);
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'buffer');
    fillPattern(m, buf, 0x1000, 1);
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect(translate(board, PCI_RID, iova, 0).status).toBe(PORT_OK);
    await inTask(m, async () => {
      // CFGI_VMS_PIDM is not implemented by this SMMU: CERROR_ILL at the head of the queue
      expect(await smmu.issue([['CFGI_VMS_PIDM', { VMID: 1 }]], false)).toBe(0);
      await k.dma.unmapSingle(pci, iova, 0x1000, 'to-device');
    });
    expect(smmu.stats.cmdqErrors).toBe(1);
    const lines = smmuLines(log);
    expect(lines).toContain('unexpected global error reported (0x00000001), this could be serious');
    expect(lines.find((x) => x.startsWith('CMDQ error (cons 0x'))).toMatch(/: Illegal command$/);
    const i = lines.indexOf('skipping command in error state:');
    expect(lines[i + 1]).toBe('\t0x0000000100000007');
    expect(translate(board, PCI_RID, iova, 0).status).toBe(PORT_FAULT);
    // and the DMA API keeps working
    const again = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect(translate(board, PCI_RID, again, 0).oa).toBe(buf);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: SMMU probe failure and the IOMMU fallback policy', () => {
  const dead = { read32: () => 0, write32: () => {} };

  it('a dead SMMU (ID registers read 0): Linux policy defers its masters until the timeout, then dma-direct', async () => {
    const { m, k, log } = await bootStack({ smmuStandIn: dead });
    const smmuDev = dev(k, '/soc/iommu@9000000');
    // really_probe: -ENODEV/-ENXIO from the driver's probe rejects the match; the SMMU stays unbound
    expect(smmuDev.state).toBe('no-driver');
    expect(k.core.rejectedDrivers(smmuDev).map((d) => d.name)).toEqual(['arm-smmu-v3']);
    expect(k.smmuDriver.instances).toHaveLength(0);
    expect(smmuLines(log)).toContain('AArch64 table format not supported');
    expect(m.sched.now).toBeGreaterThanOrEqual(10_000_000_000); // deferred_probe_timeout=10
    for (const p of [GPU_PATH, PCI_PATH]) {
      const d = dev(k, p);
      expect(d.state).toBe('bound');
      expect(d.dma.ops).toBe('direct');
      expect(d.reason).toMatch(
        /probe of IOMMU \/soc\/iommu@9000000 failed.*gave up waiting, DMA is not translated/,
      );
      expect(k.iommu.getDomainForDev(d)).toBeNull();
      // dma-direct: the DMA address is the physical address
      const pa = m.pages.alloc(0, 'direct');
      expect(k.dma.mapSingle(d, pa, 0x1000, 'to-device')).toBe(pa);
    }
  });

  it('the same with a strict policy: the masters fail instead of DMAing untranslated', async () => {
    const { k } = await bootStack({
      smmuStandIn: dead,
      kernel: { policy: { ...LINUX_IOMMU_POLICY, probeFailed: 'strict' } },
    });
    for (const p of [GPU_PATH, PCI_PATH]) {
      const d = dev(k, p);
      expect(d.state).toBe('failed');
      expect(d.reason).toMatch(/policy: strict/);
    }
  });

  it('an SMMU with features the driver refuses (a 1-entry command queue) fails probe the same way', async () => {
    const { m, k, log } = await bootStack({ board: { smmu: { cmdqMaxLog2: 0 } } });
    expect(dev(k, '/soc/iommu@9000000').state).toBe('no-driver');
    expect(smmuLines(log)).toContain('command queue too small');
    expect(m.sched.now).toBeGreaterThanOrEqual(10_000_000_000);
    expect(dev(k, GPU_PATH).dma.ops).toBe('direct');
    const strict = await bootStack({
      board: { smmu: { cmdqMaxLog2: 0 } },
      kernel: { policy: { ...LINUX_IOMMU_POLICY, probeFailed: 'strict' } },
    });
    expect(dev(strict.k, GPU_PATH).state).toBe('failed');
    expect(dev(strict.k, PCI_PATH).state).toBe('failed');
  });

  it('bypass policy: masters proceed at once with dma-direct, without waiting for the timeout', async () => {
    const { k } = await bootStack({
      smmuStandIn: dead,
      kernel: { policy: { ...LINUX_IOMMU_POLICY, probeFailed: 'bypass' } },
    });
    for (const p of [GPU_PATH, PCI_PATH]) {
      const d = dev(k, p);
      expect(d.state).toBe('bound');
      expect(d.dma.ops).toBe('direct');
      expect(d.reason).toMatch(
        /probe of IOMMU \/soc\/iommu@9000000 failed: .*arm-smmu-v3.*; proceeding without it \(policy: bypass\)$/,
      );
      expect(d.reason).not.toMatch(/gave up waiting/);
    }
  });
});
