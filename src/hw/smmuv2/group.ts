// NVIDIA Tegra194/234 (`nvidia,smmu-500`): two ARM MMU-500 instances "used together [that]
// must be programmed identically for interleaved IOVA accesses across them" (Linux
// arm-smmu-nvidia.c). Each instance is a whole SmmuV2 with its own register window; a
// transaction goes through one of them, chosen by its IOVA, so software that programs them
// differently sees translations change with the address. Their interrupts are combined: both
// drive the same global and context lines (a wired OR), as Linux's one shared handler expects.
//
// The interleave granule is not documented publicly: a transaction at `iova` goes through
// instance floor(iova / 2^interleaveShift) mod N (default 4 KiB: neighbouring pages alternate).

import type { Machine } from '../../platform/machine.ts';
import type { DmaIommu, DmaPort, PortResult, StallListener } from '../smmu-common/port.ts';
import { SmmuV2, type SmmuV2Config } from './smmu.ts';

export interface SmmuV2GroupConfig extends Omit<SmmuV2Config, 'base' | 'stagOffset' | 'stagStride'> {
  /** Register window base of each instance (two on Tegra194's non-isochronous SMMU). */
  bases: readonly number[];
  /** log2 of the IOVA interleave granule. Default 12. */
  interleaveShift?: number;
}

export class SmmuV2Group implements DmaIommu {
  readonly machine: Machine;
  readonly instances: readonly SmmuV2[];
  readonly port: DmaPort;
  readonly upstream: { attach(sid: number, m: StallListener): void; detach(sid: number): void };

  constructor(machine: Machine, cfg: SmmuV2GroupConfig) {
    this.machine = machine;
    const n = cfg.bases.length;
    if (n < 1) throw new RangeError('smmuv2 group: no instance');
    const name = cfg.name ?? 'smmuv2';
    this.instances = cfg.bases.map(
      (base, i) =>
        new SmmuV2(machine, {
          ...cfg,
          compatible: cfg.compatible ?? 'nvidia,smmu-500',
          name: `${name}.${i}`,
          base,
          stagOffset: i,
          stagStride: n,
        }),
    );
    const granule = 2 ** (cfg.interleaveShift ?? 12);
    const inst = this.instances;
    this.port = {
      translate(sid: number, ssid: number, iova: number, access: number, out: PortResult): number {
        return inst[Math.floor(iova / granule) % n]!.port.translate(sid, ssid, iova, access, out);
      },
    };
    this.upstream = {
      attach(sid: number, m: StallListener): void {
        for (const s of inst) s.upstream.attach(sid, m);
      },
      detach(sid: number): void {
        for (const s of inst) s.upstream.detach(sid);
      },
    };
  }
}
