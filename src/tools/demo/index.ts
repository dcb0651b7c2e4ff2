/**
 * Demo scenarios: each runs on a fresh machine and returns a JSON-able result; its text form
 * is the machine's kernel-style log (printed as it runs) plus `summary(result)`.
 */

import type { Machine } from '../../platform/machine.ts';
import { type BasicDemoResult, runBasicDemo } from './basic.ts';
import { type GpuCrashDumpResult, runGpuCrashDumpDemo } from './gpu-crash-dump.ts';
import { type PriDemoResult, runPriDemo } from './pri.ts';
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

const gpuCrashDump: Scenario<GpuCrashDumpResult> = {
  name: 'gpu-crash-dump',
  summary:
    'a GPU job with a bad pointer: the fault handler snapshots the stalled GPU from a workqueue, then aborts; the fault storm is suppressed',
  run: runGpuCrashDumpDemo,
  report(r) {
    const s = r.snapshot;
    const lines = [
      `demo 'gpu-crash-dump' (seed ${r.seed}): ${r.virtualTimeNs} ns of virtual time`,
      `job: FILL ${r.bytes} bytes at bad pointer ${r.badPointer} on ${r.warps} warps`,
      '',
    ];
    if (s) {
      lines.push(
        `crash dump (taken at ${s.t} ns from a workqueue, ${s.stalledAtSnapshot} transaction(s) stalled):`,
        `  first fault: ${s.fault.type} addr ${s.fault.addr} ${s.fault.perm} grpid (STAG) ${s.fault.grpid} at ${s.fault.t} ns`,
        '  registers:',
      );
      const regs = Object.entries(s.registers);
      for (let i = 0; i < regs.length; i += 4)
        lines.push(
          `    ${regs
            .slice(i, i + 4)
            .map(([n, v]) => `${pad(n, 12)} ${pad(v, 12)}`)
            .join(' ')}`,
        );
      lines.push('  ring:');
      for (const x of s.ring) lines.push(`  ${x.current ? '>' : ' '} slot ${pad(x.slot, 3)} ${x.command}`);
    } else lines.push('NO crash dump was taken');
    const first = r.responseList.find((x) => x.by === 'handler');
    const burst = r.responseList.filter((x) => x.by === 'burst');
    const maxBurst = burst.reduce((a, x) => Math.max(a, x.latencyNs), 0);
    lines.push(
      '',
      `faults reported: ${r.faultsReported} (GPU FAULT_COUNT ${r.gpuFaultCount}); handler called ${r.handlerCalls} time(s); ${r.suppressed} follow-on faults suppressed (answered at once)`,
      `responses: ${r.responses.success} SUCCESS, ${r.responses.invalid} INVALID, ${r.responses.failure} FAILURE -> ${r.resumes} CMD_RESUME`,
      first
        ? `first fault answered ${first.code} by the handler ${first.latencyNs} ns after it was reported (the dump); ${burst.length} suppressed ones answered within ${maxBurst} ns`
        : 'the first fault was never answered by the handler',
      `after the job: ${r.stalledAfter} stalled, fence ${r.fenceCompleted ? 'reached' : 'NOT reached'}`,
      '',
      '  time(ns)        addr               perm  grpid  outcome     response',
    );
    const byGroup = new Map(r.responseList.map((x) => [x.group, x]));
    const shown = r.faults.slice(0, 8);
    for (const f of shown) {
      const resp =
        f.group !== null
          ? byGroup.get(f.group)
          : r.responseList.find((x) => x.t >= f.t && x.grpid === f.grpid);
      lines.push(
        `  ${pad(f.t, 15)} ${pad(f.addr, 18)} ${pad(f.perm, 5)} ${pad(f.grpid ?? '-', 6)} ${pad(f.outcome, 11)} ${resp ? `${resp.code} at ${resp.t} (${resp.by})` : ''}`,
      );
    }
    if (r.faults.length > shown.length)
      lines.push(`  ... ${r.faults.length - shown.length} more (see --json)`);
    if (r.bugs.length) lines.push('', `bugs: ${r.bugs.join('; ')}`);
    return lines;
  },
  ok: (r) =>
    r.snapshot !== null &&
    r.handlerCalls >= 1 &&
    r.suppressed >= 1000 &&
    r.stalledAfter === 0 &&
    r.fenceCompleted &&
    r.bugs.length === 0,
};

const pri: Scenario<PriDemoResult> = {
  name: 'pri',
  summary:
    'a PCIe device with PRI touches unmapped pages; a fault handler maps them on demand and answers, the device retries and completes',
  run: runPriDemo,
  report(r) {
    const lines = [
      `demo 'pri' (seed ${r.seed}): ${r.virtualTimeNs} ns of virtual time`,
      '',
      '  group  time(ns)        pasid  prgi  addr        perm  response                      mapped',
    ];
    for (const g of r.groups) {
      const resp = g.response;
      lines.push(
        `  ${pad(g.group, 6)} ${pad(g.fault.t, 15)} ${pad(g.fault.pasid ?? '-', 6)} ${pad(g.fault.grpid ?? '-', 5)} ${pad(g.fault.addr, 11)} ${pad(g.fault.perm, 5)} ${pad(resp ? `${resp.code}${resp.pasid !== null ? ` pasid ${resp.pasid}` : ''} +${resp.latencyNs} ns` : 'none', 29)} ${g.mappedPa ?? '-'}`,
      );
    }
    lines.push('', 'transfers:');
    for (const t of r.transfers)
      lines.push(
        `  ${pad(t.what, 6)} ${pad(t.pasid === null ? 'RID' : `PASID ${t.pasid}`, 8)} iova ${pad(t.iova, 11)} ${pad(t.bytes, 6)} bytes: ${t.ok ? 'completed' : `failed (${t.why})`}${t.verified ? ', as expected' : ', UNEXPECTED'} in ${t.endNs - t.startNs} ns`,
      );
    lines.push(
      `endpoint: ${r.endpoint.pageRequests} page requests, ${r.endpoint.prgResponses} PRG responses, ${r.endpoint.translationRequests} translation requests, PRI status ${r.endpoint.priStatus}`,
    );
    if (r.bugs.length) lines.push('', `bugs: ${r.bugs.join('; ')}`);
    return lines;
  },
  ok: (r) => r.transfers.length === 3 && r.transfers.every((t) => t.verified) && r.bugs.length === 0,
};

/** Every scenario; the first is the default. */
export const scenarios: Scenario<never>[] = [smmu, basic, gpuCrashDump, pri] as unknown as Scenario<never>[];
