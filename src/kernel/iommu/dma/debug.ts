/**
 * DMA-API debugging (kernel/dma/debug.c): every mapping is recorded, and unmaps are checked
 * against it. Reported (machine bug kind 'dma-api', with the device name) as Linux prints them:
 * freeing DMA memory never mapped (also a double unmap), a different size or direction, a
 * different kind of unmap, and mappings still pending when the driver unbinds.
 */

import type { Machine } from '../../../platform/machine.ts';
import type { IommuDevice } from '../device.ts';
import type { DmaDirection } from './types.ts';

export type DmaMapKind = 'single' | 'page' | 'scatter-gather' | 'coherent';

interface Entry {
  kind: DmaMapKind;
  dev: IommuDevice;
  addr: number;
  size: number;
  dir: DmaDirection;
  cpu: number;
}

function hexAddr(addr: number): string {
  return `0x${addr.toString(16).padStart(16, '0')}`;
}

export class DmaDebug {
  enabled = true;
  private readonly live = new Map<IommuDevice, Map<number, Entry>>();
  private readonly recentlyFreed = new Map<IommuDevice, Map<number, number>>();
  errors = 0;

  constructor(private readonly m: Machine) {}

  private err(dev: IommuDevice, msg: string): void {
    this.errors++;
    this.m.reportBug('dma-api', `DMA-API: ${dev.name}: ${msg}`);
  }

  add(dev: IommuDevice, kind: DmaMapKind, addr: number, size: number, dir: DmaDirection, cpu: number): void {
    if (!this.enabled) return;
    let map = this.live.get(dev);
    if (map === undefined) this.live.set(dev, (map = new Map()));
    map.set(addr, { kind, dev, addr, size, dir, cpu });
    this.recentlyFreed.get(dev)?.delete(addr);
  }

  /** check_unmap. Returns false if the unmap was bad (the caller still proceeds as Linux does). */
  check(dev: IommuDevice, kind: DmaMapKind, addr: number, size: number, dir: DmaDirection): boolean {
    if (!this.enabled) return true;
    const e = this.live.get(dev)?.get(addr);
    if (e === undefined) {
      const hex = hexAddr(addr);
      const when = this.recentlyFreed.get(dev)?.get(addr);
      this.err(
        dev,
        `device driver tries to free DMA memory it has not allocated [device address=${hex}] [size=${size} bytes]` +
          (when !== undefined ? ` (double unmap: already unmapped at ${when} ns)` : ''),
      );
      return false;
    }
    let ok = true;
    // the address is formatted only when there is something to report
    if (e.size !== size || e.kind !== kind || (e.dir !== dir && kind !== 'coherent'))
      ok = this.reportMismatch(dev, e, kind, addr, size, dir);
    this.live.get(dev)!.delete(addr);
    let f = this.recentlyFreed.get(dev);
    if (f === undefined) this.recentlyFreed.set(dev, (f = new Map()));
    f.set(addr, this.m.sched.now);
    return ok;
  }

  private reportMismatch(
    dev: IommuDevice,
    e: Entry,
    kind: DmaMapKind,
    addr: number,
    size: number,
    dir: DmaDirection,
  ): boolean {
    const hex = hexAddr(addr);
    let ok = true;
    if (e.size !== size) {
      this.err(
        dev,
        `device driver frees DMA memory with different size [device address=${hex}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
      );
      ok = false;
    }
    if (e.kind !== kind) {
      this.err(
        dev,
        `device driver frees DMA memory with wrong function [device address=${hex}] [size=${e.size} bytes] [mapped as ${e.kind}] [unmapped as ${kind}]`,
      );
      ok = false;
    }
    if (e.dir !== dir && kind !== 'coherent') {
      this.err(
        dev,
        `device driver frees DMA memory with different direction [device address=${hex}] [size=${e.size} bytes] [mapped with ${e.dir}] [unmapped with ${dir}]`,
      );
      ok = false;
    }
    return ok;
  }

  /** check_sync: the range must lie in a live mapping with a compatible direction. */
  checkSync(dev: IommuDevice, addr: number, size: number, dir: DmaDirection): void {
    if (!this.enabled) return;
    const map = this.live.get(dev);
    if (map !== undefined) {
      for (const e of map.values()) {
        if (addr >= e.addr && addr + size <= e.addr + e.size) {
          if (e.dir !== 'bidirectional' && e.dir !== dir) {
            this.err(
              dev,
              `device driver syncs DMA memory with different direction [device address=0x${e.addr.toString(16)}] [mapped with ${e.dir}] [synced with ${dir}]`,
            );
          }
          return;
        }
      }
    }
    this.err(
      dev,
      `device driver tries to sync DMA memory it has not allocated [device address=0x${addr.toString(16)}] [size=${size} bytes]`,
    );
  }

  /** dma_debug_device_change(BUS_NOTIFY_UNBOUND_DRIVER): report leaks. Returns their count. */
  deviceUnbound(dev: IommuDevice): number {
    const map = this.live.get(dev);
    const n = map?.size ?? 0;
    if (n > 0 && this.enabled) {
      const e = map!.values().next().value as Entry;
      this.err(
        dev,
        `device driver has pending DMA allocations while released from device [count=${n}]\n` +
          `One of leaked entries details: [device address=0x${e.addr.toString(16)}] [size=${e.size} bytes] [mapped with ${e.dir}] [mapped as ${e.kind}]`,
      );
    }
    this.live.delete(dev);
    return n;
  }

  pending(dev: IommuDevice): number {
    return this.live.get(dev)?.size ?? 0;
  }
}
