// Flattened Device Tree (dtb) reader and writer, per the Devicetree Specification v0.4, chapter 5.
//
// parseFdt() is the only function that throws, and it throws only FdtError, whose `offset` is the
// byte offset in the blob where the problem is. Every read is bounds-checked before it happens, so
// no RangeError can escape from a DataView deep inside. tryParseFdt() returns a result instead.

import { DeviceTree, DtNode, MAX_NODE_DEPTH, type MemReserve, NODE_TOO_DEEP } from './tree.ts';

export const FDT_MAGIC = 0xd00dfeed;
export const FDT_BEGIN_NODE = 1;
export const FDT_END_NODE = 2;
export const FDT_PROP = 3;
export const FDT_NOP = 4;
export const FDT_END = 9;
/** Size of the version-17 header. */
export const FDT_HEADER_SIZE = 40;
/** Oldest version this reader understands (v16 introduced the name-only node format we rely on). */
export const FDT_MIN_VERSION = 16;
/** Version written by dtc and by writeFdt(). */
export const FDT_VERSION = 17;

export class FdtError extends Error {
  override readonly name = 'FdtError';
  constructor(
    /** Byte offset in the blob where the problem was found. */
    readonly offset: number,
    readonly detail: string,
  ) {
    super(`malformed dtb at offset 0x${offset.toString(16)} (${offset}): ${detail}`);
  }
}

export type FdtResult = { ok: true; tree: DeviceTree } | { ok: false; error: FdtError };

export interface FdtHeader {
  magic: number;
  totalsize: number;
  offDtStruct: number;
  offDtStrings: number;
  offMemRsvmap: number;
  version: number;
  lastCompVersion: number;
  bootCpuidPhys: number;
  sizeDtStrings: number;
  sizeDtStruct: number;
}

const utf8 = new TextDecoder('utf-8');

/** Parses a dtb; returns a result instead of throwing. */
export function tryParseFdt(blob: Uint8Array): FdtResult {
  try {
    return { ok: true, tree: parseFdt(blob) };
  } catch (e) {
    if (e instanceof FdtError) return { ok: false, error: e };
    throw e;
  }
}

/** Does this look like a dtb (starts with the FDT magic)? */
export function isFdt(blob: Uint8Array): boolean {
  return blob.length >= 4 && readU32(blob, 0) === FDT_MAGIC;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** Reads and validates the header. Throws FdtError. */
export function parseFdtHeader(blob: Uint8Array): FdtHeader {
  if (blob.length < 4) throw new FdtError(0, `blob is ${blob.length} bytes, too short for the magic`);
  const magic = readU32(blob, 0);
  if (magic !== FDT_MAGIC) {
    throw new FdtError(0, `bad magic 0x${magic.toString(16)}, expected 0x${FDT_MAGIC.toString(16)}`);
  }
  // Version first: older versions have shorter headers.
  if (blob.length < 28) throw new FdtError(blob.length, 'truncated header (needs at least 28 bytes)');
  const version = readU32(blob, 20);
  const lastCompVersion = readU32(blob, 24);
  if (version < FDT_MIN_VERSION) {
    throw new FdtError(20, `unsupported version ${version} (this reader needs >= ${FDT_MIN_VERSION})`);
  }
  if (lastCompVersion > FDT_VERSION) {
    throw new FdtError(24, `last_comp_version ${lastCompVersion} is newer than supported ${FDT_VERSION}`);
  }
  const hdrSize = version >= 17 ? 40 : 36;
  if (blob.length < hdrSize) throw new FdtError(blob.length, `truncated header (needs ${hdrSize} bytes)`);
  const h: FdtHeader = {
    magic,
    totalsize: readU32(blob, 4),
    offDtStruct: readU32(blob, 8),
    offDtStrings: readU32(blob, 12),
    offMemRsvmap: readU32(blob, 16),
    version,
    lastCompVersion,
    bootCpuidPhys: readU32(blob, 28),
    sizeDtStrings: readU32(blob, 32),
    sizeDtStruct: version >= 17 ? readU32(blob, 36) : 0,
  };
  if (h.totalsize < hdrSize) throw new FdtError(4, `totalsize ${h.totalsize} is smaller than the header`);
  if (h.totalsize > blob.length) {
    throw new FdtError(
      blob.length,
      `truncated: totalsize is ${h.totalsize} but the blob has ${blob.length} bytes`,
    );
  }
  const block = (field: number, name: string, off: number, size: number) => {
    if (off < hdrSize || off > h.totalsize) {
      throw new FdtError(
        field,
        `${name} offset 0x${off.toString(16)} is outside the blob (totalsize ${h.totalsize})`,
      );
    }
    if (size > h.totalsize - off) {
      throw new FdtError(
        field,
        `${name} block [0x${off.toString(16)}, +${size}) runs past totalsize ${h.totalsize}`,
      );
    }
  };
  block(16, 'memory reservation', h.offMemRsvmap, 0);
  if (h.offMemRsvmap % 8 !== 0) throw new FdtError(16, 'memory reservation block is not 8-byte aligned');
  block(8, 'structure', h.offDtStruct, h.sizeDtStruct);
  if (h.offDtStruct % 4 !== 0) throw new FdtError(8, 'structure block is not 4-byte aligned');
  block(12, 'strings', h.offDtStrings, h.sizeDtStrings);
  return h;
}

/**
 * Parses a dtb into a DeviceTree. Throws FdtError (with the offending offset) on any malformed input:
 * bad magic, unsupported version, truncation, blocks or name offsets out of range, unterminated
 * strings, bad token nesting, or a missing FDT_END.
 */
export function parseFdt(blob: Uint8Array): DeviceTree {
  const h = parseFdtHeader(blob);
  const end = h.totalsize;

  // Memory reservation block: (address, size) u64 pairs ended by (0, 0).
  const memReserve: MemReserve[] = [];
  for (let o = h.offMemRsvmap; ; o += 16) {
    if (o + 16 > end) throw new FdtError(o, 'memory reservation block is not terminated by a (0, 0) entry');
    const address = (BigInt(readU32(blob, o)) << 32n) | BigInt(readU32(blob, o + 4));
    const size = (BigInt(readU32(blob, o + 8)) << 32n) | BigInt(readU32(blob, o + 12));
    if (address === 0n && size === 0n) break;
    memReserve.push({ address, size });
  }

  const structEnd = h.version >= 17 ? h.offDtStruct + h.sizeDtStruct : end;
  const strStart = h.offDtStrings;
  const strEnd = h.offDtStrings + h.sizeDtStrings;
  const nameCache = new Map<number, string>();

  const stringAt = (nameoff: number, at: number): string => {
    const cached = nameCache.get(nameoff);
    if (cached !== undefined) return cached;
    if (nameoff >= h.sizeDtStrings) {
      throw new FdtError(
        at,
        `property name offset ${nameoff} is outside the strings block (size ${h.sizeDtStrings})`,
      );
    }
    const s = strStart + nameoff;
    let e = s;
    while (e < strEnd && blob[e] !== 0) e++;
    if (e >= strEnd) throw new FdtError(s, 'unterminated string in the strings block');
    const str = utf8.decode(blob.subarray(s, e));
    nameCache.set(nameoff, str);
    return str;
  };

  let o = h.offDtStruct;
  const token = (): number => {
    if (o + 4 > structEnd) throw new FdtError(o, 'structure block ends without FDT_END');
    const t = readU32(blob, o);
    o += 4;
    return t;
  };

  let root: DtNode | null = null;
  const stack: DtNode[] = [];
  for (;;) {
    const at = o;
    const t = token();
    if (t === FDT_BEGIN_NODE) {
      let e = o;
      while (e < structEnd && blob[e] !== 0) e++;
      if (e >= structEnd) throw new FdtError(o, 'unterminated node name');
      const name = utf8.decode(blob.subarray(o, e));
      o = (e + 1 + 3) & ~3;
      if (stack.length === 0) {
        if (root) throw new FdtError(at, 'second root node');
        if (name !== '') throw new FdtError(at, `root node has a name "${name}"`);
        root = new DtNode('');
        stack.push(root);
      } else {
        if (name === '') throw new FdtError(at, 'node with an empty name below the root');
        if (stack.length >= MAX_NODE_DEPTH) {
          const path = `/${stack
            .slice(1)
            .map((n) => n.name)
            .join('/')}/${name}`;
          throw new FdtError(at, `node ${path} is ${NODE_TOO_DEEP}`);
        }
        const n = new DtNode(name);
        stack[stack.length - 1]!.addChild(n);
        stack.push(n);
      }
    } else if (t === FDT_END_NODE) {
      if (stack.length === 0) throw new FdtError(at, 'FDT_END_NODE without a matching FDT_BEGIN_NODE');
      stack.pop();
    } else if (t === FDT_PROP) {
      if (o + 8 > structEnd) throw new FdtError(o, 'truncated property header');
      const len = readU32(blob, o);
      const nameoff = readU32(blob, o + 4);
      o += 8;
      if (stack.length === 0) throw new FdtError(at, 'property outside any node');
      if (len > structEnd - o) throw new FdtError(at, `property length ${len} runs past the structure block`);
      const name = stringAt(nameoff, at + 8);
      // Copy so that the tree does not pin (or alias) the caller's buffer.
      stack[stack.length - 1]!.properties.set(name, blob.slice(o, o + len));
      o = (o + len + 3) & ~3;
    } else if (t === FDT_NOP) {
      // nothing
    } else if (t === FDT_END) {
      if (stack.length !== 0) throw new FdtError(at, `FDT_END with ${stack.length} node(s) still open`);
      if (!root) throw new FdtError(at, 'no root node');
      break;
    } else {
      throw new FdtError(at, `unknown structure token 0x${t.toString(16)}`);
    }
  }
  return new DeviceTree(root, memReserve, h.bootCpuidPhys);
}

const utf8Enc = new TextEncoder();

/** Writes a version-17 dtb (last_comp_version 16), as dtc does. */
export function writeFdt(tree: DeviceTree): Uint8Array {
  const strings: number[] = [];
  const stringOffsets = new Map<string, number>();
  const nameOff = (s: string): number => {
    let off = stringOffsets.get(s);
    if (off === undefined) {
      off = strings.length;
      for (const b of utf8Enc.encode(s)) strings.push(b);
      strings.push(0);
      stringOffsets.set(s, off);
    }
    return off;
  };

  const struct: number[] = [];
  const u32 = (v: number) => struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const pad = () => {
    while (struct.length % 4 !== 0) struct.push(0);
  };
  // depth-first with an explicit stack (a tree built in code may be deeper than the JS stack):
  // a node is pushed, then a marker that closes it once its children are written
  const todo: Array<DtNode | null> = [tree.root];
  while (todo.length > 0) {
    const n = todo.pop()!;
    if (n === null) {
      u32(FDT_END_NODE);
      continue;
    }
    u32(FDT_BEGIN_NODE);
    for (const b of utf8Enc.encode(n.name)) struct.push(b);
    struct.push(0);
    pad();
    for (const [name, value] of n.properties) {
      u32(FDT_PROP);
      u32(value.length);
      u32(nameOff(name));
      for (const b of value) struct.push(b);
      pad();
    }
    todo.push(null);
    for (let i = n.children.length - 1; i >= 0; i--) todo.push(n.children[i]!);
  }
  u32(FDT_END);

  const rsvOff = FDT_HEADER_SIZE; // 40 is 8-byte aligned
  const rsvSize = (tree.memReserve.length + 1) * 16;
  const structOff = rsvOff + rsvSize;
  const stringsOff = structOff + struct.length;
  const total = stringsOff + strings.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const hdr = [
    FDT_MAGIC,
    total,
    structOff,
    stringsOff,
    rsvOff,
    FDT_VERSION,
    16,
    tree.bootCpuidPhys,
    strings.length,
    struct.length,
  ];
  for (let i = 0; i < hdr.length; i++) dv.setUint32(i * 4, hdr[i]! >>> 0);
  tree.memReserve.forEach((r, i) => {
    dv.setBigUint64(rsvOff + i * 16, r.address);
    dv.setBigUint64(rsvOff + i * 16 + 8, r.size);
  });
  out.set(struct, structOff);
  out.set(strings, stringsOff);
  return out;
}
