// Property: whatever a random driver does (RESUME retry/abort with right or stale STAGs,
// STALL_TERM, SMMUEN off/on, CFGI, mapping pages, more faulting traffic), every transaction that
// stalled is completed exactly once, and nothing stays held once the streams are terminated.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CR0 } from '../../../src/arch/smmuv3/regs.ts';
import { PORT_STALLED, type PortResult } from '../../../src/hw/smmuv3/port.ts';
import type { UpstreamMaster } from '../../../src/hw/smmuv3/upstream.ts';
import { s1Leaf } from './device-driver.ts';
import { CR0_ALL, PortResult as PR, RecDriver } from './recoverable-helpers.ts';

const SIDS = [2, 3];
const BASE = 0x6000_0000;

type Op =
  | { k: 'dma'; sid: number; page: number; write: boolean }
  | { k: 'resume'; pick: number; retry: boolean; abort: boolean; stale: boolean }
  | { k: 'term'; sid: number }
  | { k: 'toggle' }
  | { k: 'cfgi'; sid: number }
  | { k: 'map'; sid: number; page: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant('dma' as const),
    sid: fc.constantFrom(...SIDS),
    page: fc.nat(7),
    write: fc.boolean(),
  }),
  fc.record({
    k: fc.constant('resume' as const),
    pick: fc.nat(),
    retry: fc.boolean(),
    abort: fc.boolean(),
    stale: fc.boolean(),
  }),
  fc.record({ k: fc.constant('term' as const), sid: fc.constantFrom(...SIDS) }),
  fc.record({ k: fc.constant('toggle' as const) }),
  fc.record({ k: fc.constant('cfgi' as const), sid: fc.constantFrom(...SIDS) }),
  fc.record({ k: fc.constant('map' as const), sid: fc.constantFrom(...SIDS), page: fc.nat(7) }),
);

describe('stall model property', () => {
  it('every stalled transaction completes exactly once', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const d = new RecDriver({ stallMax: 6 }).init({ evtqLog2: 2 });
        const pts = new Map(SIDS.map((sid) => [sid, d.s1Stream(sid, { S: 1 })]));
        let nextId = 0;
        const outstanding = new Map<string, number>(); // "sid:stag" -> transaction id
        const completed = new Set<number>();
        const seenStags: Array<[number, number]> = [];
        let errors = 0;
        const master: UpstreamMaster = {
          stallCompleted(sid: number, stag: number, _s: number, _r: PortResult) {
            const key = `${sid}:${stag}`;
            const id = outstanding.get(key);
            if (id === undefined || completed.has(id)) errors++;
            else {
              completed.add(id);
              outstanding.delete(key);
            }
          },
        };
        for (const sid of SIDS) d.smmu.upstream.attach(sid, master);
        const r = new PR();
        let enabled = true;
        for (const o of ops) {
          switch (o.k) {
            case 'dma':
              if (
                d.smmu.port.translate(o.sid, -1, BASE + o.page * 4096, o.write ? 1 : 0, r) === PORT_STALLED
              ) {
                const key = `${o.sid}:${r.stag}`;
                if (outstanding.has(key)) errors++; // STAG reused while outstanding
                outstanding.set(key, nextId++);
                seenStags.push([o.sid, r.stag]);
              }
              break;
            case 'resume': {
              const live = [...outstanding.keys()].map((k) => k.split(':').map(Number) as [number, number]);
              const pool = o.stale || live.length === 0 ? seenStags : live;
              if (pool.length === 0) break;
              const [sid, stag] = pool[o.pick % pool.length]!;
              d.cmd('RESUME', { StreamID: sid, STAG: stag, Ac: o.retry ? 1 : 0, Ab: o.abort ? 1 : 0 });
              d.sync();
              break;
            }
            case 'term':
              d.cmd('STALL_TERM', { StreamID: o.sid });
              d.sync();
              break;
            case 'toggle':
              enabled = !enabled;
              d.setCr0(enabled ? CR0_ALL : CR0.CMDQEN | CR0.EVTQEN);
              break;
            case 'cfgi':
              d.cmd('CFGI_STE', { StreamID: o.sid });
              d.sync();
              break;
            case 'map':
              pts.get(o.sid)!.map(BASE + o.page * 4096, s1Leaf(0x8800_0000 + o.page * 4096));
              break;
          }
          d.events(); // software drains the queue (deferred stall records get written)
          d.run();
          if (d.smmu.stall.count !== outstanding.size) errors++;
        }
        for (const sid of SIDS) d.cmd('STALL_TERM', { StreamID: sid }, false);
        d.sync();
        expect(errors).toBe(0);
        expect(outstanding.size).toBe(0);
        expect(d.smmu.stall.count).toBe(0);
        expect(completed.size).toBe(nextId);
      }),
      { numRuns: 150, seed: 4 },
    );
  });
});
