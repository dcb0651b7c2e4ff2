/**
 * Demo scenarios: each runs on a fresh machine and returns a JSON-able result; its text form
 * is the machine's kernel-style log (printed as it runs) plus `summary(result)`.
 */

import type { Machine } from '../../platform/machine.ts';
import { type BasicDemoResult, runBasicDemo } from './basic.ts';
import { runSmmuDemo, type SmmuDemoResult } from './smmu.ts';

export interface Scenario<R = unknown> {
  name: string;
  summary: string;
  run(m: Machine): Promise<R>;
  /** Human-readable lines after the log. */
  report(r: R): string[];
  /** Exit status: 0 when the scenario behaved as designed. */
  ok(r: R): boolean;
}

const pad = (s: string | number, n: number) => String(s).padEnd(n);

const smmu: Scenario<SmmuDemoResult> = {
  name: 'smmu',
  summary:
    'boot the virt board, bind the SMMUv3 driver, DMA from the GPU and a PCIe device through the DMA API, and a translation fault',
  run: runSmmuDemo,
  report(r) {
    const lines = [
      `demo 'smmu' (seed ${r.seed}): ${r.virtualTimeNs} ns of virtual time`,
      `SMMU ${r.smmu.path}: ${r.smmu.state} (${r.smmu.features.join(', ')})`,
      '',
      'transfers:',
      ...r.transfers.map(
        (t) =>
          `  ${pad(t.device, 34)} ${pad(t.bytes, 6)} bytes at iova ${pad(t.iova, 12)} ${t.ok ? 'ok' : 'FAILED'}`,
      ),
      `fault: ${r.fault.device} read iova ${r.fault.iova}: ${r.fault.eventsLogged} event(s) logged, ${r.fault.stalledThenAborted} stalled transaction(s) aborted`,
      '',
      `${pad('device', 34)} ${pad('sid', 6)} ${pad('translations', 12)} ${pad('faults', 7)} ${pad('TLB hit rate', 13)} ${pad('commands', 9)} ATS requests`,
    ];
    for (const d of r.devices) {
      const rate = d.tlbHitRate === null ? '-' : `${(d.tlbHitRate * 100).toFixed(1)}%`;
      lines.push(
        `${pad(d.device, 34)} ${pad(d.streamId, 6)} ${pad(d.translations, 12)} ${pad(d.faults, 7)} ${pad(rate, 13)} ${pad(d.commands, 9)} ${d.atsTranslationRequests ?? '-'}`,
      );
    }
    if (r.bugs.length) lines.push('', `bugs: ${r.bugs.join('; ')}`);
    return lines;
  },
  ok: (r) => r.transfers.every((t) => t.ok) && r.fault.eventsLogged > 0 && r.bugs.length === 0,
};

const basic: Scenario<BasicDemoResult> = {
  name: 'basic',
  summary: 'the bare machine: a DMA copy engine programmed through MMIO, MSI completion, one bus error',
  run: runBasicDemo,
  report(r) {
    return [
      `demo 'basic' (seed ${r.seed}): ${r.virtualTimeNs} ns of virtual time, ${r.schedulerEvents} events`,
      '  #  bytes    src          dst          status     time',
      ...r.transfers.map(
        (t) =>
          `  ${t.index}  ${pad(t.bytes, 7)}  ${pad(t.src, 11)}  ${pad(t.dst, 11)}  ${pad(t.status, 9)}  ${t.endNs - t.startNs} ns${t.errorAddress ? ` (at ${t.errorAddress})` : ''}`,
      ),
      `  interrupts: ${r.interrupts}, pages still allocated: ${r.pagesInUse}, bugs: ${r.bugs.length}`,
    ];
  },
  ok: (r) =>
    r.bugs.length === 0 &&
    r.transfers.every((t) =>
      t.index === r.transfers.length - 1 ? t.status === 'bus-error' : t.status === 'ok',
    ),
};

/** Every scenario; the first is the default. */
export const scenarios: Scenario<never>[] = [smmu, basic] as unknown as Scenario<never>[];
