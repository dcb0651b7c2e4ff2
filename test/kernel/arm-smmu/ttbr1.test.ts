// Split page tables for the Adreno GPU (qcom_adreno_smmu_init_context / set_ttbr0_cfg): the GPU's
// domain in TTBR1 (sign-extended upper-half IOVAs, negative Numbers in the kernel model), a
// per-process table installed in TTBR0, the SMMU sign-extending the GPU's 49-bit addresses
// (TCR2.SEP = UPSTREAM), and msm8996, which cannot split.

import { describe, expect, it } from 'vitest';
import { CB, TCR, TCR2 } from '../../../src/arch/smmuv2/regs.ts';
import { ArmSmmuV2Iommu } from '../../../src/kernel/iommu/arm-smmu/iommu.ts';
import { adrenoSmmuPriv } from '../../../src/kernel/iommu/arm-smmu/qcom.ts';
import {
  type IommuDomain,
  iommuFlushIotlbAll,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
} from '../../../src/kernel/iommu/domain.ts';
import { allocIoPgtableOps } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import {
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  type IoPgtableCfg,
  machinePgtableEnv,
} from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { inTask } from '../../integration/stack-helpers.ts';
import { attachNew, bootV2, dmaRead, SMMU_BASE, type V2Stack } from './helpers.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

async function gpuStack(soc = 'qcom,sdm845-smmu-v2') {
  const s = await bootV2({
    hw: { compatible: 'qcom,smmu-v2', numContextBanks: 4 },
    extraCompatible: [soc, 'qcom,adreno-smmu'],
    masters: [{ cells: [0], canStall: false, compatible: ['qcom,adreno-gmu'] }],
    kernel: { armSmmu: { resumeStyle: 'handler' } },
  });
  const gpu = s.devs[0]!;
  const dom = await attachNew(s, gpu);
  const priv = adrenoSmmuPriv(gpu)!;
  return { s, gpu, dom, priv };
}

function cbReg(s: V2Stack, off: number): number {
  return s.m.mem.read32(SMMU_BASE + s.hw.features.numPage * 4096 + off) >>> 0;
}

/** A per-process table as msm_iommu_pagetable_create makes it: the TTBR1 cfg without the quirk. */
function processTable(s: V2Stack, ttbr1: IoPgtableCfg) {
  const cfg: IoPgtableCfg = { ...ttbr1, quirks: ttbr1.quirks & ~IO_PGTABLE_QUIRK_ARM_TTBR1, tlb: null };
  const ops = allocIoPgtableOps('arm-64-lpae-s1', cfg, null, machinePgtableEnv(s.m))!;
  return { cfg, ops };
}

describe('Adreno split page tables (IO_PGTABLE_QUIRK_ARM_TTBR1)', () => {
  it('the GPU domain is the TTBR1 half: EPD0 set, EPD1 clear, TCR2.SEP upstream, the table in TTBR1', async () => {
    const { s, dom, priv } = await gpuStack();
    const tcr = cbReg(s, CB.TCR);
    expect((tcr >>> TCR.EPD0.lsb) & 1).toBe(1);
    expect((tcr >>> TCR.EPD1.lsb) & 1).toBe(0);
    expect((tcr >>> TCR.T1SZ.lsb) & 0x3f).toBe(16);
    expect((tcr >>> TCR.TG1.lsb) & 3).toBe(2); // 4K in the TG1 encoding
    expect((cbReg(s, CB.TCR2) >>> TCR2.SEP.lsb) & 7).toBe(7);
    const t1 = priv.getTtbr1Cfg()!;
    expect(t1.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1).not.toBe(0);
    expect(cbReg(s, CB.TTBR1)).toBe(t1.armLpaeS1Cfg!.ttbr >>> 0);
    expect(cbReg(s, CB.TTBR0)).toBe(0);
    expect(dom.geometry).toMatchObject({ apertureStart: -(2 ** 48), apertureEnd: -1 });
    // the kernel maps at the sign-extended IOVA; lower-half IOVAs are refused
    const pa = s.m.pages.alloc(0, 'test');
    s.m.mem.write32(pa, 0xc0ffee);
    expect(iommuMap(dom, -(2 ** 48) + 0x10_0000, pa, 0x1000, RW)).toBe(0);
    expect(iommuMap(dom, 0x10_0000, pa, 0x1000, RW)).toBe(-34);
    expect(iommuIovaToPhys(dom, -(2 ** 48) + 0x10_0010)).toBe(pa + 0x10);
    // the GPU issues the 49-bit form; the SMMU sign-extends it into the TTBR1 half
    const port = s.ports[0]!;
    const ok = await dmaRead(s, port, 2 ** 48 + 0x10_0000, 4);
    expect(ok.state).toBe('done');
    expect(new DataView(ok.data!.buffer).getUint32(0, true)).toBe(0xc0ffee);
    // the lower half (TTBR0) is disabled: a fault, and FAR holds what was issued
    const bad = await dmaRead(s, port, 0x10_0000, 4);
    expect(bad.state).toBe('failed');
    // an address wider than the 49-bit bus is not sign-extended: out of range
    expect((await dmaRead(s, port, 2 ** 49 + 2 ** 48 + 0x10_0000, 4)).state).toBe('failed');
  });

  it('set_ttbr0_cfg installs a per-process table in TTBR0 with the context ASID, and null disables it', async () => {
    const { s, dom, priv } = await gpuStack();
    const port = s.ports[0]!;
    const proc = processTable(s, priv.getTtbr1Cfg()!);
    const pa = s.m.pages.alloc(0, 'test');
    s.m.mem.write32(pa + 0x40, 0xabcd);
    expect(proc.ops.mapPages(0x1_0000_0000, pa, 0x1000, 1, RW)).toBe(0x1000);
    expect(priv.setTtbr0Cfg(null)).toBe(-22); // already disabled
    expect(priv.setTtbr0Cfg(priv.getTtbr1Cfg())).toBe(-22); // a TTBR1 table is no TTBR0 one
    expect(priv.setTtbr0Cfg(proc.cfg)).toBe(0);
    const tcr = cbReg(s, CB.TCR);
    expect((tcr >>> TCR.EPD0.lsb) & 1).toBe(0);
    expect((tcr >>> TCR.EPD1.lsb) & 1).toBe(0);
    expect(tcr & 0x3f).toBe(16); // T0SZ
    expect(cbReg(s, CB.TTBR0)).toBe(proc.cfg.armLpaeS1Cfg!.ttbr >>> 0);
    expect(cbReg(s, CB.TTBR0 + 4) >>> 16).toBe(priv.cbndx); // the context's ASID
    expect(priv.setTtbr0Cfg(proc.cfg)).toBe(-22); // already enabled
    const r = await dmaRead(s, port, 0x1_0000_0040, 4);
    expect(r.state).toBe('done');
    expect(new DataView(r.data!.buffer).getUint32(0, true)).toBe(0xabcd);
    // disable again: EPD0, TTBR0 holds only the ASID; after a TLB flush the address faults
    expect(priv.setTtbr0Cfg(null)).toBe(0);
    expect((cbReg(s, CB.TCR) >>> TCR.EPD0.lsb) & 1).toBe(1);
    expect(cbReg(s, CB.TTBR0)).toBe(0);
    await inTask(s.m, () => iommuFlushIotlbAll(dom as IommuDomain));
    expect((await dmaRead(s, port, 0x1_0000_0040, 4)).state).toBe('failed');
    expect(priv.setTtbr0Cfg(null)).toBe(-22);
  });

  it('msm8996 cannot split (qcom_adreno_can_do_ttbr1): one TTBR0 table, set_ttbr0_cfg -EINVAL', async () => {
    const { s, dom, priv } = await gpuStack('qcom,msm8996-smmu-v2');
    expect((cbReg(s, CB.TCR) >>> TCR.EPD1.lsb) & 1).toBe(1);
    expect(priv.getTtbr1Cfg()!.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1).toBe(0);
    expect(dom.geometry).toMatchObject({ apertureStart: 0, apertureEnd: 2 ** 48 - 1 });
    const proc = processTable(s, priv.getTtbr1Cfg()!);
    expect(priv.setTtbr0Cfg(proc.cfg)).toBe(-22);
    expect(priv.setTtbr0Cfg(null)).toBe(-22);
  });

  it('a non-GPU master on the same SMMU gets no split tables', async () => {
    const s = await bootV2({
      hw: { compatible: 'qcom,smmu-v2', numContextBanks: 4 },
      extraCompatible: ['qcom,sdm845-smmu-v2', 'qcom,adreno-smmu'],
      masters: [{ cells: [4], canStall: false }],
    });
    const dom = await attachNew(s, s.devs[0]!);
    expect(dom.geometry.apertureStart).toBe(0);
  });
});

describe('iommu_map at upper-half IOVAs', () => {
  it('uses 2M blocks where the sign-extended address and the PA are aligned alike', async () => {
    const { s, dom } = await gpuStack();
    const base = -(2 ** 48) + 0x4000_0000;
    const pa = 0x8000_0000;
    // 4K pages up to the 2M boundary, then a block
    expect(iommuMap(dom, base - 0x1000, pa - 0x1000, 0x20_1000, RW)).toBe(0);
    expect(iommuIovaToPhys(dom, base + 0x12_3456)).toBe(pa + 0x12_3456);
    expect(iommuIovaToPhys(dom, base - 0x1000 + 0x10)).toBe(pa - 0x1000 + 0x10);
    expect(ArmSmmuV2Iommu.domainOf(dom)!.pgt!.lookup(base + 0x1000)!.level).toBe(2); // a 2M block
    expect(s.m.bugs).toEqual([]);
  });
});

describe('TLB maintenance of upper-half IOVAs, as Linux does it', () => {
  it('TLBIVA(L) of a sign-extended IOVA carries VA bits 63:60 into the ASID field, so the GPU context keeps the entry', async () => {
    // arm_smmu_tlb_inv_range_s1: iova >>= 12; iova |= asid << 48 -- the upper half's ones at
    // bits 51:48 are ORed into the ASID (bits 63:48 of TLBIVA, VA[55:12] in 43:0). The GPU's ASID
    // is its bank's, 0, so the invalidation names ASID 0xf and the walk cache of ASID 0 survives
    // the unmap until something invalidates by ASID (msm's pagetable switch, flush_iotlb_all).
    const { s, dom } = await gpuStack();
    const port = s.ports[0]!;
    const pa = s.m.pages.alloc(0, 'test');
    expect(iommuMap(dom, -(2 ** 48) + 0x10_0000, pa, 0x1000, RW)).toBe(0);
    expect((await dmaRead(s, port, 2 ** 48 + 0x10_0000, 4)).state).toBe('done');
    const n = await inTask(s.m, () => iommuUnmap(dom as IommuDomain, -(2 ** 48) + 0x10_0000, 0x1000));
    expect(n).toBe(0x1000);
    expect(s.hw.counters.tlbiOps).toBeGreaterThan(0);
    // the stale translation still serves the GPU: a read of the unmapped page completes
    expect((await dmaRead(s, port, 2 ** 48 + 0x10_0000, 4)).state).toBe('done');
    // a TLBIASID of the context (iommu_flush_iotlb_all) removes it
    await inTask(s.m, () => iommuFlushIotlbAll(dom as IommuDomain));
    expect((await dmaRead(s, port, 2 ** 48 + 0x10_0000, 4)).state).toBe('failed');
  });
});
