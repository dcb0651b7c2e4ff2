import { describe, expect, it } from 'vitest';
import { CR0, GBPA, IDR0, IDR1, IDR3, IDR5, SMMU_REG, STALL_MODEL } from '../../../src/arch/smmuv3/regs.ts';
import { PORT_ABORT, PORT_BYPASS, PortResult } from '../../../src/hw/smmuv3/port.ts';
import { SMMU_BASE, SmmuDriver } from './device-driver.ts';

describe('SMMUv3 register file', () => {
  it('advertises the defaults of a v3.2 MMU-700-like SMMU in IDR0-5, IIDR and AIDR', () => {
    const d = new SmmuDriver();
    const idr0 = d.r32(SMMU_REG.IDR0);
    expect(idr0 & IDR0.S1P).not.toBe(0);
    expect(idr0 & IDR0.S2P).not.toBe(0);
    expect((idr0 >>> IDR0.ST_LEVEL_SHIFT) & 3).toBe(1);
    expect((idr0 >>> IDR0.TTF_SHIFT) & 3).toBe(2);
    expect((idr0 >>> IDR0.STALL_MODEL_SHIFT) & 3).toBe(STALL_MODEL.STALL);
    expect((idr0 >>> IDR0.TTENDIAN_SHIFT) & 3).toBe(2);
    for (const b of [IDR0.ASID16, IDR0.VMID16, IDR0.MSI, IDR0.ATS, IDR0.PRI, IDR0.CD2L, IDR0.HYP, IDR0.SEV]) {
      expect(idr0 & b).not.toBe(0);
    }
    expect((idr0 >>> IDR0.HTTU_SHIFT) & 3).toBe(2);
    const idr1 = d.r32(SMMU_REG.IDR1);
    expect(idr1 & 0x3f).toBe(16);
    expect((idr1 >>> IDR1.SSIDSIZE_SHIFT) & 0x1f).toBe(20);
    expect((idr1 >>> IDR1.CMDQS_SHIFT) & 0x1f).toBe(19);
    expect(d.r32(SMMU_REG.IDR3) & IDR3.RIL).not.toBe(0);
    const idr5 = d.r32(SMMU_REG.IDR5);
    expect(idr5 & 7).toBe(5); // 48-bit OAS
    expect(idr5 & (IDR5.GRAN4K | IDR5.GRAN16K | IDR5.GRAN64K)).toBe(0x70);
    expect(d.r32(SMMU_REG.AIDR)).toBe(0x02);
    expect(d.r32(SMMU_REG.IIDR) >>> 20).toBe(0x487);
  });

  it('imitates another implementation from constructor options', () => {
    const d = new SmmuDriver({
      stage1: true,
      stage2: false,
      twoLevelStreamTable: false,
      sidBits: 8,
      ssidBits: 0,
      oasBits: 44,
      msi: false,
      ats: false,
      pri: false,
      stallModel: 'terminate',
      abortOnlyTermination: true,
      rangeInvalidation: false,
      granules: { g4k: true, g16k: false, g64k: true },
      httu: 0,
      archMinor: 1,
    });
    const idr0 = d.r32(SMMU_REG.IDR0);
    expect(idr0 & IDR0.S2P).toBe(0);
    expect(idr0 & (IDR0.MSI | IDR0.ATS | IDR0.PRI)).toBe(0);
    expect((idr0 >>> IDR0.STALL_MODEL_SHIFT) & 3).toBe(STALL_MODEL.TERMINATE);
    expect(idr0 & IDR0.TERM_MODEL).not.toBe(0);
    expect((idr0 >>> IDR0.ST_LEVEL_SHIFT) & 3).toBe(0);
    expect(d.r32(SMMU_REG.IDR1) & 0x3f).toBe(8);
    expect(d.r32(SMMU_REG.IDR3) & IDR3.RIL).toBe(0);
    expect(d.r32(SMMU_REG.IDR5) & 0x77).toBe(0x54);
    expect(d.r32(SMMU_REG.AIDR)).toBe(1);
  });

  it('acknowledges CR0 in CR0ACK only after a latency (the enable handshake)', () => {
    const d = new SmmuDriver({ regAckLatencyNs: 500 });
    d.w32(SMMU_REG.CR0, CR0.CMDQEN | CR0.EVTQEN);
    expect(d.r32(SMMU_REG.CR0)).toBe(CR0.CMDQEN | CR0.EVTQEN);
    expect(d.r32(SMMU_REG.CR0ACK)).toBe(0);
    d.m.sched.runForSync(499);
    expect(d.r32(SMMU_REG.CR0ACK)).toBe(0);
    d.m.sched.runForSync(1);
    expect(d.r32(SMMU_REG.CR0ACK)).toBe(CR0.CMDQEN | CR0.EVTQEN);
  });

  it('accepts 64-bit registers as one 64-bit access or two 32-bit halves', () => {
    const d = new SmmuDriver();
    d.m.mem.write64(SMMU_BASE + SMMU_REG.STRTAB_BASE, 0x1234_5000 | 0, 0x7);
    expect(d.r32(SMMU_REG.STRTAB_BASE)).toBe(0x1234_5000);
    expect(d.r32(SMMU_REG.STRTAB_BASE + 4)).toBe(7);
    d.w32(SMMU_REG.CMDQ_BASE, 0x8000_0005);
    d.w32(SMMU_REG.CMDQ_BASE + 4, 0x1);
    expect(d.m.mem.read64n(SMMU_BASE + SMMU_REG.CMDQ_BASE)).toBe(0x1_8000_0005);
    expect(d.smmu.cmdq.baseAddr).toBe(0x1_8000_0000);
    expect(d.smmu.cmdq.log2).toBe(5);
  });

  it('ignores STRTAB_BASE and queue BASE writes while enabled', () => {
    const d = new SmmuDriver().init();
    const st = d.r32(SMMU_REG.STRTAB_BASE);
    d.w32(SMMU_REG.STRTAB_BASE, 0xdead_0000);
    d.w32(SMMU_REG.CMDQ_BASE, 0xdead_0000);
    expect(d.r32(SMMU_REG.STRTAB_BASE)).toBe(st);
    expect(d.r32(SMMU_REG.CMDQ_BASE)).toBe((d.cmdq | d.cmdqLog2) >>> 0);
  });

  it('aliases EVTQ/PRIQ PROD and CONS in page 1', () => {
    const d = new SmmuDriver();
    d.w64(SMMU_REG.EVTQ_BASE, 0x8010_0000 | 4);
    d.w32(SMMU_REG.EVTQ_CONS_P1, 3);
    expect(d.r32(SMMU_REG.EVTQ_CONS)).toBe(3);
    expect(d.r32(SMMU_REG.EVTQ_CONS_P1)).toBe(3);
    d.w32(SMMU_REG.PRIQ_CONS_P1, 5);
    expect(d.r32(SMMU_REG.PRIQ_CONS)).toBe(5);
  });

  it('applies GBPA only through the UPDATE handshake: abort or bypass while SMMUEN = 0', () => {
    const d = new SmmuDriver();
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, 0x8000_1000, 0, r)).toBe(PORT_BYPASS);
    expect(r.oa).toBe(0x8000_1000);
    d.w32(SMMU_REG.GBPA, GBPA.ABORT); // no UPDATE: ignored
    d.run();
    expect(d.r32(SMMU_REG.GBPA) & GBPA.ABORT).toBe(0);
    d.w32(SMMU_REG.GBPA, (GBPA.ABORT | GBPA.UPDATE) >>> 0);
    expect(d.r32(SMMU_REG.GBPA) & GBPA.UPDATE).not.toBe(0);
    d.run();
    expect(d.r32(SMMU_REG.GBPA) >>> 0).toBe(GBPA.ABORT); // the write replaced SHCFG too: software must read-modify-write
    expect(d.smmu.port.translate(1, -1, 0x8000_1000, 0, r)).toBe(PORT_ABORT);
    expect(d.setGbpa(false)).toBe(true);
    expect(d.smmu.port.translate(1, -1, 0x8000_1000, 0, r)).toBe(PORT_BYPASS);
    expect(d.smmu.evtq.stats.written).toBe(0);
  });

  it('resets GBPA.ABORT as configured (IMPLEMENTATION DEFINED)', () => {
    const d = new SmmuDriver({ gbpaAbortAtReset: true });
    expect(d.r32(SMMU_REG.GBPA) & GBPA.ABORT).not.toBe(0);
    expect(d.smmu.port.translate(0, -1, 0, 0, new PortResult())).toBe(PORT_ABORT);
  });

  it('IRQ_CTRL is acknowledged in IRQ_CTRLACK; IRQ_CFG registers are locked while enabled', () => {
    const d = new SmmuDriver();
    d.w64(SMMU_REG.EVTQ_IRQ_CFG0, 0x0808_0040 + 0x10000);
    d.w32(SMMU_REG.EVTQ_IRQ_CFG1, 42);
    expect(d.writeSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, 4)).toBe(true);
    d.w32(SMMU_REG.EVTQ_IRQ_CFG1, 43);
    expect(d.r32(SMMU_REG.EVTQ_IRQ_CFG1)).toBe(42);
  });

  it('reads reserved registers as zero and ignores writes to read-only ones', () => {
    const d = new SmmuDriver();
    const idr0 = d.r32(SMMU_REG.IDR0);
    d.w32(SMMU_REG.IDR0, 0);
    d.w32(SMMU_REG.GERROR, 0xff);
    expect(d.r32(SMMU_REG.IDR0)).toBe(idr0);
    expect(d.r32(SMMU_REG.GERROR)).toBe(0);
    expect(d.r32(0xe00)).toBe(0);
    expect(d.r32(0x10000)).toBe(0);
  });
});

describe('SMMUv3 trace and counters', () => {
  it('emits typed trace events for CR0, commands, GERROR and event records when tracing is on', async () => {
    const { RingSink } = await import('../../../src/platform/trace.ts');
    const d = new SmmuDriver();
    const sink = new RingSink();
    d.m.trace.addSink(sink);
    d.init();
    d.rawCmd(new Uint32Array([0x7f, 0, 0, 0]));
    d.run();
    d.smmu.port.translate(0x20, -1, 0x1000, 0, new PortResult());
    const names = new Set(sink.events().map((e) => e.name));
    for (const n of ['cr0', 'cmdq.exec', 'cmdq.error', 'gerror', 'evtq.record', 'fault'])
      expect(names).toContain(n);
    expect(sink.events().every((e) => e.component === 'smmuv3.0' || e.component !== '')).toBe(true);
  });

  it('exposes hit/miss/invalidation counters', () => {
    const d = new SmmuDriver().init();
    d.writeSte(1, { V: 1, Config: 0b100 });
    const r = new PortResult();
    d.smmu.port.translate(1, -1, 0, 0, r);
    d.smmu.port.translate(1, -1, 0, 0, r);
    d.cmd('CFGI_STE', { StreamID: 1 });
    d.sync();
    const s = d.smmu.stats();
    expect(s.configCache!.steMisses).toBe(1);
    expect(s.configCache!.steHits).toBe(1);
    expect(s.configCache!.steInvalidations).toBe(1);
    expect(s.cmdq!.CMD_CFGI_STE).toBe(1);
    expect(s.port!.bypass).toBe(2);
  });
});
