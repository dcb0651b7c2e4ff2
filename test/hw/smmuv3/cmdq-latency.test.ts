/**
 * The command queue consumes one command per `cmdLatencyNs` of virtual time, whatever the
 * commands do: an endpoint that acknowledges CMD_ATC_INV at once (which wakes the queue to
 * re-check a waiting CMD_SYNC) must not start a second consumer, even when the driver publishes
 * its next commands the moment a sync completes.
 */
import { describe, expect, it } from 'vitest';
import { SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { RecDriver, RecordingMaster } from './recoverable-helpers.ts';

const LATENCY = 100;

describe('SMMUv3 command queue timing', () => {
  it('commands are never consumed faster than the configured latency (ATC_INV acknowledged at once)', () => {
    const d = new RecDriver({ cmdLatencyNs: LATENCY }).init({ atschk: true });
    const dev = new RecordingMaster(d.m);
    dev.ackDelayNs = 0; // the endpoint acknowledges inside CMD_ATC_INV
    d.smmu.upstream.attach(8, dev);
    const wrap = (2 << d.cmdqLog2) - 1;
    const consumedAt: number[] = [];
    let cons = d.cons & wrap;
    const publish = () => {
      d.cmd('ATC_INV', { StreamID: 8, Size: 0, Address: 0x1000 }, false);
      d.cmd('SYNC', { CS: 0 });
    };
    const PAIRS = 20;
    let published = 1;
    publish();
    // a driver that publishes the next pair as soon as CONS passed the previous sync
    while (d.m.sched.step()) {
      const c = d.cons & wrap;
      while (cons !== c) {
        consumedAt.push(d.m.sched.now);
        cons = (cons + 1) & wrap;
      }
      if (c === d.prod && published < PAIRS) {
        publish();
        published++;
      }
    }
    expect(consumedAt).toHaveLength(2 * PAIRS);
    expect(d.r32(SMMU_REG.CMDQ_CONS) & wrap).toBe(d.prod);
    const gaps = consumedAt.slice(1).map((t, i) => t - consumedAt[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(LATENCY);
    expect(consumedAt.at(-1)! - consumedAt[0]!).toBe((2 * PAIRS - 1) * LATENCY);
  });
});
