// Decoders of SMMUv1/v2 registers (FSR, FSYNR0, sGFSR, SCTLR, CBAR, SMR, S2CR, sCR0, the ID
// registers), naming the bits as Linux's arm-smmu driver does. Pure functions of a number;
// `decode fsr VALUE` and the log decoder use them, and so does the driver model's fault print
// (fsrFlagsLinux / fsynr0FlagsLinux give the bracketed part of its "FSR    = ..." lines).

import {
  CBAR,
  CBAR_TYPE_NAMES,
  CBAR_TYPE_S1_TRANS_S2_TRANS,
  FSR,
  FSYNR0,
  getField,
  ID0,
  ID1,
  ID2,
  ID7,
  idSizeToBits,
  type RegField,
  S2CR,
  S2CR_PRIVCFG_NAMES,
  S2CR_TYPE_NAMES,
  SCTLR,
  SMR,
  SMR_MASK_15,
  sCR0,
  sGFSR,
  sGFSYNR0,
} from './regs.ts';

/** A register value taken apart. */
export interface DecodedReg {
  readonly register: string;
  /** The value as an unsigned 32-bit number. */
  readonly value: number;
  /** One-bit fields that are set, by name (in the register's print order). */
  readonly flags: string[];
  /** Multi-bit fields by name (and one-bit fields the register reports as numbers). */
  readonly fields: Record<string, number>;
  /** Names of encoded fields' values (e.g. TYPE: 'S2_TRANS'). */
  readonly names: Record<string, string>;
}

type FieldTable = Readonly<Record<string, RegField>>;

function decode(
  register: string,
  value: number,
  table: FieldTable,
  flagOrder: readonly string[],
  names: Record<string, string> = {},
): DecodedReg {
  const v = value >>> 0;
  const flags: string[] = [];
  const fields: Record<string, number> = {};
  for (const name of flagOrder) {
    const fl = table[name];
    if (fl !== undefined && getField(v, fl) !== 0) flags.push(name);
  }
  for (const [name, fl] of Object.entries(table)) {
    if (fl.width > 1) fields[name] = getField(v, fl);
  }
  return { register, value: v, flags, fields, names };
}

/** Flags in descending bit order (Linux prints FSR and FSYNR0 flags high bit first). */
function flagsHighFirst(table: FieldTable): string[] {
  return Object.entries(table)
    .filter(([, fl]) => fl.width === 1)
    .sort((a, b) => b[1].lsb - a[1].lsb)
    .map(([n]) => n);
}

/** Context bank Fault Status Register. fields: FORMAT. */
export function decodeFsr(value: number): DecodedReg {
  return decode('FSR', value, FSR, flagsHighFirst(FSR));
}

/** Context bank Fault Syndrome Register 0. fields: PLVL, S1CBNDX. */
export function decodeFsynr0(value: number): DecodedReg {
  return decode('FSYNR0', value, FSYNR0, flagsHighFirst(FSYNR0));
}

/** Global Fault Status Register. */
export function decodeGfsr(value: number): DecodedReg {
  return decode('sGFSR', value, sGFSR, flagsHighFirst(sGFSR));
}

/** Global Fault Syndrome Register 0. */
export function decodeGfsynr0(value: number): DecodedReg {
  return decode('sGFSYNR0', value, sGFSYNR0, flagsHighFirst(sGFSYNR0));
}

/** Context bank System Control Register. */
export function decodeSctlr(value: number): DecodedReg {
  return decode('SCTLR', value, SCTLR, flagsHighFirst(SCTLR));
}

/** Global Configuration Register 0. */
export function decodeScr0(value: number): DecodedReg {
  return decode('sCR0', value, sCR0, flagsHighFirst(sCR0));
}

/**
 * Context Bank Attribute Register. For a nested (S1_TRANS_S2_TRANS) bank, fields.CBNDX is the
 * stage-2 bank and S1_BPSHCFG / S1_MEMATTR are not reported; otherwise the reverse.
 */
export function decodeCbar(value: number): DecodedReg {
  const v = value >>> 0;
  const type = getField(v, CBAR.TYPE);
  const fields: Record<string, number> = {
    VMID: getField(v, CBAR.VMID),
    TYPE: type,
    IRPTNDX: getField(v, CBAR.IRPTNDX),
  };
  if (type === CBAR_TYPE_S1_TRANS_S2_TRANS) fields.CBNDX = getField(v, CBAR.CBNDX);
  else {
    fields.S1_BPSHCFG = getField(v, CBAR.S1_BPSHCFG);
    fields.S1_MEMATTR = getField(v, CBAR.S1_MEMATTR);
  }
  return { register: 'CBAR', value: v, flags: [], fields, names: { TYPE: CBAR_TYPE_NAMES[type]! } };
}

/**
 * Stream Match Register. Without extended StreamIDs (`exids` false) MASK is bits 30:16 and bit 31
 * is VALID; with them MASK is 31:16 and validity lives in S2CR.EXIDVALID.
 */
export function decodeSmr(value: number, exids = false): DecodedReg {
  const v = value >>> 0;
  const fields = { ID: getField(v, SMR.ID), MASK: getField(v, exids ? SMR.MASK : SMR_MASK_15) };
  const flags = !exids && getField(v, SMR.VALID) !== 0 ? ['VALID'] : [];
  return { register: 'SMR', value: v, flags, fields, names: {} };
}

/** Stream-to-Context Register. */
export function decodeS2cr(value: number): DecodedReg {
  const v = value >>> 0;
  const d = decode('S2CR', v, S2CR, ['EXIDVALID']);
  d.names.TYPE = S2CR_TYPE_NAMES[d.fields.TYPE!]!;
  d.names.PRIVCFG = S2CR_PRIVCFG_NAMES[d.fields.PRIVCFG!]!;
  return d;
}

export function decodeId0(value: number): DecodedReg {
  return decode('ID0', value, ID0, flagsHighFirst(ID0));
}

export function decodeId1(value: number): DecodedReg {
  return decode('ID1', value, ID1, ['PAGESIZE']);
}

/** ID2; names.IAS / OAS / UBS give the sizes in bits. */
export function decodeId2(value: number): DecodedReg {
  const d = decode('ID2', value, ID2, flagsHighFirst(ID2));
  for (const k of ['IAS', 'OAS', 'UBS'] as const) d.names[k] = `${idSizeToBits(d.fields[k]!)}-bit`;
  return d;
}

export function decodeId7(value: number): DecodedReg {
  return decode('ID7', value, ID7, []);
}

/** Register decoders by name (lower case), for `decode REG VALUE`. */
export const SMMUV2_DECODERS: Readonly<Record<string, (v: number) => DecodedReg>> = {
  fsr: decodeFsr,
  fsynr0: decodeFsynr0,
  gfsr: decodeGfsr,
  sgfsr: decodeGfsr,
  gfsynr0: decodeGfsynr0,
  sgfsynr0: decodeGfsynr0,
  sctlr: decodeSctlr,
  scr0: decodeScr0,
  cbar: decodeCbar,
  smr: (v) => decodeSmr(v),
  s2cr: decodeS2cr,
  id0: decodeId0,
  id1: decodeId1,
  id2: decodeId2,
  id7: decodeId7,
};

/**
 * The bracketed FSR decode of Linux's arm_smmu_print_context_fault_info (v6.12+), e.g.
 * "SS Format=0 TF" for 0x40000002: MULTI and SS first, then Format, then the fault bits from
 * UUT down to TF.
 */
export function fsrFlagsLinux(fsr: number): string {
  const v = fsr >>> 0;
  const has = (fl: RegField) => getField(v, fl) !== 0;
  let s = `${has(FSR.MULTI) ? 'MULTI ' : ''}${has(FSR.SS) ? 'SS ' : ''}Format=${getField(v, FSR.FORMAT)}`;
  for (const n of ['UUT', 'ASF', 'TLBLKF', 'TLBMCF', 'EF', 'PF', 'AFF', 'TF'] as const) {
    if (has(FSR[n])) s += ` ${n}`;
  }
  return s;
}

/** The bracketed FSYNR0 decode of the same print, e.g. "S1CBNDX=0 WNR PLVL=3". */
export function fsynr0FlagsLinux(fsynr0: number): string {
  const v = fsynr0 >>> 0;
  let s = `S1CBNDX=${getField(v, FSYNR0.S1CBNDX)}`;
  for (const n of ['AFR', 'PTWF', 'NSATTR', 'IND', 'PNU', 'WNR'] as const) {
    if (getField(v, FSYNR0[n]) !== 0) s += ` ${n}`;
  }
  return `${s} PLVL=${getField(v, FSYNR0.PLVL)}`;
}
