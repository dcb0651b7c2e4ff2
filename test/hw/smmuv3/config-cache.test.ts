/**
 * The configuration cache's CD invalidations are scoped like the TLB's: CFGI_STE,
 * CFGI_STE_RANGE and CFGI_CD_ALL examine only the CDs of the streams they name (counted by
 * stats.cdVisited), keep every other stream's CDs, and drop exactly the right ones — checked
 * against a plain reference model under random fills, evictions and invalidations.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVT_ID } from '../../../src/arch/smmuv3/event.ts';
import { ConfigCache, type ContextConfig, type StreamConfig } from '../../../src/hw/smmuv3/config.ts';
import { PORT_BYPASS, PORT_FAULT, PortResult } from '../../../src/hw/smmuv3/port.ts';
import { PageTable, SmmuDriver, s1Leaf } from './device-driver.ts';

const cd = (sid: number, index: number) => ({ sid, index, ref: false }) as unknown as ContextConfig;
const ste = (sid: number) => ({ sid, ref: false }) as unknown as StreamConfig;

/** `streams` streams with `perStream` CDs each. */
function filled(streams: number, perStream: number, cap = 1 << 16): ConfigCache {
  const c = new ConfigCache(cap, cap);
  for (let s = 0; s < streams; s++) {
    c.insertSte(ste(s));
    for (let i = 0; i < perStream; i++) c.insertCd(cd(s, i));
  }
  return c;
}

describe('configuration cache: scoped CD invalidation', () => {
  it('CFGI_STE and CFGI_CD_ALL visit only their stream, however full the CD cache is', () => {
    for (const streams of [2, 500]) {
      const c = filled(streams, 8);
      c.invalidateSte(1);
      expect(c.stats.cdVisited).toBe(8);
      expect(c.stats.cdInvalidations).toBe(8);
      expect(c.lookupCd(1, 3)).toBeUndefined();
      expect(c.lookupCd(0, 3)).toBeDefined(); // the other streams' CDs stay
      expect(c.cdCount).toBe((streams - 1) * 8);
      c.invalidateCdAll(0);
      expect(c.stats.cdVisited).toBe(16);
      expect(c.lookupSte(0)).toBeDefined(); // CFGI_CD_ALL leaves the STE
      expect(c.cdCount).toBe((streams - 2) * 8);
    }
  });

  it('CFGI_STE_RANGE visits the CDs of the streams in range only', () => {
    const c = filled(1000, 4);
    c.invalidateSteRange(256, 256);
    expect(c.stats.cdVisited).toBe(256 * 4);
    expect(c.cdCount).toBe(744 * 4);
    expect(c.lookupCd(255, 0)).toBeDefined();
    expect(c.lookupCd(256, 0)).toBeUndefined();
    expect(c.lookupCd(511, 3)).toBeUndefined();
    expect(c.lookupCd(512, 0)).toBeDefined();
    // a range far bigger than the cache walks the cached streams instead of every StreamID
    c.invalidateSteRange(0, 2 ** 20);
    expect(c.stats.cdVisited).toBe(1000 * 4);
    expect(c.cdCount).toBe(0);
  });

  it('matches a reference model under random fills (with evictions) and invalidations', () => {
    type Op =
      | { k: 'fill'; sid: number; index: number }
      | { k: 'ste'; sid: number }
      | { k: 'range'; first: number; count: number }
      | { k: 'cd'; sid: number; index: number }
      | { k: 'cdAll'; sid: number }
      | { k: 'all' };
    const sid = fc.nat(15);
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ k: fc.constant('fill' as const), sid, index: fc.nat(7) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('ste' as const), sid }) },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('range' as const),
          first: sid,
          count: fc.integer({ min: 1, max: 40 }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('cd' as const), sid, index: fc.nat(7) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('cdAll' as const), sid }) },
      { weight: 1, arbitrary: fc.constant({ k: 'all' as const }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 24 }), fc.array(op, { maxLength: 120 }), (cap, ops) => {
        const c = new ConfigCache(64, cap);
        const ref = new Set<string>(); // "sid:index" of the cached CDs
        for (const o of ops) {
          if (o.k === 'fill') {
            if (c.lookupCd(o.sid, o.index) === undefined) c.insertCd(cd(o.sid, o.index));
            ref.add(`${o.sid}:${o.index}`);
          } else if (o.k === 'ste') c.invalidateSte(o.sid);
          else if (o.k === 'range') c.invalidateSteRange(o.first, o.count);
          else if (o.k === 'cd') c.invalidateCd(o.sid, o.index);
          else if (o.k === 'cdAll') c.invalidateCdAll(o.sid);
          else c.invalidateAll();
          const drop = (p: (s: number, i: number) => boolean) => {
            for (const e of [...ref]) {
              const [s, i] = e.split(':').map(Number) as [number, number];
              if (p(s, i)) ref.delete(e);
            }
          };
          if (o.k === 'ste' || o.k === 'cdAll') drop((s) => s === o.sid);
          else if (o.k === 'range') drop((s) => s >= o.first && s < o.first + o.count);
          else if (o.k === 'cd') drop((s, i) => s === o.sid && i === o.index);
          else if (o.k === 'all') ref.clear();
          // the cache holds a subset of the reference (evictions), never a dropped CD
          const held = c.cachedContexts().map((x) => `${x.sid}:${x.index}`);
          for (const h of held) expect(ref.has(h)).toBe(true);
          expect(held.length).toBeLessThanOrEqual(cap);
          // evicted entries leave the reference too (the model has no capacity)
          for (const e of [...ref]) if (!held.includes(e)) ref.delete(e);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("through the command queue: CFGI_STE of one stream keeps the other stream's CD cached", () => {
    const d = new SmmuDriver().init();
    const IOVA = 0x1234_5000;
    for (const [sid, pa] of [
      [1, 0x9000_0000],
      [2, 0x9100_0000],
    ] as const) {
      const pt = new PageTable(d);
      pt.map(IOVA, s1Leaf(pa));
      const cdp = d.alloc(4096);
      d.writeCd(cdp, d.s1Cd(pt.root, sid));
      d.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: cdp });
    }
    const r = new PortResult();
    for (const sid of [1, 2]) d.smmu.port.translate(sid, -1, IOVA, 0, r);
    const stats = d.smmu.cache.stats;
    const fills = stats.cdFills;
    d.cmd('CFGI_STE', { StreamID: 1, Leaf: 1 });
    d.sync();
    expect(stats.cdVisited).toBe(1);
    d.smmu.port.translate(2, -1, IOVA, 0, r);
    expect(stats.cdFills).toBe(fills); // stream 2's CD stayed cached
    d.smmu.port.translate(1, -1, IOVA, 0, r);
    expect(stats.cdFills).toBe(fills + 1); // stream 1's was dropped and fetched again
    expect(r.oa).toBe(0x9000_0000);
  });
});

describe('STE.CONT: configuration conflict', () => {
  it('two differing STEs of one contiguous span cached together give F_CFG_CONFLICT; identical ones do not', () => {
    const d = new SmmuDriver().init();
    const san = d.smmu.machine.enableSanitizer('report')!;
    const r = new PortResult();
    // StreamIDs 4 and 5 in a 2-entry span (CONT = 1): 4 bypasses, 5 aborts (they must be identical)
    d.writeSte(4, { V: 1, Config: 0b100, CONT: 1 });
    d.writeSte(5, { V: 1, Config: 0b000, CONT: 1 });
    expect(d.smmu.port.translate(4, -1, 0x1000, 0, r)).toBe(PORT_BYPASS);
    expect(d.smmu.port.translate(5, -1, 0x1000, 0, r)).toBe(PORT_FAULT);
    expect(r.fault).toBe(EVT_ID.F_CFG_CONFLICT);
    expect(d.events().at(-1)).toMatchObject({ name: 'F_CFG_CONFLICT', streamId: 5 });
    expect(san.reports.map((x) => x.text.split('\n')[0])).toEqual([
      `BUG: SMMU configuration conflict: ${d.smmu.name} (StreamID 0x5)`,
    ]);
    expect(san.reports[0]!.text).toMatch(
      /STE\.CONT: the STEs of StreamIDs 0x4 and 0x5 are in one 2-entry span but differ/,
    );
    // the span made consistent, the cached STE invalidated: no conflict
    d.writeSte(5, { V: 1, Config: 0b100, CONT: 1 });
    d.cmd('CFGI_STE', { StreamID: 4, Leaf: 1 });
    d.sync();
    d.writeSte(6, { V: 1, Config: 0b100, CONT: 1 });
    d.writeSte(7, { V: 1, Config: 0b100, CONT: 1 });
    expect(d.smmu.port.translate(6, -1, 0x1000, 0, r)).toBe(PORT_BYPASS);
    expect(d.smmu.port.translate(7, -1, 0x1000, 0, r)).toBe(PORT_BYPASS);
  });
});
