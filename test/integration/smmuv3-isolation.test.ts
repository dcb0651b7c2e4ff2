/**
 * Randomized DMA isolation through the whole stack: random attach / detach / replace, map /
 * unmap (UNMANAGED domains through iommu_map/unmap, DMA domains through dma_map_single /
 * dma_unmap_single) and device DMA, on several masters of one SMMUv3 (stall and terminate
 * platform masters, one with two StreamIDs, two PCI functions).
 *
 * A reference model keeps what each domain maps at every moment and which domain each device
 * is attached to. Every DMA is checked against it: a DMA that completes must reach exactly the
 * physical page its current domain maps (identity: output = input), and a DMA to an IOVA its
 * domain does not map (or maps read-only, for a write) must not complete (fault, stall, abort).
 * A mapped IOVA must also work. Bounded runs, fixed seeds.
 *
 * The same checker run against a driver that forgets invalidations (inject.skipTlbi /
 * inject.skipCfgi) must find a violation: the test shows it would catch those bugs.
 *
 * Debugging knobs (defaults are the fixed values the suite runs with): ISO_SEED / ISO_RUNS for
 * the main property, ISO_TRACE=1 to print the trace of a failing run and the outcome counts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PORT_ABORT,
  PORT_BYPASS,
  PORT_OK,
  PORT_STALLED,
  PORT_STATUS_NAMES,
  PortResult,
} from '../../src/hw/smmuv3/port.ts';
import type { Device } from '../../src/kernel/base/device.ts';
import type { DmaDirection } from '../../src/kernel/iommu/dma/types.ts';
import {
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  type IommuDomain,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
} from '../../src/kernel/iommu/domain.ts';
import { EINVAL } from '../../src/kernel/iommu/errno.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { bootStack, dev, GPU_PATH, inTask, PCI_PATH, smmuInstance } from './stack-helpers.ts';

const PAGE = 0x1000;

/** The default platform plus two more platform masters (DMA engines) and one more PCI function. */
const ISOLATION_DTS = DEFAULT_PLATFORM_DTS.replace(
  '\t\tgpu@a000000 {',
  `\t\tdma-controller@a050000 {
\t\t\tcompatible = "iommu-lab,dma-engine";
\t\t\treg = <0x0 0x0a050000 0x0 0x10000>;
\t\t\tiommus = <&smmu 0x101>, <&smmu 0x104>;
\t\t\tdma-coherent;
\t\t};

\t\tdma-controller@a060000 {
\t\t\tcompatible = "iommu-lab,dma-engine";
\t\t\treg = <0x0 0x0a060000 0x0 0x10000>;
\t\t\tiommus = <&smmu 0x2345>;
\t\t\tdma-can-stall;
\t\t\tdma-coherent;
\t\t};

\t\tgpu@a000000 {`,
).replace(
  '\t\t\tethernet@2,0 {',
  `\t\t\tpcie-testdev@3,0 {
\t\t\t\tcompatible = "pci1b36,5";
\t\t\t\treg = <0x1800 0x0 0x0 0x0 0x0>;
\t\t\t};

\t\t\tethernet@2,0 {`,
);

const MASTERS = [
  GPU_PATH,
  '/soc/dma-controller@a050000',
  '/soc/dma-controller@a060000',
  PCI_PATH,
  '/soc/pcie@40000000/pcie-testdev@3,0',
];
const N_UNMANAGED = 3;
const POOL_PAGES = 32;
const UM_BASE = 0x1000_0000;
const UM_PAGES = 16;
/** Bytes below 4 GiB scanned for mappings drivers made at probe. */
const SEED_SCAN = 0x40_0000;

// ------------------------------------------------------------------ operations

type Op =
  | { op: 'attach'; dev: number; target: number } // 0..N_UNMANAGED-1 unmanaged, N: identity, N+1: blocked
  | { op: 'detach'; dev: number }
  | { op: 'map'; dom: number; page: number; n: number; phys: number; ro: boolean }
  | { op: 'unmap'; dom: number; page: number; n: number }
  | { op: 'dmaMap'; dev: number; phys: number; n: number; dir: number }
  | { op: 'dmaUnmap'; dev: number; which: number }
  | { op: 'dma'; dev: number; sid: number; addr: number; write: boolean };

const DIRS: DmaDirection[] = ['to-device', 'from-device', 'bidirectional'];
const nDev = MASTERS.length;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('attach' as const),
      dev: fc.nat(nDev - 1),
      target: fc.nat(N_UNMANAGED + 1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('detach' as const), dev: fc.nat(nDev - 1) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('map' as const),
      dom: fc.nat(N_UNMANAGED - 1),
      page: fc.nat(UM_PAGES - 1),
      n: fc.integer({ min: 1, max: 3 }),
      phys: fc.nat(POOL_PAGES - 4),
      ro: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('unmap' as const),
      dom: fc.nat(N_UNMANAGED - 1),
      page: fc.nat(UM_PAGES - 1),
      n: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('dmaMap' as const),
      dev: fc.nat(nDev - 1),
      phys: fc.nat(POOL_PAGES - 4),
      n: fc.integer({ min: 1, max: 3 }),
      dir: fc.nat(2),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('dmaUnmap' as const), dev: fc.nat(nDev - 1), which: fc.nat(7) }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('dma' as const),
      dev: fc.nat(nDev - 1),
      sid: fc.nat(1),
      addr: fc.nat(1000),
      write: fc.boolean(),
    }),
  },
);

// ------------------------------------------------------------------ reference model

interface Pte {
  pa: number;
  write: boolean;
}

/** What a domain maps, page by page (IOVA page -> physical page), as software asked. */
interface RefDomain {
  name: string;
  kind: 'paging' | 'identity' | 'blocked';
  map: Map<number, Pte>;
  domain: IommuDomain;
  /** Stall mode of a stage-1 domain, fixed by its first attach (null: not attached yet). */
  stall: boolean | null;
}

interface RefDevice {
  dev: Device;
  sids: number[];
  stall: boolean;
  dmaDomain: RefDomain;
  current: RefDomain;
  /** Live dma_map_single mappings: [iova, size, direction]. */
  dmaMaps: Array<[number, number, DmaDirection]>;
}

interface RunOptions {
  /** Outcome counters (by PORT_STATUS_NAMES), to show what a run exercised. */
  counts?: Record<string, number>;
  skipTlbi?: boolean;
  skipCfgi?: boolean;
  /** iommu.strict=0: DMA domains are DMA_FQ (unmaps invalidate through the flush queue). */
  lazy?: boolean;
  seed?: number;
}

/** Run one sequence; returns the first isolation violation (a description) or null. */
async function runSequence(ops: readonly Op[], o: RunOptions = {}): Promise<string | null> {
  const counts = o.counts ?? { ok: 0, bypass: 0, abort: 0, fault: 0, 'raz/wi': 0, stalled: 0 };
  const { m, board, k, log } = await bootStack({
    dts: ISOLATION_DTS,
    seed: o.seed ?? 7,
    trace: !!process.env.ISO_TRACE,
    kernel: { iommu: { strict: !o.lazy } },
  });
  const t0 = log.length;
  const smmuHw = board.smmu;
  const { smmu, iommu } = smmuInstance(k);
  const pool = m.pages.alloc(5, 'isolation pool'); // 32 pages
  const identity: RefDomain = {
    name: 'identity',
    kind: 'identity',
    map: new Map(),
    domain: iommu.identityDomain,
    stall: null,
  };
  const blocked: RefDomain = {
    name: 'blocked',
    kind: 'blocked',
    map: new Map(),
    domain: iommu.blockedDomain,
    stall: null,
  };
  const devs: RefDevice[] = MASTERS.map((p) => {
    const d = dev(k, p);
    const dom = k.iommu.getDomainForDev(d);
    if (dom === null) throw new Error(`${p} has no IOMMU domain`);
    if (dom.type !== (o.lazy ? IOMMU_DOMAIN_DMA_FQ : IOMMU_DOMAIN_DMA)) throw new Error(`${p}: ${dom}`);
    const ref: RefDomain = {
      name: `dma(${d.name})`,
      kind: 'paging',
      map: new Map(),
      domain: dom,
      stall: null,
    };
    // What drivers mapped at probe (the GPU's command ring, by dma_alloc_coherent) is part of
    // the domain from the start: the IOVA allocator hands out the top of the 32-bit space first.
    for (let a = 0x1_0000_0000 - SEED_SCAN; a < 0x1_0000_0000; a += PAGE) {
      const pa = iommuIovaToPhys(dom, a);
      if (pa !== 0) ref.map.set(a, { pa, write: true });
    }
    const master = iommu.masterOf(d)!;
    return {
      dev: d,
      sids: [...d.iommu!.ids],
      stall: master.stallEnabled,
      dmaDomain: ref,
      current: ref,
      dmaMaps: [],
    };
  });
  const unmanaged: RefDomain[] = [];
  for (let i = 0; i < N_UNMANAGED; i++) {
    const d = await inTask(m, () => k.iommu.domainAllocPaging(devs[0]!.dev));
    if (typeof d === 'number') throw new Error(`domainAllocPaging: ${d}`);
    unmanaged.push({ name: `unmanaged${i}`, kind: 'paging', map: new Map(), domain: d, stall: null });
  }
  smmu.inject.skipTlbi = o.skipTlbi ?? false;
  smmu.inject.skipCfgi = o.skipCfgi ?? false;
  /** Every IOVA / address ever used, so DMAs also probe stale and foreign addresses. */
  const seen: number[] = [pool, pool + 5 * PAGE, UM_BASE, 0];
  const r = new PortResult();
  const stamp = new Uint32Array(2);
  const stampBytes = new Uint8Array(stamp.buffer);
  const fail = (what: string) => {
    if (process.env.ISO_TRACE)
      console.log(
        log
          .slice(t0)
          .map((e) => `${e.time} ${e.component} ${e.name} ${e.message}`)
          .join('\n'),
      );
    return `${what} [after ${step} ops]`;
  };
  let step = 0;

  for (const op of ops) {
    step++;
    switch (op.op) {
      case 'attach': {
        const d = devs[op.dev]!;
        const target =
          op.target < N_UNMANAGED ? unmanaged[op.target]! : op.target === N_UNMANAGED ? identity : blocked;
        if (target === d.current) break;
        const group = k.iommu.groupOf(d.dev)!;
        const ret = await inTask(m, () =>
          d.current === d.dmaDomain
            ? k.iommu.attachDevice(target.domain, d.dev)
            : k.iommu.replaceGroupDomain(group, target.domain),
        );
        const refuse = target.kind === 'paging' && target.stall !== null && target.stall !== d.stall;
        const want = refuse ? -EINVAL : 0;
        if (ret !== want) return fail(`attach ${d.dev.name} to ${target.name}: ${ret}, expected ${want}`);
        if (ret === 0) {
          if (target.kind === 'paging') target.stall = d.stall;
          d.current = target;
        }
        if (k.iommu.getDomainForDev(d.dev) !== d.current.domain)
          return fail(
            `${d.dev.name}: core reports ${k.iommu.getDomainForDev(d.dev)}, expected ${d.current.name}`,
          );
        break;
      }
      case 'detach': {
        const d = devs[op.dev]!;
        if (d.current === d.dmaDomain) break;
        const cur = d.current;
        await inTask(m, () => k.iommu.detachDevice(cur.domain, d.dev));
        d.current = d.dmaDomain;
        break;
      }
      case 'map': {
        const dom = unmanaged[op.dom]!;
        const iova = UM_BASE + op.page * PAGE;
        let n = 0;
        while (n < op.n && op.page + n < UM_PAGES && !dom.map.has(iova + n * PAGE)) n++;
        const pa = pool + op.phys * PAGE;
        const prot = op.ro ? IOMMU_READ : IOMMU_READ | IOMMU_WRITE;
        if (n === 0) break; // mapping over a live leaf is a WARN in io-pgtable, as in Linux
        const ret = iommuMap(dom.domain, iova, pa, n * PAGE, prot);
        if (ret !== 0) return fail(`map ${dom.name} 0x${iova.toString(16)}: ${ret}`);
        for (let i = 0; i < n; i++) {
          dom.map.set(iova + i * PAGE, { pa: pa + i * PAGE, write: !op.ro });
          seen.push(iova + i * PAGE);
        }
        break;
      }
      case 'unmap': {
        const dom = unmanaged[op.dom]!;
        const iova = UM_BASE + op.page * PAGE;
        let n = 0;
        while (n < op.n && op.page + n < UM_PAGES && dom.map.has(iova + n * PAGE)) n++;
        if (n === 0) break; // unmapping nothing is a WARN in io-pgtable, as in Linux
        const ret = await inTask(m, () => iommuUnmap(dom.domain, iova, n * PAGE));
        if (ret !== n * PAGE)
          return fail(`unmap ${dom.name} 0x${iova.toString(16)}: ${ret}, expected ${n * PAGE}`);
        for (let i = 0; i < n; i++) dom.map.delete(iova + i * PAGE);
        break;
      }
      case 'dmaMap': {
        const d = devs[op.dev]!;
        const pa = pool + op.phys * PAGE;
        const dir = DIRS[op.dir]!;
        const size = op.n * PAGE;
        const iova = k.dma.mapSingle(d.dev, pa, size, dir);
        if (!(iova > 0) || iova % PAGE !== 0) return fail(`dma_map_single ${d.dev.name}: ${iova}`);
        for (let i = 0; i < op.n; i++) {
          const a = iova + i * PAGE;
          if (d.dmaDomain.map.has(a)) return fail(`dma_map_single returned a live IOVA 0x${a.toString(16)}`);
          // Arm LPAE has no write-only permission: from-device mappings are readable too
          d.dmaDomain.map.set(a, { pa: pa + i * PAGE, write: dir !== 'to-device' });
          seen.push(a);
        }
        d.dmaMaps.push([iova, size, dir]);
        break;
      }
      case 'dmaUnmap': {
        const d = devs[op.dev]!;
        if (d.dmaMaps.length === 0) break;
        const [iova, size, dir] = d.dmaMaps.splice(op.which % d.dmaMaps.length, 1)[0]!;
        await inTask(m, () => k.dma.unmapSingle(d.dev, iova, size, dir));
        for (let a = iova; a < iova + size; a += PAGE) d.dmaDomain.map.delete(a);
        break;
      }
      case 'dma': {
        // A burst of four accesses: mostly to what the current domain maps (so translations
        // are cached, and a later stale hit can show), otherwise to any address seen so far.
        const d = devs[op.dev]!;
        const cur = d.current;
        const live = [...cur.map.keys()];
        if (m.bugs.length > 0) return fail(`machine bugs: ${m.bugs.map((b) => b.message).join('; ')}`);
        for (let j = 0; j < 4; j++) {
          const pick = op.addr + j * 7919;
          const sid = d.sids[(op.sid + j) % d.sids.length]!;
          const base =
            live.length > 0 && pick % 3 !== 0 ? live[pick % live.length]! : seen[pick % seen.length]!;
          const addr = base + ((pick * 8) % PAGE);
          const write = j % 2 === 0 ? op.write : !op.write;
          const status = smmuHw.port.translate(sid, -1, addr, write ? 1 : 0, r);
          counts[PORT_STATUS_NAMES[status]!]++;
          const page = addr - (addr % PAGE);
          const where = `${d.dev.name} sid 0x${sid.toString(16)} ${write ? 'write' : 'read'} 0x${addr.toString(16)} in ${cur.name}`;
          let expectPa = -1;
          if (cur.kind === 'identity') {
            if (status !== PORT_BYPASS || r.oa !== addr)
              return fail(
                `${where}: ${PORT_STATUS_NAMES[status]} oa 0x${r.oa.toString(16)}, expected bypass`,
              );
            expectPa = addr;
          } else if (cur.kind === 'blocked') {
            if (status !== PORT_ABORT) return fail(`${where}: ${PORT_STATUS_NAMES[status]}, expected abort`);
          } else {
            const pte = cur.map.get(page);
            const allowed = pte !== undefined && (!write || pte.write);
            if (status === PORT_OK || status === PORT_BYPASS) {
              if (!allowed)
                return fail(
                  `${where}: reached PA 0x${r.oa.toString(16)} but the domain ${pte ? 'maps it read-only' : 'does not map it'}`,
                );
              expectPa = pte!.pa + (addr % PAGE);
              if (r.oa !== expectPa)
                return fail(
                  `${where}: reached PA 0x${r.oa.toString(16)}, domain maps 0x${pte!.pa.toString(16)}`,
                );
            } else if (allowed) {
              return fail(`${where}: ${PORT_STATUS_NAMES[status]}, but the domain maps it`);
            }
          }
          if (status === PORT_STALLED) {
            // a held transaction is reported and aborted by the driver (no fault handler)
            await m.sched.runUntilIdle();
          } else if (expectPa >= 0 && expectPa >= pool && expectPa < pool + POOL_PAGES * PAGE) {
            // the data path agrees: the bytes land in (or come from) the expected physical page
            const pa8 = expectPa - (expectPa % 8);
            const addr8 = addr - (addr % 8);
            stamp[0] = step;
            stamp[1] = j;
            if (write) {
              if (smmuHw.port.dmaWrite(sid, -1, addr8, stampBytes, 0, 8) !== 8)
                return fail(`${where}: dmaWrite did not complete`);
              if (m.mem.read32(pa8) !== step || m.mem.read32(pa8 + 4) !== j)
                return fail(`${where}: the written bytes are not at PA 0x${expectPa.toString(16)}`);
            } else {
              m.mem.write32(pa8, step);
              const got = new Uint8Array(8);
              if (smmuHw.port.dmaRead(sid, -1, addr8, got, 0, 8) !== 8)
                return fail(`${where}: dmaRead did not complete`);
              if (new DataView(got.buffer).getUint32(0, true) !== step)
                return fail(`${where}: the bytes read are not those at PA 0x${expectPa.toString(16)}`);
            }
          }
        }
        break;
      }
    }
  }
  await m.sched.runUntilIdle();
  for (const d of devs) {
    for (const sid of d.sids)
      if (smmuHw.upstream.stalledCount(sid) !== 0) return fail(`${d.dev.name}: transactions left stalled`);
  }
  const bugs = m.bugs.map((b) => b.message);
  if (bugs.length > 0) return fail(`machine bugs: ${bugs.join('; ')}`);
  return null;
}

const sequences = fc.array(opArb, { minLength: 20, maxLength: 80 });

describe('SMMUv3 stack: randomized DMA isolation', () => {
  it('boots the isolation platform: five masters (one with two StreamIDs), all translated', async () => {
    const { k } = await bootStack({ dts: ISOLATION_DTS, trace: false });
    const ids = MASTERS.map((p) => dev(k, p).iommu?.ids);
    expect(ids).toEqual([[0x100], [0x101, 0x104], [0x2345], [0x8], [0x18]]);
    for (const p of MASTERS) expect(dev(k, p).dma.ops).toBe('iommu');
    expect(smmuInstance(k).iommu.masterOf(dev(k, '/soc/dma-controller@a060000'))!.stallEnabled).toBe(true);
    expect(smmuInstance(k).iommu.masterOf(dev(k, '/soc/dma-controller@a050000'))!.stallEnabled).toBe(false);
  });

  it('no DMA ever reaches a page outside what its current domain maps', async () => {
    const counts = { ok: 0, bypass: 0, abort: 0, fault: 0, 'raz/wi': 0, stalled: 0 };
    await fc.assert(
      fc.asyncProperty(sequences, async (ops) => {
        expect(await runSequence(ops, { counts })).toBeNull();
      }),
      { seed: Number(process.env.ISO_SEED ?? 0x5eed), numRuns: Number(process.env.ISO_RUNS ?? 100) },
    );
    // the runs exercised every outcome the isolation argument depends on
    if (process.env.ISO_TRACE) console.log(counts);
    expect(counts.ok).toBeGreaterThan(200);
    expect(counts.fault).toBeGreaterThan(50);
    expect(counts.stalled).toBeGreaterThan(20);
    expect(counts.bypass).toBeGreaterThan(10);
    expect(counts.abort).toBeGreaterThan(10);
  });

  it('the same with lazy invalidation (DMA_FQ): the flush queue has flushed by the next DMA', async () => {
    // Each kernel operation here runs virtual time until idle, so the flush-queue timer has fired
    // (and the IOTLB is clean) before the device's next DMA: the property is the same.
    await fc.assert(
      fc.asyncProperty(sequences, async (ops) => {
        expect(await runSequence(ops, { lazy: true })).toBeNull();
      }),
      { seed: 0x1a2b, numRuns: 25 },
    );
  });

  it('a hand-written sequence: shared domain, replace, unmap, identity, blocked', async () => {
    const ops: Op[] = [
      { op: 'map', dom: 0, page: 0, n: 2, phys: 0, ro: false },
      { op: 'attach', dev: 1, target: 0 },
      { op: 'attach', dev: 3, target: 0 },
      { op: 'attach', dev: 0, target: 0 }, // the GPU stalls: refused (-EINVAL), nothing changes
      { op: 'dma', dev: 1, sid: 1, addr: 2, write: true },
      { op: 'dma', dev: 3, sid: 0, addr: 2, write: false },
      { op: 'unmap', dom: 0, page: 0, n: 1 },
      { op: 'dma', dev: 1, sid: 0, addr: 2, write: true },
      { op: 'dma', dev: 3, sid: 0, addr: 2, write: true },
      { op: 'map', dom: 1, page: 0, n: 1, phys: 3, ro: true },
      { op: 'attach', dev: 3, target: 1 },
      { op: 'dma', dev: 3, sid: 0, addr: 2, write: false },
      { op: 'dma', dev: 3, sid: 0, addr: 2, write: true },
      { op: 'attach', dev: 3, target: 3 },
      { op: 'dma', dev: 3, sid: 0, addr: 0, write: true },
      { op: 'attach', dev: 3, target: 4 },
      { op: 'dma', dev: 3, sid: 0, addr: 0, write: true },
      { op: 'detach', dev: 3 },
      { op: 'dmaMap', dev: 0, phys: 6, n: 2, dir: 2 },
      { op: 'dma', dev: 0, sid: 0, addr: 4, write: true },
      { op: 'dmaUnmap', dev: 0, which: 0 },
      { op: 'dma', dev: 0, sid: 0, addr: 4, write: true },
    ];
    expect(await runSequence(ops)).toBeNull();
  });

  it('the checker catches a driver that forgets TLB invalidations (inject.skipTlbi)', async () => {
    const out = await fc.check(
      fc.asyncProperty(sequences, async (ops) => (await runSequence(ops, { skipTlbi: true })) === null),
      { seed: 0x5eed, numRuns: 40, endOnFailure: true },
    );
    expect(out.failed).toBe(true);
    // a real isolation violation (shrunk), not a crash of the harness
    const violation = await runSequence(out.counterexample![0], { skipTlbi: true });
    expect(violation).toMatch(/^\S+ sid 0x[0-9a-f]+ (read|write) 0x[0-9a-f]+ in \S+: /);
    expect(await runSequence(out.counterexample![0])).toBeNull();
  });

  it('the checker catches a driver that forgets configuration invalidations (inject.skipCfgi)', async () => {
    const out = await fc.check(
      fc.asyncProperty(sequences, async (ops) => (await runSequence(ops, { skipCfgi: true })) === null),
      { seed: 0x5eed, numRuns: 40, endOnFailure: true },
    );
    expect(out.failed).toBe(true);
    // a real isolation violation (shrunk), not a crash of the harness
    const violation = await runSequence(out.counterexample![0], { skipCfgi: true });
    expect(violation).toMatch(/^\S+ sid 0x[0-9a-f]+ (read|write) 0x[0-9a-f]+ in \S+: /);
    expect(await runSequence(out.counterexample![0])).toBeNull();
  });
});
