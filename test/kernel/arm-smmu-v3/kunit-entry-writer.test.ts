/**
 * Port of Linux's arm-smmu-v3 KUnit entry-writer suite (arm-smmu-v3-test.c): every transition
 * with the same expected sync count and hitless flag, and the same harness check — at every
 * sync the entry must equal the initial or the target entry on the bits the current entry
 * uses (minus update-safe bits), and "not hitless" means some sync saw qword 0 == 0.
 */
import { describe, expect, it } from 'vitest';
import {
  cdOps,
  type Entry,
  type EntryOps,
  entryDiffers,
  planWriteEntry,
  steOps,
} from '../../../src/kernel/iommu/arm-smmu-v3/entry-writer.ts';
import {
  EATS,
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeNestedSte,
  makeS1Cd,
  makeS2DomainSte,
  makeSvaCd,
  S1DSS,
  S1FMT,
  type SmmuWriteFeatures,
} from '../../../src/kernel/iommu/arm-smmu-v3/make-entry.ts';

// the KUnit fake SMMU: FEAT_STALLS | FEAT_ATTR_TYPES_OVR
const smmu: SmmuWriteFeatures = {
  stalls: true,
  stallForce: false,
  attrTypesOvr: true,
  e2h: false,
  s2fwb: false,
};
const ATS = 1;
const STALL = 2;
const NESTED = 4;
const FAKE_CDTAB = 0xf0f0f0f0f0f0;

function cdtableSte(s1dss: number, dma: number, feat: number): Entry {
  const master = { stallEnabled: (feat & STALL) !== 0 };
  const ste = makeCdtableSte(
    smmu,
    master,
    { cdtabDma: dma, s1fmt: S1FMT.L2_64K, s1cdmax: 0xff >> 3 },
    (feat & ATS) !== 0,
    s1dss,
  );
  if (feat & NESTED) return makeNestedSte(ste, s2Ste(feat & ~NESTED));
  return ste;
}

function s2Ste(feat: number): Entry {
  return makeS2DomainSte(
    smmu,
    { stallEnabled: (feat & STALL) !== 0 },
    { vmid: 0, vttbr: 0xdaedbeefdeadbeefn, ps: 1, tg: 2, sh: 3, orgn: 1, irgn: 2, sl: 3, tsz: 4 },
    (feat & ATS) !== 0,
  );
}

const s1Cd = (asid: number) =>
  makeS1Cd(
    { stallEnabled: false },
    {
      asid,
      ttbr: 0xdaedbeefdeadbeefn,
      tsz: 4,
      tg: 2,
      irgn: 2,
      orgn: 1,
      sh: 3,
      ips: 1,
      mair: 0xabcdef012345678n,
    },
  );
const svaMm = { pgd: 0xdaedbeefdeadbeefn, vaBits: 48, mair: 0n };
const svaCd = (asid: number) => makeSvaCd(smmu, { stallEnabled: false }, svaMm, asid, 0n);
const svaReleaseCd = (asid: number) => makeSvaCd(smmu, { stallEnabled: false }, null, asid, 0n);
const zeroCd = (): Entry => new Array<bigint>(8).fill(0n);

/** The KUnit harness: apply the writer's steps, checking every intermediate the SMMU could see. */
function expectTransition(ops: EntryOps, init: Entry, target: Entry, syncs: number, hitless: boolean): void {
  const plan = planWriteEntry(ops, init, target);
  expect(plan.unusedTargetBits.every((b) => b === 0n)).toBe(true); // make-functions set only used bits
  const entry = init.slice();
  let invalidWritten = false;
  let n = 0;
  for (const step of plan.steps) {
    for (const [i, v] of step.writes) entry[i] = v;
    n++;
    if (entry[0] === 0n) invalidWritten = true;
    else {
      const used = ops.getUsed(entry);
      const none = new Array<bigint>(8).fill(0n);
      const safeInit = ops.getUpdateSafe ? ops.getUpdateSafe(entry, init) : none;
      const safeTarget = ops.getUpdateSafe ? ops.getUpdateSafe(entry, target) : none;
      expect(entryDiffers(entry, init, used, safeInit) && entryDiffers(entry, target, used, safeTarget)).toBe(
        false,
      );
    }
  }
  expect(invalidWritten).toBe(!hitless);
  expect(n).toBe(syncs);
  expect(entry).toEqual(target);
}

const ste = (a: Entry, b: Entry, syncs: number, hitless = true) =>
  expectTransition(steOps, a, b, syncs, hitless);
const cd = (a: Entry, b: Entry, syncs: number, hitless = true) =>
  expectTransition(cdOps, a, b, syncs, hitless);

describe('arm-smmu-v3 entry writer (Linux KUnit table)', () => {
  const abort = makeAbortSte();
  const bypass = makeBypassSte(smmu);

  it('used-bit masks match Linux for the test entries', () => {
    const hex = (e: Entry) =>
      steOps
        .getUsed(e)
        .slice(0, 4)
        .map((x) => `0x${x.toString(16)}`);
    expect(hex(abort)).toEqual(['0xf', '0x0', '0x0', '0x0']);
    expect(hex(bypass)).toEqual(['0xf', '0x300000000000', '0x0', '0x0']);
    expect(hex(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS))).toEqual([
      '0xf80fffffffffffff',
      '0xf80800ff',
      '0xffff',
      '0x0',
    ]);
    expect(hex(cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS))[1]).toBe('0x3000f80800ff');
    expect(hex(s2Ste(ATS))).toEqual(['0xf', '0x300032080000', '0x65fffff0000ffff', '0xffffffffffff0']);
    expect(hex(cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS | NESTED))).toEqual([
      '0xf80fffffffffffff',
      '0x3000fa0800ff',
      '0x65fffff0000ffff',
      '0xffffffffffff0',
    ]);
  });

  it('1 bypass_to_abort: 2 syncs, hitless', () => ste(bypass, abort, 2));
  it('2 abort_to_bypass: 2 syncs, hitless', () => ste(abort, bypass, 2));
  it('3 cdtable_to_abort', () => ste(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), abort, 2));
  it('4 abort_to_cdtable', () => ste(abort, cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 2));
  it('5 cdtable_to_bypass', () => ste(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), bypass, 3));
  it('6 bypass_to_cdtable', () => ste(bypass, cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 3));
  it('7 cdtable_s1dss_change (and back)', () => {
    const a = cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS);
    const b = cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS);
    ste(a, b, 1);
    ste(b, a, 1);
  });
  it('8 s1dssbypass_to_stebypass', () => ste(cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), bypass, 2));
  it('9 stebypass_to_s1dssbypass', () => ste(bypass, cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), 2));
  it('10 s2_to_abort', () => ste(s2Ste(ATS), abort, 2));
  it('11 abort_to_s2', () => ste(abort, s2Ste(ATS), 2));
  it('12 s2_to_bypass', () => ste(s2Ste(ATS), bypass, 2));
  it('13 bypass_to_s2', () => ste(bypass, s2Ste(ATS), 2));
  it('14 s1_to_s2', () => ste(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), s2Ste(ATS), 3));
  it('15 s2_to_s1', () => ste(s2Ste(ATS), cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 3));
  it('16 non_hitless: CD pointer and S1DSS both change', () =>
    ste(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), cdtableSte(S1DSS.BYPASS, 0x4b4b4b4b4b, ATS), 3, false));
  it('17 cd s1_clear (and back)', () => {
    cd(zeroCd(), s1Cd(1997), 2, false);
    cd(s1Cd(1997), zeroCd(), 2, false);
  });
  it('18 cd s1_change_asid (and back)', () => {
    cd(s1Cd(778), s1Cd(1997), 1);
    cd(s1Cd(1997), s1Cd(778), 1);
  });
  it('19 s1_to_s2_stall', () => ste(cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), s2Ste(STALL), 3));
  it('20 s2_to_s1_stall', () => ste(s2Ste(STALL), cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), 3));
  it('21 nested_s1dssbypass_to_s1bypass', () =>
    ste(cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS | NESTED), s2Ste(0), 3));
  it('22 nested_s1bypass_to_s1dssbypass', () =>
    ste(s2Ste(0), cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS | NESTED), 2));
  it('23 cd sva_clear (and back)', () => {
    cd(zeroCd(), svaCd(1997), 2, false);
    cd(svaCd(1997), zeroCd(), 2, false);
  });
  it('24 cd sva_release (and back)', () => {
    cd(svaCd(1997), svaReleaseCd(1997), 2);
    cd(svaReleaseCd(1997), svaCd(1997), 2);
  });

  it('without update-safe bits, the nested cases would break the entry (why get_update_safe exists)', () => {
    const noSafe: EntryOps = { getUsed: steOps.getUsed };
    const p = planWriteEntry(noSafe, cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS | NESTED), s2Ste(0));
    expect(p.path).toBe('breaking');
    expect(EATS.TRANS).toBe(1);
  });
});
