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

import { decodeGpuCommand, GPU_CMD_BYTES, GpuOp, GpuReg } from '../../arch/devices/gpu.ts';
import { createVirtBoard } from '../../hw/boards/virt.ts';
import type { GpuDevice } from '../../kernel/drivers/gpu/iommu-lab-gpu.ts';
import { GPU_RING_LOG2 } from '../../kernel/drivers/gpu/iommu-lab-gpu.ts';
import { Kernel } from '../../kernel/init/kernel.ts';
import {
  hasPasid,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_PAGE_RESP_INVALID,
  type IommuFault,
  PAGE_RESP_NAMES,
  permString,
} from '../../kernel/iommu/fault/fault.ts';
import type { FaultRecord } from '../../kernel/iommu/fault/io-pgfault.ts';
import { DEFAULT_PLATFORM_DTS } from '../../kernel/of/default-platform.ts';
import { parseDts } from '../../kernel/of/dts.ts';
import type { Machine } from '../../platform/machine.ts';

export interface DemoFault {
  /** Virtual time of the report, ns. */
  t: number;
  type: 'page-request' | 'unrecoverable';
  addr: string;
  pasid: number | null;
  grpid: number | null;
  perm: string;
  /** What the core did with it: delivered to the handler, suppressed (burst), ... */
  outcome: string;
  group: number | null;
}

export interface DemoResponse {
  t: number;
  group: number;
  grpid: number;
  pasid: number | null;
  code: string;
  by: string;
  latencyNs: number;
}

export interface GpuCrashDumpResult {
  scenario: 'gpu-crash-dump';
  seed: number;
  virtualTimeNs: number;
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
  bugs: string[];
}

const hex = (v: number) => `0x${v.toString(16)}`;

export function demoFault(t: number, f: IommuFault, outcome: string, group: number | null): DemoFault {
  const pr = f.type === IOMMU_FAULT_PAGE_REQ;
  const pasidValid = hasPasid(f);
  return {
    t,
    type: pr ? 'page-request' : 'unrecoverable',
    addr: hex(f.addr),
    pasid: pasidValid ? f.pasid : null,
    grpid: pr ? f.grpid : null,
    perm: permString(f.perm),
    outcome,
    group,
  };
}

export function demoResponse(r: Extract<FaultRecord, { kind: 'response' }>): DemoResponse {
  return {
    t: r.time,
    group: r.groupId,
    grpid: r.grpid,
    pasid: r.pasid,
    code: PAGE_RESP_NAMES[r.code],
    by: r.by,
    latencyNs: r.latencyNs,
  };
}

export async function runGpuCrashDumpDemo(m: Machine): Promise<GpuCrashDumpResult> {
  const warps = 64;
  const board = createVirtBoard(m, { gpu: { warps } });
  const k = new Kernel({ machine: m, tree: parseDts(DEFAULT_PLATFORM_DTS) });
  await k.boot();
  const gpuDev = k.device('/soc/gpu@a000000');
  if (gpuDev === undefined) throw new Error('no GPU');
  const gpu = gpuDev.driverData as GpuDevice;
  const faults: DemoFault[] = [];
  const responseList: DemoResponse[] = [];
  k.faults.observe((r) => {
    if (r.kind === 'fault' && r.dev === gpuDev.name)
      faults.push(demoFault(r.time, r.fault, r.outcome, r.groupId));
    else if (r.kind === 'response' && r.dev === gpuDev.name) responseList.push(demoResponse(r));
  });
  // a bad pointer somewhere in the GPU's IOVA space, page aligned (the seed picks it)
  const bad = 0x40_0000_0000 + (m.rng.next32() % 0x10000) * 0x100_0000;
  const bytes = 16 << 20;
  let snapshot: GpuCrashDumpResult['snapshot'] = null;
  let handlerCalls = 0;
  let fenceCompleted = false;

  const task = m.exec.spawn('gpu-crash-dump', async () => {
    // the GPU driver's fault setup: stall faults on the iopf queue, one handler, first fault only
    const r = await k.faults.enableIopf(gpuDev);
    if (r !== 0) throw new Error(`enableIopf: ${r}`);
    const wq = m.exec.createWorkqueue('gpu-crashdump', { ordered: true });
    k.faults.registerDeviceFaultHandler(
      gpuDev,
      (fault, ctx) => {
        // IRQ thread, fault lock held: no sleeping here; the dump runs from a workqueue
        handlerCalls++;
        const g = ctx.group;
        const gd = ctx.data as GpuDevice;
        if (g === null || fault.type !== IOMMU_FAULT_PAGE_REQ) return -22;
        wq.queueFn('crash dump', async () => {
          const regs = gd.snapshotRegs();
          const takenAt = m.sched.now;
          // 64-bit registers in full
          for (const r64 of ['RING_BASE', 'MSI_ADDR', 'FAULT_ADDR'] as const)
            regs[r64] = gd.regs.readq(GpuReg[r64]);
          const ring: Array<{ slot: number; command: string; current: boolean }> = [];
          const slots = 1 << GPU_RING_LOG2;
          const cur = regs.CMD_SLOT!;
          for (let i = -1; i <= 1; i++) {
            const slot = (cur + i + slots) % slots;
            const w = new Uint32Array(GPU_CMD_BYTES / 4);
            for (let j = 0; j < w.length; j++)
              w[j] = m.mem.read32(gd.ring.cpuAddr + slot * GPU_CMD_BYTES + j * 4);
            const c = decodeGpuCommand(w);
            const body =
              c.op === GpuOp.FILL || c.op === GpuOp.FENCE
                ? `${c.name} dst=${hex(c.a)} value=${hex(c.value)} len=${c.len}`
                : `${c.name} a=${hex(c.a)} b=${hex(c.b)} len=${c.len}`;
            ring.push({ slot, command: body, current: slot === cur });
          }
          // writing the dump out takes a while (sleeps: allowed here, not in the handler)
          await m.exec.sleep(20_000, 'crash dump write-out');
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
          const pr = await k.faults.pageResponse(gd.dev, {
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
    // the job: a FILL through a bad pointer, then a fence
    gpu.submit({ op: GpuOp.FILL, a: bad, value: 0xdeadbeef, len: bytes });
    fenceCompleted = await gpu.fenceWait(1_000_000_000);
    await wq.flush();
  });
  await m.sched.runUntil(() => task.finished);
  await m.sched.runUntilIdle();
  if (task.error) throw task.error;
  const st = k.faults.deviceStats(gpuDev)!;
  const glue = k.smmuFaults[0]!;
  return {
    scenario: 'gpu-crash-dump',
    seed: m.seed,
    virtualTimeNs: m.sched.now,
    badPointer: hex(bad),
    bytes,
    warps,
    snapshot,
    handlerCalls,
    faultsReported: st.reported,
    suppressed: st.suppressed,
    responses: { ...st.responses },
    resumes: glue.stats.resumes,
    stalledAfter: board.smmu.upstream.stalledCount(board.gpu.sid),
    fenceCompleted,
    gpuFaultCount: gpu.regs.readl(GpuReg.FAULT_COUNT),
    faults,
    responseList,
    bugs: m.bugs.map((b) => b.message),
  };
}
