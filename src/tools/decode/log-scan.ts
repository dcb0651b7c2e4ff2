// Finds the SMMUv3 event records that the Linux arm-smmu-v3 driver (or Xen's port of it)
// dumped into a log, whatever prefixes the lines carry:
//
//   [  196.747107] arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:
//   [  196.747109] arm-smmu-v3 arm-smmu-v3.0.auto:   0x0000018000000010
//   ...
//   (XEN) SMMUv3: /smmuv3@9050000: event 0x10 received:
//   (XEN) SMMUv3: /smmuv3@9050000:  0x0000000800000010
//
// Words may be printed as 0x%016llx (four lines), as "0xHHHHHHHH LLLLLLLL", or as eight
// 32-bit halves. Lines that do not belong to a record are skipped.
//
// Linear in the size of the log: each line is looked at a bounded number of times (no regular
// expression that can backtrack over a long line), and a data line finds its record by device
// name in a Map, however many records are open at once.

export interface LogRecord {
  /** 1-based line number of the "event 0xNN received:" line. */
  readonly line: number;
  /** printk timestamp of that line, e.g. "[  196.747107]", if any. */
  readonly timestamp: string | null;
  /** The device name printed before "event", e.g. "arm-smmu-v3.0.auto", if any. */
  readonly device: string | null;
  /** The client named by a following decoded "event: ... client: X" line (newer kernels). */
  client: string | null;
  /** Event number from the header line. */
  readonly headerId: number;
  /** The four 64-bit words. */
  readonly words: readonly bigint[];
  /** How the words were printed. */
  readonly format: 'u64' | 'u32-halves';
}

/** A record the log cut short (fewer than four words): what its words do give. */
export interface PartialRecord {
  readonly line: number;
  readonly timestamp: string | null;
  readonly device: string | null;
  readonly headerId: number;
  /** The complete 64-bit words it has (0 to 3). */
  readonly words: readonly bigint[];
  /** Why it stopped ("before the next record at line N", "at end of log"). */
  readonly why: string;
}

export interface LogScan {
  readonly records: LogRecord[];
  readonly warnings: string[];
  /** Records cut short. */
  readonly partial: PartialRecord[];
  /** Lines (1-based) that full records' decoded output used (see log-notices.ts). */
  readonly recordLines: ReadonlySet<number>;
}

interface Pending {
  line: number;
  timestamp: string | null;
  device: string | null;
  headerId: number;
  words: bigint[];
  halves: number[];
  mode: 'u64' | 'u32-halves' | null;
}

const EVENT_RE = /event\s+0x([0-9a-f]{1,2})\s+received\b/i;
/** A printk timestamp, "[  196.747107]" (also used by the SMMUv1/v2 scan, log-smmuv2.ts). */
export const TIMESTAMP_RE = /\[\s*\d+\.\d+\]/;

function isWs(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

function hexRun(s: string, at: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (!isHex(s[at + i])) return false;
  return true;
}

function is0x(s: string, at: number): boolean {
  return s[at] === '0' && (s[at + 1] === 'x' || s[at + 1] === 'X');
}

/**
 * The device name a line carries right before `at` as "NAME:<whitespace>" (the run of
 * non-space characters before the colon), or null.
 */
export function deviceBefore(line: string, at: number): string | null {
  let j = at;
  while (j > 0 && isWs(line[j - 1])) j--;
  if (j === at || j === 0 || line[j - 1] !== ':') return null;
  const end = j - 1;
  let k = end;
  while (k > 0 && !isWs(line[k - 1])) k--;
  return k < end ? line.slice(k, end) : null;
}

/**
 * The data word a line ends with (trailing blanks allowed): "0x" and 16 hex digits, "0x" and 8
 * then (after blanks) 8 more, or "0x" and 8. Found from the end of the line, in one pass.
 */
export function tailPayload(line: string): { token: string; start: number } | null {
  let e = line.length;
  while (e > 0 && isWs(line[e - 1])) e--;
  if (e >= 18 && is0x(line, e - 18) && hexRun(line, e - 16, 16))
    return { token: line.slice(e - 18, e), start: e - 18 };
  if (e >= 10 && is0x(line, e - 10) && hexRun(line, e - 8, 8))
    return { token: line.slice(e - 10, e), start: e - 10 };
  if (e >= 8 && hexRun(line, e - 8, 8) && isWs(line[e - 9])) {
    let j = e - 9;
    while (j > 0 && isWs(line[j - 1])) j--;
    if (j >= 10 && is0x(line, j - 10) && hexRun(line, j - 8, 8))
      return { token: line.slice(j - 10, e), start: j - 10 };
  }
  return null;
}

/** "event: NAME client: CLIENT sid:" as newer kernels print after the raw words; the client, or null. */
function clientOf(line: string): string | null {
  for (let i = line.indexOf('event:'); i >= 0; i = line.indexOf('event:', i + 1)) {
    if (i > 0 && /\w/.test(line[i - 1]!)) continue;
    let p = i + 6;
    const ws = (): boolean => {
      const s = p;
      while (isWs(line[p])) p++;
      return p > s;
    };
    if (!ws()) continue;
    const nameStart = p;
    while (p < line.length && !isWs(line[p])) p++;
    if (p === nameStart || !ws() || !line.startsWith('client:', p)) continue;
    p += 7;
    if (!ws()) continue;
    // the client runs up to the first blanks followed by "sid:" (at least one character)
    for (let q = line.indexOf('sid:', p + 2); q >= 0; q = line.indexOf('sid:', q + 1)) {
      if (!isWs(line[q - 1])) continue;
      let r = q - 1;
      while (r > p + 1 && isWs(line[r - 1])) r--;
      return line.slice(p, r);
    }
    return null;
  }
  return null;
}

/** Applies one data token to a pending record. Returns true when the token was used. */
function take(p: Pending, token: string): boolean {
  const t = token.replace(/^0x/i, '');
  const parts = t.split(/\s+/);
  if (parts.length === 2) {
    // "0xHHHHHHHH LLLLLLLL": one 64-bit word printed as high then low half.
    if (p.mode === 'u32-halves') return false;
    p.mode = 'u64';
    p.words.push(BigInt(`0x${parts[0]}${parts[1]}`));
    return true;
  }
  if (t.length === 16) {
    if (p.mode === 'u32-halves') return false;
    p.mode = 'u64';
    p.words.push(BigInt(`0x${t}`));
    return true;
  }
  if (p.mode === 'u64') return false;
  p.mode = 'u32-halves';
  p.halves.push(Number.parseInt(t, 16));
  return true;
}

function complete(p: Pending): boolean {
  return p.mode === 'u32-halves' ? p.halves.length >= 8 : p.words.length >= 4;
}

/** Joins eight halves into words, choosing the order whose event number matches the header. */
function joinHalves(h: readonly number[], id: number): bigint[] {
  const join = (lo: number, hi: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  const memoryOrder = [0, 1, 2, 3].map((i) => join(h[2 * i]!, h[2 * i + 1]!));
  const swapped = [0, 1, 2, 3].map((i) => join(h[2 * i + 1]!, h[2 * i]!));
  if (Number(memoryOrder[0]! & 0xffn) === id) return memoryOrder;
  if (Number(swapped[0]! & 0xffn) === id) return swapped;
  return memoryOrder;
}

/** Scans a whole log. Never throws. */
export function scanLog(text: string): LogScan {
  const records: LogRecord[] = [];
  const warnings: string[] = [];
  const partial: PartialRecord[] = [];
  /** Lines that belong to full records' decoded output (not decoded-only events). */
  const recordLines = new Set<number>();
  /** Open records by device (null: printed without one), in the order they were opened. */
  const pending = new Map<string | null, Pending>();
  let lastDone: LogRecord | null = null;

  const finish = (p: Pending) => {
    const words = p.mode === 'u32-halves' ? joinHalves(p.halves, p.headerId) : p.words.slice(0, 4);
    const rec: LogRecord = {
      line: p.line,
      timestamp: p.timestamp,
      device: p.device,
      client: null,
      headerId: p.headerId,
      words,
      format: p.mode ?? 'u64',
    };
    records.push(rec);
    lastDone = rec;
  };
  /**
   * A data word for the open record of the device the line names ("NAME:  0x..."), or for one
   * opened without a device name (any line ending in a word); the older one first.
   */
  const takeData = (line: string): boolean => {
    const t = tailPayload(line);
    if (t === null) return false;
    const dev = deviceBefore(line, t.start);
    const named = dev === null ? undefined : pending.get(dev);
    const before = line[t.start - 1];
    const anon =
      t.start === 0 || isWs(before) || before === ':' || before === ']' || before === '|' || before === '>'
        ? pending.get(null)
        : undefined;
    const order =
      named !== undefined && anon !== undefined && anon.line < named.line ? [anon, named] : [named, anon];
    for (const p of order) {
      if (p === undefined || !take(p, t.token)) continue;
      if (complete(p)) {
        pending.delete(p.device);
        finish(p);
      }
      return true;
    }
    return false;
  };
  const abandon = (p: Pending, why: string) => {
    const have = p.mode === 'u32-halves' ? `${p.halves.length} of 8 halves` : `${p.words.length} of 4 words`;
    warnings.push(
      `line ${p.line}: event 0x${p.headerId.toString(16)} record incomplete (${have}) ${why}; reported as partial`,
    );
    const words =
      p.mode === 'u32-halves'
        ? joinHalves([...p.halves, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8), p.headerId).slice(
            0,
            p.halves.length >> 1,
          )
        : p.words.slice(0, 4);
    partial.push({
      line: p.line,
      timestamp: p.timestamp,
      device: p.device,
      headerId: p.headerId,
      words,
      why,
    });
  };

  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const rm = EVENT_RE.exec(line);
    if (rm) {
      // "NAME: event 0xNN received": the device is the word before the colon, if any
      const device = deviceBefore(line, rm.index);
      const prev = pending.get(device);
      if (prev !== undefined) {
        abandon(prev, `before the next record at line ${i + 1}`);
        pending.delete(device);
      }
      pending.set(device, {
        line: i + 1,
        timestamp: TIMESTAMP_RE.exec(line)?.[0] ?? null,
        device,
        headerId: Number.parseInt(rm[1]!, 16),
        words: [],
        halves: [],
        mode: null,
      });
      lastDone = null;
      continue;
    }
    if (pending.size > 0) {
      // a CMDQ error report's words (the skipped command) belong to it, not to an open record
      const cmdq = line.indexOf('CMDQ error (cons ');
      if (cmdq >= 0) {
        const device = deviceBefore(line, cmdq);
        const open = pending.get(device);
        if (open !== undefined) {
          abandon(open, `before a CMDQ error report at line ${i + 1}`);
          pending.delete(device);
        }
        continue;
      }
      if (takeData(line)) continue;
    }
    if (lastDone !== null) {
      const client = clientOf(line);
      if (client !== null) {
        (lastDone as LogRecord).client = client;
        lastDone = null;
        recordLines.add(i + 1);
      }
    }
  }
  for (const p of pending.values()) abandon(p, 'at end of log');
  records.sort((a, b) => a.line - b.line);
  partial.sort((a, b) => a.line - b.line);
  return { records, warnings, partial, recordLines };
}
