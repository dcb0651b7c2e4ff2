import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUS_ERROR, MmioBus, type MmioDevice, PhysicalMemory } from '../../src/platform/index.ts';

const RAM = 0x8000_0000;
const SIZE = 64 * 4096;

function mk(base = RAM, ram = [{ base, size: SIZE }]): { mem: PhysicalMemory; bus: MmioBus } {
  const bus = new MmioBus();
  return { mem: new PhysicalMemory(bus, ram), bus };
}

const GIB = 2 ** 30;

/** Reference model: a plain byte array over the same window. */
class RefMem {
  bytes = new Uint8Array(SIZE);
  constructor(readonly base: number) {}
  read(pa: number, w: number): bigint {
    let v = 0n;
    for (let i = w - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[pa - this.base + i]!);
    return v;
  }
  write(pa: number, w: number, v: bigint): void {
    for (let i = 0; i < w; i++) this.bytes[pa - this.base + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  }
}

function readW(mem: PhysicalMemory, pa: number, w: number): bigint {
  if (w === 8) {
    expect(mem.read64(pa)).toBe(0);
    return (BigInt(mem.r64[1]! >>> 0) << 32n) | BigInt(mem.r64[0]! >>> 0);
  }
  const v = w === 1 ? mem.read8(pa) : w === 2 ? mem.read16(pa) : mem.read32(pa);
  expect(v).toBeGreaterThanOrEqual(0);
  return BigInt(v);
}

function writeW(mem: PhysicalMemory, pa: number, w: number, v: bigint): void {
  const lo = Number(v & 0xffffffffn);
  const hi = Number((v >> 32n) & 0xffffffffn);
  const r =
    w === 1
      ? mem.write8(pa, lo)
      : w === 2
        ? mem.write16(pa, lo)
        : w === 4
          ? mem.write32(pa, lo)
          : mem.write64(pa, lo, hi);
  expect(r).toBe(0);
}

describe('physical memory', () => {
  it('reads untouched RAM as zero without creating frames', () => {
    const { mem } = mk();
    expect(mem.read32(RAM + 0x1000)).toBe(0);
    expect(mem.read64(RAM + 0x2000)).toBe(0);
    expect([mem.r64[0], mem.r64[1]]).toEqual([0, 0]);
    expect(mem.touchedFrames).toBe(0);
  });

  it('is little-endian across widths', () => {
    const { mem } = mk();
    mem.write64(RAM, 0x44332211, 0x88776655 | 0);
    expect(mem.read8(RAM)).toBe(0x11);
    expect(mem.read16(RAM + 1)).toBe(0x3322);
    expect(mem.read32(RAM + 4)).toBe(0x88776655);
    expect(mem.read32(RAM + 2)).toBe(0x66554433);
    mem.write64n(RAM + 8, 2 ** 52 + 12345);
    expect(mem.read64n(RAM + 8)).toBe(2 ** 52 + 12345);
    expect(mem.read32(RAM + 12)).toBe(0x100000);
  });

  // the window fuzzed: in the dense window (low RAM, and RAM above 1 TiB), across the dense
  // window's end (it stops at a 4 GiB boundary) into segment frames under the direct index, and
  // in segment frames above 1 TiB (the hashed index)
  it.each([
    { name: 'dense, low', RAM, ram: [{ base: RAM, size: SIZE }] },
    { name: 'dense, above 1 TiB', RAM: 2 ** 45 + 0x3000, ram: [{ base: 2 ** 45 + 0x3000, size: SIZE }] },
    {
      name: 'across the end of the dense window',
      RAM: 4 * GIB - SIZE / 2,
      ram: [{ base: 2 * GIB, size: 4 * GIB }],
    },
    { name: 'segments, hashed', RAM: 2 ** 45 + 4 * GIB + 0x3000, ram: [{ base: 2 ** 45, size: 8 * GIB }] },
  ])(
    'matches a reference byte array under random mixed-width accesses and copies across page boundaries ($name)',
    ({ RAM, ram }) => {
      const op = fc.oneof(
        fc.record({
          kind: fc.constant('write' as const),
          w: fc.constantFrom(1, 2, 4, 8),
          off: fc.integer({ min: 0, max: SIZE - 8 }),
          v: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        }),
        fc.record({
          kind: fc.constant('read' as const),
          w: fc.constantFrom(1, 2, 4, 8),
          off: fc.integer({ min: 0, max: SIZE - 8 }),
        }),
        fc.record({
          kind: fc.constant('copy' as const),
          src: fc.integer({ min: 0, max: SIZE - 1 }),
          dst: fc.integer({ min: 0, max: SIZE - 1 }),
          len: fc.integer({ min: 0, max: 3 * 4096 }),
        }),
        fc.record({
          kind: fc.constant('fill' as const),
          off: fc.integer({ min: 0, max: SIZE - 1 }),
          len: fc.integer({ min: 0, max: 2 * 4096 }),
          b: fc.integer({ min: 0, max: 255 }),
        }),
        fc.record({
          kind: fc.constant('bulk' as const),
          off: fc.integer({ min: 0, max: SIZE - 1 }),
          data: fc.uint8Array({ minLength: 0, maxLength: 6000 }),
        }),
      );
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
          const { mem } = mk(RAM, ram);
          const ref = new RefMem(RAM);
          for (const o of ops) {
            if (o.kind === 'write') {
              const v = o.v & ((1n << BigInt(8 * o.w)) - 1n);
              writeW(mem, RAM + o.off, o.w, v);
              ref.write(RAM + o.off, o.w, v);
            } else if (o.kind === 'read') {
              expect(readW(mem, RAM + o.off, o.w)).toBe(ref.read(RAM + o.off, o.w));
            } else if (o.kind === 'copy') {
              const len = Math.min(o.len, SIZE - o.src, SIZE - o.dst);
              expect(mem.copy(RAM + o.dst, RAM + o.src, len)).toBe(0);
              ref.bytes.copyWithin(o.dst, o.src, o.src + len);
            } else if (o.kind === 'fill') {
              const len = Math.min(o.len, SIZE - o.off);
              expect(mem.fill(RAM + o.off, len, o.b)).toBe(0);
              ref.bytes.fill(o.b, o.off, o.off + len);
            } else {
              const len = Math.min(o.data.length, SIZE - o.off);
              expect(mem.writeBytes(RAM + o.off, o.data, 0, len)).toBe(0);
              ref.bytes.set(o.data.subarray(0, len), o.off);
            }
          }
          const all = new Uint8Array(SIZE);
          expect(mem.readBytes(RAM, all)).toBe(0);
          expect(Buffer.from(all).equals(Buffer.from(ref.bytes))).toBe(true);
        }),
        { numRuns: 150 },
      );
    },
  );

  it('lays out the dense window like the addresses: walkers read words from the PA alone', () => {
    const bus = new MmioBus();
    // 4 GiB of RAM at 3 GiB: the window is its first GiB (it stops at the 4 GiB boundary)
    const mem = new PhysicalMemory(bus, [{ base: 3 * GIB, size: 4 * GIB }]);
    expect(mem.denseSize).toBe(0); // placed at the first store
    expect(mem.write64(3 * GIB + 0x12_3458, 0x11223344, 0x55667788)).toBe(0);
    expect(mem.denseBase).toBe(3 * GIB);
    expect(mem.denseSize).toBe(GIB);
    const word = (pa: number): number | undefined =>
      mem.lowDenseWords()[((pa - mem.lowDenseBase) >>> 0) >>> 2];
    expect(word(3 * GIB + 0x12_3458)).toBe(0x11223344);
    expect(word(3 * GIB + 0x12_345c)).toBe(0x55667788);
    expect(word(3 * GIB + 0x12_4000)).toBe(0); // an untouched frame the buffer covers
    expect(word(3 * GIB + 0x3000_0000)).toBe(undefined); // beyond what was ever written
    // host memory: the window's buffer is one segment (2 MiB) so far
    expect(mem.footprintBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    expect(mem.footprintBytes).toBeLessThan(3 * 1024 * 1024);
    // a store straddling the window's end, and frames beyond it, read back through the API
    expect(mem.write64(4 * GIB - 4, 0xaabbccdd | 0, 0x01020304)).toBe(0);
    expect(mem.read64(4 * GIB - 4)).toBe(0);
    expect([mem.r64[0]! >>> 0, mem.r64[1]]).toEqual([0xaabbccdd, 0x01020304]);
    expect(word(4 * GIB - 4)).toBe(0xaabbccdd | 0);
    // the buffer grew to the whole window, and kept what was written before
    expect(mem.lowDenseWords().length).toBe(GIB / 4);
    expect(word(3 * GIB + 0x12_3458)).toBe(0x11223344);
    expect(word(3 * GIB + 0x3000_0000)).toBe(0);
    expect(mem.touchedFrames).toBe(3);
    // host memory: 4 KiB per window frame written (a 1 GiB buffer is a fresh mapping, committed
    // as touched) and one small segment frame, not the window's size
    expect(mem.footprintBytes).toBeGreaterThanOrEqual(2 * 4096 + 256 * 1024);
    expect(mem.footprintBytes).toBeLessThan(1024 * 1024);
  });

  it('answers BUS_ERROR outside RAM and MMIO, and reports it', () => {
    const { mem, bus } = mk();
    const seen: string[] = [];
    bus.onError = (e) => seen.push(e.reason);
    expect(mem.read32(0x1000)).toBe(BUS_ERROR);
    expect(mem.write64(0x1000, 1, 2)).toBe(BUS_ERROR);
    expect(mem.read64(RAM + SIZE - 4)).toBe(BUS_ERROR); // straddles the end of RAM
    expect(mem.read32(2 ** 52)).toBe(BUS_ERROR);
    expect(mem.read32(-4)).toBe(BUS_ERROR);
    expect(mem.readBytes(RAM + SIZE - 10, new Uint8Array(20))).toBe(BUS_ERROR);
    expect(bus.errors).toBe(6);
    expect(seen[0]).toMatch(/not RAM and no MMIO device/);
  });

  it('covers the 52-bit space sparsely', () => {
    const bus = new MmioBus();
    const top = 2 ** 52 - 2 ** 30;
    const mem = new PhysicalMemory(bus, [{ base: top, size: 2 ** 30 }]);
    mem.write64(2 ** 52 - 8, 0x12345678, 0x0abcdef0);
    expect(mem.read64(2 ** 52 - 8)).toBe(0);
    expect(mem.r64[0]).toBe(0x12345678);
    expect(mem.touchedFrames).toBe(1);
    // the dense window's buffer at its smallest (one 2 MiB segment) and the index, not 1 GiB
    expect(mem.footprintBytes).toBeLessThan(4 * 1024 * 1024);
  });

  it('routes non-RAM addresses to MMIO devices, 32 and 64 bits', () => {
    const { mem, bus } = mk();
    const regs = new Map<number, number>();
    const dev: MmioDevice = {
      name: 'test',
      read32: (o) => regs.get(o) ?? 0xdead,
      write32: (o, v) => void regs.set(o, v),
    };
    bus.map(0x1000_0000, 0x1000, dev);
    expect(mem.write32(0x1000_0010, 0xcafe)).toBe(0);
    expect(mem.read32(0x1000_0010)).toBe(0xcafe);
    expect(mem.write64(0x1000_0020, 1, 2)).toBe(0);
    expect([regs.get(0x20), regs.get(0x24)]).toEqual([1, 2]);
    expect(mem.read8(0x1000_0010)).toBe(BUS_ERROR); // byte access to registers
    expect(bus.read32(0x1000_0ffe)).toBe(BUS_ERROR); // unaligned
    expect(bus.read32(0x2000_0000)).toBe(BUS_ERROR); // no device
  });

  it('tells watchers of every store into their range, after the bytes land', () => {
    const { mem } = mk();
    const seen: Array<[number, number, number]> = [];
    const stop = mem.watch(RAM + 0x100, 0x40, (pa, size) =>
      seen.push([pa - RAM, size, mem.read32(RAM + 0x100)]),
    );
    mem.write32(RAM + 0x100, 7);
    mem.write64(RAM + 0x138, 1, 1);
    mem.write64(RAM + 0x140, 1, 1); // outside
    mem.writeBytes(RAM + 0xf0, new Uint8Array(32));
    stop();
    mem.write32(RAM + 0x100, 9);
    expect(seen).toEqual([
      [0x100, 4, 7],
      [0x138, 8, 7],
      [0xf0, 32, 0],
    ]);
  });
});
