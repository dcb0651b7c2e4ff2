/**
 * The IOMMU core (drivers/iommu/iommu.c): IOMMU registration, per-device probe/release, groups,
 * default-domain selection, attach/detach/replace (transactional), PASID attachments and
 * reserved regions. Vendor-neutral: drivers plug in through IommuOps / IommuDomainOps.
 *
 * Everything that calls into a driver callback that may wait for the hardware is async and
 * awaits it (see ops.ts). Probe and release are serialised by the core's probe lock
 * (iommu_probe_device_lock); everything that changes a group's attachments holds the group
 * mutex across those awaits, so an operation never sees another one half done, and a failed
 * attach puts back exactly the state it found.
 */

import { Mutex } from '../../platform/exec.ts';

import type { Machine } from '../../platform/machine.ts';
import { devExtras, devIsPci, type IommuDevice } from './device.ts';
import {
  domainTypeName,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  type IommuDomain,
  type IommuDomainType,
  iommuIovaToPhys,
  iommuMap,
  usedAfterFree,
} from './domain.ts';
import { EBUSY, EINVAL, ENODEV, EOPNOTSUPP } from './errno.ts';
import { IommuGroup } from './group.ts';
import type { IommuAllocFlags, IommuOps, MaybePromise } from './ops.ts';
import { IOMMU_NO_PASID, pasidAttach, pasidDetach, pasidDetachLocked, pasidReplace } from './pasid.ts';
import type { IommuResvRegion } from './resv-regions.ts';

/** A registered IOMMU instance (struct iommu_device). */
export interface IommuInstance {
  readonly name: string;
  readonly ops: IommuOps;
}

/** dev->iommu: the core's per-device state. */
export interface DevIommu {
  readonly iommu: IommuInstance;
  group: IommuGroup;
  /** min(IOMMU's PASID space, the device's PASID capability); 0 = no PASID. */
  maxPasids: number;
}

export interface IommuCoreConfig {
  /** iommu.passthrough=1: IDENTITY default domains. */
  passthrough?: boolean;
  /** iommu.strict=1 (default): invalidate on every unmap; 0: DMA_FQ (lazy) where drivers allow. */
  strict?: boolean;
}

/** What the DMA layer hooks into default DMA domains (iommu_get_dma_cookie / put). */
export interface DmaDomainHooks {
  initDomain(domain: IommuDomain, dev: IommuDevice): MaybePromise<number>;
  /** Tear the cookie down (drains the flush queue: waits for its flush). */
  putDomain(domain: IommuDomain): MaybePromise<void>;
}

/**
 * The fault layer's teardown hooks (fault/io-pgfault.ts), set by the kernel: outstanding faults
 * are flushed (answered INVALID) after a domain change and before a device goes away.
 */
export interface IommuFaultHooks {
  flush(dev: IommuDevice, pasid?: number): Promise<void>;
  removeDevice(dev: IommuDevice): Promise<void>;
}

/** The PCI host bridge (segment) of a device, when the driver model says (RIDs are per segment). */
function pciHostOf(dev: IommuDevice): unknown {
  return (dev.pci as { hostBridge?: unknown } | null)?.hostBridge ?? null;
}

export class IommuCore {
  readonly iommus: IommuInstance[] = [];
  readonly groups: IommuGroup[] = [];
  private nextGroupId = 0;
  /** iommu_def_domain_type. */
  defDomainType: IommuDomainType;
  strict: boolean;
  dmaHooks: DmaDomainHooks | null = null;
  /** io-pgfault flush hooks (issue 8); null: no fault layer. */
  faultHooks: IommuFaultHooks | null = null;
  private readonly devs = new WeakMap<IommuDevice, DevIommu>();
  /** iommu_probe_device_lock: probe and release one device at a time. */
  readonly probeLock: Mutex;

  constructor(
    readonly machine: Machine,
    cfg: IommuCoreConfig = {},
  ) {
    this.defDomainType = cfg.passthrough === true ? IOMMU_DOMAIN_IDENTITY : IOMMU_DOMAIN_DMA;
    this.strict = cfg.strict ?? true;
    this.probeLock = new Mutex(machine.exec, 'iommu_probe_device_lock');
  }

  private log(msg: string, level: 'debug' | 'info' | 'warn' | 'err' = 'info'): void {
    this.machine.trace.emit('kernel.iommu', 'iommu', msg, {}, level);
  }

  /** dev_printk: the device's messages go out as `<bus> <device>: message`, as Linux prints them. */
  private devLog(dev: IommuDevice, msg: string, level: 'debug' | 'info' | 'warn' | 'err' = 'info'): void {
    this.machine.trace.emit(`${dev.busName} ${dev.name}`, 'iommu', msg, {}, level);
  }

  private warn(msg: string): void {
    this.machine.reportBug('warn', `WARNING: iommu: ${msg}`);
  }

  /** What domains report misuse through (IommuDomain.warn). */
  private readonly warnFn = (msg: string): void => this.warn(msg);

  /** iommu_subsys_init's two lines, as Linux prints them (pr_fmt "iommu: "). */
  subsysInit(): void {
    const passthrough = this.defDomainType === IOMMU_DOMAIN_IDENTITY;
    const type = passthrough ? IOMMU_DOMAIN_IDENTITY : this.strict ? IOMMU_DOMAIN_DMA : IOMMU_DOMAIN_DMA_FQ;
    this.machine.trace.emit('iommu', 'iommu', `Default domain type: ${domainTypeName(type)}`, {}, 'info');
    if (!passthrough)
      this.machine.trace.emit(
        'iommu',
        'iommu',
        `DMA domain TLB invalidation policy: ${this.strict ? 'strict' : 'lazy'} mode`,
        {},
        'info',
      );
  }

  // ------------------------------------------------------------------ IOMMU registration

  /** iommu_device_register. */
  register(name: string, ops: IommuOps): IommuInstance {
    const inst = { name, ops };
    this.iommus.push(inst);
    this.log(`${name}: registered IOMMU (${ops.name})`, 'debug');
    return inst;
  }

  /** iommu_device_unregister: release every device still probed on it. */
  async unregister(inst: IommuInstance): Promise<void> {
    for (const g of [...this.groups]) {
      if (g.ops !== inst.ops) continue;
      for (const d of [...g.devices]) await this.releaseDevice(d);
    }
    const i = this.iommus.indexOf(inst);
    if (i >= 0) this.iommus.splice(i, 1);
  }

  devIommu(dev: IommuDevice): DevIommu | null {
    return this.devs.get(dev) ?? null;
  }

  groupOf(dev: IommuDevice): IommuGroup | null {
    return this.devs.get(dev)?.group ?? null;
  }

  // ------------------------------------------------------------------ probe / release

  /**
   * iommu_probe_device: find the IOMMU that claims `dev`, put it in a group and attach the
   * group's domain (allocating the default domain for a new group). 0 or -errno (-ENODEV: no IOMMU).
   */
  async probeDevice(dev: IommuDevice): Promise<number> {
    await this.probeLock.lock();
    try {
      return await this.probeDeviceLocked(dev);
    } finally {
      this.probeLock.unlock();
    }
  }

  private async probeDeviceLocked(dev: IommuDevice): Promise<number> {
    if (this.devs.has(dev)) return 0;
    let inst: IommuInstance | null = null;
    for (const i of this.iommus) {
      const r = await i.ops.probeDevice(dev);
      if (r === 0) {
        inst = i;
        break;
      }
      if (r !== -ENODEV) return r;
    }
    if (inst === null) return -ENODEV;
    const ops = inst.ops;
    const capPasids = ops.maxPasids?.(dev) ?? 0;
    const devBits = devExtras(dev).pasidBits ?? 0;
    const maxPasids = Math.min(capPasids, devBits > 0 ? 2 ** devBits : 0);
    const { group, fresh } = this.deviceGroup(dev, ops);
    await group.mutex.lock();
    try {
      const di: DevIommu = { iommu: inst, group, maxPasids };
      this.devs.set(dev, di);
      group.devices.push(dev);
      if (devIsPci(dev)) for (const rid of this.rids(dev)) group.rids.add(rid);
      if (fresh) {
        this.groups.push(group);
        const r = await this.allocDefaultDomain(group, dev);
        if (r < 0) return await this.undoProbe(dev, r);
        const a = await this.setGroupDomain(group, group.defaultDomain!);
        if (a < 0) return await this.undoProbe(dev, a);
      } else if (group.domain !== null) {
        const r = await group.domain.ops.attachDev(group.domain, dev, null);
        if (r < 0) return await this.undoProbe(dev, r);
      }
      // iommu_group_add_device's dev_info, before any driver binds: "<bus> <device>: ..."
      this.devLog(dev, `Adding to iommu group ${group.id}`);
      return 0;
    } finally {
      group.mutex.unlock();
    }
  }

  /** Group mutex held. */
  private async undoProbe(dev: IommuDevice, err: number): Promise<number> {
    const di = this.devs.get(dev)!;
    const g = di.group;
    g.devices.splice(g.devices.indexOf(dev), 1);
    this.devs.delete(dev);
    await di.iommu.ops.releaseDevice?.(dev);
    if (g.devices.length === 0) await this.dropGroup(g);
    return err;
  }

  /** iommu_release_device. */
  async releaseDevice(dev: IommuDevice): Promise<void> {
    await this.probeLock.lock();
    try {
      const di = this.devs.get(dev);
      if (di === undefined) return;
      const g = di.group;
      await g.mutex.lock();
      try {
        if (g.devices.length === 1)
          for (const [pasid, d] of [...g.pasidArray]) await pasidDetachLocked(this, g, d, dev, pasid);
        g.devices.splice(g.devices.indexOf(dev), 1);
        // the device stops translating through the group's domain before the driver forgets it
        const blocked = di.iommu.ops.blockedDomain;
        if (blocked !== undefined && (await blocked.ops.attachDev(blocked, dev, g.domain)) < 0)
          this.warn(`${dev.name}: could not block DMA on release`);
        // fault layer: answer what is outstanding before the driver forgets the device
        await this.faultHooks?.removeDevice(dev);
        await di.iommu.ops.releaseDevice?.(dev);
        this.devs.delete(dev);
        if (g.devices.length === 0) await this.dropGroup(g);
      } finally {
        g.mutex.unlock();
      }
    } finally {
      this.probeLock.unlock();
    }
  }

  private async dropGroup(g: IommuGroup): Promise<void> {
    const d = g.defaultDomain;
    g.domain = null;
    g.defaultDomain = null;
    const i = this.groups.indexOf(g);
    if (i >= 0) this.groups.splice(i, 1);
    if (d !== null) await this.domainFree(d);
  }

  private rids(dev: IommuDevice): number[] {
    const out = dev.pci !== null ? [dev.pci.rid] : [];
    for (const a of devExtras(dev).pciDmaAliases ?? []) out.push(a);
    return out;
  }

  /**
   * ops->device_group. PCI devices whose requester IDs alias (behind the same host bridge) share a
   * group (pci_device_group); devices the IOMMU cannot tell apart — a fwspec ID in common, or
   * overlapping ones (ops.idsOverlap: SMR id/mask pairs) — share one too, as arm-smmu's
   * device_group does for SMR matches; everything else gets its own group.
   */
  private deviceGroup(dev: IommuDevice, ops: IommuOps): { group: IommuGroup; fresh: boolean } {
    const host = pciHostOf(dev);
    if (devIsPci(dev)) {
      const rids = this.rids(dev);
      for (const g of this.groups) {
        if (g.ops !== ops || !rids.some((r) => g.rids.has(r))) continue;
        if (g.devices.some((d) => devIsPci(d) && pciHostOf(d) === host)) return { group: g, fresh: false };
      }
    }
    const ids = dev.iommu?.ids ?? [];
    if (ids.length > 0) {
      const overlap = ops.idsOverlap ?? ((a: number, b: number) => a === b);
      for (const g of this.groups) {
        if (g.ops !== ops) continue;
        for (const d of g.devices) {
          const other = d.iommu?.ids ?? [];
          if (ids.some((a) => other.some((b) => overlap(a, b)))) return { group: g, fresh: false };
        }
      }
    }
    return { group: new IommuGroup(ops, this.machine.exec, this.nextGroupId++), fresh: true };
  }

  // ------------------------------------------------------------------ default domains

  /** iommu_get_def_domain_type over the group's devices, with Linux's conflict rules. */
  defaultDomainTypeFor(group: IommuGroup): IommuDomainType | -1 {
    let driverType: IommuDomainType | 0 = 0;
    let untrusted: IommuDevice | null = null;
    for (const dev of group.devices) {
      const t = group.ops.defDomainType?.(dev) ?? 0;
      if (t !== 0 && t !== driverType) {
        if (driverType === 0) driverType = t;
        else {
          this.devLog(
            dev,
            `IOMMU driver error, requesting conflicting def_domain_type, ${domainTypeName(driverType)} and ${domainTypeName(t)}, for devices in group ${group.id}.`,
            'warn',
          );
          // drivers may force IDENTITY or DMA; IDENTITY takes precedence
          if (t === IOMMU_DOMAIN_IDENTITY) driverType = t;
        }
      }
      if (devExtras(dev).untrusted === true) untrusted = dev;
    }
    if (untrusted !== null) {
      if (driverType !== 0 && driverType !== IOMMU_DOMAIN_DMA) {
        this.devLog(
          untrusted,
          `Device is not trusted, but driver is overriding group ${group.id} to ${domainTypeName(driverType)}, refusing to probe.`,
          'err',
        );
        return -1;
      }
      driverType = IOMMU_DOMAIN_DMA;
    }
    return driverType;
  }

  /** Group mutex held. */
  private async allocDefaultDomain(group: IommuGroup, dev: IommuDevice): Promise<number> {
    const req = this.defaultDomainTypeFor(group);
    if (req === -1) return -EINVAL;
    let type = req !== 0 ? req : this.defDomainType;
    let dom = await this.allocDomainOfType(group.ops, dev, type);
    // no IDENTITY support: fall back to a translated default domain (unless the driver required it)
    if (dom === null && type === IOMMU_DOMAIN_IDENTITY && req === 0) {
      type = IOMMU_DOMAIN_DMA;
      dom = await this.allocDomainOfType(group.ops, dev, type);
    }
    if (dom === null) return -EINVAL;
    if (
      dom.type === IOMMU_DOMAIN_DMA &&
      !this.strict &&
      (group.ops.capable?.(dev, 'deferred-flush') ?? false)
    ) {
      dom.type = IOMMU_DOMAIN_DMA_FQ;
    }
    if (dom.isDma && this.dmaHooks !== null) {
      const r = await this.dmaHooks.initDomain(dom, dev);
      if (r < 0) {
        dom.iovaCookie = null;
        await this.domainFree(dom);
        return r;
      }
    }
    group.defaultDomain = dom;
    // reserved direct-mapped regions exist in every paging default domain
    if (dom.isPaging) {
      for (const r of this.getResvRegions(dev)) {
        if (r.type !== 'direct' && r.type !== 'direct-relaxable') continue;
        for (let a = r.start; a < r.start + r.length; a += 4096) {
          if (iommuIovaToPhys(dom, a) === 0) iommuMap(dom, a, a, 4096, r.prot);
        }
      }
    }
    this.devLog(dev, `default domain type ${domainTypeName(dom.type)}`, 'debug');
    return 0;
  }

  private async allocDomainOfType(
    ops: IommuOps,
    dev: IommuDevice,
    type: IommuDomainType,
  ): Promise<IommuDomain | null> {
    if (type === IOMMU_DOMAIN_IDENTITY) return ops.identityDomain ?? null;
    if (type === IOMMU_DOMAIN_BLOCKED) return ops.blockedDomain ?? null;
    const d = await ops.domainAllocPaging?.(dev);
    if (d === undefined || typeof d === 'number') return null;
    d.type = type;
    d.owner = ops;
    d.warn = this.warnFn;
    return d;
  }

  /** iommu_paging_domain_alloc: an UNMANAGED domain for `dev` (or -errno). */
  async domainAllocPaging(dev: IommuDevice): Promise<IommuDomain | number> {
    const di = this.devs.get(dev);
    if (di === undefined) return -ENODEV;
    const d = await di.iommu.ops.domainAllocPaging?.(dev);
    if (d === undefined) return -EOPNOTSUPP;
    if (typeof d === 'number') return d;
    d.type = IOMMU_DOMAIN_UNMANAGED;
    d.owner = di.iommu.ops;
    d.warn = this.warnFn;
    return d;
  }

  /**
   * iommu_paging_domain_alloc_flags: an UNMANAGED domain for `dev` with allocation flags
   * (IOMMU_HWPT_ALLOC_NEST_PARENT: a stage-2 domain that nested domains can sit on), or -errno.
   */
  async domainAllocPagingFlags(dev: IommuDevice, flags: IommuAllocFlags): Promise<IommuDomain | number> {
    const di = this.devs.get(dev);
    if (di === undefined) return -ENODEV;
    const d = await di.iommu.ops.domainAllocPaging?.(dev, flags);
    if (d === undefined) return -EOPNOTSUPP;
    if (typeof d === 'number') return d;
    d.type = IOMMU_DOMAIN_UNMANAGED;
    d.owner = di.iommu.ops;
    return d;
  }

  /**
   * ops->domain_alloc_nested, as iommufd reaches it: a nested domain over the stage-2 `parent`,
   * described by driver-specific `data` (for the SMMUv3: the guest's vSTE), or -errno.
   */
  async domainAllocNested(
    dev: IommuDevice,
    parent: IommuDomain,
    data: unknown,
  ): Promise<IommuDomain | number> {
    const di = this.devs.get(dev);
    if (di === undefined) return -ENODEV;
    const d = await di.iommu.ops.domainAllocNested?.(dev, parent, data);
    if (d === undefined) return -EOPNOTSUPP;
    if (typeof d !== 'number') d.owner = di.iommu.ops;
    return d;
  }

  /**
   * iommu_domain_free. A domain a device still translates through — attached to a group, to a
   * PASID, or a group's default domain — is not freed: Linux would free its page tables under the
   * device. The model reports it (WARNING) and keeps the domain whole, leaked.
   */
  async domainFree(d: IommuDomain): Promise<void> {
    if (d.owner !== null && (d === d.owner.identityDomain || d === d.owner.blockedDomain)) return;
    if (d.freed) {
      this.warn(`iommu_domain_free of ${d}, freed already (double free): ignored`);
      return;
    }
    const user = this.domainUser(d);
    if (user !== null) {
      this.warn(`iommu_domain_free of ${d}, which ${user}: not freed`);
      return;
    }
    if (d.isDma && this.dmaHooks !== null && d.iovaCookie !== null) await this.dmaHooks.putDomain(d);
    d.freed = true;
    await d.ops.free?.(d);
  }

  /** Who still uses `d` ("DEV (group N) is still attached to [(PASID p)]"), or null. */
  private domainUser(d: IommuDomain): string | null {
    for (const g of this.groups) {
      const who = `${g.devices.map((x) => x.name).join(', ')} (group ${g.id}) is still attached to`;
      if (g.domain === d || g.defaultDomain === d) return who;
      for (const [pasid, pd] of g.pasidArray) if (pd === d) return `${who} (PASID ${pasid})`;
    }
    return null;
  }

  // ------------------------------------------------------------------ attach / detach / replace

  /**
   * __iommu_group_set_domain: switch every device of the group to `domain`, waiting for each
   * driver attach. Transactional: if a device fails (even after its driver waited for the
   * hardware), the devices already switched go back to the old domain and the group keeps it.
   * The caller holds the group mutex.
   */
  async setGroupDomain(group: IommuGroup, domain: IommuDomain): Promise<number> {
    const old = group.domain;
    if (old === domain) return 0;
    const done: IommuDevice[] = [];
    for (const dev of group.devices) {
      const r = await domain.ops.attachDev(domain, dev, old);
      if (r < 0) {
        for (const d of done) {
          if (old !== null && (await old.ops.attachDev(old, d, domain)) < 0) {
            this.warn(`${d.name}: could not restore ${old} after a failed attach`);
          }
        }
        return r;
      }
      done.push(dev);
    }
    group.domain = domain;
    // fault layer: faults taken under the old domain are answered INVALID now
    if (old !== null && this.faultHooks !== null)
      for (const dev of group.devices) await this.faultHooks.flush(dev, IOMMU_NO_PASID);
    return 0;
  }

  private checkOwner(domain: IommuDomain, group: IommuGroup): number {
    if (domain.owner !== null && domain.owner !== group.ops) return -EINVAL;
    return 0;
  }

  /** Run `fn` with the group mutex held (mutex_lock(&group->mutex): sleeps). */
  private async locked<T>(group: IommuGroup, fn: () => Promise<T>): Promise<T> {
    await group.mutex.lock();
    try {
      return await fn();
    } finally {
      group.mutex.unlock();
    }
  }

  private attachGroupLocked(domain: IommuDomain, group: IommuGroup): Promise<number> | number {
    if (usedAfterFree(domain, 'attach')) return -EINVAL;
    const e = this.checkOwner(domain, group);
    if (e < 0) return e;
    if (
      group.domain !== null &&
      group.domain !== group.defaultDomain &&
      group.domain !== group.blockingDomain
    ) {
      return -EBUSY;
    }
    return this.setGroupDomain(group, domain);
  }

  /** iommu_attach_group. */
  attachGroup(domain: IommuDomain, group: IommuGroup): Promise<number> {
    return this.locked(group, async () => this.attachGroupLocked(domain, group));
  }

  /** iommu_attach_device: only for a device alone in its group. */
  async attachDevice(domain: IommuDomain, dev: IommuDevice): Promise<number> {
    const g = this.groupOf(dev);
    if (g === null) return -ENODEV;
    return this.locked(g, async () => {
      if (this.groupOf(dev) !== g) return -ENODEV; // released while we waited
      if (g.devices.length !== 1) return -EINVAL;
      return this.attachGroupLocked(domain, g);
    });
  }

  private async detachGroupLocked(domain: IommuDomain, group: IommuGroup): Promise<void> {
    if (group.domain !== domain) {
      this.warn(`detach of ${domain} from group ${group.id}, which is attached to ${group.domain}`);
      return;
    }
    const core = group.owner !== null ? this.blockingDomain(group) : group.defaultDomain;
    if (core !== null && (await this.setGroupDomain(group, core)) < 0)
      this.warn(`group ${group.id}: could not re-attach ${core}`);
  }

  /** iommu_detach_group / iommu_detach_device: back to the default (or blocking) domain. */
  detachGroup(domain: IommuDomain, group: IommuGroup): Promise<void> {
    return this.locked(group, () => this.detachGroupLocked(domain, group));
  }

  async detachDevice(domain: IommuDomain, dev: IommuDevice): Promise<void> {
    const g = this.groupOf(dev);
    if (g === null) {
      this.warn(`${dev.name}: detach_device of a device not alone in its group`);
      return;
    }
    await this.locked(g, async () => {
      if (this.groupOf(dev) !== g || g.devices.length !== 1) {
        this.warn(`${dev.name}: detach_device of a device not alone in its group`);
        return;
      }
      await this.detachGroupLocked(domain, g);
    });
  }

  /** iommu_group_replace_domain: switch directly, without passing through the default domain. */
  replaceGroupDomain(group: IommuGroup, domain: IommuDomain): Promise<number> {
    return this.locked(group, async () => {
      if (usedAfterFree(domain, 'replace')) return -EINVAL;
      const e = this.checkOwner(domain, group);
      if (e < 0) return e;
      return this.setGroupDomain(group, domain);
    });
  }

  blockingDomain(group: IommuGroup): IommuDomain | null {
    if (group.blockingDomain === null) group.blockingDomain = group.ops.blockedDomain ?? null;
    return group.blockingDomain;
  }

  /** iommu_get_domain_for_dev. */
  getDomainForDev(dev: IommuDevice): IommuDomain | null {
    return this.groupOf(dev)?.domain ?? null;
  }

  /** iommu_get_dma_domain: the default domain the DMA API uses. */
  getDmaDomain(dev: IommuDevice): IommuDomain | null {
    return this.groupOf(dev)?.defaultDomain ?? null;
  }

  // ------------------------------------------------------------------ PASID

  /** iommu_attach_device_pasid. */
  attachDevicePasid(domain: IommuDomain, dev: IommuDevice, pasid: number): Promise<number> {
    if (usedAfterFree(domain, 'PASID attach')) return Promise.resolve(-EINVAL);
    return pasidAttach(this, domain, dev, pasid);
  }

  /** iommu_detach_device_pasid; then the PASID's outstanding faults are flushed (before it can be reused). */
  async detachDevicePasid(domain: IommuDomain, dev: IommuDevice, pasid: number): Promise<void> {
    await pasidDetach(this, domain, dev, pasid);
    await this.flushPasidFaults(dev, pasid);
  }

  /** iommu_replace_device_pasid; faults taken under the old domain are flushed. */
  async replaceDevicePasid(domain: IommuDomain, dev: IommuDevice, pasid: number): Promise<number> {
    if (usedAfterFree(domain, 'PASID replace')) return -EINVAL;
    const r = await pasidReplace(this, domain, dev, pasid);
    if (r === 0) await this.flushPasidFaults(dev, pasid);
    return r;
  }

  private async flushPasidFaults(dev: IommuDevice, pasid: number): Promise<void> {
    if (this.faultHooks === null) return;
    for (const d of this.groupOf(dev)?.devices ?? [dev]) await this.faultHooks.flush(d, pasid);
  }

  getDomainForDevPasid(dev: IommuDevice, pasid: number): IommuDomain | null {
    if (pasid === IOMMU_NO_PASID) return this.getDomainForDev(dev);
    return this.groupOf(dev)?.pasidArray.get(pasid) ?? null;
  }

  /** WARN helper for pasid.ts. */
  warnOnce(msg: string): void {
    this.warn(msg);
  }

  // ------------------------------------------------------------------ reserved regions

  /** iommu_get_resv_regions. */
  getResvRegions(dev: IommuDevice): IommuResvRegion[] {
    const di = this.devs.get(dev);
    if (di === undefined) return [];
    return di.iommu.ops.getResvRegions?.(dev) ?? [];
  }
}
