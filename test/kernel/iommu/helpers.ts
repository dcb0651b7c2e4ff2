// Shared helpers for the IOMMU tests: machines, io-pgtable configurations, a checking dummy TLB.

import { type ArmLpaeIoPgtable, allocIoPgtableOps } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import {
  IO_PGTABLE_QUIRK_NO_WARN,
  type IommuFlushOps,
  type IoPgtableCfg,
  type IoPgtableFmt,
  machinePgtableEnv,
  pgsizes,
} from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { Machine } from '../../../src/platform/machine.ts';

export const SZ_4K = 0x1000;
export const SZ_16K = 0x4000;
export const SZ_64K = 0x10000;
export const SZ_2M = 0x200000;
export const SZ_32M = 0x2000000;
export const SZ_512M = 0x20000000;
export const SZ_1G = 0x40000000;

/** The self-test's page-size sets and address sizes (arm_lpae_do_selftests). */
export const SELFTEST_PGSIZES = [SZ_4K + SZ_2M + SZ_1G, SZ_16K + SZ_32M, SZ_64K + SZ_512M];
export const SELFTEST_ADDRESS_SIZES = [32, 36, 40, 42, 44, 48];

export function newMachine(seed = 1): Machine {
  return new Machine({ seed });
}

/** dummy_tlb_ops of the self-test: checks the cookie and that every flushed size is a page size. */
export class CheckingTlb implements IommuFlushOps {
  flushAll = 0;
  flushWalk = 0;
  addPage = 0;
  readonly errors: string[] = [];
  constructor(
    readonly cookie: unknown,
    readonly cfg: () => IoPgtableCfg,
  ) {}
  private check(cookie: unknown, size: number, what: string): void {
    if (cookie !== this.cookie) this.errors.push(`${what}: wrong cookie`);
    if (!pgsizes(this.cfg().pgsizeBitmap).includes(size))
      this.errors.push(`${what}: size ${size} is not a page size`);
  }
  tlbFlushAll(cookie: unknown): void {
    this.flushAll++;
    if (cookie !== this.cookie) this.errors.push('flush_all: wrong cookie');
  }
  tlbFlushWalk(_iova: number, size: number, granule: number, cookie: unknown): void {
    this.flushWalk++;
    this.check(cookie, size, 'flush_walk');
    this.check(cookie, granule, 'flush_walk granule');
  }
  tlbAddPage(_g: unknown, _iova: number, granule: number, cookie: unknown): void {
    this.addPage++;
    this.check(cookie, granule, 'add_page');
  }
}

export interface PgtableFixture {
  m: Machine;
  ops: ArmLpaeIoPgtable;
  cfg: IoPgtableCfg;
  tlb: CheckingTlb;
}

export function makePgtable(
  fmt: IoPgtableFmt,
  pgsizeBitmap: number,
  ias: number,
  oas: number,
  opts: { m?: Machine; quirks?: number; freeEmptyTables?: boolean } = {},
): PgtableFixture {
  const m = opts.m ?? newMachine();
  const cookie = { name: 'selftest-cookie' };
  const cfg: IoPgtableCfg = {
    quirks: opts.quirks ?? IO_PGTABLE_QUIRK_NO_WARN,
    pgsizeBitmap,
    ias,
    oas,
    coherentWalk: true,
    tlb: null,
    freeEmptyTables: opts.freeEmptyTables ?? false,
  };
  const tlb = new CheckingTlb(cookie, () => cfg);
  cfg.tlb = tlb;
  const ops = allocIoPgtableOps(fmt, cfg, cookie, machinePgtableEnv(m));
  if (ops === null)
    throw new Error(`alloc_io_pgtable_ops failed for ${fmt} ${pgsizeBitmap.toString(16)} ${ias}/${oas}`);
  return { m, ops, cfg, tlb };
}

/** Deterministic xorshift32 for tests that need many random numbers cheaply. */
export class XorShift {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x2545f491;
  }
  next(): number {
    let s = this.s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s >>> 0;
    return this.s;
  }
  below(n: number): number {
    return n <= 2 ** 32
      ? Math.floor((this.next() / 2 ** 32) * n)
      : (this.next() * 2 ** 21 + (this.next() >>> 11)) % n;
  }
}
