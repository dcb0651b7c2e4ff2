// SMMUv2 register layouts and decoders: Linux's bit names and positions, and the bracketed
// decode of Linux's context fault print (arm_smmu_print_context_fault_info, v6.12+).

import { describe, expect, it } from 'vitest';
import {
  decodeCbar,
  decodeFsr,
  decodeFsynr0,
  decodeGfsr,
  decodeId0,
  decodeId2,
  decodeS2cr,
  decodeSctlr,
  decodeSmr,
  fsrFlagsLinux,
  fsynr0FlagsLinux,
  SMMUV2_DECODERS,
} from '../../../src/arch/smmuv2/decode.ts';
import {
  FSR,
  FSR_FAULT,
  FSR_IGN,
  getField,
  idSizeToBits,
  SCTLR,
  setField,
} from '../../../src/arch/smmuv2/regs.ts';
import { ipsToBits } from '../../../src/arch/vmsa/granule.ts';

describe('SMMUv2 FSR / FSYNR0 decode', () => {
  it('FSR 0x402 (the issue log line): Format=2, TF', () => {
    const d = decodeFsr(0x402);
    expect(d.flags).toEqual(['TF']);
    expect(d.fields.FORMAT).toBe(2);
    expect(fsrFlagsLinux(0x402)).toBe('Format=2 TF');
  });

  it('every FSR bit under its Linux name, MULTI and SS first as Linux prints them', () => {
    expect(decodeFsr(0xc00001fe).flags).toEqual([
      'MULTI',
      'SS',
      'UUT',
      'ASF',
      'TLBLKF',
      'TLBMCF',
      'EF',
      'PF',
      'AFF',
      'TF',
    ]);
    expect(fsrFlagsLinux(0xc00001fe)).toBe('MULTI SS Format=0 UUT ASF TLBLKF TLBMCF EF PF AFF TF');
    expect(fsrFlagsLinux(0x40000008)).toBe('SS Format=0 PF');
  });

  it("Linux's FSR_IGN and FSR_FAULT masks", () => {
    expect(FSR_IGN >>> 0).toBe(0xe4);
    expect(FSR_FAULT >>> 0).toBe(0xc00001fe);
  });

  it('FSYNR0: PLVL, WNR, PNU, IND, NSATTR, PTWF, AFR, S1CBNDX', () => {
    const v = 3 | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 10) | (7 << 16);
    const d = decodeFsynr0(v);
    expect(d.fields).toMatchObject({ PLVL: 3, S1CBNDX: 7 });
    expect(d.flags).toEqual(['PTWF', 'IND', 'PNU', 'WNR']);
    expect(fsynr0FlagsLinux(v)).toBe('S1CBNDX=7 PTWF IND PNU WNR PLVL=3');
    expect(fsynr0FlagsLinux(0x11)).toBe('S1CBNDX=0 WNR PLVL=1');
  });
});

describe('SMMUv2 other registers', () => {
  it('sGFSR: USF (the only bit Linux names) and the architected others', () => {
    expect(decodeGfsr(2).flags).toEqual(['USF']);
    expect(decodeGfsr(0x80000005).flags).toEqual(['MULTI', 'SMCF', 'ICF']);
  });

  it('SCTLR as Linux writes it for a stage-1 bank with stall and HUPCF (qcom_adreno_smmu_write_sctlr)', () => {
    const v = 0x67 | (1 << 12) | (1 << 7) | (1 << 8);
    expect(decodeSctlr(v).flags).toEqual(['ASIDPNE', 'HUPCF', 'CFCFG', 'CFIE', 'CFRE', 'AFE', 'TRE', 'M']);
    expect(getField(v, SCTLR.CFCFG)).toBe(1);
  });

  it('CBAR: a nested bank names its stage-2 bank in 15:8; others carry BPSHCFG / MEMATTR there', () => {
    expect(decodeCbar((3 << 16) | (5 << 8))).toMatchObject({
      fields: { TYPE: 3, CBNDX: 5 },
      names: { TYPE: 'S1_TRANS_S2_TRANS' },
    });
    const s1 = decodeCbar((1 << 16) | (3 << 8) | (0xf << 12));
    expect(s1.fields).toMatchObject({ TYPE: 1, S1_BPSHCFG: 3, S1_MEMATTR: 15 });
    expect(s1.fields.CBNDX).toBeUndefined();
    expect(decodeCbar(0x7).fields.VMID).toBe(7);
  });

  it('SMR: VALID | MASK | ID; with extended StreamIDs MASK takes bit 31', () => {
    const v = ((1 << 31) | (0x30 << 16) | 1) >>> 0;
    expect(decodeSmr(v)).toMatchObject({ flags: ['VALID'], fields: { ID: 1, MASK: 0x30 } });
    expect(decodeSmr(v, true)).toMatchObject({ flags: [], fields: { ID: 1, MASK: 0x8030 } });
  });

  it('S2CR: TYPE and PRIVCFG by name', () => {
    expect(decodeS2cr((2 << 16) | (1 << 24) | 9)).toMatchObject({
      fields: { CBNDX: 9, TYPE: 2, PRIVCFG: 1 },
      names: { TYPE: 'FAULT', PRIVCFG: 'DIPAN' },
    });
  });

  it('ID0 / ID2 and the size encodings (arm_smmu_id_size_to_bits)', () => {
    expect(decodeId0((1 << 30) | (1 << 29) | (1 << 27) | 0x80).flags).toEqual(['S1TS', 'S2TS', 'SMS']);
    expect(decodeId0(0x80).fields.NUMSMRG).toBe(0x80);
    expect([0, 1, 2, 3, 4, 5, 6, 15].map(idSizeToBits)).toEqual([32, 36, 40, 42, 44, 48, 48, 48]);
    expect(decodeId2(0x5555).names).toEqual({ IAS: '48-bit', OAS: '48-bit', UBS: '48-bit' });
    expect([0, 5, 6].map(ipsToBits)).toEqual([32, 48, 52]); // TCR2.PASIZE / VTCR.PS
  });

  it('setField / getField round trip on every FSR field', () => {
    for (const fl of Object.values(FSR)) {
      const max = (1 << fl.width) - 1;
      expect(getField(setField(0, fl, max), fl)).toBe(max);
      expect(getField(setField(0xffffffff, fl, 0), fl)).toBe(0);
    }
  });

  it('decoders by register name for `decode REG VALUE`', () => {
    expect(SMMUV2_DECODERS.fsr!(0x2).flags).toEqual(['TF']);
    expect(SMMUV2_DECODERS.fsynr0!(0x10).flags).toEqual(['WNR']);
    expect(Object.keys(SMMUV2_DECODERS)).toContain('s2cr');
  });
});
