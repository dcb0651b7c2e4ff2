// Stream table walk and STE decoding (IHI 0070 §3.3, §5.1, §5.2).
//
// locateSte() finds the STE of a StreamID through a linear or 2-level Stream table;
// decodeSte() turns its 64 bytes into a StreamConfig, applying every ILLEGAL check the
// architecture makes (an ILLEGAL STE behaves as V == 0: C_BAD_STE).

import { getField } from '../../arch/smmuv3/bits.ts';
import { EVT_ID } from '../../arch/smmuv3/event.ts';
import {
  L1STD,
  STALL_MODEL,
  STE_SIZE,
  STRTAB_BASE_ADDR_MASK_HI,
  STRTAB_BASE_ADDR_MASK_LO,
  STRTAB_BASE_CFG,
  STRTAB_FMT,
  TTENDIAN,
} from '../../arch/smmuv3/regs.ts';
import { STE, STE_DWORDS } from '../../arch/smmuv3/ste.ts';
import { ipsToBits, s2StartBits, s2StartLevel, s2tgToShift } from '../../arch/vmsa/granule.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import { TWO32 } from '../../platform/u64.ts';
import {
  makeStage1Config,
  makeStage2Config,
  type Stage2Config,
  WORLD_EL2,
  WORLD_EL2_E2H,
  WORLD_NS_EL1,
} from '../smmu-common/translate-types.ts';
import { STREAM_ABORT, STREAM_BYPASS, STREAM_TRANSLATE, type StreamConfig } from './config.ts';
import type { SmmuFeatures } from './regs-idr.ts';

/** Why a configuration fetch failed: the event to record, and what to put in it. */
export class ConfigError {
  /** Event number (C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE, ...), 0 = none. */
  code = 0;
  /** Address of the access that aborted (F_*_FETCH FetchAddr). */
  fetchAddr = 0;
  /** Stage-2 fault details when a CD fetch faulted at stage 2 (nested). */
  s2 = false;
  ipa = 0;
  faultClass = 0;
  /** Human-readable cause (traces, tests). */
  reason = '';

  set(code: number, reason: string, fetchAddr = 0): null {
    this.code = code;
    this.reason = reason;
    this.fetchAddr = fetchAddr;
    this.s2 = false;
    this.ipa = 0;
    this.faultClass = 0;
    return null;
  }
}

function addr64(lo: number, hi: number, maskLo: number, maskHi: number): number {
  return ((hi & maskHi) >>> 0) * TWO32 + ((lo & maskLo) >>> 0);
}

/** Effective SPLIT: 6, 8 or 10 (other encodings are reserved; they behave as the next smaller valid one). */
function effectiveSplit(raw: number): number {
  return raw >= 10 ? 10 : raw >= 8 ? 8 : 6;
}

/**
 * Physical address of the STE for `sid`, or -1 with `err` set (C_BAD_STREAMID or F_STE_FETCH).
 */
export function locateSte(
  mem: PhysicalMemory,
  f: SmmuFeatures,
  baseLo: number,
  baseHi: number,
  baseCfg: number,
  sid: number,
  err: ConfigError,
): number {
  if (f.sidBits < 32 && sid >= 2 ** f.sidBits) {
    err.set(EVT_ID.C_BAD_STREAMID, `StreamID 0x${sid.toString(16)} beyond SIDSIZE ${f.sidBits}`);
    return -1;
  }
  const log2 = Math.min((baseCfg >>> STRTAB_BASE_CFG.LOG2SIZE_SHIFT) & 0x3f, f.sidBits);
  if (log2 < 32 && sid >= 2 ** log2) {
    err.set(EVT_ID.C_BAD_STREAMID, `StreamID 0x${sid.toString(16)} beyond STRTAB_BASE_CFG.LOG2SIZE ${log2}`);
    return -1;
  }
  const base = addr64(baseLo, baseHi, STRTAB_BASE_ADDR_MASK_LO, STRTAB_BASE_ADDR_MASK_HI);
  const fmt = (baseCfg >>> STRTAB_BASE_CFG.FMT_SHIFT) & 3;
  if (fmt !== STRTAB_FMT.TWO_LEVEL || !f.st2l) {
    // Linear: the table is aligned to its size.
    const size = STE_SIZE * 2 ** log2;
    return base - (base % size) + sid * STE_SIZE;
  }
  const split = effectiveSplit((baseCfg >>> STRTAB_BASE_CFG.SPLIT_SHIFT) & 0x1f);
  const l1Entries = log2 > split ? 2 ** (log2 - split) : 1;
  const l1Size = Math.max(64, l1Entries * 8);
  const l1Addr = base - (base % l1Size) + Math.floor(sid / 2 ** split) * 8;
  if (mem.read64(l1Addr) !== 0) {
    err.set(EVT_ID.F_STE_FETCH, `L1STD fetch at 0x${l1Addr.toString(16)} aborted`, l1Addr);
    return -1;
  }
  const lo = mem.r64[0]!;
  const hi = mem.r64[1]!;
  let span = lo & L1STD.SPAN_MASK;
  if (span === 0) {
    err.set(EVT_ID.C_BAD_STREAMID, `L1STD for StreamID 0x${sid.toString(16)} is invalid (Span 0)`);
    return -1;
  }
  if (span > split + 1) span = split + 1;
  const l2Index = sid % 2 ** split;
  const l2Entries = 2 ** (span - 1);
  if (l2Index >= l2Entries) {
    err.set(EVT_ID.C_BAD_STREAMID, `StreamID 0x${sid.toString(16)} beyond L1STD.Span ${span}`);
    return -1;
  }
  const l2 = addr64(lo, hi, L1STD.L2PTR_MASK_LO, L1STD.L2PTR_MASK_HI);
  const l2Size = l2Entries * STE_SIZE;
  return l2 - (l2 % l2Size) + l2Index * STE_SIZE;
}

/** Reads the 16 dwords of the STE at `addr` into `dw`. False (err = F_STE_FETCH) on a bus error. */
export function fetchSte(mem: PhysicalMemory, addr: number, dw: Uint32Array, err: ConfigError): boolean {
  for (let i = 0; i < 8; i++) {
    if (mem.read64(addr + 8 * i) !== 0) {
      err.set(EVT_ID.F_STE_FETCH, `STE fetch at 0x${(addr + 8 * i).toString(16)} aborted`, addr);
      return false;
    }
    dw[2 * i] = mem.r64[0]!;
    dw[2 * i + 1] = mem.r64[1]!;
  }
  return true;
}

/** Checks shared with CD decoding: granule support per IDR5. */
export function granuleSupported(f: SmmuFeatures, g: number): boolean {
  return g === 12 ? f.g4k : g === 14 ? f.g16k : g === 16 ? f.g64k : false;
}

/** Decodes and validates an STE. Returns null with `err` set to C_BAD_STE when it is invalid or ILLEGAL. */
export function decodeSte(
  dw: Uint32Array,
  sid: number,
  steAddr: number,
  f: SmmuFeatures,
  e2h: boolean,
  err: ConfigError,
): StreamConfig | null {
  if (dw.length < STE_DWORDS || (dw[0]! & 1) === 0) return err.set(EVT_ID.C_BAD_STE, 'STE.V == 0');
  const config = (dw[0]! >>> 1) & 7;
  const bad = (why: string) => err.set(EVT_ID.C_BAD_STE, `ILLEGAL STE: ${why}`);
  const s1 = (config & 0b101) === 0b101;
  const s2 = (config & 0b110) === 0b110;
  if (s1 && !f.s1) return bad('stage 1 configured but SMMU_IDR0.S1P == 0');
  if (s2 && !f.s2) return bad('stage 2 configured but SMMU_IDR0.S2P == 0');

  const kind = (config & 0b100) === 0 ? STREAM_ABORT : !s1 && !s2 ? STREAM_BYPASS : STREAM_TRANSLATE;

  // Stage 1 / substream fields (IGNORED when stage 1 is bypassed).
  const s1CdMax = s1 && f.ssidBits > 0 ? getField(dw, STE.S1CDMax) : 0;
  let s1Fmt = s1 ? getField(dw, STE.S1Fmt) : 0;
  if (s1Fmt === 3) s1Fmt = 0;
  let s1Dss = s1 ? getField(dw, STE.S1DSS) : 0;
  if (s1Dss === 3) s1Dss = 0;
  const s1StallD = s1 && getField(dw, STE.S1STALLD) !== 0;
  const s1ContextPtr = s1 ? getField(dw, STE.S1ContextPtr) : 0;
  if (s1) {
    if (s1CdMax > f.ssidBits) return bad(`S1CDMax ${s1CdMax} > SMMU_IDR1.SSIDSIZE ${f.ssidBits}`);
    if (s1CdMax > 0 && s1Fmt !== 0 && !f.cd2l) return bad('2-level CD table (S1Fmt) but SMMU_IDR0.CD2L == 0');
    if (s1StallD && f.stallModel !== STALL_MODEL.STALL) {
      return bad('S1STALLD == 1 but the stall model is not configurable (STALL_MODEL != 0b00)');
    }
  }

  // StreamWorld.
  const strwRaw = getField(dw, STE.STRW);
  let world = WORLD_NS_EL1;
  let strw = 0;
  if (s1 && !s2 && f.hyp) {
    strw = strwRaw;
    if (strw & 1) return bad(`STRW 0b${strw.toString(2).padStart(2, '0')} is reserved`);
    if (strw === 2) world = e2h ? WORLD_EL2_E2H : WORLD_EL2;
  }

  // VMID (used for EL1-world translations when stage 2 is implemented).
  const vmidUsed = f.s2 && (config & 3) !== 0 && world === WORLD_NS_EL1;
  const s2vmid = getField(dw, STE.S2VMID);
  if (vmidUsed && !f.vmid16 && s2vmid > 0xff) return bad('S2VMID[15:8] != 0 but SMMU_IDR0.VMID16 == 0');
  const vmid = vmidUsed ? s2vmid : 0;

  // Stage 2.
  const s2cfg: Stage2Config = makeStage2Config();
  s2cfg.vmid = vmid;
  const s2S = s2 && getField(dw, STE.S2S) !== 0;
  const s2R = s2 && getField(dw, STE.S2R) !== 0;
  if (s2) {
    const aa64 = getField(dw, STE.S2AA64) !== 0;
    if (!aa64 && (f.ttf & 1) === 0) return bad('S2AA64 selects VMSAv8-32 LPAE, not supported (IDR0.TTF)');
    if (!aa64) return bad('S2AA64 == 0: VMSAv8-32 LPAE stage 2 is not modelled');
    const endi = getField(dw, STE.S2ENDI) !== 0;
    if (endi && f.ttEndian === TTENDIAN.LE) return bad('S2ENDI == 1 but only little-endian walks (TTENDIAN)');
    if (!endi && f.ttEndian === TTENDIAN.BE) return bad('S2ENDI == 0 but only big-endian walks (TTENDIAN)');
    const tgEnc = getField(dw, STE.S2TG);
    const g = s2tgToShift(tgEnc);
    if (g === 0) return bad('S2TG == 0b11 is reserved');
    if (!granuleSupported(f, g)) return bad(`S2TG selects a ${1 << (g - 10)}KB granule not in SMMU_IDR5`);
    const t0sz = getField(dw, STE.S2T0SZ);
    const tszMax = f.stt ? (g === 16 ? 47 : 48) : 39;
    const ias = f.oasBits;
    const tszMin = Math.max(g === 16 ? 12 : 16, 64 - ias);
    if (t0sz > tszMax || t0sz < tszMin) return bad(`S2T0SZ ${t0sz} outside [${tszMin}, ${tszMax}]`);
    const sl0 = getField(dw, STE.S2SL0);
    const level = s2StartLevel(g, sl0);
    if (level < 0 || (g === 16 && level === 1 && f.oasBits < 52)) {
      return bad(`S2SL0 ${sl0} is reserved for the ${1 << (g - 10)}KB granule`);
    }
    if (s2StartBits(g, 64 - t0sz, level) < 0) {
      return bad(`S2SL0 ${sl0} (start level ${level}) inconsistent with S2T0SZ ${t0sz}`);
    }
    const psBits = Math.min(ipsToBits(getField(dw, STE.S2PS)), f.oasBits);
    const ttb = getField(dw, STE.S2TTB);
    if (ttb >= 2 ** psBits)
      return bad(`S2TTB 0x${ttb.toString(16)} beyond the effective S2PS (${psBits} bits)`);
    if (g !== 16 && ttb >= 2 ** 48) return bad('S2TTB beyond 48 bits with a 4KB/16KB granule');
    const ha = getField(dw, STE.S2HA) !== 0;
    const hd = getField(dw, STE.S2HD) !== 0;
    if (ha && f.httu === 0) return bad('S2HA == 1 but SMMU_IDR0.HTTU == 0');
    if (hd && f.httu < 2) return bad('S2HD == 1 but SMMU_IDR0.HTTU does not include dirty state');
    if (s2S && f.stallModel === STALL_MODEL.TERMINATE)
      return bad('S2S == 1 but the stall model is not supported');
    if (!s2S && f.stallModel === STALL_MODEL.FORCE) return bad('S2S == 0 but the SMMU forces stalling');
    s2cfg.s2ttb = ttb;
    s2cfg.s2t0sz = t0sz;
    s2cfg.s2sl0 = sl0;
    s2cfg.s2tg = g;
    s2cfg.s2ps = psBits;
    s2cfg.s2aa64 = aa64;
    s2cfg.s2endi = endi;
    s2cfg.s2affd = getField(dw, STE.S2AFFD) !== 0;
    s2cfg.s2ha = ha;
    s2cfg.s2hd = hd && ha;
    s2cfg.s2ptw = getField(dw, STE.S2PTW) !== 0;
  }

  // ATS (IGNORED when not implemented or both stages bypass/abort).
  let eats = 0;
  if (f.ats && (config & 3) !== 0) {
    eats = getField(dw, STE.EATS);
    if (eats === 1 && s2 && s2S) return bad('EATS == 0b01 with stage 2 and S2S == 1');
    if (eats === 2 && (config !== 0b111 || s2S))
      return bad('EATS == 0b10 (split-stage) needs nested and S2S == 0');
    if (eats === 3) eats = 0; // DPT not implemented: behaves as 0b00
  }

  const direct = {
    s1Enabled: false,
    s2Enabled: s2,
    world,
    vmid,
    s1: makeStage1Config(),
    s2: s2cfg,
  };
  return {
    sid,
    kind,
    config,
    s1,
    s2,
    steAddr,
    s1ContextPtr,
    s1Fmt,
    s1CdMax,
    s1Dss,
    s1StallD,
    eats,
    ppar: getField(dw, STE.PPAR) !== 0,
    strw,
    shcfg: f.attrTypesOvr ? getField(dw, STE.SHCFG) : 1,
    mev: getField(dw, STE.MEV) !== 0,
    privcfg: f.attrPermsOvr ? getField(dw, STE.PRIVCFG) : 0,
    instcfg: f.attrPermsOvr ? getField(dw, STE.INSTCFG) : 0,
    s2r: s2R,
    s2s: s2S,
    world,
    vmid,
    s2cfg,
    direct,
    ref: false,
  };
}
