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

export interface LogScan {
  readonly records: LogRecord[];
  readonly warnings: string[];
}

interface Pending {
  line: number;
  timestamp: string | null;
  device: string | null;
  dataRe: RegExp;
  headerId: number;
  words: bigint[];
  halves: number[];
  mode: 'u64' | 'u32-halves' | null;
}

const RECEIVED_RE = /(?:(\S+?):\s+)?event\s+0x([0-9a-f]{1,2})\s+received\b/i;
const TIMESTAMP_RE = /\[\s*\d+\.\d+\]/;
const CLIENT_RE = /\bevent:\s+\S+\s+client:\s+(.+?)\s+sid:/;
const PAYLOAD = '(0x[0-9a-f]{16}|0x[0-9a-f]{8}\\s+[0-9a-f]{8}|0x[0-9a-f]{8})';

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function dataRegex(device: string | null): RegExp {
  // With a device name, the hex word must be the whole message after "device:", as dev_err prints it.
  if (device) return new RegExp(`${escapeRe(device)}:\\s+${PAYLOAD}\\s*$`, 'i');
  return new RegExp(`(?:^|[\\s:\\]|>])${PAYLOAD}\\s*$`, 'i');
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
  const pending: Pending[] = [];
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
  const abandon = (p: Pending, why: string) => {
    const have = p.mode === 'u32-halves' ? `${p.halves.length} of 8 halves` : `${p.words.length} of 4 words`;
    warnings.push(
      `line ${p.line}: event 0x${p.headerId.toString(16)} record incomplete (${have}) ${why}; skipped`,
    );
  };

  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const rm = RECEIVED_RE.exec(line);
    if (rm) {
      const device = rm[1] ?? null;
      const idx = pending.findIndex((p) => p.device === device);
      if (idx >= 0) {
        abandon(pending[idx]!, `before the next record at line ${i + 1}`);
        pending.splice(idx, 1);
      }
      pending.push({
        line: i + 1,
        timestamp: TIMESTAMP_RE.exec(line)?.[0] ?? null,
        device,
        dataRe: dataRegex(device),
        headerId: Number.parseInt(rm[2]!, 16),
        words: [],
        halves: [],
        mode: null,
      });
      lastDone = null;
      continue;
    }
    let used = false;
    for (let k = 0; k < pending.length; k++) {
      const p = pending[k]!;
      const dm = p.dataRe.exec(line);
      if (!dm || !take(p, dm[1]!)) continue;
      used = true;
      if (complete(p)) {
        pending.splice(k, 1);
        finish(p);
      }
      break;
    }
    if (used) continue;
    const cm = CLIENT_RE.exec(line);
    if (cm && lastDone) {
      (lastDone as LogRecord).client = cm[1]!;
      lastDone = null;
    }
  }
  for (const p of pending) abandon(p, 'at end of log');
  records.sort((a, b) => a.line - b.line);
  return { records, warnings };
}
