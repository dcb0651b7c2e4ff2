// struct device_driver and struct bus_type, and the three outcomes of a probe.

import type { DriverCore } from './core.ts';
import type { Device } from './device.ts';

/**
 * -EPROBE_DEFER with a reason. Return (or throw) it from probe() when a resource is not there yet.
 * `waitFor` names the supplier — a device or a firmware node (provider) — whose arrival should
 * trigger the retry; without it the device is retried whenever anything binds, as in Linux.
 */
export class ProbeDefer {
  readonly errno = -517;
  constructor(
    readonly reason: string,
    readonly waitFor: object | null = null,
  ) {}
}

/** A probe failure with an explanation (a bare -errno works too). */
export class ProbeError {
  constructor(
    /** Negative errno. */
    readonly errno: number,
    readonly reason: string,
  ) {}
}

/** 0 (bound), -errno or a ProbeError (failed), or a ProbeDefer. */
export type ProbeResult = number | ProbeDefer | ProbeError;

export interface PciId {
  vendor: number;
  device: number;
}

export interface Driver {
  readonly name: string;
  /** Bus this driver registers on ('platform' or 'pci'). */
  readonly bus: string;
  /** of_match_table: compatible strings; `*` matches any run of characters ("qcom,*-smmu-500"). */
  readonly ofMatch?: readonly string[];
  /** pci_device_id table. */
  readonly pciIds?: readonly PciId[];
  /** May sleep, so async is allowed. Return 0, -errno or a ProbeDefer (throwing one also works). */
  probe(dev: Device, core: DriverCore): ProbeResult | Promise<ProbeResult>;
  remove?(dev: Device, core: DriverCore): void | Promise<void>;
  /**
   * A generic driver that binds only devices no other driver matches (like driver_override to a
   * catch-all): true for the devices it would take. Its ofMatch / pciIds are not used.
   */
  fallback?(dev: Device): boolean;
}

export interface Bus {
  readonly name: string;
  match(dev: Device, drv: Driver): boolean;
  /**
   * bus->dma_configure, run before the driver's probe (really_probe). 0, -errno (fail the probe),
   * or a ProbeDefer.
   */
  dmaConfigure?(dev: Device, core: DriverCore): ProbeResult;
  /** Undo dmaConfigure when the probe fails or the driver unbinds. */
  dmaDeconfigure?(dev: Device, core: DriverCore): void;
}

/** Compatible match with `*` wildcards (for tables like "qcom,*-smmu-500"). */
export function compatMatches(pattern: string, compat: string): boolean {
  if (!pattern.includes('*')) return pattern === compat;
  const re = new RegExp(`^${pattern.split('*').map(escapeRe).join('.*')}$`);
  return re.test(compat);
}

function escapeRe(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

/** of_match_device: the best (earliest) compatible of the node that the table matches. */
export function ofMatchIndex(table: readonly string[] | undefined, compatible: readonly string[]): number {
  if (!table) return -1;
  for (let i = 0; i < compatible.length; i++) {
    if (table.some((p) => compatMatches(p, compatible[i]!))) return i;
  }
  return -1;
}
