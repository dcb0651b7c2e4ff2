// Parsing of the hex words a user types on the command line.

export type ParseResult = { ok: true; value: bigint } | { ok: false; error: string };

const HEX_RE = /^(?:0x)?([0-9a-f][0-9a-f_]*)$/i;

/** Parses one 64-bit word given as hex, with or without 0x, underscores allowed as separators. */
export function parseHexWord(text: string): ParseResult {
  const m = HEX_RE.exec(text.trim());
  if (!m) return { ok: false, error: `'${text}' is not a hex number (expected e.g. 0x0000000800000010)` };
  const digits = m[1]!.replace(/_/g, '');
  if (digits.length === 0) return { ok: false, error: `'${text}' has no hex digits` };
  const value = BigInt(`0x${digits}`);
  if (value >> 64n !== 0n) return { ok: false, error: `'${text}' does not fit in 64 bits` };
  return { ok: true, value };
}

/** Lowercase hex with 0x prefix. */
export function hx(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/** Zero-padded 64-bit hex, as the Linux driver prints raw words. */
export function hx64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}
