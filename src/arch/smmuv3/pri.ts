// PRI queue entries (IHI 0070 §8): 2 × 64-bit words, one PCIe Page Request each.

import { decodeFields, type FieldDef, field, setAddrLoHi, setField } from './bits.ts';

export const PRI_WORDS = 2;
export const PRI_DWORDS = 4;
export const PRI_BYTES = 16;

/** Every PRI queue entry field, keyed by spec name. */
export const PRI = {
  StreamID: field('StreamID', 0, 32),
  SubstreamID: field('SubstreamID', 32, 20),
  PRIV: field('PRIV', 58, 1, { desc: 'privileged access requested' }),
  EXEC: field('EXEC', 59, 1, { desc: 'execute access requested' }),
  READ: field('READ', 60, 1, { desc: 'read access requested' }),
  WRITE: field('WRITE', 61, 1, { desc: 'write access requested' }),
  LAST: field('LAST', 62, 1, { desc: 'last request in the page request group' }),
  SSV: field('SSV', 63, 1, { desc: 'PASID (SubstreamID) valid' }),
  PRGIndex: field('PRGIndex', 64, 9, { desc: 'page request group index' }),
  PageAddr: field('PageAddr', 76, 52, { addr: true, desc: 'page address [63:12]' }),
} as const satisfies Record<string, FieldDef>;

export const PRI_FIELDS: readonly FieldDef[] = Object.freeze(Object.values(PRI));

export interface DecodedPri {
  readonly streamId: number;
  readonly ssv: boolean;
  readonly substreamId: number | null;
  readonly privileged: boolean;
  readonly exec: boolean;
  readonly read: boolean;
  readonly write: boolean;
  readonly last: boolean;
  readonly prgIndex: number;
  readonly address: bigint;
  /** A Stop Marker (PCIe): a PASID-tagged request with LAST and neither READ nor WRITE. */
  readonly stopMarker: boolean;
  readonly fields: Readonly<Record<string, bigint>>;
}

/** Decodes a PRI queue entry (missing words read as zero). Never throws. */
export function decodePri(words: readonly bigint[]): DecodedPri {
  const f = decodeFields(words, PRI_FIELDS);
  const b = (n: string) => f[n] !== 0n;
  const ssv = b('SSV');
  const read = b('READ');
  const write = b('WRITE');
  const last = b('LAST');
  return {
    streamId: Number(f.StreamID),
    ssv,
    substreamId: ssv ? Number(f.SubstreamID) : null,
    privileged: b('PRIV'),
    exec: b('EXEC'),
    read,
    write,
    last,
    prgIndex: Number(f.PRGIndex),
    address: f.PageAddr!,
    stopMarker: ssv && last && !read && !write,
    fields: f,
  };
}

export interface PriArgs {
  streamId: number;
  ssv?: boolean;
  substreamId?: number;
  privileged?: boolean;
  exec?: boolean;
  read?: boolean;
  write?: boolean;
  last?: boolean;
  prgIndex: number;
  /** Page address as a Number (< 2^53) ... */
  address?: number;
  /** ... or as an exact lo/hi pair (wins when given). */
  addressLo?: number;
  addressHi?: number;
}

/** Writes a PRI queue entry into 4 dwords of `dw` at `off` (zeroing them first), no BigInt. */
export function encodePriInto(dw: Uint32Array, a: PriArgs, off = 0): void {
  dw.fill(0, off, off + PRI_DWORDS);
  setField(dw, PRI.StreamID, a.streamId >>> 0, off);
  if (a.ssv) {
    setField(dw, PRI.SSV, 1, off);
    setField(dw, PRI.SubstreamID, a.substreamId ?? 0, off);
  }
  if (a.privileged) setField(dw, PRI.PRIV, 1, off);
  if (a.exec) setField(dw, PRI.EXEC, 1, off);
  if (a.read) setField(dw, PRI.READ, 1, off);
  if (a.write) setField(dw, PRI.WRITE, 1, off);
  if (a.last) setField(dw, PRI.LAST, 1, off);
  setField(dw, PRI.PRGIndex, a.prgIndex, off);
  if (a.addressLo !== undefined || a.addressHi !== undefined) {
    setAddrLoHi(dw, PRI.PageAddr, a.addressLo ?? 0, a.addressHi ?? 0, off);
  } else if (a.address !== undefined) {
    setField(dw, PRI.PageAddr, a.address, off);
  }
}

// Hot-path accessors on a dword view.
export const priStreamId = (dw: ArrayLike<number>, off = 0): number => dw[off]! >>> 0;
export const priLast = (dw: ArrayLike<number>, off = 0): boolean => (dw[off + 1]! & 0x40000000) !== 0;
export const priPrgIndex = (dw: ArrayLike<number>, off = 0): number => dw[off + 2]! & 0x1ff;
export const priIsStopMarker = (dw: ArrayLike<number>, off = 0): boolean =>
  (dw[off + 1]! & 0xf0000000) >>> 0 === 0xc0000000; // SSV, LAST, !WRITE, !READ
