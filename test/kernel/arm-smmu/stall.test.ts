// Stall on fault through the arm-smmu driver (Qualcomm Adreno implementation): both of Linux's
// resume styles (the handler resumes: v6.16+, -EAGAIN retries; the client driver resumes later:
// v5.14..v6.15 resume_translation), the device fault API (a page response resumes or
// terminates), a second context bank faulting at the same time, a storm of faults (counted, the
// print rate-limited), and the device going away while its transaction is stalled.

import { describe, expect, it } from 'vitest';
import { CB, SCTLR } from '../../../src/arch/smmuv2/regs.ts';
import { PORT_FAULT } from '../../../src/hw/devices/platform-master.ts';
import { ArmSmmuV2Iommu } from '../../../src/kernel/iommu/arm-smmu/iommu.ts';
import { adrenoSmmuPriv } from '../../../src/kernel/iommu/arm-smmu/qcom.ts';
import type { ArmSmmuResumeStyle } from '../../../src/kernel/iommu/arm-smmu/smmu.ts';
import { type IommuDomain, iommuMap } from '../../../src/kernel/iommu/domain.ts';
import { IOMMU_PAGE_RESP_SUCCESS } from '../../../src/kernel/iommu/fault/fault.ts';
import { iommuSetFaultHandler } from '../../../src/kernel/iommu/fault/report.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { inTask } from '../../integration/stack-helpers.ts';
import { attachNew, bootV2, SMMU_BASE, type V2Stack } from './helpers.ts';

/**
 * The GPU's domain has split page tables (TTBR1 quirk, sdm845/sm8250): the kernel maps at the
 * sign-extended upper-half IOVA (a negative Number), the GPU issues its 49-bit form (bit 48 set),
 * which the SMMU sign-extends (TCR2.SEP = UPSTREAM).
 */
const BUS = 2 ** 48 + 0x20_0000;
const IOVA = BUS - 2 ** 49;

/** An Adreno-style SMMU: the GPU on SID 0 (bank 0), a second master on SID 4. */
async function adreno(
  style: ArmSmmuResumeStyle,
  compatible: 'qcom,smmu-v2' | 'qcom,smmu-500' = 'qcom,smmu-v2',
  soc = compatible === 'qcom,smmu-v2' ? 'qcom,sdm845-smmu-v2' : 'qcom,sm8250-smmu-500',
) {
  const s = await bootV2({
    hw: { compatible, numContextBanks: 4 },
    extraCompatible: [soc, 'qcom,adreno-smmu'],
    masters: [
      // SID 0 makes it the GPU for the SMMU; a client of qcom's identity list that no driver here
      // claims (a qcom,adreno node would bind the msm-like GPU driver)
      { cells: [0], canStall: true, compatible: ['qcom,adreno-gmu'] },
      { cells: [4], canStall: false },
    ],
    kernel: { armSmmu: { resumeStyle: style } },
  });
  const gpu = s.devs[0]!;
  const dom = await attachNew(s, gpu);
  const priv = adrenoSmmuPriv(gpu);
  if (priv === null) throw new Error('no adreno_smmu_priv');
  priv.setStall(true);
  return { s, gpu, dom, priv };
}

function sctlr(s: V2Stack, idx: number): number {
  return s.m.mem.read32(SMMU_BASE + (s.hw.features.numPage + idx) * 4096 + CB.SCTLR) >>> 0;
}

/** Start a GPU read of an unmapped page; run until the SMMU holds it. */
async function stallRead(s: V2Stack, port = 0, iova = BUS) {
  const op = s.ports[port]!.read(iova, 64);
  await s.m.sched.runUntil(() => s.ports[port]!.stalledCount > 0 || op.state !== 'running');
  return op;
}

async function finish(s: V2Stack, op: { state: string }) {
  await s.m.sched.runUntil(() => op.state !== 'running');
  await s.m.sched.runUntilIdle();
}

describe('arm-smmu stall on fault (Qualcomm Adreno)', () => {
  it('the GPU gets bank 0, SCTLR has HUPCF, and set_stall(true) sets CFCFG at once (v6.16+)', async () => {
    const { s, dom } = await adreno('handler');
    expect(ArmSmmuV2Iommu.domainOf(dom)!.cfg!.cbndx).toBe(0);
    const v = sctlr(s, 0);
    expect((v >>> SCTLR.HUPCF.lsb) & 1).toBe(1);
    expect((v >>> SCTLR.CFCFG.lsb) & 1).toBe(1);
  });

  it('set_ttbr0_cfg needs split page tables (TCR.EPD1 clear): without the TTBR1 quirk (msm8996) it is -EINVAL', async () => {
    const { s, priv } = await adreno('handler', 'qcom,smmu-v2', 'qcom,msm8996-smmu-v2');
    const tcr = s.m.mem.read32(SMMU_BASE + s.hw.features.numPage * 4096 + CB.TCR) >>> 0;
    expect((tcr >>> 23) & 1).toBe(1); // EPD1
    expect(priv.setTtbr0Cfg(null)).toBe(-22);
    expect(priv.setTtbr0Cfg(priv.getTtbr1Cfg())).toBe(-22);
  });

  it('v6.16+: the handler maps the page and returns -EAGAIN: the transaction is retried and completes', async () => {
    const { s, dom } = await adreno('handler');
    const pa = s.m.pages.alloc(0, 'test');
    s.m.mem.write32(pa, 0x5eed);
    const seen: number[] = [];
    iommuSetFaultHandler(dom, (d, _dev, iova) => {
      seen.push(iova);
      return iommuMap(d as IommuDomain, IOVA, pa, 0x1000, IOMMU_READ | IOMMU_WRITE) === 0 ? -11 : -22;
    });
    const op = await stallRead(s);
    await finish(s, op);
    expect(op.state).toBe('done');
    expect(seen).toEqual([IOVA]);
    expect(s.inst.smmu.stats.resumes).toBe(1);
    expect(s.lines().some((l) => l.startsWith('Unhandled context fault'))).toBe(false);
  });

  it('v6.16+: a handler that returns 0 gets the transaction terminated; no handler: printed and terminated', async () => {
    for (const withHandler of [true, false]) {
      const { s, dom } = await adreno('handler');
      if (withHandler) iommuSetFaultHandler(dom, () => 0);
      const op = await stallRead(s);
      await finish(s, op);
      expect(op.state).toBe('failed');
      expect(op.status).toBe(PORT_FAULT);
      expect(s.inst.smmu.stats.terminates).toBe(1);
      const printed = s.lines().filter((l) => l.startsWith('Unhandled context fault'));
      expect(printed.length).toBe(withHandler ? 0 : 1);
      if (!withHandler) {
        expect(printed[0]).toBe(
          'Unhandled context fault: fsr=0x40000002, iova=0xffff000000200000, fsynr=0x0, cbfrsynra=0x0, cb=0',
        );
        expect(s.lines()).toContain('FSR    = 40000002 [SS Format=0 TF], SID=0x0');
        expect(s.lines()).toContain('FSYNR0 = 00000000 [S1CBNDX=0 PLVL=0]');
      }
    }
  });

  it('v5.14..v6.15: the handler leaves it stalled; the GPU driver resumes later (resume_translation)', async () => {
    const { s, dom, priv } = await adreno('driver');
    expect(priv.resumeTranslation).toBeTypeOf('function');
    // before v6.16 set_stall only took effect at the next context-bank write (runtime resume)
    expect((sctlr(s, 0) >>> SCTLR.CFCFG.lsb) & 1).toBe(0);
    s.inst.smmu.runtimeResume();
    expect((sctlr(s, 0) >>> SCTLR.CFCFG.lsb) & 1).toBe(1);
    let faults = 0;
    iommuSetFaultHandler(dom, () => {
      faults++;
      return 0;
    });
    const op = await stallRead(s);
    await s.m.sched.runFor(1_000_000);
    expect(faults).toBe(1);
    expect(op.state).toBe('running');
    expect(s.ports[0]!.stalledCount).toBe(1);
    // the "fault worker": fix the page table, then resume (retry)
    const pa = s.m.pages.alloc(0, 'test');
    iommuMap(dom, IOVA, pa, 0x1000, IOMMU_READ);
    priv.resumeTranslation!(false);
    await finish(s, op);
    expect(op.state).toBe('done');
  });

  it('device fault API: the stall reaches the device handler as a page request; the page response resumes', async () => {
    const { s, gpu, dom } = await adreno('handler');
    const got: Array<{ grpid: number; addr: number }> = [];
    expect(
      s.k.faults.registerDeviceFaultHandler(
        gpu,
        (f) => {
          if (f.type === 2) got.push({ grpid: f.grpid, addr: f.addr });
          return 0;
        },
        null,
      ),
    ).toBe(0);
    let domainCalls = 0;
    iommuSetFaultHandler(dom, () => {
      domainCalls++;
      return 0;
    });
    const op = await stallRead(s);
    await s.m.sched.runFor(1_000_000);
    expect(got).toEqual([{ grpid: 0, addr: IOVA }]);
    expect(domainCalls).toBe(0); // the fault layer took it
    expect(op.state).toBe('running');
    // while it waits, the context interrupt is masked (no storm), FSR is clear
    expect((sctlr(s, 0) >>> SCTLR.CFIE.lsb) & 1).toBe(0);
    const pa = s.m.pages.alloc(0, 'test');
    iommuMap(dom, IOVA, pa, 0x1000, IOMMU_READ);
    const r = await inTask(s.m, () =>
      s.k.faults.pageResponse(gpu, { grpid: 0, code: IOMMU_PAGE_RESP_SUCCESS }),
    );
    expect(r).toBe(0);
    await finish(s, op);
    expect(op.state).toBe('done');
    expect((sctlr(s, 0) >>> SCTLR.CFIE.lsb) & 1).toBe(1);
    expect(s.k.armSmmuFaults[0]!.stats).toMatchObject({ stalls: 1, responses: 1 });
  });

  it('device removed while stalled: its pending fault is answered INVALID and the transaction terminated', async () => {
    const { s, gpu } = await adreno('handler');
    s.k.faults.registerDeviceFaultHandler(gpu, () => 0, null);
    const op = await stallRead(s);
    await s.m.sched.runFor(1_000_000);
    expect(op.state).toBe('running');
    await inTask(s.m, () => s.k.faults.removeDevice(gpu));
    await finish(s, op);
    expect(op.state).toBe('failed');
    expect(s.ports[0]!.stalledCount).toBe(0);
    expect(s.inst.smmu.stats.terminates).toBe(1);
  });

  it('a second context bank faulting at the same time is handled in the same pass', async () => {
    const { s, dom } = await adreno('handler');
    const other = await attachNew(s, s.devs[1]!);
    const calls: string[] = [];
    iommuSetFaultHandler(dom, () => {
      calls.push('gpu');
      return 0;
    });
    iommuSetFaultHandler(other, () => {
      calls.push('other');
      return 0;
    });
    const a = s.ports[0]!.read(BUS, 64);
    const b = s.ports[1]!.read(BUS, 64);
    await finish(s, a);
    await finish(s, b);
    expect(a.state).toBe('failed');
    expect(b.state).toBe('failed');
    expect(calls.sort()).toEqual(['gpu', 'other']);
    expect(s.inst.smmu.stats.contextFaults).toBe(2);
  });

  it('a storm: every fault counted, ten printed per 5 s, the rest suppressed', async () => {
    const { s } = await adreno('handler');
    for (let i = 0; i < 200; i++) {
      const op = s.ports[0]!.read(BUS + i * 0x1000, 16);
      await finish(s, op);
      expect(op.state).toBe('failed');
    }
    const st = s.inst.smmu.stats;
    expect(st.contextFaults).toBe(200);
    expect(st.contextFaultsLogged).toBe(10);
    expect(st.contextFaultsSuppressed).toBe(190);
    expect(s.lines().filter((l) => l.startsWith('Unhandled context fault')).length).toBe(10);
    // the next interval's first print says how many were swallowed, as ___ratelimit does
    await s.m.sched.runFor(5_000_000_000);
    await finish(s, s.ports[0]!.read(BUS, 16));
    expect(s.lines()).toContain('arm_smmu_context_fault: 190 callbacks suppressed');
    expect(s.lines().filter((l) => l.startsWith('Unhandled context fault')).length).toBe(11);
  });

  it('MMU-500 (qcom,smmu-500 Adreno), v6.16+: FSR cleared before RESUME, so the quirk does not eat it', async () => {
    const { s, dom } = await adreno('handler', 'qcom,smmu-500');
    const pa = s.m.pages.alloc(0, 'test');
    iommuSetFaultHandler(dom, (d) =>
      iommuMap(d as IommuDomain, IOVA, pa, 0x1000, IOMMU_READ) === 0 ? -11 : 0,
    );
    const op = await stallRead(s);
    await finish(s, op);
    expect(op.state).toBe('done');
    expect(s.hw.counters.resumesIgnored).toBe(0);
  });
});
