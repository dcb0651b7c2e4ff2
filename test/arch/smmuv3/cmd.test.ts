import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dwordsToWords, wordsToDwords } from '../../../src/arch/smmuv3/bits.ts';
import {
  ALL_COMMAND_FEATURES,
  CMD_SPECS,
  type CommandName,
  checkCommand,
  commandName,
  decodeCommand,
  encodeCommand,
  encodeCommandInto,
  validateCommand,
} from '../../../src/arch/smmuv3/cmd.ts';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const check = (words: bigint[], features = ALL_COMMAND_FEATURES) =>
  validateCommand(wordsToDwords(words), features);

describe('command layouts', () => {
  it('encodes commands at the spec bit positions', () => {
    expect(encodeCommand('CFGI_STE', { StreamID: 0x42, Leaf: 1 })).toEqual([0x0000004200000003n, 1n]);
    expect(encodeCommand('CFGI_ALL')).toEqual([0x4n, 31n]);
    expect(
      encodeCommand('TLBI_NH_VA', { VMID: 5, ASID: 7, Address: 0x7ffff000n, Leaf: true, TTL: 3, TG: 1 }),
    ).toEqual([0x0007000500000012n, 0x7ffff000n | 1n | (3n << 8n) | (1n << 10n)]);
    expect(
      encodeCommand('SYNC', {
        CS: 1,
        MSIData: 0xdeadbeef,
        MSIAddress: 0x123456789ab0n,
        MSH: 3,
        MSIAttr: 0xf,
      }),
    ).toEqual([0xdeadbeef0fc01046n, 0x123456789ab0n]);
    expect(
      encodeCommand('PRI_RESP', { SSV: 1, SubstreamID: 3, StreamID: 0x10, PRIGroupID: 0x1ff, Resp: 2 }),
    ).toEqual([0x0000001000003841n, 0x21ffn]);
    expect(encodeCommand('RESUME', { StreamID: 9, Ac: 1, STAG: 0x55 })).toEqual([0x0000000900001044n, 0x55n]);
    expect(
      encodeCommand('ATC_INV', { StreamID: 2, SSV: 1, SubstreamID: 1, Global: 0, Size: 52, Address: 0 }),
    ).toEqual([0x0000000200001840n, 52n]);
    expect(encodeCommand('TLBI_S2_IPA', { VMID: 1, Address: 0x8000_0000n, NUM: 3, SCALE: 1 })).toEqual([
      0x000000010010302an,
      0x80000000n,
    ]);
  });

  it('decodes known words to command names and fields', () => {
    expect(decodeCommand([0x0000000900001044n, 0x55n])).toMatchObject({
      name: 'RESUME',
      fields: { StreamID: 9n, Ac: 1n, Ab: 0n, STAG: 0x55n },
    });
    expect(decodeCommand([0x4n, 31n]).name).toBe('CFGI_ALL');
    expect(decodeCommand([0x4n, 7n]).name).toBe('CFGI_STE_RANGE');
    expect(decodeCommand([0x46n, 0n]).name).toBe('SYNC');
    expect(decodeCommand([0x30n, 0n]).name).toBe('TLBI_NSNH_ALL');
    expect(decodeCommand([0x99n, 0n]).name).toBeUndefined();
    expect(commandName(new Uint32Array([0x10, 0, 0, 0]))).toBe('TLBI_NH_ALL');
  });

  it('round-trips the fields of every command', () => {
    const names = Object.keys(CMD_SPECS) as CommandName[];
    const arb = fc.constantFrom(...names).chain((name) => {
      const rec: Record<string, fc.Arbitrary<bigint>> = {};
      for (const f of CMD_SPECS[name].fields) {
        if (f.name === 'Opcode' || (name === 'CFGI_ALL' && f.name === 'Range')) continue;
        const raw = fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n });
        rec[f.name] = f.addr ? raw.map((v) => v << BigInt(f.lsb)) : raw;
      }
      return fc.record(rec).map((values) => ({ name, values }));
    });
    fc.assert(
      fc.property(arb, ({ name, values }) => {
        const words = encodeCommand(name, values);
        const d = decodeCommand(words);
        expect(
          d.name === name || (name === 'CFGI_STE_RANGE' && values.Range === 31n && d.name === 'CFGI_ALL'),
        ).toBe(true);
        for (const [k, v] of Object.entries(values)) expect(d.fields[k]).toBe(v);
        if (Object.values(values).every((v) => v < 1n << 53n)) {
          const dw = new Uint32Array(4).fill(0xffffffff);
          const nums = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number(v)]));
          encodeCommandInto(dw, name, nums);
          expect(dwordsToWords(dw, 2)).toEqual(words);
        }
        expect(check(words, { ...ALL_COMMAND_FEATURES, secure: true }).reservedBits).toEqual([0, 0, 0, 0]);
      }),
      { numRuns: 300 },
    );
  });
});

describe('validateCommand', () => {
  it('checkCommand (allocation-free) gives the same verdict on any command and feature set', () => {
    const opcodes = [...new Set(Object.values(CMD_SPECS).map((x) => x.opcode)), 0x00, 0x99, 0xff];
    const bits = fc.oneof(
      fc.constant(0),
      fc.nat(0xffffffff),
      fc.integer({ min: 0, max: 31 }).map((b) => 2 ** b),
    );
    const arb = fc.record({
      op: fc.constantFrom(...opcodes),
      d: fc.tuple(bits, bits, bits, bits),
      f: fc.record({
        ril: fc.boolean(),
        stall: fc.boolean(),
        pri: fc.boolean(),
        ats: fc.boolean(),
        s1: fc.boolean(),
        s2: fc.boolean(),
        hyp: fc.boolean(),
        secure: fc.boolean(),
      }),
    });
    fc.assert(
      fc.property(arb, ({ op, d, f }) => {
        const dw = new Uint32Array([((d[0] & ~0xff) | op) >>> 0, d[1], d[2], d[3]]);
        const v = validateCommand(dw, f);
        expect(checkCommand(dw, f)).toBe(v.ok ? op : -1);
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts well-formed commands', () => {
    expect(check(encodeCommand('SYNC', { CS: 1 })).ok).toBe(true);
    expect(check(encodeCommand('CFGI_ALL')).ok).toBe(true);
  });

  it('reports an unknown opcode', () => {
    const v = check([0x99n, 0n]);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatch(/unknown opcode 0x99/);
  });

  it('reports RES0 bits that are set, per dword', () => {
    const v = check([0x46n | (1n << 8n), 1n]); // CMD_SYNC bit 8 and word 1 bit 0 are RES0
    expect(v.ok).toBe(false);
    expect(v.reservedBits).toEqual([0x100, 0, 1, 0]);
    expect(v.problems.join()).toMatch(/RES0/);
    expect(check([0x3n, 2n]).reservedBits).toEqual([0, 0, 2, 0]); // CFGI_STE word 1 bit 1
  });

  it('reports reserved encodings', () => {
    expect(check([0x46n | (3n << 12n), 0n]).problems).toContain('CS == 0b11 is reserved');
  });

  it('reports commands for features the SMMU does not advertise', () => {
    const none = { ril: false, stall: false, pri: false, ats: false, s1: true, s2: false, hyp: false };
    expect(check(encodeCommand('TLBI_EL2_ALL'), none).ok).toBe(false);
    expect(check(encodeCommand('TLBI_S12_VMALL'), none).ok).toBe(false);
    expect(check(encodeCommand('ATC_INV'), none).ok).toBe(false);
    expect(check(encodeCommand('PRI_RESP'), none).ok).toBe(false);
    expect(check(encodeCommand('RESUME'), none).ok).toBe(false);
    expect(check(encodeCommand('STALL_TERM'), none).ok).toBe(false);
    expect(check(encodeCommand('TLBI_EL3_ALL')).ok).toBe(false); // Non-secure queue
    expect(check(encodeCommand('TLBI_NH_ALL'), none).ok).toBe(true);
    // Without range invalidation NUM/SCALE are RES0.
    const ranged = encodeCommand('TLBI_NH_VA', { NUM: 1, Address: 0x1000n });
    expect(check(ranged).ok).toBe(true);
    expect(check(ranged, none).reservedBits[0]).toBe(0x1000);
    // SSec is only usable from the Secure queue.
    expect(check(encodeCommand('CFGI_STE', { SSec: 1 })).ok).toBe(false);
    expect(check(encodeCommand('CFGI_STE', { SSec: 1 }), { ...ALL_COMMAND_FEATURES, secure: true }).ok).toBe(
      true,
    );
  });

  it('never throws on random words', () => {
    fc.assert(
      fc.property(u64, u64, (a, b) => {
        const v = check([a, b]);
        expect(typeof v.ok).toBe('boolean');
        decodeCommand([a, b]);
      }),
    );
  });
});
