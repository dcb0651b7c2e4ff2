/**
 * The SMMUv2 / Adreno side of the public API: the adreno board booted from top-level code, its
 * GPU handle, SMMUv2 views, the domain fault handler; bad calls answered with a LabError; a
 * fast-check fuzz of the handle's calls with random arguments (results or LabErrors only).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  boot,
  EAGAIN,
  GPU_OP,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  LabError,
} from '../../src/index.ts';

describe('the adreno board through the API', () => {
  it('boots, finds both SMMUs and the GPU, and the GPU runs a job', async () => {
    const lab = await boot({ board: 'adreno', seed: 2 });
    const gpuSmmu = lab.smmuV2('/soc@0/iommu@5040000');
    const apps = lab.smmuV2('/soc@0/iommu@15000000');
    expect(gpuSmmu.config).toEqual({ contextBanks: 8, s2OnlyBanks: 0, streamMatchGroups: 48 });
    expect(apps.config).toEqual({ contextBanks: 64, s2OnlyBanks: 0, streamMatchGroups: 128 });
    expect(lab.smmuV2().path).toBe('/soc@0/iommu@5040000');
    const a = lab.adreno();
    expect(a.contextBank).toBe(0);
    expect(gpuSmmu.contextBank(0).inUse).toBe(true);
    expect(a.flow).toBe('v6.16');
    expect(await a.fenceWait()).toBe(true);
    expect(a.stats.faults).toBe(0);
  });

  it('a domain fault handler that maps the page and answers -EAGAIN lets the stalled GPU job finish', async () => {
    const lab = await boot({ board: 'adreno', seed: 3 });
    const a = lab.adreno();
    // take the GPU's domain over: our handler instead of the driver's
    const dom: IommuDomain = a.domain;
    const page = lab.machine.pages.alloc(0, 'test');
    let calls = 0;
    // the v6.16 handler runs in the IRQ thread: it may wait for the mapping
    lab.iommu.setFaultHandler(dom, async (d, _dev, iova) => {
      calls++;
      expect(iova).toBe(a.toIova(a.kernelVa(0x2000_0000)));
      return (await lab.iommu.map(d, iova - (iova % 4096), page, 4096, IOMMU_READ | IOMMU_WRITE)) === 0
        ? -EAGAIN
        : 0;
    });
    // a GPU address in the kernel's (TTBR1) half: the handler gets its sign-extended IOVA
    a.submit({ op: GPU_OP.FILL, a: a.kernelVa(0x2000_0000), value: 7, len: 4096 });
    expect(await a.fenceWait(100_000_000)).toBe(true);
    expect(calls).toBe(1);
    expect(lab.machine.mem.read32(page)).toBe(7);
    expect(lab.smmuV2().stats!.resumes).toBe(1);
  });

  it('refuses what it cannot do with a LabError', async () => {
    const virt = await boot({ seed: 1 });
    expect(() => virt.adreno()).toThrow(LabError);
    expect(() => virt.smmuV2()).toThrow(/no SMMUv1\/v2/);
    await expect(boot({ board: 'adreno', kernel: { armSmmuStallResume: 'later' as never } })).rejects.toThrow(
      /armSmmuStallResume must be handler or driver/,
    );
    const lab = await boot({ board: 'adreno' });
    expect(() => lab.smmuV2('/nope')).toThrow(LabError);
    expect(() => lab.smmuV2().contextBank(99)).toThrow(/out of range/);
    await expect(lab.adreno().blockDma('gpu' as never, 'read', 0, 4)).rejects.toThrow(LabError);
  });

  it('fuzz: random block DMA and context-bank reads give results or LabErrors, nothing else', async () => {
    const lab = await boot({ board: 'adreno', seed: 5 });
    const a = lab.adreno();
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              k: fc.constant('dma' as const),
              block: fc.constantFrom('display', 'video', 'gpu', ''),
              kind: fc.constantFrom('read', 'write'),
              iova: fc.oneof(fc.integer({ min: -5, max: 2 ** 40 }), fc.double()),
              len: fc.integer({ min: -1, max: 1 << 16 }),
            }),
            fc.record({ k: fc.constant('cb' as const), n: fc.integer({ min: -2, max: 70 }) }),
          ),
          { maxLength: 6 },
        ),
        async (calls) => {
          for (const c of calls) {
            try {
              if (c.k === 'dma') {
                const r = await a.blockDma(c.block as 'display', c.kind as 'read', c.iova, c.len);
                expect(typeof r).toBe('boolean');
              } else {
                const v = lab.smmuV2('/soc@0/iommu@15000000').contextBank(c.n);
                expect(v.index).toBe(c.n);
              }
            } catch (e) {
              expect(e).toBeInstanceOf(LabError);
            }
          }
        },
      ),
      { numRuns: 25, seed: 9 },
    );
    expect(lab.machine.bugs).toEqual([]);
  });
});
