// The implementations Linux's arm-smmu driver knows, by compatible string: their ID registers,
// and the integration behaviour a driver has to cope with (MMU-500 sACR / ACTLR, the Marvell
// 64-bit access erratum, Qualcomm firmware and registers, NVIDIA's interleaved instances).

import { describe, expect, it } from 'vitest';
import {
  CB,
  FSR_TF,
  GR0,
  GR0_S2CR,
  getField,
  ID0,
  ID1,
  ID2,
  ID7,
  QCOM_GFX_PRR_CFG_LADDR,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
} from '../../../src/arch/smmuv2/regs.ts';
import { PlatformDmaMaster } from '../../../src/hw/devices/platform-master.ts';
import {
  ACCESS_READ,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PortResult,
} from '../../../src/hw/smmu-common/port.ts';
import { SMMUV2_COMPATIBLES } from '../../../src/hw/smmuv2/features.ts';
import { SmmuV2Group } from '../../../src/hw/smmuv2/group.ts';
import { Machine } from '../../../src/platform/machine.ts';
import {
  CTX_IRQ_BASE,
  DATA,
  enable,
  fixture,
  GLOBAL_IRQ,
  lineHigh,
  Regs,
  RW,
  SCTLR_CFCFG,
  s1Bank,
  streamToBank,
  table,
} from './helpers.ts';

const out = new PortResult();

describe('SMMUv2 variants by compatible', () => {
  it('every compatible builds, and its ID registers say what Linux expects of it', () => {
    for (const compatible of SMMUV2_COMPATIBLES) {
      const { r, smmu } = fixture({ compatible, numContextBanks: 8 });
      const id0 = r.gr0(GR0.ID0);
      const id1 = r.gr0(GR0.ID1);
      const id2 = r.gr0(GR0.ID2);
      expect(getField(id1, ID1.NUMCB)).toBe(8);
      expect(getField(id0, ID0.SMS)).toBe(1);
      const v1 = compatible === 'arm,smmu-v1' || compatible === 'arm,mmu-400' || compatible === 'arm,mmu-401';
      // SMMUv1 has no UBS / PTFS in ID2; Linux takes va_size = ipa_size and AArch32 formats
      expect(getField(id2, ID2.PTFS_4K)).toBe(v1 ? 0 : 1);
      expect(getField(id0, ID0.PTFS_NO_AARCH32)).toBe(0);
      expect(getField(r.gr0(GR0.ID7), ID7.MAJOR)).toBe(compatible.endsWith('-500') ? 2 : 0);
      // the window: 2 * NUMPAGE pages
      expect(smmu.features.windowSize).toBe(2 * smmu.features.numPage * 2 ** smmu.features.pgshift);
    }
  });

  it('arm,mmu-401 has 64 KiB register pages and CBA2R (Linux ARM_SMMU_V1_64K: AArch64 64K contexts)', () => {
    const f = fixture({ compatible: 'arm,mmu-401', numContextBanks: 4 });
    expect(getField(f.r.gr0(GR0.ID1), ID1.PAGESIZE)).toBe(1);
    expect(f.smmu.features.hasCba2r).toBe(true);
    expect(f.smmu.features.g64k).toBe(true);
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48, 0x10000 + 0x2000_0000);
    enable(f.r);
    s1Bank(f.r, 1, t);
    streamToBank(f.r, 0, 5, 0, 1);
    t.ops.mapPages(0x30000, DATA, 0x10000, 1, RW);
    expect(f.smmu.port.translate(5, -1, 0x3_1234, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x1234);
  });

  it('a 4K granule on an MMU-500 works; the 16K granule (not implemented) faults', () => {
    const f = fixture();
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48, 0x4000 + 0x200_0000);
    enable(f.r);
    s1Bank(f.r, 0, t);
    streamToBank(f.r, 0, 1, 0, 0);
    t.ops.mapPages(0x4000, DATA, 0x4000, 1, RW);
    expect(f.smmu.port.translate(1, -1, 0x4000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(f.r.cb(0, CB.FSR) & FSR_TF).toBe(FSR_TF);
  });
});

describe('Arm MMU-500 integration', () => {
  it('ACTLR writes do not stick while sACR.CACHE_LOCK is set (r2+), as arm_mmu500_reset expects', () => {
    const { r } = fixture({ compatible: 'arm,mmu-500' });
    expect(r.cb(0, CB.ACTLR)).toBe(3); // CMTLB | CPRE
    r.setCb(0, CB.ACTLR, 1); // clear CPRE
    expect(r.cb(0, CB.ACTLR)).toBe(3);
    const acr = r.gr0(GR0.sACR);
    expect(acr & (1 << 26)).not.toBe(0);
    r.setGr0(GR0.sACR, (acr & ~(1 << 26)) | (1 << 8) | (1 << 10));
    r.setCb(0, CB.ACTLR, 1);
    expect(r.cb(0, CB.ACTLR)).toBe(1);
  });
});

describe('Marvell AP806 (erratum 582743)', () => {
  it('a 64-bit register write loses its high word; two 32-bit writes (hi then lo) work', () => {
    const { r } = fixture({ compatible: 'marvell,ap806-smmu-500' });
    r.setCb64(0, CB.TTBR0, 0x1234_5000, 0x0003_0000);
    expect(r.cb(0, CB.TTBR0 + 4)).toBe(0);
    expect(r.cb(0, CB.TTBR0)).toBe(0x1234_5000);
    r.setCb(0, CB.TTBR0 + 4, 0x0003_0000);
    r.setCb(0, CB.TTBR0, 0x1234_5000);
    expect(r.cb(0, CB.TTBR0 + 4)).toBe(0x0003_0000);
    expect(r.cb64(0, CB.TTBR0)).toBe(0x1234_5000); // a 64-bit read reads zero above
  });

  it('the same 64-bit access on a plain MMU-500 reaches both words', () => {
    const { r } = fixture({ compatible: 'arm,mmu-500' });
    r.setCb64(0, CB.TTBR0, 0x1234_5000, 0x0003_0000);
    expect(r.cb64(0, CB.TTBR0)).toBe(0x3_0000 * 2 ** 32 + 0x1234_5000);
  });
});

describe('Qualcomm', () => {
  it('firmware that forbids S2CR bypass keeps the previous TYPE (what qcom_smmu_cfg_probe reads back)', () => {
    const { r } = fixture({ compatible: 'qcom,smmu-500', firmwareBlocksBypass: true });
    r.setGr0(GR0_S2CR(47), S2CR_TYPE_BYPASS << 16);
    expect(getField(r.gr0(GR0_S2CR(47)), { lsb: 16, width: 2 })).toBe(S2CR_TYPE_FAULT);
    const plain = fixture({ compatible: 'qcom,smmu-500' });
    plain.r.setGr0(GR0_S2CR(47), S2CR_TYPE_BYPASS << 16);
    expect(getField(plain.r.gr0(GR0_S2CR(47)), { lsb: 16, width: 2 })).toBe(S2CR_TYPE_BYPASS);
  });

  it('GFX_PRR_CFG_LADDR holds what is written', () => {
    const { m, smmu } = fixture({ compatible: 'qcom,smmu-500' });
    m.mmio.write32(smmu.base + QCOM_GFX_PRR_CFG_LADDR, 0xabc000);
    expect(m.mmio.read32(smmu.base + QCOM_GFX_PRR_CFG_LADDR)).toBe(0xabc000);
  });

  it('Adreno: FSYNR1 carries the implementation-defined client id of the faulting transaction', () => {
    const f = fixture({ compatible: 'qcom,smmu-v2', fsynr1: (sid) => (sid === 0 ? 0x15 : 0) });
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 0, t, { sctlrExtra: SCTLR_CFCFG | (1 << 8) });
    streamToBank(f.r, 0, 0, 0, 0);
    f.smmu.port.translate(0, -1, 0x1000, ACCESS_READ, out);
    expect(f.r.cb(0, CB.FSYNR1) & 0xff).toBe(0x15);
  });
});

describe('NVIDIA Tegra (nvidia,smmu-500): two instances programmed together', () => {
  const BASES = [0x1200_0000, 0x1100_0000];
  function group() {
    const m = new Machine({ seed: 1 });
    const g = new SmmuV2Group(m, {
      bases: BASES,
      numContextBanks: 4,
      globalIrqs: [GLOBAL_IRQ],
      contextIrqs: [CTX_IRQ_BASE, CTX_IRQ_BASE + 1, CTX_IRQ_BASE + 2, CTX_IRQ_BASE + 3],
    });
    const regs = g.instances.map((s) => new Regs(m, s));
    const t = table(m, 'arm-64-lpae-s1', 48, 48);
    t.ops.mapPages(0x10_0000, DATA, 0x1000, 2, RW);
    return { m, g, regs, t };
  }

  it('interleaved IOVAs go through both instances: programming only the first leaves every other page untranslated', () => {
    const { g, regs, t } = group();
    enable(regs[0]!);
    s1Bank(regs[0]!, 1, t);
    streamToBank(regs[0]!, 0, 9, 0, 1);
    expect(g.port.translate(9, -1, 0x10_0000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(g.port.translate(9, -1, 0x10_1000, ACCESS_READ, out)).toBe(PORT_BYPASS); // instance 1: CLIENTPD
    for (const r of regs.slice(1)) {
      enable(r);
      s1Bank(r, 1, t);
      streamToBank(r, 0, 9, 0, 1);
    }
    expect(g.port.translate(9, -1, 0x10_1000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(DATA + 0x1000);
  });

  it('their interrupts share the lines; a stall on either instance reaches the device through the group', () => {
    const { m, g, regs, t } = group();
    for (const r of regs) {
      enable(r);
      s1Bank(r, 1, t, { sctlrExtra: SCTLR_CFCFG });
      streamToBank(r, 0, 9, 0, 1);
    }
    const dev = new PlatformDmaMaster(g, 9);
    const op = dev.read(0x20_1000, 4); // an odd page: instance 1
    m.sched.runForSync(1000);
    expect(op.stalled).toBe(true);
    expect(regs[0]!.cb(1, CB.FSR)).toBe(0);
    expect(lineHigh(m, CTX_IRQ_BASE + 1)).toBe(true);
    g.port.translate(9, -1, 0x40_0000, ACCESS_READ, out); // instance 0 faults too (stalls)
    regs[1]!.setCb(1, CB.FSR, -1);
    regs[1]!.setCb(1, CB.RESUME, 1);
    m.sched.runForSync(1000);
    expect(op.state).toBe('failed');
    expect(lineHigh(m, CTX_IRQ_BASE + 1)).toBe(true); // instance 0 still asserts it
  });
});
