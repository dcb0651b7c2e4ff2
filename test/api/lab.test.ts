/**
 * The public API as a library user meets it (no scenario runner): booting with options, finding
 * devices, driving the kernel from plain top-level code (calls drive virtual time themselves),
 * tasks, limits, observation views, injection; and every bad call answered with a LabError that
 * says what is wrong, never a stray exception.
 */
import { describe, expect, it } from 'vitest';
import {
  boot,
  DMA_MAPPING_ERROR,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  type Lab,
  LabError,
} from '../../src/index.ts';

describe('boot', () => {
  it('boots the virt board with our own masters and PCI function, and finds devices by path and name', async () => {
    const lab = await boot({
      seed: 4,
      masters: [{ name: 'accel', streamIds: [0x200, 0x201], canStall: true, pasidBits: 8 }],
      pciFunctions: [{ bdf: '00:03.0', name: 'nic', ats: true }],
    });
    const accel = lab.master('accel');
    expect(accel.streamIds).toEqual([0x200, 0x201]);
    expect(accel.device?.state).toBe('bound');
    expect(lab.device('/soc/accel@200')).toBe(accel.device);
    const nic = lab.pci('nic');
    expect(lab.pci('00:03.0')).toBe(nic);
    expect(nic.device?.name).toBe('0000:00:03.0');
    expect(lab.device('0000:00:03.0')).toBe(nic.device);
    expect(nic.streamId).toBe(0x18);
    expect(lab.pci('pcie-testdev').bdf).toBe('00:01.0');
    expect(lab.devices().find((d) => d.name === '0000:00:03.0')?.dmaOps).toBe('iommu');
  });

  it.each([
    [{ seed: -1 }, /seed must be an integer/],
    [{ board: { dts: '/dts-v1/; / { a = <1 ; };' } }, /bad device tree: <dts>:1/],
    [{ board: { file: '/no/such/board.dts' } }, /cannot read \/no\/such\/board\.dts/],
    [{ board: 'rpi' as never }, /board must be "virt"/],
    [{ masters: [{ name: 'x y', streamIds: [1] }] }, /a master needs a name/],
    [{ masters: [{ name: 'm' }] }, /give streamIds/],
    [{ masters: [{ name: 'm', streamIds: [2 ** 33] }] }, /streamIds\[0\] must be an integer/],
    [
      {
        masters: [
          { name: 'm', streamIds: [1] },
          { name: 'm', streamIds: [2] },
        ],
      },
      /two masters have this name/,
    ],
    [{ masters: [{ name: 'm', streamIds: [1], iommu: '/soc/nope' }] }, /no modelled SMMUv3 at \/soc\/nope/],
    [{ pciFunctions: [{ bdf: '00:1.0.0' }] }, /bad PCI address/],
    [{ pciFunctions: [{ bdf: '00:01.0' }] }, /already has a function there/],
    [{ inject: ['skip-everything' as never] }, /unknown injection "skip-everything"/],
    [{ kernel: { iommuPolicy: 'maybe' as never } }, /iommuPolicy must be linux, strict or bypass/],
  ])('refuses %j with a LabError', async (opts, msg) => {
    await expect(boot(opts)).rejects.toThrow(LabError);
    await expect(boot(opts)).rejects.toThrow(msg);
  });
});

describe('driving the kernel from top-level code', () => {
  it('DMA API, IOMMU API and device DMA work without a task; time moves as they wait', async () => {
    const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200] }] });
    const m = lab.master('m');
    const dev = m.device!;
    const pa = lab.allocPages(0);
    lab.write(pa, new Uint8Array([5, 6, 7]));
    const iova = lab.dma.mapSingle(dev, pa, 4096, 'bidirectional');
    expect(iova).not.toBe(DMA_MAPPING_ERROR);
    const t0 = lab.now;
    expect([...(await m.read(iova, 3)).data!]).toEqual([5, 6, 7]);
    await lab.dma.unmapSingle(dev, iova, 4096, 'bidirectional');
    expect(lab.now).toBeGreaterThan(t0);
    expect((await m.read(iova, 3)).fault).toBe('F_TRANSLATION');
    // an unmanaged domain through the IOMMU API
    const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
    expect(await lab.iommu.map(d, 0x1000_0000, pa, 4096, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    expect(lab.iommu.iovaToPhys(d, 0x1000_0123)).toBe(pa + 0x123);
    expect((await m.write(0x1000_0000, new Uint8Array([9]))).ok).toBe(true);
    expect(lab.read(pa, 1)[0]).toBe(9);
    const walk = lab.smmu().walk(0x200, 0x1000_0000);
    expect(walk.pa).toBe(`0x${pa.toString(16)}`);
    expect(walk.steps.map((s) => s.type)).toEqual(['table', 'table', 'table', 'page']);
    expect(lab.smmu().ste(0x200).verdict).toBe('valid');
    expect(lab.smmu().cd(0x200).fields.V).toBe('0x1');
    expect(
      lab
        .smmu()
        .tlb({ vmid: 0 })
        .some((e) => e.pa === `0x${pa.toString(16)}`),
    ).toBe(true);
    expect(await lab.iommu.unmap(d, 0x1000_0000, 4096)).toBe(4096);
    await lab.iommu.detachDevice(d, dev);
    await lab.iommu.domainFree(d);
    expect(lab.bugs).toEqual([]);
  });

  it('tasks: run returns the value or rethrows; spawn runs concurrently; a task that can never finish is named', async () => {
    const lab = await boot();
    expect(await lab.run(async () => 41 + 1)).toBe(42);
    await expect(lab.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const order: string[] = [];
    await lab.run(async () => {
      const a = lab.spawn('a', async () => {
        await lab.sleep(2000);
        order.push('a');
      });
      const b = lab.spawn('b', async () => {
        await lab.sleep(1000);
        order.push('b');
      });
      await Promise.all([a.done, b.done]);
    });
    expect(order).toEqual(['b', 'a']);
    await expect(lab.run(() => new Promise(() => {}))).rejects.toThrow(/never finishes/);
    expect(await lab.waitFor(() => false, { timeoutNs: 5000 })).toBe(false);
  });

  it('a virtual-time budget stops a run that would go on for ever', async () => {
    const lab = await boot({ virtualTimeLimitNs: 20e9 });
    await expect(
      lab.run(async () => {
        for (;;) await lab.sleep(1e9);
      }),
    ).rejects.toThrow(/did not finish within the virtual-time limit of 20000000000 ns/);
  });
});

describe('bad calls get a LabError that says what is wrong', () => {
  it.each([
    ['an unknown device', (lab: Lab) => lab.device('/soc/nothing'), /no device "\/soc\/nothing" \(devices: /],
    ['an unknown master', (lab: Lab) => lab.master('ghost'), /no DMA master "ghost" \(masters: m\)/],
    [
      'a PCI function asked for as a master',
      (lab: Lab) => lab.master('pcie-testdev'),
      /it is a PCI function/,
    ],
    ['an unknown PCI function', (lab: Lab) => lab.pci('09:00.0'), /no PCI function "09:00.0"/],
    ['a DMA with a bad length', (lab: Lab) => lab.master('m').read(0x1000, 0), /bad length 0/],
    ['a DMA at a negative address', (lab: Lab) => lab.master('m').read(-4, 4), /bad bus address -4/],
    [
      'a DMA with a bad PASID',
      (lab: Lab) => lab.master('m').read(0x1000, 4, { pasid: 1 << 21 }),
      /bad PASID/,
    ],
    [
      'a DMA from an unknown StreamID',
      (lab: Lab) => lab.master('m').read(0x1000, 4, { streamId: 7 }),
      /no StreamID 7/,
    ],
    [
      'a write of a non-buffer',
      (lab: Lab) => lab.master('m').write(0x1000, 'hi' as never),
      /data must be a Uint8Array/,
    ],
    ['a huge page allocation', (lab: Lab) => lab.allocPages(40), /order must be 0\.\.10/],
    ['a sleep of NaN', (lab: Lab) => lab.sleep(Number.NaN), /ns must be a number/],
    ['an unknown injection', (lab: Lab) => lab.inject.enable('skip-it' as never), /unknown injection/],
    ['corrupting an odd address', (lab: Lab) => lab.inject.corrupt(0x8000_0003, 1n), /8-byte aligned/],
    ['an SMMU that is not there', (lab: Lab) => lab.smmu('/soc/iommu@0'), /no SMMUv3 at \/soc\/iommu@0/],
    [
      'the STE of a StreamID beyond the table',
      (lab: Lab) => lab.smmu().ste(2 ** 20),
      /no STE for StreamID 0x100000/,
    ],
    [
      'a walk of a bypassed stream',
      (lab: Lab) => lab.smmu().walk(0x999, 0),
      /no STE for StreamID 0x999: C_BAD_STREAMID/,
    ],
  ] as const)('%s', async (_what, call, msg) => {
    const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200] }] });
    let thrown: unknown;
    try {
      await (call as (l: typeof lab) => unknown)(lab);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(LabError);
    expect((thrown as Error).message).toMatch(msg);
  });

  it('kernel calls themselves answer as Linux does: an errno or DMA_MAPPING_ERROR, never an exception', async () => {
    const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200] }] });
    const dev = lab.master('m').device!;
    expect(lab.dma.mapSingle(dev, lab.allocPages(0), 0, 'to-device')).toBe(DMA_MAPPING_ERROR);
    const d = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.map(d, 0x1001, 0x8000_0000, 4096, IOMMU_READ)).toBe(-22);
    expect(await lab.iommu.attachDevice(d, dev)).toBe(0);
    const other = (await lab.iommu.domainAllocPaging(dev)) as IommuDomain;
    expect(await lab.iommu.attachDevice(other, dev)).toBe(-16);
  });
});

describe('fault injection', () => {
  it('skip-tlbi leaves the stale translation; corrupting a live STE shows on the next fetch', async () => {
    const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200] }] });
    const m = lab.master('m');
    const dev = m.device!;
    const pa = lab.allocPages(0);
    const iova = lab.dma.mapSingle(dev, pa, 4096, 'bidirectional');
    expect((await m.read(iova, 4)).ok).toBe(true);
    expect(lab.inject.active()).toEqual([]);
    await lab.inject.during('skip-tlbi', () => lab.dma.unmapSingle(dev, iova, 4096, 'bidirectional'));
    expect(lab.inject.active()).toEqual([]);
    expect((await m.read(iova, 4)).ok).toBe(true); // stale: still translated
    // a bit flip in STE word 0 (Config) after the STE is cached: invisible until refetched
    const ste = lab.smmu().ste(0x200);
    lab.inject.corrupt(Number(ste.address), 0b1110n);
    expect(lab.smmu().ste(0x200).config).not.toBe(ste.config);
  });

  it('skip-cmd-sync: unmap returns before the SMMU consumed its TLBI; the stale window closes later', async () => {
    // a slow command queue (10 us a command) makes the window wider than one device read
    const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200] }], smmu: { cmdLatencyNs: 10_000 } });
    const m = lab.master('m');
    const dev = m.device!;
    const pa = lab.allocPages(0);
    // without the injection: the device faults right after unmap returns
    let iova = lab.dma.mapSingle(dev, pa, 4096, 'bidirectional');
    expect((await m.read(iova, 4)).ok).toBe(true);
    await lab.dma.unmapSingle(dev, iova, 4096, 'bidirectional');
    expect((await m.read(iova, 4)).ok).toBe(false);
    const syncs = () => lab.smmu().stats().cmdq!.CMD_SYNC!;
    // with it: unmap issues no CMD_SYNC and returns at once; the TLBI is still in the queue
    iova = lab.dma.mapSingle(dev, pa, 4096, 'bidirectional');
    expect((await m.read(iova, 4)).ok).toBe(true);
    lab.inject.enable('skip-cmd-sync');
    const before = syncs();
    const t0 = lab.now;
    await lab.dma.unmapSingle(dev, iova, 4096, 'bidirectional');
    expect(lab.now).toBe(t0); // returned at once
    expect((await m.read(iova, 4)).ok).toBe(true); // stale
    await lab.advance(100_000);
    expect((await m.read(iova, 4)).ok).toBe(false); // the SMMU consumed the TLBI meanwhile
    expect(syncs()).toBe(before); // and no CMD_SYNC ever reached it
    lab.inject.disable('skip-cmd-sync');
  });

  it('delay-completion: a stalled transaction completes that much later', async () => {
    const completion = async (delay: number | null) => {
      const lab = await boot({ masters: [{ name: 'gpu', streamIds: [0x300], canStall: true }] });
      const gpu = lab.master('gpu');
      const dev = gpu.device!;
      expect(await lab.faults.enableIopf(dev)).toBe(0);
      if (delay !== null) lab.inject.enable('delay-completion', { ns: delay });
      expect(lab.faults.registerDeviceFaultHandler(dev, () => 1, null)).toBe(0); // INVALID: abort
      const t0 = lab.now;
      const r = await gpu.write(0x40_0000_0000, new Uint8Array(8));
      expect(r.ok).toBe(false);
      expect(r.stalls).toBe(1);
      return lab.now - t0;
    };
    const plain = await completion(null);
    const late = await completion(5_000_000);
    expect(late - plain).toBeGreaterThanOrEqual(5_000_000);
    expect(late - plain).toBeLessThan(5_500_000);
    const lab = await boot({});
    expect(() => lab.inject.enable('skip-tlbi', { ns: 5 })).toThrow(/takes no ns/);
    expect(() => lab.inject.enable('delay-completion', { ns: -1 })).toThrow(/positive whole number/);
    expect(() => lab.inject.enable('nope' as 'skip-tlbi')).toThrow(
      /unknown injection "nope" \(known: .*skip-cmd-sync, delay-completion, skip-atc-inv-rid, .*late-walk-flush, atc-inv-before-tlbi\)/,
    );
  });
});

describe('a StreamID two masters claim', () => {
  it('the SMMUv3 driver refuses the second, which then runs without an IOMMU', async () => {
    const lab = await boot({
      masters: [
        { name: 'a', streamIds: [0x10] },
        { name: 'b', streamIds: [0x10] },
      ],
    });
    expect(lab.dmesg().some((l) => /stream 16 already in tree from dev .*a@10/.test(l))).toBe(true);
    expect(lab.master('a').device!.dma.ops).toBe('iommu');
    expect(lab.master('b').device!.dma.ops).toBe('direct');
  });
});
