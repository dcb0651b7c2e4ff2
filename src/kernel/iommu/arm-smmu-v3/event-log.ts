/**
 * How the arm-smmu-v3 driver prints an event record: the raw words (`event 0x%02x received:`
 * then four `\t0x%016llx` lines), then arm_smmu_dump_event()'s decoded lines.
 */

import { type DecodedEvent, EVT_CLASS_LINUX, EVT_ID } from '../../../arch/smmuv3/event.ts';

/** printf("%#x") / ("%#llx"): 0 prints as "0", anything else with 0x. */
export function hashX(v: bigint | number): string {
  const b = typeof v === 'bigint' ? v : BigInt(v);
  return b === 0n ? '0' : `0x${b.toString(16)}`;
}

const TRANSLATION: ReadonlySet<number> = new Set([
  EVT_ID.F_TRANSLATION,
  EVT_ID.F_ADDR_SIZE,
  EVT_ID.F_ACCESS,
  EVT_ID.F_PERMISSION,
]);
const FETCH: ReadonlySet<number> = new Set([EVT_ID.F_STE_FETCH, EVT_ID.F_CD_FETCH, EVT_ID.F_VMS_FETCH]);
const CLASS_INDEX: Readonly<Record<string, number>> = { CD: 0, TT: 1, IN: 2, Reserved: 3 };

/** The raw dump: header line and one line per 64-bit word. */
export function rawEventLines(words: readonly bigint[]): string[] {
  const id = Number(words[0]! & 0xffn);
  return [
    `event 0x${id.toString(16).padStart(2, '0')} received:`,
    ...words.map((w) => `\t0x${w.toString(16).padStart(16, '0')}`),
  ];
}

/** arm_smmu_dump_event()'s decoded line(s) for a record, `client` being the master's device name. */
export function decodedEventLines(e: DecodedEvent, client: string): string[] {
  const head = `event: ${e.known ? e.name : 'UNKNOWN'} client: ${client} sid: ${hashX(e.streamId)} ssid: ${hashX(e.substreamId ?? 0)}`;
  if (TRANSLATION.has(e.code)) {
    const cls = EVT_CLASS_LINUX[CLASS_INDEX[e.class ?? 'IN'] ?? 2];
    const tt = e.class === 'TT' ? (e.ttRead ? ' ttd_read' : ' ttd_write') : '';
    return [
      `${head} iova: ${hashX(e.inputAddress ?? 0n)} ipa: ${hashX(e.ipa ?? 0n)}`,
      `${e.privileged ? 'priv' : 'unpriv'} ${e.instruction ? 'inst' : 'data'} ${e.read ? 'read' : 'write'} ${e.stage2 ? 's2' : 's1'} "${cls}"${tt}${e.stall ? ' stall' : ''} stag: ${hashX(e.stag ?? 0)}`,
    ];
  }
  if (FETCH.has(e.code)) return [`${head} fetch_addr: ${hashX(e.fetchAddress ?? 0n)}`];
  return [head];
}
