/**
 * The DMA-isolation sanitizer catches each driver mistake of issue 20 on its own, through the
 * public API: every report names the device, the address (PA, IOVA), the StreamID / PASID, the
 * translation's origin, the missing step and the page's allocation and free sites.
 */
import { describe, expect, it } from 'vitest';
import {
  boot,
  IOMMU_PAGE_RESP_SUCCESS,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuFault,
  type Lab,
} from '../../src/api/index.ts';
import { DMA_CTRL_START, DmaEngineReg as R } from '../../src/arch/devices/dma-engine.ts';
import { VIRT } from '../../src/hw/boards/virt.ts';
import type { IommuDomain } from '../../src/kernel/iommu/domain.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const NIC = { name: 'nic', streamIds: [0x210] };
const EP = { bdf: '00:03.0', name: 'ep', ats: true, pri: false, pasidBits: 8 };

function only(lab: Lab) {
  const reps = lab.sanitizer!.reports;
  expect(reps.map((r) => r.text)).toHaveLength(1);
  return reps[0]!;
}

describe('DMA-isolation sanitizer catches', () => {
  it('a skipped TLBI after unmap (the page freed and reused)', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const rx = lab.allocPages(0, 'rx buffer');
    const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
    expect((await nic.write(iova, new Uint8Array(64))).ok).toBe(true);
    await lab.inject.during('skip-tlbi', () => lab.dma.unmapSingle(dev, iova, 4096, 'from-device'));
    lab.freePages(rx);
    expect(lab.allocPages(0, 'reused')).toBe(rx);
    expect((await nic.write(iova + 0x40, new Uint8Array(64))).ok).toBe(true);
    const r = only(lab);
    expect(r).toMatchObject({
      kind: 'use-after-free',
      device: dev.name,
      pa: rx + 0x40,
      iova: iova + 0x40,
      sid: 0x210,
      ssid: -1,
    });
    expect(r.text.split('\n')[0]).toBe(
      `BUG: DMA use-after-free: ${dev.name} write of 64 bytes at PA 0x${(rx + 0x40).toString(16)} (IOVA 0x${(iova + 0x40).toString(16)}, StreamID 0x210)`,
    );
    expect(r.text).toMatch(/translation: TLB entry filled at virtual time \d+ ns for ASID \d+, VMID 0/);
    expect(r.missing).toMatch(
      /^no TLBI for IOVA 0x[0-9a-f]+ ASID \d+ between the unmap at t=\d+ ns and this access/,
    );
    expect(r.allocSite).toMatch(/Lab\.allocPages/);
    expect(r.freeSite).toMatch(/Lab\.freePages/);
  });

  it('nothing when the driver does its job (same steps, no injection)', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const rx = lab.allocPages(0, 'rx buffer');
    const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
    expect((await nic.write(iova, new Uint8Array(64))).ok).toBe(true);
    await lab.dma.unmapSingle(dev, iova, 4096, 'from-device');
    lab.freePages(rx);
    lab.allocPages(0, 'reused');
    expect((await nic.write(iova, new Uint8Array(64))).ok).toBe(false);
    expect(lab.sanitizer!.reports).toEqual([]);
  });

  it('a skipped CFGI after a configuration change (the SMMU walks freed tables)', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const page = lab.allocPages(0, 'buffer');
    const a = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.map(a, 0x10000, page, 4096, RW)).toBe(0);
    expect(await lab.iommu.attachDevice(a, dev)).toBe(0);
    expect((await nic.read(0x10000, 8)).ok).toBe(true);
    // back to the default domain without CFGI: the SMMU keeps a's configuration cached; a is
    // then freed (its TLB entries invalidated by ASID, its tables freed)
    await lab.inject.during('skip-cfgi', () => lab.iommu.detachDevice(a, dev));
    await lab.iommu.domainFree(a);
    expect(lab.bugs).toEqual([]);
    await nic.read(0x10008, 8);
    const r = lab.sanitizer!.reports.find((x) => x.kind === 'walk-of-freed-table')!;
    expect(r, lab.sanitizer!.format()).toBeDefined();
    expect(r).toMatchObject({ sid: 0x210, iova: 0x10008, origin: 'walk' });
    expect(r.text).toMatch(
      /^BUG: SMMU walk of a freed page: smmuv3\.0 read of 8 bytes \(table walk\) at PA 0x[0-9a-f]+ \(IOVA 0x10008, StreamID 0x210\)/,
    );
    expect(r.missing).toMatch(
      /^no CFGI_(STE|CD) for StreamID 0x210 after its (STE|CD \d+) was rewritten at t=\d+ ns/,
    );
    expect(r.allocSite).toMatch(/alloc/);
    expect(r.freeSite).toMatch(/free/i);
  });

  for (const pasid of [-1, 1]) {
    it(`a skipped ATC_INV (${pasid < 0 ? 'RID' : 'PASID 1'}): the endpoint's ATC entry outlives the free`, async () => {
      const lab = await boot({ pciFunctions: [EP], sanitize: 'report' });
      const ep = lab.pci('ep');
      const dev = ep.device!;
      expect(ep.atsEnabled).toBe(true);
      const page = lab.allocPages(0, 'buffer');
      const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
      expect(await lab.iommu.map(d, 0x40000, page, 4096, RW)).toBe(0);
      if (pasid < 0) expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
      else expect(await lab.iommu.attachDevicePasid(d, dev, pasid)).toBe(0);
      const attrs = pasid < 0 ? {} : { pasid };
      expect((await ep.read(0x40000, 64, attrs)).ok).toBe(true);
      expect(ep.atc().length).toBeGreaterThan(0);
      await lab.inject.during('skip-atc-inv', () => lab.iommu.unmap(d, 0x40000, 4096));
      lab.freePages(page);
      await ep.read(0x40000, 64, attrs);
      const r = only(lab);
      expect(r).toMatchObject({
        kind: 'use-after-free',
        device: dev.name,
        pa: page,
        iova: 0x40000,
        sid: ep.streamId,
        ssid: pasid,
        origin: 'ATC entry',
      });
      expect(r.text.split('\n')[0]).toBe(
        `BUG: DMA use-after-free: ${dev.name} read of 64 bytes at PA 0x${page.toString(16)} (IOVA 0x40000, StreamID 0x${ep.streamId.toString(16)}${pasid < 0 ? '' : ', PASID 1'})`,
      );
      expect(r.text).toMatch(/translation: ATC entry filled at virtual time \d+ ns/);
      expect(r.missing).toMatch(
        new RegExp(
          `^no ATC_INV for StreamID 0x${ep.streamId.toString(16)}${pasid < 0 ? ' \\(no PASID\\)' : ' PASID 1'} covering IOVA 0x40000 between the unmap at t=\\d+ ns and this access`,
        ),
      );
      expect(r.freeSite).toMatch(/Lab\.freePages/);
    });
  }

  it('a page-table page freed before the TLBI that removes the entries walked through it', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const page = lab.allocPages(0, 'buffer');
    const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
    // a 4K page in a 2 MiB region: a level-3 table holds its descriptor
    expect(await lab.iommu.map(d, 0x40035000, page, 4096, RW)).toBe(0);
    expect((await nic.read(0x40035000, 8)).ok).toBe(true);
    // unmapping the whole 2 MiB frees that table; its TLBI is skipped
    await lab.inject.during('skip-tlbi', () => lab.iommu.unmap(d, 0x40000000, 0x200000));
    await nic.read(0x40035000, 8);
    const r = lab.sanitizer!.reports.find((x) => x.kind === 'freed-table-translation')!;
    expect(r, lab.sanitizer!.format()).toBeDefined();
    expect(r).toMatchObject({
      device: dev.name,
      pa: page,
      iova: 0x40035000,
      sid: 0x210,
      origin: 'TLB entry',
    });
    expect(r.text).toMatch(/^BUG: DMA through a freed page table: /);
    expect(r.missing).toMatch(
      /^the page-table page 0x[0-9a-f]+ that this translation was walked through was freed at t=\d+ ns before a TLBI removed the entries cached from it/,
    );
    expect(r.allocSite).toMatch(/alloc/i);
    expect(r.freeSite).toMatch(/free/i);
  });

  it("a freed page reached by a stalled transaction's retry", async () => {
    const lab = await boot({
      masters: [{ name: 'gpu0', streamIds: [0x300], canStall: true }],
      sanitize: 'report',
    });
    const gpu = lab.master('gpu0');
    const dev = gpu.device!;
    expect(await lab.faults.enableIopf(dev)).toBe(0);
    const wq = lab.workqueue('fixup');
    let page = -1;
    const handler = (f: IommuFault) => {
      if (!('grpid' in f)) return -1;
      const fault = f;
      wq.queueFn('map the page', async () => {
        // the fix-up maps a page for the faulting address, then (the bug) frees it on an error
        // path without unmapping it, and still answers SUCCESS: the retry walks to a free page
        page = lab.allocPages(0, 'fault page');
        const d = lab.iommu.getDomainForDev(dev)!;
        expect(await lab.iommu.map(d, fault.addr - (fault.addr % 4096), page, 4096, RW)).toBe(0);
        lab.freePages(page);
        expect(
          await lab.faults.pageResponse(dev, { grpid: fault.grpid, code: IOMMU_PAGE_RESP_SUCCESS }),
        ).toBe(0);
      });
      return 0;
    };
    expect(lab.faults.registerDeviceFaultHandler(dev, handler, null)).toBe(0);
    const out = await gpu.write(0x40_0000_0040, new Uint8Array(64));
    await wq.flush();
    expect([out.ok, out.stalls]).toEqual([true, 1]);
    const r = only(lab);
    expect(r).toMatchObject({
      kind: 'access-to-free-page',
      device: dev.name,
      pa: page + 0x40,
      iova: 0x40_0000_0040,
      sid: 0x300,
      origin: 'walk',
    });
    expect(r.text.split('\n')[0]).toBe(
      `BUG: DMA to a free page: ${dev.name} write of 64 bytes at PA 0x${(page + 0x40).toString(16)} (IOVA 0x4000000040, StreamID 0x300)`,
    );
    expect(r.missing).toMatch(/^the page was freed at t=\d+ ns while still mapped for the device/);
    expect(r.allocSite).toMatch(/allocPages/);
    expect(r.freeSite).toMatch(/freePages/);
  });

  it('the PASID scenario of issue 20: no report after the fix, with and without ATS; reported with the old bug', async () => {
    for (const [ats, mutated] of [
      [true, false],
      [false, false],
      [true, true],
    ] as const) {
      // without ATS: the SMMU does not implement it (the endpoint keeps its capability)
      const lab = await boot({ pciFunctions: [EP], smmu: { ats }, sanitize: 'report' });
      const ep = lab.pci('ep');
      const dev = ep.device!;
      const page = lab.allocPages(0, 'old page');
      const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
      expect(await lab.iommu.map(d, 0x4003_5000, page, 4096, RW)).toBe(0);
      expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
      expect(ep.atsEnabled).toBe(ats);
      expect(await lab.iommu.attachDevicePasid(d, dev, 1)).toBe(0);
      expect((await ep.read(0x4003_5000, 64, { pasid: 1 })).ok).toBe(true);
      const detach = () => lab.iommu.detachDevice(d, dev);
      if (mutated) await lab.inject.during('drop-pasid-atc-users', detach);
      else await detach();
      // the endpoint refills (with ATS, its ATC) through PASID 1, then the page is unmapped and freed
      expect((await ep.read(0x4003_5000, 64, { pasid: 1 })).ok).toBe(true);
      expect(await lab.iommu.unmap(d, 0x4003_5000, 4096)).toBe(4096);
      lab.freePages(page);
      const after = await ep.read(0x4003_5000, 64, { pasid: 1 });
      if (!mutated) {
        expect(after.ok).toBe(false);
        expect(lab.sanitizer!.reports).toEqual([]);
      } else {
        const r = only(lab);
        expect(r.text.split('\n')[0]).toBe(
          `BUG: DMA use-after-free: ${dev.name} read of 64 bytes at PA 0x${page.toString(16)} (IOVA 0x40035000, StreamID 0x${ep.streamId.toString(16)}, PASID 1)`,
        );
        expect(r.origin).toBe('ATC entry');
        expect(r.missing).toMatch(
          /^no ATC_INV for StreamID 0x[0-9a-f]+ PASID 1 covering IOVA 0x40035000 between the unmap/,
        );
      }
    }
  });

  it('a SWIOTLB slot reused while a device still writes it', async () => {
    const lab = await boot({
      masters: [NIC, { name: 'disk', streamIds: [0x220] }],
      kernel: { passthrough: true, swiotlbForce: true },
      sanitize: 'report',
    });
    const nic = lab.master('nic');
    const disk = lab.master('disk');
    const buf = lab.allocPages(0, 'nic buffer');
    const a = lab.dma.mapSingle(nic.device!, buf, 2048, 'from-device');
    expect((await nic.write(a, new Uint8Array(64))).ok).toBe(true);
    await lab.dma.unmapSingle(nic.device!, a, 2048, 'from-device');
    // the slot goes to the disk's mapping; the nic, late, writes its old bus address
    const b = lab.dma.mapSingle(disk.device!, lab.allocPages(0, 'disk buffer'), 2048, 'from-device');
    expect(b).toBe(a);
    expect(lab.sanitizer!.reports).toEqual([]);
    await nic.write(a, new Uint8Array(64));
    const r = only(lab);
    expect(r).toMatchObject({
      kind: 'use-after-free',
      device: nic.device!.name,
      pa: a,
      sid: 0x210,
      origin: 'bypass',
      pageKind: 'SWIOTLB slot',
    });
    expect(r.text).toMatch(/2048-byte slot/);
    expect(r.missing).toMatch(new RegExp(`is now mapped for ${disk.device!.name.replace(/[/.]/g, '\\$&')}`));
    expect(r.allocSite).toMatch(/mapSingle|map/);
    expect(r.freeSite).toMatch(/unmap/i);
  });

  it('a device write into a page table (a table page mapped for the device)', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
    expect(await lab.iommu.map(d, 0x10000, lab.allocPages(0, 'buffer'), 4096, RW)).toBe(0);
    // the walk shows the tables; the driver (wrongly) maps the level-3 table for the device
    const steps = lab.smmu().walk(0x210, 0x10000).steps;
    const leaf = Number(steps[steps.length - 1]!.descriptorAddress);
    const table = leaf - (leaf % 4096);
    expect(await lab.iommu.map(d, 0x20000, table, 4096, RW)).toBe(0);
    expect((await nic.write(0x20000 + 0x80, new Uint8Array(8))).ok).toBe(true);
    const r = only(lab);
    expect(r).toMatchObject({
      kind: 'write-to-table',
      device: dev.name,
      pa: table + 0x80,
      iova: 0x20080,
      sid: 0x210,
      pageKind: 'page-table page',
    });
    expect(r.text.split('\n')[0]).toMatch(
      /^BUG: DMA write into an IOMMU table: .* write of 8 bytes at PA 0x[0-9a-f]+ \(IOVA 0x20080, StreamID 0x210\)/,
    );
    expect(r.allocSite).toMatch(/alloc/i);
  });

  it('lazy mode: an access between the unmap and the flush queue flush is its own class', async () => {
    const lab = await boot({ masters: [NIC], kernel: { strict: false }, sanitize: 'report' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const rx = lab.allocPages(0, 'rx buffer');
    const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
    expect((await nic.write(iova, new Uint8Array(64))).ok).toBe(true);
    await lab.dma.unmapSingle(dev, iova, 4096, 'from-device');
    lab.freePages(rx);
    expect((await nic.write(iova, new Uint8Array(64))).ok).toBe(true);
    const r = only(lab);
    expect(r.kind).toBe('lazy-flush-window');
    expect(r.text).toMatch(/^BUG: DMA in lazy-flush window: /);
    expect(r.text).toMatch(/not a caller bug/);
  });

  it('panic mode stops the run at the first report', async () => {
    const lab = await boot({ masters: [NIC], sanitize: 'panic' });
    const nic = lab.master('nic');
    const dev = nic.device!;
    const rx = lab.allocPages(0, 'rx buffer');
    const iova = lab.dma.mapSingle(dev, rx, 4096, 'from-device');
    await nic.write(iova, new Uint8Array(64));
    await lab.inject.during('skip-tlbi', () => lab.dma.unmapSingle(dev, iova, 4096, 'from-device'));
    lab.freePages(rx);
    await expect(
      lab.run(async () => {
        await nic.write(iova, new Uint8Array(64));
        await lab.sleep(1000);
        return 'went on';
      }),
    ).rejects.toThrow(/^DMA sanitizer panic:\nBUG: DMA use-after-free/);
    expect(lab.sanitizer!.reports).toHaveLength(1);
  });
});

describe('bypass DMA', () => {
  it('a DMA engine with no IOMMU writing into a freed page is reported (bypass origin)', async () => {
    const lab = await boot({ sanitize: 'report' });
    const m = lab.machine;
    const base = VIRT.DMA0_BASE;
    const src = lab.allocPages(0, 'src');
    const dst = lab.allocPages(0, 'dst');
    lab.freePages(dst); // the driver freed its destination buffer and still starts the copy
    m.mem.write64n(base + R.SRC, src);
    m.mem.write64n(base + R.DST, dst);
    m.mem.write32(base + R.LEN, 256);
    m.mem.write32(base + R.CTRL, DMA_CTRL_START);
    await lab.advance(100_000);
    const r = only(lab);
    expect(r).toMatchObject({
      kind: 'access-to-free-page',
      device: 'dma-engine.0',
      pa: dst,
      iova: -1,
      sid: -1,
      origin: 'bypass',
      write: true,
    });
    expect(r.text.split('\n')[0]).toBe(
      `BUG: DMA to a free page: dma-engine.0 write of 256 bytes at PA 0x${dst.toString(16)}`,
    );
    expect(r.freeSite).toMatch(/Lab\.freePages/);
  });
});

describe('break-before-make', () => {
  for (const abort of [false, true]) {
    it(`a 2 MiB block replacing a level-3 table without its TLBI: reported${abort ? ', and F_TLB_CONFLICT where configured' : ''}`, async () => {
      const lab = await boot({ masters: [NIC], smmu: { tlbConflictAbort: abort }, sanitize: 'report' });
      const nic = lab.master('nic');
      const dev = nic.device!;
      const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
      expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
      const page = lab.allocPages(0, '4K page');
      expect(await lab.iommu.map(d, 0x4003_5000, page, 4096, RW)).toBe(0);
      expect((await nic.read(0x4003_5000, 8)).ok).toBe(true); // a 4 KiB TLB entry
      // the table becomes a block; the walk flush (TLBI of the range) is skipped
      const block = lab.allocPages(9, '2M block');
      await lab.inject.during('skip-walk-flush', () => lab.iommu.map(d, 0x4000_0000, block, 0x200000, RW));
      // another address of the range walks and fills a 2 MiB entry beside the old 4 KiB one
      const r2 = await nic.read(0x4010_0000, 8);
      const bbm = lab.sanitizer!.reports.find((r) => r.kind === 'break-before-make')!;
      expect(bbm, lab.sanitizer!.format()).toBeDefined();
      expect(bbm.text).toMatch(
        /^BUG: DMA break-before-make violation: .* access at IOVA 0x40100000 \(StreamID 0x210\)\n {2}the TLB holds a 4 KiB entry at IOVA 0x40035000 \(ASID \d+, VMID 0\) and now a 2 MiB entry for IOVA 0x40100000/,
      );
      expect(bbm.missing).toMatch(/break-before-make/);
      expect(r2.ok).toBe(!abort);
      if (abort) expect(r2.fault).toBe('F_TLB_CONFLICT');
    });
  }
});

describe('sanitizer options', () => {
  it('off by default (lab.sanitizer is null); a bad mode is a LabError', async () => {
    const lab = await boot();
    expect(lab.sanitizer).toBeNull();
    expect(lab.machine.sanitizer).toBeNull();
    await expect(boot({ sanitize: 'loud' as 'report' })).rejects.toThrow(
      /sanitize must be one of off, report, panic \(got "loud"\)/,
    );
    const on = await boot({ sanitize: 'report' });
    expect(on.sanitizer).toMatchObject({ mode: 'report', reports: [] });
    expect(on.sanitizer!.format()).toBe('');
  });
});
