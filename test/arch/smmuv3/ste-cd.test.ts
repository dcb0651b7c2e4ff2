import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dwordsToWords, type FieldDef, wordsToDwords } from '../../../src/arch/smmuv3/bits.ts';
import {
  CD,
  CD_FIELDS,
  cdAsid,
  cdGranuleShift,
  cdTtb0,
  cdValid,
  decodeCd,
  encodeCd,
  encodeCdInto,
} from '../../../src/arch/smmuv3/cd.ts';
import {
  decodeSte,
  encodeSte,
  encodeSteInto,
  STE,
  STE_CONFIG,
  STE_FIELDS,
  steConfig,
  steS1ContextPtr,
  steS1Enabled,
  steS2Enabled,
  steS2Ttb,
  steS2Vmid,
  steValid,
} from '../../../src/arch/smmuv3/ste.ts';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

/** Random value for each field of a table; address fields get addresses with their low bits clear. */
function valuesFor(table: readonly FieldDef[]) {
  const rec: Record<string, fc.Arbitrary<bigint>> = {};
  for (const f of table) {
    const raw = fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n });
    rec[f.name] = f.addr ? raw.map((v) => v << BigInt(f.lsb)) : raw;
  }
  return fc.record(rec);
}

/** Same values as Numbers, for the dword encoders (addresses kept below 2^53). */
function numberValues(table: readonly FieldDef[], v: Record<string, bigint>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of table) out[f.name] = Number(v[f.name]! & ((1n << 53n) - 1n));
  return out;
}

describe('STE', () => {
  it('decodes known words by spec position', () => {
    // V=1, Config=0b101, S1ContextPtr=0x80001000, S1CDMax=0 | S1CIR=WBRA, S1COR=WBRA, S1CSH=ISH, S1STALLD, STRW=EL2
    const words = [0x8000100bn, 0x0000_1000_880000d4n, 0x0005_8010_0000_0003n, 0x0000_0000_4000_1000n];
    const v = decodeSte(words);
    expect(v.V).toBe(1n);
    expect(v.Config).toBe(BigInt(STE_CONFIG.S1_TRANS));
    expect(v.S1ContextPtr).toBe(0x80001000n);
    expect(v.S1CIR).toBe(1n);
    expect(v.S1COR).toBe(1n);
    expect(v.S1CSH).toBe(3n);
    expect(v.S1STALLD).toBe(1n);
    expect(v.STRW).toBe(2n);
    expect(v.SHCFG).toBe(1n); // bit 108: use incoming shareability
    expect(v.S2VMID).toBe(3n);
    expect(v.S2T0SZ).toBe(0x10n); // bits [165:160]
    expect(v.S2SL0).toBe(0n);
    expect(v.S2PS).toBe(5n); // bits [178:176]
    expect(v.S2AA64).toBe(0n);
    expect(v.S2TTB).toBe(0x40001000n);
  });

  it('encodes the Linux bypass STE as V=1, Config=0b100', () => {
    expect(encodeSte({ V: 1, Config: STE_CONFIG.BYPASS, SHCFG: 1 })).toEqual([
      0x9n,
      1n << 44n,
      0n,
      0n,
      0n,
      0n,
      0n,
      0n,
    ]);
  });

  it('round-trips every field through encode and decode', () => {
    fc.assert(
      fc.property(valuesFor(STE_FIELDS), (v) => {
        const words = encodeSte(v);
        expect(decodeSte(words)).toEqual(v);
        const dw = new Uint32Array(16).fill(0xffffffff);
        encodeSteInto(dw, numberValues(STE_FIELDS, v));
        const back = decodeSte(dwordsToWords(dw, 8));
        for (const f of STE_FIELDS)
          expect(back[f.name as keyof typeof back]).toBe(v[f.name]! & ((1n << 53n) - 1n));
      }),
      { numRuns: 200 },
    );
  });

  it('hot-path accessors read the same values as the decoder', () => {
    fc.assert(
      fc.property(
        fc.array(u64, { minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: 3 }),
        (words, slot) => {
          const mem = new Uint32Array(64);
          wordsToDwords(words, mem, slot * 16);
          const v = decodeSte(words);
          const off = slot * 16;
          expect(steValid(mem, off)).toBe(v.V === 1n);
          expect(steConfig(mem, off)).toBe(Number(v.Config));
          // Number() and the accessor round an address above 2^53 the same way.
          expect(steS1ContextPtr(mem, off)).toBe(Number(v.S1ContextPtr));
          expect(BigInt(steS2Ttb(mem, off))).toBe(v.S2TTB);
          expect(steS2Vmid(mem, off)).toBe(Number(v.S2VMID));
        },
      ),
    );
  });

  it('classifies Config values by enabled stages', () => {
    expect([0, 4, 5, 6, 7].map((c) => [steS1Enabled(c), steS2Enabled(c)])).toEqual([
      [false, false],
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]);
  });

  it('keeps field definitions inside their words and without overlaps', () => {
    const used = new Array<bigint>(8).fill(0n);
    for (const f of STE_FIELDS) {
      const m = ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
      expect(used[f.word]! & m).toBe(0n);
      used[f.word] = used[f.word]! | m;
    }
    expect(STE.S1DSS.word).toBe(1);
    expect(STE.S2VMID.word).toBe(2);
  });
});

describe('CD', () => {
  it('decodes a Linux-style stage 1 CD by spec position', () => {
    // T0SZ=16, TG0=4KB, IR0=OR0=WBRAWA, SH0=ISH, EPD1, V, IPS=48 bits, AA64, R, A, ASET, ASID=0x1234
    const w0 = 0x10n | (1n << 8n) | (1n << 10n) | (3n << 12n) | (1n << 30n) | (1n << 31n);
    const w0hi = (5n << 32n) | (1n << 41n) | (1n << 45n) | (1n << 46n) | (1n << 47n) | (0x1234n << 48n);
    const words = [w0 | w0hi, 0x0000_0008_1234_5000n, 0n, 0x0000_0000_0004_ff44n];
    const v = decodeCd(words);
    expect(v.T0SZ).toBe(16n);
    expect(v.TG0).toBe(0n);
    expect(v.IR0).toBe(1n);
    expect(v.OR0).toBe(1n);
    expect(v.SH0).toBe(3n);
    expect(v.EPD1).toBe(1n);
    expect(v.V).toBe(1n);
    expect(v.IPS).toBe(5n);
    expect(v.AA64).toBe(1n);
    expect(v.R).toBe(1n);
    expect(v.A).toBe(1n);
    expect(v.S).toBe(0n);
    expect(v.ASET).toBe(1n);
    expect(v.ASID).toBe(0x1234n);
    expect(v.TTB0).toBe(0x812345000n);
    expect(v.MAIR0).toBe(0x0004ff44n);
    const dw = wordsToDwords(words);
    expect(cdValid(dw)).toBe(true);
    expect(cdAsid(dw)).toBe(0x1234);
    expect(cdTtb0(dw)).toBe(0x812345000);
    expect(cdGranuleShift(dw, 0)).toBe(12);
  });

  it('uses the different TG1 encoding', () => {
    const dw = wordsToDwords(encodeCd({ TG1: 2, TG0: 1 }));
    expect(cdGranuleShift(dw, 1)).toBe(12);
    expect(cdGranuleShift(dw, 0)).toBe(16);
  });

  it('round-trips every field through encode and decode', () => {
    fc.assert(
      fc.property(valuesFor(CD_FIELDS), (v) => {
        expect(decodeCd(encodeCd(v))).toEqual(v);
        const dw = new Uint32Array(16);
        encodeCdInto(dw, numberValues(CD_FIELDS, v));
        expect(decodeCd(dwordsToWords(dw, 8))).toEqual(v);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses unknown field names and values that do not fit', () => {
    expect(() => encodeCd({ ASID: 1n << 16n })).toThrow(RangeError);
    expect(() => encodeCd({ TTB0: 0x1001n })).toThrow(RangeError);
    expect(() => encodeCd({ Bogus: 1 } as never)).toThrow(/unknown field/);
    expect(CD.V.lsb).toBe(31);
  });

  it('never throws decoding random words', () => {
    fc.assert(
      fc.property(fc.array(u64, { maxLength: 10 }), (words) => {
        decodeCd(words);
        decodeSte(words);
      }),
    );
  });
});
