/**
 * The kernel model beside its floor: each kernel path, and a minimal synchronous driver doing
 * the same hardware work on the same board model, measured in alternating rounds in one process.
 * `….vs_floor` is the median over rounds of each round's own ratio (floor rate / kernel rate: how
 * many times slower the kernel path is); the rates are the medians of the rounds.
 *
 *  - smmuv3.stack.tlbi_sync: TLBI_NH_ASID + CMD_SYNC (completion by MSI write to the sync
 *    command's first word, as the driver asks for it). Kernel: arm_smmu_tlb_inv_asid issued and
 *    waited for by a kernel task. Floor: the same two commands written into the queue, CMDQ_PROD
 *    written, the scheduler run until the SMMU wrote the sync word.
 *  - iopf.stall.roundtrip: a device transaction on the GPU's StreamID faults and stalls -> event
 *    record + event-queue MSI -> CMD_RESUME (abort) -> the device hears the completion and issues
 *    its next transaction. Kernel: event IRQ thread, fault core, a device fault handler that
 *    answers INVALID, the driver's CMD_RESUME. Floor: a hard-IRQ handler that reads the event,
 *    moves EVTQ_CONS and writes CMD_RESUME.
 *  - iopf.pri.roundtrip: a Page Request (no PASID) on the PCIe device's StreamID -> PRI queue
 *    entry + PRI-queue MSI -> CMD_PRI_RESP (Success) -> the device hears the PRG Response and
 *    sends its next request. Kernel: PRI IRQ thread, fault core, a device fault handler that
 *    answers SUCCESS, the driver's CMD_PRI_RESP. Floor: a hard-IRQ handler.
 * The device on the StreamID is a stand-in that starts its next transaction 0 ns after the
 * previous one completed, in both.
 */

import { encodeCommandInto } from '../src/arch/smmuv3/cmd.ts';
import { CR0, IRQ_CTRL, SMMU_REG, STRTAB_BASE_CFG } from '../src/arch/smmuv3/regs.ts';
import { createVirtBoard, VIRT } from '../src/hw/boards/virt.ts';
import { ACCESS_WRITE, PORT_STALLED, PortResult } from '../src/hw/smmuv3/port.ts';
import type { SmmuV3 } from '../src/hw/smmuv3/smmu.ts';
import type { UpstreamMaster } from '../src/hw/smmuv3/upstream.ts';
import { IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_SUCCESS } from '../src/kernel/iommu/fault/fault.ts';
import { IRQ_HANDLED } from '../src/platform/irq.ts';
import { Machine } from '../src/platform/machine.ts';
import { bootStack, dev, GPU_PATH, PCI_PATH, smmuInstance } from '../test/integration/stack-helpers.ts';
import { s1EmptyStream } from './recoverable.bench.ts';
import { type BenchCase, type BenchResult, median } from './types.ts';

const ROUNDS = 7;
const LOG2 = 8;
const GPU_SID = VIRT.GPU_SID;
const PCI_SID = VIRT.PCIE_TESTDEV_RID;
const STALL_IOVA = 0x40_0000_0000;
const PRI_IOVA = 0x1000_0000;

type Stack = Awaited<ReturnType<typeof bootStack>>;

/** A device on a StreamID that starts its next transaction as soon as the previous one completed. */
class StandIn implements UpstreamMaster {
  done = 0;
  private left = 0;
  constructor(
    private readonly m: Machine,
    private readonly start: (i: number) => void,
  ) {}
  /** Issue `n` transactions back to back; `done` counts the completions. */
  run(n: number): void {
    this.left = n;
    this.next();
  }
  private readonly next = () => {
    if (this.left <= 0) return;
    this.left--;
    this.start(this.left);
  };
  private completed(): void {
    this.done++;
    this.m.sched.schedule(0, this.next, 'device next');
  }
  stallCompleted(): void {
    this.completed();
  }
  priResponse(): void {
    this.completed();
  }
}

// ------------------------------------------------------------------ the minimal synchronous driver

/** The virt board's SMMU driven by a minimal synchronous driver: queues, STEs, MSIs, hard IRQs. */
function floorBoard() {
  const m = new Machine();
  const board = createVirtBoard(m);
  const mem = m.mem;
  const BASE = VIRT.SMMU_BASE;
  const w32 = (off: number, v: number) => mem.write32(BASE + off, v >>> 0);
  const r32 = (off: number) => mem.read32(BASE + off) >>> 0;
  const page = (order = 0) => m.pages.alloc(order, 'floor');
  const cmdq = page(0);
  const evtq = page(1);
  const priq = page(0);
  const sidBits = 9; // covers the GPU (0x100) and the PCIe device (8)
  const strtab = page(3);
  mem.write64n(BASE + SMMU_REG.CMDQ_BASE, cmdq | LOG2);
  mem.write64n(BASE + SMMU_REG.EVTQ_BASE, evtq | LOG2);
  mem.write64n(BASE + SMMU_REG.PRIQ_BASE, priq | LOG2);
  mem.write64n(BASE + SMMU_REG.STRTAB_BASE, strtab);
  w32(SMMU_REG.STRTAB_BASE_CFG, (0 << STRTAB_BASE_CFG.FMT_SHIFT) | sidBits);
  // stage 1 over an empty table; the GPU's CD stalls faults (CD.S)
  const tt = page(0);
  const stream = (sid: number, stall: boolean) => s1EmptyStream(m, strtab, sid, tt, stall);
  stream(GPU_SID, true);
  stream(PCI_SID, false);
  // event and PRI queue interrupts as MSIs, handled in hard-IRQ context
  const [evtIrq, priIrq] = m.irq.allocMsi(2);
  for (const [msi, cfg0, cfg1, cfg2] of [
    [evtIrq!, SMMU_REG.EVTQ_IRQ_CFG0, SMMU_REG.EVTQ_IRQ_CFG1, SMMU_REG.EVTQ_IRQ_CFG2],
    [priIrq!, SMMU_REG.PRIQ_IRQ_CFG0, SMMU_REG.PRIQ_IRQ_CFG1, SMMU_REG.PRIQ_IRQ_CFG2],
  ] as const) {
    mem.write64n(BASE + cfg0, msi.address);
    w32(cfg1, msi.data);
    w32(cfg2, 1);
  }
  w32(SMMU_REG.CR0, CR0.CMDQEN | CR0.EVTQEN | CR0.PRIQEN | CR0.SMMUEN);
  w32(SMMU_REG.IRQ_CTRL, IRQ_CTRL.EVTQ_IRQEN | IRQ_CTRL.PRIQ_IRQEN);
  m.sched.runUntilIdleSync();
  let prod = 0;
  const mask = (1 << LOG2) - 1;
  const wrap = (2 << LOG2) - 1;
  // a minimal driver: each command from a template encoded once, its variable fields patched in
  const template = (name: 'TLBI_NH_ASID' | 'SYNC' | 'RESUME' | 'PRI_RESP', v: Record<string, number>) => {
    const dw = new Uint32Array(4);
    encodeCommandInto(dw, name, v);
    return dw;
  };
  const TLBI = template('TLBI_NH_ASID', { ASID: 0, VMID: 0 });
  const SYNC = template('SYNC', { CS: 1, MSH: 3, MSIAttr: 0xf, MSIData: 0 });
  const RESUME = template('RESUME', { StreamID: 0, STAG: 0, Ac: 0, Ab: 1 });
  const PRI_RESP = template('PRI_RESP', { StreamID: 0, SSV: 0, SubstreamID: 0, PRIGroupID: 0, Resp: 2 });
  /** Write one command at PROD (dwords d0..d3); returns its slot address. */
  const put = (d0: number, d1: number, d2: number, d3: number) => {
    const a = cmdq + (prod & mask) * 16;
    mem.write64(a, d0, d1);
    mem.write64(a + 8, d2, d3);
    prod = (prod + 1) & wrap;
    return a;
  };
  const kickCmdq = () => w32(SMMU_REG.CMDQ_PROD, prod);
  let evtCons = 0;
  m.irq.requestIrq(evtIrq!.irq, 'floor-evtq', () => {
    while ((r32(SMMU_REG.EVTQ_PROD_P1) & wrap) !== evtCons) {
      const e = evtq + (evtCons & mask) * 32;
      const sid = mem.read32(e + 4) >>> 0;
      mem.read64(e + 8);
      const stag = mem.r64[0]! & 0xffff;
      evtCons = (evtCons + 1) & wrap;
      w32(SMMU_REG.EVTQ_CONS_P1, evtCons);
      put(RESUME[0]!, sid, stag, 0);
      kickCmdq();
    }
    return IRQ_HANDLED;
  });
  let priCons = 0;
  m.irq.requestIrq(priIrq!.irq, 'floor-priq', () => {
    while ((r32(SMMU_REG.PRIQ_PROD_P1) & wrap) !== priCons) {
      const e = priq + (priCons & mask) * 16;
      const sid = mem.read32(e) >>> 0;
      mem.read64(e + 8);
      const prg = mem.r64[0]! & 0x1ff;
      priCons = (priCons + 1) & wrap;
      w32(SMMU_REG.PRIQ_CONS_P1, priCons);
      put(PRI_RESP[0]!, sid, PRI_RESP[2]! | prg, 0);
      kickCmdq();
    }
    return IRQ_HANDLED;
  });
  const tlbiSync = (n: number) => {
    for (let i = 0; i < n; i++) {
      put(TLBI[0]!, (1 + (i & 7)) << 16, 0, 0);
      const at = cmdq + (prod & mask) * 16;
      const sync = put(SYNC[0]!, SYNC[1]!, at & 0xfffffffc, Math.floor(at / 2 ** 32) & 0xfffff);
      kickCmdq();
      while (mem.read32(sync) !== 0 && m.sched.step()) {}
      if (mem.read32(sync) !== 0) throw new Error('floor: CMD_SYNC did not complete');
    }
  };
  return { m, board, tlbiSync };
}

function stallDevice(
  m: Machine,
  port: { translate(...a: [number, number, number, number, PortResult]): number },
) {
  const r = new PortResult();
  return new StandIn(m, () => {
    if (port.translate(GPU_SID, -1, STALL_IOVA, ACCESS_WRITE, r) !== PORT_STALLED)
      throw new Error('the transaction did not stall');
  });
}

function priDevice(m: Machine, upstream: { priRequest(...a: unknown[]): number }) {
  return new StandIn(m, (i) => {
    upstream.priRequest(PCI_SID, -1, PRI_IOVA + (i & 0xff) * 4096, i & 0x1ff, true, true, true, false, false);
  });
}

/** Rounds of (floor, kernel); per-round ratio floor/kernel, medians. */
async function paired(
  name: string,
  unit: string,
  floor: () => number,
  kernel: () => Promise<number>,
): Promise<BenchResult[]> {
  const f: number[] = [];
  const k: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const fr = floor();
    const kr = await kernel();
    f.push(fr);
    k.push(kr);
    ratios.push(fr / kr);
    console.error(
      `  ${name} round ${round}: floor ${fr.toFixed(0)} kernel ${kr.toFixed(0)} ${unit}: ${(fr / kr).toFixed(2)}x`,
    );
  }
  const lo = Math.min(...ratios);
  const hi = Math.max(...ratios);
  return [
    {
      name: `${name}.vs_floor`,
      value: median(ratios),
      unit: `x (median of ${ROUNDS} rounds, ${lo.toFixed(2)}-${hi.toFixed(2)})`,
    },
    { name: `${name}.kernel`, value: median(k), unit: `${unit} (median of ${ROUNDS} rounds)` },
    { name: `${name}.floor`, value: median(f), unit: `${unit} (median of ${ROUNDS} rounds)` },
  ];
}

function rate(n: number, fn: () => void): number {
  const t0 = performance.now();
  fn();
  return n / ((performance.now() - t0) / 1000);
}

async function rateAsync(n: number, fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return n / ((performance.now() - t0) / 1000);
}

/** Run `body` as a kernel task and the scheduler until it finished. */
async function inTask(s: Stack, body: () => Promise<void>): Promise<void> {
  let err: unknown = null;
  const t = s.m.exec.spawn('bench', async () => {
    try {
      await body();
    } catch (e) {
      err = e;
    }
  });
  await s.m.sched.runUntil(() => t.finished);
  if (err !== null) throw err;
}

/** Run the stand-in for `n` transactions on the kernel stack; the scheduler runs until they completed. */
async function runDevice(s: Stack, d: StandIn, n: number): Promise<void> {
  const target = d.done + n;
  d.run(n);
  await s.m.sched.runUntil(() => d.done >= target);
  if (d.done !== target) throw new Error(`${target - d.done} transactions did not complete`);
  if (s.m.bugs.length) throw new Error(s.m.bugs.map((b) => b.message).join('; '));
}

function runFloorDevice(m: Machine, d: StandIn, n: number): void {
  const target = d.done + n;
  d.run(n);
  m.sched.runUntilIdleSync();
  if (d.done !== target) throw new Error(`floor: ${target - d.done} transactions did not complete`);
}

/**
 * Fault round trips of the device at `sid` (kernel: the device at `path`, its faults on, a device
 * fault handler answering `code`), floor and kernel in alternating rounds.
 */
async function faultRoundTrips(
  name: string,
  path: string,
  sid: number,
  code: typeof IOMMU_PAGE_RESP_INVALID | typeof IOMMU_PAGE_RESP_SUCCESS,
  device: (m: Machine, smmu: SmmuV3) => StandIn,
): Promise<BenchResult[]> {
  const N = 20_000;
  const fl = floorBoard();
  const fd = device(fl.m, fl.board.smmu);
  fl.board.smmu.upstream.attach(sid, fd);
  const s = await bootStack({ trace: false });
  const d = dev(s.k, path);
  let err = 0;
  await inTask(s, async () => {
    err = await s.k.faults.enableIopf(d);
  });
  if (err !== 0) throw new Error(`enableIopf: ${err}`);
  s.k.faults.registerDeviceFaultHandler(d, (_f, ctx) => s.k.faults.groupResponse(ctx.group!, code), null);
  const kd = device(s.m, s.board.smmu);
  s.board.smmu.upstream.attach(sid, kd);
  runFloorDevice(fl.m, fd, N / 10); // warm-up
  await runDevice(s, kd, N / 10);
  return paired(
    name,
    'faults/s',
    () => rate(N, () => runFloorDevice(fl.m, fd, N)),
    () => rateAsync(N, () => runDevice(s, kd, N)),
  );
}

export const benchmarks: BenchCase[] = [
  {
    name: 'smmuv3.stack.tlbi_sync.vs_floor',
    async run() {
      const N = 20_000;
      const fl = floorBoard();
      const s = await bootStack({ trace: false });
      const { smmu } = smmuInstance(s.k);
      const kernel = async () =>
        rateAsync(N, () =>
          inTask(s, async () => {
            for (let i = 0; i < N; i++) {
              if ((await smmu.tlbiAsid(1 + (i & 7))) !== 0) throw new Error('TLBI + CMD_SYNC failed');
            }
          }),
        );
      fl.tlbiSync(N / 10); // warm-up
      await kernel();
      return paired('smmuv3.stack.tlbi_sync', 'ops/s', () => rate(N, () => fl.tlbiSync(N)), kernel);
    },
  },
  {
    name: 'iopf.stall.roundtrip.vs_floor',
    run: () =>
      faultRoundTrips('iopf.stall.roundtrip', GPU_PATH, GPU_SID, IOMMU_PAGE_RESP_INVALID, (m, smmu) =>
        stallDevice(m, smmu.port),
      ),
  },
  {
    name: 'iopf.pri.roundtrip.vs_floor',
    run: () =>
      faultRoundTrips('iopf.pri.roundtrip', PCI_PATH, PCI_SID, IOMMU_PAGE_RESP_SUCCESS, (m, smmu) =>
        priDevice(m, smmu.upstream as never),
      ),
  },
];
