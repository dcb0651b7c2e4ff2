import { describe, expect, it } from 'vitest';
import { CR0, GERROR, IRQ_CTRL, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import {
  PRI_DISCARDED,
  PRI_IGNORED,
  PRI_QUEUED,
  PRI_RESP_FAILURE,
  PRI_RESP_INVALID,
  PRI_RESP_SUCCESS,
} from '../../../src/hw/smmuv3/upstream.ts';
import { CR0_ALL, RecDriver, RecordingMaster } from './recoverable-helpers.ts';

function setup(priqLog2 = 4, opts = {}) {
  const d = new RecDriver(opts).init({ pri: true, priqLog2 });
  const dev = new RecordingMaster(d.m);
  d.smmu.upstream.attach(8, dev);
  d.s1Stream(8, {}, { S1CDMax: 0, PPAR: 1 });
  return { d, dev, up: d.smmu.upstream };
}

describe('SMMUv3 PRI queue', () => {
  it('writes page requests of a group (PRG index, Last, R/W/X/Priv, PASID) and raises the PRIQ MSI', () => {
    const { d, up } = setup();
    const [msi] = d.m.irq.allocMsi(1);
    let irqs = 0;
    d.m.irq.requestIrq(msi!.irq, 'priq', () => {
      irqs++;
      return 1;
    });
    d.w64(SMMU_REG.PRIQ_IRQ_CFG0, msi!.address);
    d.w32(SMMU_REG.PRIQ_IRQ_CFG1, msi!.data);
    d.writeSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, IRQ_CTRL.PRIQ_IRQEN);
    expect(up.priRequest(8, 5, 0x1000_1234, 7, false, true, false, false, false)).toBe(PRI_QUEUED);
    expect(up.priRequest(8, 5, 0x1000_3000, 7, true, true, true, true, true)).toBe(PRI_QUEUED);
    expect(up.priRequest(8, -1, 0x2000_0000, 9, true, true, false, true, true)).toBe(PRI_QUEUED);
    d.run();
    expect(irqs).toBeGreaterThan(0);
    const e = d.priEntries();
    expect(
      e.map((x) => [x.streamId, x.substreamId, x.prgIndex, x.last, x.read, x.write, x.exec, x.privileged]),
    ).toEqual([
      [8, 5, 7, false, true, false, false, false],
      [8, 5, 7, true, true, true, true, true],
      // without a PASID, X and Priv are 0 (§8)
      [8, null, 9, true, true, false, false, false],
    ]);
    expect(e.map((x) => x.address)).toEqual([0x1000_1000n, 0x1000_3000n, 0x2000_0000n]);
  });

  it('CMD_PRI_RESP of each code reaches the endpoint, with the PASID when SSV', () => {
    const { d, dev } = setup();
    d.cmd('PRI_RESP', { StreamID: 8, SSV: 1, SubstreamID: 5, PRIGroupID: 7, Resp: 2 });
    d.cmd('PRI_RESP', { StreamID: 8, PRIGroupID: 9, Resp: 0 });
    d.cmd('PRI_RESP', { StreamID: 8, PRIGroupID: 10, Resp: 1 });
    d.sync();
    expect(dev.responses.map((r) => [r.ssid, r.prg, r.code])).toEqual([
      [5, 7, PRI_RESP_SUCCESS],
      [-1, 9, PRI_RESP_INVALID],
      [-1, 10, PRI_RESP_FAILURE],
    ]);
    // Resp == 0b11 is reserved: CERROR_ILL
    d.cmd('PRI_RESP', { StreamID: 8, PRIGroupID: 1, Resp: 3 });
    d.run();
    expect((d.r32(SMMU_REG.GERROR) ^ d.r32(SMMU_REG.GERRORN)) & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
  });

  it('overflow: OVFLG toggles, writes are inhibited, lost Last requests get an automatic Success', () => {
    const { d, dev, up } = setup(1); // 2 entries
    expect(up.priRequest(8, -1, 0x1000, 1, false, true, false, false, false)).toBe(PRI_QUEUED);
    expect(up.priRequest(8, -1, 0x2000, 1, true, true, false, false, false)).toBe(PRI_QUEUED);
    // full: the next request overflows and is lost; Last == 0 silently, Last == 1 auto-answered
    expect(up.priRequest(8, -1, 0x3000, 2, false, true, false, false, false)).toBe(PRI_DISCARDED);
    expect(d.r32(SMMU_REG.PRIQ_PROD_P1) >>> 31).toBe(1);
    expect(up.priRequest(8, -1, 0x4000, 2, true, true, false, false, false)).toBe(PRI_DISCARDED);
    expect(up.priRequest(8, 5, 0x5000, 3, true, true, false, false, false)).toBe(PRI_DISCARDED);
    // a stop marker lost in overflow gets no response
    expect(up.priRequest(8, 5, 0, 4, true, false, false, false, false)).toBe(PRI_DISCARDED);
    expect(dev.responses).toEqual([]); // responses are messages: they arrive later
    d.run();
    expect(dev.responses.map((r) => [r.prg, r.ssid, r.code])).toEqual([
      [2, -1, PRI_RESP_SUCCESS],
      [3, 5, PRI_RESP_SUCCESS], // STE.PPAR == 1: with the PASID
    ]);
    // software drains and acknowledges (OVACKFLG = OVFLG): the queue accepts again
    expect(d.priEntries().map((e) => e.prgIndex)).toEqual([1, 1]);
    expect(up.priRequest(8, -1, 0x6000, 5, true, true, false, false, false)).toBe(PRI_QUEUED);
    expect(d.smmu.priq.stats.overflowed).toBe(4);
  });

  it('overflow auto-response PASID rules: STE.PPAR == 0 drops the PASID, invalid STE -> Response Failure', () => {
    const { d, dev, up } = setup(0); // 1 entry
    d.s1Stream(9, {}, { PPAR: 0 });
    d.smmu.upstream.attach(9, dev);
    d.smmu.upstream.attach(200, dev); // no valid STE
    up.priRequest(8, -1, 0x1000, 1, true, true, false, false, false);
    up.priRequest(9, 3, 0x1000, 2, true, true, false, false, false);
    up.priRequest(200, 3, 0x1000, 3, true, true, false, false, false);
    d.run();
    expect(dev.responses.map((r) => [r.sid, r.prg, r.ssid, r.code])).toEqual([
      [9, 2, -1, PRI_RESP_SUCCESS],
      [200, 3, -1, PRI_RESP_FAILURE],
    ]);
  });

  it('IDR3.PPS: overflow responses always carry the PASID', () => {
    const { d, dev, up } = setup(0, { priPasidAlways: true });
    expect((d.smmu.idRegs.idr3 >>> 5) & 1).toBe(1);
    up.priRequest(8, -1, 0x1000, 1, true, true, false, false, false);
    up.priRequest(200, 3, 0x1000, 2, true, true, false, false, false);
    d.smmu.upstream.attach(200, dev);
    d.run();
    expect(dev.responses.map((r) => [r.prg, r.ssid, r.code])).toEqual([[2, 3, PRI_RESP_SUCCESS]]);
  });

  it('stop markers pass through to the queue and are never answered', () => {
    const { d, dev, up } = setup();
    expect(up.priRequest(8, 5, 0, 3, true, false, false, false, false)).toBe(PRI_QUEUED);
    d.run();
    const [e] = d.priEntries();
    expect(e).toMatchObject({ stopMarker: true, substreamId: 5, last: true, read: false, write: false });
    expect(dev.responses).toEqual([]);
    // without a PASID, L=1 R=W=0 is an ordinary request (§8), not a stop marker
    // (arch decodePri still flags it stopMarker: it does not look at SSV)
    up.priRequest(8, -1, 0, 3, true, false, false, false, false);
    expect(d.priEntries()[0]!.ssv).toBe(false);
    expect(d.smmu.priq.stats.stopMarkers).toBe(1);
    d.run();
    expect(dev.responses).toEqual([]); // software answers it (CMD_PRI_RESP), not the SMMU
  });

  it('PRIQEN == 0: requests are discarded and a Last request is answered Response Failure', () => {
    const { d, dev, up } = setup();
    d.setCr0(CR0_ALL);
    expect(up.priRequest(8, 5, 0x1000, 4, false, true, false, false, false)).toBe(PRI_IGNORED);
    expect(up.priRequest(8, 5, 0x1000, 4, true, true, false, false, false)).toBe(PRI_IGNORED);
    d.run();
    expect(dev.responses.map((r) => [r.prg, r.ssid, r.code])).toEqual([[4, -1, PRI_RESP_FAILURE]]);
    // PRI_RESP is ignored while SMMUEN == 0
    d.setCr0(CR0.CMDQEN | CR0.EVTQEN | CR0.PRIQEN);
    d.cmd('PRI_RESP', { StreamID: 8, PRIGroupID: 4, Resp: 2 });
    d.sync();
    expect(dev.responses).toHaveLength(1);
  });

  it('a PRI queue write that aborts raises PRIQ_ABT_ERR and answers Response Failure', () => {
    const { d, dev, up } = setup();
    d.setCr0(CR0_ALL);
    d.w64(SMMU_REG.PRIQ_BASE, 0x10_0000_0000 | 4); // no memory there
    d.setCr0(CR0_ALL | CR0.PRIQEN);
    expect(up.priRequest(8, -1, 0x1000, 6, true, true, false, false, false)).toBe(PRI_IGNORED);
    expect(d.r32(SMMU_REG.GERROR) & GERROR.PRIQ_ABT_ERR).toBe(GERROR.PRIQ_ABT_ERR);
    d.run();
    expect(dev.responses.map((r) => [r.prg, r.code])).toEqual([[6, PRI_RESP_FAILURE]]);
  });
});
