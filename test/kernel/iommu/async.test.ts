// The core and the DMA API wait for the IOMMU: driver callbacks that take virtual time (as a
// CMD_SYNC does) are awaited, attach stays transactional across those waits, group operations are
// serialised by the group mutex, unmaps return only when the invalidation completed (without
// sleeping), and MSI doorbells are mapped into translating domains.

import { describe, expect, it } from 'vitest';
import { IommuCore } from '../../../src/kernel/iommu/core.ts';
import { cookieOf, iommuDmaGetMsiPage, iommuGetMsiCookie } from '../../../src/kernel/iommu/dma/dma-iommu.ts';
import { DmaApi } from '../../../src/kernel/iommu/dma/mapping.ts';
import { DMA_MAPPING_ERROR } from '../../../src/kernel/iommu/dma/types.ts';
import {
  type IommuDomain,
  iommuFlushIotlbAll,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
  takeMapUnwind,
} from '../../../src/kernel/iommu/domain.ts';
import { EBUSY, EINVAL } from '../../../src/kernel/iommu/errno.ts';
import { IommuIotlbGather, iotlbGatherAddPage, iotlbSync } from '../../../src/kernel/iommu/iotlb-gather.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { MSI_IOVA_BASE, MSI_IOVA_LENGTH } from '../../../src/kernel/iommu/resv-regions.ts';
import { GITS_TRANSLATER } from '../../../src/platform/irq.ts';
import type { Machine } from '../../../src/platform/machine.ts';
import { newMachine, SZ_4K } from './helpers.ts';
import { TestIommu, testDevice } from './test-iommu-driver.ts';

function setup(cfg: { strict?: boolean; dma?: boolean } = {}) {
  const m = newMachine();
  const core = new IommuCore(m, { strict: cfg.strict ?? true });
  const drv = new TestIommu(m);
  core.register('test-iommu.0', drv);
  const dma = cfg.dma === true ? new DmaApi(m, core) : null;
  return { m, core, drv, dma };
}

/**
 * Kernel code called straight from a test (not from a kernel task, which the executor starts
 * with its continuations marked runnable) must be let run before the scheduler moves virtual
 * time on: mark its continuations pending, as runIn/spawn do.
 */
function started<T>(m: Machine, p: Promise<T>): Promise<T> {
  m.sched.wokeAsync = true;
  return p;
}

/** Await `p` while running the machine's scheduler; returns the value and the virtual time it took. */
async function run<T>(m: Machine, p: Promise<T>): Promise<{ value: T; ns: number }> {
  const t0 = m.sched.now;
  m.sched.wokeAsync = true;
  let done = false;
  let value!: T;
  p.then((v) => {
    done = true;
    value = v;
  });
  await m.sched.runUntil(() => done);
  await p;
  return { value, ns: m.sched.now - t0 };
}

async function paging(core: IommuCore, dev: Parameters<IommuCore['domainAllocPaging']>[0]) {
  const d = await core.domainAllocPaging(dev);
  if (typeof d === 'number') throw new Error(`domain_alloc_paging: ${d}`);
  return d;
}

describe('attach waits for the hardware', () => {
  it('an attach whose driver waits 1000 ns completes only after that virtual time', async () => {
    const { m, core, drv } = setup();
    const d = testDevice('slow');
    expect(await core.probeDevice(d)).toBe(0);
    const def = core.getDomainForDev(d)!;
    const u = await paging(core, d);
    drv.attachDelayNs = 1000;
    let done = false;
    const p = started(m, core.attachDevice(u, d)).then((r) => {
      done = true;
      return r;
    });
    await m.sched.runFor(999);
    expect(done).toBe(false);
    // until the driver is done, the device still translates through the old domain
    expect(core.getDomainForDev(d)).toBe(def);
    expect(drv.streams.get(d.iommu!.ids[0]!)).toEqual({ kind: 'translate', domain: def });
    await m.sched.runFor(1);
    expect(done).toBe(true);
    expect(await p).toBe(0);
    expect(m.sched.now).toBe(1000);
    expect(core.getDomainForDev(d)).toBe(u);
    // detach waits as well
    const r = await run(m, core.detachDevice(u, d));
    expect(r.ns).toBe(1000);
    expect(core.getDomainForDev(d)).toBe(def);
    expect(m.bugs).toEqual([]);
  });

  it('probe awaits the driver: a group of two attaches one device after the other', async () => {
    const { m, core, drv } = setup();
    drv.attachDelayNs = 500;
    const a = testDevice('0000:07:00.0', { pci: 0x700 });
    const r = await run(m, core.probeDevice(a));
    expect(r.value).toBe(0);
    expect(r.ns).toBe(500);
    const b = testDevice('0000:07:00.1', { pci: 0x701, aliases: [0x700] });
    expect((await run(m, core.probeDevice(b))).ns).toBe(500);
    const g = core.groupOf(a)!;
    expect(core.groupOf(b)).toBe(g);
    const u = await paging(core, a);
    const at = await run(m, core.attachGroup(u, g));
    expect(at.value).toBe(0);
    expect(at.ns).toBe(1000); // two devices, each 500 ns, in sequence
  });

  it('a failure after an await leaves the group, the hardware and the log exactly as before', async () => {
    const { m, core, drv } = setup();
    const a = testDevice('0000:05:00.0', { pci: 0x500 });
    const b = testDevice('0000:05:00.1', { pci: 0x501, aliases: [0x500] });
    await core.probeDevice(a);
    await core.probeDevice(b);
    const g = core.groupOf(a)!;
    const def = g.domain!;
    const u = await paging(core, a);
    const streams = new Map(drv.streams);
    const pasids = new Map(drv.pasids);
    drv.attachDelayNs = 1000;
    drv.failAttach.add(b.name); // fails after its 1000 ns wait, when `a` was already switched
    drv.attachLog = [];
    const r = await run(m, core.attachGroup(u, g));
    expect(r.value).toBe(-EINVAL);
    expect(r.ns).toBe(3000); // a switched (1000), b waited then failed (1000), a restored (1000)
    expect(g.domain).toBe(def);
    expect(g.defaultDomain).toBe(def);
    expect(core.getDomainForDev(a)).toBe(def);
    expect(drv.streams).toEqual(streams);
    expect(drv.pasids).toEqual(pasids);
    expect(drv.attachLog).toEqual([`${a.name}->${u}`, `${a.name}->${def}`]);
    expect(g.mutex.isLocked).toBe(false);
    // the group is fully usable afterwards
    drv.failAttach.clear();
    expect((await run(m, core.attachGroup(u, g))).value).toBe(0);
    expect(g.domain).toBe(u);
  });

  it('a PASID attach failing after an await is undone on every device; state as before', async () => {
    const { m, core, drv } = setup();
    const a = testDevice('0000:06:00.0', { pci: 0x600, pasidBits: 8 });
    const b = testDevice('0000:06:00.1', { pci: 0x601, aliases: [0x600], pasidBits: 8 });
    await core.probeDevice(a);
    await core.probeDevice(b);
    const u1 = await paging(core, a);
    const u2 = await paging(core, a);
    drv.attachDelayNs = 200;
    expect((await run(m, core.attachDevicePasid(u1, a, 3))).value).toBe(0);
    const pasids = new Map(drv.pasids);
    drv.failAttach.add(b.name);
    expect((await run(m, core.attachDevicePasid(u2, a, 4))).value).toBe(-EINVAL);
    expect((await run(m, core.replaceDevicePasid(u2, a, 3))).value).toBe(-EINVAL);
    expect(drv.pasids).toEqual(pasids);
    expect(core.getDomainForDevPasid(a, 3)).toBe(u1);
    expect(core.getDomainForDevPasid(a, 4)).toBeNull();
  });

  it('the group mutex serialises attaches: the second sees the first one done', async () => {
    const { m, core, drv } = setup();
    const d = testDevice('contended');
    await core.probeDevice(d);
    const g = core.groupOf(d)!;
    const u1 = await paging(core, d);
    const u2 = await paging(core, d);
    drv.attachDelayNs = 1000;
    const order: string[] = [];
    const p1 = started(m, core.attachDevice(u1, d)).then((r) => order.push(`u1:${r}@${m.sched.now}`));
    const p2 = core.attachDevice(u2, d).then((r) => order.push(`u2:${r}@${m.sched.now}`));
    expect(g.mutex.isLocked).toBe(true);
    await m.sched.runUntil(() => order.length === 2);
    await Promise.all([p1, p2]);
    // the second attach waited for the first, then found a non-default domain attached
    expect(order).toEqual(['u1:0@1000', `u2:${-EBUSY}@1000`]);
    expect(core.getDomainForDev(d)).toBe(u1);
  });

  it('release awaits the driver and frees the group; sleeping paths are fine in process context', async () => {
    const { m, core, drv } = setup();
    const d = testDevice('gone', { pasidBits: 4 });
    await core.probeDevice(d);
    const u = await paging(core, d);
    await core.attachDevicePasid(u, d, 1);
    drv.attachDelayNs = 100;
    const r = await run(m, core.releaseDevice(d));
    expect(r.ns).toBe(200); // remove the PASID, then block the stream
    expect(core.groupOf(d)).toBeNull();
    expect(core.groups.length).toBe(0);
    expect(drv.streams.get(d.iommu!.ids[0]!)).toEqual({ kind: 'abort' });
    expect(drv.pasids.size).toBe(0);
    expect(m.bugs).toEqual([]);
  });
});

describe('unmap waits for the invalidation', () => {
  it('iommu_unmap and flush_iotlb_all resolve only when the invalidation completed', async () => {
    const { m, core, drv } = setup();
    const d = testDevice('d');
    await core.probeDevice(d);
    const u = await paging(core, d);
    expect(iommuMap(u, 0x10_0000, 0x8100_0000, 4 * SZ_4K, IOMMU_READ)).toBe(0);
    drv.syncDelayNs = 700;
    drv.completedSyncs = 0;
    const r = await run(m, iommuUnmap(u, 0x10_0000, 4 * SZ_4K));
    expect(r.value).toBe(4 * SZ_4K);
    expect(r.ns).toBe(700);
    expect(drv.completedSyncs).toBe(1);
    const f = await run(m, iommuFlushIotlbAll(u));
    expect(f.ns).toBe(700);
    expect(drv.completedSyncs).toBe(2);
  });

  it('a failed map takes back what it mapped and exposes the invalidation to wait for', async () => {
    const { m, core, drv } = setup();
    const d = testDevice('d');
    await core.probeDevice(d);
    const u = await paging(core, d);
    expect(iommuMap(u, 0x20_0000, 0x8120_0000, 0x20_0000, IOMMU_READ)).toBe(0); // a 2M block
    drv.syncDelayNs = 250;
    // a 4K page at 0x1ff000 maps, then the 2M block at 0x200000 cannot (a block is there):
    // the map fails and takes the 4K page back
    expect(iommuMap(u, 0x1f_f000, 0x801f_f000, 0x20_1000, IOMMU_READ)).toBeLessThan(0);
    expect(u.stats.maps).toBe(2);
    expect(iommuIovaToPhys(u, 0x1f_f000)).toBe(0);
    expect(iommuIovaToPhys(u, 0x20_0000)).toBe(0x8120_0000);
    const w = takeMapUnwind(u);
    expect(w).not.toBeNull();
    expect(takeMapUnwind(u)).toBeNull();
    expect((await run(m, w!)).ns).toBe(250);
  });

  it('a sync forced in the middle of an unmap is awaited by the final iotlb_sync', async () => {
    const { m } = setup();
    let issued = 0;
    let completed = 0;
    const target = {
      iotlbSync: (): Promise<void> => {
        issued++;
        return m.exec.delay(100 * issued).then(() => {
          completed++;
        });
      },
    };
    const g = new IommuIotlbGather();
    iotlbGatherAddPage(target, g, 0x1000, SZ_4K);
    iotlbGatherAddPage(target, g, 0x9000, SZ_4K); // disjoint: forces a sync (completes at 100)
    expect(issued).toBe(1);
    expect(g.start).toBe(0x9000);
    const r = await run(m, iotlbSync(target, g)); // its own sync completes at 200
    expect(issued).toBe(2);
    expect(completed).toBe(2);
    expect(r.ns).toBe(200);
    expect(g.empty).toBe(true);
    expect(g.pending).toBeNull();
  });

  it('strict dma_unmap returns after the invalidation, and the IOVA is not reused before', async () => {
    const { m, core, drv, dma } = setup({ dma: true });
    const dev = testDevice('nic', { maskBits: 48 });
    await core.probeDevice(dev);
    drv.syncDelayNs = 1000;
    const a = dma!.mapSingle(dev, 0x8100_0000, SZ_4K, 'to-device');
    let done = false;
    const p = started(m, dma!.unmapSingle(dev, a, SZ_4K, 'to-device')).then(() => (done = true));
    // the PTE is gone at once, the invalidation is in flight
    expect(iommuIovaToPhys(core.getDmaDomain(dev)!, a)).toBe(0);
    expect(drv.invalidationCmds).toBe(2);
    // a map meanwhile does not get the IOVA still covered by the in-flight invalidation
    const b = dma!.mapSingle(dev, 0x8200_0000, SZ_4K, 'to-device');
    expect(b).not.toBe(a);
    await m.sched.runFor(999);
    expect(done).toBe(false);
    await m.sched.runFor(1);
    expect(done).toBe(true);
    await p;
    await run(m, dma!.unmapSingle(dev, b, SZ_4K, 'to-device'));
    expect(m.bugs).toEqual([]);
  });

  it('unmap paths never sleep: strict and lazy unmaps from a hard-IRQ handler report no bug', async () => {
    for (const strict of [true, false]) {
      const { m, core, drv, dma } = setup({ strict, dma: true });
      const dev = testDevice('irq-unmapper');
      await core.probeDevice(dev);
      drv.syncDelayNs = 300;
      const addrs = [0, 1, 2].map((i) => dma!.mapSingle(dev, 0x8100_0000 + i * SZ_4K, SZ_4K, 'to-device'));
      const p = m.exec.runHardIrq('nic-irq', '', async () => {
        for (const a of addrs) await dma!.unmapSingle(dev, a, SZ_4K, 'to-device');
        await dma!.flushQueue(dev);
      });
      await run(m, p);
      expect(m.bugs).toEqual([]);
      // ...whereas attach takes the group mutex, which sleeps: a bug there
      const u = await paging(core, dev);
      await run(
        m,
        m.exec.runHardIrq('bad-irq', '', async () => {
          await core.attachDevice(u, dev);
        }),
      );
      expect(m.bugs.map((b) => b.kind)).toEqual(['might-sleep']);
    }
  });

  it('lazy mode: the flush-queue timer runs an async flush, IOVAs come back after it completes', async () => {
    const { m, core, drv, dma } = setup({ strict: false, dma: true });
    const dev = testDevice('lazy');
    await core.probeDevice(dev);
    const cookie = cookieOf(core.getDmaDomain(dev)!)!;
    drv.syncDelayNs = 5000;
    for (let i = 0; i < 10; i++) {
      const a = dma!.mapSingle(dev, 0x8100_0000, SZ_4K, 'to-device');
      await dma!.unmapSingle(dev, a, SZ_4K, 'to-device'); // queued: no wait
    }
    expect(m.sched.now).toBe(0);
    expect(cookie.fq!.length).toBe(10);
    await m.sched.runFor(10_000_000); // the timer fires; its flush_iotlb_all is in flight
    expect(drv.invalidationCmds).toBe(2);
    expect(cookie.fq!.length).toBe(10);
    await m.sched.runFor(5000);
    expect(cookie.fq!.stats.timerFlushes).toBe(1);
    expect(cookie.fq!.length).toBe(0);
    // an unmap queued while a flush is in flight is not released by that flush
    const a = dma!.mapSingle(dev, 0x8100_0000, SZ_4K, 'to-device');
    await dma!.unmapSingle(dev, a, SZ_4K, 'to-device');
    const fl = started(m, dma!.flushQueue(dev));
    const b = dma!.mapSingle(dev, 0x8200_0000, SZ_4K, 'to-device');
    await dma!.unmapSingle(dev, b, SZ_4K, 'to-device');
    await run(m, fl);
    expect(cookie.fq!.length).toBe(1); // b waits for the next flush
    await run(m, dma!.flushQueue(dev));
    expect(cookie.fq!.length).toBe(0);
    expect(m.bugs).toEqual([]);
  });

  it('freeing the default domain drains its flush queue and waits for the flush', async () => {
    const { m, core, drv, dma } = setup({ strict: false, dma: true });
    const dev = testDevice('teardown');
    await core.probeDevice(dev);
    const dom = core.getDmaDomain(dev)!;
    const cookie = cookieOf(dom)!;
    await dma!.unmapSingle(dev, dma!.mapSingle(dev, 0x8100_0000, SZ_4K, 'to-device'), SZ_4K, 'to-device');
    drv.syncDelayNs = 400;
    drv.completedSyncs = 0;
    const r = await run(m, core.releaseDevice(dev));
    expect(r.ns).toBe(400);
    expect(drv.completedSyncs).toBe(1);
    expect(cookie.fq!.length).toBe(0);
    expect(dom.iovaCookie).toBeNull();
    // no timer left behind
    await m.sched.runUntilIdle();
    expect(drv.completedSyncs).toBe(1);
    expect(m.bugs).toEqual([]);
  });
});

describe('MSI doorbell mapping (iommu_dma_prepare_msi)', () => {
  it('a device behind a DMA domain gets the ITS doorbell mapped, and its MSI write reaches the ITS', async () => {
    const { m, core, drv, dma } = setup({ dma: true });
    const dev = testDevice('msi-nic', { maskBits: 32 });
    await core.probeDevice(dev);
    const doorbell = m.irq.doorbell;
    expect(doorbell).toBe(m.irq.itsBase + GITS_TRANSLATER);
    const addr = dma!.prepareMsi(dev);
    expect(addr).toBeGreaterThan(0);
    expect(addr).not.toBe(doorbell);
    expect(addr % SZ_4K).toBe(doorbell % SZ_4K); // same offset in the page
    const dom = core.getDmaDomain(dev)!;
    expect(iommuIovaToPhys(dom, addr)).toBe(doorbell);
    // once per domain: a second request reuses the mapping
    expect(dma!.prepareMsi(dev)).toBe(addr);
    expect(cookieOf(dom)!.msiPages.size).toBe(1);
    // the IOVA is the allocator's: DMA mappings never collide with it
    for (let i = 0; i < 64; i++) {
      const a = dma!.mapSingle(dev, 0x8100_0000 + i * SZ_4K, SZ_4K, 'to-device');
      expect(a === DMA_MAPPING_ERROR || Math.floor(a / SZ_4K) !== Math.floor(addr / SZ_4K)).toBe(true);
    }
    // the device's MSI write translates to the doorbell and raises the interrupt
    const [msi] = m.irq.allocMsi(1);
    const seen: number[] = [];
    m.irq.requestIrq(msi!.irq, 'msi-nic', (irq) => {
      seen.push(irq);
      return 1; // IRQ_HANDLED
    });
    expect(drv.dmaWrite32(dev.iommu!.ids[0]!, addr, msi!.data)).toBe(0);
    await m.sched.runUntilIdle();
    expect(seen).toEqual([msi!.irq]);
    // the untranslated doorbell address is not what the device can reach
    expect(drv.dmaWrite32(dev.iommu!.ids[0]!, doorbell, msi!.data)).toBe(-1);
    expect(m.bugs).toEqual([]);
  });

  it('no translation, no mapping: dma-direct and IDENTITY devices use the doorbell address itself', async () => {
    const direct = new DmaApi(newMachine(), null);
    expect(direct.prepareMsi(testDevice('plain'))).toBe(direct.m.irq.doorbell);
    const pt = setup({ dma: true });
    const { core, dma, drv } = pt;
    drv.defDomainTypes.set('pt-dev', 1 << 2); // IOMMU_DOMAIN_IDENTITY
    const d = testDevice('pt-dev');
    await core.probeDevice(d);
    expect(dma!.prepareMsi(d)).toBe(pt.m.irq.doorbell);
  });

  it('an UNMANAGED domain with an MSI cookie maps doorbells in the software MSI window', async () => {
    const { m, core, dma } = setup({ dma: true });
    const dev = testDevice('vfio-dev');
    await core.probeDevice(dev);
    const u: IommuDomain = await paging(core, dev);
    expect(iommuGetMsiCookie(core.getDmaDomain(dev)!)).toBe(-EINVAL); // DMA domains have an IOVA cookie
    expect(iommuGetMsiCookie(u)).toBe(0);
    expect(iommuGetMsiCookie(u)).toBe(-EBUSY);
    expect(await core.attachDevice(u, dev)).toBe(0);
    const doorbell = m.irq.doorbell;
    const addr = dma!.prepareMsi(dev);
    expect(addr).toBe(MSI_IOVA_BASE + (doorbell % SZ_4K));
    expect(addr).toBeLessThan(MSI_IOVA_BASE + MSI_IOVA_LENGTH);
    expect(iommuIovaToPhys(u, addr)).toBe(doorbell);
    // another doorbell page takes the next page of the window
    expect(iommuDmaGetMsiPage(dev, 0x0900_0000, u)).toBe(MSI_IOVA_BASE + SZ_4K);
    expect(iommuIovaToPhys(u, MSI_IOVA_BASE + SZ_4K + 0x40)).toBe(0x0900_0040);
    // a domain without a cookie (and no translation of its own for MSIs) leaves the address alone
    const bare = await paging(core, dev);
    expect(iommuDmaGetMsiPage(dev, doorbell, bare)).toBeLessThan(0);
    void IOMMU_WRITE;
  });
});
