// The other SMMUv3 driver messages an auditor needs from a log, besides full event records
// (log-scan.ts): queue overflows (events or page requests were lost), printk's "callbacks
// suppressed" (rate-limited reports were dropped), command-queue errors with the command the
// driver skipped, CMD_SYNC timeouts, and events a kernel ≥ 6.13 printed only as their decoded line
// (arm_smmu_dump_event without the raw words). Each notice keeps the line number, the line's
// timestamp and the device (SMMU) that printed it.
//
// Lines are found by fixed substrings (indexOf), then parsed from a bounded slice: linear in the
// size of the log, however long a line is.

import { deviceBefore, tailPayload } from './log-scan.ts';

interface NoticeBase {
  /** 1-based line number. */
  readonly line: number;
  /** printk timestamp, e.g. "[  196.747107]", if any. */
  readonly timestamp: string | null;
  /** The SMMU that printed it ("9000000.iommu", "arm-smmu-v3.0.auto"), if named. */
  readonly device: string | null;
}

/** One SMMUv3 driver message that is not a full event record. */
export type LogNotice =
  | (NoticeBase & { kind: 'evtq-overflow' | 'priq-overflow' })
  | (NoticeBase & { kind: 'callbacks-suppressed'; function: string; count: number })
  | (NoticeBase & {
      kind: 'cmdq-error';
      cons: number;
      error: string;
      /** The skipped command's words (two when the log has them all). */
      words: bigint[];
    })
  | (NoticeBase & { kind: 'sync-timeout'; at: number; hwprod: number; hwcons: number })
  | (NoticeBase & {
      kind: 'decoded-event';
      name: string;
      client: string;
      sid: number;
      ssid: number;
      iova: bigint | null;
      ipa: bigint | null;
      fetchAddr: bigint | null;
      /** The second decoded line ('unpriv data write s1 "..." stag: 0'), if it follows. */
      detail: string | null;
    });

const TIMESTAMP_RE = /\[\s*\d+\.\d+\]/;
const num = (s: string | undefined): number =>
  s === undefined ? 0 : Number(s.startsWith('0x') ? s : `0x${s}`);
const big = (s: string | undefined): bigint | null =>
  s === undefined ? null : BigInt(s.startsWith('0x') ? s : `0x${s}`);
/** A hex number as printk's %#x / %#llx prints it ("0" for zero). */
const HEX = '(0x[0-9a-f]+|0)';

/**
 * The notices in `lines`. `recordLines` are the lines full event records used (their decoded
 * lines are part of those records, not decoded-only events).
 */
export function scanNotices(lines: readonly string[], recordLines: ReadonlySet<number>): LogNotice[] {
  const out: LogNotice[] = [];
  const base = (i: number, at: number): NoticeBase => ({
    line: i + 1,
    timestamp: TIMESTAMP_RE.exec(lines[i]!.slice(0, 64))?.[0] ?? null,
    device: deviceBefore(lines[i]!, at),
  });
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    let at: number;
    if ((at = line.indexOf('EVTQ overflow detected')) >= 0) {
      out.push({ ...base(i, at), kind: 'evtq-overflow' });
    } else if ((at = line.indexOf('PRIQ overflow detected')) >= 0) {
      out.push({ ...base(i, at), kind: 'priq-overflow' });
    } else if ((at = line.indexOf(' callbacks suppressed')) >= 0) {
      // "<function>: N callbacks suppressed" (printk_ratelimit)
      const m = /(\S+): (\d+)$/.exec(line.slice(Math.max(0, at - 128), at));
      if (m !== null) {
        const b = base(i, 0);
        out.push({ ...b, device: null, kind: 'callbacks-suppressed', function: m[1]!, count: Number(m[2]) });
      }
    } else if ((at = line.indexOf('CMDQ error (cons ')) >= 0) {
      const m = /^CMDQ error \(cons (0x[0-9a-f]+)\): (.*)$/i.exec(line.slice(at, at + 200).trimEnd());
      if (m === null) continue;
      const n: LogNotice = { ...base(i, at), kind: 'cmdq-error', cons: num(m[1]), error: m[2]!, words: [] };
      // "skipping command in error state:" then the command's words, one per line
      let j = i + 1;
      if (j < lines.length && lines[j]!.includes('skipping command in error state')) {
        for (j++; j < lines.length && n.words.length < 2; j++) {
          const t = tailPayload(lines[j]!);
          if (t === null || t.token.length !== 18) break;
          n.words.push(BigInt(t.token));
        }
        i = j - 1;
      }
      out.push(n);
    } else if ((at = line.indexOf('CMD_SYNC timeout at ')) >= 0) {
      const m = /^CMD_SYNC timeout at (0x[0-9a-f]+) \[hwprod (0x[0-9a-f]+), hwcons (0x[0-9a-f]+)\]/i.exec(
        line.slice(at, at + 120),
      );
      if (m !== null)
        out.push({
          ...base(i, at),
          kind: 'sync-timeout',
          at: num(m[1]),
          hwprod: num(m[2]),
          hwcons: num(m[3]),
        });
    } else if (
      !recordLines.has(i + 1) &&
      (at = line.indexOf('event: ')) >= 0 &&
      line.includes(' client: ', at)
    ) {
      const m = new RegExp(
        `^event: (\\S+) client: (.+?) sid: ${HEX} ssid: ${HEX}(?: iova: ${HEX} ipa: ${HEX}| fetch_addr: ${HEX})?\\s*$`,
        'i',
      ).exec(line.slice(at, at + 400));
      if (m === null) continue;
      const next = lines[i + 1];
      const detail =
        next !== undefined && / stag: (0x[0-9a-f]+|0)\s*$/i.test(next) && /"[^"]*"/.test(next)
          ? (/(?:un)?priv \S+ \S+ s[12] .*$/.exec(next)?.[0]?.trimEnd() ?? null)
          : null;
      out.push({
        ...base(i, at),
        kind: 'decoded-event',
        name: m[1]!,
        client: m[2]!,
        sid: num(m[3]),
        ssid: num(m[4]),
        iova: big(m[5]),
        ipa: big(m[6]),
        fetchAddr: big(m[7]),
        detail,
      });
      if (detail !== null) i++;
    }
  }
  return out;
}

/** One line of text for a notice (without its timestamp and device). */
export function noticeText(n: LogNotice, decodeCmd: (words: readonly bigint[]) => string): string {
  const h = (v: number | bigint) => `0x${v.toString(16)}`;
  switch (n.kind) {
    case 'evtq-overflow':
      return 'event queue overflow: events were lost (EVTQ overflow detected)';
    case 'priq-overflow':
      return 'PRI queue overflow: page requests were lost (PRIQ overflow detected)';
    case 'callbacks-suppressed':
      return `${n.count} rate-limited reports of ${n.function} suppressed (not in the log)`;
    case 'cmdq-error':
      return `CMDQ error at cons ${h(n.cons)}: ${n.error}; skipped command: ${
        n.words.length === 2 ? decodeCmd(n.words) : `not in the log (${n.words.length} of 2 words)`
      }`;
    case 'sync-timeout':
      return `CMD_SYNC timeout at ${h(n.at)} (hwprod ${h(n.hwprod)}, hwcons ${h(n.hwcons)}): the SMMU did not consume the command queue in time`;
    case 'decoded-event': {
      const addr =
        n.iova !== null
          ? ` iova: ${h(n.iova)} ipa: ${h(n.ipa ?? 0n)}`
          : n.fetchAddr !== null
            ? ` fetch_addr: ${h(n.fetchAddr)}`
            : '';
      return `event: ${n.name} client: ${n.client} sid: ${h(n.sid)} ssid: ${h(n.ssid)}${addr}${n.detail ? ` ${n.detail}` : ''} (decoded line only: no raw words)`;
    }
  }
}
