/**
 * What a scenario returns becomes JSON (results files, --json): bigints become hex strings,
 * typed arrays arrays of numbers, Maps and Sets arrays, functions and cycles are dropped — so a
 * scenario can return what it has without thinking about the format.
 */
export function jsonSafe(v: unknown, seen = new Set<object>()): unknown {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v !== 'object') return undefined;
  if (seen.has(v)) return '[circular]';
  seen.add(v);
  try {
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
    if (v instanceof Map) return [...v.entries()].map(([k, x]) => [jsonSafe(k, seen), jsonSafe(x, seen)]);
    if (v instanceof Set) return [...v].map((x) => jsonSafe(x, seen));
    if (Array.isArray(v)) return v.map((x) => jsonSafe(x, seen) ?? null);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const s = jsonSafe(x, seen);
      if (s !== undefined) out[k] = s;
    }
    return out;
  } finally {
    seen.delete(v);
  }
}
