/**
 * The basic demo: a DMA copy engine programmed through MMIO, its MSI, and a bus error.
 *
 * The kernel has booted beside it: its iommu-lab-dma driver bound the virt board's DMA engine 0
 * (dma-controller@a010000) but moves no data, so this demo plays that driver's transfer path. In
 * process context it programs the engine through its registers at 0x0a01_0000, takes an MSI from
 * the machine's MSI allocator (as the SMMUv3 driver did for its queues), waits for the
 * completion interrupt with a timeout, and checks each copy. Engine 0 has no IOMMU in front of it:
 * it copies between physical pages, and the last transfer, aimed at a hole in the address map,
 * ends in a bus error.
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
import { VIRT } from '../../hw/boards/virt.ts';
import { defineScenario } from '../../index.ts';
import { Completion, IRQ_HANDLED, IRQ_NONE } from '../../platform/index.ts';
import { demoInfo, pad } from './index.ts';

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
  transfers: TransferReport[];
  interrupts: number;
  /** Virtual time the demo took (the lab had booted before), ns. */
  elapsedNs: number;
  /** Events the scheduler ran during the demo. */
  schedulerEvents: number;
  /** Pages the demo left allocated (it frees what it allocates). */
  pagesLeaked: number;
}

/** No RAM and no device here: a transfer into it is a bus error. */
const HOLE = 0x4000;
const hex = (v: number) => `0x${v.toString(16)}`;

export default defineScenario<BasicDemoResult>({
  ...demoInfo('basic'),

  async run({ lab, expect, fail, rng }) {
    const m = lab.machine;
    const base = VIRT.DMA0_BASE;
    const engine = lab.board.virt?.dma0 ?? fail('the basic demo needs the virt board (DMA engine 0)');
    const start = { ns: lab.now, events: m.sched.executed, pages: m.pages.usedPages };
    const transfers: TransferReport[] = [];
    const [msi] = m.irq.allocMsi(1);
    if (msi === undefined) fail('no MSI left');
    const done = new Completion(m.exec);
    let lastStatus = 0;

    const readl = (off: number) => m.mem.read32(base + off);
    const writel = (off: number, v: number) => m.mem.write32(base + off, v);
    const writeq = (off: number, v: number) => m.mem.write64n(base + off, v);

    m.irq.requestIrq(msi.irq, engine.name, () => {
      const st = readl(R.STATUS);
      if (!(st & (DMA_STATUS_DONE | DMA_STATUS_ERROR))) return IRQ_NONE;
      lastStatus = st;
      writel(R.STATUS, st); // W1C
      done.complete();
      return IRQ_HANDLED;
    });

    m.trace.emit('dma-demo', 'probe', `dma-engine at ${hex(base)}, id ${hex(readl(R.ID))}, MSI ${msi.irq}`);
    writeq(R.MSI_ADDR, msi.address);
    writel(R.MSI_DATA, msi.data);
    const plan: Array<{ order: number; hole: boolean }> = [];
    for (let i = 0; i < 3; i++) plan.push({ order: rng.int(0, 4), hole: false });
    plan.push({ order: 0, hole: true });
    for (const [index, p] of plan.entries()) {
      const bytes = 4096 << p.order;
      const src = lab.allocPages(p.order, 'dma-demo src');
      const dst = p.hole ? HOLE : lab.allocPages(p.order, 'dma-demo dst');
      const data = rng.bytes(bytes);
      lab.write(src, data);
      writeq(R.SRC, src);
      writeq(R.DST, dst);
      writel(R.LEN, bytes);
      const startNs = lab.now;
      writel(R.CTRL, DMA_CTRL_START | DMA_CTRL_IRQ_EN);
      const ok = await done.waitTimeout(1_000_000);
      const rep: TransferReport = {
        index,
        src: hex(src),
        dst: hex(dst),
        bytes,
        status: 'ok',
        startNs,
        endNs: lab.now,
        errorAddress: null,
      };
      if (!ok) rep.status = 'timeout';
      else if (lastStatus & DMA_STATUS_ERROR) {
        rep.status = 'bus-error';
        rep.errorAddress = hex(readl(R.ERR_ADDR + 4) * 2 ** 32 + readl(R.ERR_ADDR));
        m.trace.emit(
          'dma-demo',
          'error',
          `transfer ${index} failed: bus error at ${rep.errorAddress}`,
          {},
          'err',
        );
      } else {
        if (!Buffer.from(lab.read(dst, bytes)).equals(Buffer.from(data))) rep.status = 'mismatch';
        m.trace.emit(
          'dma-demo',
          'verify',
          `transfer ${index}: ${bytes} bytes ${rep.status === 'ok' ? 'verified' : 'CORRUPT'} in ${rep.endNs - startNs} ns`,
        );
      }
      transfers.push(rep);
      lab.freePages(src);
      if (!p.hole) lab.freePages(dst);
    }
    m.irq.freeIrq(msi.irq);

    const result: BasicDemoResult = {
      transfers,
      interrupts: m.irq.count(msi.irq),
      elapsedNs: lab.now - start.ns,
      schedulerEvents: m.sched.executed - start.events,
      pagesLeaked: m.pages.usedPages - start.pages,
    };
    expect(
      transfers.map((t) => t.status),
      'transfer outcomes (the last one aims at a hole)',
    ).toEqual(['ok', 'ok', 'ok', 'bus-error']);
    expect(result.interrupts, 'completion MSIs').toBe(transfers.length);
    expect(result.pagesLeaked, 'pages left allocated').toBe(0);
    return result;
  },

  report(r) {
    return [
      `${r.transfers.length} transfers in ${r.elapsedNs} ns of virtual time, ${r.schedulerEvents} scheduler events`,
      '  #  bytes    src          dst          status     time',
      ...r.transfers.map(
        (t) =>
          `  ${t.index}  ${pad(t.bytes, 7)}  ${pad(t.src, 11)}  ${pad(t.dst, 11)}  ${pad(t.status, 9)}  ${t.endNs - t.startNs} ns${t.errorAddress ? ` (at ${t.errorAddress})` : ''}`,
      ),
      `  interrupts: ${r.interrupts}, pages left allocated: ${r.pagesLeaked}`,
    ];
  },
});
