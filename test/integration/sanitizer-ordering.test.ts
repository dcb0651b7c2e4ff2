/**
 * The order of an unmap's invalidations, under the DMA-isolation sanitizer: Linux's arm-smmu-v3
 * invalidates the endpoints' ATCs only after the TLBI has completed (TLBI + CMD_SYNC, then
 * ATC_INV + CMD_SYNC). With the order reversed (the atc-inv-before-tlbi mutation), an ATS
 * endpoint that keeps reading while the unmap runs sends a translation request between the
 * ATC_INV and the TLBI, gets the stale translation from the SMMU's TLB and refills its ATC with
 * it; nothing invalidates that entry afterwards, so once the page is freed and reused the
 * endpoint reads someone else's memory. With the order as Linux has it the same interleaving
 * gives nothing to report.
 */
import { describe, expect, it } from 'vitest';
import { boot, IOMMU_READ, IOMMU_WRITE, type Lab } from '../../src/api/index.ts';
import type { IommuDomain } from '../../src/kernel/iommu/domain.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const IOVA = 0x40000;
/** A slow command queue: each command takes 2 µs, so the ATC_INV–TLBI window is wide. */
const CMD_NS = 2000;
/** The endpoint reads the IOVA every this many ns while the unmap runs. */
const PERIOD_NS = 300;

interface Run {
  lab: Lab;
  page: number;
  /** Reads the endpoint completed while the unmap ran, by outcome. */
  okDuring: number;
  failedDuring: number;
  /** ATC entries for IOVA left after the unmap returned. */
  atcAfter: number;
  /** The endpoint's read of the reused page. */
  lastOk: boolean;
  translationRequests: number;
}

async function unmapUnderTraffic(mutated: boolean): Promise<Run> {
  const lab = await boot({
    pciFunctions: [{ bdf: '00:03.0', name: 'ep', ats: true }],
    smmu: { cmdLatencyNs: CMD_NS },
    sanitize: 'report',
  });
  const ep = lab.pci('ep');
  const dev = ep.device!;
  expect(ep.atsEnabled).toBe(true);
  const page = lab.allocPages(0, 'buffer');
  const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
  expect(await lab.iommu.map(d, IOVA, page, 4096, RW)).toBe(0);
  expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
  // the endpoint has used the mapping: its ATC and the SMMU's TLB hold the translation
  expect((await ep.read(IOVA, 64)).ok).toBe(true);
  expect(ep.atc().some((e) => e.iova === IOVA)).toBe(true);
  if (mutated) lab.inject.enable('atc-inv-before-tlbi');
  let stop = false;
  let okDuring = 0;
  let failedDuring = 0;
  const requests0 = ep.stats().translationRequests!;
  const out = await lab.run(async () => {
    const reader = lab.spawn('endpoint', async () => {
      while (!stop) {
        if ((await ep.read(IOVA, 64)).ok) okDuring++;
        else failedDuring++;
        await lab.sleep(PERIOD_NS);
      }
    });
    await lab.iommu.unmap(d, IOVA, 4096);
    stop = true;
    await reader.wait();
    return ep.atc().filter((e) => e.iova === IOVA).length;
  });
  if (mutated) lab.inject.disable('atc-inv-before-tlbi');
  const translationRequests = ep.stats().translationRequests! - requests0;
  lab.freePages(page);
  expect(lab.allocPages(0, 'reused')).toBe(page);
  const last = await ep.read(IOVA + 0x40, 64);
  return { lab, page, okDuring, failedDuring, atcAfter: out, lastOk: last.ok, translationRequests };
}

describe('sanitizer: invalidation order on unmap (ATC_INV after the TLBI)', () => {
  it('atc-inv-before-tlbi: the endpoint refills its ATC between the ATC_INV and the TLBI; a use-after-free of the reused page is reported', async () => {
    const r = await unmapUnderTraffic(true);
    const dev = r.lab.pci('ep');
    // the endpoint missed its ATC after the early ATC_INV, asked the SMMU, and got the stale
    // translation from its TLB: the ATC holds it after the unmap returned
    expect(r.translationRequests).toBeGreaterThan(0);
    expect(r.atcAfter).toBe(1);
    expect(r.lastOk).toBe(true);
    const reps = r.lab.sanitizer!.reports;
    expect(reps.map((x) => x.text)).toHaveLength(1);
    const rep = reps[0]!;
    expect(rep).toMatchObject({
      kind: 'use-after-free',
      device: dev.device!.name,
      pa: r.page + 0x40,
      iova: IOVA + 0x40,
      sid: dev.streamId,
      ssid: -1,
      origin: 'ATC entry',
    });
    expect(rep.text.split('\n')[0]).toBe(
      `BUG: DMA use-after-free: ${dev.device!.name} read of 64 bytes at PA 0x${(r.page + 0x40).toString(16)} (IOVA 0x${(IOVA + 0x40).toString(16)}, StreamID 0x${dev.streamId.toString(16)})`,
    );
    // the ATC entry was filled during the unmap, after the ATC_INV, before the TLBI
    const m =
      /^the ATC_INV at t=(\d+) ns came before the TLBI at t=(\d+) ns that removed the SMMU's TLB entry: the endpoint refilled its ATC at t=(\d+) ns from the stale TLB entry, after the unmap at t=(\d+) ns \(the ATC_INV must follow the completed TLBI\)$/.exec(
        rep.missing,
      );
    expect(m, rep.text).not.toBeNull();
    const [inv, tlbi, fill, unmap] = [Number(m![1]), Number(m![2]), Number(m![3]), Number(m![4])];
    expect(fill).toBe(rep.fillTime);
    expect(unmap).toBeLessThan(inv);
    expect(inv).toBeLessThan(fill);
    expect(fill).toBeLessThan(tlbi);
    expect(rep.freeSite).toMatch(/Lab\.freePages/);
  });

  it('the same interleaving with the order as Linux has it (TLBI, then ATC_INV) reports nothing', async () => {
    const r = await unmapUnderTraffic(false);
    // traffic did run through the window: reads succeeded before the invalidations, failed after
    expect(r.okDuring).toBeGreaterThan(0);
    expect(r.failedDuring).toBeGreaterThan(0);
    expect(r.atcAfter).toBe(0);
    expect(r.lastOk).toBe(false);
    expect(r.lab.sanitizer!.reports.map((x) => x.text)).toEqual([]);
    expect(r.lab.bugs).toEqual([]);
  });
});
