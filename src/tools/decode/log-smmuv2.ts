// SMMUv1/v2 (Linux arm-smmu driver) lines in kernel logs, and `decode fsr|fsynr0|... VALUE`:
//
//   arm-smmu 5040000.iommu: Unhandled context fault: fsr=0x40000002, iova=0x45bd000000, fsynr=0x13, cbfrsynra=0x0, cb=0
//   arm-smmu 5040000.iommu: FSR    = 40000002 [SS Format=0 TF], SID=0x0           (v6.12+)
//   arm-smmu 5040000.iommu: FSYNR0 = 00000013 [S1CBNDX=0 WNR PLVL=3]              (v6.12+)
//   arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x..., fsynr=0x..., cbfrsynra=0x..., cb=3   (before)
//   arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x..., fsynr=0x..., cb=3                    (older)
//   arm-smmu 15000000.iommu: Blocked unknown Stream ID 0x2100; boot with "arm-smmu.disable_bypass=0" to allow, ...
//   arm-smmu 15000000.iommu: Unexpected global fault, this could be serious
//   arm-smmu 15000000.iommu: 	GFSR 0x80000002, GFSYNR0 0x00000000, GFSYNR1 0x00000c01, GFSYNR2 0x00000000
//
// Each line is matched by fixed-shape regular expressions without nested repetition (no
// backtracking blow-up), so the scan stays linear in the log.

import {
  type DecodedReg,
  decodeFsr,
  decodeFsynr0,
  decodeGfsr,
  fsrFlagsLinux,
  fsynr0FlagsLinux,
  SMMUV2_DECODERS,
} from '../../arch/smmuv2/decode.ts';
import { deviceBefore, TIMESTAMP_RE } from './log-scan.ts';

/** What the FSR / FSYNR0 / sGFSR bits mean, by Linux's names. */
export const SMMUV2_FLAG_MEANING: Readonly<Record<string, string>> = {
  MULTI: 'another fault arrived while this one was recorded',
  SS: 'the transaction is stalled, waiting for RESUME (retry or terminate)',
  UUT: 'unsupported upstream transaction',
  ASF: 'address size fault (input or output address out of range)',
  TLBLKF: 'TLB lock fault',
  TLBMCF: 'TLB match conflict (two TLB entries matched)',
  EF: 'external fault (a bus error, on the access or a table walk)',
  PF: 'permission fault (the page tables forbid the access)',
  AFF: 'access flag fault',
  TF: 'translation fault (no valid mapping at that address)',
  AFR: 'asynchronous fault report',
  PTWF: 'the fault happened during a page table walk',
  NSATTR: 'non-secure access',
  IND: 'instruction fetch',
  PNU: 'privileged access',
  WNR: 'write (clear: read)',
  USF: 'unidentified stream: no stream-match entry for the StreamID',
  SMCF: 'stream match conflict: the StreamID matched two entries',
  ICF: 'invalid context fault',
  UCBF: 'unimplemented context bank',
  UCIF: 'unimplemented context interrupt',
  CAF: 'configuration access fault',
};

export type SmmuV2LogRecord =
  | {
      readonly kind: 'context-fault';
      readonly line: number;
      readonly timestamp: string | null;
      readonly device: string | null;
      /** 'v6.12' (the three-line print), 'one-line' (with cbfrsynra) or 'old' (without). */
      format: 'v6.12' | 'one-line' | 'old';
      readonly fsr: number;
      readonly fsynr0: number;
      /** As printed (may exceed 2^53: TTBR1 addresses). */
      readonly iova: bigint;
      readonly cbfrsynra: number | null;
      readonly cb: number;
    }
  | {
      readonly kind: 'global-fault';
      readonly line: number;
      readonly timestamp: string | null;
      readonly device: string | null;
      readonly gfsr: number;
      readonly gfsynr0: number;
      readonly gfsynr1: number;
      readonly gfsynr2: number;
    }
  | {
      readonly kind: 'blocked-stream';
      readonly line: number;
      readonly timestamp: string | null;
      readonly device: string | null;
      readonly streamId: number;
    };

const CTX_RE =
  /Unhandled context fault: fsr=0x([0-9a-f]{1,8}), iova=0x([0-9a-f]{1,16}), fsynr=0x([0-9a-f]{1,8})(?:, cbfrsynra=0x([0-9a-f]{1,8}))?, cb=(\d{1,3})/i;
const FSR_RE = /FSR {4}= ([0-9a-f]{8}) \[/i;
const FSYNR_RE = /FSYNR0 = ([0-9a-f]{8}) \[/i;
const BLOCKED_RE = /Blocked unknown Stream ID 0x([0-9a-f]{1,4});/i;
const GLOBAL_RE = /Unexpected global fault, this could be serious/;
const GFSR_RE =
  /GFSR 0x([0-9a-f]{8}), GFSYNR0 0x([0-9a-f]{8}), GFSYNR1 0x([0-9a-f]{8}), GFSYNR2 0x([0-9a-f]{8})/i;

const hexNum = (s: string) => Number.parseInt(s, 16) >>> 0;

/** Finds every SMMUv1/v2 fault line of a log. Never throws. */
export function scanSmmuV2Log(text: string): SmmuV2LogRecord[] {
  const out: SmmuV2LogRecord[] = [];
  /** The last context fault per device, for the v6.12 FSR / FSYNR0 lines that follow it. */
  const lastCtx = new Map<string | null, Extract<SmmuV2LogRecord, { kind: 'context-fault' }>>();
  let pendingGlobal: { line: number; timestamp: string | null; device: string | null } | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length > 4096) continue;
    const ts = (): string | null => TIMESTAMP_RE.exec(line)?.[0] ?? null;
    const c = CTX_RE.exec(line);
    if (c) {
      const rec = {
        kind: 'context-fault' as const,
        line: i + 1,
        timestamp: ts(),
        device: deviceBefore(line, c.index),
        format: (c[4] === undefined ? 'old' : 'one-line') as 'v6.12' | 'one-line' | 'old',
        fsr: hexNum(c[1]!),
        fsynr0: hexNum(c[3]!),
        iova: BigInt(`0x${c[2]}`),
        cbfrsynra: c[4] === undefined ? null : hexNum(c[4]),
        cb: Number(c[5]),
      };
      out.push(rec);
      lastCtx.set(rec.device, rec);
      continue;
    }
    const f = FSR_RE.exec(line) ?? FSYNR_RE.exec(line);
    if (f) {
      const rec = lastCtx.get(deviceBefore(line, f.index));
      if (rec !== undefined && rec.cbfrsynra !== null) rec.format = 'v6.12';
      continue;
    }
    const b = BLOCKED_RE.exec(line);
    if (b) {
      out.push({
        kind: 'blocked-stream',
        line: i + 1,
        timestamp: ts(),
        device: deviceBefore(line, b.index),
        streamId: hexNum(b[1]!),
      });
      continue;
    }
    const g = GLOBAL_RE.exec(line);
    if (g) {
      pendingGlobal = { line: i + 1, timestamp: ts(), device: deviceBefore(line, g.index) };
      continue;
    }
    const gs = GFSR_RE.exec(line);
    if (gs) {
      const head = pendingGlobal ?? { line: i + 1, timestamp: ts(), device: null };
      out.push({
        kind: 'global-fault',
        ...head,
        gfsr: hexNum(gs[1]!),
        gfsynr0: hexNum(gs[2]!),
        gfsynr1: hexNum(gs[3]!),
        gfsynr2: hexNum(gs[4]!),
      });
      pendingGlobal = null;
    }
  }
  return out;
}

const hx = (v: number | bigint) => `0x${v.toString(16)}`;

/** One line explaining a record, in the log's own terms. */
export function smmuV2RecordLine(r: SmmuV2LogRecord): string {
  const prefix = `${r.timestamp ? `${r.timestamp} ` : ''}${r.device ? `${r.device}: ` : ''}`;
  if (r.kind === 'blocked-stream')
    return `${prefix}blocked stream 0x${r.streamId.toString(16)}: no stream-match entry (unattached master); sCR0.USFCFG made it fault`;
  if (r.kind === 'global-fault') {
    const d = decodeGfsr(r.gfsr);
    return `${prefix}global fault [${d.flags.join(' ')}] stream 0x${(r.gfsynr1 & 0xffff).toString(16)}${d.flags
      .filter((x) => x !== 'MULTI')
      .map((x) => `: ${SMMUV2_FLAG_MEANING[x] ?? x}`)
      .join('')}`;
  }
  const fsr = decodeFsr(r.fsr);
  const syn = decodeFsynr0(r.fsynr0);
  const what = fsr.flags.filter((x) => x !== 'MULTI' && x !== 'SS');
  const dir = syn.flags.includes('WNR') ? 'write' : 'read';
  const sid = r.cbfrsynra === null ? 'stream unknown' : `stream 0x${(r.cbfrsynra & 0xffff).toString(16)}`;
  return `${prefix}context fault in cb ${r.cb}: ${what.join('+') || 'no fault bits'} (${what.map((x) => SMMUV2_FLAG_MEANING[x]).join('; ') || '-'}) at iova ${hx(r.iova)}, ${dir}, ${sid}, level ${syn.fields.PLVL}${fsr.flags.includes('SS') ? ', stalled' : ''}${fsr.flags.includes('MULTI') ? ', more faults followed' : ''}; FSR [${fsrFlagsLinux(r.fsr)}] FSYNR0 [${fsynr0FlagsLinux(r.fsynr0)}]`;
}

/** The --json record. */
export function smmuV2RecordJson(r: SmmuV2LogRecord): Record<string, unknown> {
  const base = { line: r.line, timestamp: r.timestamp, device: r.device };
  if (r.kind === 'blocked-stream')
    return { kind: 'smmuv2-blocked-stream', ...base, streamId: hx(r.streamId) };
  if (r.kind === 'global-fault') {
    const d = decodeGfsr(r.gfsr);
    return {
      kind: 'smmuv2-global-fault',
      ...base,
      gfsr: hx(r.gfsr),
      gfsynr0: hx(r.gfsynr0),
      gfsynr1: hx(r.gfsynr1),
      gfsynr2: hx(r.gfsynr2),
      streamId: hx(r.gfsynr1 & 0xffff),
      gfsrFlags: d.flags,
    };
  }
  const fsr = decodeFsr(r.fsr);
  const syn = decodeFsynr0(r.fsynr0);
  return {
    kind: 'smmuv2-context-fault',
    ...base,
    format: r.format,
    fsr: hx(r.fsr),
    fsynr0: hx(r.fsynr0),
    iova: hx(r.iova),
    cbfrsynra: r.cbfrsynra === null ? null : hx(r.cbfrsynra),
    cb: r.cb,
    streamId: r.cbfrsynra === null ? null : hx(r.cbfrsynra & 0xffff),
    fsrFlags: fsr.flags,
    fsynr0Flags: syn.flags,
    fsrFormat: fsr.fields.FORMAT,
    plvl: syn.fields.PLVL,
    s1cbndx: syn.fields.S1CBNDX,
    write: syn.flags.includes('WNR'),
    stalled: fsr.flags.includes('SS'),
  };
}

/** The registers `decode NAME VALUE` explains for SMMUv1/v2 (fsr, fsynr0, gfsr, sctlr, ...). */
export const SMMUV2_REGISTERS: readonly string[] = Object.keys(SMMUV2_DECODERS);

/** `decode REG VALUE` for an SMMUv1/v2 register: lines of text, or the JSON object. */
export function decodeSmmuV2Register(name: string, value: number): { lines: string[]; json: object } {
  const d: DecodedReg = SMMUV2_DECODERS[name.toLowerCase()]!(value >>> 0);
  const lines = [
    `${d.register} 0x${d.value.toString(16).padStart(8, '0')}: ${d.flags.join(' ') || '(no flags)'}`,
  ];
  if (d.register === 'FSR') lines.push(`  Linux prints: [${fsrFlagsLinux(d.value)}]`);
  if (d.register === 'FSYNR0') lines.push(`  Linux prints: [${fsynr0FlagsLinux(d.value)}]`);
  for (const f of d.flags) lines.push(`  ${f.padEnd(9)} ${SMMUV2_FLAG_MEANING[f] ?? ''}`.trimEnd());
  for (const [k, v] of Object.entries(d.fields)) {
    const nm = d.names[k];
    lines.push(`  ${k.padEnd(9)} ${v}${nm ? ` (${nm})` : ''}`);
  }
  return {
    lines,
    json: {
      kind: 'smmuv2-register',
      register: d.register,
      value: hx(d.value),
      flags: d.flags,
      fields: d.fields,
      names: d.names,
    },
  };
}
