/**
 * Hardware-observed hitless check (beyond Linux's KUnit): every transition of the KUnit table,
 * with real tables behind each configuration, is written by the driver's entry writer into a
 * live STE/CD while the SMMU model evaluates, after every 64-bit store, what a DMA would do
 * at that instant. Hitless transitions may only ever show the old or the new behaviour;
 * breaking ones may also show the invalid entry in between — never a third behaviour.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { SmmuV3, type SmmuV3Config } from '../../src/hw/smmuv3/smmu.ts';
import { EntryObserver, type Probe } from '../../src/hw/smmuv3/verify.ts';
import { type Entry, NUM_ENTRY_QWORDS } from '../../src/kernel/iommu/arm-smmu-v3/entry-writer.ts';
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeNestedSte,
  makeS1Cd,
  makeS2DomainSte,
  makeSvaCd,
  type S1Config,
  S1DSS,
  type S2Config,
} from '../../src/kernel/iommu/arm-smmu-v3/make-entry.ts';
import { ArmSmmuDevice, type CdTable } from '../../src/kernel/iommu/arm-smmu-v3/smmu.ts';
import { ArmLpaeIoPgtable } from '../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { type IoPgtableCfg, machinePgtableEnv } from '../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { MmioRegion } from '../../src/kernel/lib/io.ts';
import { Machine } from '../../src/platform/index.ts';
import { inTask } from './stack-helpers.ts';

const BASE = 0x0900_0000;
const SID = 1;
const IOVA = 0x10_0000;
const HW: SmmuV3Config = { base: BASE, msi: true, sidBits: 8, ssidBits: 8, ats: true, stallModel: 'stall' };

interface World {
  m: Machine;
  hw: SmmuV3;
  drv: ArmSmmuDevice;
  cdtA: CdTable;
  cdtB: CdTable;
  s1: S1Config;
  s2: S2Config;
  pa: { a: number; b: number; c: number };
}

function pgtable(m: Machine, fmt: 'arm-64-lpae-s1' | 'arm-64-lpae-s2'): [ArmLpaeIoPgtable, IoPgtableCfg] {
  const cfg: IoPgtableCfg = {
    quirks: 0,
    pgsizeBitmap: 0x1000 + 0x200000 + 0x40000000,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb: null,
  };
  const p = ArmLpaeIoPgtable.alloc(fmt, cfg, null, machinePgtableEnv(m));
  if (p === null) throw new Error('io-pgtable alloc failed');
  return [p, cfg];
}

async function world(): Promise<World> {
  const m = new Machine({ seed: 3 });
  const hw = new SmmuV3(m, HW);
  const drv = new ArmSmmuDevice(m, new MmioRegion(m.mem, BASE, 0x20000), {
    name: '9000000.iommu',
    base: BASE,
  });
  await inTask(m, async () => {
    expect(await drv.probe()).toBe(0);
  });
  const pa = { a: m.pages.alloc(0, 'A'), b: m.pages.alloc(0, 'B'), c: m.pages.alloc(0, 'C') };
  const rw = IOMMU_READ | IOMMU_WRITE;
  // stage 1: IOVA -> A (table A), IOVA -> B (table B)
  const [ptA, cfgA] = pgtable(m, 'arm-64-lpae-s1');
  ptA.mapPages(IOVA, pa.a, 0x1000, 1, rw);
  const [ptB, cfgB] = pgtable(m, 'arm-64-lpae-s1');
  ptB.mapPages(IOVA, pa.b, 0x1000, 1, rw);
  // stage 2: IPA IOVA -> C, and the RAM holding tables identity-mapped (so nesting can walk them)
  const [pt2, cfg2] = pgtable(m, 'arm-64-lpae-s2');
  pt2.mapPages(IOVA, pa.c, 0x1000, 1, rw);
  pt2.mapPages(0x8000_0000, 0x8000_0000, 0x200000, 64, rw);
  const s1of = (c: IoPgtableCfg, asid: number): S1Config => {
    const x = c.armLpaeS1Cfg!;
    return { asid, ttbr: BigInt(x.ttbr), ...x.tcr, mair: BigInt(x.mair) };
  };
  const x2 = cfg2.armLpaeS2Cfg!;
  // VMID 0 as in the KUnit suite: a stage-1 STE uses S2VMID too, so another VMID makes S1<->S2
  // change two qwords (a breaking update; see the vmid7 case)
  const s2: S2Config = { vmid: 0, vttbr: BigInt(x2.vttbr), ...x2.vtcr };
  const mk = (c: IoPgtableCfg) => {
    const t = drv.allocCdTable(8);
    if (typeof t === 'number') throw new Error('cd table');
    return { t, s1: s1of(c, 1) };
  };
  const A = mk(cfgA);
  const B = mk(cfgB);
  await inTask(m, async () => {
    await drv.writeCd([SID], A.t, 0, makeS1Cd({ stallEnabled: false }, A.s1));
    await drv.writeCd([SID], B.t, 0, makeS1Cd({ stallEnabled: false }, B.s1));
  });
  return { m, hw, drv, cdtA: A.t, cdtB: B.t, s1: A.s1, s2, pa };
}

const ATS = 1;
const STALL = 2;
const NESTED = 4;

describe('hardware-observed hitless updates', () => {
  let w: World;
  beforeAll(async () => {
    w = await world();
  });

  const f = () => w.drv.writeFeatures;
  const ref = (t: CdTable) => ({ cdtabDma: t.base, s1fmt: t.s1fmt, s1cdmax: t.s1cdmax });
  const cdtable = (s1dss: number, feat: number, t = w.cdtA): Entry => {
    const ste = makeCdtableSte(
      f(),
      { stallEnabled: (feat & STALL) !== 0 },
      ref(t),
      (feat & ATS) !== 0,
      s1dss,
    );
    return feat & NESTED ? makeNestedSte(ste, s2ste(feat & ~NESTED)) : ste;
  };
  // an SVA CD whose "mm" is stage-1 table A; released: EPD0, walks disabled
  const sva = (live: boolean): Entry =>
    makeSvaCd(
      f(),
      { stallEnabled: false },
      live ? { pgd: w.s1.ttbr, vaBits: 48, mair: w.s1.mair } : null,
      1997,
      w.s1.mair,
    );
  const s2vmid7 = (): Entry => makeS2DomainSte(f(), { stallEnabled: false }, { ...w.s2, vmid: 7 }, false);
  const s2ste = (feat: number): Entry =>
    makeS2DomainSte(f(), { stallEnabled: (feat & STALL) !== 0 }, w.s2, (feat & ATS) !== 0);
  const probes: Probe[] = [
    { sid: SID, ssid: -1, iova: IOVA, access: 0 },
    { sid: SID, ssid: -1, iova: IOVA + 0x123, access: 1 },
  ];

  /** Write `init` (unobserved), then `target` while observing; returns the timeline and syncs. */
  async function observe(init: Entry, target: Entry) {
    await inTask(w.m, async () => {
      await w.drv.writeSte(SID, init);
    });
    const obs = new EntryObserver(w.m, w.hw, HW, probes);
    const before = obs.evaluate();
    obs.watch(w.drv.steAddr(SID));
    let syncs = 0;
    await inTask(w.m, async () => {
      syncs = (await w.drv.writeSte(SID, target)).syncs;
    });
    obs.stop();
    const after = obs.evaluate();
    return { before, after, timeline: obs.timeline, syncs };
  }

  const cases: Array<[string, () => Entry, () => Entry, number, boolean]> = [
    ['bypass_to_abort', () => makeBypassSte(f()), () => makeAbortSte(), 2, true],
    ['abort_to_bypass', () => makeAbortSte(), () => makeBypassSte(f()), 2, true],
    ['cdtable_to_abort', () => cdtable(S1DSS.SSID0, ATS), () => makeAbortSte(), 2, true],
    ['abort_to_cdtable', () => makeAbortSte(), () => cdtable(S1DSS.SSID0, ATS), 2, true],
    ['cdtable_to_bypass', () => cdtable(S1DSS.SSID0, ATS), () => makeBypassSte(f()), 3, true],
    ['bypass_to_cdtable', () => makeBypassSte(f()), () => cdtable(S1DSS.SSID0, ATS), 3, true],
    ['cdtable_s1dss_change', () => cdtable(S1DSS.SSID0, ATS), () => cdtable(S1DSS.BYPASS, ATS), 1, true],
    ['cdtable_s1dss_change_back', () => cdtable(S1DSS.BYPASS, ATS), () => cdtable(S1DSS.SSID0, ATS), 1, true],
    ['s1dssbypass_to_stebypass', () => cdtable(S1DSS.BYPASS, ATS), () => makeBypassSte(f()), 2, true],
    ['stebypass_to_s1dssbypass', () => makeBypassSte(f()), () => cdtable(S1DSS.BYPASS, ATS), 2, true],
    ['s2_to_abort', () => s2ste(ATS), () => makeAbortSte(), 2, true],
    ['abort_to_s2', () => makeAbortSte(), () => s2ste(ATS), 2, true],
    ['s2_to_bypass', () => s2ste(ATS), () => makeBypassSte(f()), 2, true],
    ['bypass_to_s2', () => makeBypassSte(f()), () => s2ste(ATS), 2, true],
    ['s1_to_s2', () => cdtable(S1DSS.SSID0, ATS), () => s2ste(ATS), 3, true],
    ['s2_to_s1', () => s2ste(ATS), () => cdtable(S1DSS.SSID0, ATS), 3, true],
    ['non_hitless', () => cdtable(S1DSS.SSID0, ATS), () => cdtable(S1DSS.BYPASS, ATS, w.cdtB), 3, false],
    ['s1_to_s2_stall', () => cdtable(S1DSS.SSID0, STALL), () => s2ste(STALL), 3, true],
    ['s2_to_s1_stall', () => s2ste(STALL), () => cdtable(S1DSS.SSID0, STALL), 3, true],
    ['nested_s1dssbypass_to_s1bypass', () => cdtable(S1DSS.BYPASS, ATS | NESTED), () => s2ste(0), 3, true],
    ['nested_s1bypass_to_s1dssbypass', () => s2ste(0), () => cdtable(S1DSS.BYPASS, ATS | NESTED), 2, true],
    ['nested_ssid0_to_s1', () => cdtable(S1DSS.SSID0, NESTED), () => cdtable(S1DSS.SSID0, 0), 3, true],
    ['s1_to_s2 with VMID 7 (breaking)', () => cdtable(S1DSS.SSID0, 0), () => s2vmid7(), 3, false],
  ];

  it.each(cases)('%s: only old and new behaviour are ever visible', async (_n, a, b, syncs, hitless) => {
    const r = await observe(a(), b());
    expect(r.syncs).toBe(syncs);
    expect(r.timeline.length).toBeGreaterThan(0);
    const allowed = new Set([r.before, r.after]);
    const third = r.timeline.filter((t) => !allowed.has(t));
    if (hitless) expect(third).toEqual([]);
    else {
      expect(third.length).toBeGreaterThan(0);
      for (const t of third) expect(t).toMatch(/^fault C_BAD_STE \| fault C_BAD_STE$/);
    }
  });

  it('the configurations are really different (so the check means something)', async () => {
    const outcome = async (e: Entry) => (await observe(makeAbortSte(), e)).after;
    const seen = new Set([
      await outcome(makeBypassSte(f())),
      await outcome(makeAbortSte()),
      await outcome(cdtable(S1DSS.SSID0, 0)),
      await outcome(cdtable(S1DSS.SSID0, 0, w.cdtB)),
      await outcome(s2ste(0)),
    ]);
    expect(seen.size).toBe(5);
    expect(await outcome(cdtable(S1DSS.SSID0, 0))).toBe(
      `ok 0x${w.pa.a.toString(16)} | ok 0x${(w.pa.a + 0x123).toString(16)}`,
    );
    expect(await outcome(s2ste(0))).toBe(
      `ok 0x${w.pa.c.toString(16)} | ok 0x${(w.pa.c + 0x123).toString(16)}`,
    );
  });

  it('catches a naive update that exposes a third behaviour', async () => {
    await inTask(w.m, async () => {
      await w.drv.writeSte(SID, cdtable(S1DSS.SSID0, 0));
    });
    const obs = new EntryObserver(w.m, w.hw, HW, probes);
    const before = obs.evaluate();
    obs.watch(w.drv.steAddr(SID));
    const target = s2ste(0);
    const pa = w.drv.steAddr(SID);
    for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
      // qword 0 first, as a careless driver would
      w.m.mem.write64(pa + i * 8, Number(target[i]! & 0xffffffffn) | 0, Number(target[i]! >> 32n) | 0);
    }
    obs.stop();
    const after = obs.evaluate();
    expect(obs.timeline.some((t) => t !== before && t !== after)).toBe(true);
  });

  it.each([
    [
      'cd s1_clear',
      () => new Array<bigint>(8).fill(0n),
      () => makeS1Cd({ stallEnabled: false }, w.s1),
      2,
      false,
    ],
    [
      'cd s1_clear back',
      () => makeS1Cd({ stallEnabled: false }, w.s1),
      () => new Array<bigint>(8).fill(0n),
      2,
      false,
    ],
    ['cd sva_clear', () => new Array<bigint>(8).fill(0n), () => sva(true), 2, false],
    ['cd sva_clear back', () => sva(true), () => new Array<bigint>(8).fill(0n), 2, false],
    ['cd sva_release', () => sva(true), () => sva(false), 2, true],
    ['cd sva_release back', () => sva(false), () => sva(true), 2, true],
    [
      'cd s1_change_asid',
      () => makeS1Cd({ stallEnabled: false }, { ...w.s1, asid: 778 }),
      () => makeS1Cd({ stallEnabled: false }, { ...w.s1, asid: 1997 }),
      1,
      true,
    ],
  ] as Array<[string, () => Entry, () => Entry, number, boolean]>)(
    '%s: observed through SSID 1',
    async (_n, a, b, syncs, hitless) => {
      await inTask(w.m, async () => {
        await w.drv.writeSte(SID, cdtable(S1DSS.SSID0, 0));
        await w.drv.writeCd([SID], w.cdtA, 1, a());
      });
      const p: Probe[] = [{ sid: SID, ssid: 1, iova: IOVA, access: 0 }];
      const obs = new EntryObserver(w.m, w.hw, HW, p);
      const before = obs.evaluate();
      obs.watch(w.drv.cdAddr(w.cdtA, 1, false));
      let n = 0;
      await inTask(w.m, async () => {
        n = (await w.drv.writeCd([SID], w.cdtA, 1, b())).syncs;
      });
      obs.stop();
      const after = obs.evaluate();
      expect(n).toBe(syncs);
      const third = obs.timeline.filter((t) => t !== before && t !== after);
      if (hitless) expect(third).toEqual([]);
      else for (const t of third) expect(t).toMatch(/C_BAD_CD/);
    },
  );
});
