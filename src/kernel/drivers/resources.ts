// Consumer-side lookups of firmware-described resources (clk_get, dev_pm_domain_attach, ...).
// A missing provider answers ProbeDefer naming the provider node, so the core retries the consumer
// exactly when that provider registers.

import type { DriverCore } from '../base/core.ts';
import type { Device } from '../base/device.ts';
import { ProbeDefer, ProbeError } from '../base/driver.ts';
import { EINVAL, ENOENT } from '../base/errno.ts';
import { parsePhandleList } from '../of/tree.ts';

export interface Clk {
  readonly name: string;
  readonly rateHz: number;
  enabled: boolean;
}

export interface ClockProvider {
  /** of_clk_get_from_provider(): the clock for these specifier cells, or null. */
  get(args: readonly number[]): Clk | null;
}

export interface PowerDomain {
  readonly name: string;
  on: boolean;
}

export interface PowerDomainProvider {
  get(args: readonly number[]): PowerDomain | null;
}

type Lookup<T> = T | ProbeDefer | ProbeError;

function lookup<T>(
  core: DriverCore,
  dev: Device,
  prop: string,
  cells: string,
  kind: string,
  index: number,
  get: (p: { get(args: readonly number[]): T | null }, args: readonly number[]) => T | null,
): Lookup<T> {
  const node = dev.ofNode;
  if (!node || !core.tree) return new ProbeError(-ENOENT, `${dev.name}: no firmware node for ${prop}`);
  const r = parsePhandleList(core.tree, node, prop, cells);
  if (!r.ok) return new ProbeError(-EINVAL, `${node.path}: ${r.error}`);
  const e = r.entries[index];
  if (!e) return new ProbeError(-ENOENT, `${node.path}: no ${prop} entry ${index}`);
  const provider = core.getProvider<{ get(args: readonly number[]): T | null }>(kind, e.node);
  if (!provider) return new ProbeDefer(`${kind} provider ${e.node.path} not registered`, e.node);
  const v = get(provider, e.args);
  if (!v) return new ProbeError(-EINVAL, `${e.node.path}: bad ${kind} specifier <${e.args.join(' ')}>`);
  return v;
}

/** clk_get(dev, index) via `clocks`. */
export function clkGet(core: DriverCore, dev: Device, index = 0): Lookup<Clk> {
  return lookup<Clk>(core, dev, 'clocks', '#clock-cells', 'clock', index, (p, a) => p.get(a));
}

/** Gets and enables every clock in `clocks`. Returns the first failure, or the clocks. */
export function clkBulkGetEnable(core: DriverCore, dev: Device): Clk[] | ProbeDefer | ProbeError {
  const n =
    core.tree && dev.ofNode
      ? parsePhandleList(core.tree, dev.ofNode, 'clocks', '#clock-cells').entries.length
      : 0;
  const out: Clk[] = [];
  for (let i = 0; i < n; i++) {
    const c = clkGet(core, dev, i);
    if (c instanceof ProbeDefer || c instanceof ProbeError) return c;
    c.enabled = true;
    out.push(c);
  }
  return out;
}

/** dev_pm_domain_attach(): power on every domain in `power-domains`. */
export function pmDomainAttach(core: DriverCore, dev: Device): PowerDomain[] | ProbeDefer | ProbeError {
  const n =
    core.tree && dev.ofNode
      ? parsePhandleList(core.tree, dev.ofNode, 'power-domains', '#power-domain-cells').entries.length
      : 0;
  const out: PowerDomain[] = [];
  for (let i = 0; i < n; i++) {
    const d = lookup<PowerDomain>(
      core,
      dev,
      'power-domains',
      '#power-domain-cells',
      'power-domain',
      i,
      (p, a) => p.get(a),
    );
    if (d instanceof ProbeDefer || d instanceof ProbeError) return d;
    d.on = true;
    out.push(d);
  }
  return out;
}

/** Convenience for probes: clocks then power domains; returns null when all are there. */
export function getClocksAndPower(core: DriverCore, dev: Device): ProbeDefer | ProbeError | null {
  const c = clkBulkGetEnable(core, dev);
  if (c instanceof ProbeDefer || c instanceof ProbeError) return c;
  const p = pmDomainAttach(core, dev);
  if (p instanceof ProbeDefer || p instanceof ProbeError) return p;
  return null;
}
