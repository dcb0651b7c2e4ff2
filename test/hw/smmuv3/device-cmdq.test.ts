import { describe, expect, it } from 'vitest';
import { type CommandName, encodeCommandInto } from '../../../src/arch/smmuv3/cmd.ts';
import { CERROR, CR0, GERROR, IRQ_CTRL, Q_PTR, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { PORT_OK, PortResult } from '../../../src/hw/smmuv3/port.ts';
import { PageTable, SmmuDriver, s1Leaf, s2Leaf } from './device-driver.ts';

const IOVA = 0x4000_0000;

/** Linux's arm_smmu_cmdq_skip_err + GERRORN ack: replace the bad command with CMD_SYNC, toggle GERRORN. */
function skipErr(d: SmmuDriver): number {
  const cons = d.r32(SMMU_REG.CMDQ_CONS);
  const err = (cons & Q_PTR.ERR_MASK) >>> Q_PTR.ERR_SHIFT;
  if (err === CERROR.ILL) {
    const dw = new Uint32Array(4);
    encodeCommandInto(dw, 'SYNC', {});
    d.writeWords(d.cmdq + (cons & ((1 << d.cmdqLog2) - 1)) * 16, dw);
  }
  const gerror = d.r32(SMMU_REG.GERROR);
  d.w32(SMMU_REG.GERRORN, gerror);
  return err;
}

describe('SMMUv3 command queue', () => {
  it('consumes commands after a per-command latency; software polls CONS in virtual time', () => {
    const d = new SmmuDriver({ cmdLatencyNs: 100 }).init();
    const t0 = d.m.sched.now;
    d.cmd('CFGI_STE', { StreamID: 1, Leaf: 1 }, false);
    d.cmd('CFGI_STE', { StreamID: 2, Leaf: 1 }, false);
    d.cmd('SYNC', { CS: 0 });
    expect(d.cons & 0xff).not.toBe(d.prod);
    d.m.sched.runForSync(150);
    expect(d.cons - (d.prod - 3)).toBe(1);
    d.run();
    expect(d.cons).toBe(d.prod);
    expect(d.m.sched.now - t0).toBe(300);
  });

  it('does not consume while CMDQEN is off, and starts when it is acknowledged', () => {
    const d = new SmmuDriver().init({ enable: false });
    d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, 0);
    d.cmd('SYNC');
    d.run();
    expect(d.cons).not.toBe(d.prod);
    d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN);
    d.run();
    expect(d.cons).toBe(d.prod);
  });

  it('executes every command of the architecture that the SMMU advertises', () => {
    const d = new SmmuDriver().init();
    const all: Array<[CommandName, Record<string, number>]> = [
      ['PREFETCH_CONFIG', { StreamID: 1 }],
      ['PREFETCH_ADDR', { StreamID: 1, Address: 0x1000 }],
      ['CFGI_STE', { StreamID: 1, Leaf: 1 }],
      ['CFGI_STE_RANGE', { StreamID: 0, Range: 3 }],
      ['CFGI_CD', { StreamID: 1, SubstreamID: 2, Leaf: 1 }],
      ['CFGI_CD_ALL', { StreamID: 1 }],
      ['CFGI_ALL', {}],
      ['TLBI_NH_ALL', { VMID: 1 }],
      ['TLBI_NH_ASID', { VMID: 1, ASID: 3 }],
      ['TLBI_NH_VA', { VMID: 1, ASID: 3, Address: 0x1000, Leaf: 1 }],
      ['TLBI_NH_VAA', { VMID: 1, Address: 0x1000 }],
      ['TLBI_NH_VA', { VMID: 1, ASID: 3, Address: 0x1000, TG: 1, NUM: 3, SCALE: 1, TTL: 3 }],
      ['TLBI_EL2_ALL', {}],
      ['TLBI_EL2_ASID', { ASID: 3 }],
      ['TLBI_EL2_VA', { ASID: 3, Address: 0x1000 }],
      ['TLBI_EL2_VAA', { Address: 0x1000 }],
      ['TLBI_S12_VMALL', { VMID: 1 }],
      ['TLBI_S2_IPA', { VMID: 1, Address: 0x1000 }],
      ['TLBI_NSNH_ALL', {}],
      ['ATC_INV', { StreamID: 1, Size: 52 }],
      ['PRI_RESP', { StreamID: 1, PRIGroupID: 3, Resp: 2 }],
      ['RESUME', { StreamID: 1, STAG: 5, Ac: 1 }],
      ['STALL_TERM', { StreamID: 1 }],
      ['SYNC', { CS: 0 }],
    ];
    for (const [n, v] of all) d.cmd(n, v, false);
    d.w32(SMMU_REG.CMDQ_PROD, d.prod);
    d.run();
    expect(d.cons).toBe(d.prod);
    expect(d.r32(SMMU_REG.GERROR)).toBe(0);
    const ex = d.smmu.cmdq.stats.executed;
    expect(ex.TLBI_NH_VA).toBe(2);
    expect(ex.CFGI_ALL).toBe(2); // one from init
    expect(d.smmu.counters.deferredCommands).toBe(4);
  });

  it('CERROR_ILL: GERROR.CMDQ_ERR, CONS.ERR, the queue stops; Linux-style recovery resumes it', () => {
    const d = new SmmuDriver({ msi: true }).init({ msi: true });
    d.cmd('CFGI_STE', { StreamID: 1 }, false);
    const bad = new Uint32Array([0x77, 0, 0, 0]); // unknown opcode
    const badAt = d.rawCmd(bad, false);
    d.cmd('CFGI_STE', { StreamID: 2 }, false);
    d.cmd('SYNC', {}, true);
    d.run();
    const cons = d.r32(SMMU_REG.CMDQ_CONS);
    expect((cons & Q_PTR.ERR_MASK) >>> Q_PTR.ERR_SHIFT).toBe(CERROR.ILL);
    expect(d.smmu.cmdq.baseAddr + (cons & 63) * 16).toBe(badAt);
    const gerror = d.r32(SMMU_REG.GERROR);
    expect(gerror & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
    expect(d.r32(SMMU_REG.GERRORN) & GERROR.CMDQ_ERR).toBe(0);
    expect(d.gerrorIrqs).toBe(1);
    // stays stopped
    d.run();
    expect(d.r32(SMMU_REG.CMDQ_CONS)).toBe(cons);
    // recovery as arm_smmu_gerror_handler -> arm_smmu_cmdq_skip_err does it
    expect(skipErr(d)).toBe(CERROR.ILL);
    d.run();
    expect(d.cons & 0xff).toBe(d.prod);
    expect(d.smmu.cmdq.stats.executed.CFGI_STE).toBe(2);
    // a second error toggles GERROR.CMDQ_ERR back (toggle semantics)
    d.rawCmd(bad);
    d.run();
    expect(d.r32(SMMU_REG.GERROR) & GERROR.CMDQ_ERR).toBe(0);
    expect(d.r32(SMMU_REG.GERRORN) & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
    expect(d.smmu.activeErrors & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
    skipErr(d);
    d.run();
    expect(d.smmu.activeErrors).toBe(0);
  });

  it('CERROR_ILL for reserved bits, SSec from the Non-secure queue and features not advertised', () => {
    const d = new SmmuDriver({
      ats: false,
      pri: false,
      stallModel: 'terminate',
      hyp: false,
      rangeInvalidation: false,
    }).init();
    const cases: Uint32Array[] = [];
    const mk = (n: CommandName, v: Record<string, number> = {}) => {
      const dw = new Uint32Array(4);
      encodeCommandInto(dw, n, v);
      return dw;
    };
    cases.push(mk('ATC_INV', { StreamID: 1 }));
    cases.push(mk('PRI_RESP', { StreamID: 1 }));
    cases.push(mk('RESUME', { StreamID: 1 }));
    cases.push(mk('STALL_TERM', { StreamID: 1 }));
    cases.push(mk('TLBI_EL2_ALL'));
    cases.push(mk('TLBI_EL3_ALL'));
    cases.push(mk('TLBI_NH_VA', { NUM: 2, TG: 1, Address: 0x1000 }));
    cases.push(mk('CFGI_VMS_PIDM'));
    const ssec = mk('CFGI_STE', { StreamID: 1 });
    ssec[0]! |= 1 << 10;
    cases.push(ssec);
    const res0 = mk('CFGI_STE', { StreamID: 1 });
    res0[3] = 0x8000_0000;
    cases.push(res0);
    const syncCs3 = mk('SYNC');
    syncCs3[0]! |= 3 << 12;
    cases.push(syncCs3);
    for (const c of cases) {
      d.rawCmd(c);
      d.run();
      expect(d.smmu.cmdq.err, Array.from(c).join(',')).toBe(CERROR.ILL);
      expect(d.smmu.activeErrors & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
      skipErr(d);
      d.run();
      expect(d.cons & 0xff).toBe(d.prod);
    }
    expect(d.smmu.cmdq.stats.errors).toBe(cases.length);
  });

  it('commands for absent stages are CERROR_ILL', () => {
    const s1only = new SmmuDriver({ stage2: false }).init();
    s1only.cmd('TLBI_S12_VMALL', { VMID: 1 });
    s1only.run();
    expect(s1only.smmu.cmdq.err).toBe(CERROR.ILL);
    const s2only = new SmmuDriver({ stage1: false }).init();
    s2only.cmd('CFGI_CD', { StreamID: 1 });
    s2only.run();
    expect(s2only.smmu.cmdq.err).toBe(CERROR.ILL);
  });

  it('CERROR_ABT when a command cannot be fetched', () => {
    const d = new SmmuDriver();
    d.w64(SMMU_REG.CMDQ_BASE, 0x40_0000_0000 | 4);
    d.w32(SMMU_REG.CMDQ_PROD, 0);
    d.w32(SMMU_REG.CMDQ_CONS, 0);
    d.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN);
    d.w32(SMMU_REG.CMDQ_PROD, 1);
    d.run();
    expect(d.smmu.cmdq.err).toBe(CERROR.ABT);
    expect(d.r32(SMMU_REG.GERROR) & GERROR.CMDQ_ERR).toBe(GERROR.CMDQ_ERR);
    expect(d.r32(SMMU_REG.CMDQ_CONS) & 0xffffff).toBe(0);
  });

  it('CMD_SYNC completion by MSI raises the interrupt through the ITS', () => {
    const d = new SmmuDriver().init();
    const [msi] = d.m.irq.allocMsi(1);
    let fired = 0;
    d.m.irq.requestIrq(msi!.irq, 'cmd-sync', () => {
      fired++;
      return 1;
    });
    d.cmd('SYNC', { CS: 1, MSIData: msi!.data, MSIAddress: msi!.address });
    d.run();
    expect(fired).toBe(1);
    expect(d.smmu.cmdq.stats.syncIrq).toBe(1);
  });

  it('CMD_SYNC MSI to memory: the ARM_SMMU_OPT_MSIPOLL scheme (write 0 over the command)', () => {
    const d = new SmmuDriver().init();
    const idx = d.prod & 63;
    const at = d.cmdq + idx * 16;
    d.cmd('SYNC', { CS: 1, MSIData: 0, MSIAddress: at });
    expect(d.m.mem.read32(at)).not.toBe(0);
    d.run();
    expect(d.m.mem.read32(at)).toBe(0);
  });

  it('CMD_SYNC with CS = SEV counts an event; CS = none completes by CONS only', () => {
    const d = new SmmuDriver().init();
    d.cmd('SYNC', { CS: 2 });
    d.cmd('SYNC', { CS: 0 });
    d.run();
    expect(d.smmu.counters.sev).toBe(1);
    expect(d.cons).toBe(d.prod);
  });

  it('CMD_SYNC MSI write that aborts: GERROR.MSI_CMDQ_ABT_ERR', () => {
    const d = new SmmuDriver().init();
    d.cmd('SYNC', { CS: 1, MSIAddress: 0x40_0000_0000 });
    d.run();
    expect(d.smmu.activeErrors & GERROR.MSI_CMDQ_ABT_ERR).toBe(GERROR.MSI_CMDQ_ABT_ERR);
  });

  it('GERROR interrupt on a wired line when MSIs are not advertised', () => {
    const d = new SmmuDriver({ msi: false, irqs: { gerror: 40, eventq: 41 } }).init();
    let n = 0;
    d.m.irq.configure(40, 'edge');
    d.m.irq.requestIrq(40, 'gerror', () => {
      n++;
      return 1;
    });
    d.writeSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, IRQ_CTRL.GERROR_IRQEN);
    d.rawCmd(new Uint32Array([0xff, 0, 0, 0]));
    d.run();
    expect(n).toBe(1);
  });
});

describe('SMMUv3 caches: stale without invalidation, fresh after it', () => {
  function s1Stream(d: SmmuDriver, sid: number, asid: number, pa: number) {
    const pt = new PageTable(d);
    pt.map(IOVA, s1Leaf(pa));
    const cd = d.alloc(4096);
    d.writeCd(cd, d.s1Cd(pt.root, asid));
    d.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: cd });
    return { pt, cd };
  }

  it('STE: a rewritten STE is not seen until CFGI_STE + CMD_SYNC', () => {
    const d = new SmmuDriver().init();
    d.writeSte(1, { V: 1, Config: 0b100 });
    const r = new PortResult();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(IOVA);
    s1Stream(d, 1, 1, 0x9000_0000);
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(IOVA); // stale: still bypass
    d.cmd('CFGI_STE', { StreamID: 1, Leaf: 1 });
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    expect(d.smmu.cache.stats.steInvalidations).toBeGreaterThan(0);
  });

  it('STE: an STE re-fetched after eviction applies its S2VMID to a CD that stayed cached', () => {
    // capacity evicts STE 1 but not its CD; the STE was rewritten meanwhile (no CFGI), so the
    // re-fetch sees S2VMID 2, and the cached CD's translations must take that VMID tag
    const d = new SmmuDriver({ steCacheSize: 1 }).init();
    const { cd } = s1Stream(d, 1, 5, 0x9000_0000);
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd, S2VMID: 1 });
    d.writeSte(2, { V: 1, Config: 0b100 });
    const r = new PortResult();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.tlbHit).toBe(false);
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.tlbHit).toBe(true);
    d.writeSte(1, { V: 1, Config: 0b101, S1ContextPtr: cd, S2VMID: 2 });
    d.smmu.port.translate(2, -1, IOVA, 0, r); // evicts STE 1
    const cdFills = d.smmu.cache.stats.cdFills;
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(d.smmu.cache.stats.cdFills).toBe(cdFills); // the CD came from the cache
    expect(r.tlbHit).toBe(false); // VMID 2: the VMID-1 entry does not match
    expect(r.oa).toBe(0x9000_0000);
    d.cmd('TLBI_NH_ASID', { VMID: 1, ASID: 5 });
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.tlbHit).toBe(true); // the VMID-2 entry survives a VMID-1 invalidation
    d.cmd('TLBI_NH_ASID', { VMID: 2, ASID: 5 });
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.tlbHit).toBe(false);
  });

  it('STE: CFGI_STE_RANGE and CFGI_ALL cover ranges of StreamIDs', () => {
    const d = new SmmuDriver().init();
    const r = new PortResult();
    for (const sid of [4, 5, 6, 7, 8]) {
      d.writeSte(sid, { V: 1, Config: 0b100 });
      d.smmu.port.translate(sid, -1, IOVA, 0, r);
      d.writeSte(sid, { V: 1, Config: 0b000 });
    }
    d.cmd('CFGI_STE_RANGE', { StreamID: 5, Range: 1 }); // 4..7
    d.sync();
    const st = (sid: number) => d.smmu.port.translate(sid, -1, IOVA, 0, r);
    expect([4, 5, 6, 7, 8].map(st)).toEqual([2, 2, 2, 2, 1]);
    d.cmd('CFGI_ALL');
    d.sync();
    expect(st(8)).toBe(2);
  });

  it('CD: CFGI_CD for one substream, CFGI_CD_ALL for the stream', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d);
    pt.map(IOVA, s1Leaf(0x9000_0000));
    const pt2 = new PageTable(d);
    pt2.map(IOVA, s1Leaf(0x9900_0000));
    const tab = d.alloc(4096);
    d.writeCd(tab + 64, d.s1Cd(pt.root, 1));
    d.writeSte(2, { V: 1, Config: 0b101, S1ContextPtr: tab, S1CDMax: 2, S1DSS: 2 });
    const r = new PortResult();
    d.smmu.port.translate(2, 1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    d.writeCd(tab + 64, d.s1Cd(pt2.root, 2));
    d.smmu.port.translate(2, 1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000); // stale CD
    d.cmd('CFGI_CD', { StreamID: 2, SubstreamID: 0, Leaf: 1 }); // wrong substream
    d.sync();
    d.smmu.port.translate(2, 1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    d.cmd('CFGI_CD', { StreamID: 2, SubstreamID: 1, Leaf: 1 });
    d.sync();
    d.smmu.port.translate(2, 1, IOVA, 0, r);
    expect(r.oa).toBe(0x9900_0000);
    d.writeCd(tab + 64, d.s1Cd(pt.root, 3));
    d.cmd('CFGI_CD_ALL', { StreamID: 2 });
    d.sync();
    d.smmu.port.translate(2, 1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
  });

  it('configuration cache capacity: replacement refetches (a stale entry can disappear by eviction)', () => {
    const d = new SmmuDriver({ steCacheSize: 2 }).init();
    const r = new PortResult();
    for (const sid of [1, 2, 3]) d.writeSte(sid, { V: 1, Config: 0b100 });
    for (const sid of [1, 2, 3]) d.smmu.port.translate(sid, -1, IOVA, 0, r);
    expect(d.smmu.cache.steCount).toBe(2);
    expect(d.smmu.cache.stats.steEvictions).toBe(1);
  });

  it('TLB: a remapped page is stale until TLBI_NH_VA + CMD_SYNC', () => {
    const d = new SmmuDriver().init();
    const { pt } = s1Stream(d, 1, 5, 0x9000_0000);
    const r = new PortResult();
    expect(d.smmu.port.translate(1, -1, IOVA, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(0x9000_0000);
    pt.map(IOVA, s1Leaf(0x9100_0000));
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    expect(r.tlbHit).toBe(true);
    d.cmd('TLBI_NH_VA', { VMID: 0, ASID: 4, Address: IOVA, Leaf: 1 }); // other ASID: no effect
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    d.cmd('TLBI_NH_VA', { VMID: 0, ASID: 5, Address: IOVA, Leaf: 1 });
    d.sync();
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9100_0000);
  });

  it('TLB: TLBI_NH_ASID, TLBI_NH_ALL, TLBI_NSNH_ALL and a range TLBI', () => {
    const d = new SmmuDriver().init();
    const { pt } = s1Stream(d, 1, 5, 0x9000_0000);
    const r = new PortResult();
    const remapAndCheck = (cmd: CommandName, v: Record<string, number>, pa: number) => {
      d.smmu.port.translate(1, -1, IOVA, 0, r);
      pt.map(IOVA, s1Leaf(pa));
      d.cmd(cmd, v);
      d.sync();
      d.smmu.port.translate(1, -1, IOVA, 0, r);
      return r.oa;
    };
    expect(remapAndCheck('TLBI_NH_ASID', { ASID: 5 }, 0x9100_0000)).toBe(0x9100_0000);
    expect(remapAndCheck('TLBI_NH_ALL', { VMID: 0 }, 0x9200_0000)).toBe(0x9200_0000);
    expect(remapAndCheck('TLBI_NSNH_ALL', {}, 0x9300_0000)).toBe(0x9300_0000);
    // range: 4 pages of 4KB starting one page below IOVA: (NUM+1) << SCALE = 4
    expect(
      remapAndCheck('TLBI_NH_VA', { ASID: 5, Address: IOVA - 0x1000, TG: 1, NUM: 1, SCALE: 1 }, 0x9400_0000),
    ).toBe(0x9400_0000);
    // a range that ends just below IOVA leaves it stale
    expect(
      remapAndCheck('TLBI_NH_VA', { ASID: 5, Address: IOVA - 0x4000, TG: 1, NUM: 3, SCALE: 0 }, 0x9500_0000),
    ).toBe(0x9400_0000);
  });

  it('TLB: stage 2 — TLBI_S2_IPA and TLBI_S12_VMALL', () => {
    const d = new SmmuDriver().init();
    const pt = new PageTable(d, 40, 1, 2);
    pt.map(IOVA, s2Leaf(0x9000_0000));
    d.writeSte(3, {
      V: 1,
      Config: 0b110,
      S2VMID: 7,
      S2T0SZ: 24,
      S2SL0: 1,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: pt.root,
    });
    const r = new PortResult();
    d.smmu.port.translate(3, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    pt.map(IOVA, s2Leaf(0x9100_0000));
    d.smmu.port.translate(3, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    d.cmd('TLBI_S2_IPA', { VMID: 6, Address: IOVA });
    d.sync();
    d.smmu.port.translate(3, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9000_0000);
    d.cmd('TLBI_S2_IPA', { VMID: 7, Address: IOVA, Leaf: 1 });
    d.sync();
    d.smmu.port.translate(3, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9100_0000);
    pt.map(IOVA, s2Leaf(0x9200_0000));
    d.cmd('TLBI_S12_VMALL', { VMID: 7 });
    d.sync();
    d.smmu.port.translate(3, -1, IOVA, 0, r);
    expect(r.oa).toBe(0x9200_0000);
  });
});
