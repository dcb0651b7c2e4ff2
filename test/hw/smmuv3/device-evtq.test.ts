import { describe, expect, it } from 'vitest';
import { CR0, GERROR, Q_PTR, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_WRITE,
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PortResult,
} from '../../../src/hw/smmuv3/port.ts';
import { PageTable, SmmuDriver, s1Leaf, s2Leaf } from './device-driver.ts';

const IOVA = 0x5555_5000;

function faultyStream(d: SmmuDriver, sid = 2) {
  const pt = new PageTable(d);
  const cd = d.alloc(4096);
  d.writeCd(cd, d.s1Cd(pt.root, 3));
  d.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: cd });
  return pt;
}

describe('SMMUv3 event queue', () => {
  it('writes the architected record layout: F_TRANSLATION, exact words', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    const tab = d.alloc(4096);
    d.writeCd(tab + 3 * 64, d.s1Cd(pt.root, 3));
    d.writeSte(0x42, { V: 1, Config: 0b101, S1ContextPtr: tab, S1CDMax: 2 });
    const r = new PortResult();
    expect(d.smmu.port.translate(0x42, 3, IOVA + 0x10, ACCESS_WRITE | ACCESS_PRIV, r)).toBe(PORT_FAULT);
    const w = d.peekEventWords(0);
    // word 0: EventType 0x10 | SSV (bit 11) | SubstreamID 3 << 12 | StreamID 0x42 << 32
    expect(w[0]).toBe(0x10n | (1n << 11n) | (3n << 12n) | (0x42n << 32n));
    // word 1: PnU (bit 33) = 1, InD 0, RnW (bit 35) = 0 (write), S2 0, CLASS (41:40) = IN (2)
    expect(w[1]).toBe((1n << 33n) | (2n << 40n));
    expect(w[2]).toBe(BigInt(IOVA + 0x10));
    expect(w[3]).toBe(0n);
    const [e] = d.events();
    expect(e).toMatchObject({
      name: 'F_TRANSLATION',
      streamId: 0x42,
      substreamId: 3,
      read: false,
      privileged: true,
    });
  });

  it('reports F_PERMISSION with RnW/InD/PnU of the access, and F_ACCESS for AF = 0', () => {
    const d = new SmmuDriver().init();
    const pt = faultyStream(d);
    pt.map(IOVA, s1Leaf(0x9000_0000, { ro: true, xn: true }));
    pt.map(IOVA + 0x1000, s1Leaf(0x9000_1000, { af: false }));
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(d.smmu.port.translate(2, -1, IOVA, ACCESS_WRITE, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(2, -1, IOVA, ACCESS_EXEC, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(2, -1, IOVA + 0x1000, 0, r)).toBe(PORT_FAULT);
    const ev = d.events();
    expect(ev.map((e) => [e.name, e.read, e.instruction])).toEqual([
      ['F_PERMISSION', false, false],
      ['F_PERMISSION', true, true],
      ['F_ACCESS', true, false],
    ]);
  });

  it('F_WALK_EABT: a table walk that hits no memory, with the fetch address', () => {
    const d = new SmmuDriver().init();
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(0x40_0000_0000, 3, { IPS: 2 }));
    d.writeSte(2, { V: 1, Config: 0b101, S1ContextPtr: cd });
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    const [e] = d.events();
    expect(e!.name).toBe('F_WALK_EABT');
    expect(e!.class).toBe('TT');
    expect(e!.fetchAddress).toBe(0x40_0000_0000n);
  });

  it('STE.S2R = 0 suppresses stage-2 fault records', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d, 40, 1, 2);
    pt.map(0x1000, s2Leaf(0x9000_0000));
    const ste = { V: 1, Config: 0b110, S2T0SZ: 24, S2SL0: 1, S2PS: 2, S2AA64: 1, S2TTB: pt.root };
    d.writeSte(1, { ...ste, S2R: 0 });
    d.writeSte(2, { ...ste, S2R: 1 });
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, 0x2000, 0, r)).toBe(PORT_FAULT);
    expect(r.recorded).toBe(false);
    expect(d.smmu.port.translate(2, -1, 0x2000, 0, r)).toBe(PORT_FAULT);
    expect(r.recorded).toBe(true);
    expect(d.events().map((e) => e.streamId)).toEqual([2]);
  });

  it('CD.A = 0 terminates stage-1 faults with RAZ/WI (TERM_MODEL = 0)', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, 3, { A: 0 }));
    d.writeSte(2, { V: 1, Config: 0b101, S1ContextPtr: cd });
    d.m.mem.fill(0x8800_0000, 16, 0xaa);
    const buf = new Uint8Array(16).fill(0x55);
    expect(d.smmu.port.dmaRead(2, -1, IOVA, buf, 0, 16)).toBe(16);
    expect(d.smmu.port.last.status).toBe(PORT_RAZWI);
    expect([...buf]).toEqual(new Array(16).fill(0));
    expect(d.events()[0]!.name).toBe('F_TRANSLATION');
  });

  it('queue full: records are lost, EVTQ_PROD.OVFLG toggles, no GERROR; software acknowledges', () => {
    const d = new SmmuDriver().init({ evtqLog2: 1 }); // 2 entries
    faultyStream(d);
    const r = new PortResult();
    for (let i = 0; i < 5; i++) d.smmu.port.translate(2, -1, IOVA + i * 0x1000, 0, r);
    const prod = d.r32(SMMU_REG.EVTQ_PROD_P1);
    expect((prod & Q_PTR.OVFLG) !== 0).toBe(true);
    expect(prod & 3).toBe(2); // index 0, wrap 1: full
    expect(d.smmu.evtq.stats.overflowed).toBe(3);
    expect(d.r32(SMMU_REG.GERROR)).toBe(0);
    const ev = d.events(); // consumes and sets OVACKFLG = OVFLG
    expect(ev.map((e) => Number(e.inputAddress))).toEqual([IOVA, IOVA + 0x1000]);
    expect((d.r32(SMMU_REG.EVTQ_CONS_P1) ^ d.r32(SMMU_REG.EVTQ_PROD_P1)) & Q_PTR.OVFLG).toBe(0);
    d.smmu.port.translate(2, -1, IOVA + 0x9000, 0, r);
    expect(d.events().map((e) => Number(e.inputAddress))).toEqual([IOVA + 0x9000]);
    // a second overflow toggles the flag again (back to 0)
    for (let i = 0; i < 3; i++) d.smmu.port.translate(2, -1, IOVA, 0, r);
    expect(d.r32(SMMU_REG.EVTQ_PROD_P1) & Q_PTR.OVFLG).toBe(0);
    expect(d.smmu.evtq.stats.overflowed).toBe(4);
  });

  it('EVTQ interrupt by MSI through the ITS', () => {
    const d = new SmmuDriver().init({ msi: true });
    faultyStream(d);
    d.smmu.port.translate(2, -1, IOVA, 0, new PortResult());
    d.run();
    expect(d.evtqIrqs).toBe(1);
  });

  it('EVTQ interrupt on a wired line without MSI', () => {
    const d = new SmmuDriver({ msi: false, irqs: { eventq: 50 } }).init();
    let n = 0;
    d.m.irq.configure(50, 'edge');
    d.m.irq.requestIrq(50, 'evtq', () => {
      n++;
      return 1;
    });
    d.writeSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, 4);
    faultyStream(d);
    d.smmu.port.translate(2, -1, IOVA, 0, new PortResult());
    d.run();
    expect(n).toBe(1);
  });

  it('records are dropped while EVTQEN is off', () => {
    const d = new SmmuDriver().init();
    faultyStream(d);
    d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN | CR0.SMMUEN);
    d.smmu.port.translate(2, -1, IOVA, 0, new PortResult());
    expect(d.smmu.evtq.stats.dropped).toBe(1);
    expect(d.r32(SMMU_REG.EVTQ_PROD_P1)).toBe(0);
  });

  it('an event queue in unbacked memory: GERROR.EVTQ_ABT_ERR', () => {
    const d = new SmmuDriver().init({ enable: false });
    d.w64(SMMU_REG.EVTQ_BASE, 0x40_0000_0000 | 4);
    d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN | CR0.EVTQEN | CR0.SMMUEN);
    faultyStream(d);
    d.smmu.port.translate(2, -1, IOVA, 0, new PortResult());
    expect(d.smmu.activeErrors & GERROR.EVTQ_ABT_ERR).toBe(GERROR.EVTQ_ABT_ERR);
  });
});

describe('SMMUv3 DMA port', () => {
  it('dmaWrite/dmaRead translate page by page and stop at the first fault', () => {
    const d = new SmmuDriver().init();
    const pt = faultyStream(d);
    pt.map(IOVA, s1Leaf(0x9000_0000));
    pt.map(IOVA + 0x1000, s1Leaf(0x9100_0000));
    const src = new Uint8Array(0x2800).map((_, i) => i & 0xff);
    expect(d.smmu.port.dmaWrite(2, -1, IOVA + 0x800, src, 0, 0x2800)).toBe(0x1800);
    expect(d.smmu.port.last.status).toBe(PORT_FAULT);
    const back = new Uint8Array(0x800);
    d.m.mem.readBytes(0x9100_0000, back);
    expect(back[0]).toBe(0x800 & 0xff);
    const rd = new Uint8Array(0x1800);
    expect(d.smmu.port.dmaRead(2, -1, IOVA + 0x800, rd, 0, 0x1800)).toBe(0x1800);
    expect([...rd]).toEqual([...src.subarray(0, 0x1800)]);
  });
});
