/**
 * A test IOMMU driver (a test double, never in src/): a minimal driver over the real io-pgtable,
 * whose "hardware" translates device DMA with the SMMUv3 model's translation engine walking the
 * very tables the kernel wrote. Its stream table is a JS map (not the architected STE format):
 * what it tests is the core and the DMA API above the driver, not a driver.
 *
 * Invalidations are counted the way the SMMUv3 driver issues them: an iotlb_sync is one range
 * TLBI plus a CMD_SYNC, a flush_iotlb_all a TLBI by ASID plus a CMD_SYNC, a flush_walk the same
 * as a range.
 *
 * "Hardware latency" knobs model a driver that must wait for its IOMMU: with `attachDelayNs`,
 * attach and PASID attach wait that long in virtual time (a busy-wait, as for a CMD_SYNC)
 * before they take effect or fail; with `syncDelayNs`, iotlb_sync and flush_iotlb_all issue
 * their commands at once and complete that much later (`completedSyncs` counts completions).
 */

import { TranslationEngine } from '../../../src/hw/smmu-common/translate.ts';
import {
  ACCESS_READ,
  ACCESS_WRITE,
  makeTranslationConfig,
  type TranslationConfig,
  TranslationResult,
} from '../../../src/hw/smmu-common/translate-types.ts';
import type { IommuDevice } from '../../../src/kernel/iommu/device.ts';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IommuDomain,
  type IommuDomainType,
} from '../../../src/kernel/iommu/domain.ts';
import { EINVAL, ENODEV, ENOMEM } from '../../../src/kernel/iommu/errno.ts';
import { ArmLpaeIoPgtable } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { type IoPgtableCfg, machinePgtableEnv } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { type IommuIotlbGather, iotlbGatherAddPage } from '../../../src/kernel/iommu/iotlb-gather.ts';
import type { IommuCap, IommuDomainOps, IommuOps } from '../../../src/kernel/iommu/ops.ts';
import { type IommuResvRegion, swMsiRegion } from '../../../src/kernel/iommu/resv-regions.ts';
import type { Machine } from '../../../src/platform/machine.ts';

type StreamCfg = { kind: 'abort' } | { kind: 'bypass' } | { kind: 'translate'; domain: IommuDomain };

export class TestIommu implements IommuOps {
  readonly name = 'test-iommu';
  readonly pgsizeBitmap = 0x1000 + 0x200000 + 0x40000000;
  readonly identityDomain: IommuDomain;
  readonly blockedDomain: IommuDomain;
  /** "Hardware": StreamID -> config, (StreamID, PASID) -> config. */
  readonly streams = new Map<number, StreamCfg>();
  readonly pasids = new Map<string, StreamCfg>();
  readonly engine: TranslationEngine;
  private readonly res = new TranslationResult();
  private readonly hwCfg = new WeakMap<IommuDomain, TranslationConfig>();
  /** Invalidation commands issued (TLBI_* + CMD_SYNC). */
  invalidationCmds = 0;
  /** Fault injection: attach (or PASID attach) of these devices fails. */
  readonly failAttach = new Set<string>();
  defDomainTypes = new Map<string, IommuDomainType>();
  deferredFlush = true;
  pasidCapable = 20;
  attachLog: string[] = [];
  /** Virtual time attach/set_dev_pasid wait for the "hardware" (0: synchronous). */
  attachDelayNs = 0;
  /** Virtual time an invalidation takes to complete (0: synchronous). */
  syncDelayNs = 0;
  /** Invalidations completed (with syncDelayNs > 0, some may be outstanding). */
  completedSyncs = 0;
  private nextAsid = 1;

  constructor(readonly m: Machine) {
    this.engine = new TranslationEngine(m.mem, { oas: 48, tlbSets: 0 });
    const self = this;
    const staticOps = (kind: 'bypass' | 'abort'): IommuDomainOps => ({
      attachDev(_d, dev) {
        return self.afterHw(() => self.setStreams(dev, { kind }, _d));
      },
      setDevPasid(_d, dev, pasid) {
        return self.afterHw(() => {
          if (kind === 'abort') {
            for (const sid of dev.iommu?.ids ?? []) self.pasids.delete(`${sid}:${pasid}`);
            return 0;
          }
          for (const sid of dev.iommu?.ids ?? []) self.pasids.set(`${sid}:${pasid}`, { kind });
          return 0;
        });
      },
    });
    this.identityDomain = new IommuDomain(IOMMU_DOMAIN_IDENTITY, staticOps('bypass'), { owner: this });
    this.blockedDomain = new IommuDomain(IOMMU_DOMAIN_BLOCKED, staticOps('abort'), { owner: this });
  }

  /** Run `fn` now, or after attachDelayNs of virtual time (the driver waiting for its IOMMU). */
  private afterHw(fn: () => number): number | Promise<number> {
    if (this.attachDelayNs === 0) return fn();
    return this.m.exec.delay(this.attachDelayNs).then(fn);
  }

  /** An invalidation: issue the commands now, complete now or after syncDelayNs. */
  private invalidate(): void | Promise<void> {
    this.invalidationCmds += 2;
    if (this.syncDelayNs === 0) {
      this.completedSyncs++;
      return;
    }
    return this.m.exec.delay(this.syncDelayNs).then(() => {
      this.completedSyncs++;
    });
  }

  private setStreams(dev: IommuDevice, cfg: StreamCfg, d: IommuDomain): number {
    if (this.failAttach.has(dev.name)) return -EINVAL;
    this.attachLog.push(`${dev.name}->${d}`);
    for (const sid of dev.iommu?.ids ?? []) this.streams.set(sid, cfg);
    return 0;
  }

  probeDevice(dev: IommuDevice): number {
    if (dev.iommu === null || dev.iommu.ids.length === 0) return -ENODEV;
    return 0;
  }

  maxPasids(): number {
    return 2 ** this.pasidCapable;
  }

  capable(_dev: IommuDevice, cap: IommuCap): boolean {
    return cap === 'deferred-flush' ? this.deferredFlush : cap === 'cache-coherency';
  }

  defDomainType(dev: IommuDevice): IommuDomainType | 0 {
    return this.defDomainTypes.get(dev.name) ?? 0;
  }

  getResvRegions(): IommuResvRegion[] {
    return [swMsiRegion()];
  }

  domainAllocPaging(): IommuDomain | number {
    let domain: IommuDomain;
    const cfg: IoPgtableCfg = {
      quirks: 0,
      pgsizeBitmap: this.pgsizeBitmap,
      ias: 48,
      oas: 48,
      coherentWalk: true,
      tlb: {
        tlbFlushAll: () => {
          this.invalidationCmds += 2;
        },
        tlbFlushWalk: () => {
          this.invalidationCmds += 2;
        },
        tlbAddPage: (gather, iova, granule) => iotlbGatherAddPage(domain, gather, iova, granule),
      },
    };
    const pgt = ArmLpaeIoPgtable.alloc('arm-64-lpae-s1', cfg, null, machinePgtableEnv(this.m));
    if (pgt === null) return -ENOMEM;
    const ops: IommuDomainOps = {
      attachDev: (d, dev) => this.afterHw(() => this.setStreams(dev, { kind: 'translate', domain: d }, d)),
      setDevPasid: (d, dev, pasid) =>
        this.afterHw(() => {
          if (this.failAttach.has(dev.name)) return -EINVAL;
          for (const sid of dev.iommu?.ids ?? [])
            this.pasids.set(`${sid}:${pasid}`, { kind: 'translate', domain: d });
          return 0;
        }),
      mapPages: (_d, iova, paddr, pgsize, pgcount, prot) => pgt.mapPages(iova, paddr, pgsize, pgcount, prot),
      unmapPages: (_d, iova, pgsize, pgcount, gather) => pgt.unmapPages(iova, pgsize, pgcount, gather),
      iovaToPhys: (_d, iova) => pgt.iovaToPhys(iova),
      iotlbSync: (_d, _g: IommuIotlbGather) => this.invalidate(),
      flushIotlbAll: () => this.invalidate(),
      free: () => pgt.free(),
    };
    domain = new IommuDomain(0, ops, { pgsizeBitmap: cfg.pgsizeBitmap, owner: this });
    domain.priv = pgt;
    const hw = makeTranslationConfig();
    const c = cfg.armLpaeS1Cfg!;
    hw.s1.ttb0 = c.ttbr;
    hw.s1.t0sz = c.tcr.tsz;
    hw.s1.tg0 = 12;
    hw.s1.ips = 48;
    hw.s1.mairLo = c.mair | 0;
    hw.s1.asid = this.nextAsid++;
    this.hwCfg.set(domain, hw);
    return domain;
  }

  /**
   * The device's DMA: translate every page through the hardware walker and copy. Returns 0, or
   * -1 on a fault (nothing after the faulting page is transferred).
   */
  dma(sid: number, iova: number, buf: Uint8Array, write: boolean, pasid = 0): number {
    const cfg = pasid === 0 ? this.streams.get(sid) : this.pasids.get(`${sid}:${pasid}`);
    if (cfg === undefined || cfg.kind === 'abort') return -1;
    let off = 0;
    while (off < buf.length) {
      const a = iova + off;
      const n = Math.min(buf.length - off, 4096 - (a % 4096));
      let pa = a;
      if (cfg.kind === 'translate') {
        const hw = this.hwCfg.get(cfg.domain)!;
        if (this.engine.translate(hw, a, write ? ACCESS_WRITE : ACCESS_READ, this.res) !== 0) return -1;
        pa = this.res.oa;
      }
      const r = write ? this.m.mem.writeBytes(pa, buf, off, n) : this.m.mem.readBytes(pa, buf, off, n);
      if (r !== 0) return -1;
      off += n;
    }
    return 0;
  }

  /** A 32-bit device write (an MSI): translated, then a single store (RAM or MMIO). 0 or -1 on a fault. */
  dmaWrite32(sid: number, iova: number, value: number): number {
    const cfg = this.streams.get(sid);
    if (cfg === undefined || cfg.kind === 'abort') return -1;
    let pa = iova;
    if (cfg.kind === 'translate') {
      const hw = this.hwCfg.get(cfg.domain)!;
      if (this.engine.translate(hw, iova, ACCESS_WRITE, this.res) !== 0) return -1;
      pa = this.res.oa;
    }
    return this.m.mem.write32(pa, value) === 0 ? 0 : -1;
  }
}

// platform test devices get StreamIDs of their own, apart from the RIDs tests give PCI devices
let nextSid = 0x8000;

/** A device behind the test IOMMU. */
export function testDevice(
  name: string,
  opts: {
    pci?: number;
    aliases?: number[];
    sids?: number[];
    maskBits?: number;
    pasidBits?: number;
    coherent?: boolean;
  } = {},
): IommuDevice & { pciDmaAliases?: number[]; pasidBits?: number } {
  const mask =
    opts.maskBits === undefined
      ? 0xffff_ffffn
      : opts.maskBits >= 64
        ? 0xffff_ffff_ffff_ffffn
        : (1n << BigInt(opts.maskBits)) - 1n;
  const dev: IommuDevice & { pciDmaAliases?: number[]; pasidBits?: number } = {
    name,
    busName: opts.pci !== undefined ? 'pci' : 'platform',
    pci: opts.pci !== undefined ? { rid: opts.pci } : null,
    dma: { mask, coherentMask: mask, coherent: opts.coherent ?? true },
    iommu: { ids: opts.sids ?? [opts.pci ?? nextSid++] },
  };
  if (opts.aliases !== undefined) dev.pciDmaAliases = opts.aliases;
  if (opts.pasidBits !== undefined) dev.pasidBits = opts.pasidBits;
  return dev;
}
