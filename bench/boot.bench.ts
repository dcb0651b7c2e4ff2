// Probe-deferral cost on a worst-order dependency chain: device i needs a clock from device i+1,
// which is declared (and therefore probed) after it. Linux-style "retry every deferred device on
// every bind" (deferStrategy 'retry-all') needs ~N²/2 probe attempts; the targeted strategy, which
// retries only the consumers of the supplier that just bound, needs ~2N.
//
// The naive strategy at 10,000 devices would take ~5·10^7 attempts; it is run with an attempt cap
// and reported as an extrapolation from its measured per-attempt cost and the exact quadratic count
// (the names say so).

import { DriverCore } from '../src/kernel/base/core.ts';
import type { Device } from '../src/kernel/base/device.ts';
import { type Driver, ProbeDefer, ProbeError } from '../src/kernel/base/driver.ts';
import { clkGet } from '../src/kernel/drivers/resources.ts';
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
