/**
 * Demo 'gpu-crash-dump': the problem the fault API exists for.
 *
 * The GPU (64 warps, `dma-can-stall`) executes a FILL whose destination is a bad pointer: a
 * 16 MiB region nothing maps. Every warp faults on its part of it, and each faulting write is
 * stalled by the SMMU. The GPU driver registered a fault handler for the device that wants
 * only the first fault of a burst: it sees that one while the transaction is still stalled,
 * and from a workqueue (where it may sleep) snapshots the GPU's registers and the command ring,
 * then answers the fault INVALID, which the SMMUv3 driver turns into CMD_RESUME (abort). The
 * thousands of follow-on faults are answered by the core at once (abort) without reaching the
 * handler. The result lists every fault and response with its virtual time.
 */

import { GpuOp, GpuReg } from '../../arch/devices/gpu.ts';
import { defineScenario, IOMMU_FAULT_PAGE_REQ, IOMMU_PAGE_RESP_INVALID, permString } from '../../index.ts';
import type { GpuDevice } from '../../kernel/drivers/gpu/iommu-lab-gpu.ts';
import { type DemoFault, type DemoResponse, demoFault, recordFaults } from './fault-log.ts';
import { demoInfo, pad } from './index.ts';

export interface GpuCrashDumpResult {
  badPointer: string;
  bytes: number;
  warps: number;
  /** The snapshot the handler's work item took while the first fault was stalled. */
  snapshot: {
    t: number;
    fault: DemoFault;
    registers: Record<string, string>;
    ring: Array<{ slot: number; command: string; current: boolean }>;
    stalledAtSnapshot: number;
  } | null;
  handlerCalls: number;
  faultsReported: number;
  suppressed: number;
  responses: { success: number; invalid: number; failure: number };
  /** CMD_RESUME commands the SMMUv3 driver issued for the responses. */
  resumes: number;
  stalledAfter: number;
  fenceCompleted: boolean;
  gpuFaultCount: number;
  faults: DemoFault[];
  responseList: DemoResponse[];
}

const WARPS = 64;
const hex = (v: number) => `0x${v.toString(16)}`;

export default defineScenario<GpuCrashDumpResult>({
  ...demoInfo('gpu-crash-dump'),
  // a wide GPU: 64 warps fault at once
  virt: { gpu: { warps: WARPS } },

  async run({ lab, expect, fail, rng }) {
    const board = lab.board.virt ?? fail('the gpu-crash-dump demo runs on the virt board');
    const m = lab.machine;
    const gpuDev = lab.device('/soc/gpu@a000000');
    const gpu = gpuDev.driverData as GpuDevice;
    const log = recordFaults(lab, gpuDev);
    // a bad pointer somewhere in the GPU's IOVA space, page aligned (the seed picks it)
    const bad = 0x40_0000_0000 + rng.int(0, 0xffff) * 0x100_0000;
    const bytes = 16 << 20;
    let snapshot: GpuCrashDumpResult['snapshot'] = null;
    let handlerCalls = 0;

    // the GPU driver's fault setup: stall faults on the iopf queue, one handler, first fault only
    expect(await lab.faults.enableIopf(gpuDev), 'enable IOPF').toBe(0);
    const wq = lab.workqueue('gpu-crashdump', { ordered: true });
    const registered = lab.faults.registerDeviceFaultHandler(
      gpuDev,
      (fault, ctx) => {
        // IRQ thread, fault lock held: no sleeping here; the dump runs from a workqueue
        handlerCalls++;
        const g = ctx.group;
        const gd = ctx.data as GpuDevice;
        if (g === null || fault.type !== IOMMU_FAULT_PAGE_REQ) return -22;
        wq.queueFn('crash dump', async () => {
          const regs = gd.snapshotRegs();
          const takenAt = lab.now;
          const cur = regs.CMD_SLOT!;
          const ring = gd.ringAround(cur).map(({ slot, current, command: c }) => ({
            slot,
            current,
            command:
              c.op === GpuOp.FILL || c.op === GpuOp.FENCE
                ? `${c.name} dst=${hex(c.a)} value=${hex(c.value)} len=${c.len}`
                : `${c.name} a=${hex(c.a)} b=${hex(c.b)} len=${c.len}`,
          }));
          // writing the dump out takes a while (sleeps: allowed here, not in the handler)
          await lab.sleep(20_000);
          const registers: Record<string, string> = {};
          for (const [n, v] of Object.entries(regs)) registers[n] = hex(v);
          snapshot = {
            t: takenAt,
            fault: demoFault(fault.time, fault, 'delivered', g.id),
            registers,
            ring,
            stalledAtSnapshot: regs.STALL_COUNT!,
          };
          m.trace.emit(
            'gpu-crashdump',
            'dump',
            `crash dump: fault at ${hex(fault.addr)} ${permString(fault.perm)}, FAULT_STATUS ${registers.FAULT_STATUS}, FAULT_COUNT ${regs.FAULT_COUNT}, STALL_COUNT ${regs.STALL_COUNT}, slot ${cur}: ${ring.find((x) => x.current)?.command}`,
            {},
            'warn',
          );
          // now let the stalled transaction go: abort it
          const pr = await lab.faults.pageResponse(gd.dev, {
            grpid: fault.grpid,
            code: IOMMU_PAGE_RESP_INVALID,
          });
          if (pr !== 0) m.trace.emit('gpu-crashdump', 'resume', `page response failed: ${pr}`, {}, 'err');
        });
        return 0;
      },
      gpu,
      { firstOfBurst: { quietNs: 2_000_000 } },
    );
    expect(registered, 'register the fault handler').toBe(0);

    // the job: a FILL through a bad pointer, then a fence
    gpu.submit({ op: GpuOp.FILL, a: bad, value: 0xdeadbeef, len: bytes });
    const fenceCompleted = await gpu.fenceWait(1_000_000_000);
    await wq.flush();
    // the storm drains: every reported fault answered, nothing left stalled in the SMMU
    const stalled = () => board.smmu.upstream.stalledCount(board.gpu.sid);
    await lab.waitFor(() => log.responses.length === log.faults.length && stalled() === 0);

    const st = lab.faults.deviceStats(gpuDev) ?? fail('no fault statistics for the GPU');
    const result: GpuCrashDumpResult = {
      badPointer: hex(bad),
      bytes,
      warps: WARPS,
      snapshot,
      handlerCalls,
      faultsReported: st.reported,
      suppressed: st.suppressed,
      responses: { ...st.responses },
      resumes: lab.kernel.smmuFaults[0]!.stats.resumes,
      stalledAfter: stalled(),
      fenceCompleted,
      gpuFaultCount: gpu.regs.readl(GpuReg.FAULT_COUNT),
      faults: log.faults,
      responseList: log.responses,
    };
    expect(result.snapshot, 'the crash dump').not.toBe(null);
    expect(handlerCalls, 'faults the handler saw').toBeGreaterThanOrEqual(1);
    expect(result.suppressed, 'follow-on faults the core answered').toBeGreaterThanOrEqual(1000);
    expect(result.stalledAfter, 'transactions left stalled').toBe(0);
    expect(fenceCompleted, 'the job reached its fence').toBe(true);
    return result;
  },

  report(r) {
    const s = r.snapshot;
    const lines = [`job: FILL ${r.bytes} bytes at bad pointer ${r.badPointer} on ${r.warps} warps`, ''];
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
    return lines;
  },
});
