import { describe, expect, it } from 'vitest';
import { CR0, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { ACCESS_WRITE, PORT_FAULT, PORT_OK, PORT_RAZWI, PORT_STALLED } from '../../../src/hw/smmuv3/port.ts';
import { s1Leaf, s2Leaf } from './device-driver.ts';
import { CR0_ALL, PortResult, RecDriver, RecordingMaster } from './recoverable-helpers.ts';

const IOVA = 0x4567_8000;

function setup(opts = {}) {
  const d = new RecDriver(opts).init();
  const dev = new RecordingMaster(d.m);
  d.smmu.upstream.attach(2, dev);
  return { d, dev };
}

describe('SMMUv3 stall model', () => {
  it('a stalled read completes with the right data after the page is mapped and RESUME(Retry)', () => {
    const { d, dev } = setup();
    const pt = d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA + 0x24, 0, r)).toBe(PORT_STALLED);
    const stag = r.stag;
    expect(d.smmu.upstream.stalledCount(2)).toBe(1);
    expect(d.smmu.upstream.stalledTransactions(2)[0]).toMatchObject({ iova: IOVA + 0x24, stag });
    const [e] = d.events();
    expect(e).toMatchObject({ name: 'F_TRANSLATION', stall: true, stag, streamId: 2 });
    // nothing completes by itself
    d.run();
    expect(dev.completions).toEqual([]);
    // the "driver" maps the page, fills it, and resumes
    const page = d.alloc(4096);
    d.m.mem.writeBytes(page + 0x24, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    pt.map(IOVA, s1Leaf(page));
    d.resume(2, stag, true);
    expect(dev.completions).toHaveLength(1);
    const c = dev.completions[0]!;
    expect(c).toMatchObject({ sid: 2, stag, status: PORT_OK, oa: page + 0x24 });
    const data = new Uint8Array(4);
    d.m.mem.readBytes(c.oa, data);
    expect([...data]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(d.smmu.upstream.stalledCount(2)).toBe(0);
    // a second RESUME with the same STAG is a no-op
    d.resume(2, stag, true);
    expect(dev.completions).toHaveLength(1);
  });

  it('RESUME(Terminate): Ab = 1 aborts, Ab = 0 completes with RAZ/WI; wrong StreamID is a no-op', () => {
    const { d, dev } = setup();
    d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    d.smmu.port.translate(2, -1, IOVA, 0, r);
    const a = r.stag;
    d.smmu.port.translate(2, -1, IOVA + 0x1000, ACCESS_WRITE, r);
    const b = r.stag;
    expect(a).not.toBe(b);
    d.resume(3, a, false, true); // StreamID mismatch
    expect(dev.completions).toEqual([]);
    d.resume(2, a, false, true);
    d.resume(2, b, false, false);
    expect(dev.completions.map((c) => [c.stag, c.status])).toEqual([
      [a, PORT_FAULT],
      [b, PORT_RAZWI],
    ]);
  });

  it('RESUME(Terminate) always aborts with IDR0.TERM_MODEL', () => {
    const { d, dev } = setup({ abortOnlyTermination: true });
    d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    d.smmu.port.translate(2, -1, IOVA, 0, r);
    d.resume(2, r.stag, false, false);
    expect(dev.completions[0]!.status).toBe(PORT_FAULT);
  });

  it('a retry that faults again stays stalled (same STAG, new record); STALL_TERM ends all of a stream', () => {
    const { d, dev } = setup();
    d.s1Stream(2, { S: 1 });
    const other = new RecordingMaster(d.m);
    d.smmu.upstream.attach(5, other);
    d.s1Stream(5, { S: 1 });
    const r = new PortResult();
    const stags: number[] = [];
    for (let i = 0; i < 3; i++) {
      expect(d.smmu.port.translate(2, -1, IOVA + i * 0x1000, 0, r)).toBe(PORT_STALLED);
      stags.push(r.stag);
    }
    d.smmu.port.translate(5, -1, IOVA, 0, r);
    expect(new Set(stags).size).toBe(3);
    expect(d.smmu.upstream.stalledCount(2)).toBe(3);
    d.events();
    d.resume(2, stags[1]!, true); // still unmapped
    const ev = d.events();
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ stall: true, stag: stags[1] });
    expect(dev.completions).toEqual([]);
    d.cmd('STALL_TERM', { StreamID: 2 });
    d.sync();
    expect(dev.completions.map((c) => c.status).sort()).toEqual([PORT_FAULT, PORT_FAULT, PORT_FAULT]);
    expect(d.smmu.upstream.stalledCount(2)).toBe(0);
    expect(d.smmu.upstream.stalledCount(5)).toBe(1); // other streams untouched
    expect(other.completions).toEqual([]);
  });

  it('CFGI does not touch stalls (§4.3.8); SMMUEN 1 -> 0 terminates them (§6.3.9.6)', () => {
    const { d, dev } = setup();
    d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    d.smmu.port.translate(2, -1, IOVA, 0, r);
    d.cmd('CFGI_STE', { StreamID: 2 });
    d.cmd('CFGI_ALL');
    d.sync();
    expect(d.smmu.upstream.stalledCount(2)).toBe(1);
    d.setCr0(CR0.CMDQEN | CR0.EVTQEN);
    expect(dev.completions).toHaveLength(1);
    expect(dev.completions[0]!.status).toBe(PORT_FAULT);
    expect(d.smmu.upstream.stalledCount(2)).toBe(0);
  });

  it('STE.S1STALLD: CD.S = 0 terminates; CD.S = 1 under S1STALLD is an ILLEGAL CD', () => {
    const { d } = setup();
    d.s1Stream(2, { S: 0 }, { S1STALLD: 1 });
    d.s1Stream(3, { S: 1 }, { S1STALLD: 1 });
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.smmu.port.translate(3, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(d.events().map((e) => [e.name, e.stall])).toEqual([
      ['F_TRANSLATION', false],
      ['C_BAD_CD', false],
    ]);
  });

  it('stall-forced SMMU: CD.S = 0 is ILLEGAL, CD.S = 1 stalls; terminate-only: CD.S = 1 is ILLEGAL', () => {
    const f = setup({ stallModel: 'force' });
    f.d.s1Stream(2, { S: 0 });
    f.d.s1Stream(3, { S: 1 });
    const r = new PortResult();
    expect(f.d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(f.d.smmu.port.translate(3, -1, IOVA, 0, r)).toBe(PORT_STALLED);
    expect(f.d.events().map((e) => e.name)).toEqual(['C_BAD_CD', 'F_TRANSLATION']);
    const t = setup({ stallModel: 'terminate' });
    t.d.s1Stream(2, { S: 1 });
    expect(t.d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_FAULT);
    expect(t.d.events()[0]!.name).toBe('C_BAD_CD');
    // RESUME / STALL_TERM are CERROR_ILL without the stall model
    t.d.cmd('STALL_TERM', { StreamID: 2 });
    t.d.run();
    expect((t.d.r32(SMMU_REG.CMDQ_CONS) >>> 24) & 0x7f).toBe(1);
  });

  it('stage-2 faults stall with STE.S2S; the retry re-walks stage 2', () => {
    const { d, dev } = setup();
    const pt = d.s2Stream(2, { S2S: 1 });
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, 0x1234_5000, ACCESS_WRITE, r)).toBe(PORT_STALLED);
    const [e] = d.events();
    expect(e).toMatchObject({ name: 'F_TRANSLATION', stage2: true, stall: true, stag: r.stag });
    const page = d.alloc(4096);
    pt.map(0x1234_5000, s2Leaf(page));
    d.resume(2, r.stag, true);
    expect(dev.completions[0]).toMatchObject({ status: PORT_OK, oa: page });
  });

  it('a stall record that does not fit waits for the queue; the transaction is retried then', () => {
    const d = new RecDriver().init({ evtqLog2: 1 }); // 2 entries
    const dev = new RecordingMaster(d.m);
    d.smmu.upstream.attach(2, dev);
    const pt = d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    const stags: number[] = [];
    for (let i = 0; i < 4; i++) {
      expect(d.smmu.port.translate(2, -1, IOVA + i * 0x1000, 0, r)).toBe(PORT_STALLED);
      stags.push(r.stag);
    }
    expect(d.smmu.stall.pendingRecords).toBe(2);
    // not an overflow: stall records are never discarded (§7.2.1)
    expect(d.r32(SMMU_REG.EVTQ_PROD_P1) >>> 31).toBe(0);
    // map the fourth page: its retry will succeed without an event
    const page = d.alloc(4096);
    pt.map(IOVA + 0x3000, s1Leaf(page));
    expect(d.events().map((e) => e.stag)).toEqual([stags[0], stags[1]]);
    d.run();
    expect(dev.completions).toEqual([expect.objectContaining({ stag: stags[3], status: PORT_OK, oa: page })]);
    expect(d.events().map((e) => e.stag)).toEqual([stags[2]]);
    expect(d.smmu.upstream.stalledCount(2)).toBe(3);
  });

  it('at most STALL_MAX transactions are held; beyond that a fault terminates (Stall = 0)', () => {
    const { d } = setup({ stallMax: 2 });
    d.s1Stream(2, { S: 1 });
    const r = new PortResult();
    expect(d.smmu.port.translate(2, -1, IOVA, 0, r)).toBe(PORT_STALLED);
    expect(d.smmu.port.translate(2, -1, IOVA + 0x1000, 0, r)).toBe(PORT_STALLED);
    expect(d.smmu.port.translate(2, -1, IOVA + 0x2000, 0, r)).toBe(PORT_FAULT);
    expect(d.events().map((e) => e.stall)).toEqual([true, true, false]);
    expect(d.smmu.idRegs.idr5 >>> 16).toBe(2);
  });

  it('a DMA stops at a stalled page and the port reports it', () => {
    const { d } = setup();
    const pt = d.s1Stream(2, { S: 1 });
    pt.map(IOVA, s1Leaf(d.alloc(4096)));
    const buf = new Uint8Array(8192);
    expect(d.smmu.port.dmaRead(2, -1, IOVA, buf, 0, buf.length)).toBe(4096);
    expect(d.smmu.port.last.status).toBe(PORT_STALLED);
    expect(d.smmu.port.stats.stalled).toBe(1);
    d.setCr0(CR0_ALL & ~CR0.SMMUEN);
    expect(d.smmu.upstream.stalledCount(2)).toBe(0);
  });
});
