// Text and JSON renderings of decoded SMMUv3 structures.

import type { FieldDef } from '../../arch/smmuv3/bits.ts';
import { type CommandValidation, type DecodedCommand, validateCommand } from '../../arch/smmuv3/cmd.ts';
import { type DecodedEvent, EVT_CLASS_LINUX, EVT_ID } from '../../arch/smmuv3/event.ts';
import type { DecodedPri } from '../../arch/smmuv3/pri.ts';
import type { DecodedPte } from '../../arch/vmsa/pte-decode.ts';
import { decodedEventLines } from '../../kernel/iommu/arm-smmu-v3/event-log.ts';
import { hx, hx64 } from './hex.ts';

/** One-line explanations of the event numbers. */
export const EVENT_MEANING: Readonly<Record<string, string>> = {
  F_UUT: 'unsupported upstream transaction',
  C_BAD_STREAMID: 'StreamID out of range of the Stream table',
  F_STE_FETCH: 'external abort fetching the STE',
  C_BAD_STE: 'STE invalid (V == 0) or ILLEGAL',
  F_BAD_ATS_TREQ: 'ATS Translation Request not allowed for this stream',
  F_STREAM_DISABLED: 'transaction without (or with a reserved) substream and S1DSS terminates it',
  F_TRANSL_FORBIDDEN: 'ATS-translated transaction not allowed to bypass the SMMU',
  C_BAD_SUBSTREAMID: 'SubstreamID out of range, or substreams disabled',
  F_CD_FETCH: 'external abort fetching the CD',
  C_BAD_CD: 'CD invalid (V == 0) or ILLEGAL',
  F_WALK_EABT: 'external abort during a translation table walk',
  F_TRANSLATION: 'translation fault: no valid descriptor for the address',
  F_ADDR_SIZE: 'address size fault: output address beyond the configured size',
  F_ACCESS: 'access flag fault (AF == 0)',
  F_PERMISSION: 'permission fault',
  F_TLB_CONFLICT: 'TLB conflict',
  F_CFG_CONFLICT: 'configuration cache conflict (STE.CONT)',
  E_PAGE_REQUEST: 'speculative page request hint',
  F_VMS_FETCH: 'external abort fetching the VMS',
};

const TRANSLATION_FAULTS: ReadonlySet<number> = new Set([
  EVT_ID.F_TRANSLATION,
  EVT_ID.F_ADDR_SIZE,
  EVT_ID.F_ACCESS,
  EVT_ID.F_PERMISSION,
]);
const FETCH_FAULTS: ReadonlySet<number> = new Set([
  EVT_ID.F_STE_FETCH,
  EVT_ID.F_CD_FETCH,
  EVT_ID.F_VMS_FETCH,
]);

const CLASS_INDEX = { CD: 0, TT: 1, IN: 2, Reserved: 3 } as const;

/**
 * The explanation line: exactly what the Linux driver's arm_smmu_dump_event() prints (the kernel
 * model's formatter), its lines joined into one. For events Linux prints no addresses for, the
 * addresses the record carries are appended.
 */
export function linuxEventLine(e: DecodedEvent, client: string): string {
  let s = decodedEventLines(e, client).join(' ');
  if (!TRANSLATION_FAULTS.has(e.code) && !FETCH_FAULTS.has(e.code)) {
    if (e.inputAddress !== null) s += ` iova: ${hx(e.inputAddress)}`;
    if (e.fetchAddress !== null) s += ` fetch_addr: ${hx(e.fetchAddress)}`;
    if (e.code === EVT_ID.F_WALK_EABT)
      s += ` ${e.stage2 ? 's2' : 's1'} "${EVT_CLASS_LINUX[CLASS_INDEX[e.class ?? 'IN']]}"`;
  }
  return s;
}

/** JSON object for one event record (the keys documented for `decode event --json`). */
export function eventJson(e: DecodedEvent, words: readonly bigint[], extra: Record<string, unknown> = {}) {
  return {
    kind: 'event',
    name: e.name,
    code: hx(e.code),
    known: e.known,
    streamId: hx(e.streamId),
    substreamId: e.substreamId === null ? null : hx(e.substreamId),
    stall: e.stall,
    stag: e.stag === null ? null : hx(e.stag),
    read: e.read,
    privileged: e.privileged,
    instruction: e.instruction,
    class: e.class,
    stage2: e.stage2,
    nsipa: e.nsipa,
    ttRead: e.ttRead,
    inputAddress: e.inputAddress === null ? null : hx(e.inputAddress),
    ipa: e.ipa === null ? null : hx(e.ipa),
    fetchAddress: e.fetchAddress === null ? null : hx(e.fetchAddress),
    reason: e.reason === null ? null : hx(e.reason),
    words: words.map(hx64),
    ...extra,
  };
}

/** JSON object for a PRI queue entry. */
export function priJson(p: DecodedPri, words: readonly bigint[]) {
  return {
    kind: 'pri',
    name: p.stopMarker ? 'STOP_MARKER' : 'PAGE_REQUEST',
    streamId: hx(p.streamId),
    substreamId: p.substreamId === null ? null : hx(p.substreamId),
    last: p.last,
    read: p.read,
    write: p.write,
    exec: p.exec,
    privileged: p.privileged,
    prgIndex: hx(p.prgIndex),
    address: hx(p.address),
    stopMarker: p.stopMarker,
    words: words.map(hx64),
  };
}

/** A field's value as JSON: booleans for 1-bit fields, hex strings otherwise. */
export function fieldJsonValue(f: FieldDef, v: bigint): string | boolean {
  return f.width === 1 && !f.addr ? v !== 0n : hx(v);
}

export function fieldsJson(table: readonly FieldDef[], values: Readonly<Record<string, bigint>>) {
  const out: Record<string, string | boolean> = {};
  for (const f of table) out[f.name] = fieldJsonValue(f, values[f.name] ?? 0n);
  return out;
}

function meaningOf(f: FieldDef, v: bigint): string {
  const named = f.values?.[Number(v)];
  if (named !== undefined) return named;
  return f.desc ?? '';
}

/**
 * Aligned `FIELD  value  (meaning)` lines. With `all` false, zero-valued fields are left out
 * except those named in `always`.
 */
export function fieldLines(
  table: readonly FieldDef[],
  values: Readonly<Record<string, bigint>>,
  all: boolean,
  always: readonly string[] = [],
): string[] {
  const rows: [string, string, string][] = [];
  for (const f of table) {
    const v = values[f.name] ?? 0n;
    if (!all && v === 0n && !always.includes(f.name)) continue;
    const shown = f.width === 1 && !f.addr ? v.toString() : hx(v);
    rows.push([f.name, shown, meaningOf(f, v)]);
  }
  const w0 = Math.max(0, ...rows.map((r) => r[0].length));
  const w1 = Math.max(0, ...rows.map((r) => r[1].length));
  return rows.map(([n, v, m]) => `  ${n.padEnd(w0)}  ${m ? `${v.padEnd(w1)}  (${m})` : v}`);
}

export function wordsLine(words: readonly bigint[]): string {
  return `  words: ${words.map(hx64).join(' ')}`;
}

/** Text for a decoded command, including whether the SMMU would accept it. */
export function commandText(
  c: DecodedCommand,
  table: readonly FieldDef[],
  v: CommandValidation,
  all: boolean,
): string[] {
  const title = c.name
    ? `CMD_${c.name} (opcode ${hx(c.opcode)})`
    : `unknown command (opcode ${hx(c.opcode)})`;
  const lines = [title, ...fieldLines(table, c.fields, all, ['Opcode'])];
  lines.push(v.ok ? '  validation: ok' : `  validation: CERROR_ILL: ${v.problems.join('; ')}`);
  return lines;
}

export function validateWords(words: readonly bigint[]): CommandValidation {
  const dw = new Uint32Array(4);
  for (let i = 0; i < 2; i++) {
    const w = words[i] ?? 0n;
    dw[2 * i] = Number(w & 0xffffffffn);
    dw[2 * i + 1] = Number(w >> 32n);
  }
  return validateCommand(dw);
}

/** JSON object for a page-table descriptor. */
export function pteJson(p: DecodedPte, desc: bigint) {
  const fields: Record<string, string | boolean> = {};
  for (const [k, v] of Object.entries(p.fields)) fields[k] = typeof v === 'boolean' ? v : hx(v);
  return {
    kind: 'pte',
    name: p.type,
    type: p.type,
    stage: p.stage,
    granule: p.granule,
    level: p.level,
    outputAddress: p.outputAddress === null ? null : hx(p.outputAddress),
    mappingSize: p.mappingSize === null ? null : hx(p.mappingSize),
    fields,
    notes: p.notes,
    descriptor: hx64(desc),
  };
}

export function pteText(p: DecodedPte, desc: bigint): string[] {
  const g = p.granule === 4096 ? '4KB' : p.granule === 16384 ? '16KB' : '64KB';
  const lines = [`stage ${p.stage} level ${p.level} ${g}-granule descriptor ${hx64(desc)}: ${p.type}`];
  if (p.outputAddress !== null) {
    const what = p.type === 'table' ? 'next-level table' : 'output address';
    const size = p.mappingSize !== null ? `  (maps ${hx(p.mappingSize)} bytes)` : '';
    lines.push(`  ${what}: ${hx(p.outputAddress)}${size}`);
  }
  const entries = Object.entries(p.fields);
  const w = Math.max(0, ...entries.map(([k]) => k.length));
  for (const [k, v] of entries)
    lines.push(`  ${k.padEnd(w)}  ${typeof v === 'boolean' ? (v ? '1' : '0') : hx(v)}`);
  for (const n of p.notes) lines.push(`  note: ${n}`);
  return lines;
}
