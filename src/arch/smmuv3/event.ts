// Event queue records (IHI 0070 §7.3): 4 × 64-bit words, event number in bits [7:0].
// Bit numbers below are the spec's global record bit numbers.

import {
  decodeFields,
  type FieldDef,
  field,
  getAddrHi,
  getAddrLo,
  getFieldBig,
  setAddrLoHi,
  setField,
} from './bits.ts';

export const EVT_WORDS = 4;
export const EVT_DWORDS = 8;
export const EVT_BYTES = 32;

/** Event numbers. */
export const EVT_ID = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;

export type EventName = keyof typeof EVT_ID;

/** CLASS encodings. */
export const EVT_CLASS = { CD: 0, TT: 1, IN: 2 } as const;
export const EVT_CLASS_NAMES = ['CD', 'TT', 'IN', 'Reserved'] as const;
/** The Linux driver's wording of CLASS. */
export const EVT_CLASS_LINUX = [
  'CD fetch',
  'Stage 1 translation table fetch',
  'Input address caused fault',
  'Reserved',
] as const;

/** Every event-record field, keyed by spec name. Each event type uses its own subset. */
export const EVT = {
  EventType: field('EventType', 0, 8),
  SSV: field('SSV', 11, 1, { desc: 'SubstreamID valid' }),
  SubstreamID: field('SubstreamID', 12, 20),
  StreamID: field('StreamID', 32, 32),
  // Word 1
  STAG: field('STAG', 64, 16, { desc: 'stall tag' }),
  Reason16: field('Reason', 64, 16, { desc: 'IMPLEMENTATION DEFINED' }),
  Reason32: field('Reason', 64, 32, { desc: 'IMPLEMENTATION DEFINED' }),
  ReasonUUT: field('Reason', 80, 16, { desc: 'IMPLEMENTATION DEFINED' }),
  GPCF: field('GPCF', 80, 1, { desc: 'granule protection check fault' }),
  Stall: field('Stall', 95, 1, { desc: 'transaction is stalled' }),
  PnU: field('PnU', 97, 1, { values: { 0: 'unprivileged', 1: 'privileged' } }),
  InD: field('InD', 98, 1, { values: { 0: 'data', 1: 'instruction' } }),
  RnW: field('RnW', 99, 1, { values: { 0: 'write', 1: 'read' } }),
  uX: field('uX', 97, 1),
  uW: field('uW', 98, 1),
  uR: field('uR', 99, 1),
  pX: field('pX', 101, 1),
  pW: field('pW', 102, 1),
  pR: field('pR', 103, 1),
  S2: field('S2', 103, 1, { values: { 0: 'stage 1', 1: 'stage 2' } }),
  CLASS: field('CLASS', 104, 2, { values: { 0: 'CD', 1: 'TT', 2: 'IN', 3: 'Reserved' } }),
  NSIPA: field('NSIPA', 106, 1),
  TTRnW: field('TTRnW', 108, 1, { values: { 0: 'descriptor write', 1: 'descriptor read' } }),
  Span: field('Span', 108, 8, { desc: 'page request span in 4KB pages' }),
  // Words 2, 3
  InputAddr: field('InputAddr', 128, 64, { addr: true }),
  PageAddr: field('InputAddr', 140, 52, { addr: true, desc: 'InputAddr[63:12]' }),
  IPA: field('IPA', 204, 44, { addr: true, desc: 'IPA [55:12]' }),
  FetchAddr: field('FetchAddr', 195, 53, { addr: true, desc: 'FetchAddr [55:3]' }),
} as const satisfies Record<string, FieldDef>;

const E = EVT;
const SS = [E.SSV, E.SubstreamID, E.StreamID];
const FETCH = [...SS, E.Reason16, E.GPCF, E.FetchAddr];
const TRANSLATION = [...SS, E.STAG, E.Stall, E.PnU, E.InD, E.RnW, E.S2, E.CLASS, E.NSIPA, E.InputAddr, E.IPA];

export interface EventSpec {
  readonly name: EventName;
  readonly code: number;
  /** Fields of this event type, EventType first; names are unique within one type. */
  readonly fields: readonly FieldDef[];
  /** The transaction can be stalled and resumed by CMD_RESUME (STAG, Stall valid). */
  readonly stallable: boolean;
}

function spec(name: EventName, fields: readonly FieldDef[], stallable = false): EventSpec {
  return Object.freeze({
    name,
    code: EVT_ID[name],
    fields: Object.freeze([E.EventType, ...fields]),
    stallable,
  });
}

/** Per-event layouts. */
export const EVT_SPECS: Readonly<Record<EventName, EventSpec>> = Object.freeze({
  F_UUT: spec('F_UUT', [...SS, E.ReasonUUT, E.PnU, E.InD, E.RnW, E.InputAddr]),
  C_BAD_STREAMID: spec('C_BAD_STREAMID', SS),
  F_STE_FETCH: spec('F_STE_FETCH', FETCH),
  C_BAD_STE: spec('C_BAD_STE', SS),
  F_BAD_ATS_TREQ: spec('F_BAD_ATS_TREQ', [...SS, E.InputAddr]),
  F_STREAM_DISABLED: spec('F_STREAM_DISABLED', [E.StreamID]),
  F_TRANSL_FORBIDDEN: spec('F_TRANSL_FORBIDDEN', [E.StreamID, E.RnW, E.InputAddr]),
  C_BAD_SUBSTREAMID: spec('C_BAD_SUBSTREAMID', [E.SubstreamID, E.StreamID]),
  F_CD_FETCH: spec('F_CD_FETCH', FETCH),
  C_BAD_CD: spec('C_BAD_CD', SS),
  F_WALK_EABT: spec('F_WALK_EABT', [...SS, E.PnU, E.InD, E.RnW, E.S2, E.CLASS, E.InputAddr, E.FetchAddr]),
  F_TRANSLATION: spec('F_TRANSLATION', TRANSLATION, true),
  F_ADDR_SIZE: spec('F_ADDR_SIZE', TRANSLATION, true),
  F_ACCESS: spec('F_ACCESS', TRANSLATION, true),
  F_PERMISSION: spec('F_PERMISSION', [...TRANSLATION, E.TTRnW], true),
  F_TLB_CONFLICT: spec('F_TLB_CONFLICT', [...SS, E.PnU, E.InD, E.RnW, E.S2, E.InputAddr, E.IPA]),
  F_CFG_CONFLICT: spec('F_CFG_CONFLICT', [...SS, E.Reason32]),
  E_PAGE_REQUEST: spec('E_PAGE_REQUEST', [...SS, E.uX, E.uW, E.uR, E.pX, E.pW, E.pR, E.Span, E.PageAddr]),
  F_VMS_FETCH: spec('F_VMS_FETCH', FETCH),
});

export const EVT_BY_CODE: ReadonlyMap<number, EventSpec> = new Map(
  Object.values(EVT_SPECS).map((s) => [s.code, s]),
);

/** Spec name of an event number; IMPLEMENTATION DEFINED and reserved numbers are named as such. */
export function eventName(code: number): string {
  const s = EVT_BY_CODE.get(code);
  if (s) return s.name;
  if (code >= 0xe0 && code <= 0xef) return `IMPDEF_EVENT${code - 0xe0}`;
  return 'UNKNOWN';
}

/** A decoded event record with the fields every consumer asks for. */
export interface DecodedEvent {
  readonly code: number;
  readonly name: string;
  readonly known: boolean;
  readonly streamId: number;
  readonly ssv: boolean;
  /** SubstreamID, or null when the record carries none (SSV == 0). */
  readonly substreamId: number | null;
  readonly stall: boolean;
  /** STAG, or null for events that cannot stall. */
  readonly stag: number | null;
  readonly read: boolean;
  readonly privileged: boolean;
  readonly instruction: boolean;
  /** CLASS, or null for events without one. */
  readonly class: 'CD' | 'TT' | 'IN' | 'Reserved' | null;
  readonly stage2: boolean;
  readonly nsipa: boolean | null;
  /** F_PERMISSION with CLASS == TT: whether the faulting descriptor access was a read. */
  readonly ttRead: boolean | null;
  readonly inputAddress: bigint | null;
  readonly ipa: bigint | null;
  readonly fetchAddress: bigint | null;
  readonly reason: number | null;
  /** Every field of this event type. */
  readonly fields: Readonly<Record<string, bigint>>;
}

/** Decodes an event record from 4 bigint words (missing words read as zero). Never throws. */
export function decodeEvent(words: readonly bigint[]): DecodedEvent {
  const code = Number(getFieldBig(words, E.EventType));
  const s = EVT_BY_CODE.get(code);
  const fields = s
    ? decodeFields(words, s.fields)
    : decodeFields(words, [E.EventType, E.SSV, E.SubstreamID, E.StreamID]);
  const has = (n: string) => n in fields;
  const flag = (n: string) => (fields[n] ?? 0n) !== 0n;
  const num = (n: string) => Number(fields[n] ?? 0n);
  const ssv = code === EVT_ID.C_BAD_SUBSTREAMID ? true : flag('SSV');
  const cls = has('CLASS') ? EVT_CLASS_NAMES[num('CLASS')]! : null;
  return {
    code,
    name: eventName(code),
    known: s !== undefined,
    streamId: num('StreamID'),
    ssv,
    substreamId: ssv ? num('SubstreamID') : null,
    stall: flag('Stall'),
    stag: s?.stallable ? num('STAG') : null,
    read: flag('RnW'),
    privileged: flag('PnU'),
    instruction: flag('InD'),
    class: cls,
    stage2: flag('S2'),
    nsipa: has('NSIPA') ? flag('NSIPA') : null,
    ttRead: has('TTRnW') && cls === 'TT' ? flag('TTRnW') : null,
    inputAddress: has('InputAddr') ? fields.InputAddr! : null,
    ipa: has('IPA') ? fields.IPA! : null,
    fetchAddress: has('FetchAddr') ? fields.FetchAddr! : null,
    reason: has('Reason') ? num('Reason') : null,
    fields,
  };
}

/** Arguments for the allocation-free event encoder. Fields the event type lacks are ignored. */
export interface EventArgs {
  type: number;
  streamId: number;
  ssv?: boolean;
  substreamId?: number;
  stall?: boolean;
  stag?: number;
  read?: boolean;
  instruction?: boolean;
  privileged?: boolean;
  s2?: boolean;
  /** CLASS: 0 CD, 1 TT, 2 IN. */
  class?: number;
  nsipa?: boolean;
  ttRead?: boolean;
  reason?: number;
  gpcf?: boolean;
  /** InputAddr as a Number (< 2^53) ... */
  inputAddr?: number;
  /** ... or as an exact lo/hi pair (wins over inputAddr when given). */
  inputAddrLo?: number;
  inputAddrHi?: number;
  ipa?: number;
  fetchAddr?: number;
  /** E_PAGE_REQUEST only. */
  span?: number;
  perm?: { uR?: boolean; uW?: boolean; uX?: boolean; pR?: boolean; pW?: boolean; pX?: boolean };
}

/**
 * Writes an event record into 8 dwords of `dw` at `off` (zeroing them first), no BigInt.
 * Only the fields the event type defines are written, so its RES0 bits stay zero.
 */
export function encodeEventInto(dw: Uint32Array, a: EventArgs, off = 0): void {
  dw.fill(0, off, off + EVT_DWORDS);
  const s = EVT_BY_CODE.get(a.type);
  setField(dw, E.EventType, a.type & 0xff, off);
  if (!s) return;
  const f = s.fields;
  if (f.includes(E.StreamID)) setField(dw, E.StreamID, a.streamId >>> 0, off);
  if (f.includes(E.SSV) && a.ssv) setField(dw, E.SSV, 1, off);
  if (f.includes(E.SubstreamID) && (a.ssv || a.type === EVT_ID.C_BAD_SUBSTREAMID)) {
    setField(dw, E.SubstreamID, a.substreamId ?? 0, off);
  }
  if (s.stallable) {
    if (a.stall) setField(dw, E.Stall, 1, off);
    setField(dw, E.STAG, a.stag ?? 0, off);
  }
  if (f.includes(E.RnW) && a.read) setField(dw, E.RnW, 1, off);
  if (f.includes(E.InD) && a.instruction) setField(dw, E.InD, 1, off);
  if (f.includes(E.PnU) && a.privileged) setField(dw, E.PnU, 1, off);
  if (f.includes(E.S2) && a.s2) setField(dw, E.S2, 1, off);
  if (f.includes(E.CLASS)) setField(dw, E.CLASS, a.class ?? 0, off);
  if (f.includes(E.NSIPA) && a.nsipa) setField(dw, E.NSIPA, 1, off);
  if (f.includes(E.TTRnW) && a.ttRead) setField(dw, E.TTRnW, 1, off);
  if (a.reason !== undefined) {
    const rf = f.find((x) => x.name === 'Reason');
    if (rf) setField(dw, rf, a.reason, off);
  }
  if (f.includes(E.GPCF) && a.gpcf) setField(dw, E.GPCF, 1, off);
  if (f.includes(E.InputAddr)) {
    if (a.inputAddrLo !== undefined || a.inputAddrHi !== undefined) {
      setAddrLoHi(dw, E.InputAddr, a.inputAddrLo ?? 0, a.inputAddrHi ?? 0, off);
    } else if (a.inputAddr !== undefined) {
      setField(dw, E.InputAddr, a.inputAddr, off);
    }
  }
  if (f.includes(E.PageAddr)) {
    if (a.inputAddrLo !== undefined || a.inputAddrHi !== undefined) {
      setAddrLoHi(dw, E.PageAddr, a.inputAddrLo ?? 0, a.inputAddrHi ?? 0, off);
    } else if (a.inputAddr !== undefined) {
      setField(dw, E.PageAddr, a.inputAddr, off);
    }
    if (a.span !== undefined) setField(dw, E.Span, a.span, off);
    const p = a.perm;
    if (p) {
      if (p.uR) setField(dw, E.uR, 1, off);
      if (p.uW) setField(dw, E.uW, 1, off);
      if (p.uX) setField(dw, E.uX, 1, off);
      if (p.pR) setField(dw, E.pR, 1, off);
      if (p.pW) setField(dw, E.pW, 1, off);
      if (p.pX) setField(dw, E.pX, 1, off);
    }
  }
  if (f.includes(E.IPA) && a.ipa !== undefined) setField(dw, E.IPA, a.ipa, off);
  if (f.includes(E.FetchAddr) && a.fetchAddr !== undefined) setField(dw, E.FetchAddr, a.fetchAddr, off);
}

// Hot-path accessors on a dword view (no BigInt, no allocation).
export const evtType = (dw: ArrayLike<number>, off = 0): number => dw[off]! & 0xff;
export const evtStreamId = (dw: ArrayLike<number>, off = 0): number => dw[off + 1]! >>> 0;
export const evtSsv = (dw: ArrayLike<number>, off = 0): boolean => (dw[off]! & 0x800) !== 0;
export const evtSubstreamId = (dw: ArrayLike<number>, off = 0): number => dw[off]! >>> 12;
export const evtStall = (dw: ArrayLike<number>, off = 0): boolean => (dw[off + 2]! & 0x80000000) !== 0;
export const evtStag = (dw: ArrayLike<number>, off = 0): number => dw[off + 2]! & 0xffff;
export const evtInputAddrLo = (dw: ArrayLike<number>, off = 0): number => getAddrLo(dw, E.InputAddr, off);
export const evtInputAddrHi = (dw: ArrayLike<number>, off = 0): number => getAddrHi(dw, E.InputAddr, off);
