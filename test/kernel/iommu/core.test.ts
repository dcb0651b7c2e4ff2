// The IOMMU core: probe and groups, default domains, transactional attach, PASID, map/unmap.

import { describe, expect, it } from 'vitest';
import { IommuCore } from '../../../src/kernel/iommu/core.ts';
import {
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  iommuIovaToPhys,
  iommuMap,
  iommuPgsize,
  iommuUnmap,
} from '../../../src/kernel/iommu/domain.ts';
import { EBUSY, EINVAL, EOPNOTSUPP } from '../../../src/kernel/iommu/errno.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { newMachine, SZ_1G, SZ_2M, SZ_4K } from './helpers.ts';
import { TestIommu, testDevice } from './test-iommu-driver.ts';

function setup(cfg: { passthrough?: boolean; strict?: boolean } = {}) {
  const m = newMachine();
  const core = new IommuCore(m, cfg);
  const drv = new TestIommu(m);
  core.register('test-iommu.0', drv);
  return { m, core, drv };
}

describe('probe, groups and default domains', () => {
  it('one group per platform device; PCI aliases share a group', async () => {
    const { core } = setup();
    const a = testDevice('a');
    const b = testDevice('b');
    const p0 = testDevice('0000:01:00.0', { pci: 0x100 });
    const p1 = testDevice('0000:01:00.1', { pci: 0x101, aliases: [0x100] });
    const p2 = testDevice('0000:02:00.0', { pci: 0x200 });
    for (const d of [a, b, p0, p1, p2]) expect(await core.probeDevice(d)).toBe(0);
    expect(core.groupOf(a)).not.toBe(core.groupOf(b));
    expect(core.groupOf(p0)).toBe(core.groupOf(p1));
    expect(core.groupOf(p2)).not.toBe(core.groupOf(p0));
    expect(core.groupOf(p0)!.devices.length).toBe(2);
    // a device without fwspec is not ours
    expect(await core.probeDevice({ ...testDevice('x'), iommu: null })).toBe(-19);
  });

  it('devices sharing a StreamID share a group; equal RIDs behind different host bridges do not', async () => {
    const { core } = setup();
    const a = testDevice('a', { sids: [0x40, 0x41] });
    const b = testDevice('b', { sids: [0x41] });
    const c = testDevice('c', { sids: [0x42] });
    for (const d of [a, b, c]) expect(await core.probeDevice(d)).toBe(0);
    expect(core.groupOf(a)).toBe(core.groupOf(b));
    expect(core.groupOf(c)).not.toBe(core.groupOf(a));
    // two root complexes: RID 0 on each is a different function
    const h0 = { ...testDevice('0000:00:00.0', { pci: 0, sids: [0x1000] }) };
    const h1 = { ...testDevice('0001:00:00.0', { pci: 0, sids: [0x2000] }) };
    (h0.pci as { hostBridge?: string }).hostBridge = '/pcie@0';
    (h1.pci as { hostBridge?: string }).hostBridge = '/pcie@1';
    for (const d of [h0, h1]) expect(await core.probeDevice(d)).toBe(0);
    expect(core.groupOf(h0)).not.toBe(core.groupOf(h1));
  });

  it('default domain: DMA (strict), DMA_FQ (lazy), IDENTITY (passthrough), driver preference', async () => {
    const strict = setup();
    const d = testDevice('d');
    await strict.core.probeDevice(d);
    expect(strict.core.getDomainForDev(d)!.type).toBe(IOMMU_DOMAIN_DMA);
    const lazy = setup({ strict: false });
    await lazy.core.probeDevice(d);
    expect(lazy.core.getDomainForDev(d)!.type).toBe(IOMMU_DOMAIN_DMA_FQ);
    const pt = setup({ passthrough: true });
    await pt.core.probeDevice(d);
    expect(pt.core.getDomainForDev(d)).toBe(pt.drv.identityDomain);
    // driver requires IDENTITY for one device despite the global DMA default
    const pref = setup();
    pref.drv.defDomainTypes.set('needs-pt', IOMMU_DOMAIN_IDENTITY);
    const n = testDevice('needs-pt');
    await pref.core.probeDevice(n);
    expect(pref.core.getDomainForDev(n)!.type).toBe(IOMMU_DOMAIN_IDENTITY);
    // lazy mode needs the driver's deferred-flush capability
    const nofq = setup({ strict: false });
    nofq.drv.deferredFlush = false;
    await nofq.core.probeDevice(d);
    expect(nofq.core.getDomainForDev(d)!.type).toBe(IOMMU_DOMAIN_DMA);
  });

  it('conflicting driver requirements in one group: IDENTITY wins; untrusted devices refuse IDENTITY', async () => {
    const { core, drv } = setup();
    drv.defDomainTypes.set('0000:03:00.1', IOMMU_DOMAIN_IDENTITY);
    drv.defDomainTypes.set('0000:03:00.0', IOMMU_DOMAIN_DMA);
    const a = testDevice('0000:03:00.0', { pci: 0x300 });
    await core.probeDevice(a);
    const g = core.groupOf(a)!;
    const b = testDevice('0000:03:00.1', { pci: 0x301, aliases: [0x300] });
    await core.probeDevice(b);
    expect(core.defaultDomainTypeFor(g)).toBe(IOMMU_DOMAIN_IDENTITY);
    const u = { ...testDevice('0000:04:00.0', { pci: 0x400 }), untrusted: true };
    drv.defDomainTypes.set('0000:04:00.0', IOMMU_DOMAIN_IDENTITY);
    expect(await core.probeDevice(u)).toBe(-EINVAL);
    expect(core.groupOf(u)).toBeNull();
  });
});

describe('attach, detach, replace', () => {
  it('attach an UNMANAGED domain, detach back to the default domain', async () => {
    const { core } = setup();
    const d = testDevice('d');
    await core.probeDevice(d);
    const def = core.getDomainForDev(d)!;
    const u = await core.domainAllocPaging(d);
    if (typeof u === 'number') throw new Error('alloc');
    expect(u.type).toBe(IOMMU_DOMAIN_UNMANAGED);
    expect(await core.attachDevice(u, d)).toBe(0);
    expect(core.getDomainForDev(d)).toBe(u);
    // a second attach while a non-default domain is attached: -EBUSY
    const u2 = (await core.domainAllocPaging(d)) as typeof u;
    expect(await core.attachDevice(u2, d)).toBe(-EBUSY);
    // replace switches directly
    expect(await core.replaceGroupDomain(core.groupOf(d)!, u2)).toBe(0);
    expect(core.getDomainForDev(d)).toBe(u2);
    await core.detachDevice(u2, d);
    expect(core.getDomainForDev(d)).toBe(def);
  });

  it('a failed attach half-way through a group leaves hardware and core state as before', async () => {
    const { core, drv } = setup();
    const a = testDevice('0000:05:00.0', { pci: 0x500 });
    const b = testDevice('0000:05:00.1', { pci: 0x501, aliases: [0x500] });
    await core.probeDevice(a);
    await core.probeDevice(b);
    const g = core.groupOf(a)!;
    const before = new Map(drv.streams);
    const def = g.domain;
    const u = (await core.domainAllocPaging(a)) as Exclude<
      Awaited<ReturnType<typeof core.domainAllocPaging>>,
      number
    >;
    drv.failAttach.add(b.name); // the second device fails after the first was switched
    drv.attachLog = [];
    expect(await core.attachGroup(u, g)).toBe(-EINVAL);
    expect(g.domain).toBe(def);
    expect(drv.streams).toEqual(before);
    expect(drv.attachLog).toEqual([`${a.name}->${u}`, `${a.name}->${def}`]); // switched, then restored
    // attach_device refuses a device that is not alone in its group
    expect(await core.attachDevice(u, a)).toBe(-EINVAL);
  });
});

describe('PASID', () => {
  it('attach, replace, detach with the errors Linux gives', async () => {
    const { core, drv } = setup();
    const d = testDevice('pasid-dev', { pasidBits: 8 });
    const nop = testDevice('no-pasid');
    await core.probeDevice(d);
    await core.probeDevice(nop);
    const u1 = (await core.domainAllocPaging(d)) as Exclude<
      Awaited<ReturnType<typeof core.domainAllocPaging>>,
      number
    >;
    const u2 = (await core.domainAllocPaging(d)) as typeof u1;
    expect(await core.attachDevicePasid(u1, d, 0)).toBe(-EINVAL); // IOMMU_NO_PASID
    expect(await core.attachDevicePasid(u1, d, 256)).toBe(-EINVAL); // beyond the device's 8 bits
    expect(await core.attachDevicePasid(u1, nop, 1)).toBe(-EOPNOTSUPP); // no PASID capability
    expect(await core.attachDevicePasid(drv.blockedDomain, d, 1)).toBe(-EINVAL); // type not allowed
    expect(await core.attachDevicePasid(u1, d, 5)).toBe(0);
    expect(await core.attachDevicePasid(u2, d, 5)).toBe(-EBUSY);
    expect(core.getDomainForDevPasid(d, 5)).toBe(u1);
    expect(await core.replaceDevicePasid(u2, d, 5)).toBe(0);
    expect(core.getDomainForDevPasid(d, 5)).toBe(u2);
    drv.failAttach.add(d.name);
    expect(await core.replaceDevicePasid(u1, d, 5)).toBe(-EINVAL);
    expect(core.getDomainForDevPasid(d, 5)).toBe(u2);
    drv.failAttach.delete(d.name);
    await core.detachDevicePasid(u2, d, 5);
    expect(core.getDomainForDevPasid(d, 5)).toBeNull();
    expect(drv.pasids.size).toBe(0);
    // the PASID's DMA goes through its own domain
    const buf = new Uint8Array([1, 2, 3, 4]);
    await core.attachDevicePasid(u1, d, 7);
    iommuMap(u1, 0x1000_0000, 0x8100_0000, SZ_4K, IOMMU_READ | IOMMU_WRITE);
    expect(drv.dma(d.iommu!.ids[0]!, 0x1000_0000, buf, true, 7)).toBe(0);
    expect(drv.dma(d.iommu!.ids[0]!, 0x1000_0000, buf, true, 8)).toBe(-1);
  });
});

describe('domain map/unmap', () => {
  it('picks the largest page sizes alignment allows, and gathers invalidations', async () => {
    const out = new Float64Array(1);
    expect(iommuPgsize(0x1000 + 0x200000 + 0x40000000, 0x1ff000, 0x3ff000, 0x201000, out)).toBe(SZ_4K);
    expect(out[0]).toBe(1); // one 4K page, then a 2M block fits
    expect(iommuPgsize(0x1000 + 0x200000 + 0x40000000, 0x200000, 0x400000, 0x400000, out)).toBe(SZ_2M);
    expect(out[0]).toBe(2);
    expect(iommuPgsize(0x1000 + 0x200000 + 0x40000000, 0x1000, 0x2000, SZ_1G, out)).toBe(SZ_4K);
    const { core, drv } = setup();
    const d = testDevice('d');
    await core.probeDevice(d);
    const u = (await core.domainAllocPaging(d)) as Exclude<
      Awaited<ReturnType<typeof core.domainAllocPaging>>,
      number
    >;
    expect(iommuMap(u, 0x1ff000, 0x801ff000, 0x201000, IOMMU_READ)).toBe(0);
    expect(u.stats.maps).toBe(2);
    expect(iommuIovaToPhys(u, 0x200123)).toBe(0x80200123);
    expect(iommuMap(u, 0x1000, 0x1001, SZ_4K, IOMMU_READ)).toBe(-EINVAL); // misaligned
    drv.invalidationCmds = 0;
    expect(await iommuUnmap(u, 0x1ff000, 0x201000)).toBe(0x201000);
    // 4K page and 2M block have different sizes: the gather syncs between them (2 syncs = 4 commands)
    expect(drv.invalidationCmds).toBe(4);
    expect(iommuIovaToPhys(u, 0x200123)).toBe(0);
  });
});
