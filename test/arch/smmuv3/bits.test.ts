import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dwordsToWords,
  type FieldDef,
  field,
  getAddrHi,
  getAddrLo,
  getField,
  getFieldBig,
  setAddrLoHi,
  setField,
  setFieldBig,
  wordsToDwords,
} from '../../../src/arch/smmuv3/bits.ts';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

// A random field that fits in one 64-bit word: non-address up to 32 bits, address up to 53 bits.
const anyField = fc
  .record({ word: fc.integer({ min: 0, max: 3 }), lsb: fc.integer({ min: 0, max: 63 }), addr: fc.boolean() })
  .chain(({ word, lsb, addr }) =>
    fc
      .integer({ min: 1, max: Math.min(64 - lsb, addr ? (53 - lsb > 0 ? 53 - lsb : 1) : 32) })
      .map((width) => field('F', word * 64 + lsb, width, { addr })),
  );

describe('field accessors', () => {
  it('dword reads agree with the BigInt reference for any words and field', () => {
    fc.assert(
      fc.property(fc.array(u64, { minLength: 4, maxLength: 4 }), anyField, (words, f) => {
        const dw = wordsToDwords(words);
        const ref = getFieldBig(words, f);
        if (f.lsb + f.width <= 53 || !f.addr) expect(BigInt(getField(dw, f))).toBe(ref);
        const exact = (BigInt(getAddrHi(dw, f)) << 32n) | BigInt(getAddrLo(dw, f));
        if (f.addr) expect(exact).toBe(ref);
      }),
    );
  });

  it('dword writes change exactly the field, like the BigInt reference', () => {
    fc.assert(
      fc.property(fc.array(u64, { minLength: 4, maxLength: 4 }), anyField, u64, (words, f, raw) => {
        const mask = ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
        const value = f.addr ? raw & mask : raw & ((1n << BigInt(f.width)) - 1n);
        const ref = [...words];
        setFieldBig(ref, f, value);
        const dw = wordsToDwords(words);
        if (f.addr) setAddrLoHi(dw, f, Number(value & 0xffffffffn), Number(value >> 32n));
        else setField(dw, f, Number(value));
        expect(dwordsToWords(dw, 4)).toEqual(ref);
      }),
    );
  });

  it('rejects values that do not fit when encoding with BigInt', () => {
    const f: FieldDef = field('X', 4, 3);
    expect(() => setFieldBig([0n], f, 8n)).toThrow(RangeError);
    const a: FieldDef = field('A', 12, 20, { addr: true });
    expect(() => setFieldBig([0n], a, 0x1001n)).toThrow(RangeError);
  });

  it('reads a field that straddles the two dwords of a word', () => {
    const f = field('S', 28, 8); // bits [35:28]
    const dw = new Uint32Array([0xa0000000, 0x0000000b]);
    expect(getField(dw, f)).toBe(0xba);
    setField(dw, f, 0x5c);
    expect([...dw]).toEqual([0xc0000000, 0x00000005]);
  });
});
