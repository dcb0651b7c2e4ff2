/**
 * Demo 'adreno-stall': Rob Clark's GPU on the adreno board. The GPU has its own stall-capable
 * SMMU (qcom,smmu-v2 with the Adreno implementation: bank 0, HUPCF, stall on fault); display
 * and video share the MMU-500 "apps" SMMU, where nobody enables stall.
 *
 * The GPU (64 warps) runs a FILL through a bad pointer. The first fault stalls; the msm-like
 * driver captures its crash state (GPU registers, the ring around the current slot) while the
 * transaction is still stalled, then it is terminated. The thousands of follow-on faults are
 * counted, and the driver's "*** gpu fault" line is rate-limited. With the v6.16 flow (default)
 * the dump is taken in the SMMU's IRQ thread and stall is switched off for 500 ms of virtual
 * time, back on at the first submit after that (once the dump has been read); with the
 * v5.14..v6.15 flow ('adreno-stall-legacy') a fault worker takes it and resumes with
 * resume_translation. A display read through a bad address faults on the apps SMMU and is
 * terminated at once, with arm-smmu's "Unhandled context fault" print.
 */

import { GpuOp } from '../../arch/devices/gpu.ts';
import { SCTLR } from '../../arch/smmuv2/regs.ts';
import { ADRENO } from '../../hw/boards/adreno.ts';
import { defineScenario, formatDmesg, type ScenarioDefinition } from '../../index.ts';
import { type DemoName, demoInfo, pad } from './index.ts';

export interface AdrenoStallResult {
  flow: string;
  badPointer: string;
  bytes: number;
  warps: number;
  crash: {
    capturedIn: string;
    t: number;
    faultAt: number;
    iova: string;
    type: string;
    stalledAtCapture: number;
    registers: Record<string, string>;
    ring: Array<{ slot: number; current: boolean; command: string }>;
  } | null;
  /** Faults the GPU driver's handler saw, its lines printed and rate-limited away. */
  handlerFaults: number;
  linesPrinted: number;
  linesSuppressed: number;
  /** Context faults the arm-smmu driver handled on the GPU SMMU; the GPU's FAULT_COUNT. */
  smmuContextFaults: number;
  gpuFaultCount: number;
  resumes: number;
  terminates: number;
  fenceReached: boolean;
  stall: {
    /** SCTLR.CFCFG of the GPU's bank after the fault, right after the next submit, and after 500 ms. */
    afterFault: boolean;
    nextSubmit: boolean;
    after500ms: boolean;
    reenableTime: number;
  };
  display: { faulted: boolean; stalled: boolean; appsBankStall: boolean };
  /** The kernel log lines of the SMMU and GPU drivers (dmesg format). */
  log: string[];
}

const WARPS = 64;
const hex = (v: number) => `0x${v.toString(16)}`;

/** The scenario for one fault flow. */
export function adrenoStallScenario(
  name: DemoName,
  resume: 'handler' | 'driver',
): ScenarioDefinition<AdrenoStallResult> {
  return defineScenario<AdrenoStallResult>({
    ...demoInfo(name),
    board: 'adreno',
    adreno: { gpu: { warps: WARPS } },
    kernel: { armSmmuStallResume: resume },

    async run({ lab, expect, fail, rng }) {
      const a = lab.adreno();
      const gpuSmmu = lab.smmuV2(ADRENO.GPU_SMMU_PATH);
      const apps = lab.smmuV2(ADRENO.APPS_SMMU_PATH);
      const board = lab.board.adreno ?? fail('no adreno hardware');
      const cfcfg = () => ((gpuSmmu.contextBank(a.contextBank).sctlr >>> SCTLR.CFCFG.lsb) & 1) === 1;
      expect(a.stallEnabled, 'stall enabled at probe').toBe(true);

      // a bad GPU pointer, page aligned (the seed picks it)
      const bad = 0x40_0000_0000 + rng.int(0, 0xfff) * 0x100_0000;
      const bytes = 16 << 20;
      a.submit({ op: GpuOp.FILL, a: bad, value: 0xdeadbeef, len: bytes });
      const fenceReached = await a.fenceWait(2_000_000_000);
      await lab.waitFor(() => a.stalledTransactions === 0 && a.crashState !== null);
      const afterFault = cfcfg();
      const crash = a.crashState;

      // the next submit, right away: (v6.16) stall stays off until 500 ms have passed
      a.submit({ op: GpuOp.NOP });
      const nextSubmit = cfcfg();
      const reenableTime = a.stallReenableTime;
      // userspace reads the devcoredump; 500 ms later the next submit turns stall back on
      a.readCrashState();
      await lab.sleep(500_000_000);
      const ok2 = await a.fenceWait(1_000_000_000);
      expect(ok2, 'a good job after the fault').toBe(true);
      const after500ms = cfcfg();

      // the display, on the apps SMMU: a bad address is terminated at once (no stall there)
      const disp = board.display.read(0x7000_0000, 64);
      await lab.waitFor(() => disp.state !== 'running');
      await lab.sleep(100_000);
      const dispBank = apps.contextBank(0);

      const st = a.stats;
      const ss = gpuSmmu.stats ?? fail('GPU SMMU not probed');
      const log = lab
        .events()
        .filter((e) => e.name === 'log' && /^(arm-smmu|msm) /.test(e.component))
        .map((e) => formatDmesg(e));
      const result: AdrenoStallResult = {
        flow: a.flow,
        badPointer: hex(bad),
        bytes,
        warps: WARPS,
        crash:
          crash === null
            ? null
            : {
                capturedIn: crash.capturedIn,
                t: crash.time,
                faultAt: crash.fault.time,
                iova: hex(crash.fault.iova),
                type: crash.fault.type,
                stalledAtCapture: crash.stalledAtCapture,
                registers: Object.fromEntries(
                  [
                    'STATUS',
                    'FAULT_STATUS',
                    'FAULT_ADDR',
                    'FAULT_COUNT',
                    'STALL_COUNT',
                    'CMD_SLOT',
                    'FENCE',
                  ].map((k) => [k, hex(crash.registers[k] ?? 0)]),
                ),
                ring: crash.ring,
              },
        handlerFaults: st.faults,
        linesPrinted: st.faultsLogged,
        linesSuppressed: st.faultsSuppressed,
        smmuContextFaults: ss.contextFaults,
        gpuFaultCount: a.hardwareFaultCount,
        resumes: ss.resumes,
        terminates: ss.terminates,
        fenceReached,
        stall: { afterFault, nextSubmit, after500ms, reenableTime },
        display: {
          faulted: disp.state === 'failed',
          stalled: false,
          appsBankStall: ((dispBank.sctlr >>> SCTLR.CFCFG.lsb) & 1) === 1,
        },
        log,
      };
      expect(result.crash, 'a crash state').not.toBe(null);
      expect(result.crash!.stalledAtCapture, 'stalled while the dump was taken').toBeGreaterThanOrEqual(1);
      expect(result.gpuFaultCount, 'faulting GPU transactions').toBeGreaterThanOrEqual(1000);
      expect(result.linesPrinted, 'gpu fault lines printed (rate-limited)').toBeLessThan(11);
      expect(result.display.faulted, 'the display read faulted').toBe(true);
      expect(result.display.appsBankStall, 'stall on the apps SMMU').toBe(false);
      if (a.flow === 'v6.16') {
        expect(afterFault, 'stall off after the fault').toBe(false);
        expect(nextSubmit, 'still off at an immediate submit').toBe(false);
        expect(after500ms, 'back on 500 ms later').toBe(true);
      } else expect(afterFault, 'stall stays on (v6.15)').toBe(true);
      return result;
    },

    report(r) {
      const lines = [
        `flow: drm/msm + arm-smmu ${r.flow === 'v6.16' ? 'v6.16+ (dump in the IRQ thread, stall off for 500 ms)' : 'v5.14..v6.15 (fault worker, resume_translation)'}`,
        `job: FILL ${r.bytes} bytes at bad pointer ${r.badPointer} on ${r.warps} warps; fence ${r.fenceReached ? 'reached' : 'NOT reached'}`,
        '',
      ];
      const c = r.crash;
      if (c) {
        lines.push(
          `crash state (${c.capturedIn}) captured at ${c.t} ns for the fault at ${c.faultAt} ns: ${c.type} at ${c.iova}, ${c.stalledAtCapture} transaction(s) still stalled`,
          `  ${Object.entries(c.registers)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
        );
        for (const x of c.ring) lines.push(`  ${x.current ? '>' : ' '} slot ${pad(x.slot, 3)} ${x.command}`);
      } else lines.push('NO crash state');
      lines.push(
        '',
        `faults: GPU FAULT_COUNT ${r.gpuFaultCount}, arm-smmu context faults ${r.smmuContextFaults}, GPU fault handler ${r.handlerFaults} (${r.linesPrinted} lines printed, ${r.linesSuppressed} rate-limited)`,
        `arm-smmu RESUME: ${r.resumes} retry, ${r.terminates} terminate`,
        `stall (SCTLR.CFCFG): after the fault ${r.stall.afterFault ? 'on' : 'off'}, at the next submit ${r.stall.nextSubmit ? 'on' : 'off'}, 500 ms later ${r.stall.after500ms ? 'on' : 'off'}`,
        `display on the apps SMMU: bad read ${r.display.faulted ? 'terminated at once' : 'completed'}; stall ${r.display.appsBankStall ? 'on' : 'off'} there`,
        '',
        'kernel log:',
        ...r.log.slice(0, 24).map((l) => `  ${l}`),
      );
      if (r.log.length > 24) lines.push(`  ... ${r.log.length - 24} more lines (see --json)`);
      return lines;
    },
  });
}

export default adrenoStallScenario('adreno-stall', 'handler');
