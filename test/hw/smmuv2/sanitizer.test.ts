// The DMA-isolation sanitizer behind an SMMUv2: the walker and TLB are the shared engine's, so a
// translation cached by the SMMUv2 that outlives the page it points to is reported the same way.

import { describe, expect, it } from 'vitest';
import { StreamMaster } from '../../../src/hw/devices/platform-master.ts';
import { ACCESS_WRITE, PORT_OK } from '../../../src/hw/smmu-common/port.ts';
import { IommuIotlbGather } from '../../../src/kernel/iommu/iotlb-gather.ts';
import { enable, fixture, RW, s1Bank, streamToBank, table } from './helpers.ts';

const IOVA = 0x2000_0000;

describe('sanitizer on an SMMUv2', () => {
  it('a TLB entry that outlives its unmapped and freed page is a use-after-free', () => {
    const f = fixture();
    const san = f.m.enableSanitizer('report')!;
    const t = table(f.m, 'arm-64-lpae-s1', 48, 48);
    enable(f.r);
    s1Bank(f.r, 0, t, {});
    streamToBank(f.r, 0, 0, 0, 0);
    const page = f.m.pages.alloc(0, 'buffer');
    t.ops.mapPages(IOVA, page, 0x1000, 1, RW);
    const sm = new StreamMaster(f.smmu, 0, { name: 'dev0' });
    const w = { stallDone: () => {} };
    const buf = new Uint8Array(32);
    expect(sm.access(w, 0, IOVA, ACCESS_WRITE, buf, 0, 32)).toBe(PORT_OK);
    expect(san.reports).toEqual([]);
    // unmapped in the tables (no TLBIASID / TLBIVA written to the bank), the page freed
    t.ops.unmapPages(IOVA, 0x1000, 1, new IommuIotlbGather());
    f.m.pages.freePages(page);
    expect(sm.access(w, 0, IOVA + 0x40, ACCESS_WRITE, buf, 0, 32)).toBe(PORT_OK);
    expect(san.reports).toHaveLength(1);
    const r = san.reports[0]!;
    expect(r).toMatchObject({
      kind: 'use-after-free',
      device: 'dev0',
      pa: page + 0x40,
      iova: IOVA + 0x40,
      sid: 0,
      origin: 'TLB entry',
    });
    expect(r.text.split('\n')[0]).toBe(
      `BUG: DMA use-after-free: dev0 write of 32 bytes at PA 0x${(page + 0x40).toString(16)} (IOVA 0x20000040, StreamID 0x0)`,
    );
    expect(r.freeSite).toMatch(/sanitizer\.test\.ts/);
  });
});
