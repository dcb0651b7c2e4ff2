/**
 * SMMUv2 benchmarks, beside SMMUv3's in the same process and rounds.
 *
 * smmuv2.translate: the translate bench's layout (translate.bench.ts: 262144 4K pages in 16-page
 * chunks over the 48-bit space, 4 levels). An SMMUv2 (MMU-500, TLB 2048 sets x 4 ways like the
 * SMMUv3 engine's default) is programmed through its registers as Linux's arm-smmu would program
 * a stage-1 AArch64 bank for those tables; the configuration it derives drives the shared engine
 * in the translate bench's loop, next to the SMMUv3 configuration of the same tables:
 *  - smmuv2.translate.tlb_hit / smmuv3.translate.tlb_hit (same run): 2048-page working set;
 *  - smmuv2.translate.walk4 / smmuv3.translate.walk4 (same run): all 262144 pages, ~97% misses;
 *  - smmuv2.port.tlb_hit: the same hits through the SMMUv2 DMA port (stream match, S2CR,
 *    bank, engine): what the device adds;
 *  - ….ratio_v2_v3: v2 / v3, best against best, and the median of the rounds' own ratios.
 * Each metric is its best round (the host is shared and noisy); `.median` and `.range` give the
 * median and the spread (max - min) over rounds.
 *
 * smmuv2.stall: stall-fault round trips at the hardware level: a transaction faults on a
 * CFCFG = 1 bank and stalls; a minimal synchronous "driver" reads FSR, clears it and writes
 * RESUME (terminate); the scheduler runs the resume; the device hears the termination.
 *
 * smmuv2.stack.stall: the same round trip through the whole stack: the Qualcomm Adreno SMMU
 * booted with the kernel model, stall enabled by set_stall, a device fault handler of the fault
 * API that answers each page request at once (INVALID): the context interrupt, the arm-smmu
 * driver's IRQ thread (FSR read and clear), the fault layer's report and response, RESUME =
 * terminate, the device hears the termination.
 */

import { CB, GR0, GR0_S2CR, GR0_SMR, GR1_CBA2R, GR1_CBAR } from '../src/arch/smmuv2/regs.ts';
import { PORT_STALLED, PortResult } from '../src/hw/smmu-common/port.ts';
import { TranslationEngine } from '../src/hw/smmu-common/translate.ts';
import {
  ACCESS_READ,
  type TranslationConfig,
  TranslationResult,
} from '../src/hw/smmu-common/translate-types.ts';
import { SmmuV2 } from '../src/hw/smmuv2/smmu.ts';
import { adrenoSmmuPriv } from '../src/kernel/iommu/arm-smmu/qcom.ts';
import { IOMMU_PAGE_RESP_INVALID } from '../src/kernel/iommu/fault/fault.ts';
import type { Machine } from '../src/platform/machine.ts';
import { attachNew, bootV2 } from '../test/kernel/arm-smmu/helpers.ts';
import { buildLayout, loop, timeNs } from './translate.bench.ts';
import { type BenchCase, type BenchResult, median } from './types.ts';

const N = 262144;
const HOT = 2048;
const ROUNDS = 7;
const HIT_OPS = 5_000_000;
const WALK_OPS = 2_000_000;
const SID = 1;

/** A register write to the device's window (the device is not mapped: a fresh one per round). */
function cbOff(s: SmmuV2, n: number, off: number): number {
  return (s.features.numPage + n) * 2 ** s.features.pgshift + off;
}

/** Program bank 0 as arm_smmu_write_context_bank does for a stage-1 AArch64 4K domain. */
export function programV2(m: Machine, cfg: TranslationConfig): SmmuV2 {
  const s = new SmmuV2(m, { compatible: 'arm,mmu-500', tlbSets: 2048, tlbWays: 4 });
  const gr1 = 2 ** s.features.pgshift;
  const asid = cfg.s1.asid;
  s.write32(gr1 + GR1_CBA2R(0), 1); // VA64
  s.write32(gr1 + GR1_CBAR(0), (1 << 16) | (3 << 8) | (0xf << 12)); // S1_TRANS_S2_BYPASS
  s.write32(cbOff(s, 0, CB.TCR2), 5 | (1 << 4) | (7 << 15)); // PASIZE 48, AS, SEP_UPSTREAM
  s.write32(cbOff(s, 0, CB.TCR), cfg.s1.t0sz | (3 << 12) | (1 << 10) | (1 << 8) | (1 << 23)); // 4K, EPD1
  s.write64(cbOff(s, 0, CB.TTBR0), cfg.s1.ttb0 | 0, Math.floor(cfg.s1.ttb0 / 2 ** 32) | (asid << 16));
  s.write64(cbOff(s, 0, CB.TTBR1), 0, asid << 16);
  s.write32(cbOff(s, 0, CB.MAIR0), cfg.s1.mairLo);
  s.write32(cbOff(s, 0, CB.MAIR1), cfg.s1.mairHi);
  s.write32(cbOff(s, 0, CB.SCTLR), 0x67 | (1 << 12)); // CFIE CFRE AFE TRE M ASIDPNE
  s.write32(GR0_S2CR(0), 0); // TRANS, CBNDX 0
  s.write32(GR0_SMR(0), ((1 << 31) | SID) >>> 0);
  s.write32(GR0.sCR0, 0x36 | (1 << 10)); // enabled, USFCFG
  return s;
}

/** The configuration the device derived from its registers (the one its port hands the engine). */
export function v2Config(s: SmmuV2): TranslationConfig {
  const b = s.banks[0]!;
  s.refresh(b);
  if (b.cfg === null) throw new Error('smmuv2 bench: bank 0 not translating');
  return b.cfg;
}

function portLoop(s: SmmuV2, set: Float64Array, mask: number): (n: number) => number {
  const out = new PortResult();
  return (n: number) => {
    const p = s.port;
    const o = out;
    const st = set;
    const k = mask;
    const read = ACCESS_READ;
    let cs = 0;
    let x = 0x2545f491;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const r = x >>> 0;
      p.translate(SID, -1, st[r & k]! + (r >>> 20), read, o);
      cs = (Math.imul(cs, 31) + (o.oa >>> 0)) | 0;
    }
    return cs;
  };
}

interface Series {
  v3Hit: number[];
  v2Hit: number[];
  v3Walk: number[];
  v2Walk: number[];
  v2Port: number[];
}

function summary(name: string, xs: number[], unit: string): BenchResult[] {
  return [
    { name, value: Math.min(...xs), unit },
    { name: `${name}.median`, value: median(xs), unit },
    { name: `${name}.range`, value: Math.max(...xs) - Math.min(...xs), unit },
  ];
}

export let sink = 0;

export const benchmarks: BenchCase[] = [
  {
    name: 'smmuv2.translate',
    async run(): Promise<BenchResult[]> {
      const L = buildLayout(N, false);
      const res = new TranslationResult();
      const s: Series = { v3Hit: [], v2Hit: [], v3Walk: [], v2Walk: [], v2Port: [] };
      for (let round = 0; round < ROUNDS; round++) {
        // tlb_hit and walk4 for v3 and v2 on fresh engines, the two in turn first (odd rounds:
        // v2 first), then the port
        const e3 = new TranslationEngine(L.m.mem);
        const d2 = programV2(L.m, L.cfg);
        const c2 = v2Config(d2);
        const w3e = new TranslationEngine(L.m.mem);
        const w2d = programV2(L.m, L.cfg);
        const hit3 = () => timeNs(loop(e3, L.cfg, res, L.hot, HOT - 1), HIT_OPS, 4);
        const hit2 = () => timeNs(loop(d2.engine, c2, res, L.hot, HOT - 1), HIT_OPS, 4);
        const walk3 = () => timeNs(loop(w3e, L.cfg, res, L.iovas, N - 1), WALK_OPS, 2);
        const walk2 = () => timeNs(loop(w2d.engine, v2Config(w2d), res, L.iovas, N - 1), WALK_OPS, 2);
        const odd = (round & 1) === 1;
        const h2first = odd ? hit2() : null;
        const h3 = hit3();
        const h2 = h2first ?? hit2();
        const w2first = odd ? walk2() : null;
        const w3 = walk3();
        const w2 = w2first ?? walk2();
        const p2 = timeNs(portLoop(d2, L.hot, HOT - 1), HIT_OPS, 4);
        if (
          e3.counters.faults +
            d2.engine.counters.faults +
            w3e.counters.faults +
            w2d.engine.counters.faults !==
          0
        )
          throw new Error('smmuv2 translate bench: unexpected faults');
        if (d2.port.stats.ok === 0 || d2.port.stats.fault !== 0)
          throw new Error('smmuv2 bench: the port did not translate');
        sink ^= h3.cs ^ h2.cs ^ w3.cs ^ w2.cs ^ p2.cs;
        s.v3Hit.push(h3.ns);
        s.v2Hit.push(h2.ns);
        s.v3Walk.push(w3.ns);
        s.v2Walk.push(w2.ns);
        s.v2Port.push(p2.ns);
        if (process.env.BENCH_VERBOSE) {
          const f = (x: number) => x.toFixed(1);
          console.error(
            `  round ${round}: hit v3 ${f(h3.ns)} v2 ${f(h2.ns)} port ${f(p2.ns)}  walk4 v3 ${f(w3.ns)} v2 ${f(w2.ns)}`,
          );
        }
      }
      const ratios = (a: number[], b: number[]) => a.map((x, i) => x / b[i]!);
      return [
        ...summary('smmuv2.translate.tlb_hit', s.v2Hit, 'ns/op'),
        ...summary('smmuv2.translate.tlb_hit.v3_same_run', s.v3Hit, 'ns/op'),
        ...summary('smmuv2.translate.walk4', s.v2Walk, 'ns/op'),
        ...summary('smmuv2.translate.walk4.v3_same_run', s.v3Walk, 'ns/op'),
        ...summary('smmuv2.port.tlb_hit', s.v2Port, 'ns/op'),
        {
          name: 'smmuv2.translate.tlb_hit.ratio_v2_v3',
          value: Math.min(...s.v2Hit) / Math.min(...s.v3Hit),
          unit: 'x',
        },
        {
          name: 'smmuv2.translate.tlb_hit.ratio_v2_v3.round_median',
          value: median(ratios(s.v2Hit, s.v3Hit)),
          unit: 'x',
        },
        {
          name: 'smmuv2.translate.walk4.ratio_v2_v3',
          value: Math.min(...s.v2Walk) / Math.min(...s.v3Walk),
          unit: 'x',
        },
        {
          name: 'smmuv2.translate.walk4.ratio_v2_v3.round_median',
          value: median(ratios(s.v2Walk, s.v3Walk)),
          unit: 'x',
        },
      ];
    },
  },
  {
    name: 'smmuv2.stall',
    async run(): Promise<BenchResult[]> {
      const L = buildLayout(16, false); // a machine with a small stage-1 table (the faults hit holes)
      const perRound: number[] = [];
      for (let round = 0; round < 5; round++) {
        const d = programV2(L.m, L.cfg);
        const cb = (off: number) => cbOff(d, 0, off);
        d.write32(cb(CB.SCTLR), d.read32(cb(CB.SCTLR)) | (1 << 7)); // CFCFG: stall
        let done = 0;
        d.upstream.attach(SID, { stallCompleted: () => done++ });
        const out = new PortResult();
        const sched = L.m.sched;
        const hole = 2 ** 40; // unmapped in the layout
        const trip = (n: number) => {
          for (let i = 0; i < n; i++) {
            if (d.port.translate(SID, -1, hole + (i & 1023) * 4096, ACCESS_READ, out) !== PORT_STALLED)
              throw new Error('smmuv2 stall bench: the transaction did not stall');
            // the driver: read FSR, clear it, terminate the stalled transaction
            const fsr = d.read32(cb(CB.FSR));
            d.write32(cb(CB.FSR), fsr);
            d.write32(cb(CB.RESUME), 1);
            sched.runUntilIdleSync();
          }
          return done;
        };
        trip(10_000); // warm-up
        const n = 200_000;
        const before = done;
        const t0 = performance.now();
        trip(n);
        const s = (performance.now() - t0) / 1000;
        if (done - before !== n) throw new Error(`smmuv2 stall bench: ${done - before} of ${n} completed`);
        perRound.push(n / s);
        if (process.env.BENCH_VERBOSE) console.error(`  round ${round}: ${(n / s).toFixed(0)} faults/s`);
      }
      return [
        { name: 'smmuv2.stall.round_trip', value: Math.max(...perRound), unit: 'faults/s' },
        { name: 'smmuv2.stall.round_trip.median', value: median(perRound), unit: 'faults/s' },
        {
          name: 'smmuv2.stall.round_trip.range',
          value: Math.max(...perRound) - Math.min(...perRound),
          unit: 'faults/s',
        },
      ];
    },
  },
  {
    name: 'smmuv2.stack.stall',
    async run(): Promise<BenchResult[]> {
      const s = await bootV2({
        hw: { compatible: 'qcom,smmu-v2', numContextBanks: 4 },
        extraCompatible: ['qcom,sdm845-smmu-v2', 'qcom,adreno-smmu'],
        masters: [{ cells: [0], canStall: true, compatible: ['qcom,adreno-gmu'] }],
      });
      s.m.trace.enabled = false;
      const gpu = s.devs[0]!;
      await attachNew(s, gpu);
      adrenoSmmuPriv(gpu)!.setStall(true);
      const faults = s.k.faults;
      const r0 = faults.registerDeviceFaultHandler(
        gpu,
        (_f, ctx) => (ctx.group ? faults.groupResponse(ctx.group, IOMMU_PAGE_RESP_INVALID) : 0),
        null,
      );
      if (r0 !== 0) throw new Error('smmuv2 stack bench: no fault handler');
      let done = 0;
      s.hw.upstream.attach(0, { stallCompleted: () => done++ });
      const out = new PortResult();
      const sched = s.m.sched;
      const trip = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const want = done + 1;
          if (s.hw.port.translate(0, -1, 0x4000_0000 + (i & 1023) * 4096, ACCESS_READ, out) !== PORT_STALLED)
            throw new Error('smmuv2 stack bench: the transaction did not stall');
          await sched.runUntil(() => done === want);
          if (done !== want) throw new Error('smmuv2 stack bench: the stall was not answered');
        }
      };
      const perRound: number[] = [];
      await trip(2_000); // warm-up
      for (let round = 0; round < 5; round++) {
        const n = 20_000;
        const t0 = performance.now();
        await trip(n);
        const sec = (performance.now() - t0) / 1000;
        perRound.push(n / sec);
        if (process.env.BENCH_VERBOSE) console.error(`  round ${round}: ${(n / sec).toFixed(0)} faults/s`);
      }
      if (s.m.bugs.length > 0) throw new Error(`smmuv2 stack bench: ${s.m.bugs[0]!.message}`);
      return [
        { name: 'smmuv2.stack.stall.round_trip', value: Math.max(...perRound), unit: 'faults/s' },
        { name: 'smmuv2.stack.stall.round_trip.median', value: median(perRound), unit: 'faults/s' },
        {
          name: 'smmuv2.stack.stall.round_trip.range',
          value: Math.max(...perRound) - Math.min(...perRound),
          unit: 'faults/s',
        },
      ];
    },
  },
];
