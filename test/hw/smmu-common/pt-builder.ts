// Test helper: builds VMSAv8-64 translation tables as bytes in simulated memory, the way a
// driver does (tables from the page allocator, descriptors written with write64). Plain code,
// BigInt allowed: it is not the model under test.

import { addressBits } from '../../../src/arch/vmsa/descriptor.ts';
import { levelShift, s1StartLevel, s2StartBits } from '../../../src/arch/vmsa/granule.ts';
import type { Machine } from '../../../src/platform/machine.ts';

// stage-1 leaf attribute bits (lo): valid|AF|SH=inner|AttrIndx 0|AP=01 (RW at EL1 and EL0)
export const S1_LEAF = 1 | (1 << 10) | (3 << 8) | (1 << 6);
// stage-2 leaf: valid|AF|SH=inner|MemAttr normal WB (0xF)|S2AP RW
export const S2_LEAF = 1 | (1 << 10) | (3 << 8) | (0xf << 2) | (3 << 6);

export interface LeafAttrs {
  /** bits OR'd into the low half (AP, AF, nG, ...). Default S1_LEAF/S2_LEAF. */
  lo?: number;
  /** bits OR'd into the high half (XN/PXN/UXN/DBM as masks on hi). */
  hi?: number;
}

export class PtBuilder {
  readonly root: number;
  readonly start: number;
  readonly startBits: number;
  readonly tables: number[] = [];

  constructor(
    readonly m: Machine,
    readonly g: number,
    readonly stage: 1 | 2,
    readonly ia: number,
    startLevel?: number,
    /** Table descriptors hold (PA - tableOffset): stage-1 tables addressed by IPA when nested. */
    readonly tableOffset = 0,
  ) {
    this.start = startLevel ?? s1StartLevel(g, ia);
    this.startBits = stage === 2 ? s2StartBits(g, ia, this.start) : ia - levelShift(g, this.start);
    if (this.startBits < 1) throw new Error(`bad start level ${this.start} for ia ${ia}`);
    const bytes = Math.max(8 * 2 ** this.startBits, 2 ** g);
    this.root = this.allocTable(bytes);
  }

  allocTable(bytes = 2 ** this.g): number {
    const order = Math.max(0, Math.ceil(Math.log2(bytes)) - 12);
    const pa = this.m.pages.alloc(order, 'pt-test');
    if (pa < 0) throw new Error('out of memory');
    this.tables.push(pa);
    return pa;
  }

  index(va: number, level: number): number {
    const sh = levelShift(this.g, level);
    const nb = level === this.start ? this.startBits : this.g - 3;
    return Number((BigInt(va) >> BigInt(sh)) & ((1n << BigInt(nb)) - 1n));
  }

  read(pa: number): [number, number] {
    if (this.m.mem.read64(pa) !== 0) throw new Error(`read fault at ${pa.toString(16)}`);
    return [this.m.mem.r64[0]!, this.m.mem.r64[1]!];
  }

  /** PA of the descriptor for va at `level`, creating tables above it. */
  slot(va: number, level: number): number {
    let table = this.root;
    for (let l = this.start; l < level; l++) {
      const pa = table + this.index(va, l) * 8;
      const [lo, hi] = this.read(pa);
      if ((lo & 3) === 3) {
        table = descTable(lo, hi, this.g) + this.tableOffset;
        continue;
      }
      const t = this.allocTable();
      const [tlo, thi] = addressBits(t - this.tableOffset, this.g);
      this.m.mem.write64(pa, tlo | 3, thi);
      table = t;
    }
    return table + this.index(va, level) * 8;
  }

  /** Map va -> pa with a leaf at `level` (3 = page). */
  map(va: number, pa: number, level = 3, attrs: LeafAttrs = {}): number {
    const slot = this.slot(va, level);
    const [lo, hi] = addressBits(pa, this.g);
    const base = attrs.lo ?? (this.stage === 1 ? S1_LEAF : S2_LEAF);
    this.m.mem.write64(slot, lo | base | (level === 3 ? 2 : 0), hi | (attrs.hi ?? 0));
    return slot;
  }

  /** Write a raw descriptor at the slot for va/level. */
  writeRaw(va: number, level: number, lo: number, hi: number): number {
    const slot = this.slot(va, level);
    this.m.mem.write64(slot, lo, hi);
    return slot;
  }
}

function descTable(lo: number, hi: number, g: number): number {
  if (g === 16) return (hi & 0xffff) * 2 ** 32 + ((lo & 0xffff0000) >>> 0) + ((lo >>> 12) & 0xf) * 2 ** 48;
  return (hi & 0x3ffff) * 2 ** 32 + ((lo & ~((1 << g) - 1)) >>> 0);
}
