/**
 * The proof DMA of a bound master: what a driver's self-test would do to show that its DMA goes
 * through the IOMMU. One `dma_map_single` of a kernel page, the device reads the page through the
 * mapping (and must see what the CPU wrote), writes a second pattern through it (the CPU must see
 * it in memory), `dma_unmap_single`, then one more device access at the same address, which must
 * fault: the mapping is gone from the page tables and, in strict mode, from the IOMMU's TLBs.
 *
 * The kernel model maps and unmaps; the device model moves the bytes through its IOMMU's DMA port.
 * The outcome is "ok" or the first step that went wrong, in words.
 */

import type { DmaOp, PlatformDmaMaster } from '../hw/devices/platform-master.ts';
import type { Device } from '../kernel/base/device.ts';
import type { Kernel } from '../kernel/init/kernel.ts';
import { IOMMU_DOMAIN_IDENTITY } from '../kernel/iommu/domain.ts';
import type { Machine } from '../platform/machine.ts';

const PAGE = 4096;

function pattern(seed: number): Uint8Array {
  const b = new Uint8Array(64);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

function deviceOp(m: Machine, go: (done: (op: DmaOp) => void) => void): Promise<DmaOp> {
  return m.exec.park<DmaOp>((wake) => go(wake));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Run the proof DMA for `dev` with its hardware `port`; must run inside a kernel task. Returns
 * "ok" or what failed.
 */
export async function proveDmaPath(k: Kernel, dev: Device, port: PlatformDmaMaster): Promise<string> {
  const m = k.machine;
  if (dev.dma.ops !== 'iommu') return `not translated (dma ops ${dev.dma.ops})`;
  const pa = m.pages.alloc(0, `dma-check:${dev.name}`);
  if (pa < 0) return 'no memory for the test page';
  try {
    const cpu = pattern(port.sid + 1);
    m.mem.writeBytes(pa, cpu);
    const iova = k.dma.mapSingle(dev, pa, PAGE, 'bidirectional');
    if (iova < 0) return 'dma_map_single failed (DMA_MAPPING_ERROR)';
    const rd = await deviceOp(m, (done) => port.read(iova, cpu.length, done));
    if (rd.state !== 'done') {
      await k.dma.unmapSingle(dev, iova, PAGE, 'bidirectional');
      return `device read of the mapped page failed (${rd.state} at 0x${Math.max(rd.errorAddr, iova).toString(16)})`;
    }
    if (rd.data === null || !same(rd.data, cpu)) {
      await k.dma.unmapSingle(dev, iova, PAGE, 'bidirectional');
      return 'device read other bytes than the CPU wrote';
    }
    const devBytes = pattern(port.sid + 7);
    const wr = await deviceOp(m, (done) => port.write(iova, devBytes.slice(), done));
    if (wr.state !== 'done') {
      await k.dma.unmapSingle(dev, iova, PAGE, 'bidirectional');
      return `device write through the mapping failed (${wr.state})`;
    }
    const back = new Uint8Array(devBytes.length);
    m.mem.readBytes(pa, back);
    if (!same(back, devBytes)) {
      await k.dma.unmapSingle(dev, iova, PAGE, 'bidirectional');
      return 'the device write did not reach the page';
    }
    await k.dma.unmapSingle(dev, iova, PAGE, 'bidirectional');
    // an identity domain (iommu.passthrough=1, or the driver asked for one) translates 1:1 and
    // isolates nothing: the access after unmap reaches memory, as it would on Linux
    if (k.iommu.groupOf(dev)?.domain?.type === IOMMU_DOMAIN_IDENTITY)
      return 'ok (identity domain: no isolation)';
    // lazy mode: the IOVA is still in the TLB until the flush queue runs; flush it as a driver's
    // teardown would before it checks isolation
    if (!k.iommu.strict) await k.dma.flushQueue(dev);
    const after = await deviceOp(m, (done) => port.read(iova, 4, done));
    if (after.state === 'done')
      return `device access after dma_unmap_single did not fault (0x${iova.toString(16)})`;
    return 'ok';
  } finally {
    m.pages.freePages(pa);
  }
}
