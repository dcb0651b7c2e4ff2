/**
 * Page lifecycle tracking (issue 20 item 1): per frame, whether it is free or allocated, by which
 * kind of allocation, and a generation that changes at every allocation and free; with the
 * sanitizer on, the allocation and free sites.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../src/platform/machine.ts';
import {
  MEM_COHERENT,
  MEM_CONFIG,
  MEM_FREE,
  MEM_PAGE,
  MEM_PGTABLE,
  MEM_QUEUE,
  MEM_SWIOTLB,
  memKindOfOwner,
  ORIGIN_WALK,
} from '../../src/platform/sanitizer.ts';

describe('page lifecycle', () => {
  it('kind from the owner tag, generation bumped at allocation and free, every frame of a block', () => {
    const m = new Machine();
    const p = m.pages;
    const a = p.alloc(2, 'io-pgtable');
    expect(p.frameInfo(a)).toEqual({ kind: MEM_PGTABLE, generation: 1 });
    expect(p.frameInfo(a + 3 * 4096)).toEqual({ kind: MEM_PGTABLE, generation: 1 });
    p.freePages(a);
    expect(p.frameInfo(a + 3 * 4096)).toEqual({ kind: MEM_FREE, generation: 2 });
    const b = p.alloc(0, 'dma-coherent:nic');
    expect(b).toBe(a); // LIFO: the freed block is reused
    expect(p.frameInfo(b)).toEqual({ kind: MEM_COHERENT, generation: 3 });
    expect(p.frameInfo(0)).toBeUndefined();
    expect(
      ['page', 'swiotlb', 'smmuv3.0 strtab-l2', 'smmuv3.0 cdtab', 'smmuv3.0 cmdq', 'io-pgtable'].map(
        memKindOfOwner,
      ),
    ).toEqual([MEM_PAGE, MEM_SWIOTLB, MEM_CONFIG, MEM_CONFIG, MEM_QUEUE, MEM_PGTABLE]);
  });

  it('with the sanitizer on: allocation and free sites, and a free sequence that dates each free', () => {
    const m = new Machine();
    const san = m.enableSanitizer('report')!;
    const pa = m.pages.alloc(0, 'buffer');
    const seqBefore = san.seq;
    m.pages.freePages(pa);
    expect(san.seq).toBe(seqBefore + 1);
    // a device access through a translation older than the free is reported, with both sites
    san.checkDma('dev', 1, -1, 0x1000, pa, 8, true, {
      origin: ORIGIN_WALK,
      fillSeq: seqBefore,
      fillTime: 0,
      ctx: -1,
      tbl: -1,
    });
    const [r] = san.reports;
    expect(r!.kind).toBe('use-after-free');
    expect(r!.allocSite).toMatch(/page-lifecycle\.test\.ts/);
    expect(r!.freeSite).toMatch(/page-lifecycle\.test\.ts/);
  });

  it('off: no sanitizer, nothing recorded beyond kind and generation', () => {
    const m = new Machine();
    expect(m.sanitizer).toBeNull();
    expect(m.enableSanitizer('off')).toBeNull();
  });
});
