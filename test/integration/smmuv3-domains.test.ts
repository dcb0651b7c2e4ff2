/**
 * Domains through the whole stack (virt board + kernel model + SMMUv3 driver + SMMUv3 model):
 * DMA through the default DMA domain, identity (output = input) and blocked (aborted, no
 * event) domains, UNMANAGED domains attached, replaced and detached at run time, and the ATS
 * ordering rules with a PCIe endpoint that has an ATS capability.
 */
import { describe, expect, it } from 'vitest';
import { PORT_ABORT, PORT_BYPASS, PORT_FAULT, PORT_OK } from '../../src/hw/smmuv3/port.ts';
import {
  IOMMU_DOMAIN_DMA,
  type IommuDomain,
  iommuIovaToPhys,
  iommuMap,
} from '../../src/kernel/iommu/domain.ts';
import { EBUSY, EINVAL } from '../../src/kernel/iommu/errno.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import {
  bootStack,
  dev,
  fillPattern,
  GPU_PATH,
  inTask,
  NO_ATS_DTS,
  PCI_PATH,
  PCI_RID,
  readBytes,
  sameBytes,
  sidOf,
  smmuInstance,
  translate,
} from './stack-helpers.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

describe('SMMUv3 stack: DMA domains', () => {
  it('DMA mapped with the DMA API reaches exactly the mapped pages, for platform and PCI masters', async () => {
    const { m, board, k } = await bootStack();
    const gpu = dev(k, GPU_PATH);
    const pci = dev(k, PCI_PATH);
    expect(k.iommu.getDomainForDev(gpu)!.type).toBe(IOMMU_DOMAIN_DMA);
    expect(k.iommu.getDomainForDev(pci)!.type).toBe(IOMMU_DOMAIN_DMA);
    expect(k.iommu.getDomainForDev(gpu)).not.toBe(k.iommu.getDomainForDev(pci));
    const port = board.smmu.port;
    const buf = m.pages.alloc(2, 'dma buffers'); // 16 KiB
    // device -> memory: the PCI device writes 0x2800 bytes at an offset inside a 3-page mapping
    const src = new Uint8Array(0x2800).map((_, i) => (i * 13 + 5) & 0xff);
    const iovaW = k.dma.mapSingle(pci, buf + 0x300, src.length, 'from-device');
    expect(iovaW).toBeGreaterThan(0);
    expect(port.dmaWrite(sidOf(pci), -1, iovaW, src, 0, src.length)).toBe(src.length);
    expect(sameBytes(readBytes(m, buf + 0x300, src.length), src)).toBe(true);
    // every page of the mapping translates to the matching physical page
    for (let off = 0; off < src.length; off += 0x1000) {
      const r = translate(board, sidOf(pci), iovaW + off, 1);
      expect(r.status).toBe(PORT_OK);
      expect(r.oa).toBe(buf + 0x300 + off);
    }
    // the GPU reads another buffer through its own domain
    const data = fillPattern(m, buf + 0x3000, 0x1000, 3);
    const iovaR = k.dma.mapSingle(gpu, buf + 0x3000, 0x1000, 'to-device');
    const got = new Uint8Array(0x1000);
    expect(port.dmaRead(sidOf(gpu), -1, iovaR, got, 0, got.length)).toBe(0x1000);
    expect(sameBytes(got, data)).toBe(true);
    // each device's IOVA means nothing in the other device's domain
    const cross = translate(board, sidOf(pci), iovaR, 0);
    if (iommuIovaToPhys(k.iommu.getDomainForDev(pci)!, iovaR) === 0) expect(cross.status).toBe(PORT_FAULT);
    // the page after the PCI mapping is not mapped: that DMA does not complete
    const after = translate(board, sidOf(pci), iovaW - (iovaW % 0x1000) + 0x3000, 0);
    expect(after.status).toBe(PORT_FAULT);
    await inTask(m, async () => {
      await k.dma.unmapSingle(pci, iovaW, src.length, 'from-device');
      await k.dma.unmapSingle(gpu, iovaR, 0x1000, 'to-device');
    });
    expect(translate(board, sidOf(pci), iovaW, 1).status).toBe(PORT_FAULT);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: identity and blocked domains', () => {
  it('identity: output address = input address; detaching restores the DMA domain', async () => {
    const { m, board, k } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const { iommu, smmu } = smmuInstance(k);
    const dma = k.iommu.getDomainForDev(pci)!;
    const buf = m.pages.alloc(0, 'identity buffer');
    const data = fillPattern(m, buf, 0x1000, 9);
    expect(await inTask(m, () => k.iommu.attachDevice(iommu.identityDomain, pci))).toBe(0);
    expect(k.iommu.getDomainForDev(pci)).toBe(iommu.identityDomain);
    // STE.Config = bypass (0b100), written by the entry writer
    expect(Number((smmu.readSte(PCI_RID)[0]! >> 1n) & 7n)).toBe(4);
    for (const a of [buf, buf + 0x123, 0x8765_4000, 0x1_2345_6000]) {
      const r = translate(board, PCI_RID, a, 0);
      expect(r.status).toBe(PORT_BYPASS);
      expect(r.oa).toBe(a);
    }
    const got = new Uint8Array(0x1000);
    expect(board.smmu.port.dmaRead(PCI_RID, -1, buf, got, 0, got.length)).toBe(0x1000);
    expect(sameBytes(got, data)).toBe(true);
    await inTask(m, () => k.iommu.detachDevice(iommu.identityDomain, pci));
    expect(k.iommu.getDomainForDev(pci)).toBe(dma);
    // back in the DMA domain, where the physical address is not an IOVA
    expect(iommuIovaToPhys(dma, buf)).toBe(0);
    expect(translate(board, PCI_RID, buf, 0).status).toBe(PORT_FAULT);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('blocked: every DMA is aborted without translation and without an event; detach restores', async () => {
    const { m, board, k } = await bootStack();
    const gpu = dev(k, GPU_PATH);
    const { iommu, smmu } = smmuInstance(k);
    const buf = m.pages.alloc(0, 'blocked buffer');
    const iova = k.dma.mapSingle(gpu, buf, 0x1000, 'bidirectional');
    expect(translate(board, sidOf(gpu), iova, 0).status).toBe(PORT_OK); // TLB now holds it
    const events = smmu.stats.events;
    const recorded = board.smmu.evtq.stats;
    const before = JSON.stringify(recorded);
    expect(await inTask(m, () => k.iommu.attachDevice(iommu.blockedDomain, gpu))).toBe(0);
    expect(Number((smmu.readSte(sidOf(gpu))[0]! >> 1n) & 7n)).toBe(0); // V=1, Config abort
    for (const [a, acc] of [
      [iova, 0],
      [iova, 1],
      [buf, 0],
      [0, 1],
    ] as const) {
      const r = translate(board, sidOf(gpu), a, acc);
      expect(r.status).toBe(PORT_ABORT);
      expect(r.recorded).toBe(false);
    }
    await m.sched.runUntilIdle();
    expect(smmu.stats.events).toBe(events);
    expect(JSON.stringify(board.smmu.evtq.stats)).toBe(before);
    expect(board.smmu.upstream.stalledCount(sidOf(gpu))).toBe(0); // aborted, not stalled
    // the DMA domain kept its mapping: detaching the blocked domain makes it usable again
    await inTask(m, () => k.iommu.detachDevice(iommu.blockedDomain, gpu));
    const r = translate(board, sidOf(gpu), iova, 0);
    expect(r.status).toBe(PORT_OK);
    expect(r.oa).toBe(buf);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: UNMANAGED domains at run time', () => {
  const IOVA = 0x1000_0000;

  it('attach, replace and detach change what the device reaches, with no stale translation', async () => {
    const { m, board, k } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const group = k.iommu.groupOf(pci)!;
    const dma = k.iommu.getDomainForDev(pci)!;
    const pages = m.pages.alloc(1, 'unmanaged pages'); // A = pages, B = pages + 4K
    const a = fillPattern(m, pages, 0x1000, 1);
    const b = fillPattern(m, pages + 0x1000, 0x1000, 2);
    const d1 = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
    const d2 = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
    expect(typeof d1).toBe('object');
    expect(iommuMap(d1, IOVA, pages, 0x1000, RW)).toBe(0);
    expect(iommuMap(d2, IOVA, pages + 0x1000, 0x1000, IOMMU_READ)).toBe(0);
    const readPage = () => {
      const got = new Uint8Array(0x1000);
      const n = board.smmu.port.dmaRead(PCI_RID, -1, IOVA, got, 0, got.length);
      return n === 0x1000 ? got : null;
    };
    expect(iommuIovaToPhys(dma, IOVA)).toBe(0);
    expect(readPage()).toBeNull(); // not mapped in the DMA domain
    expect(await inTask(m, () => k.iommu.attachDevice(d1, pci))).toBe(0);
    expect(k.iommu.getDomainForDev(pci)).toBe(d1);
    expect(sameBytes(readPage()!, a)).toBe(true);
    // a second UNMANAGED attach over an UNMANAGED one is refused; replace is the way
    expect(await inTask(m, () => k.iommu.attachDevice(d2, pci))).toBe(-EBUSY);
    expect(sameBytes(readPage()!, a)).toBe(true);
    expect(await inTask(m, () => k.iommu.replaceGroupDomain(group, d2))).toBe(0);
    expect(k.iommu.getDomainForDev(pci)).toBe(d2);
    expect(sameBytes(readPage()!, b)).toBe(true); // the TLB entry of d1 is not used
    expect(translate(board, PCI_RID, IOVA, 1).status).toBe(PORT_FAULT); // d2 maps it read-only
    await inTask(m, () => k.iommu.detachDevice(d2, pci));
    expect(k.iommu.getDomainForDev(pci)).toBe(dma);
    expect(readPage()).toBeNull();
    // and once more, to d1 again
    expect(await inTask(m, () => k.iommu.attachDevice(d1, pci))).toBe(0);
    expect(sameBytes(readPage()!, a)).toBe(true);
    await inTask(m, async () => {
      await k.iommu.detachDevice(d1, pci);
      await k.iommu.domainFree(d1);
      await k.iommu.domainFree(d2);
    });
    expect(readPage()).toBeNull();
    // the DMA API still works after all of that
    const iova = k.dma.mapSingle(pci, pages, 0x1000, 'to-device');
    expect(translate(board, PCI_RID, iova, 0).oa).toBe(pages);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('a failed attach (stall-enabled domain on a non-stalling master) leaves the STE untouched', async () => {
    const { m, board, k } = await bootStack();
    const gpu = dev(k, GPU_PATH);
    const pci = dev(k, PCI_PATH);
    const { smmu } = smmuInstance(k);
    const page = m.pages.alloc(0, 'shared page');
    const d = (await inTask(m, () => k.iommu.domainAllocPaging(gpu))) as IommuDomain;
    expect(iommuMap(d, IOVA, page, 0x1000, RW)).toBe(0);
    expect(await inTask(m, () => k.iommu.attachDevice(d, gpu))).toBe(0);
    expect(translate(board, sidOf(gpu), IOVA, 0).oa).toBe(page);
    const ste = smmu.readSte(PCI_RID).join();
    const writes = smmu.stats.steWrites;
    const cmds = smmu.stats.commands;
    const dmaDom = k.iommu.getDomainForDev(pci);
    expect(await inTask(m, () => k.iommu.attachDevice(d, pci))).toBe(-EINVAL);
    expect(smmu.readSte(PCI_RID).join()).toBe(ste);
    expect(smmu.stats.steWrites).toBe(writes);
    expect(smmu.stats.commands).toBe(cmds);
    expect(k.iommu.getDomainForDev(pci)).toBe(dmaDom);
    expect(translate(board, PCI_RID, IOVA, 0).status).toBe(PORT_FAULT);
    expect(translate(board, sidOf(gpu), IOVA, 0).oa).toBe(page); // the GPU is unaffected
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: ATS ordering with a PCIe endpoint', () => {
  /** STE.EATS of the PCI function's stream, as the SMMU would read it now. */
  const eats = (smmu: ReturnType<typeof smmuInstance>['smmu']) =>
    Number((smmu.readSte(PCI_RID)[1]! >> 28n) & 3n);

  async function bootAts(extra: { skipAtcInv?: boolean } = {}) {
    return bootStack({
      kernel: { smmu: { smmuOptions: { inject: { skipAtcInv: extra.skipAtcInv ?? false } } } },
    });
  }

  it('ATS is enabled at the endpoint only after the STE has EATS, and the ATC is used', async () => {
    // Watch the order from boot on: STE EATS changes (memory watcher on the STE) and the
    // endpoint's ATS Control.E (config-space writes), interleaved in one timeline.
    const timeline: string[] = [];
    let watchInstalled = false;
    const s = await bootStack();
    const { m, board, k, ep } = s;
    const { smmu, iommu } = smmuInstance(k);
    const pci = dev(k, PCI_PATH);
    const master = iommu.masterOf(pci)!;
    expect(master.atsSupported).toBe(true);
    // after boot, the DMA domain is attached with EATS and ATS enabled at the endpoint
    expect(eats(smmu)).toBe(1);
    expect(ep.atsEnabled).toBe(true);
    expect(master.atsEnabled).toBe(true);
    // now follow a blocked -> DMA round trip
    let lastEats = eats(smmu);
    const steWatch = m.mem.watch(smmu.steAddr(PCI_RID), 64, () => {
      const e = eats(smmu);
      if (e !== lastEats) timeline.push(`ste.eats=${e}`);
      lastEats = e;
    });
    watchInstalled = true;
    const prevOnWrite = ep.config.onWrite;
    let lastAts = ep.atsEnabled;
    ep.config.onWrite = (off: number) => {
      prevOnWrite?.(off);
      if (ep.atsEnabled !== lastAts) {
        timeline.push(`ep.ats=${ep.atsEnabled ? 1 : 0} (ste.eats=${eats(smmu)})`);
        lastAts = ep.atsEnabled;
      }
    };
    const cmdTrace: string[] = [];
    const origIssue = smmu.issue.bind(smmu);
    smmu.issue = (cmds, sync) => {
      for (const [n] of cmds) if (n === 'ATC_INV') timeline.push('ATC_INV');
      cmdTrace.push(...cmds.map(([n]) => n));
      return origIssue(cmds, sync);
    };
    expect(await inTask(m, () => k.iommu.attachDevice(iommu.blockedDomain, pci))).toBe(0);
    expect(ep.atsEnabled).toBe(false);
    expect(eats(smmu)).toBe(0);
    await inTask(m, () => k.iommu.detachDevice(iommu.blockedDomain, pci));
    expect(ep.atsEnabled).toBe(true);
    expect(eats(smmu)).toBe(1);
    expect(timeline).toEqual([
      // disable at the endpoint while the STE still allows ATS, then the STE stops allowing it
      'ep.ats=0 (ste.eats=1)',
      'ste.eats=0',
      'ATC_INV',
      // the STE allows ATS first, the ATC is flushed, then the endpoint may use ATS
      'ste.eats=1',
      'ATC_INV',
      'ep.ats=1 (ste.eats=1)',
    ]);
    steWatch();
    expect(watchInstalled).toBe(true);
    // with ATS on, the endpoint's DMA is translated through its ATC
    const buf = m.pages.alloc(0, 'ats buffer');
    const data = fillPattern(m, buf, 0x1000, 4);
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    const res = await endpointRead(s, iova, 0x1000);
    expect(res.ok).toBe(true);
    expect(sameBytes(res.bytes, data)).toBe(true);
    expect(ep.stats.translationRequests).toBeGreaterThan(0);
    expect(ep.atc.length).toBeGreaterThan(0);
    expect(board.smmu.ats.stats).toBeDefined();
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('unmap issues TLBI, then ATC_INV, then the endpoint can no longer reach the page', async () => {
    const s = await bootAts();
    const { m, k, ep } = s;
    const { smmu } = smmuInstance(k);
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'ats buffer');
    fillPattern(m, buf, 0x1000, 5);
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect((await endpointRead(s, iova, 0x1000)).ok).toBe(true);
    expect(ep.atc.length).toBeGreaterThan(0);
    const order: string[] = [];
    const origIssue = smmu.issue.bind(smmu);
    smmu.issue = (cmds, sync) => {
      for (const [n] of cmds) order.push(n);
      if (sync) order.push('SYNC');
      return origIssue(cmds, sync);
    };
    const atcBefore = smmu.stats.byOpcode.ATC_INV ?? 0;
    await inTask(m, () => k.dma.unmapSingle(pci, iova, 0x1000, 'to-device'));
    expect((smmu.stats.byOpcode.ATC_INV ?? 0) - atcBefore).toBe(1);
    // the TLB is invalidated (and synced) before the ATC, so the ATC cannot refill from a stale TLB
    const tlbi = order.findIndex((n) => n.startsWith('TLBI_'));
    const atc = order.indexOf('ATC_INV');
    expect(tlbi).toBeGreaterThanOrEqual(0);
    expect(atc).toBeGreaterThan(order.indexOf('SYNC', tlbi));
    expect(order[atc + 1]).toBe('SYNC');
    expect(ep.atc.length).toBe(0);
    const again = await endpointRead(s, iova, 0x1000);
    expect(again.ok).toBe(false);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('forgetting ATC_INV (inject.skipAtcInv) leaves a stale ATC entry the endpoint still uses', async () => {
    const s = await bootAts({ skipAtcInv: true });
    const { m, k, ep } = s;
    const pci = dev(k, PCI_PATH);
    const buf = m.pages.alloc(0, 'ats buffer');
    const data = fillPattern(m, buf, 0x1000, 6);
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    expect((await endpointRead(s, iova, 0x1000)).ok).toBe(true);
    await inTask(m, () => k.dma.unmapSingle(pci, iova, 0x1000, 'to-device'));
    const stale = await endpointRead(s, iova, 0x1000);
    // the isolation violation this switch exists to demonstrate
    expect(stale.ok).toBe(true);
    expect(sameBytes(stale.bytes, data)).toBe(true);
    expect(ep.stats.atcHits).toBeGreaterThan(0);
  });
});

describe('SMMUv3 stack: PASID attach and removal with ATS', () => {
  it('a PASID domain translates tagged DMA only; removal clears the CD, then invalidates that PASID in the ATC', async () => {
    const { m, board, k } = await bootStack();
    const pci = dev(k, PCI_PATH);
    const { smmu } = smmuInstance(k);
    // the endpoint's 20-bit PASID capability, discovered at probe, caps the SMMU's 2^20 SSIDs
    expect(k.iommu.devIommu(pci)!.maxPasids).toBe(2 ** 20);
    const page = m.pages.alloc(0, 'pasid page');
    const IOVA = 0x4000_0000;
    const d = (await inTask(m, () => k.iommu.domainAllocPaging(pci))) as IommuDomain;
    expect(iommuMap(d, IOVA, page, 0x1000, RW)).toBe(0);
    const rid = k.iommu.getDomainForDev(pci);
    expect(await inTask(m, () => k.iommu.attachDevicePasid(d, pci, 1))).toBe(0);
    expect(k.iommu.getDomainForDev(pci)).toBe(rid);
    expect(translate(board, PCI_RID, IOVA, 0, 1).oa).toBe(page);
    expect(translate(board, PCI_RID, IOVA, 0).status).toBe(PORT_FAULT); // untagged: the DMA domain
    const order: string[] = [];
    const origIssue = smmu.issue.bind(smmu);
    smmu.issue = (cmds, sync) => {
      for (const [n, v] of cmds)
        order.push(n === 'ATC_INV' ? `ATC_INV ssv=${v.SSV} ssid=${v.SubstreamID}` : n);
      if (sync) order.push('SYNC');
      return origIssue(cmds, sync);
    };
    await inTask(m, () => k.iommu.detachDevicePasid(d, pci, 1));
    const cfgi = order.lastIndexOf('CFGI_CD');
    const atc = order.indexOf('ATC_INV ssv=1 ssid=1');
    expect(cfgi).toBeGreaterThanOrEqual(0);
    expect(atc).toBeGreaterThan(order.indexOf('SYNC', cfgi)); // the CD is gone before the ATC is flushed
    expect(order[atc + 1]).toBe('SYNC');
    const r = translate(board, PCI_RID, IOVA, 0, 1);
    expect(r.status).toBe(PORT_FAULT);
    expect(r.fault).toBe(0x0a); // C_BAD_CD: the CD is invalid now
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });
});

describe('SMMUv3 stack: no ATS without root-complex support', () => {
  it('without `ats-supported` the STE has no EATS, ATS stays off and unmap issues no ATC_INV', async () => {
    const s = await bootStack({ dts: NO_ATS_DTS });
    const { m, k, ep } = s;
    const { smmu, iommu } = smmuInstance(k);
    const pci = dev(k, PCI_PATH);
    expect(iommu.masterOf(pci)!.atsSupported).toBe(false);
    expect(Number((smmu.readSte(PCI_RID)[1]! >> 28n) & 3n)).toBe(0);
    expect(ep.atsEnabled).toBe(false);
    const buf = m.pages.alloc(0, 'buffer');
    const data = fillPattern(m, buf, 0x1000, 8);
    const iova = k.dma.mapSingle(pci, buf, 0x1000, 'to-device');
    const r = await endpointRead(s, iova, 0x1000);
    expect(r.ok).toBe(true);
    expect(sameBytes(r.bytes, data)).toBe(true);
    expect(ep.stats.translationRequests).toBe(0); // untranslated requests, translated by the SMMU
    const atc = smmu.stats.byOpcode.ATC_INV ?? 0;
    await inTask(m, () => k.dma.unmapSingle(pci, iova, 0x1000, 'to-device'));
    expect(smmu.stats.byOpcode.ATC_INV ?? 0).toBe(atc);
    expect((await endpointRead(s, iova, 0x1000)).ok).toBe(false);
  });
});

/** DMA read by the PCIe endpoint model (ATS when enabled); completes in virtual time. */
async function endpointRead(
  s: Awaited<ReturnType<typeof bootStack>>,
  iova: number,
  len: number,
): Promise<{ ok: boolean; bytes: Uint8Array; why: string }> {
  const bytes = new Uint8Array(len);
  let out: { ok: boolean; bytes: Uint8Array; why: string } | null = null;
  s.ep.dma({
    ssid: -1,
    iova,
    buf: bytes,
    write: false,
    onDone: (ok, _n, why) => {
      out = { ok, bytes, why };
    },
  });
  await s.m.sched.runUntilIdle();
  if (out === null) throw new Error('endpoint DMA did not complete');
  return out;
}
