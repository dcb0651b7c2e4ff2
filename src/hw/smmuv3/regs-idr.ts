// What one SMMUv3 implementation is: its ID registers as constructor options, with defaults
// that imitate a typical SMMUv3.2 system MMU (Arm MMU-700 class), and the decoded feature set
// the rest of the model consults (so behaviour always agrees with what IDRx advertise).

import {
  HTTU,
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  IIDR,
  IIDR_IMPLEMENTER_ARM,
  oasEncoding,
  PA_BITS,
  ST_LEVEL,
  STALL_MODEL,
  TTENDIAN,
  TTF,
} from '../../arch/smmuv3/regs.ts';

export type StallModelName = 'stall' | 'terminate' | 'force';
export type TtEndianName = 'mixed' | 'le' | 'be';

/** Wired interrupt numbers, used when MSIs are not advertised or an IRQ_CFG0 address is 0. */
export interface SmmuWiredIrqs {
  eventq?: number;
  priq?: number;
  gerror?: number;
  /** Not architected: some implementations signal CMD_SYNC CS=IRQ completion on a wire. */
  cmdqSync?: number;
}

/**
 * Implementation choices of one SMMUv3 instance. Every field is optional; the defaults
 * describe a v3.2 SMMU with both stages, 2-level stream and CD tables, 16-bit StreamIDs,
 * 20-bit SubstreamIDs, 48-bit OAS, all three granules, range invalidation, 16-bit ASIDs and
 * VMIDs, MSIs, ATS, PRI, the configurable stall model, HTTU access+dirty, little-endian walks.
 */
export interface SmmuV3Options {
  /** Component name in traces. Default "smmuv3.0". */
  name?: string;
  /** IDR0.S1P. Default true. */
  stage1?: boolean;
  /** IDR0.S2P. Default true. */
  stage2?: boolean;
  /** IDR0.ST_LEVEL = 2-level. Default true. */
  twoLevelStreamTable?: boolean;
  /** IDR0.CD2L. Default true. */
  twoLevelCdTable?: boolean;
  /** IDR1.SIDSIZE (0..32). Default 16. */
  sidBits?: number;
  /** IDR1.SSIDSIZE (0..20). Default 20. */
  ssidBits?: number;
  /** Output address size in bits (IDR5.OAS, rounded up to an encoding). Default 48. */
  oasBits?: number;
  /** IDR5.VAX: 52-bit stage 1 input addresses. Default false (48 bits). */
  va52?: boolean;
  /** IDR5.GRAN4K/16K/64K. Default all three. */
  granules?: { g4k?: boolean; g16k?: boolean; g64k?: boolean };
  /** IDR3.RIL. Default true. */
  rangeInvalidation?: boolean;
  /** IDR3.HAD. Default true. */
  hierarchicalAttrDisable?: boolean;
  /** IDR3.XNX (stage-2 XN distinguishes privileged/unprivileged execute). Default true. */
  xnx?: boolean;
  /** IDR3.STT (small translation tables: TxSZ up to 48). Default false. */
  smallTranslationTables?: boolean;
  /** IDR0.ASID16. Default true. */
  asid16?: boolean;
  /** IDR0.VMID16. Default true. */
  vmid16?: boolean;
  /** IDR0.MSI. Default true. */
  msi?: boolean;
  /** IDR0.ATS. Default true. */
  ats?: boolean;
  /** IDR0.PRI. Default true. */
  pri?: boolean;
  /** IDR0.SEV. Default true. */
  sev?: boolean;
  /** IDR0.HYP (EL2 StreamWorld, TLBI_EL2_*). Default true. */
  hyp?: boolean;
  /** IDR0.BTM: broadcast TLB maintenance (SmmuUpstream.broadcastTlbi) is honoured. Default false. */
  btm?: boolean;
  /** IDR0.COHACC. Default true. */
  coherent?: boolean;
  /** IDR0.STALL_MODEL. Default "stall" (stall and terminate both supported). */
  stallModel?: StallModelName;
  /** IDR0.TERM_MODEL: terminated transactions always abort (CD.A == 0 is ILLEGAL). Default false. */
  abortOnlyTermination?: boolean;
  /** IDR0.HTTU: 0 none, 1 access flag, 2 access flag and dirty state. Default 2. */
  httu?: 0 | 1 | 2;
  /** IDR0.TTENDIAN. Default "le". */
  ttEndian?: TtEndianName;
  /** IDR0.TTF includes VMSAv8-32 LPAE (not modelled by the walker). Default false. */
  aarch32Tables?: boolean;
  /** log2 of the maximum queue sizes (IDR1.CMDQS / EVENTQS / PRIQS). Default 19. */
  cmdqMaxLog2?: number;
  evtqMaxLog2?: number;
  priqMaxLog2?: number;
  /** IDR1.ATTR_TYPES_OVR / ATTR_PERMS_OVR. Default true / true. */
  attrTypesOverride?: boolean;
  attrPermsOverride?: boolean;
  /** AIDR: architecture revision 3.x minor. Default 2 (SMMUv3.2). */
  archMinor?: number;
  /** IIDR fields. Default MMU-700-like: product 0x487, implementer Arm. */
  iidr?: { productId?: number; variant?: number; revision?: number; implementer?: number };
  /** IDR3.PPS: PRI auto-responses always carry the request's PASID (STE.PPAR ignored). Default false. */
  priPasidAlways?: boolean;
  /**
   * Virtual ns after which an unacknowledged ATS invalidation makes a waiting CMD_SYNC fail with
   * CERROR_ATC_INV_SYNC (IHI 0070 §3.9.1.4). Default: wait forever.
   */
  atcInvTimeoutNs?: number;
  /** IDR5.STALL_MAX. Default 256. */
  stallMax?: number;
  /** Wired interrupt lines. */
  irqs?: SmmuWiredIrqs;
  /** Virtual ns between a CR0/IRQ_CTRL/GBPA write and the ACK/UPDATE. Default 200. */
  regAckLatencyNs?: number;
  /** Virtual ns to fetch and execute one command. Default 50. */
  cmdLatencyNs?: number;
  /** Configuration cache capacities (entries). Defaults 256 STEs, 1024 CDs. */
  steCacheSize?: number;
  cdCacheSize?: number;
  /** TLB geometry (walker engineer's Tlb): sets (power of two) and ways. Defaults 2048 x 4. */
  tlbSets?: number;
  tlbWays?: number;
  /**
   * Break-before-make conflicts: when a walk fills a TLB entry that overlaps one of another size
   * in the same context (a block replaced a table, or the reverse, without the TLBI between),
   * abort the transaction with F_TLB_CONFLICT (the architecture allows it) instead of using
   * either entry. Default false (the TLB answers with one of them, as it may).
   */
  tlbConflictAbort?: boolean;
}

/** The options with defaults applied, plus derived feature flags. */
export interface SmmuFeatures {
  readonly name: string;
  readonly s1: boolean;
  readonly s2: boolean;
  readonly st2l: boolean;
  readonly cd2l: boolean;
  readonly sidBits: number;
  readonly ssidBits: number;
  readonly oasEnc: number;
  readonly oasBits: number;
  readonly va52: boolean;
  readonly g4k: boolean;
  readonly g16k: boolean;
  readonly g64k: boolean;
  readonly ril: boolean;
  readonly had: boolean;
  readonly stt: boolean;
  readonly xnx: boolean;
  readonly asid16: boolean;
  readonly vmid16: boolean;
  readonly msi: boolean;
  readonly ats: boolean;
  readonly pri: boolean;
  readonly sev: boolean;
  readonly hyp: boolean;
  readonly btm: boolean;
  readonly coherent: boolean;
  readonly stallModel: number;
  readonly termModel: boolean;
  readonly httu: number;
  readonly ttEndian: number;
  readonly ttf: number;
  readonly cmdqMaxLog2: number;
  readonly evtqMaxLog2: number;
  readonly priqMaxLog2: number;
  readonly attrTypesOvr: boolean;
  readonly attrPermsOvr: boolean;
  readonly archMinor: number;
  readonly iidr: number;
  readonly stallMax: number;
  readonly pps: boolean;
  readonly atcInvTimeoutNs: number;
  readonly irqs: Readonly<SmmuWiredIrqs>;
  readonly regAckLatencyNs: number;
  readonly cmdLatencyNs: number;
  readonly steCacheSize: number;
  readonly cdCacheSize: number;
  readonly tlbSets: number;
  readonly tlbWays: number;
  readonly tlbConflictAbort: boolean;
}

function clampInt(v: number | undefined, lo: number, hi: number, dflt: number): number {
  if (v === undefined || !Number.isFinite(v)) return dflt;
  return Math.max(lo, Math.min(hi, Math.trunc(v)));
}

const STALL_ENC: Record<StallModelName, number> = {
  stall: STALL_MODEL.STALL,
  terminate: STALL_MODEL.TERMINATE,
  force: STALL_MODEL.FORCE,
};
const ENDIAN_ENC: Record<TtEndianName, number> = { mixed: TTENDIAN.MIXED, le: TTENDIAN.LE, be: TTENDIAN.BE };

/** Applies defaults. Throws RangeError only for a configuration no SMMU can have (no stage at all). */
export function resolveFeatures(o: SmmuV3Options = {}): SmmuFeatures {
  const s1 = o.stage1 ?? true;
  const s2 = o.stage2 ?? true;
  if (!s1 && !s2) throw new RangeError('smmuv3: an SMMU must implement stage 1, stage 2 or both');
  const oasEnc = oasEncoding(clampInt(o.oasBits, 32, 52, 48));
  const g = o.granules ?? {};
  const g4k = g.g4k ?? true;
  const g16k = g.g16k ?? true;
  const g64k = g.g64k ?? true;
  if (!g4k && !g16k && !g64k) throw new RangeError('smmuv3: at least one translation granule is required');
  const id = o.iidr ?? {};
  const iidr =
    (((id.productId ?? 0x487) & 0xfff) << IIDR.PRODUCTID_SHIFT) |
    (((id.variant ?? 0) & 0xf) << IIDR.VARIANT_SHIFT) |
    (((id.revision ?? 0) & 0xf) << IIDR.REVISION_SHIFT) |
    ((id.implementer ?? IIDR_IMPLEMENTER_ARM) & 0xfff);
  return Object.freeze({
    name: o.name ?? 'smmuv3.0',
    s1,
    s2,
    st2l: o.twoLevelStreamTable ?? true,
    cd2l: s1 && (o.twoLevelCdTable ?? true),
    sidBits: clampInt(o.sidBits, 0, 32, 16),
    ssidBits: s1 ? clampInt(o.ssidBits, 0, 20, 20) : 0,
    oasEnc,
    oasBits: PA_BITS[oasEnc]!,
    va52: o.va52 ?? false,
    g4k,
    g16k,
    g64k,
    ril: o.rangeInvalidation ?? true,
    had: o.hierarchicalAttrDisable ?? true,
    stt: o.smallTranslationTables ?? false,
    xnx: o.xnx ?? true,
    asid16: o.asid16 ?? true,
    vmid16: o.vmid16 ?? true,
    msi: o.msi ?? true,
    ats: o.ats ?? true,
    pri: o.pri ?? true,
    sev: o.sev ?? true,
    hyp: o.hyp ?? true,
    btm: o.btm ?? false,
    coherent: o.coherent ?? true,
    stallModel: STALL_ENC[o.stallModel ?? 'stall'],
    termModel: o.abortOnlyTermination ?? false,
    httu: clampInt(o.httu, 0, 2, HTTU.ACCESS_DIRTY),
    ttEndian: ENDIAN_ENC[o.ttEndian ?? 'le'],
    ttf: o.aarch32Tables ? TTF.BOTH : TTF.AARCH64,
    cmdqMaxLog2: clampInt(o.cmdqMaxLog2, 0, 19, 19),
    evtqMaxLog2: clampInt(o.evtqMaxLog2, 0, 19, 19),
    priqMaxLog2: clampInt(o.priqMaxLog2, 0, 19, 19),
    attrTypesOvr: o.attrTypesOverride ?? true,
    attrPermsOvr: o.attrPermsOverride ?? true,
    archMinor: clampInt(o.archMinor, 0, 15, 2),
    iidr: iidr >>> 0,
    stallMax: clampInt(o.stallMax, 0, 0xffff, 256),
    pps: o.priPasidAlways ?? false,
    atcInvTimeoutNs: o.atcInvTimeoutNs ?? Number.POSITIVE_INFINITY,
    irqs: Object.freeze({ ...(o.irqs ?? {}) }),
    regAckLatencyNs: Math.max(0, o.regAckLatencyNs ?? 200),
    cmdLatencyNs: Math.max(0, o.cmdLatencyNs ?? 50),
    steCacheSize: clampInt(o.steCacheSize, 1, 1 << 24, 256),
    cdCacheSize: clampInt(o.cdCacheSize, 1, 1 << 24, 1024),
    tlbSets: o.tlbSets ?? 2048,
    tlbWays: o.tlbWays ?? 4,
    tlbConflictAbort: o.tlbConflictAbort === true,
  });
}

/** The ID register values an implementation with features `f` reads back. */
export interface IdRegs {
  readonly idr0: number;
  readonly idr1: number;
  readonly idr2: number;
  readonly idr3: number;
  readonly idr4: number;
  readonly idr5: number;
  readonly iidr: number;
  readonly aidr: number;
}

export function encodeIdRegs(f: SmmuFeatures): IdRegs {
  let idr0 = 0;
  if (f.s2) idr0 |= IDR0.S2P;
  if (f.s1) idr0 |= IDR0.S1P;
  idr0 |= f.ttf << IDR0.TTF_SHIFT;
  if (f.coherent) idr0 |= IDR0.COHACC;
  if (f.btm) idr0 |= IDR0.BTM;
  idr0 |= f.httu << IDR0.HTTU_SHIFT;
  if (f.hyp) idr0 |= IDR0.HYP;
  if (f.ats) idr0 |= IDR0.ATS;
  if (f.asid16) idr0 |= IDR0.ASID16;
  if (f.msi) idr0 |= IDR0.MSI;
  if (f.sev) idr0 |= IDR0.SEV;
  if (f.pri) idr0 |= IDR0.PRI;
  if (f.vmid16) idr0 |= IDR0.VMID16;
  if (f.cd2l) idr0 |= IDR0.CD2L;
  idr0 |= f.ttEndian << IDR0.TTENDIAN_SHIFT;
  idr0 |= f.stallModel << IDR0.STALL_MODEL_SHIFT;
  if (f.termModel) idr0 |= IDR0.TERM_MODEL;
  idr0 |= (f.st2l ? ST_LEVEL.TWO_LEVEL : ST_LEVEL.LINEAR) << IDR0.ST_LEVEL_SHIFT;

  let idr1 =
    (f.sidBits << IDR1.SIDSIZE_SHIFT) |
    (f.ssidBits << IDR1.SSIDSIZE_SHIFT) |
    ((f.pri ? f.priqMaxLog2 : 0) << IDR1.PRIQS_SHIFT) |
    (f.evtqMaxLog2 << IDR1.EVENTQS_SHIFT) |
    (f.cmdqMaxLog2 << IDR1.CMDQS_SHIFT);
  if (f.attrPermsOvr) idr1 |= IDR1.ATTR_PERMS_OVR;
  if (f.attrTypesOvr) idr1 |= IDR1.ATTR_TYPES_OVR;

  let idr3 = 0;
  if (f.had) idr3 |= IDR3.HAD;
  if (f.stt) idr3 |= IDR3.STT;
  if (f.xnx && f.s2) idr3 |= IDR3.XNX;
  if (f.ril) idr3 |= IDR3.RIL;
  if (f.pri && f.pps) idr3 |= IDR3.PPS;

  let idr5 = f.oasEnc << IDR5.OAS_SHIFT;
  if (f.g4k) idr5 |= IDR5.GRAN4K;
  if (f.g16k) idr5 |= IDR5.GRAN16K;
  if (f.g64k) idr5 |= IDR5.GRAN64K;
  if (f.va52) idr5 |= 1 << IDR5.VAX_SHIFT;
  if (f.stallModel !== STALL_MODEL.TERMINATE) idr5 |= f.stallMax << IDR5.STALL_MAX_SHIFT;

  return {
    idr0: idr0 >>> 0,
    idr1: idr1 >>> 0,
    idr2: 0,
    idr3: idr3 >>> 0,
    idr4: 0,
    idr5: idr5 >>> 0,
    iidr: f.iidr,
    aidr: (0 << 4) | f.archMinor,
  };
}
