import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dwordsToWords, wordsToDwords } from '../../../src/arch/smmuv3/bits.ts';
import {
  decodeEvent,
  EVT_ID,
  EVT_SPECS,
  type EventName,
  encodeEventInto,
  eventName,
  evtInputAddrHi,
  evtInputAddrLo,
  evtSsv,
  evtStag,
  evtStall,
  evtStreamId,
  evtSubstreamId,
  evtType,
} from '../../../src/arch/smmuv3/event.ts';
import {
  decodePri,
  encodePriInto,
  priIsStopMarker,
  priLast,
  priPrgIndex,
  priStreamId,
} from '../../../src/arch/smmuv3/pri.ts';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

describe('event records', () => {
  it('names every architected event number', () => {
    const expected: [number, string][] = [
      [0x01, 'F_UUT'],
      [0x02, 'C_BAD_STREAMID'],
      [0x03, 'F_STE_FETCH'],
      [0x04, 'C_BAD_STE'],
      [0x05, 'F_BAD_ATS_TREQ'],
      [0x06, 'F_STREAM_DISABLED'],
      [0x07, 'F_TRANSL_FORBIDDEN'],
      [0x08, 'C_BAD_SUBSTREAMID'],
      [0x09, 'F_CD_FETCH'],
      [0x0a, 'C_BAD_CD'],
      [0x0b, 'F_WALK_EABT'],
      [0x10, 'F_TRANSLATION'],
      [0x11, 'F_ADDR_SIZE'],
      [0x12, 'F_ACCESS'],
      [0x13, 'F_PERMISSION'],
      [0x20, 'F_TLB_CONFLICT'],
      [0x21, 'F_CFG_CONFLICT'],
      [0x24, 'E_PAGE_REQUEST'],
      [0x25, 'F_VMS_FETCH'],
    ];
    for (const [code, name] of expected) expect(eventName(code)).toBe(name);
    expect(eventName(0xe3)).toBe('IMPDEF_EVENT3');
    expect(eventName(0x99)).toBe('UNKNOWN');
  });

  it('decodes the stage 2 translation fault Xen printed on QEMU virt', () => {
    // (XEN) SMMUv3: /smmuv3@9050000: event 0x10 received: 0x0000000800000010 0x0000008000000000 0x0000000008090040 0x0
    const e = decodeEvent([0x0000000800000010n, 0x0000008000000000n, 0x0000000008090040n, 0n]);
    expect(e).toMatchObject({
      name: 'F_TRANSLATION',
      streamId: 8,
      ssv: false,
      substreamId: null,
      stage2: true,
      read: false,
      stall: false,
      stag: 0,
      class: 'CD',
      inputAddress: 0x8090040n,
      ipa: 0n,
      fetchAddress: null,
    });
  });

  it('decodes a stalled stage 2 permission fault on a stage 1 table walk read', () => {
    const e = decodeEvent([
      0x0000002000005813n,
      0x0000118880000012n,
      0xffff800012345678n,
      0x0000000040002000n,
    ]);
    expect(e).toMatchObject({
      name: 'F_PERMISSION',
      streamId: 0x20,
      ssv: true,
      substreamId: 5,
      stall: true,
      stag: 0x12,
      read: true,
      stage2: true,
      class: 'TT',
      ttRead: true,
      inputAddress: 0xffff800012345678n,
      ipa: 0x40002000n,
    });
  });

  it('decodes fetch faults and configuration errors', () => {
    expect(decodeEvent([0x0000000300000009n, 0n, 0n, 0x80000040n])).toMatchObject({
      name: 'F_CD_FETCH',
      streamId: 3,
      fetchAddress: 0x80000040n,
      inputAddress: null,
      ipa: null,
      stag: null,
      class: null,
    });
    expect(decodeEvent([0x0000000100000004n, 0n, 0n, 0n])).toMatchObject({ name: 'C_BAD_STE', streamId: 1 });
    // C_BAD_SUBSTREAMID has no SSV bit: its SubstreamID is always valid.
    expect(decodeEvent([0x0000000100007008n, 0n, 0n, 0n])).toMatchObject({ substreamId: 7 });
  });

  it('round-trips the encoder through the decoder for every event type', () => {
    const names = Object.keys(EVT_SPECS) as EventName[];
    const arb = fc.record({
      name: fc.constantFrom(...names),
      streamId: fc.integer({ min: 0, max: 0xffffffff }),
      ssv: fc.boolean(),
      substreamId: fc.integer({ min: 0, max: 0xfffff }),
      stall: fc.boolean(),
      stag: fc.integer({ min: 0, max: 0xffff }),
      read: fc.boolean(),
      instruction: fc.boolean(),
      privileged: fc.boolean(),
      s2: fc.boolean(),
      class: fc.integer({ min: 0, max: 3 }),
      inputLo: fc.integer({ min: 0, max: 0xffffffff }),
      inputHi: fc.integer({ min: 0, max: 0xffffffff }),
      ipaPage: fc.integer({ min: 0, max: 2 ** 40 - 1 }),
      fetch: fc.integer({ min: 0, max: 2 ** 49 - 1 }),
    });
    fc.assert(
      fc.property(arb, (a) => {
        const s = EVT_SPECS[a.name];
        const dw = new Uint32Array(8).fill(0xffffffff);
        encodeEventInto(dw, {
          type: s.code,
          streamId: a.streamId,
          ssv: a.ssv,
          substreamId: a.substreamId,
          stall: a.stall,
          stag: a.stag,
          read: a.read,
          instruction: a.instruction,
          privileged: a.privileged,
          s2: a.s2,
          class: a.class,
          inputAddrLo: a.inputLo,
          inputAddrHi: a.inputHi,
          ipa: a.ipaPage * 4096,
          fetchAddr: a.fetch * 8,
        });
        const e = decodeEvent(dwordsToWords(dw, 4));
        const has = (n: string) => s.fields.some((f) => f.name === n);
        expect(e.name).toBe(a.name);
        expect(e.streamId).toBe(has('StreamID') ? a.streamId : 0);
        if (has('SSV')) expect(e.substreamId).toBe(a.ssv ? a.substreamId : null);
        expect(e.stall).toBe(s.stallable && a.stall);
        expect(e.stag).toBe(s.stallable ? a.stag : null);
        expect(e.read).toBe(has('RnW') && a.read);
        expect(e.stage2).toBe(has('S2') && a.s2);
        if (has('CLASS')) expect(e.class).toBe(['CD', 'TT', 'IN', 'Reserved'][a.class]);
        if (has('InputAddr') && a.name !== 'E_PAGE_REQUEST') {
          expect(e.inputAddress).toBe((BigInt(a.inputHi) << 32n) | BigInt(a.inputLo));
          expect(evtInputAddrLo(dw)).toBe(a.inputLo);
          expect(evtInputAddrHi(dw)).toBe(a.inputHi);
        }
        if (has('IPA')) expect(e.ipa).toBe(BigInt(a.ipaPage) * 4096n);
        if (has('FetchAddr')) expect(e.fetchAddress).toBe(BigInt(a.fetch) * 8n);
        expect(evtType(dw)).toBe(s.code);
        expect(evtStreamId(dw)).toBe(has('StreamID') ? a.streamId : 0);
        if (s.stallable) {
          expect(evtStall(dw)).toBe(a.stall);
          expect(evtStag(dw)).toBe(a.stag);
        }
        if (has('SSV')) {
          expect(evtSsv(dw)).toBe(a.ssv);
          expect(evtSubstreamId(dw)).toBe(a.ssv ? a.substreamId : 0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('writes nothing outside the fields of the event type', () => {
    const dw = new Uint32Array(8);
    encodeEventInto(dw, {
      type: EVT_ID.C_BAD_STE,
      streamId: 1,
      stall: true,
      read: true,
      inputAddr: 0x1000,
      ipa: 0x2000,
    });
    expect([...dw]).toEqual([4, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('never throws decoding random words', () => {
    fc.assert(fc.property(fc.array(u64, { maxLength: 6 }), (words) => void decodeEvent(words)));
  });
});

describe('PRI queue entries', () => {
  it('decodes a page request by spec position', () => {
    // SID 0x10, PASID 0x42 valid, read+write, privileged, PRG index 0x7, last, address 0x7f0012345000
    const w0 = 0x10n | (0x42n << 32n) | (1n << 58n) | (1n << 60n) | (1n << 61n) | (1n << 62n) | (1n << 63n);
    const p = decodePri([w0, 0x7f0012345000n | 7n]);
    expect(p).toMatchObject({
      streamId: 0x10,
      ssv: true,
      substreamId: 0x42,
      privileged: true,
      exec: false,
      read: true,
      write: true,
      last: true,
      prgIndex: 7,
      address: 0x7f0012345000n,
      stopMarker: false,
    });
  });

  it('identifies stop markers (PASID-tagged, LAST, neither read nor write)', () => {
    const p = decodePri([0x4000000000000008n | (1n << 63n), 0x3n]);
    expect(p.stopMarker).toBe(true);
    expect(priIsStopMarker(wordsToDwords([0xc000000000000008n, 0n]))).toBe(true);
    expect(priIsStopMarker(wordsToDwords([0xd000000000000008n, 0n]))).toBe(false);
    // without a PASID, LAST with R=W=0 is an ordinary request, not a stop marker
    expect(decodePri([0x4000000000000008n, 0x3n]).stopMarker).toBe(false);
    expect(priIsStopMarker(wordsToDwords([0x4000000000000008n, 0n]))).toBe(false);
  });

  it('round-trips the encoder through the decoder', () => {
    const arb = fc.record({
      streamId: fc.integer({ min: 0, max: 0xffffffff }),
      ssv: fc.boolean(),
      substreamId: fc.integer({ min: 0, max: 0xfffff }),
      privileged: fc.boolean(),
      exec: fc.boolean(),
      read: fc.boolean(),
      write: fc.boolean(),
      last: fc.boolean(),
      prgIndex: fc.integer({ min: 0, max: 511 }),
      page: fc.integer({ min: 0, max: 2 ** 40 - 1 }),
    });
    fc.assert(
      fc.property(arb, (a) => {
        const dw = new Uint32Array(4).fill(0xffffffff);
        encodePriInto(dw, { ...a, address: a.page * 4096 });
        const p = decodePri(dwordsToWords(dw, 2));
        expect(p).toMatchObject({
          streamId: a.streamId,
          substreamId: a.ssv ? a.substreamId : null,
          privileged: a.privileged,
          exec: a.exec,
          read: a.read,
          write: a.write,
          last: a.last,
          prgIndex: a.prgIndex,
          address: BigInt(a.page) * 4096n,
          stopMarker: a.ssv && a.last && !a.read && !a.write,
        });
        expect(priStreamId(dw)).toBe(a.streamId);
        expect(priLast(dw)).toBe(a.last);
        expect(priPrgIndex(dw)).toBe(a.prgIndex);
      }),
    );
  });

  it('never throws decoding random words', () => {
    fc.assert(fc.property(fc.array(u64, { maxLength: 3 }), (words) => void decodePri(words)));
  });
});
