import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodePte } from '../../../src/arch/vmsa/pte-decode.ts';

describe('VMSAv8-64 descriptor decoder', () => {
  it('decodes a stage 1 4KB page descriptor', () => {
    // AttrIndx=1, AP=0b01, SH=ISH, AF, nG, PXN, UXN, OA 0x80001000
    const d = 0x0060000080001000n | (1n << 2n) | (1n << 6n) | (3n << 8n) | (1n << 10n) | (1n << 11n) | 3n;
    const p = decodePte(d, { stage: 1, granule: 4096, level: 3 });
    expect(p.type).toBe('page');
    expect(p.outputAddress).toBe(0x80001000n);
    expect(p.mappingSize).toBe(4096n);
    expect(p.fields).toMatchObject({
      AttrIndx: 1,
      AP: 1,
      SH: 3,
      AF: true,
      nG: true,
      PXN: true,
      UXN: true,
      NS: false,
    });
  });

  it('decodes blocks per granule and level', () => {
    expect(decodePte(0x40000401n, { stage: 1, granule: 4096, level: 1 })).toMatchObject({
      type: 'block',
      outputAddress: 0x40000000n,
      mappingSize: 1n << 30n,
    });
    expect(decodePte(0x00200401n, { stage: 1, granule: 4096, level: 2 }).mappingSize).toBe(1n << 21n);
    expect(decodePte(0x02000401n, { stage: 1, granule: 16384, level: 2 }).mappingSize).toBe(1n << 25n);
    expect(decodePte(0x20000401n, { stage: 1, granule: 65536, level: 2 }).mappingSize).toBe(1n << 29n);
    expect(decodePte(0x401n, { stage: 1, granule: 4096, level: 0 }).type).toBe('reserved');
    expect(decodePte(0x401n, { stage: 1, granule: 4096, level: 3 }).type).toBe('reserved');
  });

  it('decodes table descriptors with their hierarchical attributes', () => {
    const d = 0x0000000081234003n | (1n << 59n) | (1n << 60n) | (2n << 61n) | (1n << 63n);
    expect(decodePte(d, { stage: 1, granule: 4096, level: 0 })).toMatchObject({
      type: 'table',
      outputAddress: 0x81234000n,
      fields: { PXNTable: true, UXNTable: true, APTable: 2, NSTable: true },
    });
  });

  it('puts bits [51:48] of a 64KB-granule address in descriptor bits [15:12]', () => {
    expect(
      decodePte(0x12340000n | (0xan << 12n) | 3n, { stage: 1, granule: 65536, level: 3 }).outputAddress,
    ).toBe(0xa000012340000n);
  });

  it('decodes stage 2 attributes', () => {
    const d = 0x80000000n | (0xfn << 2n) | (3n << 6n) | (3n << 8n) | (1n << 10n) | (2n << 53n) | 3n;
    expect(decodePte(d, { stage: 2, granule: 4096, level: 3 }).fields).toMatchObject({
      MemAttr: 0xf,
      S2AP: 3,
      SH: 3,
      AF: true,
      XN: 2,
    });
  });

  it('the 64KB granule has no level 0: a valid-looking descriptor there is reserved, with why', () => {
    const p = decodePte(0x40000003n, { stage: 1, granule: 65536, level: 0 });
    expect(p.type).toBe('reserved');
    expect(p.outputAddress).toBeNull();
    expect(p.notes).toEqual(['the 64KB granule has no level 0 (its lookups start at level 1)']);
    expect(decodePte(0x40000003n, { stage: 2, granule: 65536, level: 0 }).type).toBe('reserved');
    expect(decodePte(0x40000003n, { stage: 1, granule: 16384, level: 0 }).type).toBe('table');
  });

  it('reports invalid descriptors and never throws', () => {
    expect(decodePte(0x80000000n, { stage: 1, granule: 4096, level: 3 }).type).toBe('invalid');
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.constantFrom(1 as const, 2 as const),
        fc.constantFrom(4096 as const, 16384 as const, 65536 as const),
        fc.integer({ min: -1, max: 4 }),
        (d, stage, granule, level) => void decodePte(d, { stage, granule, level }),
      ),
    );
  });
});
