/**
 * Fuzz of the public API: random sequences of calls with arguments that fit or do not. Whatever
 * the call, the answer is a result (Linux's errno / DMA_MAPPING_ERROR for kernel calls) or a
 * LabError with a message, never another exception, never an unsettled machine.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boot, type IommuDomain, type Lab, LabError } from '../../src/index.ts';

const addr = fc.oneof(
  fc.constantFrom(0, 0x1000, 0xffff_ffff_f000, 2 ** 48, -1, 0.5, Number.NaN, 2 ** 53),
  fc.integer({ min: 0, max: 2 ** 40 }),
);
const len = fc.oneof(fc.constantFrom(0, 1, 4, 4096, 8192, -4, 2 ** 31), fc.integer({ min: 1, max: 20000 }));
const pasid = fc.option(fc.constantFrom(0, 1, 7, 255, -1, 1 << 20, 2 ** 32), { nil: undefined });

type Op = (lab: Lab, state: { domains: IommuDomain[]; iovas: number[] }) => Promise<unknown> | unknown;

const op: fc.Arbitrary<[string, Op]> = fc.oneof(
  fc
    .tuple(addr, len, pasid)
    .map(([a, n, p]): [string, Op] => [
      `read ${a} ${n} ${p}`,
      (lab) => lab.master('m').read(a, n, { pasid: p }),
    ]),
  fc
    .tuple(addr, len)
    .map(([a, n]): [string, Op] => [
      `write ${a} ${n}`,
      (lab) => lab.master('m').write(a, new Uint8Array(Math.max(0, Math.min(n, 9000)))),
    ]),
  fc
    .tuple(addr, len, pasid)
    .map(([a, n, p]): [string, Op] => [
      `pci read ${a} ${n}`,
      (lab) => lab.pci('pcie-testdev').read(a, n, { pasid: p }),
    ]),
  fc
    .tuple(
      fc.integer({ min: 0, max: 3 }),
      len,
      fc.constantFrom('to-device', 'from-device', 'bidirectional', 'none', 'sideways'),
    )
    .map(([o, n, dir]): [string, Op] => [
      `map ${o} ${n} ${dir}`,
      (lab, s) => {
        const iova = lab.dma.mapSingle(lab.master('m').device!, lab.allocPages(o), n, dir as 'to-device');
        if (iova !== -1) s.iovas.push(iova);
        return iova;
      },
    ]),
  fc
    .tuple(fc.nat(), len)
    .map(([i, n]): [string, Op] => [
      `unmap #${i} ${n}`,
      (lab, s) =>
        lab.dma.unmapSingle(
          lab.master('m').device!,
          s.iovas[i % Math.max(1, s.iovas.length)] ?? 0x1000,
          n,
          'bidirectional',
        ),
    ]),
  fc.constant<[string, Op]>([
    'domain',
    async (lab, s) => {
      const d = await lab.iommu.domainAllocPaging(lab.master('m').device!);
      if (typeof d !== 'number') s.domains.push(d);
    },
  ]),
  fc
    .tuple(fc.nat(), addr, addr, len)
    .map(([i, a, p, n]): [string, Op] => [
      `iommu map ${a} ${p} ${n}`,
      (lab, s) => (s.domains.length ? lab.iommu.map(s.domains[i % s.domains.length]!, a, p, n, 3) : 0),
    ]),
  fc.tuple(fc.nat(), fc.constantFrom('attach', 'detach', 'free', 'pasid')).map(([i, what]): [string, Op] => [
    `${what} #${i}`,
    (lab, s) => {
      const d = s.domains[i % Math.max(1, s.domains.length)];
      const dev = lab.master('m').device!;
      if (d === undefined) return 0;
      if (what === 'attach') return lab.iommu.attachDevice(d, dev);
      if (what === 'detach') return lab.iommu.detachDevice(d, dev);
      if (what === 'pasid') return lab.iommu.attachDevicePasid(d, dev, 3);
      return lab.iommu.domainFree(d);
    },
  ]),
  fc
    .tuple(fc.constantFrom('skip-tlbi', 'skip-cfgi', 'skip-atc-inv', 'skip-nothing'), fc.boolean())
    .map(([n, on]): [string, Op] => [
      `inject ${n} ${on}`,
      (lab) => (on ? lab.inject.enable(n as 'skip-tlbi') : lab.inject.disable(n as 'skip-tlbi')),
    ]),
  fc
    .tuple(fc.oneof(fc.constantFrom(0x200, 0x100, 8), fc.integer({ min: -1, max: 2 ** 33 })), addr)
    .map(([sid, a]): [string, Op] => [
      `views ${sid} ${a}`,
      (lab) => {
        const v = lab.smmu();
        v.ste(sid);
        v.walk(sid, a);
        v.tlb({ asid: sid });
      },
    ]),
  fc
    .tuple(fc.integer({ min: -2, max: 12 }))
    .map(([o]): [string, Op] => [`alloc ${o}`, (lab) => lab.allocPages(o)]),
  fc.tuple(addr).map(([ns]): [string, Op] => [`sleep ${ns}`, (lab) => lab.sleep(ns / 1000)]),
);

describe('public API fuzz', () => {
  it('random calls: results or LabErrors, nothing else', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const lab = await boot({ masters: [{ name: 'm', streamIds: [0x200], pasidBits: 8 }], trace: false });
        const state = { domains: [] as IommuDomain[], iovas: [] as number[] };
        for (const [what, f] of ops) {
          try {
            await f(lab, state);
          } catch (e) {
            if (!(e instanceof LabError))
              throw new Error(`${what}: ${e instanceof Error ? e.stack : String(e)}`);
            expect(e.message.length, what).toBeGreaterThan(10);
          }
        }
        const crashes = lab.bugs.filter((b) => b.kind === 'task-crash');
        expect(crashes.map((b) => b.message)).toEqual([]);
      }),
      { numRuns: 120, seed: 0x1ab },
    );
  });
});
