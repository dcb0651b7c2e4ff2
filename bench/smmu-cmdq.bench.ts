// Command-queue throughput of the SMMUv3 model: CMD_CFGI_STE + CMD_SYNC pairs as a driver
// issues them (commands written into the queue in memory, CMDQ_PROD bumped by MMIO, the
// scheduler run until CONS catches up), per second of wall time.

import { encodeCommandInto } from '../src/arch/smmuv3/cmd.ts';
import { CR0, SMMU_REG, STRTAB_BASE_CFG } from '../src/arch/smmuv3/regs.ts';
import { SmmuV3 } from '../src/hw/smmuv3/smmu.ts';
import { Machine } from '../src/platform/machine.ts';
import type { BenchCase } from './types.ts';

const BASE = 0x0900_0000;
const LOG2 = 8;

function setup() {
  const m = new Machine();
  const smmu = new SmmuV3(m, { base: BASE });
  const mem = m.mem;
  const w32 = (off: number, v: number) => mem.write32(BASE + off, v >>> 0);
  const cmdq = m.pages.alloc(0, 'bench');
  const strtab = m.pages.alloc(2, 'bench');
  mem.write64n(BASE + SMMU_REG.CMDQ_BASE, cmdq | LOG2);
  mem.write64n(BASE + SMMU_REG.STRTAB_BASE, strtab);
  w32(SMMU_REG.STRTAB_BASE_CFG, (0 << STRTAB_BASE_CFG.FMT_SHIFT) | 8);
  mem.write64(strtab + 64, 1 | (4 << 1), 0); // STE 1: bypass
  w32(SMMU_REG.CR0, CR0.CMDQEN | CR0.SMMUEN);
  m.sched.runUntilIdleSync();
  const cfgi = new Uint32Array(4);
  const sync = new Uint32Array(4);
  encodeCommandInto(cfgi, 'CFGI_STE', { StreamID: 1, Leaf: 1 });
  encodeCommandInto(sync, 'SYNC', { CS: 0 });
  let prod = 0;
  const mask = (1 << LOG2) - 1;
  const wrapMask = (2 << LOG2) - 1;
  const put = (dw: Uint32Array) => {
    const a = cmdq + (prod & mask) * 16;
    mem.write64(a, dw[0]!, dw[1]!);
    mem.write64(a + 8, dw[2]!, dw[3]!);
    prod = (prod + 1) & wrapMask;
  };
  const pairs = (n: number) => {
    for (let i = 0; i < n; i++) {
      put(cfgi);
      put(sync);
      w32(SMMU_REG.CMDQ_PROD, prod);
      m.sched.runUntilIdleSync();
    }
    if ((mem.read32(BASE + SMMU_REG.CMDQ_CONS) & wrapMask) !== prod) throw new Error('cmdq did not drain');
  };
  return { smmu, pairs };
}

export const benchmarks: BenchCase[] = [
  {
    name: 'smmuv3.cmdq.cfgi_sync',
    async run() {
      const { pairs } = setup();
      pairs(20_000); // warm-up
      const N = 200_000;
      const t0 = performance.now();
      pairs(N);
      const s = (performance.now() - t0) / 1000;
      return [{ name: 'smmuv3.cmdq.cfgi_sync', value: N / s, unit: 'ops/s' }];
    },
  },
];
