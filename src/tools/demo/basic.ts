/**
 * The basic demo: one machine, one DMA copy engine on the MMIO bus, a driver in process
 * context that programs it through registers, waits for its MSI (with a timeout timer), and
 * checks the copy — plus one transfer aimed at a hole in the address map, to show a bus error.
 *
 * Everything is a function of the seed.
 */

import {
  DMA_CTRL_IRQ_EN,
  DMA_CTRL_START,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  DmaEngineReg as R,
} from '../../arch/devices/dma-engine.ts';
import { DmaEngine, physicalBus } from '../../hw/devices/dma-engine.ts';
import { Completion, IRQ_HANDLED, IRQ_NONE, type Machine } from '../../platform/index.ts';

export const DMA_ENGINE_BASE = 0x0a01_0000;

export interface TransferReport {
  index: number;
  src: string;
  dst: string;
  bytes: number;
  status: 'ok' | 'bus-error' | 'timeout' | 'mismatch';
  startNs: number;
  endNs: number;
  errorAddress: string | null;
}

export interface BasicDemoResult {
  scenario: 'basic';
  seed: number;
  virtualTimeNs: number;
  transfers: TransferReport[];
  interrupts: number;
  schedulerEvents: number;
  pagesInUse: number;
  bugs: string[];
}

export async function runBasicDemo(m: Machine): Promise<BasicDemoResult> {
  const engine = new DmaEngine(m, physicalBus(m));
  m.mmio.map(DMA_ENGINE_BASE, 0x1000, engine);
  const transfers: TransferReport[] = [];
  const [msi] = m.irq.allocMsi(1);
  if (msi === undefined) throw new Error('no MSI');
  const done = new Completion(m.exec);
  let lastStatus = 0;

  const readl = (off: number) => m.mem.read32(DMA_ENGINE_BASE + off);
  const writel = (off: number, v: number) => m.mem.write32(DMA_ENGINE_BASE + off, v);
  const writeq = (off: number, v: number) => m.mem.write64n(DMA_ENGINE_BASE + off, v);

  m.irq.requestIrq(msi.irq, 'dma-engine', () => {
    const st = readl(R.STATUS);
    if (!(st & (DMA_STATUS_DONE | DMA_STATUS_ERROR))) return IRQ_NONE;
    lastStatus = st;
    writel(R.STATUS, st); // W1C
    done.complete();
    return IRQ_HANDLED;
  });

  const driver = m.exec.spawn('dma-demo', async () => {
    m.trace.emit(
      'dma-demo',
      'probe',
      `dma-engine at 0x${DMA_ENGINE_BASE.toString(16)}, id 0x${readl(R.ID).toString(16)}, MSI ${msi.irq}`,
    );
    writeq(R.MSI_ADDR, msi.address);
    writel(R.MSI_DATA, msi.data);
    const plan: Array<{ order: number; hole: boolean }> = [];
    for (let i = 0; i < 3; i++) plan.push({ order: m.rng.below(5), hole: false });
    plan.push({ order: 0, hole: true });
    for (const [index, p] of plan.entries()) {
      const bytes = 4096 << p.order;
      const src = m.pages.alloc(p.order, 'dma-demo src');
      const dst = p.hole ? 0x4000 : m.pages.alloc(p.order, 'dma-demo dst');
      const data = new Uint8Array(bytes);
      for (let j = 0; j < bytes; j += 4) {
        const r = m.rng.next32();
        data[j] = r;
        data[j + 1] = r >>> 8;
        data[j + 2] = r >>> 16;
        data[j + 3] = r >>> 24;
      }
      m.mem.writeBytes(src, data);
      writeq(R.SRC, src);
      writeq(R.DST, dst);
      writel(R.LEN, bytes);
      const startNs = m.sched.now;
      writel(R.CTRL, DMA_CTRL_START | DMA_CTRL_IRQ_EN);
      const ok = await done.waitTimeout(1_000_000);
      const rep: TransferReport = {
        index,
        src: `0x${src.toString(16)}`,
        dst: `0x${dst.toString(16)}`,
        bytes,
        status: 'ok',
        startNs,
        endNs: m.sched.now,
        errorAddress: null,
      };
      if (!ok) rep.status = 'timeout';
      else if (lastStatus & DMA_STATUS_ERROR) {
        rep.status = 'bus-error';
        rep.errorAddress = `0x${(readl(R.ERR_ADDR + 4) * 2 ** 32 + readl(R.ERR_ADDR)).toString(16)}`;
        m.trace.emit(
          'dma-demo',
          'error',
          `transfer ${index} failed: bus error at ${rep.errorAddress}`,
          {},
          'err',
        );
      } else {
        const got = new Uint8Array(bytes);
        m.mem.readBytes(dst, got);
        if (!Buffer.from(got).equals(Buffer.from(data))) rep.status = 'mismatch';
        m.trace.emit(
          'dma-demo',
          'verify',
          `transfer ${index}: ${bytes} bytes ${rep.status === 'ok' ? 'verified' : 'CORRUPT'} in ${rep.endNs - startNs} ns`,
        );
      }
      transfers.push(rep);
      m.pages.freePages(src);
      if (!p.hole) m.pages.freePages(dst);
    }
  });

  await m.sched.runUntilIdle();
  if (!driver.finished) throw new Error('demo driver did not finish');
  return {
    scenario: 'basic',
    seed: m.seed,
    virtualTimeNs: m.sched.now,
    transfers,
    interrupts: m.irq.count(msi.irq),
    schedulerEvents: m.sched.executed,
    pagesInUse: m.pages.usedPages,
    bugs: m.bugs.map((b) => b.message),
  };
}
