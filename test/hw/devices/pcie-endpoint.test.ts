import { describe, expect, it } from 'vitest';
import {
  PCI_ATS_CTRL_ENABLE,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_PASID_CTRL_ENABLE,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
} from '../../../src/hw/devices/pci-config.ts';
import { bdf, ECAM_DEFAULT_BASE, ECAM_SIZE, PcieEcam } from '../../../src/hw/devices/pcie-ecam.ts';
import { PcieEndpoint } from '../../../src/hw/devices/pcie-endpoint.ts';
import { PageTable, s1Leaf } from '../smmuv3/device-driver.ts';
import { RecDriver } from '../smmuv3/recoverable-helpers.ts';

const RID = bdf(0, 3, 0);
const IOVA = 0x1_2340_0000;

/** Software's view: 32-bit ECAM accesses, 16-bit registers by read-modify-write. */
class Cfg {
  constructor(
    private readonly d: RecDriver,
    private readonly rid: number,
  ) {}
  r32(off: number): number {
    return this.d.m.mem.read32(ECAM_DEFAULT_BASE + (this.rid << 12) + off) >>> 0;
  }
  w32(off: number, v: number): void {
    this.d.m.mem.write32(ECAM_DEFAULT_BASE + (this.rid << 12) + off, v >>> 0);
  }
  r16(off: number): number {
    return (this.r32(off & ~3) >>> ((off & 2) * 8)) & 0xffff;
  }
  w16(off: number, v: number): void {
    const o = off & ~3;
    const sh = (off & 2) * 8;
    // RW1C neighbours read as set would be cleared: write 0 to the other half's W1C bits
    const cur = off & 2 ? this.r32(o) & 0xffff : 0;
    this.w32(o, (cur | ((v & 0xffff) << sh)) >>> 0);
  }
  /** Linux pci_find_ext_capability. */
  findExt(id: number): number {
    let pos = 0x100;
    for (let i = 0; i < 480 && pos >= 0x100; i++) {
      const h = this.r32(pos);
      if ((h & 0xffff) === id) return pos;
      pos = h >>> 20;
    }
    return 0;
  }
}

function setup(opts: { atcInvAckNs?: number } = {}) {
  const d = new RecDriver().init({ pri: true });
  const ecam = new PcieEcam();
  d.m.mmio.map(ECAM_DEFAULT_BASE, ECAM_SIZE, ecam);
  const ep = new PcieEndpoint(d.m, d.smmu, { rid: RID, ...opts });
  ecam.attach(RID, ep.config);
  // stream with PASIDs: linear CD table, S1CDMax 3 (8 substreams), EATS full ATS, PPAR
  const pt = new PageTable(d);
  const tab = d.alloc(4096);
  d.writeCd(tab + 5 * 64, d.s1Cd(pt.root, 7));
  d.writeSte(RID, { V: 1, Config: 0b101, S1ContextPtr: tab, S1CDMax: 3, EATS: 1, PPAR: 1 });
  const cfg = new Cfg(d, RID);
  return { d, ep, pt, cfg };
}

/** What Linux does: pci_enable_pasid, pci_enable_pri (after checking Stopped), pci_enable_ats. */
function enableAll(cfg: Cfg): void {
  const pasid = cfg.findExt(PCI_EXT_CAP_ID_PASID);
  const pri = cfg.findExt(PCI_EXT_CAP_ID_PRI);
  const ats = cfg.findExt(PCI_EXT_CAP_ID_ATS);
  cfg.w16(pasid + 6, PCI_PASID_CTRL_ENABLE);
  expect(cfg.r16(pri + 6) & PCI_PRI_STATUS_STOPPED).toBe(PCI_PRI_STATUS_STOPPED);
  cfg.w32(pri + 0x0c, Math.min(cfg.r32(pri + 8), 16));
  cfg.w16(pri + 4, PCI_PRI_CTRL_ENABLE);
  cfg.w16(ats + 6, PCI_ATS_CTRL_ENABLE | 0);
}

describe('PCIe endpoint with ATS, PRI and PASID', () => {
  it('exposes the capabilities through ECAM at the architected IDs', () => {
    const { cfg } = setup();
    expect(cfg.r32(0) & 0xffff).toBe(0x13b5);
    expect(cfg.findExt(PCI_EXT_CAP_ID_ATS)).toBe(0x100);
    expect(cfg.findExt(PCI_EXT_CAP_ID_PRI)).toBe(0x110);
    expect(cfg.findExt(PCI_EXT_CAP_ID_PASID)).toBe(0x120);
    expect(cfg.r16(0x116) & PCI_PRI_STATUS_PASID).toBe(PCI_PRI_STATUS_PASID);
    expect(cfg.r32(0x118)).toBe(32); // outstanding page request capacity
    expect((cfg.r16(0x124) >>> 8) & 0x1f).toBe(20); // max PASID width
    // an absent function reads all ones
    expect(new Cfg((cfg as unknown as { d: RecDriver }).d, bdf(0, 9, 0)).r32(0)).toBe(0xffffffff);
  });

  it('faults on an ATS translation, asks for the page, and retries after Success', () => {
    const { d, ep, pt, cfg } = setup();
    enableAll(cfg);
    const buf = new Uint8Array(64);
    let result: [boolean, number, string] | null = null;
    ep.dma({ ssid: 5, iova: IOVA, buf, write: false, onDone: (ok, n, why) => (result = [ok, n, why]) });
    expect(result).toBeNull();
    expect(ep.outstandingPageRequests).toBe(1);
    const [req] = d.priEntries();
    expect(req).toMatchObject({ streamId: RID, substreamId: 5, last: true, read: true, write: false });
    expect(d.events()).toEqual([]); // ATS faults are not events
    // the driver pages in and answers
    const page = d.alloc(4096);
    d.m.mem.writeBytes(page, new Uint8Array(64).fill(0x5a));
    pt.map(IOVA, s1Leaf(page));
    d.cmd('PRI_RESP', { StreamID: RID, SSV: 1, SubstreamID: 5, PRIGroupID: req!.prgIndex, Resp: 2 });
    d.sync();
    expect(result).toEqual([true, 64, '']);
    expect([...buf]).toEqual(new Array(64).fill(0x5a));
    expect(ep.stats.translated).toBe(1);
    expect(ep.atc).toHaveLength(1);
    expect(cfg.r16(0x116) & PCI_PRI_STATUS_STOPPED).toBe(0);
  });

  it('gives up after Invalid Request; Response Failure also stops PRI (Status.RF)', () => {
    const { d, ep, cfg } = setup();
    enableAll(cfg);
    const results: string[] = [];
    ep.dma({
      ssid: 5,
      iova: IOVA,
      buf: new Uint8Array(8),
      write: true,
      onDone: (_o, _n, why) => results.push(why),
    });
    ep.dma({
      ssid: 5,
      iova: IOVA + 0x1000,
      buf: new Uint8Array(8),
      write: false,
      onDone: (_o, _n, why) => results.push(why),
    });
    const [a, b] = d.priEntries();
    expect(a!.write).toBe(true);
    d.cmd('PRI_RESP', { StreamID: RID, SSV: 1, SubstreamID: 5, PRIGroupID: a!.prgIndex, Resp: 0 });
    d.cmd('PRI_RESP', { StreamID: RID, SSV: 1, SubstreamID: 5, PRIGroupID: b!.prgIndex, Resp: 1 });
    d.sync();
    expect(results).toEqual(['page request: Invalid Request', 'page request: Response Failure']);
    expect(cfg.r16(0x116) & PCI_PRI_STATUS_RF).toBe(PCI_PRI_STATUS_RF);
    ep.dma({
      ssid: 5,
      iova: IOVA,
      buf: new Uint8Array(8),
      write: false,
      onDone: (_o, _n, why) => results.push(why),
    });
    expect(results[2]).toBe('translation fault (no PRI)');
    cfg.w16(0x116, PCI_PRI_STATUS_RF); // RW1C
    expect(cfg.r16(0x116) & PCI_PRI_STATUS_RF).toBe(0);
  });

  it('CMD_ATC_INV empties its ATC and the CMD_SYNC waits for its delayed acknowledgement', () => {
    const { d, ep, pt, cfg } = setup({ atcInvAckNs: 30_000 });
    enableAll(cfg);
    pt.map(IOVA, s1Leaf(d.alloc(4096)));
    let ok = false;
    ep.dma({ ssid: 5, iova: IOVA, buf: new Uint8Array(8), write: false, onDone: (o) => (ok = o) });
    expect(ok).toBe(true);
    expect(ep.atc).toHaveLength(1);
    d.cmd('ATC_INV', { StreamID: RID, SSV: 1, SubstreamID: 5, Address: IOVA, Size: 0 }, false);
    d.cmd('SYNC', { CS: 0 });
    const t0 = d.m.sched.now;
    d.run();
    expect(ep.atc).toHaveLength(0);
    expect(d.m.sched.now - t0).toBeGreaterThanOrEqual(30_000);
    expect(d.cons).toBe(d.prod);
  });

  it('without ATS the endpoint issues untranslated PASID-tagged DMA; stop markers reach the PRI queue', () => {
    const { d, ep, pt, cfg } = setup();
    cfg.w16(cfg.findExt(PCI_EXT_CAP_ID_PASID) + 6, PCI_PASID_CTRL_ENABLE);
    const page = d.alloc(4096);
    pt.map(IOVA, s1Leaf(page));
    let ok = false;
    ep.dma({ ssid: 5, iova: IOVA + 8, buf: new Uint8Array([1, 2, 3]), write: true, onDone: (o) => (ok = o) });
    expect(ok).toBe(true);
    expect(d.m.mem.read8(page + 9)).toBe(2);
    expect(ep.stats.untranslated).toBe(1);
    enableAll(cfg);
    ep.stopMarker(5);
    expect(d.priEntries()[0]).toMatchObject({ stopMarker: true, substreamId: 5 });
  });
});
