import { describe, expect, it } from 'vitest';
import {
  DmesgSink,
  formatDmesgTime,
  IRQ_HANDLED,
  IRQ_NONE,
  Machine,
  PageAllocator,
  PerfettoSink,
  RingSink,
} from '../../src/platform/index.ts';

describe('interrupts', () => {
  it('delivers an MSI written to the doorbell as a memory store', async () => {
    const m = new Machine();
    const [msi] = m.irq.allocMsi(1);
    const seen: number[] = [];
    m.irq.requestIrq(msi!.irq, 'dev-msi', (irq) => {
      seen.push(irq, m.sched.now);
      return IRQ_HANDLED;
    });
    m.sched.schedule(1000, () => m.mem.write32(msi!.address, msi!.data));
    m.sched.schedule(2000, () => m.mem.write32(msi!.address, 999_999)); // unmapped: dropped
    await m.sched.runUntilIdle();
    expect(seen).toEqual([msi!.irq, 1000 + m.irq.latencyNs]);
  });

  it('re-delivers a level line while it stays asserted and masks a line nobody handles', () => {
    const m = new Machine();
    let n = 0;
    m.irq.requestIrq(33, 'lvl', () => {
      if (++n === 3) m.irq.setLevel(33, false); // the handler clears the device condition
      return IRQ_HANDLED;
    });
    m.irq.setLevel(33, true);
    m.sched.runUntilIdleSync();
    expect(n).toBe(3);
    m.irq.spuriousLimit = 5;
    m.irq.requestIrq(34, 'stuck', () => IRQ_NONE);
    m.irq.setLevel(34, true);
    m.sched.runUntilIdleSync();
    expect(m.irq.count(34)).toBe(5);
    expect(m.bugs.map((b) => b.kind)).toEqual(['irq-nobody-cared']);
  });

  it('refuses a second handler on the same line', () => {
    const m = new Machine();
    expect(m.irq.requestIrq(40, 'a', () => IRQ_HANDLED)).toBe(0);
    expect(m.irq.requestIrq(40, 'b', () => IRQ_HANDLED)).toBe(-16);
  });
});

describe('page allocator', () => {
  it('hands out zeroed, aligned blocks with owners, merges buddies, and reports bad frees', () => {
    const m = new Machine({ ram: [{ base: 0x8000_0000, size: 1 << 20 }] });
    const a = m.pages.alloc(0, 'pgtable');
    m.mem.write32(a, 0xffffffff);
    const b = m.pages.alloc(4, 'cmdq');
    expect(b % (16 * 4096)).toBe(0);
    expect(m.pages.ownerOf(b)).toBe('cmdq');
    expect(m.pages.freePages(a)).toBe(0);
    const a2 = m.pages.alloc(0, 'again');
    expect(a2).toBe(a);
    expect(m.mem.read32(a2)).toBe(0); // zeroed on reuse
    expect(m.pages.freePages(a2)).toBe(0);
    expect(m.pages.freePages(a2)).toBe(-22);
    expect(m.pages.freePages(a + 0x5000)).toBe(-22);
    expect(m.bugs.map((x) => x.kind)).toEqual(['page-double-free', 'page-bad-free']);
    expect(m.bugs[0]!.message).toMatch(/double free of 0x80000000 \(owner was "again"\)/);
    expect(m.pages.freePages(b)).toBe(0);
    expect(m.pages.freeFrames).toBe(256);
    expect(m.pages.alloc(8, 'all')).toBe(0x8000_0000); // buddies merged back into one 1 MiB block
    expect(m.pages.alloc(0, 'none')).toBe(-12);
  });

  it('keeps stale data in a freed page until it is reallocated; init_on_free clears it at free', () => {
    for (const initOnFree of [false, true]) {
      const m = new Machine({ ram: [{ base: 0x8000_0000, size: 1 << 20 }], initOnFree });
      const c = m.pages.alloc(2, 'buf');
      m.mem.write64(c + 0x3ff8, 0x1234, 0x5678);
      m.mem.write32(c, 0xdeadbeef);
      expect(m.pages.freePages(c)).toBe(0);
      // a device (or a use-after-free) reading the freed page sees the old bytes, or zeroes
      expect(m.mem.read32(c)).toBe(initOnFree ? 0 : 0xdeadbeef);
      const d = m.pages.alloc(2, 'again');
      expect(d).toBe(c);
      // either way an allocation is zero throughout (nothing wrote the page while it was free)
      expect(m.mem.read32(d)).toBe(0);
      expect(m.mem.read64(d + 0x3ff8)).toBe(0);
      expect([m.mem.r64[0], m.mem.r64[1]]).toEqual([0, 0]);
    }
    // with init_on_free every free block is zero: RAM written before the allocator takes it over
    // is cleared when it does
    const m = new Machine({ ram: [{ base: 0x8000_0000, size: 1 << 20 }] });
    m.mem.write32(0x8000_1000, 7);
    const pool = new PageAllocator(m.mem, 0x8000_0000, 1 << 20, undefined, true);
    expect(m.mem.read32(0x8000_1000)).toBe(0);
    expect(pool.alloc(8, 'all')).toBe(0x8000_0000);
  });
});

describe('tracing', () => {
  it('formats dmesg time like printk and writes Perfetto JSON', () => {
    expect(formatDmesgTime(123_456)).toBe('[    0.000123]');
    expect(formatDmesgTime(12_345_678_901)).toBe('[   12.345678]');
    const m = new Machine();
    const lines: string[] = [];
    const pf = new PerfettoSink();
    const ring = new RingSink(2);
    m.trace.addSink(new DmesgSink((l) => lines.push(l)));
    m.trace.addSink(pf);
    m.trace.addSink(ring);
    m.sched.schedule(1500, () => m.trace.emit('smmuv3.0', 'cmdq.sync', 'CMD_SYNC complete', { n: 1 }));
    m.sched.schedule(2500, () => m.trace.emit('dma', 'copy', 'copy done', {}, 'info', 800));
    m.sched.schedule(3000, () => m.trace.emit('dma', 'dbg', 'debug only', {}, 'debug'));
    m.sched.runUntilIdleSync();
    expect(lines).toEqual(['[    0.000001] smmuv3.0: CMD_SYNC complete', '[    0.000002] dma: copy done']);
    const j = JSON.parse(pf.toJSON());
    const evs = j.traceEvents.filter((e: { ph: string }) => e.ph !== 'M');
    expect(evs.map((e: { ph: string; ts: number }) => [e.ph, e.ts])).toEqual([
      ['i', 1.5],
      ['X', 2.5],
      ['i', 3],
    ]);
    expect(ring.events().map((e) => e.name)).toEqual(['copy', 'dbg']);
    expect(ring.total).toBe(3);
  });
});
