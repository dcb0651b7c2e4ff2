import { describe, expect, it } from 'vitest';
import { EVT_ID } from '../../../src/arch/smmuv3/event.ts';
import {
  ACCESS_PRIV,
  ACCESS_WRITE,
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PortResult,
} from '../../../src/hw/smmuv3/port.ts';
import { PageTable, SmmuDriver, s1Leaf, s2Leaf } from './device-driver.ts';

const IOVA = 0x1234_5000;
const PA = 0x8765_4000;

function s1Setup(d: SmmuDriver, sid = 3) {
  const pt = new PageTable(d);
  pt.map(IOVA, s1Leaf(PA));
  const cd = d.alloc(4096);
  d.writeCd(cd, d.s1Cd(pt.root, 7));
  d.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: cd, S1CDMax: 0 });
  return { pt, cd };
}

describe('SMMUv3 stream table and STE decoding', () => {
  it('Config abort: transactions are aborted without an event', () => {
    const d = new SmmuDriver().init();
    d.writeSte(1, { V: 1, Config: 0b000 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_ABORT);
    // reserved encodings behave as abort
    d.writeSte(2, { V: 1, Config: 0b011 });
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_ABORT);
    expect(d.events()).toEqual([]);
  });

  it('Config bypass: output address = input address; an SSID is C_BAD_SUBSTREAMID', () => {
    const d = new SmmuDriver().init();
    d.writeSte(1, { V: 1, Config: 0b100 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, ACCESS_WRITE, r)).toBe(PORT_BYPASS);
    expect(r.oa).toBe(IOVA);
    expect(d.smmu.port.translate(1, 5, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('C_BAD_SUBSTREAMID');
    expect(e!.streamId).toBe(1);
    expect(e!.substreamId).toBe(5);
  });

  it('Config stage 1: translates through the CD and its page tables', () => {
    const d = new SmmuDriver().init();
    s1Setup(d);
    const r = new PortResult();
    expect(d.smmu.port.translate(3, -1, IOVA + 0x123, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(PA + 0x123);
    expect(r.tlbHit).toBe(false);
    expect(d.smmu.port.translate(3, -1, IOVA + 0x8, ACCESS_WRITE, r)).toBe(PORT_OK);
    expect(r.tlbHit).toBe(true);
  });

  it('Config stage 2: translates the input as an IPA', () => {
    const d = new SmmuDriver().init();
    // 40-bit IPA, 4K granule, start level 1 (S2SL0 = 1) with 2 concatenated tables
    const pt = new PageTable(d, 40, 1, 2);
    pt.map(IOVA, s2Leaf(PA));
    d.writeSte(4, {
      V: 1,
      Config: 0b110,
      S2VMID: 9,
      S2T0SZ: 24,
      S2SL0: 1,
      S2TG: 0,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: pt.root,
    });
    const r = new PortResult();
    expect(d.smmu.port.translate(4, -1, IOVA + 0x10, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(PA + 0x10);
    // unmapped IPA: stage-2 translation fault, S2 = 1, CLASS = IN, IPA reported
    expect(d.smmu.port.translate(4, -1, 0x4000_0000, ACCESS_WRITE, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_TRANSLATION');
    expect(e!.stage2).toBe(true);
    expect(e!.class).toBe('IN');
    expect(e!.read).toBe(false);
    expect(e!.inputAddress).toBe(0x4000_0000n);
    expect(e!.ipa).toBe(0x4000_0000n);
  });

  it('Config nested: the CD address is an IPA translated by stage 2', () => {
    const d = new SmmuDriver().init();
    const s2 = new PageTable(d, 40, 1, 2);
    const s1 = new PageTable(d);
    const cdPa = d.alloc(4096);
    const cdIpa = 0x1000_0000;
    // identity-map the stage-1 tables' pages (their IPAs) and the CD's IPA
    const s1Ipa = 0x2000_0000;
    s2.map(cdIpa, s2Leaf(cdPa));
    // stage 1 table pages: tables are allocated by PageTable in PA space; map each at IPA = PA
    s1.map(IOVA, s1Leaf(s1Ipa));
    s2.map(s1Ipa, s2Leaf(PA));
    const tablePages: number[] = [];
    for (let l = 0; l < 4; l++) {
      const slot = s1.slot(IOVA, l);
      tablePages.push(slot - (slot % 4096));
    }
    for (const p of tablePages) s2.map(p, s2Leaf(p));
    d.writeCd(cdPa, d.s1Cd(s1.root, 5));
    d.writeSte(6, {
      V: 1,
      Config: 0b111,
      S1ContextPtr: cdIpa,
      S2VMID: 2,
      S2T0SZ: 24,
      S2SL0: 1,
      S2TG: 0,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: s2.root,
    });
    const r = new PortResult();
    expect(d.smmu.port.translate(6, -1, IOVA + 4, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(PA + 4);
    // a CD IPA that stage 2 does not map: stage-2 fault with CLASS = CD
    d.writeSte(7, {
      V: 1,
      Config: 0b111,
      S1ContextPtr: 0x3000_0000,
      S2VMID: 2,
      S2T0SZ: 24,
      S2SL0: 1,
      S2TG: 0,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: s2.root,
    });
    expect(d.smmu.port.translate(7, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_TRANSLATION');
    expect(e!.stage2).toBe(true);
    expect(e!.class).toBe('CD');
    expect(e!.ipa).toBe(0x3000_0000n);
    expect(e!.inputAddress).toBe(BigInt(IOVA));
  });

  it('2-level stream table: L1 descriptors with Span and L2Ptr', () => {
    const d = new SmmuDriver().init({ strtab: '2lvl', strtabLog2: 16, split: 8 });
    d.writeSte(0x1234, { V: 1, Config: 0b100 });
    const r = new PortResult();
    expect(d.smmu.port.translate(0x1234, -1, IOVA, 0, r)).toBe(PORT_BYPASS);
    // an L1 descriptor with Span 0 (never written): C_BAD_STREAMID
    expect(d.smmu.port.translate(0x5678, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    // Span 2 covers 2 STEs of the L2 table: index 2 is out of span
    const l2 = d.alloc(4096);
    d.m.mem.write64n(d.strtab + 0x77 * 8, l2 | 2);
    d.writeWords(l2 + 64, new Uint32Array([1 | (4 << 1), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(d.smmu.port.translate(0x7701, -1, IOVA, 0, r)).toBe(PORT_BYPASS);
    expect(d.smmu.port.translate(0x7702, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const ev = d.events();
    expect(ev.map((e) => [e.name, e.streamId])).toEqual([
      ['C_BAD_STREAMID', 0x5678],
      ['C_BAD_STREAMID', 0x7702],
    ]);
  });

  it('StreamID beyond the table or SIDSIZE: C_BAD_STREAMID', () => {
    const d = new SmmuDriver().init({ strtabLog2: 4 });
    const r = new PortResult();
    expect(d.smmu.port.translate(16, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(0x1_0000, 2, IOVA, 0, r)).toBe(PORT_FAULT);
    const ev = d.events();
    expect(ev.map((e) => e.name)).toEqual(['C_BAD_STREAMID', 'C_BAD_STREAMID']);
    expect(ev[1]!.streamId).toBe(0x1_0000);
    expect(ev[1]!.substreamId).toBe(2);
  });

  it('STE fetch from a stream table outside RAM: F_STE_FETCH with the fetch address', () => {
    const d = new SmmuDriver().init();
    // disable, point the stream table at unbacked space, re-enable
    d.writeSync(0x20, 0x24, 0xc);
    d.w64(0x80, 0x40_0000_0000);
    d.writeSync(0x20, 0x24, 0xd);
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_STE_FETCH');
    expect(e!.fetchAddress).toBe(BigInt(0x40_0000_0000 + 2 * 64));
  });

  it('invalid and ILLEGAL STEs: C_BAD_STE', () => {
    const d = new SmmuDriver({ vmid16: false }).init();
    const bad = [
      { V: 0, Config: 0b100 },
      { V: 1, Config: 0b101, S1CDMax: 21 },
      { V: 1, Config: 0b110, S2TG: 3, S2AA64: 1, S2T0SZ: 24, S2SL0: 1 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 24, S2SL0: 3 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 25, S2SL0: 2 }, // L0 start for a 39-bit IPA
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 10, S2SL0: 1 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 0, S2T0SZ: 24, S2SL0: 1 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 24, S2SL0: 1, S2ENDI: 1 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 24, S2SL0: 1, S2VMID: 0x100 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 24, S2SL0: 1, S2PS: 2, S2TTB: 2 ** 41 },
      { V: 1, Config: 0b110, S2TG: 0, S2AA64: 1, S2T0SZ: 24, S2SL0: 1, EATS: 2 },
      { V: 1, Config: 0b101, STRW: 1 },
    ];
    const r = new PortResult();
    bad.forEach((ste, i) => {
      d.writeSte(i, ste);
      expect(d.smmu.port.translate(i, -1, IOVA, 0, r), JSON.stringify(ste)).toBe(PORT_FAULT);
    });
    const ev = d.events();
    expect(ev.map((e) => e.name)).toEqual(bad.map(() => 'C_BAD_STE'));
    expect(ev.map((e) => e.streamId)).toEqual(bad.map((_, i) => i));
    // never cached: a corrected STE works without CFGI
    d.writeSte(0, { V: 1, Config: 0b100 });
    expect(d.smmu.port.translate(0, -1, IOVA, 0, r)).toBe(PORT_BYPASS);
  });

  it('stages the SMMU does not implement make the STE ILLEGAL', () => {
    const d = new SmmuDriver({ stage2: false }).init();
    d.writeSte(1, { V: 1, Config: 0b110 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.events()[0]!.name).toBe('C_BAD_STE');
  });
});

describe('SMMUv3 substreams and context descriptors', () => {
  function cdTableSetup(d: SmmuDriver, s1Dss: number, fmt: 'linear' | '2lvl' = 'linear') {
    const pt0 = new PageTable(d);
    const pt5 = new PageTable(d);
    pt0.map(IOVA, s1Leaf(0x9000_0000));
    pt5.map(IOVA, s1Leaf(0x9500_0000));
    let ptr: number;
    if (fmt === 'linear') {
      ptr = d.alloc(64 * 16);
      d.writeCd(ptr, d.s1Cd(pt0.root, 1));
      d.writeCd(ptr + 5 * 64, d.s1Cd(pt5.root, 2));
    } else {
      // S1Fmt 1: 4KB leaf tables of 64 CDs; substreams 0 and 0x45 (L1 index 1)
      ptr = d.alloc(4096);
      const l2a = d.alloc(4096);
      const l2b = d.alloc(4096);
      d.m.mem.write64n(ptr, l2a | 1);
      d.m.mem.write64n(ptr + 8, l2b | 1);
      d.writeCd(l2a, d.s1Cd(pt0.root, 1));
      d.writeCd(l2b + 5 * 64, d.s1Cd(pt5.root, 2));
    }
    d.writeSte(8, {
      V: 1,
      Config: 0b101,
      S1ContextPtr: ptr,
      S1CDMax: fmt === 'linear' ? 4 : 8,
      S1Fmt: fmt === 'linear' ? 0 : 1,
      S1DSS: s1Dss,
    });
    return ptr;
  }

  it('S1DSS = substream 0: no-SSID traffic uses CD 0; SSID 0 is F_STREAM_DISABLED', () => {
    const d = new SmmuDriver().init();
    cdTableSetup(d, 2);
    const r = new PortResult();
    expect(d.smmu.port.translate(8, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9000_0000);
    expect(d.smmu.port.translate(8, 5, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9500_0000);
    expect(d.smmu.port.translate(8, 0, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_STREAM_DISABLED');
    expect(e!.streamId).toBe(8);
  });

  it('S1DSS = terminate: no-SSID traffic is F_STREAM_DISABLED; SSID 0 uses CD 0', () => {
    const d = new SmmuDriver().init();
    cdTableSetup(d, 0);
    const r = new PortResult();
    expect(d.smmu.port.translate(8, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(8, 0, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9000_0000);
    expect(d.events().map((e) => e.name)).toEqual(['F_STREAM_DISABLED']);
  });

  it('both stages bypassed above the output address size (IDR5.OAS): F_ADDR_SIZE, Class IN (IHI 0070 §3.4)', () => {
    const d = new SmmuDriver({ oasBits: 48 }).init();
    const top = 2 ** 48;
    d.writeSte(1, { V: 1, Config: 0b100 });
    cdTableSetup(d, 1); // SID 8: Config 0b101 with S1DSS = bypass, no stage 2
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, top - 0x1000, 0, r)).toBe(PORT_BYPASS);
    expect(r.oa).toBe(top - 0x1000);
    for (const [sid, iova] of [
      [1, top],
      [1, 2 ** 52],
      [8, 2 ** 52 + 0x5000],
    ] as const) {
      expect(d.smmu.port.translate(sid, -1, iova, ACCESS_WRITE, r)).toBe(PORT_FAULT);
      expect(r.fault).toBe(EVT_ID.F_ADDR_SIZE);
    }
    expect(d.events().map((e) => [e.name, e.streamId, e.inputAddress, e.class, e.stage2, e.read])).toEqual([
      ['F_ADDR_SIZE', 1, BigInt(top), 'IN', false, false],
      ['F_ADDR_SIZE', 1, 2n ** 52n, 'IN', false, false],
      ['F_ADDR_SIZE', 8, 2n ** 52n + 0x5000n, 'IN', false, false],
    ]);
    // with the SMMU disabled and GBPA bypass: aborted, no event (nothing can be recorded)
    expect(d.writeSync(0x20, 0x24, 0)).toBe(true);
    expect(d.smmu.port.translate(1, -1, top - 0x1000, 0, r)).toBe(PORT_BYPASS);
    expect(d.smmu.port.translate(1, -1, top, 0, r)).toBe(PORT_ABORT);
    expect(d.events()).toEqual([]);
  });

  it('S1DSS = bypass: no-SSID traffic skips stage 1', () => {
    const d = new SmmuDriver().init();
    cdTableSetup(d, 1);
    const r = new PortResult();
    expect(d.smmu.port.translate(8, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(IOVA);
  });

  it('SSID beyond S1CDMax, or any SSID with S1CDMax = 0: C_BAD_SUBSTREAMID', () => {
    const d = new SmmuDriver().init();
    cdTableSetup(d, 2);
    s1Setup(d, 9);
    const r = new PortResult();
    expect(d.smmu.port.translate(8, 16, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(9, 1, IOVA, 0, r)).toBe(PORT_FAULT);
    const ev = d.events();
    expect(ev.map((e) => [e.name, e.streamId, e.substreamId])).toEqual([
      ['C_BAD_SUBSTREAMID', 8, 16],
      ['C_BAD_SUBSTREAMID', 9, 1],
    ]);
  });

  it('2-level CD table: L1CD with L2Ptr; an invalid L1CD is C_BAD_SUBSTREAMID', () => {
    const d = new SmmuDriver().init();
    cdTableSetup(d, 2, '2lvl');
    const r = new PortResult();
    expect(d.smmu.port.translate(8, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9000_0000);
    expect(d.smmu.port.translate(8, 0x45, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9500_0000);
    expect(d.smmu.port.translate(8, 0x85, IOVA, 0, r)).toBe(PORT_FAULT);
    // a valid L2 table with an invalid CD: C_BAD_CD
    expect(d.smmu.port.translate(8, 0x46, IOVA, ACCESS_PRIV, r)).toBe(PORT_FAULT);
    const ev = d.events();
    expect(ev.map((e) => [e.name, e.substreamId])).toEqual([
      ['C_BAD_SUBSTREAMID', 0x85],
      ['C_BAD_CD', 0x46],
    ]);
  });

  it('CD fetch abort: F_CD_FETCH with the fetch address', () => {
    const d = new SmmuDriver().init();
    d.writeSte(3, { V: 1, Config: 0b101, S1ContextPtr: 0x40_0000_0000 });
    const r = new PortResult();
    expect(d.smmu.port.translate(3, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_CD_FETCH');
    expect(e!.fetchAddress).toBe(0x40_0000_0000n);
  });

  it('invalid and ILLEGAL CDs: C_BAD_CD', () => {
    const d = new SmmuDriver({ httu: 0, asid16: false }).init();
    const cd = d.alloc(4096);
    const good = d.s1Cd(0x8000_0000, 1);
    const bad = [
      { ...good, V: 0 },
      { ...good, AA64: 0 },
      { ...good, TG0: 3 },
      { ...good, T0SZ: 40 },
      { ...good, T0SZ: 15 },
      { ...good, EPD1: 0, TG1: 0 },
      { ...good, ENDI: 1 },
      { ...good, HA: 1 },
      { ...good, ASID: 0x100 },
      { ...good, IPS: 1, TTB0: 2 ** 37 },
    ];
    const r = new PortResult();
    for (const [i, v] of bad.entries()) {
      d.writeCd(cd + i * 64, v);
      d.writeSte(i, { V: 1, Config: 0b101, S1ContextPtr: cd + i * 64 });
      expect(d.smmu.port.translate(i, -1, IOVA, 0, r), JSON.stringify(v)).toBe(PORT_FAULT);
    }
    expect(d.events().map((e) => e.name)).toEqual(bad.map(() => 'C_BAD_CD'));
  });

  it('CD.R = 0 suppresses the record of a translation fault, not the fault', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, 1, { R: 0 }));
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(r.fault).toBe(EVT_ID.F_TRANSLATION);
    expect(r.recorded).toBe(false);
    expect(d.events()).toEqual([]);
    expect(d.smmu.port.stats.suppressed).toBe(1);
  });
});

describe('SMMUv3 nested faults and STE attribute overrides', () => {
  function nested(d: SmmuDriver, mapTables: boolean) {
    const s2 = new PageTable(d, 40, 1, 2);
    const s1 = new PageTable(d);
    const cdPa = d.alloc(4096);
    s2.map(0x1000_0000, s2Leaf(cdPa));
    s1.map(IOVA, s1Leaf(0x2000_0000));
    if (mapTables) {
      for (let l = 0; l < 4; l++) {
        const slot = s1.slot(IOVA, l);
        s2.map(slot - (slot % 4096), s2Leaf(slot - (slot % 4096)));
      }
    }
    d.writeCd(cdPa, d.s1Cd(s1.root, 5));
    d.writeSte(6, {
      V: 1,
      Config: 0b111,
      S1ContextPtr: 0x1000_0000,
      S2VMID: 2,
      S2T0SZ: 24,
      S2SL0: 1,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: s2.root,
    });
    return s1;
  }

  it('stage-2 fault on a stage-1 table walk: S2 = 1, CLASS = TT, IPA = the table address', () => {
    const d = new SmmuDriver().init();
    const s1 = nested(d, false);
    const r = new PortResult();
    expect(d.smmu.port.translate(6, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e).toMatchObject({ name: 'F_TRANSLATION', stage2: true, class: 'TT' });
    expect(e!.ipa).toBe(BigInt(s1.root));
  });

  it('stage-2 fault on the stage-1 output: S2 = 1, CLASS = IN, IPA = the stage-1 output', () => {
    const d = new SmmuDriver().init();
    nested(d, true);
    const r = new PortResult();
    expect(d.smmu.port.translate(6, -1, IOVA + 0x40, ACCESS_WRITE, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e).toMatchObject({ name: 'F_TRANSLATION', stage2: true, class: 'IN', read: false });
    expect(e!.ipa).toBe(0x2000_0000n);
    expect(e!.inputAddress).toBe(BigInt(IOVA + 0x40));
  });

  it('STE.PRIVCFG overrides the incoming privilege attribute', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    pt.map(IOVA, s1Leaf(PA, { user: false })); // EL1-only page
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, 7));
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd });
    d.writeSte(2, { V: 1, Config: 0b101, S1ContextPtr: cd, PRIVCFG: 3 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(d.events()[0]).toMatchObject({ name: 'F_PERMISSION', privileged: false });
  });

  it('STE.STRW = EL2: the stream translates in the EL2 regime; TLBI_EL2_* maintain it', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    pt.map(IOVA, s1Leaf(PA, { user: false }));
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, 0));
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd, STRW: 2 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_OK);
    pt.map(IOVA, s1Leaf(PA + 0x1000, { user: false }));
    d.cmd('TLBI_NH_ALL', { VMID: 0 }); // EL1 maintenance does not touch EL2 entries
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(PA);
    d.cmd('TLBI_EL2_VAA', { Address: IOVA });
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(PA + 0x1000);
  });
});
