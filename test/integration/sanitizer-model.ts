/**
 * A random-interleaving model for the DMA-isolation sanitizer's property test: five masters
 * (three platform masters on the DMA API, two PCIe functions with PASIDs, one with ATS, on two
 * shared unmanaged domains), and operations that map, unmap and free, attach and detach the RID
 * and PASIDs, and DMA to addresses that are mapped now, were mapped once, or belong to someone
 * else. Run with the sanitizer in report mode: a correct driver gives no report, whatever the
 * order; a driver missing an invalidation or ordering step gives one for some order.
 */
import fc from 'fast-check';
import { boot, type InjectionName, IOMMU_READ, IOMMU_WRITE, type Lab } from '../../src/api/index.ts';
import type { IommuDomain } from '../../src/kernel/iommu/domain.ts';

export type Op =
  | { k: 'map'; m: number; order: number }
  | { k: 'unmap'; m: number; i: number }
  | { k: 'dma'; m: number; i: number; w: boolean }
  | { k: 'attach'; p: number; d: number }
  | { k: 'detach'; p: number }
  | { k: 'atsoff'; p: number }
  | { k: 'pattach'; p: number; s: number; d: number }
  | { k: 'pdetach'; p: number; s: number }
  | { k: 'dmap'; d: number }
  | { k: 'dunmap'; d: number; i: number }
  | { k: 'dclear'; d: number }
  | { k: 'dblock'; d: number }
  | { k: 'drenew'; d: number }
  | { k: 'pdma'; p: number; s: number; i: number; w: boolean };

const M = 3; // platform masters
const P = 2; // PCI functions (0: ATS, 1: no ATS)
const D = 2; // shared unmanaged domains
const S = 1; // PASIDs 1..S
const RW = IOMMU_READ | IOMMU_WRITE;
/** The RID is on the blocked domain (ATS off). */
const BLOCKED = -1;

/** Which address or mapping an operation takes: the most recently touched ones, mostly. */
const recent = fc.oneof(
  { arbitrary: fc.constant(0), weight: 3 },
  { arbitrary: fc.nat(1), weight: 2 },
  fc.nat(7),
);

/** A PCI function: mostly the one with ATS. */
const pci = fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, fc.nat(P - 1));

/** One random operation. */
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('map' as const), m: fc.nat(M - 1), order: fc.nat(1) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('unmap' as const), m: fc.nat(M - 1), i: recent }), weight: 2 },
  {
    arbitrary: fc.record({ k: fc.constant('dma' as const), m: fc.nat(M - 1), i: recent, w: fc.boolean() }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant('attach' as const), p: pci, d: fc.nat(D - 1) }), weight: 2 },
  { arbitrary: fc.record({ k: fc.constant('detach' as const), p: pci }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('atsoff' as const), p: pci }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant('pattach' as const),
      p: pci,
      s: fc.integer({ min: 1, max: S }),
      d: fc.nat(D - 1),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ k: fc.constant('pdetach' as const), p: pci, s: fc.integer({ min: 1, max: S }) }),
    weight: 1,
  },
  { arbitrary: fc.record({ k: fc.constant('dmap' as const), d: fc.nat(D - 1) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('dunmap' as const), d: fc.nat(D - 1), i: recent }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('dclear' as const), d: fc.nat(D - 1) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('dblock' as const), d: fc.nat(D - 1) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('drenew' as const), d: fc.nat(D - 1) }), weight: 2 },
  {
    arbitrary: fc.record({
      k: fc.constant('pdma' as const),
      p: pci,
      s: fc.integer({ min: 0, max: S }),
      i: recent,
      w: fc.boolean(),
    }),
    weight: 6,
  },
);

interface Mapping {
  iova: number;
  pa: number;
  size: number;
}

/** Run `ops` on a fresh lab (sanitizer in report mode, `inject` on from boot); returns the lab. */
export async function runOps(ops: readonly Op[], inject: InjectionName[] = []): Promise<Lab> {
  const lab = await boot({
    masters: Array.from({ length: M }, (_, i) => ({ name: `m${i}`, streamIds: [0x300 + i] })),
    pciFunctions: [
      { bdf: '00:03.0', name: 'p0', ats: true, pri: false, pasidBits: 4 },
      { bdf: '00:04.0', name: 'p1', ats: false, pri: false, pasidBits: 4 },
    ],
    sanitize: 'report',
    trace: process.env.TRACE === '1' ? undefined : false,
    inject,
  });
  await lab.run(async () => {
    const masters = Array.from({ length: M }, (_, i) => lab.master(`m${i}`));
    const pcis = Array.from({ length: P }, (_, i) => lab.pci(`p${i}`));
    const live: Mapping[][] = masters.map(() => []);
    const dead: number[][] = masters.map(() => []);
    const doms: IommuDomain[] = [];
    for (let d = 0; d < D; d++)
      doms.push((await lab.iommu.domainAllocPaging(pcis[0]!.device!)) as IommuDomain);
    const dlive: Mapping[][] = doms.map(() => []);
    const rid: Array<number | null> = pcis.map(() => null); // unmanaged domain on the RID
    const pas: Array<Map<number, number>> = pcis.map(() => new Map()); // PASID -> domain
    const ddead: number[][] = doms.map(() => []);
    const nextIova = doms.map((_, d) => 0x1000_0000 * (d + 1));
    const pick = <T>(xs: readonly T[], i: number): T | undefined =>
      xs.length === 0 ? undefined : xs[i % xs.length];
    // addresses by recency (mapped or unmapped last first): a DMA mostly goes where things just changed
    const mtouch: number[][] = masters.map(() => []);
    const dtouch: number[] = [];
    const touch = (xs: number[], iova: number) => {
      const k = xs.indexOf(iova);
      if (k >= 0) xs.splice(k, 1);
      xs.unshift(iova);
    };
    // the PCI functions start on the unmanaged domains (p0 on d0, p1 on d1), and p0's PASID 1
    // on d0 too (the sharing of issue 20's PASID bug)
    for (let p = 0; p < P; p++)
      if ((await lab.iommu.attachDevice(doms[p % D]!, pcis[p]!.device!)) === 0) rid[p] = p % D;
    if ((await lab.iommu.attachDevicePasid(doms[0]!, pcis[0]!.device!, 1)) === 0) pas[0]!.set(1, 0);
    /** Unmap (whole mappings) and free every page of domain `d` in [lo, hi). */
    const unmapRange = async (d: number, lo: number, hi: number, one: boolean) => {
      const gone = dlive[d]!.filter((x) => x.iova >= lo && x.iova < hi);
      if (gone.length === 0) return false;
      if (one) await lab.iommu.unmap(doms[d]!, lo, hi - lo);
      else for (const x of gone) await lab.iommu.unmap(doms[d]!, x.iova, x.size);
      dlive[d] = dlive[d]!.filter((x) => !gone.includes(x));
      for (const x of gone) {
        lab.freePages(x.pa);
        ddead[d]!.push(x.iova);
        touch(dtouch, x.iova);
      }
      return true;
    };
    for (const op of ops) {
      switch (op.k) {
        case 'map': {
          const pa = lab.allocPages(op.order, 'prop buffer');
          const size = 4096 << op.order;
          const iova = lab.dma.mapSingle(masters[op.m]!.device!, pa, size, 'bidirectional');
          if (iova === -1) lab.freePages(pa);
          else {
            live[op.m]!.unshift({ iova, pa, size });
            touch(mtouch[op.m]!, iova);
          }
          break;
        }
        case 'unmap': {
          const l = live[op.m]!;
          if (l.length === 0) break;
          const [x] = l.splice(op.i % l.length, 1);
          await lab.dma.unmapSingle(masters[op.m]!.device!, x!.iova, x!.size, 'bidirectional');
          lab.freePages(x!.pa);
          dead[op.m]!.push(x!.iova);
          touch(mtouch[op.m]!, x!.iova);
          break;
        }
        case 'dma': {
          // its own live or stale addresses, or another master's
          const pool = [...mtouch[op.m]!, ...live[(op.m + 1) % M]!.map((x) => x.iova)];
          const iova = pick(pool, op.i);
          if (iova === undefined) break;
          const mm = masters[op.m]!;
          if (op.w) await mm.write(iova, new Uint8Array(64).fill(op.i));
          else await mm.read(iova, 64);
          break;
        }
        case 'attach': {
          const dev = pcis[op.p]!.device!;
          const cur = rid[op.p];
          if (cur === op.d) break;
          if (cur === BLOCKED) {
            // from the blocked domain: replace (ATS is enabled again with a paging domain)
            const g = lab.iommu.groupOf(dev)!;
            if ((await lab.iommu.replaceGroupDomain(g, doms[op.d]!)) === 0) rid[op.p] = op.d;
            break;
          }
          if (cur !== null && cur !== undefined) await lab.iommu.detachDevice(doms[cur]!, dev);
          rid[op.p] = (await lab.iommu.attachDevice(doms[op.d]!, dev)) === 0 ? op.d : null;
          break;
        }
        case 'detach': {
          const cur = rid[op.p];
          if (cur === null || cur === undefined) break;
          const dev = pcis[op.p]!.device!;
          if (cur === BLOCKED) {
            const g = lab.iommu.groupOf(dev)!;
            if ((await lab.iommu.replaceGroupDomain(g, g.defaultDomain!)) === 0) rid[op.p] = null;
            break;
          }
          await lab.iommu.detachDevice(doms[cur]!, dev);
          rid[op.p] = null;
          break;
        }
        case 'atsoff': {
          // the RID to the blocked domain: the driver disables ATS at the endpoint (when no PASID
          // is attached; with PASIDs, untagged traffic is terminated and ATS stays on)
          const cur = rid[op.p];
          if (cur === BLOCKED) break;
          const dev = pcis[op.p]!.device!;
          if (cur !== null && cur !== undefined) {
            await lab.iommu.detachDevice(doms[cur]!, dev);
            rid[op.p] = null;
          }
          const g = lab.iommu.groupOf(dev)!;
          const blocked = g.ops.blockedDomain;
          if (blocked && (await lab.iommu.replaceGroupDomain(g, blocked)) === 0) rid[op.p] = BLOCKED;
          break;
        }
        case 'pattach': {
          const dev = pcis[op.p]!.device!;
          const cur = pas[op.p]!.get(op.s);
          if (cur === op.d) break;
          if (cur !== undefined) {
            await lab.iommu.detachDevicePasid(doms[cur]!, dev, op.s);
            pas[op.p]!.delete(op.s);
          }
          if ((await lab.iommu.attachDevicePasid(doms[op.d]!, dev, op.s)) === 0) pas[op.p]!.set(op.s, op.d);
          break;
        }
        case 'pdetach': {
          const cur = pas[op.p]!.get(op.s);
          if (cur === undefined) break;
          await lab.iommu.detachDevicePasid(doms[cur]!, pcis[op.p]!.device!, op.s);
          pas[op.p]!.delete(op.s);
          break;
        }
        case 'dmap': {
          const pa = lab.allocPages(0, 'prop page');
          const iova = nextIova[op.d]!;
          nextIova[op.d] = iova + 4096;
          if ((await lab.iommu.map(doms[op.d]!, iova, pa, 4096, RW)) === 0) {
            dlive[op.d]!.unshift({ iova, pa, size: 4096 });
            touch(dtouch, iova);
          } else lab.freePages(pa);
          break;
        }
        case 'dunmap': {
          const l = dlive[op.d]!;
          if (l.length === 0) break;
          const [x] = l.splice(op.i % l.length, 1);
          await lab.iommu.unmap(doms[op.d]!, x!.iova, x!.size);
          lab.freePages(x!.pa);
          ddead[op.d]!.push(x!.iova);
          touch(dtouch, x!.iova);
          break;
        }
        case 'dclear': {
          // unmap the domain's whole first 2 MiB at once: io-pgtable removes the level-3 table
          // (its walk flush, then its free); the pages are freed too
          const base = 0x1000_0000 * (op.d + 1);
          await unmapRange(op.d, base, base + 0x200000, true);
          break;
        }
        case 'dblock': {
          // a 2 MiB block over the last 2 MiB of 4K pages: io-pgtable replaces their level-3
          // table by the block (arm_lpae_init_pte: walk flush, then the table's free) and the
          // pages it held are no longer mapped; they are freed once iommu_map returned
          const base = Math.floor((nextIova[op.d]! - 1) / 0x200000) * 0x200000;
          if (base < 0x1000_0000 * (op.d + 1)) break;
          if (dlive[op.d]!.some((x) => x.iova === base && x.size > 4096)) break; // a block already
          const pa = lab.allocPages(9, 'prop block');
          if (pa < 0) break;
          nextIova[op.d] = base + 0x200000;
          if ((await lab.iommu.map(doms[op.d]!, base, pa, 0x200000, RW)) !== 0) {
            lab.freePages(pa);
            break;
          }
          const gone = dlive[op.d]!.filter((x) => x.iova >= base && x.iova < base + 0x200000);
          dlive[op.d] = dlive[op.d]!.filter((x) => !gone.includes(x));
          for (const x of gone) {
            lab.freePages(x.pa);
            ddead[op.d]!.push(x.iova);
            touch(dtouch, x.iova);
          }
          dlive[op.d]!.unshift({ iova: base, pa, size: 0x200000 });
          touch(dtouch, base);
          break;
        }
        case 'drenew': {
          // every user off the domain, its pages unmapped and freed, the domain freed, a new one
          const d = op.d;
          for (let p = 0; p < P; p++) {
            if (rid[p] === d) {
              await lab.iommu.detachDevice(doms[d]!, pcis[p]!.device!);
              rid[p] = null;
            }
            for (const [s2, dd] of pas[p]!) {
              if (dd !== d) continue;
              await lab.iommu.detachDevicePasid(doms[d]!, pcis[p]!.device!, s2);
              pas[p]!.delete(s2);
            }
          }
          await unmapRange(d, 0, Number.MAX_SAFE_INTEGER, false);
          await lab.iommu.domainFree(doms[d]!);
          doms[d] = (await lab.iommu.domainAllocPaging(pcis[0]!.device!)) as IommuDomain;
          break;
        }
        case 'pdma': {
          const pool = dtouch;
          const iova = pick(pool, op.i);
          if (iova === undefined) break;
          const f = pcis[op.p]!;
          const attrs = op.s === 0 ? {} : { pasid: op.s };
          if (op.w) await f.write(iova, new Uint8Array(64).fill(op.i), attrs);
          else await f.read(iova, 64, attrs);
          break;
        }
      }
    }
  });
  return lab;
}
