// Probe-deferral cost on a worst-order dependency chain: device i needs a clock from device i+1,
// which is declared (and therefore probed) after it. Linux-style "retry every deferred device on
// every bind" (deferStrategy 'retry-all') needs ~N²/2 probe attempts; the targeted strategy, which
// retries only the consumers of the supplier that just bound, needs ~2N.
//
// The naive strategy at 10,000 devices would take ~5·10^7 attempts; it is run with an attempt cap
// and reported as an extrapolation from its measured per-attempt cost and the exact quadratic count
// (the names say so).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { boardBootReport, bootBoard } from '../src/api/board-boot.ts';
import { DriverCore } from '../src/kernel/base/core.ts';
import type { Device } from '../src/kernel/base/device.ts';
import { type Driver, ProbeDefer, ProbeError } from '../src/kernel/base/driver.ts';
import { clkGet } from '../src/kernel/drivers/resources.ts';
import { parseFdt } from '../src/kernel/of/fdt.ts';
import { LINUX_IOMMU_POLICY } from '../src/kernel/of/of-iommu.ts';
import { createPlatformBus, ofPlatformPopulate } from '../src/kernel/of/of-platform.ts';
import { DeviceTree, DtNode, encodeCells, encodeStrings } from '../src/kernel/of/tree.ts';
import { Scheduler } from '../src/platform/scheduler.ts';

export type BenchCase = {
  name: string;
  run: () => Promise<Array<{ name: string; value: number; unit: string }>>;
};

/** N nodes; node i has `clocks = <&node(i+1)>`; the last one is the root of the chain. */
export function chainTree(n: number): DeviceTree {
  const root = new DtNode('');
  root.setProp('#address-cells', encodeCells([1]));
  root.setProp('#size-cells', encodeCells([1]));
  const compat = encodeStrings(['iommu-lab,bench-clock']);
  const zero = encodeCells([0]);
  for (let i = 0; i < n; i++) {
    const node = new DtNode(`dev@${i.toString(16)}`);
    node.setProp('compatible', compat);
    node.setProp('#clock-cells', zero);
    node.setProp('phandle', encodeCells([i + 1]));
    if (i + 1 < n) node.setProp('clocks', encodeCells([i + 2]));
    root.addChild(node);
  }
  return new DeviceTree(root);
}

const benchClockDriver: Driver = {
  name: 'bench-clock',
  bus: 'platform',
  ofMatch: ['iommu-lab,bench-clock'],
  probe(dev: Device, core: DriverCore) {
    if (dev.ofNode!.has('clocks')) {
      const c = clkGet(core, dev, 0);
      if (c instanceof ProbeDefer || c instanceof ProbeError) return c;
    }
    const clk = { name: dev.name, rateHz: 1, enabled: false };
    core.registerProvider('clock', dev.ofNode!, { get: () => clk }, dev);
    return 0;
  },
};

export interface ChainResult {
  attempts: number;
  bound: number;
  ms: number;
  capped: boolean;
}

/** Boots the chain; stops early (capped) once `maxAttempts` probe attempts were made. */
export async function bootChain(
  n: number,
  strategy: 'targeted' | 'retry-all',
  maxAttempts = Infinity,
): Promise<ChainResult> {
  const tree = chainTree(n);
  const core = new DriverCore({ timer: new Scheduler(), deferStrategy: strategy });
  core.tree = tree;
  core.registerBus(createPlatformBus(tree));
  let capped = false;
  const drv: Driver = {
    ...benchClockDriver,
    probe(dev, c) {
      if (c.stats.probeAttempts > maxAttempts) {
        capped = true;
        return new ProbeError(-4, 'bench cap');
      }
      return benchClockDriver.probe(dev, c);
    },
  };
  // Wall time is measured by the benchmark only, never used by the model.
  const t0 = performance.now();
  await core.registerDriver(drv);
  await ofPlatformPopulate(core, tree);
  await core.lateInitcall();
  await core.settled();
  const ms = performance.now() - t0;
  const bound = core.devices.filter((d) => d.state === 'bound').length;
  return { attempts: core.stats.probeAttempts, bound, ms, capped };
}

function check(r: ChainResult, n: number, label: string): void {
  if (!r.capped && r.bound !== n) throw new Error(`${label}: only ${r.bound}/${n} devices bound`);
}

export const benchmarks: BenchCase[] = [
  {
    name: 'boot.deferral',
    async run() {
      const out: Array<{ name: string; value: number; unit: string }> = [];
      for (const n of [1000, 10000]) {
        const r = await bootChain(n, 'targeted');
        check(r, n, `targeted ${n}`);
        out.push({ name: `boot.deferral.attempts.${n}`, value: r.attempts, unit: 'attempts' });
        out.push({ name: `boot.deferral.ms.${n}`, value: Math.round(r.ms * 10) / 10, unit: 'ms' });
      }
      const naive1k = await bootChain(1000, 'retry-all');
      check(naive1k, 1000, 'retry-all 1000');
      out.push({ name: 'boot.deferral.naive.attempts.1000', value: naive1k.attempts, unit: 'attempts' });
      out.push({ name: 'boot.deferral.naive.ms.1000', value: Math.round(naive1k.ms * 10) / 10, unit: 'ms' });
      // 10,000 with retry-all: run up to a cap, measure the cost per attempt, extrapolate to the
      // exact count, which for this chain is N(N+1)/2 probe attempts (checked at 1000).
      const exact = (n: number) => (n * (n + 1)) / 2;
      if (naive1k.attempts !== exact(1000)) {
        out.push({
          name: 'boot.deferral.naive.formula-mismatch.1000',
          value: naive1k.attempts - exact(1000),
          unit: 'attempts',
        });
      }
      const cap = 2_000_000;
      const part = await bootChain(10000, 'retry-all', cap);
      const perAttemptMs = part.ms / part.attempts;
      out.push({
        name: 'boot.deferral.naive.attempts.10000.extrapolated',
        value: exact(10000),
        unit: 'attempts (exact N(N+1)/2, not run)',
      });
      out.push({
        name: 'boot.deferral.naive.ms.10000.extrapolated',
        value: Math.round(perAttemptMs * exact(10000)),
        unit: `ms (measured ${part.attempts} attempts in ${Math.round(part.ms)} ms, capped at ${cap})`,
      });
      return out;
    },
  },
];

// boot.<board>: a real board from the corpus booted as `iommu-lab boot` does (IOMMU models, a DMA
// master model per master, generic client drivers, proof DMA for every master behind an IOMMU):
// virtual time of the last bind and of the end of probing, wall time (median of 5 boots), and the
// probe attempts. sdm845-db845c is the largest board (SMMUv2 + MMU-500); glymur-crd the largest
// with SMMUv3-translated masters.
const CORPUS = join(dirname(fileURLToPath(import.meta.url)), '../../shared/corpus/dtb');

async function bootCorpusBoard(name: string): Promise<Array<{ name: string; value: number; unit: string }>> {
  const file = join(CORPUS, `${name}.dtb`);
  if (!existsSync(file)) {
    console.error(`boot.${name}: ${file} not found; skipped`);
    return [];
  }
  const bytes = readFileSync(file);
  const walls: number[] = [];
  let last: Awaited<ReturnType<typeof bootBoard>> | null = null;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    last = await bootBoard(parseFdt(bytes), { policy: { ...LINUX_IOMMU_POLICY } });
    walls.push(performance.now() - t0);
  }
  const b = last!;
  const r = boardBootReport(b, name, null);
  const masters = r.devices.filter((d) => d.iommu !== null);
  const viaIommu = masters.filter((d) => d.dmaOps === 'iommu' && d.dmaCheck?.startsWith('ok')).length;
  walls.sort((a, c) => a - c);
  return [
    {
      name: `boot.${name}.wall.ms`,
      value: Math.round(walls[2]! * 10) / 10,
      unit: `ms (median of 5; ${Math.round(walls[0]!)}-${Math.round(walls[4]!)})`,
    },
    { name: `boot.${name}.virtual.last-bind.us`, value: (r.lastBindNs ?? 0) / 1e3, unit: 'us virtual' },
    {
      name: `boot.${name}.virtual.end.ms`,
      value: r.virtualTimeNs / 1e6,
      unit: 'ms virtual (probing over, proof DMAs done)',
    },
    {
      name: `boot.${name}.dma-check.virtual.us`,
      value: Math.round(b.dmaCheckNs / 100) / 10,
      unit: 'us virtual',
    },
    { name: `boot.${name}.masters`, value: masters.length, unit: 'masters' },
    {
      name: `boot.${name}.masters.iommu-ok`,
      value: viaIommu,
      unit: 'masters bound through the IOMMU, proof DMA ok',
    },
    {
      name: `boot.${name}.probe-attempts`,
      value: r.stats.probeAttempts,
      unit: `attempts (${r.devices.length} devices)`,
    },
    {
      name: `boot.${name}.probe-attempts.max`,
      value: Math.max(0, ...r.devices.map((d) => d.probeAttempts - (d.rejectedBy?.length ?? 0))),
      unit: 'attempts per device (max; not counting drivers that rejected the match)',
    },
  ];
}

benchmarks.push(
  { name: 'boot.sdm845-db845c', run: () => bootCorpusBoard('sdm845-db845c') },
  { name: 'boot.glymur-crd', run: () => bootCorpusBoard('glymur-crd') },
);
