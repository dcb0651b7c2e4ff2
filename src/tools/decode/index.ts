// `iommu-lab decode`: explain SMMUv3 structures given as hex words, page-table descriptors,
// and the event records the Linux arm-smmu-v3 driver dumps into kernel logs.

import { CD_FIELDS, CD_WORDS, decodeCd } from '../../arch/smmuv3/cd.ts';
import { CMD_SPECS, CMD_WORDS, decodeCommand as decodeCmdWords } from '../../arch/smmuv3/cmd.ts';
import { decodeEvent, EVT, EVT_BY_CODE, EVT_WORDS } from '../../arch/smmuv3/event.ts';
import { decodePri, PRI_FIELDS, PRI_WORDS } from '../../arch/smmuv3/pri.ts';
import { decodeSte, STE_CONFIG_NAMES, STE_FIELDS, STE_WORDS } from '../../arch/smmuv3/ste.ts';
import { decodePte, type PteGranule } from '../../arch/vmsa/pte-decode.ts';
import { parseFdt } from '../../kernel/of/fdt.ts';
import { type MasterLookup, mastersFromTree } from './dtb-masters.ts';
import { hx, parseHexWord } from './hex.ts';
import { noticeText, scanNotices } from './log-notices.ts';
import { scanLog } from './log-scan.ts';
import {
  decodeSmmuV2Register,
  SMMUV2_REGISTERS,
  scanSmmuV2Log,
  smmuV2RecordJson,
  smmuV2RecordLine,
} from './log-smmuv2.ts';
import {
  commandText,
  EVENT_MEANING,
  eventJson,
  fieldLines,
  fieldsJson,
  linuxEventLine,
  priJson,
  pteJson,
  pteText,
  validateWords,
  wordsLine,
} from './render.ts';

export interface DecodeIo {
  out: (s: string) => void;
  err: (s: string) => void;
  readFile: (path: string) => Promise<string>;
  readStdin: () => Promise<string>;
  /** A file's bytes (for --dtb); default: readFile's text re-encoded. */
  readBytes?: (path: string) => Promise<Uint8Array>;
}

const KINDS = ['event', 'ste', 'cd', 'cmd', 'pri', 'pte'] as const;
type Kind = (typeof KINDS)[number];
const WORDS: Record<Exclude<Kind, 'pte'>, number> = {
  event: EVT_WORDS,
  ste: STE_WORDS,
  cd: CD_WORDS,
  cmd: CMD_WORDS,
  pri: PRI_WORDS,
};

class UsageError extends Error {}

/** What `iommu-lab decode` was asked (parsed by the CLI's grammar, src/tools/cli/commands.ts). */
export interface DecodeOptions {
  json: boolean;
  all: boolean;
  client: string | null;
  stage: string | null;
  granule: string | null;
  level: string | null;
  /** --log FILE ("-": standard input) */
  log: string | null;
  /** --dtb FILE: name the master of each StreamID from the board's device tree */
  dtb: string | null;
  /** The structure's name, then its words. */
  positional: string[];
}
type Options = DecodeOptions;

function parseWords(texts: readonly string[], n: number, kind: string, io: DecodeIo): bigint[] {
  if (texts.length === 0) throw new UsageError(`decode ${kind} needs 1 to ${n} hex words`);
  if (texts.length > n) {
    throw new UsageError(`decode ${kind} takes at most ${n} words, got ${texts.length}`);
  }
  const words = texts.map((t, i) => {
    const r = parseHexWord(t);
    if (!r.ok) throw new UsageError(`word ${i}: ${r.error}`);
    return r.value;
  });
  if (words.length < n) {
    io.err(`note: ${words.length} of ${n} words given; words ${words.length}..${n - 1} taken as zero`);
    while (words.length < n) words.push(0n);
  }
  return words;
}

function printJson(io: DecodeIo, v: unknown): void {
  io.out(JSON.stringify(v, null, 2));
}

function decodeEventWords(words: bigint[], o: Options, io: DecodeIo): number {
  const e = decodeEvent(words);
  if (o.json) {
    printJson(io, eventJson(e, words, { client: o.client }));
    return 0;
  }
  const s = EVT_BY_CODE.get(e.code);
  io.out(`${e.name} (${hx(e.code)})${EVENT_MEANING[e.name] ? `: ${EVENT_MEANING[e.name]}` : ''}`);
  io.out(`  ${linuxEventLine(e, o.client ?? '(unknown)')}`);
  const table = s ? s.fields : [EVT.EventType, EVT.SSV, EVT.SubstreamID, EVT.StreamID];
  for (const l of fieldLines(table, e.fields, o.all, ['EventType', 'StreamID'])) io.out(l);
  if (e.ssv === false && s?.fields.includes(EVT.SubstreamID)) io.out('  (SSV == 0: no SubstreamID)');
  io.out(wordsLine(words));
  return 0;
}

function decodeStructure(kind: Kind, o: Options, io: DecodeIo): number {
  if (kind === 'pte') return decodePteArgs(o, io);
  const words = parseWords(o.positional.slice(1), WORDS[kind], kind, io);
  switch (kind) {
    case 'event':
      return decodeEventWords(words, o, io);
    case 'ste': {
      const v = decodeSte(words);
      if (o.json) {
        printJson(io, {
          kind: 'ste',
          name: 'STE',
          config: STE_CONFIG_NAMES[Number(v.Config)],
          fields: fieldsJson(STE_FIELDS, v),
          words: words.map((w) => hx(w)),
        });
        return 0;
      }
      io.out(
        `STE: ${v.V ? 'valid' : 'invalid (V == 0)'}, Config ${hx(v.Config)}: ${STE_CONFIG_NAMES[Number(v.Config)]}`,
      );
      for (const l of fieldLines(STE_FIELDS, v, o.all, ['V', 'Config'])) io.out(l);
      return 0;
    }
    case 'cd': {
      const v = decodeCd(words);
      if (o.json) {
        printJson(io, {
          kind: 'cd',
          name: 'CD',
          fields: fieldsJson(CD_FIELDS, v),
          words: words.map((w) => hx(w)),
        });
        return 0;
      }
      io.out(`CD: ${v.V ? 'valid' : 'invalid (V == 0)'}, ASID ${hx(v.ASID)}, TTB0 ${hx(v.TTB0)}`);
      for (const l of fieldLines(CD_FIELDS, v, o.all, ['V'])) io.out(l);
      return 0;
    }
    case 'cmd': {
      const c = decodeCmdWords(words);
      const table = c.name ? CMD_SPECS[c.name].fields : [];
      const val = validateWords(words);
      if (o.json) {
        const fields: Record<string, string | boolean> = table.length
          ? fieldsJson(table, c.fields)
          : { Opcode: hx(c.opcode) };
        printJson(io, {
          kind: 'cmd',
          name: c.name ? `CMD_${c.name}` : 'UNKNOWN',
          opcode: hx(c.opcode),
          fields,
          valid: val.ok,
          problems: val.problems,
          words: words.map((w) => hx(w)),
        });
        return 0;
      }
      for (const l of commandText(c, table, val, o.all)) io.out(l);
      return 0;
    }
    case 'pri': {
      const p = decodePri(words);
      if (o.json) {
        printJson(io, priJson(p, words));
        return 0;
      }
      const perms = [p.read && 'read', p.write && 'write', p.exec && 'exec', p.privileged && 'priv'].filter(
        Boolean,
      );
      io.out(
        p.stopMarker
          ? `PRI stop marker: sid ${hx(p.streamId)} ssid ${p.substreamId === null ? '-' : hx(p.substreamId)} PRG ${hx(p.prgIndex)}`
          : `PRI page request: sid ${hx(p.streamId)} ssid ${p.substreamId === null ? '-' : hx(p.substreamId)} addr ${hx(p.address)} ${perms.join(',') || 'no access'}${p.last ? ' last' : ''} PRG ${hx(p.prgIndex)}`,
      );
      for (const l of fieldLines(PRI_FIELDS, p.fields, o.all, ['StreamID'])) io.out(l);
      return 0;
    }
  }
}

function decodePteArgs(o: Options, io: DecodeIo): number {
  const texts = o.positional.slice(1);
  if (texts.length !== 1)
    throw new UsageError(`decode pte takes exactly one descriptor word, got ${texts.length}`);
  const r = parseHexWord(texts[0]!);
  if (!r.ok) throw new UsageError(r.error);
  const stage = o.stage ?? '1';
  if (stage !== '1' && stage !== '2') throw new UsageError(`--stage must be 1 or 2, got '${stage}'`);
  const gText = (o.granule ?? '4k').toLowerCase();
  const granules: Record<string, PteGranule> = {
    '4k': 4096,
    '4kb': 4096,
    '16k': 16384,
    '16kb': 16384,
    '64k': 65536,
    '64kb': 65536,
  };
  const granule = granules[gText];
  if (granule === undefined) throw new UsageError(`--granule must be 4k, 16k or 64k, got '${o.granule}'`);
  if (o.level === null) throw new UsageError('decode pte needs --level N (0..3)');
  if (!/^[0-3]$/.test(o.level)) throw new UsageError(`--level must be 0, 1, 2 or 3, got '${o.level}'`);
  if (granule === 65536 && o.level === '0')
    throw new UsageError(
      'the 64KB granule has no level 0 (its lookups start at level 1): --level must be 1, 2 or 3',
    );
  const p = decodePte(r.value, { stage: stage === '1' ? 1 : 2, granule, level: Number(o.level) });
  if (o.json) printJson(io, pteJson(p, r.value));
  else for (const l of pteText(p, r.value)) io.out(l);
  return 0;
}

async function decodeLog(path: string, o: Options, io: DecodeIo): Promise<number> {
  let text: string;
  try {
    text = path === '-' ? await io.readStdin() : await io.readFile(path);
  } catch (e) {
    // bad input, not a bad command line
    io.err(
      `iommu-lab decode: cannot read ${path === '-' ? 'standard input' : path}: ${(e as Error).message}`,
    );
    return 1;
  }
  let master: MasterLookup | null = null;
  if (o.dtb !== null) {
    try {
      const bytes = io.readBytes
        ? await io.readBytes(o.dtb)
        : new TextEncoder().encode(await io.readFile(o.dtb));
      master = mastersFromTree(parseFdt(bytes));
    } catch (e) {
      io.err(`iommu-lab decode: cannot use --dtb ${o.dtb}: ${(e as Error).message}`);
      return 1;
    }
  }
  const scan = scanLog(text);
  for (const w of scan.warnings) io.err(`warning: ${w}`);
  const masterOf = (device: string | null, sid: number) => master?.(device, sid) ?? null;
  const out = scan.records.map((r) => {
    const e = decodeEvent(r.words);
    // the client is the master, never the SMMU that printed the record (r.device)
    const client = o.client ?? r.client ?? '(unknown)';
    return { r, e, client, master: masterOf(r.device, e.streamId) };
  });
  const partial = scan.partial.map((p) => {
    const e = decodeEvent([...p.words, 0n, 0n, 0n, 0n].slice(0, 4));
    return { p, e, master: p.words.length > 0 ? masterOf(p.device, e.streamId) : null };
  });
  const cmdLine = (words: readonly bigint[]) => {
    const c = decodeCmdWords(words);
    const v = validateWords(words);
    const f = Object.entries(c.fields)
      .filter(([k, x]) => k !== 'Opcode' && x !== 0n)
      .map(([k, x]) => `${k}=${hx(x)}`)
      .join(' ');
    return `${c.name ? `CMD_${c.name}` : `unknown opcode ${hx(c.opcode)}`}${f ? ` ${f}` : ''}${v.ok ? '' : ` (CERROR_ILL: ${v.problems.join('; ')})`}`;
  };
  type Item = { line: number; text: string; json: Record<string, unknown> };
  const items: Item[] = [];
  const where = (ts: string | null, dev: string | null) => `${ts ? `${ts} ` : ''}${dev ? `${dev}: ` : ''}`;
  for (const { r, e, client, master: m } of out) {
    items.push({
      line: r.line,
      text: `${where(r.timestamp, r.device)}${linuxEventLine(e, client)}${m ? ` [master: ${m}]` : ''}`,
      json: eventJson(e, r.words, {
        line: r.line,
        timestamp: r.timestamp,
        device: r.device,
        smmu: r.device,
        client,
        master: m ?? undefined,
        format: r.format,
        headerMismatch: r.headerId !== e.code ? hx(r.headerId) : undefined,
      }),
    });
  }
  for (const { p, e, master: m } of partial) {
    const n = p.words.length;
    const parts = [`event ${hx(p.headerId)}`];
    if (n >= 1)
      parts.push(`${e.name} sid: ${hx(e.streamId)} ssid: ${e.substreamId === null ? 0 : hx(e.substreamId)}`);
    if (n >= 3 && e.inputAddress !== null) parts.push(`iova: ${hx(e.inputAddress)}`);
    if (n >= 4 && e.ipa !== null) parts.push(`ipa: ${hx(e.ipa)}`);
    items.push({
      line: p.line,
      text: `${where(p.timestamp, p.device)}partial record (${n} of 4 words, cut short ${p.why}): ${parts.join(' ')}${m ? ` [master: ${m}]` : ''}`,
      json: {
        kind: 'partial-event',
        code: hx(p.headerId),
        name: n >= 1 ? e.name : null,
        streamId: n >= 1 ? hx(e.streamId) : null,
        substreamId: n >= 1 && e.substreamId !== null ? hx(e.substreamId) : null,
        inputAddress: n >= 3 && e.inputAddress !== null ? hx(e.inputAddress) : null,
        words: p.words.map((w) => hx(w)),
        line: p.line,
        timestamp: p.timestamp,
        smmu: p.device,
        master: m ?? undefined,
      },
    });
  }
  for (const nt of scanNotices(text.split(/\r?\n/), scan.recordLines)) {
    const m = nt.kind === 'decoded-event' ? masterOf(nt.device, nt.sid) : null;
    const json: Record<string, unknown> = { ...nt, line: nt.line, timestamp: nt.timestamp, smmu: nt.device };
    for (const k of Object.keys(json)) if (typeof json[k] === 'bigint') json[k] = hx(json[k] as bigint);
    if (nt.kind === 'cmdq-error') {
      json.words = nt.words.map((w) => hx(w));
      json.command = nt.words.length === 2 ? cmdLine(nt.words) : null;
    }
    if (m !== null) json.master = m;
    items.push({
      line: nt.line,
      text: `${where(nt.timestamp, nt.device)}${noticeText(nt, cmdLine)}${m ? ` [master: ${m}]` : ''}`,
      json,
    });
  }
  // SMMUv1/v2 (arm-smmu) context faults, global faults and blocked streams: log-smmuv2.ts
  for (const r of scanSmmuV2Log(text))
    items.push({
      line: r.line,
      text: smmuV2RecordLine(r),
      json: smmuV2RecordJson(r) as Record<string, unknown>,
    });
  items.sort((a, b) => a.line - b.line);
  if (o.json)
    printJson(
      io,
      items.map((x) => x.json),
    );
  else {
    for (const it of items) io.out(it.text);
    for (const { r, e } of out) {
      if (r.headerId !== e.code) {
        io.err(`warning: line ${r.line}: header says event ${hx(r.headerId)} but word 0 says ${hx(e.code)}`);
      }
    }
  }
  if (items.length === 0) {
    io.err(
      'no SMMUv3 event record ("event 0xNN received:" followed by its words), SMMUv3 driver report or arm-smmu (SMMUv1/v2) fault line found',
    );
    return 1;
  }
  return 0;
}

/** `decode fsr|fsynr0|gfsr|sctlr|... VALUE`: an SMMUv1/v2 register, bits named as Linux names them. */
function decodeV2Register(kind: string, o: Options, io: DecodeIo): number {
  const texts = o.positional.slice(1);
  if (texts.length !== 1)
    throw new UsageError(`decode ${kind} takes exactly one 32-bit value, got ${texts.length}`);
  const r = parseHexWord(texts[0]!);
  if (!r.ok) throw new UsageError(r.error);
  if (r.value > 0xffffffffn) throw new UsageError(`${kind} is a 32-bit register: ${texts[0]} does not fit`);
  const d = decodeSmmuV2Register(kind, Number(r.value));
  if (o.json) printJson(io, d.json);
  else for (const l of d.lines) io.out(l);
  return 0;
}

/**
 * Runs `iommu-lab decode …`; returns the exit code: 0 decoded, 1 unreadable log or no event record
 * in it, 2 bad structure words or options. Throws only on a bug in the decoder.
 */
export async function decodeCommand(o: DecodeOptions, io: DecodeIo): Promise<number> {
  try {
    if (o.log !== null) {
      if (o.positional.length > 0) throw new UsageError('--log takes no structure words');
      return await decodeLog(o.log, o, io);
    }
    const kind = o.positional[0];
    if (kind !== undefined && SMMUV2_REGISTERS.includes(kind.toLowerCase()))
      return decodeV2Register(kind, o, io);
    if (kind === undefined) throw new UsageError(`name a structure (${KINDS.join(', ')}) or give --log FILE`);
    if (!(KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(`unknown structure '${kind}'; expected one of ${KINDS.join(', ')} or --log FILE`);
    }
    return decodeStructure(kind as Kind, o, io);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`iommu-lab decode: ${e.message}`);
    io.err("run 'iommu-lab decode --help' for the accepted forms");
    return 2;
  }
}
