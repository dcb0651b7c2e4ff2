// The DMA API end to end: dma-iommu through the test IOMMU (hardware walker), strict vs lazy
// invalidation, scatter-gather merging, coherent memory, dma-direct + SWIOTLB, DMA-API debug.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuCore } from '../../../src/kernel/iommu/core.ts';
import { cookieOf } from '../../../src/kernel/iommu/dma/dma-iommu.ts';
import { IovaDomain } from '../../../src/kernel/iommu/dma/iova.ts';
import { DmaApi } from '../../../src/kernel/iommu/dma/mapping.ts';
import { DMA_MAPPING_ERROR, sgTable } from '../../../src/kernel/iommu/dma/types.ts';
import { iommuIovaToPhys } from '../../../src/kernel/iommu/domain.ts';
import { MSI_IOVA_BASE } from '../../../src/kernel/iommu/resv-regions.ts';
import { newMachine } from './helpers.ts';
import { TestIommu, testDevice } from './test-iommu-driver.ts';

function setup(strict = true, opts: { fqTimeoutNs?: number } = {}) {
  const m = newMachine();
  const core = new IommuCore(m, { strict });
  const drv = new TestIommu(m);
  core.register('test-iommu.0', drv);
  const dma = new DmaApi(m, core, opts);
  return { m, core, drv, dma };
}

describe('dma-iommu end to end', () => {
  it("dma_map_single: the device's DMA lands in the right physical pages", async () => {
    const { m, core, drv, dma } = setup();
    const dev = testDevice('nic', { pci: 0x800, maskBits: 64 });
    expect(await core.probeDevice(dev)).toBe(0);
    // a 3-page buffer at an odd offset
    const page = m.pages.alloc(2, 'driver-buffer');
    const buf = page + 0x234;
    const len = 2 * 4096 + 100;
    const addr = dma.mapSingle(dev, buf, len, 'from-device');
    expect(addr).not.toBe(DMA_MAPPING_ERROR);
    expect(addr).not.toBe(buf); // translated
    expect(addr % 4096).toBe(0x234); // the offset in the page is kept
    expect(addr).toBeLessThan(2 ** 32); // PCI: 32-bit IOVAs first
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i++) data[i] = (i * 7 + 3) & 0xff;
    expect(drv.dma(0x800, addr, data, true)).toBe(0);
    const back = new Uint8Array(len);
    m.mem.readBytes(buf, back);
    expect(back).toEqual(data);
    // (FROM_DEVICE maps IOMMU_WRITE only; stage-1 AP cannot express write-only, so reads also work)
    await dma.unmapSingle(dev, addr, len, 'from-device');
    // after the (strict) unmap the device faults
    expect(drv.dma(0x800, addr, data, true)).toBe(-1);
    expect(m.bugs).toEqual([]);
  });

  it('strict mode invalidates on every unmap; lazy mode batches through the flush queue and its timer', async () => {
    const s = setup(true);
    const d1 = testDevice('s');
    await s.core.probeDevice(d1);
    s.drv.invalidationCmds = 0;
    for (let i = 0; i < 100; i++)
      await s.dma.unmapSingle(
        d1,
        s.dma.mapSingle(d1, 0x8100_0000 + i * 4096, 4096, 'to-device'),
        4096,
        'to-device',
      );
    expect(s.drv.invalidationCmds).toBe(200); // a range TLBI + CMD_SYNC per unmap

    const l = setup(false);
    const d2 = testDevice('l');
    await l.core.probeDevice(d2);
    const cookie = cookieOf(l.core.getDmaDomain(d2)!)!;
    expect(cookie.fq).not.toBeNull();
    l.drv.invalidationCmds = 0;
    const addrs: number[] = [];
    for (let i = 0; i < 100; i++) {
      const a = l.dma.mapSingle(d2, 0x8100_0000 + i * 4096, 4096, 'to-device');
      addrs.push(a);
      await l.dma.unmapSingle(d2, a, 4096, 'to-device');
    }
    expect(l.drv.invalidationCmds).toBe(0); // nothing flushed yet
    expect(new Set(addrs).size).toBe(100); // queued IOVAs are not reused before the flush
    expect(cookie.fq!.length).toBe(100);
    await l.m.sched.runFor(10_000_000); // the 10 ms flush-queue timer
    expect(l.drv.invalidationCmds).toBe(2); // one flush_iotlb_all + CMD_SYNC
    expect(cookie.fq!.length).toBe(0);
    // a full queue flushes at once
    for (let i = 0; i < 300; i++)
      await l.dma.unmapSingle(d2, l.dma.mapSingle(d2, 0x8100_0000, 4096, 'to-device'), 4096, 'to-device');
    expect(cookie.fq!.stats.fullFlushes).toBe(1);
  });

  it('dma_map_sg merges segments that are contiguous in IOVA space', async () => {
    const { core, drv, dma, m } = setup();
    const dev = testDevice('blk', { maskBits: 48 });
    await core.probeDevice(dev);
    const sg = sgTable([
      { phys: 0x8200_0000, length: 4096 },
      { phys: 0x8300_0000, length: 4096 },
      { phys: 0x8400_0000, length: 2048 }, // ends mid-page: the next one cannot join
      { phys: 0x8500_0000, length: 4096 },
      { phys: 0x8600_0100, length: 512 }, // starts mid-page: a new segment
    ]);
    const n = dma.mapSg(dev, sg, sg.length, 'bidirectional');
    expect(n).toBe(3);
    expect(sg[0]!.dmaLength).toBe(4096 * 2 + 2048);
    expect(sg[1]!.dmaLength).toBe(4096);
    expect(sg[2]!.dmaLength).toBe(512);
    expect(sg[2]!.dmaAddress % 4096).toBe(0x100);
    const dom = core.getDmaDomain(dev)!;
    expect(iommuIovaToPhys(dom, sg[0]!.dmaAddress + 4096 + 5)).toBe(0x8300_0005);
    const w = new Uint8Array([9, 9, 9]);
    expect(drv.dma(dev.iommu!.ids[0]!, sg[2]!.dmaAddress, w, true)).toBe(0);
    expect(m.mem.read8(0x8600_0100)).toBe(9);
    await dma.unmapSg(dev, sg, 5, 'bidirectional');
    expect(iommuIovaToPhys(dom, sg[0]!.dmaAddress)).toBe(0);
    expect(m.bugs).toEqual([]);
  });

  it('dma_alloc_coherent maps zeroed memory the device can use; the MSI window is not handed out', async () => {
    const { core, drv, dma, m } = setup();
    const dev = testDevice('ring', { maskBits: 28 }); // a 256 MiB device: IOVAs must fit
    await core.probeDevice(dev);
    const bufs = [];
    for (let i = 0; i < 40; i++) {
      const b = dma.allocCoherent(dev, 64 * 1024)!;
      expect(b).not.toBeNull();
      expect(b.dmaAddr + 64 * 1024 - 1).toBeLessThan(2 ** 28);
      // the software MSI window belongs to the DMA layer's MSI mapping, reserved ranges never overlap
      bufs.push(b);
    }
    expect(drv.dma(dev.iommu!.ids[0]!, bufs[0]!.dmaAddr + 8, new Uint8Array([0xaa]), true)).toBe(0);
    expect(m.mem.read8(bufs[0]!.cpuAddr + 8)).toBe(0xaa);
    for (const b of bufs) await dma.freeCoherent(dev, 64 * 1024, b);
    expect(m.bugs).toEqual([]);
    void MSI_IOVA_BASE;
  });
});

describe('dma-direct and SWIOTLB', () => {
  it('a 32-bit device bounces a high buffer: copies on map, unmap and sync', async () => {
    const m = newMachine();
    m.mem.addRam(0x1_0000_0000, 0x100_0000, 'high');
    const dma = new DmaApi(m, null);
    const dev = testDevice('legacy', { maskBits: 32 });
    const hi = 0x1_0000_1000;
    m.mem.writeBytes(hi, new Uint8Array([1, 2, 3, 4]));
    const a = dma.mapSingle(dev, hi, 4, 'bidirectional');
    expect(a).toBeLessThan(2 ** 32);
    expect(dma.swiotlb!.isSwiotlbBuffer(a)).toBe(true);
    expect(m.mem.read8(a + 2)).toBe(3); // copied to the bounce buffer at map
    m.mem.write8(a, 42); // the device writes
    dma.syncSingleForCpu(dev, a, 4, 'bidirectional');
    expect(m.mem.read8(hi)).toBe(42);
    m.mem.write8(hi + 1, 77); // the CPU writes, then gives it back
    dma.syncSingleForDevice(dev, a, 4, 'bidirectional');
    expect(m.mem.read8(a + 1)).toBe(77);
    m.mem.write8(a + 3, 99);
    await dma.unmapSingle(dev, a, 4, 'bidirectional');
    expect(m.mem.read8(hi + 3)).toBe(99);
    expect(dma.swiotlb!.inUse).toBe(0);
    // a reachable buffer is mapped 1:1
    expect(dma.mapSingle(dev, 0x8100_0000, 64, 'to-device')).toBe(0x8100_0000);
  });
});

describe('DMA-API debug', () => {
  it('reports unmaps of never-mapped addresses, wrong size/direction, double unmap and leaks, with the device name', async () => {
    const { core, dma, m } = setup();
    const dev = testDevice('buggy-nic');
    await core.probeDevice(dev);
    const a = dma.mapSingle(dev, 0x8100_0000, 4096, 'to-device');
    await dma.unmapSingle(dev, a + 0x10000, 4096, 'to-device');
    await dma.unmapSingle(dev, a, 2048, 'to-device');
    const b = dma.mapSingle(dev, 0x8200_0000, 4096, 'to-device');
    await dma.unmapSingle(dev, b, 4096, 'from-device');
    const c = dma.mapSingle(dev, 0x8300_0000, 4096, 'bidirectional');
    await dma.unmapSingle(dev, c, 4096, 'bidirectional');
    await dma.unmapSingle(dev, c, 4096, 'bidirectional');
    dma.mapSingle(dev, 0x8400_0000, 4096, 'bidirectional');
    expect(dma.deviceUnbound(dev)).toBe(1);
    const msgs = m.bugs.filter((x) => x.kind === 'dma-api').map((x) => x.message);
    expect(msgs.length).toBe(5);
    expect(msgs.every((x) => x.includes('buggy-nic'))).toBe(true);
    expect(msgs[0]).toContain('has not allocated');
    expect(msgs[1]).toContain('different size');
    expect(msgs[2]).toContain('different direction');
    expect(msgs[3]).toContain('double unmap');
    expect(msgs[4]).toContain('pending DMA allocations while released from device [count=1]');
  });
});

describe('dma_map_sg with a bad entry count', () => {
  for (const iommu of [true, false]) {
    it(`nents beyond the list, zero or negative: the mapping fails (0) with a DMA-API report (${iommu ? 'dma-iommu' : 'dma-direct'})`, async () => {
      const { core, dma, m } = setup();
      const dev = testDevice('sg-dev', { maskBits: 48 });
      const api = iommu ? dma : new DmaApi(m, null);
      if (iommu) await core.probeDevice(dev);
      const sg = sgTable([
        { phys: 0x8200_0000, length: 4096 },
        { phys: 0x8300_0000, length: 4096 },
      ]);
      const freeBefore = iommu ? cookieOf(core.getDmaDomain(dev)!)!.iovad.ranges : 0;
      for (const nents of [3, 100, 0, -1, 1.5]) expect(api.mapSg(dev, sg, nents, 'to-device')).toBe(0);
      expect(sg.every((s) => s.dmaLength === 0)).toBe(true); // nothing mapped
      if (iommu) expect(cookieOf(core.getDmaDomain(dev)!)!.iovad.ranges).toBe(freeBefore);
      const msgs = m.bugs.filter((b) => b.kind === 'dma-api').map((b) => b.message);
      expect(msgs).toHaveLength(5);
      expect(msgs[0]).toBe('DMA-API: sg-dev: dma_map_sg: nents 3, but the scatterlist has 2 entries');
      // the list itself still maps; an unmap with too many entries is reported and unmaps the list
      expect(api.mapSg(dev, sg, 2, 'to-device')).toBeGreaterThan(0);
      await api.unmapSg(dev, sg, 5, 'to-device');
      expect(m.bugs.at(-1)!.message).toBe(
        'DMA-API: sg-dev: dma_unmap_sg: nents 5, but the scatterlist has 2 entries',
      );
      if (iommu) expect(iommuIovaToPhys(core.getDmaDomain(dev)!, sg[0]!.dmaAddress)).toBe(0);
      expect(api.deviceUnbound(dev)).toBe(0); // nothing leaked
    });
  }
});

describe('IOVA allocator properties', () => {
  it('never overlapping or misaligned, within the limit, and freed ranges are reused', async () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            free: fc.boolean(),
            size: fc.integer({ min: 1, max: 70 }),
            limitBits: fc.integer({ min: 10, max: 20 }),
            pick: fc.nat(),
          }),
          { maxLength: 200 },
        ),
        (ops) => {
          const iovad = new IovaDomain(4096, 1);
          iovad.reserveIova(0x100, 0x1ff);
          const live: Array<{ pfn: number; size: number }> = [];
          for (const o of ops) {
            if (o.free && live.length > 0) {
              const k = o.pick % live.length;
              const e = live[k]!;
              live.splice(k, 1);
              iovad.freeIovaFast(e.pfn, e.size);
              continue;
            }
            const limit = 2 ** o.limitBits - 1;
            const pfn = iovad.allocIovaFast(o.size, limit);
            if (pfn < 0) continue;
            const sz = o.size < 32 ? 2 ** Math.ceil(Math.log2(o.size)) : o.size;
            const align = 2 ** Math.ceil(Math.log2(sz));
            expect(pfn % align).toBe(0);
            expect(pfn + sz - 1).toBeLessThanOrEqual(limit);
            expect(pfn).toBeGreaterThanOrEqual(1);
            // not in the reserved range, not overlapping anything live
            expect(pfn + sz - 1 < 0x100 || pfn > 0x1ff).toBe(true);
            for (const l of live) expect(pfn + sz - 1 < l.pfn || pfn > l.pfn + l.size - 1).toBe(true);
            live.push({ pfn, size: sz });
          }
          // freed ranges are reused: free everything, the same request gets an address again
          for (const l of live) iovad.freeIovaFast(l.pfn, l.size);
          iovad.flushRcaches();
          expect(iovad.ranges).toBe(1); // only the reservation remains
          const a = iovad.allocIovaFast(4, 0xfff);
          iovad.freeIovaFast(a, 4);
          expect(iovad.allocIovaFast(4, 0xfff)).toBe(a);
        },
      ),
      { numRuns: 200, seed: 3 },
    );
  });

  it('the DMA mask is respected by dma-iommu (a 32-bit mask device never gets IOVAs above 4 GiB)', async () => {
    const { core, dma } = setup();
    const dev = testDevice('dma32', { maskBits: 32 });
    await core.probeDevice(dev);
    for (let i = 0; i < 500; i++) {
      const a = dma.mapSingle(dev, 0x8100_0000 + i * 8192, 8192, 'to-device');
      expect(a).toBeLessThan(2 ** 32);
    }
  });
});
