// Pure decoder of one VMSAv8-64 translation table descriptor (stage 1 or stage 2), for
// explaining a value, not for walking: it allocates and uses BigInt.

export type PteStage = 1 | 2;
export type PteGranule = 4096 | 16384 | 65536;
export type PteType = 'invalid' | 'table' | 'block' | 'page' | 'reserved';

export interface PteDecodeOptions {
  readonly stage: PteStage;
  readonly granule: PteGranule;
  /** Lookup level, 0..3. */
  readonly level: number;
}

export interface DecodedPte {
  readonly type: PteType;
  readonly stage: PteStage;
  readonly granule: PteGranule;
  readonly level: number;
  /** Output address (block/page) or next-level table address (table); null otherwise. */
  readonly outputAddress: bigint | null;
  /** Bytes mapped by a block or page descriptor; null otherwise. */
  readonly mappingSize: bigint | null;
  /** Named fields (numbers for multi-bit values, booleans for 1-bit flags). */
  readonly fields: Readonly<Record<string, number | boolean>>;
  /** Meanings of the interesting values, e.g. AP → "RW at EL1, none at EL0". */
  readonly notes: readonly string[];
}

const bit = (d: bigint, n: number): boolean => ((d >> BigInt(n)) & 1n) === 1n;
const bits = (d: bigint, lo: number, w: number): number =>
  Number((d >> BigInt(lo)) & ((1n << BigInt(w)) - 1n));

function granuleShift(g: PteGranule): number {
  return g === 4096 ? 12 : g === 16384 ? 14 : 16;
}

/** log2 of the block size at `level`, or null when that level has no blocks (without FEAT_LPA2). */
export function blockShift(granule: PteGranule, level: number): number | null {
  const s = granuleShift(granule);
  const bitsPerLevel = s - 3;
  const shift = s + (3 - level) * bitsPerLevel;
  if (granule === 4096) return level === 1 || level === 2 ? shift : null;
  if (granule === 16384) return level === 2 ? shift : null;
  // 64KB: level 2 blocks (512MB); level 1 blocks (4TB) need FEAT_LPA (52-bit PA).
  return level === 1 || level === 2 ? shift : null;
}

/** Output/next-level address bits [47:shift], plus [51:48] from bits [15:12] with the 64KB granule. */
function addressOf(d: bigint, shift: number, granule: PteGranule): bigint {
  const mask = ((1n << 48n) - 1n) & ~((1n << BigInt(shift)) - 1n);
  let a = d & mask;
  if (granule === 65536) a |= BigInt(bits(d, 12, 4)) << 48n;
  return a;
}

const AP_S1 = ['RW at EL1, none at EL0', 'RW at EL1 and EL0', 'RO at EL1, none at EL0', 'RO at EL1 and EL0'];
const S2AP = ['no access', 'read-only', 'write-only', 'read/write'];
const SH = ['Non-shareable', 'reserved', 'Outer Shareable', 'Inner Shareable'];
const APTABLE = ['no effect', 'no EL0 access below', 'read-only below', 'read-only and no EL0 access below'];

/** Decodes a descriptor; never throws for any 64-bit value (out-of-range levels are reported as reserved). */
export function decodePte(desc: bigint, o: PteDecodeOptions): DecodedPte {
  const d = BigInt.asUintN(64, desc);
  const { stage, granule, level } = o;
  const fields: Record<string, number | boolean> = {};
  const notes: string[] = [];
  const base = { stage, granule, level };
  if (!bit(d, 0)) {
    return { ...base, type: 'invalid', outputAddress: null, mappingSize: null, fields, notes };
  }
  if (!Number.isInteger(level) || level < 0 || level > 3) {
    notes.push(`level ${level} is outside 0..3`);
    return { ...base, type: 'reserved', outputAddress: null, mappingSize: null, fields, notes };
  }
  if (granule === 65536 && level === 0) {
    notes.push('the 64KB granule has no level 0 (its lookups start at level 1)');
    return { ...base, type: 'reserved', outputAddress: null, mappingSize: null, fields, notes };
  }
  const isTableOrPage = bit(d, 1);
  const gShift = granuleShift(granule);
  let type: PteType;
  let shift: number | null;
  if (level === 3) {
    type = isTableOrPage ? 'page' : 'reserved';
    shift = isTableOrPage ? gShift : null;
  } else if (isTableOrPage) {
    type = 'table';
    shift = gShift;
  } else {
    shift = blockShift(granule, level);
    type = shift === null ? 'reserved' : 'block';
  }
  if (type === 'reserved') {
    notes.push(
      level === 3 ? 'bits[1:0] == 0b01 at level 3 is reserved' : `no block descriptors at level ${level}`,
    );
    return { ...base, type, outputAddress: null, mappingSize: null, fields, notes };
  }
  const outputAddress = addressOf(d, shift!, granule);
  if (type === 'table') {
    if (stage === 1) {
      fields.PXNTable = bit(d, 59);
      fields.UXNTable = bit(d, 60);
      fields.APTable = bits(d, 61, 2);
      fields.NSTable = bit(d, 63);
      notes.push(`APTable: ${APTABLE[fields.APTable as number]}`);
    }
    return { ...base, type, outputAddress, mappingSize: null, fields, notes };
  }
  if (stage === 1) {
    fields.AttrIndx = bits(d, 2, 3);
    fields.NS = bit(d, 5);
    fields.AP = bits(d, 6, 2);
    fields.SH = bits(d, 8, 2);
    fields.AF = bit(d, 10);
    fields.nG = bit(d, 11);
    fields.DBM = bit(d, 51);
    fields.Contiguous = bit(d, 52);
    fields.PXN = bit(d, 53);
    fields.UXN = bit(d, 54);
    notes.push(`AP: ${AP_S1[fields.AP as number]}`);
  } else {
    fields.MemAttr = bits(d, 2, 4);
    fields.S2AP = bits(d, 6, 2);
    fields.SH = bits(d, 8, 2);
    fields.AF = bit(d, 10);
    fields.DBM = bit(d, 51);
    fields.Contiguous = bit(d, 52);
    fields.XN = bits(d, 53, 2);
    notes.push(`S2AP: ${S2AP[fields.S2AP as number]}`);
    const ma = fields.MemAttr as number;
    notes.push(`MemAttr: ${ma >> 2 === 0 ? 'Device' : 'Normal'} (0b${ma.toString(2).padStart(4, '0')})`);
  }
  fields.SW = bits(d, 55, 4);
  notes.push(`SH: ${SH[fields.SH as number]}`);
  if (!fields.AF) notes.push('AF == 0: first access faults unless hardware updates the Access flag');
  return { ...base, type, outputAddress, mappingSize: 1n << BigInt(shift!), fields, notes };
}
