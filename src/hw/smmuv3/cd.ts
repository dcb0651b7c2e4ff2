// Context descriptor fetch and decoding (IHI 0070 §3.3.2, §5.3, §5.4, §5.5).
//
// locateCd() finds the CD for a CD-table index through a linear or 2-level CD table (L1CD
// descriptors with L2Ptr); in a nested configuration S1ContextPtr and every L1CD.L2Ptr are
// IPAs, so each access goes through `toPa`, which performs the stage-2 translation and
// reports a stage-2 fault with Class CD. decodeCd() applies the ILLEGAL checks (C_BAD_CD).

import { getField } from '../../arch/smmuv3/bits.ts';
import { CD, CD_DWORDS } from '../../arch/smmuv3/cd.ts';
import { EVT_ID } from '../../arch/smmuv3/event.ts';
import { CD_SIZE, L1CD, STALL_MODEL, TTENDIAN } from '../../arch/smmuv3/regs.ts';
import { ipsToBits, tg0ToShift, tg1ToShift } from '../../arch/vmsa/granule.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import { TWO32 } from '../../platform/u64.ts';
import { makeStage1Config, type TranslationConfig, WORLD_EL2 } from '../smmu-common/translate-types.ts';
import type { ContextConfig, StreamConfig } from './config.ts';
import type { SmmuFeatures } from './regs-idr.ts';
import { type ConfigError, granuleSupported } from './ste.ts';

/**
 * Maps a configuration-structure address to a PA: the identity when stage 2 is off, a
 * stage-2 translation otherwise. Returns -1 with `err` filled when stage 2 faults.
 */
export type StructToPa = (addr: number, err: ConfigError) => number;

/** S1Fmt encodings. */
const FMT_LINEAR = 0;
const FMT_4K_L2 = 1;

/** PA of CD number `index` of the stream's table, or -1 with `err` set. */
export function locateCd(
  mem: PhysicalMemory,
  st: StreamConfig,
  index: number,
  toPa: StructToPa,
  err: ConfigError,
): number {
  const ptr = st.s1ContextPtr;
  if (st.s1CdMax === 0) {
    return toPa(ptr, err);
  }
  if (st.s1Fmt === FMT_LINEAR) {
    // Linear table of 2^S1CDMax CDs, aligned to its size.
    const size = CD_SIZE * 2 ** st.s1CdMax;
    return toPa(ptr - (ptr % size) + index * CD_SIZE, err);
  }
  const leafBits = st.s1Fmt === FMT_4K_L2 ? 6 : 10;
  const l1Entries = st.s1CdMax > leafBits ? 2 ** (st.s1CdMax - leafBits) : 1;
  const l1Size = Math.max(64, l1Entries * 8);
  const l1Ipa = ptr - (ptr % l1Size) + Math.floor(index / 2 ** leafBits) * 8;
  const l1Pa = toPa(l1Ipa, err);
  if (l1Pa < 0) return -1;
  if (mem.read64(l1Pa) !== 0) {
    err.set(EVT_ID.F_CD_FETCH, `L1CD fetch at 0x${l1Pa.toString(16)} aborted`, l1Pa);
    return -1;
  }
  const lo = mem.r64[0]!;
  const hi = mem.r64[1]!;
  if ((lo & L1CD.V) === 0) {
    err.set(EVT_ID.C_BAD_SUBSTREAMID, `L1CD for substream ${index} is invalid (V == 0)`);
    return -1;
  }
  let l2 = ((hi & L1CD.L2PTR_MASK_HI) >>> 0) * TWO32 + ((lo & L1CD.L2PTR_MASK_LO) >>> 0);
  if (leafBits === 10) l2 -= l2 % 0x10000; // 64KB leaf tables: L2Ptr[15:12] are RES0
  return toPa(l2 + (index % 2 ** leafBits) * CD_SIZE, err);
}

/** Reads the 16 dwords of the CD at `pa`. False (err = F_CD_FETCH) on a bus error. */
export function fetchCd(mem: PhysicalMemory, pa: number, dw: Uint32Array, err: ConfigError): boolean {
  for (let i = 0; i < 8; i++) {
    if (mem.read64(pa + 8 * i) !== 0) {
      err.set(EVT_ID.F_CD_FETCH, `CD fetch at 0x${(pa + 8 * i).toString(16)} aborted`, pa);
      return false;
    }
    dw[2 * i] = mem.r64[0]!;
    dw[2 * i + 1] = mem.r64[1]!;
  }
  return true;
}

/** Decodes and validates a CD fetched through `st`. Null with err = C_BAD_CD when invalid or ILLEGAL. */
export function decodeCd(
  dw: Uint32Array,
  st: StreamConfig,
  index: number,
  cdAddr: number,
  f: SmmuFeatures,
  err: ConfigError,
): ContextConfig | null {
  if (dw.length < CD_DWORDS || (dw[0]! & 0x80000000) === 0) return err.set(EVT_ID.C_BAD_CD, 'CD.V == 0');
  const bad = (why: string) => err.set(EVT_ID.C_BAD_CD, `ILLEGAL CD: ${why}`);
  const aa64 = getField(dw, CD.AA64) !== 0;
  if (!aa64) {
    if ((f.ttf & 1) === 0) return bad('AA64 == 0 selects VMSAv8-32 LPAE, not supported (IDR0.TTF)');
    return bad('AA64 == 0: VMSAv8-32 LPAE stage 1 is not modelled');
  }
  // EL2 (non-E2H) has one VA range: EPDx are IGNORED (effective 0) and the TTB1 fields RES0.
  const el2 = st.world === WORLD_EL2;
  const epd0 = !el2 && getField(dw, CD.EPD0) !== 0;
  const epd1 = el2 || getField(dw, CD.EPD1) !== 0;
  const ipsBits = Math.min(ipsToBits(getField(dw, CD.IPS)), f.oasBits);
  const tszMin = f.va52 ? 12 : 16;
  const tszMax = f.stt ? 48 : 39;
  const t0sz = getField(dw, CD.T0SZ);
  const t1sz = getField(dw, CD.T1SZ);
  const tg0 = tg0ToShift(getField(dw, CD.TG0));
  const tg1 = tg1ToShift(getField(dw, CD.TG1));
  const ttb0 = getField(dw, CD.TTB0);
  const ttb1 = getField(dw, CD.TTB1);
  const ranges: Array<[boolean, number, number, number, string]> = [
    [epd0, t0sz, tg0, ttb0, '0'],
    [epd1, t1sz, tg1, ttb1, '1'],
  ];
  for (const [epd, tsz, g, ttb, n] of ranges) {
    if (epd) continue;
    if (g === 0) return bad(`TG${n} is a reserved encoding`);
    if (!granuleSupported(f, g)) return bad(`TG${n} selects a ${1 << (g - 10)}KB granule not in SMMU_IDR5`);
    const max = f.stt && g === 16 ? 47 : tszMax;
    const min = g === 16 ? tszMin : 16;
    if (tsz < min || tsz > max) return bad(`T${n}SZ ${tsz} outside [${min}, ${max}]`);
    if (ttb >= 2 ** ipsBits)
      return bad(`TTB${n} 0x${ttb.toString(16)} beyond the effective IPS (${ipsBits} bits)`);
    if (g !== 16 && ttb >= 2 ** 48) return bad(`TTB${n} beyond 48 bits with a 4KB/16KB granule`);
  }
  const endi = getField(dw, CD.ENDI) !== 0;
  if (!(epd0 && epd1)) {
    if (endi && f.ttEndian === TTENDIAN.LE) return bad('ENDI == 1 but only little-endian walks (TTENDIAN)');
    if (!endi && f.ttEndian === TTENDIAN.BE) return bad('ENDI == 0 but only big-endian walks (TTENDIAN)');
  }
  const ha = getField(dw, CD.HA) !== 0;
  const hd = getField(dw, CD.HD) !== 0;
  if (ha && f.httu === 0) return bad('HA == 1 but SMMU_IDR0.HTTU == 0');
  if (hd && f.httu < 2) return bad('HD == 1 but SMMU_IDR0.HTTU does not include dirty state');
  const a = getField(dw, CD.A) !== 0;
  const r = getField(dw, CD.R) !== 0;
  const s = getField(dw, CD.S) !== 0;
  if (!a && f.termModel) return bad('A == 0 but SMMU_IDR0.TERM_MODEL == 1 (abort-only termination)');
  if (s && f.stallModel === STALL_MODEL.TERMINATE) return bad('S == 1 but the stall model is not supported');
  if (s && f.stallModel === STALL_MODEL.STALL && st.s1StallD) return bad('S == 1 but STE.S1STALLD == 1');
  if (!s && f.stallModel === STALL_MODEL.FORCE) return bad('S == 0 but the SMMU forces stalling');
  const asid = getField(dw, CD.ASID);
  if (!el2 && !f.asid16 && asid > 0xff) return bad('ASID[15:8] != 0 but SMMU_IDR0.ASID16 == 0');

  const s1 = makeStage1Config();
  s1.aa64 = aa64;
  s1.endi = endi;
  s1.asid = el2 ? 0 : asid;
  s1.ttb0 = ttb0;
  s1.ttb1 = ttb1;
  s1.t0sz = t0sz;
  s1.t1sz = t1sz;
  s1.tg0 = tg0 === 0 ? 12 : tg0;
  s1.tg1 = tg1 === 0 ? 12 : tg1;
  s1.epd0 = epd0;
  s1.epd1 = epd1;
  s1.tbi0 = getField(dw, CD.TBI0) !== 0;
  s1.tbi1 = !el2 && getField(dw, CD.TBI1) !== 0;
  s1.had0 = f.had && getField(dw, CD.HAD0) !== 0;
  s1.had1 = f.had && getField(dw, CD.HAD1) !== 0;
  s1.ips = ipsBits;
  s1.affd = getField(dw, CD.AFFD) !== 0;
  s1.ha = ha;
  s1.hd = hd && ha;
  s1.wxn = getField(dw, CD.WXN) !== 0;
  s1.uwxn = getField(dw, CD.UWXN) !== 0;
  s1.pan = getField(dw, CD.PAN) !== 0;
  s1.mairLo = dw[6]! | 0;
  s1.mairHi = dw[7]! | 0;
  const cfg: TranslationConfig = {
    s1Enabled: true,
    s2Enabled: st.s2,
    world: st.world,
    vmid: st.vmid,
    s1,
    s2: st.s2cfg,
  };
  return { sid: st.sid, index, cdAddr, stream: st, cfg, r, a, s, ref: false };
}
