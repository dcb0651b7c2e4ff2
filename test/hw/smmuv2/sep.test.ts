// TCR2.SEP: an AArch64 stage-1 bank sign-extends a device's input address from the SEP bit
// (UPSTREAM: the top bit of the 49-bit upstream bus, bit 48), so a device that issues an
// address with that bit set reaches the TTBR1 half; an SMMUv1 (no TCR2) takes addresses as
// they are. The bank here splits its tables: TTBR1 holds the table, TTBR0 is disabled (EPD0).

import { describe, expect, it } from 'vitest';
import { CB } from '../../../src/arch/smmuv2/regs.ts';
import { ACCESS_READ, PORT_FAULT, PORT_OK, PortResult } from '../../../src/hw/smmu-common/port.ts';
import { enable, fixture, RW, SCTLR_LINUX_S1, s1Bank, streamToBank, table } from './helpers.ts';

const out = new PortResult();
const SEP_UPSTREAM = 7;

/** A stage-1 bank 0 whose table is in TTBR1 (T1SZ 16, 4K in TG1), TTBR0 disabled, TCR2.SEP = `sep`. */
function ttbr1Bank(sep: number) {
  const f = fixture();
  // a 48-bit table indexes by the address's low 48 bits, as a TTBR1 table with T1SZ 16 does:
  // the table's offset x stands for the upper-half address 2^64 - 2^48 + x
  const t1 = table(f.m, 'arm-64-lpae-s1', 48, 48);
  const c = t1.cfg.armLpaeS1Cfg!;
  const r = f.r;
  r.setGr1(0x800, 1); // CBA2R(0).VA64
  r.setGr1(0, (1 << 16) | (3 << 8) | (0xf << 12)); // CBAR(0): S1_TRANS_S2_BYPASS
  r.setCb(0, CB.TCR2, c.tcr.ips | (sep << 15) | (1 << 4));
  // EPD0 | T1SZ 16 | TG1 4K (2) | SH1/ORGN1/IRGN1 from the table's cfg
  const tcr = (1 << 7) | (16 << 16) | (2 << 30) | (c.tcr.sh << 28) | (c.tcr.orgn << 26) | (c.tcr.irgn << 24);
  r.setCb(0, CB.TCR, tcr >>> 0);
  r.setCb64(0, CB.TTBR0, 0, 0);
  r.setCb64(0, CB.TTBR1, c.ttbr, Math.floor(c.ttbr / 2 ** 32));
  r.setCb(0, CB.MAIR0, c.mair);
  r.setCb(0, CB.MAIR1, Math.floor(c.mair / 2 ** 32));
  r.setCb(0, CB.SCTLR, SCTLR_LINUX_S1);
  streamToBank(r, 0, 1, 0, 0);
  enable(r);
  return { ...f, ops: t1.ops };
}

function tableTtbr1(fx: ReturnType<typeof ttbr1Bank>) {
  return fx.ops;
}

describe('SMMUv2 TCR2.SEP', () => {
  it('UPSTREAM: a 49-bit address with bit 48 set walks TTBR1; FAR holds the sign-extended address', () => {
    const fx = ttbr1Bank(SEP_UPSTREAM);
    // offset 0x5000: the upper-half address 0xffff0000_00005000
    expect(tableTtbr1(fx).mapPages(0x5000, 0x8000_0000, 0x1000, 1, RW)).toBe(0x1000);
    expect(fx.smmu.port.translate(1, -1, 2 ** 48 + 0x5010, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(0x8000_0010);
    // unmapped in the TTBR1 half: FAR = 0xffff0000_00006000
    expect(fx.smmu.port.translate(1, -1, 2 ** 48 + 0x6000, ACCESS_READ, out)).toBe(PORT_FAULT);
    expect(fx.r.cb(0, CB.FAR)).toBe(0x6000);
    expect(fx.r.cb(0, CB.FAR + 4)).toBe(0xffff_0000);
  });

  it('without bit 48 the address is a TTBR0 one (disabled here: a fault), and wider addresses are not extended', () => {
    const fx = ttbr1Bank(SEP_UPSTREAM);
    tableTtbr1(fx).mapPages(0x5000, 0x8000_0000, 0x1000, 1, RW);
    expect(fx.smmu.port.translate(1, -1, 0x5000, ACCESS_READ, out)).toBe(PORT_FAULT);
    fx.r.setCb(0, CB.FSR, fx.r.cb(0, CB.FSR));
    expect(fx.smmu.port.translate(1, -1, 2 ** 50 + 2 ** 48 + 0x5000, ACCESS_READ, out)).toBe(PORT_FAULT);
  });

  it('SEP 5 (bit 47): an address with bit 47 set is sign-extended from there', () => {
    const fx = ttbr1Bank(5);
    // T1SZ 16: the TTBR1 half is [2^64 - 2^48, 2^64); bit 47 extended covers its top half
    tableTtbr1(fx).mapPages(2 ** 47 + 0x5000, 0x8000_0000, 0x1000, 1, RW);
    expect(fx.smmu.port.translate(1, -1, 2 ** 47 + 0x5000, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(0x8000_0000);
  });

  it('an SMMUv1 (MMU-401 AArch64 context, no TCR2) does not sign-extend: bit 31 stays a TTBR0 address', () => {
    const f = fixture({ compatible: 'arm,mmu-401' });
    const t = table(f.m, 'arm-64-lpae-s1', 40, 40);
    s1Bank(f.r, 0, t);
    streamToBank(f.r, 0, 1, 0, 0);
    enable(f.r);
    t.ops.mapPages(0xffff_f000, 0x8000_0000, 0x1000, 1, RW);
    expect(f.smmu.port.translate(1, -1, 0xffff_f008, ACCESS_READ, out)).toBe(PORT_OK);
    expect(out.oa).toBe(0x8000_0008);
  });
});
