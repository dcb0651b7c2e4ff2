// The SMMUv2 model driven the way software drives it: register writes over MMIO, page tables
// written by io-pgtable into simulated memory, transactions through the DMA port. What the
// device answers (output addresses, faults in FSR / sGFSR, interrupt lines) is what a driver
// would see.

import { describe, expect, it } from 'vitest';
import { decodeFsr, decodeFsynr0 } from '../../../src/arch/smmuv2/decode.ts';
import {
  CB,
  FSR_MULTI,
  FSR_PF,
  FSR_TF,
  GR0,
  GR0_S2CR,
  GR0_SMR,
  GR1_CBAR,
  GR1_CBFRSYNRA,
  getField,
  ID0,
  ID1,
  ID2,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
} from '../../../src/arch/smmuv2/regs.ts';
import {
  ACCESS_PRIV,
  ACCESS_READ,
  ACCESS_WRITE,
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PortResult,
} from '../../../src/hw/smmu-common/port.ts';
import { IOMMU_READ } from '../../../src/kernel/iommu/prot.ts';
import {
  CTX_IRQ_BASE,
  DATA,
  enable,
  fixture,
  GLOBAL_IRQ,
  lineHigh,
  RW,
  SCR0_SMCFCFG,
  SCTLR_HUPCF,
  SCTLR_LINUX_S1,
  s1Bank,
  s2Bank,
  s2crOnly,
  streamToBank,
  table,
} from './helpers.ts';

const out = new PortResult();

describe('SMMUv2 ID registers and reset', () => {
  it('MMU-500 defaults: both stages and nesting, stream matching, 16 banks, 48-bit, 4K and 64K granules', () => {
    const { r } = fixture();
    const id0 = r.gr0(GR0.ID0);
    const id1 = r.gr0(GR0.ID1);
    const id2 = r.gr0(GR0.ID2);
    expect(getField(id0, ID0.S1TS) & getField(id0, ID0.S2TS) & getField(id0, ID0.NTS)).toBe(1);
    expect(getField(id0, ID0.SMS)).toBe(1);
    expect(getField(id0, ID0.NUMSMRG)).toBe(48);
    expect(getField(id0, ID0.PTFS_NO_AARCH32S)).toBe(1);
    expect(getField(id1, ID1.NUMCB)).toBe(16);
    expect(getField(id1, ID1.PAGESIZE)).toBe(0);
    expect(getField(id2, ID2.IAS)).toBe(5);
    expect(getField(id2, ID2.OAS)).toBe(5);
    expect([getField(id2, ID2.PTFS_4K), getField(id2, ID2.PTFS_16K), getField(id2, ID2.PTFS_64K)]).toEqual([
      1, 0, 1,
    ]);
    expect(getField(r.gr0(GR0.ID7), { lsb: 4, width: 4 })).toBe(2);
  });

  it('out of reset sCR0.CLIENTPD = 1: every transaction bypasses, even an unmatched stream', () => {
    const { smmu, r } = fixture();
    expect(r.gr0(GR0.sCR0) & 1).toBe(1);
    expect(smmu.port.translate(7, -1, 0x1234_5000, ACCESS_READ, out)).toBe(PORT_BYPASS);
    expect(out.oa).toBe(0x1234_5000);
  });

  it('a bypassed address above the OAS is truncated to it', () => {
    const { smmu } = fixture({ oas: 40 });
    smmu.port.translate(1, -1, 2 ** 44 + 0x5000, ACCESS_READ, out);
    expect(out.oa).toBe(0x5000);
  });
});

describe('SMMUv2 stage-1 translation and the TLB', () => {
  function s1Setup() {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 3, t, { asid: 3 });
    streamToBank(f.r, 0, 0x42, 0, 3);
    return { ...f, t };
  }

  it('translates through SMR -> S2CR -> context bank -> io-pgtable tables', () => {
    const { smmu, t } = s1Setup();
    t.ops.mapPages(0x4000_0000, DATA, 0x1000, 1, RW);
    expect(smmu.port.translate(0x42, -1, 0x4000_0123, ACCESS_WRITE, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x123);
    expect(out.tlbHit).toBe(false);
    smmu.port.translate(0x42, -1, 0x4000_0123, ACCESS_READ, out);
    expect(out.tlbHit).toBe(true);
  });

  it('a TLB entry stays stale after the PTE is cleared, after TLBIVA without sync, and goes at TLBSYNC', () => {
    const { smmu, r, t } = s1Setup();
    const iova = 0x4000_0000;
    t.ops.mapPages(iova, DATA, 0x1000, 1, RW);
    expect(smmu.port.translate(0x42, -1, iova, ACCESS_READ, out)).toBe(PORT_OK);
    t.ops.unmapPages(iova, 0x1000, 1, null); // the PTE is gone, no TLB maintenance yet
    expect(smmu.port.translate(0x42, -1, iova, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA); // stale
    // TLBIVA (AArch64: VA >> 12 | ASID << 48), written but not synced
    r.setCb64(3, CB.TLBIVA, iova / 4096, 3 << 16);
    expect(smmu.port.translate(0x42, -1, iova, ACCESS_READ, out)).toBe(PORT_OK);
    // a global sync does not complete a context bank's maintenance
    r.setGr0(GR0.sTLBGSYNC, -1);
    expect(smmu.port.translate(0x42, -1, iova, ACCESS_READ, out)).toBe(PORT_OK);
    r.setCb(3, CB.TLBSYNC, -1);
    expect(r.cb(3, CB.TLBSTATUS) & 1).toBe(1); // SACTIVE for one read
    expect(r.cb(3, CB.TLBSTATUS) & 1).toBe(0);
    expect(smmu.port.translate(0x42, -1, iova, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(r.cb(3, CB.FSR) & FSR_TF).toBe(FSR_TF);
  });

  it('TLBIASID + sync drops the ASID; another ASID keeps its entries', () => {
    const f = fixture();
    const t1 = table(f.m, 'arm-64-lpae-s1', 48, 48);
    const t2 = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 1, t1, { asid: 1 });
    s1Bank(f.r, 2, t2, { asid: 2 });
    streamToBank(f.r, 0, 1, 0, 1);
    streamToBank(f.r, 1, 2, 0, 2);
    t1.ops.mapPages(0x1000, DATA, 0x1000, 1, RW);
    t2.ops.mapPages(0x1000, DATA + 0x1000, 0x1000, 1, RW);
    f.smmu.port.translate(1, -1, 0x1000, ACCESS_READ, out);
    f.smmu.port.translate(2, -1, 0x1000, ACCESS_READ, out);
    t1.ops.unmapPages(0x1000, 0x1000, 1, null);
    t2.ops.unmapPages(0x1000, 0x1000, 1, null);
    f.r.setCb(1, CB.TLBIASID, 1);
    f.r.setCb(1, CB.TLBSYNC, 0);
    expect(f.smmu.port.translate(1, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.smmu.port.translate(2, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_OK); // still stale
    expect(out.oa).toBe(DATA + 0x1000);
  });

  it('a permission upgrade needs a TLBI: the cached read-only entry keeps faulting writes', () => {
    const { smmu, r, t } = s1Setup();
    t.ops.mapPages(0x8000, DATA, 0x1000, 1, IOMMU_READ);
    expect(smmu.port.translate(0x42, -1, 0x8000, ACCESS_WRITE, out)).toBe(PORT_FAULT);
    expect(r.cb(3, CB.FSR) & FSR_PF).toBe(FSR_PF);
    r.setCb(3, CB.FSR, r.cb(3, CB.FSR));
    t.ops.unmapPages(0x8000, 0x1000, 1, null);
    t.ops.mapPages(0x8000, DATA, 0x1000, 1, RW);
    expect(smmu.port.translate(0x42, -1, 0x8000, ACCESS_WRITE, out)).toBe(PORT_FAULT);
    r.setCb64(3, CB.TLBIVAL, 0x8000 / 4096, 3 << 16);
    r.setCb(3, CB.TLBSYNC, 0);
    r.setCb(3, CB.FSR, -1);
    expect(smmu.port.translate(0x42, -1, 0x8000, ACCESS_WRITE, out)).toBe(PORT_OK);
  });
});

describe('SMMUv2 context faults: FSR, FAR, FSYNR0, CBFRSYNRA, MULTI, interrupt', () => {
  it('records the first fault, sets MULTI for the next, is write-1-to-clear, and drives the context line', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 5, t, { sctlrExtra: SCTLR_HUPCF }); // HUPCF: the second transaction is processed
    streamToBank(f.r, 0, 0x300, 0, 5);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 5)).toBe(false);
    expect(f.smmu.port.translate(0x300, -1, 0x7000_1230, ACCESS_WRITE | ACCESS_PRIV, out)).toBe(PORT_FAULT);
    const fsr = f.r.cb(5, CB.FSR);
    expect(decodeFsr(fsr).flags).toEqual(['TF']);
    expect(f.r.cb64(5, CB.FAR)).toBe(0x7000_1230);
    const syn = decodeFsynr0(f.r.cb(5, CB.FSYNR0));
    expect(syn.flags).toEqual(['PNU', 'WNR']);
    expect(syn.fields.PLVL).toBe(0); // level-0 table entry invalid
    expect(f.r.gr1(GR1_CBFRSYNRA(5))).toBe(0x300);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 5)).toBe(true);
    // a second fault: MULTI, the syndrome of the first stays
    f.smmu.port.translate(0x300, -1, 0x5000, ACCESS_READ, out);
    expect(f.r.cb(5, CB.FSR) >>> 0).toBe((FSR_MULTI | FSR_TF) >>> 0);
    expect(f.r.cb64(5, CB.FAR)).toBe(0x7000_1230);
    // W1C: writing the TF bit alone leaves MULTI
    f.r.setCb(5, CB.FSR, FSR_TF);
    expect(f.r.cb(5, CB.FSR) >>> 0).toBe(FSR_MULTI >>> 0);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 5)).toBe(true);
    f.r.setCb(5, CB.FSR, FSR_MULTI);
    expect(f.r.cb(5, CB.FSR)).toBe(0);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 5)).toBe(false);
  });

  it('without CFIE the fault is recorded but the line stays low; CFRE = 0 completes as RAZ/WI', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 0, t, { sctlr: 1 | (1 << 2) }); // M | AFE: no CFIE, no CFRE
    streamToBank(f.r, 0, 9, 0, 0);
    expect(f.smmu.port.translate(9, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_RAZWI);
    expect(f.r.cb(0, CB.FSR) & FSR_TF).toBe(FSR_TF);
    expect(lineHigh(f.m, CTX_IRQ_BASE)).toBe(false);
  });

  it('terminate mode without HUPCF: while a fault is outstanding later transactions are terminated (MULTI)', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 2, t);
    streamToBank(f.r, 0, 4, 0, 2);
    t.ops.mapPages(0x2000, DATA, 0x1000, 1, RW);
    expect(f.smmu.port.translate(4, -1, 0x2000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(f.smmu.port.translate(4, -1, 0x9000, ACCESS_READ, out)).toBe(PORT_FAULT);
    // a mapped page, but the bank has an outstanding fault
    expect(f.smmu.port.translate(4, -1, 0x2000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.r.cb(2, CB.FSR) & FSR_MULTI).not.toBe(0);
    f.r.setCb(2, CB.FSR, -1);
    expect(f.smmu.port.translate(4, -1, 0x2000, ACCESS_READ, out)).toBe(PORT_OK);
  });
});

describe('SMMUv2 stream matching and S2CR', () => {
  it('an unmatched stream with USFCFG = 1 is aborted with a USF global fault (StreamID in sGFSYNR1, global line)', () => {
    const { smmu, r, m } = fixture();
    enable(r, true);
    expect(smmu.port.translate(0x77, -1, 0xdead_0000, ACCESS_WRITE, out)).toBe(PORT_FAULT);
    expect(r.gr0(GR0.sGFSR)).toBe(1 << 1);
    expect(r.gr0(GR0.sGFSYNR1) & 0xffff).toBe(0x77);
    expect(r.gr0(GR0.sGFSYNR0) & 2).toBe(2); // WNR
    expect(r.gr0(GR0.sGFAR)).toBe(0xdead_0000);
    expect(lineHigh(m, GLOBAL_IRQ)).toBe(true);
    smmu.port.translate(0x78, -1, 0, ACCESS_READ, out);
    expect(r.gr0(GR0.sGFSR) >>> 0).toBe(((1 << 31) | 2) >>> 0); // MULTI, syndrome kept
    expect(r.gr0(GR0.sGFSYNR1) & 0xffff).toBe(0x77);
    r.setGr0(GR0.sGFSR, r.gr0(GR0.sGFSR));
    expect(r.gr0(GR0.sGFSR)).toBe(0);
    expect(lineHigh(m, GLOBAL_IRQ)).toBe(false);
  });

  it('an unmatched stream with USFCFG = 0 bypasses, with no fault', () => {
    const { smmu, r } = fixture();
    enable(r, false);
    expect(smmu.port.translate(0x77, -1, 0x5000, ACCESS_READ, out)).toBe(PORT_BYPASS);
    expect(r.gr0(GR0.sGFSR)).toBe(0);
  });

  it('SMR masks: id 1 mask 0x30 matches 1, 17, 33, 49 and nothing else', () => {
    const { smmu, r } = fixture();
    enable(r);
    s2crOnly(r, 0, S2CR_TYPE_BYPASS, 1, 0x30);
    const hits = [];
    for (let sid = 0; sid < 64; sid++)
      if (smmu.port.translate(sid, -1, 0, ACCESS_READ, out) === PORT_BYPASS) hits.push(sid);
    expect(hits).toEqual([1, 17, 33, 49]);
  });

  it('a stream matching two SMRs is an SMCF global fault with SMCFCFG, the lower SMR without', () => {
    const { smmu, r } = fixture();
    enable(r);
    s2crOnly(r, 0, S2CR_TYPE_FAULT, 0x10, 0xf);
    s2crOnly(r, 1, S2CR_TYPE_BYPASS, 0x12, 0);
    expect(smmu.port.translate(0x12, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(r.gr0(GR0.sGFSR)).toBe(1 << 2);
    r.setGr0(GR0.sGFSR, -1);
    r.setGr0(GR0.sCR0, r.gr0(GR0.sCR0) & ~SCR0_SMCFCFG);
    expect(smmu.port.translate(0x12, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_ABORT); // SMR 0: FAULT type
    expect(r.gr0(GR0.sGFSR)).toBe(0);
    expect(smmu.port.translate(0x11, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_ABORT);
  });

  it('S2CR FAULT aborts with no record; CBNDX beyond NUMCB is UCBF; an S1 type on a stage-2-only bank is ICF', () => {
    const { smmu, r } = fixture({ numS2ContextBanks: 2 });
    enable(r);
    s2crOnly(r, 0, S2CR_TYPE_FAULT, 1);
    expect(smmu.port.translate(1, -1, 0, ACCESS_READ, out)).toBe(PORT_ABORT);
    expect(r.gr0(GR0.sGFSR)).toBe(0);
    streamToBank(r, 1, 2, 0, 99);
    expect(smmu.port.translate(2, -1, 0, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(r.gr0(GR0.sGFSR)).toBe(1 << 3);
    r.setGr0(GR0.sGFSR, -1);
    r.setGr1(GR1_CBAR(1), 1 << 16); // S1_TRANS_S2_BYPASS on bank 1, which is stage-2 only
    streamToBank(r, 2, 3, 0, 1);
    expect(smmu.port.translate(3, -1, 0, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(r.gr0(GR0.sGFSR)).toBe(1 << 0);
  });

  it('S2CR.PRIVCFG forces the privilege a stage-1 page checks', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 1, t, { sctlrExtra: SCTLR_HUPCF });
    t.ops.mapPages(0x3000, DATA, 0x1000, 1, RW | (1 << 5)); // IOMMU_PRIV: EL1-only page
    streamToBank(f.r, 0, 1, 0, 1); // PRIVCFG DEFAULT
    streamToBank(f.r, 1, 2, 0, 1, 3 << 24); // PRIVCFG PRIV
    expect(f.smmu.port.translate(1, -1, 0x3000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.smmu.port.translate(2, -1, 0x3000, ACCESS_READ, out)).toBe(PORT_OK);
  });

  it('write order matters: S2CR before SMR (a valid SMR with a FAULT S2CR blocks the stream)', () => {
    const { smmu, r } = fixture();
    enable(r);
    r.setGr0(GR0_SMR(0), (1 << 31) | 5);
    expect(smmu.port.translate(5, -1, 0, ACCESS_READ, out)).toBe(PORT_ABORT); // reset S2CR: FAULT
    r.setGr0(GR0_S2CR(0), S2CR_TYPE_BYPASS << 16);
    expect(smmu.port.translate(5, -1, 0, ACCESS_READ, out)).toBe(PORT_BYPASS);
  });
});

describe('SMMUv2 stage-2 and nested context banks', () => {
  it('a stage-2 bank translates IPA -> PA; TLBIVMID needs the global sync', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s2', 40, 48);
    enable(f.r);
    s2Bank(f.r, 0, t, { vmid: 7 });
    streamToBank(f.r, 0, 8, 0, 0);
    t.ops.mapPages(0x10_0000, DATA, 0x1000, 1, RW);
    expect(f.smmu.port.translate(8, -1, 0x10_0010, ACCESS_WRITE, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x10);
    t.ops.unmapPages(0x10_0000, 0x1000, 1, null);
    f.r.setGr0(GR0.TLBIVMID, 7);
    f.r.setCb(0, CB.TLBSYNC, 0); // the wrong sync: the global operation is still pending
    expect(f.smmu.port.translate(8, -1, 0x10_0010, ACCESS_READ, out)).toBe(PORT_OK);
    f.r.setGr0(GR0.sTLBGSYNC, 0);
    expect(f.smmu.port.translate(8, -1, 0x10_0010, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.r.cb(0, CB.FSR) & FSR_TF).toBe(FSR_TF);
  });

  it('TLBIIPAS2 + bank sync drops one IPA', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s2', 40, 48);
    enable(f.r);
    s2Bank(f.r, 0, t, { vmid: 7 });
    streamToBank(f.r, 0, 8, 0, 0);
    t.ops.mapPages(0x20_0000, DATA, 0x1000, 2, RW);
    f.smmu.port.translate(8, -1, 0x20_0000, ACCESS_READ, out);
    f.smmu.port.translate(8, -1, 0x20_1000, ACCESS_READ, out);
    t.ops.unmapPages(0x20_0000, 0x1000, 2, null);
    f.r.setCb64(0, CB.TLBIIPAS2, 0x20_0000 / 4096);
    f.r.setCb(0, CB.TLBSYNC, 0);
    expect(f.smmu.port.translate(8, -1, 0x20_0000, ACCESS_READ, out)).toBe(PORT_FAULT);
    f.r.setCb(0, CB.FSR, -1);
    expect(f.smmu.port.translate(8, -1, 0x20_1000, ACCESS_READ, out)).toBe(PORT_OK);
  });

  it('a nested bank walks stage 1 in IPA space; a stage-2 fault on a table fetch lands in the stage-2 bank with S1CBNDX and PTWF', () => {
    const f = fixture();
    const s2 = table(f.m, 'arm-64-lpae-s2', 40, 48);
    const s1 = table(f.m, 'arm-64-lpae-s1', 48, 40);
    enable(f.r);
    s2Bank(f.r, 0, s2, { vmid: 3 });
    s1Bank(f.r, 6, s1, { s2cb: 0 });
    streamToBank(f.r, 0, 0x60, 0, 6);
    // the stage-1 tables sit in memory the stage-2 maps 1:1; the data page maps IPA DATA -> PA DATA+64K
    s1.ops.mapPages(0x5000, DATA, 0x1000, 1, RW);
    // the tables come from the start of the kernel's page pool: stage 2 maps its first 128M 1:1,
    // and not the data IPA
    const pool = f.m.mem.regions()[0]!;
    s2.ops.mapPages(pool.base, pool.base, 0x20_0000, 64, RW);
    expect(f.smmu.port.translate(0x60, -1, 0x5008, ACCESS_READ, out)).toBe(PORT_FAULT);
    // the fault: stage 2 (the output IPA has no stage-2 mapping), recorded in bank 0
    expect(f.r.cb(0, CB.FSR) & FSR_TF).toBe(FSR_TF);
    expect(f.r.cb(6, CB.FSR)).toBe(0);
    const syn = decodeFsynr0(f.r.cb(0, CB.FSYNR0));
    expect(syn.fields.S1CBNDX).toBe(6);
    expect(syn.flags).not.toContain('PTWF');
    expect(f.r.cb64(0, CB.IPAFAR)).toBe(DATA + 8);
    f.r.setCb(0, CB.FSR, -1);
    s2.ops.mapPages(DATA, DATA + 0x1_0000, 0x1000, 1, RW);
    expect(f.smmu.port.translate(0x60, -1, 0x5008, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x1_0008);
    // stage-2 entries of the table walk: drop the whole pool from stage 2 and the VMID from the TLB
    s2.ops.unmapPages(pool.base, 0x20_0000, 64, null);
    f.r.setGr0(GR0.TLBIVMID, 3);
    f.r.setGr0(GR0.sTLBGSYNC, 0);
    expect(f.smmu.port.translate(0x60, -1, 0x5008, ACCESS_READ, out)).toBe(PORT_FAULT);
    const syn2 = decodeFsynr0(f.r.cb(0, CB.FSYNR0));
    expect(syn2.flags).toContain('PTWF');
    expect(syn2.fields.S1CBNDX).toBe(6);
  });
});

describe('SMMUv1: AArch32 long-descriptor formats', () => {
  it('stage 1 with the ARM_32_LPAE_S1 table (TTBCR.EAE, 32-bit input, 40-bit output)', () => {
    const f = fixture({ compatible: 'arm,smmu-v1', numContextBanks: 8 });
    expect(f.smmu.features.hasCba2r).toBe(false);
    const t = table(f.m, 'arm-64-lpae-s1', 32, 40);
    enable(f.r);
    s1Bank(f.r, 1, t, { va64: false, asid: 9 });
    streamToBank(f.r, 0, 3, 0, 1);
    t.ops.mapPages(0xffff_f000, DATA, 0x1000, 1, RW);
    t.ops.mapPages(0x20_0000, DATA + 0x20_0000, 0x20_0000, 1, RW); // a 2M block
    expect(f.smmu.port.translate(3, -1, 0xffff_f004, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 4);
    expect(f.smmu.port.translate(3, -1, 0x21_2345, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x21_2345);
    expect(out.pageShift).toBe(21);
    // beyond 32 bits: a translation fault
    expect(f.smmu.port.translate(3, -1, 2 ** 32, ACCESS_READ, out)).toBe(PORT_FAULT);
    // AArch32 TLBIVA: (VA & ~0xfff) | ASID, 32-bit
    f.r.setCb(1, CB.FSR, -1);
    t.ops.unmapPages(0xffff_f000, 0x1000, 1, null);
    expect(f.smmu.port.translate(3, -1, 0xffff_f000, ACCESS_READ, out)).toBe(PORT_OK);
    f.r.setCb(1, CB.TLBIVA, (0xffff_f000 | 9) >>> 0);
    f.r.setCb(1, CB.TLBSYNC, 0);
    expect(f.smmu.port.translate(3, -1, 0xffff_f000, ACCESS_READ, out)).toBe(PORT_FAULT);
  });

  it('stage 1 TTBR1 range: T1SZ splits the 32-bit space, addresses between the ranges fault', () => {
    const f = fixture({ compatible: 'arm,mmu-400', numContextBanks: 8 });
    const t0 = table(f.m, 'arm-64-lpae-s1', 32, 40);
    const t1 = table(f.m, 'arm-64-lpae-s1', 30, 40); // TTBR1: a 30-bit range (T1SZ = 2), level-2 start
    enable(f.r);
    s1Bank(f.r, 0, t0, { va64: false, asid: 1 });
    // T0SZ = 1 (TTBR0: 0..2G), T1SZ = 2 (TTBR1: top 1G), EPD1 clear
    f.r.setCb(0, CB.TCR, (1 << 31) | (2 << 16) | 1);
    const c1 = t1.cfg.armLpaeS1Cfg!;
    f.r.setCb64(0, CB.TTBR1, c1.ttbr, 1 << 16);
    streamToBank(f.r, 0, 1, 0, 0);
    t0.ops.mapPages(0x1000, DATA, 0x1000, 1, RW);
    t1.ops.mapPages(0x1000, DATA + 0x5000, 0x1000, 1, RW); // the walk takes VA bits 29:0
    expect(f.smmu.port.translate(1, -1, 0x1000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA);
    expect(f.smmu.port.translate(1, -1, 0xc000_1000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x5000);
    expect(f.smmu.port.translate(1, -1, 0x9000_0000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(decodeFsynr0(f.r.cb(0, CB.FSYNR0)).fields.PLVL).toBe(1);
  });

  it('stage 2 with the ARM_32_LPAE_S2 table (AArch32 VTCR, 40-bit IPA, concatenated level-1 start)', () => {
    const f = fixture({ compatible: 'arm,smmu-v1', numContextBanks: 8 });
    const t = table(f.m, 'arm-64-lpae-s2', 40, 40);
    enable(f.r);
    s2Bank(f.r, 2, t, { va64: false, vmid: 5 });
    streamToBank(f.r, 0, 4, 0, 2);
    t.ops.mapPages(0x80_0000_0000 - 0x1000, DATA, 0x1000, 1, RW); // the top page of the 40-bit IPA space
    expect(f.smmu.port.translate(4, -1, 0x80_0000_0000 - 0x1000 + 0x10, ACCESS_WRITE, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x10);
    expect(f.smmu.port.translate(4, -1, 0x100_0000_0000, ACCESS_READ, out)).toBe(PORT_FAULT); // beyond 40 bits
  });

  it('a stage-1-only SMMUv1 has no stage-2 banks: a stage-2 CBAR is an invalid context', () => {
    const f = fixture({ compatible: 'arm,smmu-v1', numContextBanks: 4, stage2: false });
    expect(getField(f.r.gr0(GR0.ID0), ID0.S2TS)).toBe(0);
    expect(getField(f.r.gr0(GR0.ID0), ID0.NTS)).toBe(0);
    enable(f.r);
    f.r.setGr1(GR1_CBAR(0), 0); // S2_TRANS
    f.r.setCb(0, CB.SCTLR, SCTLR_LINUX_S1);
    streamToBank(f.r, 0, 1, 0, 0);
    expect(f.smmu.port.translate(1, -1, 0, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.r.gr0(GR0.sGFSR)).toBe(1);
  });

  it('a stage-2-only SMMUv1 reports every bank as stage-2 only and refuses stage-1 types', () => {
    const f = fixture({ compatible: 'arm,mmu-401', numContextBanks: 4, stage1: false });
    expect(getField(f.r.gr0(GR0.ID0), ID0.S1TS)).toBe(0);
    expect(getField(f.r.gr0(GR0.ID1), ID1.NUMS2CB)).toBe(4);
    enable(f.r);
    f.r.setGr1(GR1_CBAR(0), 1 << 16);
    f.r.setCb(0, CB.SCTLR, SCTLR_LINUX_S1);
    streamToBank(f.r, 0, 1, 0, 0);
    expect(f.smmu.port.translate(1, -1, 0, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.r.gr0(GR0.sGFSR)).toBe(1);
  });

  it('SMMUv1 context interrupts follow CBAR.IRPTNDX, and banks sharing a line OR together', () => {
    const f = fixture({ compatible: 'arm,smmu-v1', numContextBanks: 4 });
    const t = table(f.m, 'arm-64-lpae-s1', 32, 40);
    enable(f.r);
    for (const n of [0, 1]) {
      s1Bank(f.r, n, t, { va64: false, asid: n });
      f.r.setGr1(GR1_CBAR(n), f.r.gr1(GR1_CBAR(n)) | (2 << 24)); // both on context interrupt 2
      streamToBank(f.r, n, n, 0, n);
    }
    f.smmu.port.translate(0, -1, 0x1000, ACCESS_READ, out);
    f.smmu.port.translate(1, -1, 0x1000, ACCESS_READ, out);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 2)).toBe(true);
    f.r.setCb(0, CB.FSR, -1);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 2)).toBe(true); // bank 1 still asserts it
    f.r.setCb(1, CB.FSR, -1);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 2)).toBe(false);
    // moving a faulting bank to another interrupt moves its assertion
    f.smmu.port.translate(0, -1, 0x1000, ACCESS_READ, out);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 2)).toBe(true);
    f.r.setGr1(GR1_CBAR(0), (f.r.gr1(GR1_CBAR(0)) & 0xffffff) | (3 << 24));
    expect(lineHigh(f.m, CTX_IRQ_BASE + 2)).toBe(false);
    expect(lineHigh(f.m, CTX_IRQ_BASE + 3)).toBe(true);
  });
});

describe('SMMUv2 address translation operations', () => {
  it('ATS1PR puts PA in PAR (F = 0), or F = 1 with the fault, and records nothing in FSR', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 0, t);
    t.ops.mapPages(0x6000, DATA + 0x3000, 0x1000, 1, RW);
    f.r.setCb64(0, CB.ATS1PR, 0x6000);
    expect(f.r.cb(0, CB.ATSR) & 1).toBe(0);
    expect(f.r.cb64(0, CB.PAR)).toBe(DATA + 0x3000);
    f.r.setCb64(0, CB.ATS1PR, 0x9000);
    expect(f.r.cb(0, CB.PAR) & 1).toBe(1);
    expect(f.r.cb(0, CB.FSR)).toBe(0);
  });
});
