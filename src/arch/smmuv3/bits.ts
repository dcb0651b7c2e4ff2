// Field tables and the generic accessors that read and write them.
//
// An SMMUv3 structure (STE, CD, command, event, PRI entry) is an array of
// little-endian 64-bit words. Two views of the same bytes are supported:
//   - `bigint[]` words: convenient, used by decoders, tools and tests;
//   - `ArrayLike<number>` dwords (two per 64-bit word, low half first): what a
//     `Uint32Array` over simulated memory gives. Accessors on this view use no
//     BigInt and allocate nothing, so the hardware model can use them on its
//     hot paths.
// One FieldDef table drives both views, the decoders and the encoders.

/** One architected field: spec name, 64-bit word index, bit position within the word, width. */
export interface FieldDef {
  readonly name: string;
  /** Index of the 64-bit word holding the field. */
  readonly word: number;
  /** Least significant bit within that word (0..63). */
  readonly lsb: number;
  /** Width in bits (1..64). A field never crosses a 64-bit word boundary. */
  readonly width: number;
  /**
   * Address field kept "in place": its value is the address it encodes, i.e. the word
   * masked to bits [lsb+width-1:lsb] without shifting (Linux's *_ADDR_MASK convention).
   */
  readonly addr?: boolean;
  /** Names of the encodings, where the spec gives them. */
  readonly values?: Readonly<Record<number, string>>;
  /** Short description for text rendering. */
  readonly desc?: string;
}

/** Builds a FieldDef; `bit` is the global bit number in the spec's layout (e.g. STE.S1DSS is 64). */
export function field(
  name: string,
  bit: number,
  width: number,
  extra: { addr?: boolean; values?: Readonly<Record<number, string>>; desc?: string } = {},
): FieldDef {
  const word = Math.floor(bit / 64);
  const lsb = bit % 64;
  if (lsb + width > 64) throw new RangeError(`field ${name} crosses a 64-bit word boundary`);
  return Object.freeze({ name, word, lsb, width, ...extra });
}

const TWO32 = 4294967296;

/** Bits [lsb+width-1:lsb] of a 32-bit value, unsigned. */
export function extract32(v: number, lsb: number, width: number): number {
  if (width >= 32) return v >>> 0;
  return (v >>> lsb) & ((1 << width) - 1);
}

/** Mask of `width` bits at `lsb` within a 32-bit dword, as an unsigned number. */
function mask32(lsb: number, width: number): number {
  if (width <= 0) return 0;
  if (width >= 32) return 0xffffffff;
  return (((1 << width) - 1) << lsb) >>> 0;
}

/**
 * Reads a field from a dword view. `off` is the dword index of the structure's first dword.
 * Fields up to 32 bits return an exact unsigned integer; wider fields (addresses) return
 * a Number that is exact below 2^53. No BigInt, no allocation.
 */
export function getField(dw: ArrayLike<number>, f: FieldDef, off = 0): number {
  const base = off + f.word * 2;
  const lsb = f.lsb;
  const msb = lsb + f.width; // exclusive
  if (f.addr) {
    const lo = lsb < 32 ? (dw[base]! & mask32(lsb, Math.min(msb, 32) - lsb)) >>> 0 : 0;
    const hiLsb = Math.max(lsb, 32) - 32;
    const hi = msb > 32 ? (dw[base + 1]! & mask32(hiLsb, msb - 32 - hiLsb)) >>> 0 : 0;
    return hi * TWO32 + lo;
  }
  if (lsb >= 32) return extract32(dw[base + 1]!, lsb - 32, f.width);
  if (msb <= 32) return extract32(dw[base]!, lsb, f.width);
  const loWidth = 32 - lsb;
  const lo = dw[base]! >>> lsb;
  const hi = extract32(dw[base + 1]!, 0, f.width - loWidth);
  return hi * 2 ** loWidth + lo;
}

/** Low 32 bits of an in-place address field (exact for any address width). */
export function getAddrLo(dw: ArrayLike<number>, f: FieldDef, off = 0): number {
  const base = off + f.word * 2;
  if (f.lsb >= 32) return 0;
  return (dw[base]! & mask32(f.lsb, Math.min(f.lsb + f.width, 32) - f.lsb)) >>> 0;
}

/** High 32 bits of an in-place address field (exact for any address width). */
export function getAddrHi(dw: ArrayLike<number>, f: FieldDef, off = 0): number {
  const base = off + f.word * 2;
  const msb = f.lsb + f.width;
  if (msb <= 32) return 0;
  const hiLsb = Math.max(f.lsb, 32) - 32;
  return (dw[base + 1]! & mask32(hiLsb, msb - 32 - hiLsb)) >>> 0;
}

/**
 * Writes a field into a dword view. `value` is the field value (or, for an address field,
 * the address; bits outside the field are dropped). Values must be non-negative integers
 * below 2^53. Bits outside the field are preserved. No BigInt, no allocation.
 */
export function setField(dw: Uint32Array, f: FieldDef, value: number | boolean, off = 0): void {
  let v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
  const base = off + f.word * 2;
  const lsb = f.lsb;
  const msb = lsb + f.width;
  let lo: number;
  let hi: number;
  if (f.addr) {
    lo = v % TWO32;
    hi = Math.floor(v / TWO32);
  } else {
    if (f.width < 53) v = v % 2 ** f.width;
    // Shift the field value into place across the two dwords without BigInt.
    if (lsb >= 32) {
      lo = 0;
      hi = (v * 2 ** (lsb - 32)) % TWO32;
    } else {
      // Split before shifting so the arithmetic stays exact below 2^53.
      const loSpan = 2 ** (32 - lsb);
      lo = (v % loSpan) * 2 ** lsb;
      hi = Math.floor(v / loSpan) % TWO32;
    }
  }
  const loMask = lsb < 32 ? mask32(lsb, Math.min(msb, 32) - lsb) : 0;
  const hiLsb = Math.max(lsb, 32) - 32;
  const hiMask = msb > 32 ? mask32(hiLsb, msb - 32 - hiLsb) : 0;
  if (loMask !== 0) dw[base] = ((dw[base]! & ~loMask) | (lo & loMask)) >>> 0;
  if (hiMask !== 0) dw[base + 1] = ((dw[base + 1]! & ~hiMask) | (hi & hiMask)) >>> 0;
}

/** Writes an in-place address field from a lo/hi pair (exact for full 64-bit addresses). */
export function setAddrLoHi(dw: Uint32Array, f: FieldDef, lo: number, hi: number, off = 0): void {
  const base = off + f.word * 2;
  const lsb = f.lsb;
  const msb = lsb + f.width;
  const loMask = lsb < 32 ? mask32(lsb, Math.min(msb, 32) - lsb) : 0;
  const hiLsb = Math.max(lsb, 32) - 32;
  const hiMask = msb > 32 ? mask32(hiLsb, msb - 32 - hiLsb) : 0;
  if (loMask !== 0) dw[base] = ((dw[base]! & ~loMask) | (lo & loMask)) >>> 0;
  if (hiMask !== 0) dw[base + 1] = ((dw[base + 1]! & ~hiMask) | (hi & hiMask)) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// BigInt view (not for hot paths)

const M64 = (1n << 64n) - 1n;

/** Mask of a field within its 64-bit word. */
export function fieldMask(f: FieldDef): bigint {
  return ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
}

/** Reads a field from bigint words; an address field returns the address in place. */
export function getFieldBig(words: readonly bigint[], f: FieldDef): bigint {
  const w = (words[f.word] ?? 0n) & M64;
  if (f.addr) return w & fieldMask(f);
  return (w >> BigInt(f.lsb)) & ((1n << BigInt(f.width)) - 1n);
}

/** Writes a field into bigint words (in place). Throws if the value does not fit. */
export function setFieldBig(words: bigint[], f: FieldDef, value: bigint | number | boolean): void {
  const v = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
  const m = fieldMask(f);
  let placed: bigint;
  if (f.addr) {
    if (v < 0n || (v & ~m) !== 0n) {
      throw new RangeError(`${f.name}: address 0x${v.toString(16)} has bits outside the field`);
    }
    placed = v;
  } else {
    if (v < 0n || v >> BigInt(f.width) !== 0n) {
      throw new RangeError(`${f.name}: value ${v} does not fit in ${f.width} bits`);
    }
    placed = v << BigInt(f.lsb);
  }
  while (words.length <= f.word) words.push(0n);
  words[f.word] = (((words[f.word] ?? 0n) & ~m) | placed) & M64;
}

/** Splits bigint words into a Uint32Array of dwords (low half first). */
export function wordsToDwords(words: readonly bigint[], out?: Uint32Array, off = 0): Uint32Array {
  const dw = out ?? new Uint32Array(words.length * 2);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]! & M64;
    dw[off + 2 * i] = Number(w & 0xffffffffn);
    dw[off + 2 * i + 1] = Number(w >> 32n);
  }
  return dw;
}

/** Joins dwords (low half first) into `n` bigint words. */
export function dwordsToWords(dw: ArrayLike<number>, n: number, off = 0): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const lo = BigInt((dw[off + 2 * i] ?? 0) >>> 0);
    const hi = BigInt((dw[off + 2 * i + 1] ?? 0) >>> 0);
    out.push((hi << 32n) | lo);
  }
  return out;
}

/** Value of a decoded field: booleans for 1-bit flags, bigint otherwise. */
export type FieldValue = bigint | boolean;

/** Decodes every field in `table` from bigint words. */
export function decodeFields(words: readonly bigint[], table: readonly FieldDef[]): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const f of table) out[f.name] = getFieldBig(words, f);
  return out;
}

/** Input accepted by the encoders for one field. */
export type FieldInput = bigint | number | boolean;

/**
 * Encodes named field values into `nWords` bigint words using `table`.
 * Throws on an unknown name or a value that does not fit (a programming error, not user input).
 */
export function encodeFields(
  table: readonly FieldDef[],
  values: Readonly<Record<string, FieldInput | undefined>>,
  nWords: number,
): bigint[] {
  const words: bigint[] = new Array<bigint>(nWords).fill(0n);
  const byName = indexFields(table);
  for (const [name, v] of Object.entries(values)) {
    if (v === undefined) continue;
    const f = byName.get(name);
    if (!f) throw new Error(`unknown field ${name}`);
    setFieldBig(words, f, v);
  }
  return words;
}

/**
 * Encodes named field values into a dword view (no BigInt when values are numbers).
 * Only the named fields are written; call `dw.fill(0, off, off + 2 * nWords)` first for a fresh structure.
 */
export function encodeFieldsInto(
  dw: Uint32Array,
  table: readonly FieldDef[],
  values: Readonly<Record<string, number | boolean | undefined>>,
  off = 0,
): void {
  const byName = indexFields(table);
  for (const name in values) {
    const v = values[name];
    if (v === undefined) continue;
    const f = byName.get(name);
    if (!f) throw new Error(`unknown field ${name}`);
    setField(dw, f, v, off);
  }
}

const indexCache = new WeakMap<readonly FieldDef[], Map<string, FieldDef>>();

/** Name → FieldDef map for a table (cached). */
export function indexFields(table: readonly FieldDef[]): Map<string, FieldDef> {
  let m = indexCache.get(table);
  if (!m) {
    m = new Map(table.map((f) => [f.name, f]));
    indexCache.set(table, m);
  }
  return m;
}

/** Per-word masks (bigint) of every bit covered by the fields of a table. */
export function definedMasks(table: readonly FieldDef[], nWords: number): bigint[] {
  const masks: bigint[] = new Array<bigint>(nWords).fill(0n);
  for (const f of table) masks[f.word] = (masks[f.word] ?? 0n) | fieldMask(f);
  return masks;
}

/** Per-dword masks (numbers) of every bit covered by the fields of a table: 2*nWords entries. */
export function definedDwordMasks(table: readonly FieldDef[], nWords: number): Uint32Array {
  return wordsToDwords(definedMasks(table, nWords));
}

/** Lowercase hex with 0x prefix. */
export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
