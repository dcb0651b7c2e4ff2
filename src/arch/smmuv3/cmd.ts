// Command queue entries (IHI 0070 §4): 2 × 64-bit words, opcode in bits [7:0].
// Bit numbers below are the spec's global command bit numbers (word 1 starts at 64).

import {
  decodeFields,
  definedDwordMasks,
  type FieldDef,
  type FieldInput,
  field,
  getField,
  getFieldBig,
  setFieldBig,
  wordsToDwords,
} from './bits.ts';

export const CMD_WORDS = 2;
export const CMD_DWORDS = 4;
export const CMD_BYTES = 16;

/** Opcode values (CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range == 31). */
export const CMD_OP = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  CFGI_VMS_PIDM: 0x07,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  SYNC: 0x46,
} as const;

export type CommandOpName = keyof typeof CMD_OP;
/** Command names accepted by the encoder: every opcode plus CFGI_ALL. */
export type CommandName = CommandOpName | 'CFGI_ALL';

export const CMD_SYNC_CS = { NONE: 0, IRQ: 1, SEV: 2 } as const;
export const PRI_RESP_CODE = { DENY: 0, FAIL: 1, SUCC: 2 } as const;

/** Every command field, keyed by spec name. Several names share bits; each opcode uses its own subset. */
export const CMD = {
  Opcode: field('Opcode', 0, 8),
  Global: field('Global', 9, 1, { desc: 'ATC_INV: all substreams' }),
  SSec: field('SSec', 10, 1, { values: { 0: 'Non-secure stream', 1: 'Secure stream' } }),
  SSV: field('SSV', 11, 1, { desc: 'SubstreamID valid' }),
  SubstreamID: field('SubstreamID', 12, 20),
  NUM: field('NUM', 12, 5, { desc: 'range: number of pages - 1 (with SCALE)' }),
  SCALE: field('SCALE', 20, 5),
  Ac: field('Ac', 12, 1, { values: { 0: 'terminate', 1: 'retry' } }),
  Ab: field('Ab', 13, 1, { values: { 0: 'no abort to client', 1: 'abort to client' } }),
  CS: field('CS', 12, 2, { values: { 0: 'none', 1: 'IRQ (MSI)', 2: 'SEV', 3: 'reserved' } }),
  MSH: field('MSH', 22, 2, {
    values: { 0: 'Non-shareable', 1: 'reserved', 2: 'Outer Shareable', 3: 'Inner Shareable' },
  }),
  MSIAttr: field('MSIAttr', 24, 4),
  StreamID: field('StreamID', 32, 32),
  VMID: field('VMID', 32, 16),
  ASID: field('ASID', 48, 16),
  MSIData: field('MSIData', 32, 32),
  // Word 1
  Leaf: field('Leaf', 64, 1),
  Range: field('Range', 64, 5, { desc: 'invalidate 2^(Range+1) STEs' }),
  Size: field('Size', 64, 5, { desc: 'log2 prefetch span' }),
  Stride: field('Stride', 69, 5),
  PrefetchAddress: field('Address', 76, 52, { addr: true }),
  TTL: field('TTL', 72, 2, { desc: 'translation table level hint' }),
  TG: field('TG', 74, 2, { values: { 0: 'no hint', 1: '4KB', 2: '16KB', 3: '64KB' } }),
  Address: field('Address', 76, 52, { addr: true, desc: 'VA [63:12]' }),
  IPA: field('Address', 76, 44, { addr: true, desc: 'IPA [55:12]' }),
  ATCSize: field('Size', 64, 6, { desc: 'log2 of range in 4KB pages' }),
  ATCAddress: field('Address', 76, 52, { addr: true }),
  PRIGroupID: field('PRIGroupID', 64, 9),
  Resp: field('Resp', 76, 2, { values: { 0: 'Denied', 1: 'Failure', 2: 'Success', 3: 'reserved' } }),
  STAG: field('STAG', 64, 16),
  MSIAddress: field('MSIAddress', 66, 50, { addr: true, desc: 'MSI address [51:2]' }),
} as const satisfies Record<string, FieldDef>;

const C = CMD;
const STREAM = [C.SSec, C.SSV, C.SubstreamID, C.StreamID];
const RANGE_VA = [C.NUM, C.SCALE, C.Leaf, C.TTL, C.TG, C.Address];

export interface CommandSpec {
  readonly name: CommandName;
  readonly opcode: number;
  /** Fields defined for this command, Opcode first. Names are unique within one command. */
  readonly fields: readonly FieldDef[];
}

function spec(name: CommandName, opcode: number, fields: readonly FieldDef[]): CommandSpec {
  return Object.freeze({ name, opcode, fields: Object.freeze([C.Opcode, ...fields]) });
}

/** Per-opcode layouts. */
export const CMD_SPECS: Readonly<Record<CommandName, CommandSpec>> = Object.freeze({
  PREFETCH_CONFIG: spec('PREFETCH_CONFIG', 0x01, STREAM),
  PREFETCH_ADDR: spec('PREFETCH_ADDR', 0x02, [...STREAM, C.Size, C.Stride, C.PrefetchAddress]),
  CFGI_STE: spec('CFGI_STE', 0x03, [C.SSec, C.StreamID, C.Leaf]),
  CFGI_STE_RANGE: spec('CFGI_STE_RANGE', 0x04, [C.SSec, C.StreamID, C.Range]),
  CFGI_ALL: spec('CFGI_ALL', 0x04, [C.SSec, C.StreamID, C.Range]),
  CFGI_CD: spec('CFGI_CD', 0x05, [C.SSec, C.SubstreamID, C.StreamID, C.Leaf]),
  CFGI_CD_ALL: spec('CFGI_CD_ALL', 0x06, [C.SSec, C.StreamID]),
  CFGI_VMS_PIDM: spec('CFGI_VMS_PIDM', 0x07, [C.SSec, C.VMID]),
  TLBI_NH_ALL: spec('TLBI_NH_ALL', 0x10, [C.VMID]),
  TLBI_NH_ASID: spec('TLBI_NH_ASID', 0x11, [C.VMID, C.ASID]),
  TLBI_NH_VA: spec('TLBI_NH_VA', 0x12, [C.VMID, C.ASID, ...RANGE_VA]),
  TLBI_NH_VAA: spec('TLBI_NH_VAA', 0x13, [C.VMID, ...RANGE_VA]),
  TLBI_EL3_ALL: spec('TLBI_EL3_ALL', 0x18, []),
  TLBI_EL3_VA: spec('TLBI_EL3_VA', 0x1a, RANGE_VA),
  TLBI_EL2_ALL: spec('TLBI_EL2_ALL', 0x20, []),
  TLBI_EL2_ASID: spec('TLBI_EL2_ASID', 0x21, [C.ASID]),
  TLBI_EL2_VA: spec('TLBI_EL2_VA', 0x22, [C.ASID, ...RANGE_VA]),
  TLBI_EL2_VAA: spec('TLBI_EL2_VAA', 0x23, RANGE_VA),
  TLBI_S12_VMALL: spec('TLBI_S12_VMALL', 0x28, [C.VMID]),
  TLBI_S2_IPA: spec('TLBI_S2_IPA', 0x2a, [C.NUM, C.SCALE, C.VMID, C.Leaf, C.TTL, C.TG, C.IPA]),
  TLBI_NSNH_ALL: spec('TLBI_NSNH_ALL', 0x30, []),
  ATC_INV: spec('ATC_INV', 0x40, [C.Global, C.SSV, C.SubstreamID, C.StreamID, C.ATCSize, C.ATCAddress]),
  PRI_RESP: spec('PRI_RESP', 0x41, [C.SSV, C.SubstreamID, C.StreamID, C.PRIGroupID, C.Resp]),
  RESUME: spec('RESUME', 0x44, [C.SSec, C.Ac, C.Ab, C.StreamID, C.STAG]),
  STALL_TERM: spec('STALL_TERM', 0x45, [C.SSec, C.StreamID]),
  SYNC: spec('SYNC', 0x46, [C.CS, C.MSH, C.MSIAttr, C.MSIData, C.MSIAddress]),
});

/** Opcode → layout (CFGI_STE_RANGE for 0x04; see commandName for CFGI_ALL). */
export const CMD_BY_OPCODE: ReadonlyMap<number, CommandSpec> = new Map(
  Object.values(CMD_SPECS)
    .filter((s) => s.name !== 'CFGI_ALL')
    .map((s) => [s.opcode, s]),
);

// Per-opcode masks of defined bits as 4 dwords, for the allocation-free validator.
const DEFINED_DW = new Map<number, Uint32Array>(
  [...CMD_BY_OPCODE.values()].map((s) => [s.opcode, definedDwordMasks(s.fields, CMD_WORDS)]),
);

/** Name of a command from its dwords; CFGI_STE_RANGE with Range 31 is CFGI_ALL. Unknown → undefined. */
export function commandName(dw: ArrayLike<number>, off = 0): CommandName | undefined {
  const op = dw[off]! & 0xff;
  const s = CMD_BY_OPCODE.get(op);
  if (!s) return undefined;
  if (op === CMD_OP.CFGI_STE_RANGE && (dw[off + 2]! & 0x1f) === 31) return 'CFGI_ALL';
  return s.name;
}

export type CommandValues = Partial<Record<string, FieldInput>>;

/** Builds the 2 command words for `name` from named fields (Opcode is implied; CFGI_ALL sets Range 31). */
export function encodeCommand(name: CommandName, values: CommandValues = {}): bigint[] {
  const s = CMD_SPECS[name];
  const words = [0n, 0n];
  setFieldBig(words, C.Opcode, s.opcode);
  if (name === 'CFGI_ALL') setFieldBig(words, C.Range, 31);
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || k === 'Opcode') continue;
    const f = s.fields.find((x) => x.name === k);
    if (!f) throw new Error(`CMD_${name} has no field ${k}`);
    setFieldBig(words, f, v);
  }
  return words;
}

/**
 * A command field precompiled for the encoder: the dword it lives in, its shift and mask there
 * (every command field but the two address fields sits in one dword), and for the in-place
 * address fields (TLBI/ATC/PREFETCH Address, CMD_SYNC MSIAddress) the masks of both dwords.
 */
interface FieldEnc {
  readonly def: FieldDef;
  /** Dword index (0..3) of the field's low bits. */
  readonly dw: number;
  readonly shift: number;
  /** Mask of the field's bits in dword `dw`, in place (unsigned). */
  readonly mask: number;
  /** Address field: mask of its bits in the next dword (0 for other fields). */
  readonly hiMask: number;
  readonly addr: boolean;
}

function fieldEnc(f: FieldDef): FieldEnc {
  const bit = f.word * 64 + f.lsb;
  const dw = bit >>> 5;
  const shift = bit & 31;
  const end = shift + f.width; // exclusive, relative to dword `dw`
  const span = (n: number) => (n >= 32 ? 0xffffffff : (2 ** n - 1) >>> 0);
  if (f.addr) {
    // in place: the value's bits [shift, end) land on the same bit numbers
    const loMask = (span(Math.min(end, 32) - shift) * 2 ** shift) >>> 0;
    const hiMask = end > 32 ? span(end - 32) : 0;
    return { def: f, dw, shift, mask: loMask, hiMask, addr: true };
  }
  if (end > 32) throw new RangeError(`CMD field ${f.name} crosses a dword boundary`);
  return { def: f, dw, shift, mask: (span(f.width) * 2 ** shift) >>> 0, hiMask: 0, addr: false };
}

interface CommandEnc {
  readonly spec: CommandSpec;
  /** Dword 0 with Opcode (and for CFGI_ALL, dword 2 with Range = 31). */
  readonly dw0: number;
  readonly dw2: number;
  readonly fields: Readonly<Record<string, FieldEnc>>;
}

const COMMAND_ENC: Readonly<Record<string, CommandEnc>> = Object.freeze(
  Object.fromEntries(
    Object.values(CMD_SPECS).map((s) => {
      const fields: Record<string, FieldEnc> = Object.create(null) as Record<string, FieldEnc>;
      for (const f of s.fields) if (f.name !== 'Opcode') fields[f.name] = fieldEnc(f);
      const enc: CommandEnc = { spec: s, dw0: s.opcode, dw2: s.name === 'CFGI_ALL' ? 31 : 0, fields };
      return [s.name, enc];
    }),
  ),
);

/** Store `v` (a non-negative integer, or a boolean) into the field `e` of dwords `dw` at `off`. */
function putField(dw: Uint32Array, e: FieldEnc, v: number, off: number): void {
  const i = off + e.dw;
  if (e.addr) {
    dw[i] = ((dw[i]! & ~e.mask) | ((v % 4294967296) & e.mask)) >>> 0;
    if (e.hiMask !== 0)
      dw[i + 1] = ((dw[i + 1]! & ~e.hiMask) | (Math.floor(v / 4294967296) & e.hiMask)) >>> 0;
    return;
  }
  // v mod 2^32 (ToUint32 wraps exactly for integers), then into place
  dw[i] = ((dw[i]! & ~e.mask) | (((v >>> 0) << e.shift) & e.mask)) >>> 0;
}

/**
 * Writes a command into 4 dwords of `dw` at `off` from named fields (Opcode is implied; CFGI_ALL
 * sets Range 31). Each field goes in through a map precomputed per opcode (dword, shift, mask):
 * integer arithmetic, no BigInt, no allocation.
 */
export function encodeCommandInto(
  dw: Uint32Array,
  name: CommandName,
  values: Partial<Record<string, number | boolean>> = {},
  off = 0,
): void {
  const c = COMMAND_ENC[name]!;
  dw[off] = c.dw0;
  dw[off + 1] = 0;
  dw[off + 2] = c.dw2;
  dw[off + 3] = 0;
  const fields = c.fields;
  for (const k in values) {
    const v = values[k];
    if (v === undefined || k === 'Opcode') continue;
    const e = fields[k];
    if (e === undefined) throw new Error(`CMD_${name} has no field ${k}`);
    putField(dw, e, typeof v === 'boolean' ? (v ? 1 : 0) : v, off);
  }
}

/** The encoding of one field of command `name` (for per-opcode encoders); throws if it has none. */
export function commandField(name: CommandName, field: string): FieldEnc {
  const e = COMMAND_ENC[name]?.fields[field];
  if (e === undefined) throw new Error(`CMD_${name} has no field ${field}`);
  return e;
}

/** Store a value into a field obtained from commandField (no allocation). */
export function putCommandField(dw: Uint32Array, f: FieldEnc, v: number, off = 0): void {
  putField(dw, f, v, off);
}

export interface DecodedCommand {
  readonly opcode: number;
  /** CMD_ name without the prefix, or undefined for an unknown opcode. */
  readonly name: CommandName | undefined;
  readonly fields: Readonly<Record<string, bigint>>;
}

/** Decodes a command's fields according to its opcode. */
export function decodeCommand(words: readonly bigint[]): DecodedCommand {
  const opcode = Number(getFieldBig(words, C.Opcode));
  const name = commandName(wordsToDwords([words[0] ?? 0n, words[1] ?? 0n]));
  const s = name ? CMD_SPECS[name] : undefined;
  return { opcode, name, fields: s ? decodeFields(words, s.fields) : { Opcode: BigInt(opcode) } };
}

/** Features advertised by the SMMU that decide whether a command is legal. */
export interface CommandFeatures {
  /** SMMU_IDR3.RIL: range invalidation (NUM/SCALE/TG/TTL usable). */
  readonly ril: boolean;
  /** Stall model supported (SMMU_IDR0.STALL_MODEL != 0b01): RESUME, STALL_TERM. */
  readonly stall: boolean;
  /** SMMU_IDR0.PRI: PRI_RESP. */
  readonly pri: boolean;
  /** SMMU_IDR0.ATS: ATC_INV. */
  readonly ats: boolean;
  /** SMMU_IDR0.S1P. */
  readonly s1: boolean;
  /** SMMU_IDR0.S2P: TLBI_S12_VMALL, TLBI_S2_IPA. */
  readonly s2: boolean;
  /** SMMU_IDR0.Hyp: TLBI_EL2_*. */
  readonly hyp: boolean;
  /** Command comes from the Secure Command queue (SSec and TLBI_EL3_* are only legal there). */
  readonly secure?: boolean;
  /** SMMU_IDR0.MSI: CMD_SYNC with CS=IRQ may carry an MSI. Defaults to true. */
  readonly msi?: boolean;
}

export const ALL_COMMAND_FEATURES: CommandFeatures = Object.freeze({
  ril: true,
  stall: true,
  pri: true,
  ats: true,
  s1: true,
  s2: true,
  hyp: true,
  secure: false,
  msi: true,
});

export interface CommandValidation {
  /** True when the command is legal; false means CERROR_ILL. */
  readonly ok: boolean;
  readonly opcode: number;
  readonly name: CommandName | undefined;
  /** Human-readable reasons (empty when ok). */
  readonly problems: readonly string[];
  /** Non-zero bits outside the opcode's defined fields, per dword (4 entries, all zero when none). */
  readonly reservedBits: readonly number[];
}

function hasField(dw: ArrayLike<number>, f: FieldDef, off: number): boolean {
  return getField(dw, f, off) !== 0;
}

function inRangeFamily(op: number): boolean {
  return (
    op === CMD_OP.TLBI_NH_VA ||
    op === CMD_OP.TLBI_NH_VAA ||
    op === CMD_OP.TLBI_EL3_VA ||
    op === CMD_OP.TLBI_EL2_VA ||
    op === CMD_OP.TLBI_EL2_VAA ||
    op === CMD_OP.TLBI_S2_IPA
  );
}

/** Opcodes whose layout has SSec. */
const HAS_SSEC = new Set(
  [...CMD_BY_OPCODE.values()].filter((s) => s.fields.includes(CMD.SSec)).map((s) => s.opcode),
);

/**
 * validateCommand's verdict without allocating (the command processor's fast path): the
 * opcode when the command is legal, -1 when it is CERROR_ILL (validateCommand says why).
 */
export function checkCommand(dw: ArrayLike<number>, features: CommandFeatures, off = 0): number {
  const op = dw[off]! & 0xff;
  const masks = DEFINED_DW.get(op);
  if (masks === undefined) return -1;
  for (let i = 0; i < CMD_DWORDS; i++) if ((dw[off + i]! & ~masks[i]!) !== 0) return -1;
  const secure = features.secure ?? false;
  const d0 = dw[off]!;
  if (inRangeFamily(op) && !features.ril && (d0 & 0x1f1f000) !== 0) return -1; // NUM, SCALE
  if (!secure && (d0 & (1 << 10)) !== 0 && HAS_SSEC.has(op)) return -1;
  switch (op) {
    case CMD_OP.SYNC:
      return ((d0 >>> 12) & 3) === 3 ? -1 : op;
    case CMD_OP.TLBI_EL2_ALL:
    case CMD_OP.TLBI_EL2_ASID:
    case CMD_OP.TLBI_EL2_VA:
    case CMD_OP.TLBI_EL2_VAA:
      return features.hyp ? op : -1;
    case CMD_OP.TLBI_EL3_ALL:
    case CMD_OP.TLBI_EL3_VA:
      return secure ? op : -1;
    case CMD_OP.TLBI_S12_VMALL:
    case CMD_OP.TLBI_S2_IPA:
      return features.s2 ? op : -1;
    case CMD_OP.ATC_INV:
      return features.ats ? op : -1;
    case CMD_OP.PRI_RESP:
      return features.pri && ((dw[off + 2]! >>> 12) & 3) !== 3 ? op : -1;
    case CMD_OP.RESUME:
    case CMD_OP.STALL_TERM:
      return features.stall ? op : -1;
    default:
      return op;
  }
}

/**
 * Checks a command the way the SMMU does before executing it: an unknown opcode, a non-zero
 * RES0/reserved bit, a reserved encoding, or a command for an absent feature is CERROR_ILL.
 * `dw` holds the command's 4 dwords at `off`.
 */
export function validateCommand(
  dw: ArrayLike<number>,
  features: CommandFeatures = ALL_COMMAND_FEATURES,
  off = 0,
): CommandValidation {
  const opcode = dw[off]! & 0xff;
  const name = commandName(dw, off);
  const problems: string[] = [];
  const reservedBits = [0, 0, 0, 0];
  if (!name) {
    return { ok: false, opcode, name, problems: [`unknown opcode 0x${opcode.toString(16)}`], reservedBits };
  }
  const masks = DEFINED_DW.get(opcode)!;
  for (let i = 0; i < CMD_DWORDS; i++) {
    reservedBits[i] = (dw[off + i]! & ~masks[i]!) >>> 0;
  }
  const secure = features.secure ?? false;
  const has = (f: FieldDef) => hasField(dw, f, off);
  const op = opcode;
  // Without range invalidation NUM and SCALE are RES0.
  if (inRangeFamily(op) && !features.ril) {
    if (has(C.NUM)) reservedBits[0] = (reservedBits[0]! | (dw[off]! & 0x1f000)) >>> 0;
    if (has(C.SCALE)) reservedBits[0] = (reservedBits[0]! | (dw[off]! & 0x1f00000)) >>> 0;
  }
  const usesSSec = CMD_SPECS[name].fields.includes(C.SSec);
  if (usesSSec && !secure && has(C.SSec)) {
    reservedBits[0] = (reservedBits[0]! | (1 << 10)) >>> 0;
  }
  if (reservedBits.some((m) => m !== 0)) {
    const parts = reservedBits
      .map((m, i) => (m !== 0 ? `dword ${i}: 0x${m.toString(16).padStart(8, '0')}` : ''))
      .filter((s) => s !== '');
    problems.push(`reserved (RES0) bits set: ${parts.join(', ')}`);
  }
  switch (op) {
    case CMD_OP.SYNC:
      if (getField(dw, C.CS, off) === 3) problems.push('CS == 0b11 is reserved');
      break;
    case CMD_OP.TLBI_EL2_ALL:
    case CMD_OP.TLBI_EL2_ASID:
    case CMD_OP.TLBI_EL2_VA:
    case CMD_OP.TLBI_EL2_VAA:
      if (!features.hyp) problems.push(`CMD_${name} requires SMMU_IDR0.Hyp`);
      break;
    case CMD_OP.TLBI_EL3_ALL:
    case CMD_OP.TLBI_EL3_VA:
      if (!secure) problems.push(`CMD_${name} is only legal on the Secure Command queue`);
      break;
    case CMD_OP.TLBI_S12_VMALL:
    case CMD_OP.TLBI_S2_IPA:
      if (!features.s2) problems.push(`CMD_${name} requires stage 2 (SMMU_IDR0.S2P)`);
      break;
    case CMD_OP.ATC_INV:
      if (!features.ats) problems.push('CMD_ATC_INV requires SMMU_IDR0.ATS');
      break;
    case CMD_OP.PRI_RESP:
      if (!features.pri) problems.push('CMD_PRI_RESP requires SMMU_IDR0.PRI');
      if (getField(dw, C.Resp, off) === 3) problems.push('Resp == 0b11 is reserved');
      break;
    case CMD_OP.RESUME:
    case CMD_OP.STALL_TERM:
      if (!features.stall) problems.push(`CMD_${name} requires the stall model`);
      break;
    default:
      break;
  }
  return { ok: problems.length === 0, opcode, name, problems, reservedBits };
}
