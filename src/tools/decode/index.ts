// `iommu-lab decode`: explain SMMUv3 structures given as hex words, page-table descriptors,
// and the event records the Linux arm-smmu-v3 driver dumps into kernel logs.

import { CD_FIELDS, CD_WORDS, decodeCd } from '../../arch/smmuv3/cd.ts';
import { CMD_SPECS, CMD_WORDS, decodeCommand as decodeCmdWords } from '../../arch/smmuv3/cmd.ts';
import { decodeEvent, EVT, EVT_BY_CODE, EVT_WORDS } from '../../arch/smmuv3/event.ts';
import { decodePri, PRI_FIELDS, PRI_WORDS } from '../../arch/smmuv3/pri.ts';
import { decodeSte, STE_CONFIG_NAMES, STE_FIELDS, STE_WORDS } from '../../arch/smmuv3/ste.ts';
import { decodePte, type PteGranule } from '../../arch/vmsa/pte-decode.ts';
import { hx, parseHexWord } from './hex.ts';
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
  const scan = scanLog(text);
  for (const w of scan.warnings) io.err(`warning: ${w}`);
  const out = scan.records.map((r) => {
    const e = decodeEvent(r.words);
    // the client is the master, never the SMMU that printed the record (r.device)
    const client = o.client ?? r.client ?? '(unknown)';
    return { r, e, client };
  });
  // SMMUv1/v2 (arm-smmu) context faults, global faults and blocked streams: log-smmuv2.ts
  const v2 = scanSmmuV2Log(text);
  if (o.json) {
    printJson(io, [
      ...out.map(({ r, e, client }) =>
        eventJson(e, r.words, {
          line: r.line,
          timestamp: r.timestamp,
          device: r.device,
          client,
          format: r.format,
          headerMismatch: r.headerId !== e.code ? hx(r.headerId) : undefined,
        }),
      ),
      ...v2.map(smmuV2RecordJson),
    ]);
  } else {
    for (const { r, e, client } of out) {
      const prefix = r.timestamp ? `${r.timestamp} ` : '';
      io.out(`${prefix}${linuxEventLine(e, client)}`);
      if (r.headerId !== e.code) {
        io.err(`warning: line ${r.line}: header says event ${hx(r.headerId)} but word 0 says ${hx(e.code)}`);
      }
    }
  }
  if (!o.json) for (const r of v2) io.out(smmuV2RecordLine(r));
  if (out.length === 0 && v2.length === 0) {
    io.err(
      'no complete SMMUv3 event record ("event 0xNN received:" followed by its words) and no arm-smmu (SMMUv1/v2) fault line found',
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
