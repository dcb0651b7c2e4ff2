// What one SMMUv1/v2 implementation is: the variants Linux's arm-smmu driver knows (by their
// device-tree compatible strings), the options that pick an implementation's ID registers, and
// the decoded feature set the rest of the model consults, so that behaviour always agrees with
// what ID0..ID2 and ID7 advertise.

import { bitsToIdSize, ID0, ID1, ID2, ID7, idSizeToBits, setField } from '../../arch/smmuv2/regs.ts';

/** The implementations, named by their compatible strings. */
export type SmmuV2Compatible =
  | 'arm,smmu-v1'
  | 'arm,mmu-400'
  | 'arm,mmu-401'
  | 'arm,smmu-v2'
  | 'arm,mmu-500'
  | 'qcom,smmu-v2'
  | 'qcom,smmu-500'
  | 'nvidia,smmu-500'
  | 'marvell,ap806-smmu-500';

export const SMMUV2_COMPATIBLES: readonly SmmuV2Compatible[] = [
  'arm,smmu-v1',
  'arm,mmu-400',
  'arm,mmu-401',
  'arm,smmu-v2',
  'arm,mmu-500',
  'qcom,smmu-v2',
  'qcom,smmu-500',
  'nvidia,smmu-500',
  'marvell,ap806-smmu-500',
];

/** Implementation choices; every field is optional (defaults per `compatible`). */
export interface SmmuV2Options {
  /** Component name in traces. Default "smmuv2.0". */
  name?: string;
  /** The implementation. Default 'arm,mmu-500'. */
  compatible?: SmmuV2Compatible;
  /** ID0.S1TS / S2TS / NTS. Defaults: all three. */
  stage1?: boolean;
  stage2?: boolean;
  nested?: boolean;
  /** ID1.NUMCB (1..128). Default 8 (SMMUv1), 16 (SMMUv2). */
  numContextBanks?: number;
  /** ID1.NUMS2CB: the first banks support stage 2 only. Default 0 (a stage-2-only SMMU: all). */
  numS2ContextBanks?: number;
  /** ID0.NUMSMRG (1..128). Default 16 (SMMUv1), 48 (SMMUv2). */
  numSmrg?: number;
  /**
   * ID0.SMS: stream matching. false: stream indexing, S2CR n serves StreamID n (then sidBits
   * must be 8 or less: the S2CRs fill 0xc00..0xfff). Default true.
   */
  streamMatching?: boolean;
  /** ID0.NUMSIDB: StreamID bits (0..15). Default 10 (SMMUv1), 15 (SMMUv2). */
  sidBits?: number;
  /** ID0.EXIDS: 16-bit extended StreamIDs with sCR0.EXIDENABLE (SMMUv2 only). Default false. */
  exids?: boolean;
  /** ID1.PAGESIZE: register page size. Default 4096 (65536 for arm,mmu-401). */
  pageSize?: 4096 | 65536;
  /**
   * ID1.NUMPAGENDXB: the global space is 2^(n+1) pages, and so is the context bank space (so it
   * must hold NUMCB pages). Default 3 (16 pages: CB0 at +0x10000 with 4K pages), or the
   * smallest that holds the banks.
   */
  numPageNdxb?: number;
  /** ID2.IAS / OAS / UBS in bits (rounded up to an encoding). Defaults: 40 / 40 (v1), 48 / 48 / 49->48 (v2). */
  ias?: number;
  oas?: number;
  ubs?: number;
  /**
   * ID2.PTFS_*: AArch64 granules. Defaults: SMMUv2 4K and 64K (MMU-500 has no 16K granule),
   * generic SMMUv2 all three; arm,mmu-401: 4K and 64K (the SMMUv1 64 KiB supplement); SMMUv1 none.
   */
  granules?: { g4k?: boolean; g16k?: boolean; g64k?: boolean };
  /** AArch32 long-descriptor (LPAE) contexts (ID0.PTFS_NO_AARCH32 clear). Always on for SMMUv1. Default true. */
  aarch32?: boolean;
  /** ID2.VMID16 (SMMUv2). Default true for MMU-500 class, false otherwise. */
  vmid16?: boolean;
  /** Address translation operations (ID0.ATOSNS clear). Default true. */
  atos?: boolean;
  /** ID0.CTTW: coherent table walks. Default true. */
  cttw?: boolean;
  /** ID0.NUMIRPT: context interrupts. Default: numContextBanks. */
  numIrpt?: number;
  /** ID7.MAJOR / MINOR. Defaults: MMU-500 r2p4 (2, 4); others 0, 0. */
  major?: number;
  minor?: number;
  /** TLB geometry (sets a power of two, 0 = no TLB; ways 1..8). Default 512 sets x 4 ways. */
  tlbSets?: number;
  tlbWays?: number;
  /** Reads of TLBSTATUS / sTLBGSTATUS that still show SACTIVE after a sync. Default 1. */
  syncBusyReads?: number;
  /** Virtual ns between a RESUME write and the held transaction's retry or termination. Default 100. */
  resumeLatencyNs?: number;
  /** FSYNR1 of a context fault (IMPLEMENTATION DEFINED; Adreno: client/block id in 7:0). Default 0. */
  fsynr1?: (sid: number, iova: number, write: boolean) => number;
  /**
   * Qualcomm firmware (hypervisor) that forbids S2CR.TYPE = BYPASS: such writes keep the
   * previous TYPE (Linux's qcom cfg_probe detects this by reading back). Default false.
   */
  firmwareBlocksBypass?: boolean;
}

/** The resolved implementation. */
export interface SmmuV2Features {
  readonly name: string;
  readonly compatible: SmmuV2Compatible;
  /** 1 (SMMUv1) or 2. */
  readonly version: 1 | 2;
  /** SMMUv1 with the 64 KiB supplement (arm,mmu-401): CBA2R and AArch64 64K contexts. */
  readonly v1With64k: boolean;
  /** CBA2R (VA64) and TCR2 exist. */
  readonly hasCba2r: boolean;
  /** Arm MMU-500 behaviour (the RESUME and stalled-interrupt quirks, sACR, ACTLR.CPRE). */
  readonly mmu500: boolean;
  readonly qcom: boolean;
  readonly nvidia: boolean;
  /** Marvell AP806 erratum 582743: 64-bit register accesses do not work. */
  readonly marvell: boolean;
  readonly s1: boolean;
  readonly s2: boolean;
  readonly nested: boolean;
  readonly numCb: number;
  readonly numS2Cb: number;
  readonly numSmrg: number;
  readonly sms: boolean;
  readonly sidBits: number;
  readonly exids: boolean;
  readonly pgshift: 12 | 16;
  readonly numPageNdxb: number;
  /** Global space pages (= context bank pages). */
  readonly numPage: number;
  /** Window size in bytes: 2 * numPage pages. */
  readonly windowSize: number;
  readonly iasBits: number;
  readonly oasBits: number;
  readonly ubsBits: number;
  readonly g4k: boolean;
  readonly g16k: boolean;
  readonly g64k: boolean;
  readonly aarch32: boolean;
  readonly vmid16: boolean;
  readonly atos: boolean;
  readonly cttw: boolean;
  readonly numIrpt: number;
  readonly major: number;
  readonly minor: number;
  readonly tlbSets: number;
  readonly tlbWays: number;
  readonly syncBusyReads: number;
  readonly resumeLatencyNs: number;
  readonly firmwareBlocksBypass: boolean;
}

function int(v: number | undefined, def: number, lo: number, hi: number, what: string): number {
  const x = v ?? def;
  if (!Number.isInteger(x) || x < lo || x > hi)
    throw new RangeError(`smmuv2: ${what} ${x} not in ${lo}..${hi}`);
  return x;
}

/** Resolve the options into a feature set (throws RangeError on an impossible configuration). */
export function resolveFeatures(o: SmmuV2Options = {}): SmmuV2Features {
  const compatible = o.compatible ?? 'arm,mmu-500';
  if (!SMMUV2_COMPATIBLES.includes(compatible))
    throw new RangeError(`smmuv2: unknown compatible ${compatible}`);
  const v1 = compatible === 'arm,smmu-v1' || compatible === 'arm,mmu-400' || compatible === 'arm,mmu-401';
  const v1With64k = compatible === 'arm,mmu-401';
  const mmu500 = compatible.endsWith('-500');
  const numCb = int(o.numContextBanks, v1 ? 8 : 16, 1, 128, 'numContextBanks');
  const numS2Cb = int(o.numS2ContextBanks, 0, 0, numCb, 'numS2ContextBanks');
  const s1 = o.stage1 ?? true;
  const s2 = o.stage2 ?? true;
  if (!s1 && !s2) throw new RangeError('smmuv2: no translation stage');
  const pageSize = o.pageSize ?? (v1With64k ? 65536 : 4096);
  if (pageSize !== 4096 && pageSize !== 65536) throw new RangeError(`smmuv2: pageSize ${pageSize}`);
  const pgshift = pageSize === 65536 ? 16 : 12;
  // the context bank space is as large as the global space: NUMPAGE >= NUMCB
  const minNdxb = Math.max(0, Math.ceil(Math.log2(numCb)) - 1);
  const numPageNdxb = int(o.numPageNdxb, Math.max(3, minNdxb), minNdxb, 7, 'numPageNdxb');
  const numPage = 1 << (numPageNdxb + 1);
  const sizeBits = (b: number | undefined, def: number, what: string) =>
    idSizeToBits(bitsToIdSize(int(b, def, 32, 48, what)));
  const g = o.granules;
  const sms = o.streamMatching ?? true;
  const sidBits = int(o.sidBits, sms ? (v1 ? 10 : 15) : 8, 0, sms ? 15 : 8, 'sidBits');
  return {
    name: o.name ?? 'smmuv2.0',
    compatible,
    version: v1 ? 1 : 2,
    v1With64k,
    hasCba2r: !v1 || v1With64k,
    mmu500,
    qcom: compatible.startsWith('qcom,'),
    nvidia: compatible.startsWith('nvidia,'),
    marvell: compatible.startsWith('marvell,'),
    s1,
    s2,
    nested: s1 && s2 && (o.nested ?? true),
    numCb,
    numS2Cb: !s1 ? numCb : !s2 ? 0 : numS2Cb,
    numSmrg: int(o.numSmrg, v1 ? 16 : 48, 1, 128, 'numSmrg'),
    sms,
    sidBits,
    exids: !v1 && (o.exids ?? false),
    pgshift,
    numPageNdxb,
    numPage,
    windowSize: 2 * numPage * pageSize,
    iasBits: sizeBits(o.ias, v1 ? 40 : 48, 'ias'),
    oasBits: sizeBits(o.oas, v1 ? 40 : 48, 'oas'),
    ubsBits: v1 ? 32 : sizeBits(o.ubs, 48, 'ubs'),
    // the 64 KiB supplement's AArch64 contexts take the 4K granule too: Linux gives an MMU-401
    // AArch64 with the kernel's 4K pages (its pgsize_bitmap has 4K from the AArch32 LPAE format)
    g4k: v1 ? v1With64k : (g?.g4k ?? true),
    g16k: v1 ? false : (g?.g16k ?? !mmu500),
    g64k: v1 ? v1With64k : (g?.g64k ?? true),
    aarch32: v1 ? true : (o.aarch32 ?? true),
    vmid16: !v1 && (o.vmid16 ?? mmu500),
    atos: o.atos ?? true,
    cttw: o.cttw ?? true,
    numIrpt: int(o.numIrpt, numCb, 0, 255, 'numIrpt'),
    major: int(o.major, mmu500 ? 2 : 0, 0, 15, 'major'),
    minor: int(o.minor, mmu500 ? 4 : 0, 0, 15, 'minor'),
    tlbSets: o.tlbSets ?? 512,
    tlbWays: o.tlbWays ?? 4,
    syncBusyReads: int(o.syncBusyReads, 1, 0, 1_000_000, 'syncBusyReads'),
    resumeLatencyNs: o.resumeLatencyNs ?? 100,
    firmwareBlocksBypass: o.firmwareBlocksBypass ?? false,
  };
}

/** The ID registers of an implementation. */
export interface SmmuV2IdRegs {
  readonly id0: number;
  readonly id1: number;
  readonly id2: number;
  readonly id7: number;
}

export function encodeIdRegs(f: SmmuV2Features): SmmuV2IdRegs {
  const b = (x: boolean) => (x ? 1 : 0);
  let id0 = 0;
  id0 = setField(id0, ID0.NUMSMRG, f.sms ? f.numSmrg : 0);
  id0 = setField(id0, ID0.EXIDS, b(f.exids));
  id0 = setField(id0, ID0.NUMSIDB, f.sidBits);
  id0 = setField(id0, ID0.CTTW, b(f.cttw));
  id0 = setField(id0, ID0.NUMIRPT, f.numIrpt);
  // AArch32 short-descriptor (v7s) contexts are not modelled: never advertised
  id0 = setField(id0, ID0.PTFS_NO_AARCH32S, 1);
  id0 = setField(id0, ID0.PTFS_NO_AARCH32, b(!f.aarch32));
  id0 = setField(id0, ID0.ATOSNS, b(!f.atos));
  id0 = setField(id0, ID0.SMS, b(f.sms));
  id0 = setField(id0, ID0.NTS, b(f.nested));
  id0 = setField(id0, ID0.S2TS, b(f.s2));
  id0 = setField(id0, ID0.S1TS, b(f.s1));
  let id1 = 0;
  id1 = setField(id1, ID1.NUMCB, f.numCb);
  id1 = setField(id1, ID1.NUMS2CB, f.numS2Cb);
  id1 = setField(id1, ID1.NUMPAGENDXB, f.numPageNdxb);
  id1 = setField(id1, ID1.PAGESIZE, b(f.pgshift === 16));
  let id2 = 0;
  id2 = setField(id2, ID2.IAS, bitsToIdSize(f.iasBits));
  id2 = setField(id2, ID2.OAS, bitsToIdSize(f.oasBits));
  if (f.version === 2) {
    id2 = setField(id2, ID2.UBS, bitsToIdSize(f.ubsBits));
    id2 = setField(id2, ID2.PTFS_4K, b(f.g4k));
    id2 = setField(id2, ID2.PTFS_16K, b(f.g16k));
    id2 = setField(id2, ID2.PTFS_64K, b(f.g64k));
    id2 = setField(id2, ID2.VMID16, b(f.vmid16));
  }
  let id7 = 0;
  id7 = setField(id7, ID7.MAJOR, f.major);
  id7 = setField(id7, ID7.MINOR, f.minor);
  return { id0, id1, id2, id7 };
}
