// Recoverable-fault round trips of the SMMUv3 model, per second of wall time, with a minimal
// "driver" that works like a real one (queues in memory, MMIO pointer updates, the scheduler
// run until the hardware has reacted):
//   smmuv3.pri.roundtrip    endpoint Page Request -> PRI queue entry -> driver reads it, moves
//                           PRIQ_CONS, issues CMD_PRI_RESP -> PRG Response at the endpoint
//   smmuv3.stall.roundtrip  device transaction faults and stalls -> event record -> driver
//                           reads it, moves EVTQ_CONS, issues CMD_RESUME -> the device hears
//                           the completion (Terminate, RAZ/WI: the page stays unmapped so each
//                           iteration stalls again)

import { encodeCdInto } from '../src/arch/smmuv3/cd.ts';
import { encodeCommandInto } from '../src/arch/smmuv3/cmd.ts';
import { CR0, SMMU_REG, STRTAB_BASE_CFG } from '../src/arch/smmuv3/regs.ts';
import { encodeSteInto } from '../src/arch/smmuv3/ste.ts';
import { PORT_STALLED, PortResult } from '../src/hw/smmuv3/port.ts';
import { SmmuV3 } from '../src/hw/smmuv3/smmu.ts';
import type { UpstreamMaster } from '../src/hw/smmuv3/upstream.ts';
import { Machine } from '../src/platform/machine.ts';
import type { BenchCase } from './types.ts';

const BASE = 0x0900_0000;
const LOG2 = 8;
const SID = 1;

/**
 * Write the STE of `sid` in the linear stream table at `strtab`: stage 1 through one CD (a page
 * of its own) over the translation table `tt` (empty: every access faults), CD.S = `stall`.
 */
export function s1EmptyStream(m: Machine, strtab: number, sid: number, tt: number, stall: boolean): void {
  const mem = m.mem;
  const cd = m.pages.alloc(0, 'bench');
  const cdw = new Uint32Array(16);
  encodeCdInto(cdw, {
    V: 1,
    T0SZ: 16,
    TG0: 0,
    EPD1: 1,
    IPS: 5,
    AA64: 1,
    R: 1,
    A: 1,
    S: stall ? 1 : 0,
    ASID: 1,
    TTB0: tt,
  });
  for (let i = 0; i < 8; i++) mem.write64(cd + 8 * i, cdw[2 * i]!, cdw[2 * i + 1]!);
  const stw = new Uint32Array(16);
  encodeSteInto(stw, { V: 1, Config: 0b101, S1ContextPtr: cd, PPAR: 1 });
  for (let i = 0; i < 8; i++) mem.write64(strtab + 64 * sid + 8 * i, stw[2 * i]!, stw[2 * i + 1]!);
}

function setup() {
  const m = new Machine();
  const smmu = new SmmuV3(m, { base: BASE });
  const mem = m.mem;
  const w32 = (off: number, v: number) => mem.write32(BASE + off, v >>> 0);
  const r32 = (off: number) => mem.read32(BASE + off) >>> 0;
  const page = (order = 0) => m.pages.alloc(order, 'bench');
  const cmdq = page(LOG2 <= 8 ? 0 : 1);
  const evtq = page(1);
  const priq = page(0);
  const strtab = page(2);
  mem.write64n(BASE + SMMU_REG.CMDQ_BASE, cmdq | LOG2);
  mem.write64n(BASE + SMMU_REG.EVTQ_BASE, evtq | LOG2);
  mem.write64n(BASE + SMMU_REG.PRIQ_BASE, priq | LOG2);
  mem.write64n(BASE + SMMU_REG.STRTAB_BASE, strtab);
  w32(SMMU_REG.STRTAB_BASE_CFG, (0 << STRTAB_BASE_CFG.FMT_SHIFT) | 8);
  // STE 1: stage 1, one CD with CD.S = 1 over an empty table (every access faults and stalls)
  s1EmptyStream(m, strtab, SID, page(0), true);
  w32(SMMU_REG.CR0, CR0.CMDQEN | CR0.EVTQEN | CR0.PRIQEN | CR0.SMMUEN);
  m.sched.runUntilIdleSync();
  let prod = 0;
  const mask = (1 << LOG2) - 1;
  const wrap = (2 << LOG2) - 1;
  const dw = new Uint32Array(4);
  const cmd = (name: 'PRI_RESP' | 'RESUME', v: Record<string, number>) => {
    encodeCommandInto(dw, name, v);
    const a = cmdq + (prod & mask) * 16;
    mem.write64(a, dw[0]!, dw[1]!);
    mem.write64(a + 8, dw[2]!, dw[3]!);
    prod = (prod + 1) & wrap;
    w32(SMMU_REG.CMDQ_PROD, prod);
    m.sched.runUntilIdleSync();
  };
  let responses = 0;
  let completions = 0;
  const dev: UpstreamMaster = {
    priResponse: () => {
      responses++;
    },
    stallCompleted: () => {
      completions++;
    },
  };
  smmu.upstream.attach(SID, dev);
  const pri = (n: number) => {
    const before = responses;
    for (let i = 0; i < n; i++) {
      smmu.upstream.priRequest(
        SID,
        3,
        0x1000_0000 + (i & 0xff) * 4096,
        i & 0x1ff,
        true,
        true,
        false,
        false,
        false,
      );
      // driver: read the entry at CONS, advance CONS, answer
      const cons = r32(SMMU_REG.PRIQ_CONS_P1);
      const e = priq + (cons & mask) * 16;
      mem.read64(e + 8);
      const prg = mem.r64[0]! & 0x1ff;
      w32(SMMU_REG.PRIQ_CONS_P1, ((cons & wrap) + 1) & wrap);
      cmd('PRI_RESP', { StreamID: SID, SSV: 1, SubstreamID: 3, PRIGroupID: prg, Resp: 2 });
    }
    if (responses - before !== n) throw new Error('PRI responses missing');
  };
  const r = new PortResult();
  const stall = (n: number) => {
    const before = completions;
    for (let i = 0; i < n; i++) {
      if (smmu.port.translate(SID, -1, 0x2000_0000, 0, r) !== PORT_STALLED) throw new Error('no stall');
      const cons = r32(SMMU_REG.EVTQ_CONS_P1);
      const e = evtq + (cons & mask) * 32;
      mem.read64(e + 8);
      const stag = mem.r64[0]! & 0xffff;
      w32(SMMU_REG.EVTQ_CONS_P1, ((cons & wrap) + 1) & wrap);
      cmd('RESUME', { StreamID: SID, STAG: stag, Ac: 0, Ab: 0 });
    }
    if (completions - before !== n) throw new Error('stall completions missing');
  };
  return { pri, stall };
}

function measure(fn: (n: number) => void, n: number): number {
  fn(Math.max(1000, n / 10)); // warm-up
  const t0 = performance.now();
  fn(n);
  return n / ((performance.now() - t0) / 1000);
}

export const benchmarks: BenchCase[] = [
  {
    name: 'recoverable.pri (smmuv3.pri.roundtrip)',
    async run() {
      const { pri } = setup();
      return [{ name: 'smmuv3.pri.roundtrip', value: measure(pri, 100_000), unit: 'ops/s' }];
    },
  },
  {
    name: 'recoverable.stall (smmuv3.stall.roundtrip)',
    async run() {
      const { stall } = setup();
      return [{ name: 'smmuv3.stall.roundtrip', value: measure(stall, 100_000), unit: 'ops/s' }];
    },
  },
];
