// The arm-smmu driver, whole stack: the kernel model programs an SMMUv1/v2 model only through
// its registers, a bus master does DMA through the SMMU's port, and what the master sees is
// checked — map -> DMA reaches memory -> unmap (TLBI + sync) -> the same DMA faults, for stage-1
// and stage-2 context banks, AArch64 (MMU-500) and AArch32 LPAE (MMU-400) formats.

import { describe, expect, it } from 'vitest';
import { CB, GR0, GR0_S2CR, GR0_SMR, GR1_CBAR } from '../../../src/arch/smmuv2/regs.ts';
import { PORT_FAULT } from '../../../src/hw/devices/platform-master.ts';
import { ArmSmmuV2Iommu } from '../../../src/kernel/iommu/arm-smmu/iommu.ts';
import { iommuMap, iommuUnmap } from '../../../src/kernel/iommu/domain.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { inTask, readBytes } from '../../integration/stack-helpers.ts';
import { attachNew, bootV2, dmaRead, dmaWrite, SMMU_BASE, type V2Stack } from './helpers.ts';

const IOVA = 0x10_0000;

async function mapUnmapFault(s: V2Stack, nestParent: boolean) {
  const d = s.devs[0]!;
  const port = s.ports[0]!;
  const dom = await attachNew(s, d, nestParent);
  const pa = s.m.pages.alloc(0, 'test');
  expect(iommuMap(dom, IOVA, pa, 0x1000, IOMMU_READ | IOMMU_WRITE)).toBe(0);
  const data = new Uint8Array(256).map((_, i) => (i * 7 + 3) & 0xff);
  const w = await dmaWrite(s, port, IOVA + 0x40, data);
  expect(w.state).toBe('done');
  expect([...readBytes(s.m, pa + 0x40, 256)]).toEqual([...data]);
  const r = await dmaRead(s, port, IOVA + 0x40, 256);
  expect(r.state).toBe('done');
  // unmap: the driver's TLBI + sync make the stale TLB entry go away
  expect(await inTask(s.m, () => iommuUnmap(dom, IOVA, 0x1000))).toBe(0x1000);
  const after = await dmaWrite(s, port, IOVA + 0x40, data);
  expect(after.state).toBe('failed');
  expect(after.status).toBe(PORT_FAULT);
  await s.m.sched.runUntilIdle();
  return { dom, pa };
}

describe('arm-smmu whole stack', () => {
  it('stage 1 on an MMU-500 (AArch64): map, DMA, unmap, fault with the v6.12+ print', async () => {
    const s = await bootV2({ masters: [{ cells: [0x10] }] });
    const { dom } = await mapUnmapFault(s, false);
    const sd = ArmSmmuV2Iommu.domainOf(dom)!;
    expect(sd.stage).toBe(1);
    // bank 0 went to the master's default DMA domain at probe
    expect(sd.cfg).toMatchObject({ cbndx: 1, asid: 1, fmt: 'aarch64' });
    // the bank as Linux programs it: S1 with S2 bypass, VA64, M/CFIE/CFRE/AFE/TRE/ASIDPNE
    const rd = (o: number) => s.m.mem.read32(SMMU_BASE + o) >>> 0;
    expect((rd(0x1000 + GR1_CBAR(1)) >>> 16) & 3).toBe(1);
    const cb1 = (s.hw.features.numPage + 1) * 4096;
    expect(rd(cb1 + CB.SCTLR) & 0x1067).toBe(0x1067);
    // the stream's entry: S2CR TRANS to bank 0, SMR valid for SID 0x10
    const smr = rd(GR0_SMR(0));
    expect(smr >>> 31).toBe(1);
    expect(smr & 0xffff).toBe(0x10);
    expect(rd(GR0_S2CR(0)) & 0x300ff).toBe(1);
    const lines = s.lines();
    const i = lines.findIndex((l) => l.startsWith('Unhandled context fault:'));
    expect(lines[i]).toBe(
      'Unhandled context fault: fsr=0x2, iova=0x00100040, fsynr=0x13, cbfrsynra=0x10, cb=1',
    );
    expect(lines[i + 1]).toBe('FSR    = 00000002 [Format=0 TF], SID=0x10');
    expect(lines[i + 2]).toBe('FSYNR0 = 00000013 [S1CBNDX=0 WNR PLVL=3]');
    expect(s.m.bugs).toEqual([]);
  });

  it('stage 2 (nesting parent): VMID = cbndx + 1, TLBIIPAS2L + sync on unmap', async () => {
    const s = await bootV2({ masters: [{ cells: [0x10] }] });
    const tlbi = s.hw.counters.tlbiOps;
    const { dom } = await mapUnmapFault(s, true);
    const sd = ArmSmmuV2Iommu.domainOf(dom)!;
    expect(sd.stage).toBe(2);
    expect(sd.cfg).toMatchObject({ cbndx: 1, vmid: 2 });
    expect(s.hw.counters.tlbiOps).toBeGreaterThan(tlbi);
    expect(s.lines().some((l) => l.startsWith('Unhandled context fault: fsr=0x2'))).toBe(true);
  });

  it('SMMUv1 MMU-400: ARM_32_LPAE stage 1 and stage 2 banks translate and fault', async () => {
    for (const nest of [false, true]) {
      const s = await bootV2({
        hw: { compatible: 'arm,mmu-400', numContextBanks: 4 },
        masters: [{ cells: [3] }],
      });
      const { dom } = await mapUnmapFault(s, nest);
      const sd = ArmSmmuV2Iommu.domainOf(dom)!;
      expect(sd.cfg!.fmt).toBe('aarch32-l');
      expect(sd.pgt!.fmt).toBe(nest ? 'arm-32-lpae-s2' : 'arm-32-lpae-s1');
      expect(dom.geometry.apertureEnd).toBe(nest ? 2 ** 40 - 1 : 2 ** 32 - 1);
      expect(s.m.bugs).toEqual([]);
    }
  });

  it('Marvell AP806 (erratum 582743): AArch64 hidden, 64-bit registers as two 32-bit halves', async () => {
    const s = await bootV2({ hw: { compatible: 'marvell,ap806-smmu-500' }, masters: [{ cells: [0x10] }] });
    expect(s.inst.smmu.io.split64).toBe(true);
    const { dom } = await mapUnmapFault(s, false);
    const sd = ArmSmmuV2Iommu.domainOf(dom)!;
    expect(sd.cfg!.fmt).toBe('aarch32-l');
    expect(sd.pgt!.fmt).toBe('arm-32-lpae-s1');
    // the TTBR0 the hardware holds (written as two halves) points at the domain's tables, ASID in 55:48
    const cb = SMMU_BASE + (s.hw.features.numPage + sd.cfg!.cbndx) * 4096;
    const lo = s.m.mem.read32(cb + CB.TTBR0) >>> 0;
    const hi = s.m.mem.read32(cb + CB.TTBR0 + 4) >>> 0;
    expect(lo).toBe(sd.pgtblCfg!.armLpaeS1Cfg!.ttbr >>> 0);
    expect(hi >>> 16).toBe(sd.cfg!.asid);
    expect(s.m.bugs).toEqual([]);
  });

  it('the DMA API on the default domain: dma_map_single -> DMA -> dma_unmap_single -> the DMA faults (MMU-500 and SMMUv1)', async () => {
    // arm,mmu-401 (SMMUv1 with the 64 KiB supplement): Linux picks AArch64 with the 4K granule
    for (const compatible of ['arm,mmu-500', 'arm,mmu-401', 'arm,mmu-400'] as const) {
      const s = await bootV2({ hw: { compatible, numContextBanks: 4 }, masters: [{ cells: [0x10] }] });
      const d = s.devs[0]!;
      const buf = s.m.pages.alloc(0, 'test');
      const iova = s.k.dma.mapSingle(d, buf, 0x1000, 'bidirectional');
      expect(iova).toBeGreaterThan(0);
      expect(iova).not.toBe(buf); // translated
      const data = new Uint8Array(64).fill(0xa5);
      expect((await dmaWrite(s, s.ports[0]!, iova, data)).state).toBe('done');
      expect([...readBytes(s.m, buf, 64)]).toEqual([...data]);
      await inTask(s.m, () => s.k.dma.unmapSingle(d, iova, 0x1000, 'bidirectional'));
      expect((await dmaWrite(s, s.ports[0]!, iova, data)).state).toBe('failed');
      expect(s.lines().some((l) => l.startsWith('Unhandled context fault'))).toBe(true);
      expect(s.m.bugs).toEqual([]);
    }
  });

  it('the stale TLB entry is what unmap must invalidate: without the sync the old page is still reached', async () => {
    const s = await bootV2();
    const d = s.devs[0]!;
    const dom = await attachNew(s, d);
    const pa = s.m.pages.alloc(0, 'test');
    iommuMap(dom, IOVA, pa, 0x1000, IOMMU_READ | IOMMU_WRITE);
    expect((await dmaRead(s, s.ports[0]!, IOVA, 64)).state).toBe('done');
    // clear the PTE behind the driver's back: the hardware keeps its TLB entry
    const sd = ArmSmmuV2Iommu.domainOf(dom)!;
    const walk = sd.pgt!;
    const freed = walk.unmapPages(IOVA, 0x1000, 1, null);
    expect(freed).toBe(0x1000);
    expect((await dmaRead(s, s.ports[0]!, IOVA, 64)).state).toBe('done');
    // TLBIASID + context sync (what flush_iotlb_all does): now it faults
    await inTask(s.m, async () => s.k.iommu && (await dom.ops.flushIotlbAll!(dom)));
    expect((await dmaRead(s, s.ports[0]!, IOVA, 64)).state).toBe('failed');
  });

  it('allocates banks, ASIDs and VMIDs as Linux: S1 after the S2-only banks, asid = cbndx, vmid = cbndx + 1', async () => {
    const s = await bootV2({
      hw: { compatible: 'arm,mmu-500', numContextBanks: 10, numS2ContextBanks: 2 },
      masters: [{ cells: [1] }, { cells: [2] }, { cells: [3] }, { cells: [4] }],
    });
    const s1a = ArmSmmuV2Iommu.domainOf(await attachNew(s, s.devs[0]!))!;
    const s1b = ArmSmmuV2Iommu.domainOf(await attachNew(s, s.devs[1]!))!;
    const s2a = ArmSmmuV2Iommu.domainOf(await attachNew(s, s.devs[2]!, true))!;
    const s2b = ArmSmmuV2Iommu.domainOf(await attachNew(s, s.devs[3]!, true))!;
    // the four default DMA domains (stage 1) took banks 2..5 at probe
    expect([s1a.cfg!.cbndx, s1a.cfg!.asid, s1b.cfg!.cbndx, s1b.cfg!.asid]).toEqual([6, 6, 7, 7]);
    expect([s2a.cfg!.cbndx, s2a.cfg!.vmid, s2b.cfg!.cbndx, s2b.cfg!.vmid]).toEqual([0, 1, 1, 2]);
    expect(s.inst.smmu.contextMap.filter(Boolean).length).toBe(8);
    // back to the default domain, then free: the bank is free again and reused by the next domain
    await inTask(s.m, async () => {
      await s.k.iommu.detachDevice(s1a.domain, s.devs[0]!);
      await s.k.iommu.domainFree(s1a.domain);
    });
    expect(s.inst.smmu.contextMap[6]).toBe(false);
    const again = ArmSmmuV2Iommu.domainOf(await attachNew(s, s.devs[0]!))!;
    expect(again.cfg!.cbndx).toBe(6);
  });

  it('-ENOSPC when the context banks run out', async () => {
    const s = await bootV2({
      hw: { compatible: 'arm,mmu-500', numContextBanks: 2 },
      masters: [{ cells: [1] }, { cells: [2] }],
    });
    // two masters, two banks, both taken by the default domains
    expect(s.inst.smmu.contextMap.filter(Boolean).length).toBe(2);
    const dom = (await inTask(s.m, () => s.k.iommu.domainAllocPaging(s.devs[1]!))) as never;
    const r = await inTask(s.m, () => s.k.iommu.attachDevice(dom, s.devs[1]!));
    expect(r).toBe(-28);
  });

  it('stream matching: 2-cell specifiers share a covering entry; a partial overlap is refused (-EINVAL)', async () => {
    const s = await bootV2({
      iommuCells: 2,
      masters: [{ cells: [0x10, 0x3] }, { cells: [0x11, 0x1] }, { cells: [0x12, 0x6] }],
    });
    const smmu = s.inst.smmu;
    const m0 = s.inst.iommu.masterOf(s.devs[0]!)!;
    const m1 = s.inst.iommu.masterOf(s.devs[1]!)!;
    // 0x11/0x1 lies inside 0x10/0x3: the same entry, counted twice
    expect(m1.smendx[0]).toBe(m0.smendx[0]);
    expect(smmu.s2crs[m0.smendx[0]!]!.count).toBe(2);
    // 0x12/0x6 matches 0x12..0x16 and overlaps 0x10..0x13 partially: no entry, no IOMMU
    expect(s.inst.iommu.masterOf(s.devs[2]!)).toBeUndefined();
    expect(smmu.findSme(0x12, 0x6)).toBe(-22);
  });

  it('masters whose SMRs share a stream-map entry share an IOMMU group (one covering the other); others do not', async () => {
    const s = await bootV2({
      iommuCells: 2,
      masters: [{ cells: [0x10, 0x3] }, { cells: [0x12, 0x0] }, { cells: [0x20, 0x0] }],
    });
    const g = (i: number) => s.k.iommu.groupOf(s.devs[i]!);
    expect(g(0)).not.toBeNull();
    expect(g(1)).toBe(g(0)); // 0x12 lies inside 0x10/0x3: the same SMR, the same group
    expect(g(2)).not.toBeNull();
    expect(g(2)).not.toBe(g(0));
  });

  it('#iommu-cells = <1> takes the SMR mask from stream-match-mask', async () => {
    const s = await bootV2({ streamMatchMask: 0x7c00, masters: [{ cells: [0x401] }] });
    const m0 = s.inst.iommu.masterOf(s.devs[0]!)!;
    expect(m0.ids).toEqual([0x7c00_0401]);
    const smr = s.m.mem.read32(SMMU_BASE + GR0_SMR(m0.smendx[0]!)) >>> 0;
    expect((smr >>> 16) & 0x7fff).toBe(0x7c00);
    // a SID the mask folds onto it (0x801 = 0x401 with bit 11 flipped... bit 10/11 are masked)
    const d = s.devs[0]!;
    const dom = await attachNew(s, d);
    const pa = s.m.pages.alloc(0, 'test');
    iommuMap(dom, IOVA, pa, 0x1000, IOMMU_READ | IOMMU_WRITE);
    const { PlatformDmaMaster } = await import('../../../src/hw/devices/platform-master.ts');
    const alias = new PlatformDmaMaster(s.hw, 0x0c01, { name: 'alias' });
    expect((await dmaRead(s, alias, IOVA, 16)).state).toBe('done');
  });

  it('a stream match conflict (two valid SMRs match) is a global fault: "Unexpected global fault" and the raw registers', async () => {
    const s = await bootV2({ masters: [{ cells: [0x10] }] });
    // a second SMR matching SID 0x10 behind the driver's back (its own rule never makes one)
    const smmu = s.inst.smmu;
    const free = smmu.smrs!.findIndex((x) => !x.valid);
    s.m.mem.write32(SMMU_BASE + GR0_SMR(free), (1 << 31) | (0x3 << 16) | 0x10);
    const op = await dmaRead(s, s.ports[0]!, 0x1000, 16);
    expect(op.state).toBe('failed');
    const lines = s.lines();
    const i = lines.indexOf('Unexpected global fault, this could be serious');
    expect(i).toBeGreaterThanOrEqual(0);
    expect(lines[i + 1]).toMatch(
      /^\tGFSR 0x00000004, GFSYNR0 0x[0-9a-f]{8}, GFSYNR1 0x00000010, GFSYNR2 0x00000000$/,
    );
    expect(s.m.mem.read32(SMMU_BASE + GR0.sGFSR)).toBe(0);
  });

  it("SMMUv1: context interrupts shared round robin (CBAR.IRPTNDX), each bank's faults still handled", async () => {
    const s = await bootV2({
      hw: { compatible: 'arm,mmu-400', numContextBanks: 4 },
      masters: [{ cells: [1] }, { cells: [2] }, { cells: [3] }],
    });
    const idx = s.devs.map((d) => ArmSmmuV2Iommu.domainOf(s.k.iommu.getDomainForDev(d))!.cfg!.irptndx);
    // two context interrupts: 1, 0, 1 (atomic_inc_return then modulo)
    expect(idx).toEqual([1, 0, 1]);
    for (let i = 0; i < 3; i++) {
      const cbar = s.m.mem.read32(SMMU_BASE + 0x1000 + GR1_CBAR(i)) >>> 0;
      expect(cbar >>> 24).toBe(idx[i]);
    }
    for (const p of s.ports) expect((await dmaRead(s, p, 0x7000_0000, 16)).state).toBe('failed');
    expect(s.inst.smmu.stats.contextFaults).toBe(3);
    expect(s.lines().filter((l) => l.startsWith('Unhandled context fault')).length).toBe(3);
  });

  it('an unknown stream is blocked (disable_bypass) and reported as Linux does', async () => {
    const s = await bootV2();
    const { PlatformDmaMaster } = await import('../../../src/hw/devices/platform-master.ts');
    const stranger = new PlatformDmaMaster(s.hw, 0x77, { name: 'stranger' });
    const op = await dmaRead(s, stranger, 0x1000, 16);
    expect(op.state).toBe('failed');
    await s.m.sched.runUntilIdle();
    expect(s.lines()).toContain(
      'Blocked unknown Stream ID 0x77; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications',
    );
    expect(s.hw.gfsr).toBe(0); // cleared by the handler
    expect(s.inst.smmu.stats.globalFaults).toBe(1);
  });
});
