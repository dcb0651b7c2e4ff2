// Test drivers for the device-model tests: an SMMU set up through registers, memory and the
// command queue (via the SMMU device tests' SmmuDriver), one stage-1 stream per device, and a
// tiny GPU "kernel driver" that talks to the GPU only through MMIO and its ring in memory —
// the way the kernel model will.

import {
  decodeGpuCommand,
  encodeGpuCommand,
  GPU_CMD_BYTES,
  GPU_CTRL_ENABLE,
  GPU_CTRL_IRQ_EN,
  type GpuCommand,
  GpuReg,
} from '../../../src/arch/devices/gpu.ts';
import { Gpu, type GpuOptions } from '../../../src/hw/devices/gpu.ts';
import type { SmmuV3Config } from '../../../src/hw/smmuv3/smmu.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { PageTable, SmmuDriver, s1Leaf } from '../smmuv3/device-driver.ts';

/** IOVA at which every stream maps the GIC ITS doorbell page (Linux's MSI_IOVA_BASE). */
export const MSI_IOVA = 0x0800_0000;
export const GPU_BASE = 0x0a00_0000;

export interface SystemOptions {
  smmu?: SmmuV3Config;
  seed?: number;
  evtqLog2?: number;
  cmdqLog2?: number;
}

/** A machine, an SMMU driven through its registers, and helpers to build streams. */
export class TestSystem {
  readonly d: SmmuDriver;
  readonly m: Machine;
  readonly streams = new Map<number, Stream>();

  constructor(o: SystemOptions = {}) {
    this.m = new Machine({ seed: o.seed ?? 1 });
    this.d = new SmmuDriver(o.smmu ?? {}, this.m).init({
      evtqLog2: o.evtqLog2 ?? 6,
      cmdqLog2: o.cmdqLog2 ?? 8,
    });
  }

  get smmu() {
    return this.d.smmu;
  }

  /** A stage-1 stream for `sid`: its own page table and CD (CD.S = stall), ITS doorbell mapped. */
  stream(sid: number, o: { stall?: boolean; asid?: number; s1stalld?: boolean } = {}): Stream {
    const s = new Stream(this, sid, o.stall ?? false, o.asid ?? sid + 1, o.s1stalld ?? false);
    this.streams.set(sid, s);
    return s;
  }

  run(maxEvents = 5_000_000): number {
    return this.m.sched.runUntilIdleSync(maxEvents);
  }

  runFor(ns: number): void {
    this.m.sched.runForSync(ns);
  }

  /** Run until `cond` holds or the scheduler is idle / `maxEvents` ran. */
  runUntil(cond: () => boolean, maxEvents = 5_000_000): boolean {
    let n = 0;
    while (!cond()) {
      if (n++ >= maxEvents || !this.m.sched.step()) return cond();
    }
    return true;
  }

  /** CMD_RESUME for (sid, stag): retry, or terminate with abort; then CMD_SYNC. */
  resume(sid: number, stag: number, retry: boolean): void {
    this.d.cmd('RESUME', { StreamID: sid, STAG: stag, Ac: retry ? 1 : 0, Ab: retry ? 0 : 1 }, false);
    this.syncNoRun();
  }

  /** CMD_STALL_TERM for sid, then CMD_SYNC. */
  stallTerm(sid: number): void {
    this.d.cmd('STALL_TERM', { StreamID: sid }, false);
    this.syncNoRun();
  }

  /** Publish a CMD_SYNC and run only until the command queue has consumed it (devices keep running). */
  syncNoRun(): void {
    this.d.cmd('SYNC', { CS: 0 });
    const want = this.d.prod;
    this.runUntil(() => this.d.cons === want, 100_000);
  }

  /** TLBI for one page of `asid`. */
  tlbi(asid: number, iova: number): void {
    this.d.cmd('TLBI_NH_VA', { ASID: asid, Address: iova, Leaf: 1 }, false);
    this.syncNoRun();
  }
}

/** One StreamID with a stage-1 page table. */
export class Stream {
  readonly pt: PageTable;
  readonly cd: number;

  constructor(
    readonly sys: TestSystem,
    readonly sid: number,
    readonly stall: boolean,
    readonly asid: number,
    s1stalld: boolean,
  ) {
    const d = sys.d;
    this.pt = new PageTable(d);
    this.cd = d.alloc(4096);
    d.writeCd(this.cd, d.s1Cd(this.pt.root, asid, stall ? { S: 1 } : {}));
    d.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: this.cd, S1STALLD: s1stalld ? 1 : 0 });
    d.cmd('CFGI_STE', { StreamID: sid, Leaf: 1 }, false);
    sys.syncNoRun();
    const db = sys.m.irq.doorbell;
    this.pt.map(MSI_IOVA, s1Leaf(db - (db % 4096), { xn: true }));
  }

  /** Map `bytes` at `iova` to freshly allocated pages; returns the physical address of each page. */
  map(iova: number, bytes: number, o: { ro?: boolean } = {}): number[] {
    const pas: number[] = [];
    for (let off = 0; off < bytes; off += 4096) {
      const pa = this.sys.d.alloc(4096);
      this.pt.map(iova + off, s1Leaf(pa, { ro: o.ro }));
      pas.push(pa);
    }
    return pas;
  }

  /** Map one page at `iova` to `pa` (a missing page appearing: the fault handler's fix). */
  mapPage(iova: number, pa: number): void {
    this.pt.map(iova, s1Leaf(pa));
  }

  /** Invalidate one page (descriptor 0) and its TLB entry. */
  unmapPage(iova: number): void {
    this.pt.set(iova, 0n);
    this.sys.tlbi(this.asid, iova);
  }

  write(pas: number[], off: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = off + i;
      this.sys.m.mem.write8(pas[Math.floor(o / 4096)]! + (o % 4096), data[i]!);
    }
  }

  read(pas: number[], off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const o = off + i;
      out[i] = this.sys.m.mem.read8(pas[Math.floor(o / 4096)]! + (o % 4096));
    }
    return out;
  }
}

/** Deterministic test pattern. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export const RING_IOVA = 0x1000_0000;

export interface GpuSnapshot {
  status: number;
  stallCount: number;
  faultStatus: number;
  faultAddr: number;
  faultCount: number;
  head: number;
  tail: number;
  cmdSlot: number;
  /** The command at CMD_SLOT, read from the ring in memory. */
  cmd: ReturnType<typeof decodeGpuCommand>;
  /** Every ring slot's opcode. */
  ringOps: number[];
}

/** A GPU driver: MMIO and the ring in memory, nothing else. */
export class GpuDriver {
  readonly gpu: Gpu;
  readonly stream: Stream;
  ringPa = 0;
  slots = 0;
  tail = 0;
  irq = -1;
  irqs = 0;

  constructor(
    readonly sys: TestSystem,
    sid: number,
    o: GpuOptions & { stall?: boolean; ringLog2?: number } = {},
  ) {
    this.stream = sys.streams.get(sid) ?? sys.stream(sid, { stall: o.stall });
    this.gpu = new Gpu(sys.smmu, sid, o).map(GPU_BASE);
    const log2 = o.ringLog2 ?? 6;
    this.slots = 1 << log2;
    this.ringPa = sys.d.alloc(this.slots * GPU_CMD_BYTES);
    for (let off = 0; off < this.slots * GPU_CMD_BYTES; off += 4096) {
      this.stream.mapPage(RING_IOVA + off, this.ringPa + off);
    }
    this.w64(GpuReg.RING_BASE, RING_IOVA);
    this.w32(GpuReg.RING_LOG2, log2);
    const [msi] = sys.m.irq.allocMsi(1);
    this.irq = msi!.irq;
    sys.m.irq.requestIrq(this.irq, 'gpu', () => {
      this.irqs++;
      return 1;
    });
    this.w64(GpuReg.MSI_ADDR, MSI_IOVA + (msi!.address % 4096));
    this.w32(GpuReg.MSI_DATA, msi!.data);
    this.w32(GpuReg.INT_MASK, 0xf);
    this.w32(GpuReg.CTRL, GPU_CTRL_ENABLE | GPU_CTRL_IRQ_EN);
  }

  r32(off: number): number {
    return this.sys.m.mem.read32(GPU_BASE + off) >>> 0;
  }

  w32(off: number, v: number): void {
    this.sys.m.mem.write32(GPU_BASE + off, v >>> 0);
  }

  r64(off: number): number {
    return this.r32(off) + this.r32(off + 4) * 2 ** 32;
  }

  w64(off: number, v: number): void {
    this.w32(off, v % 2 ** 32);
    this.w32(off + 4, Math.floor(v / 2 ** 32));
  }

  /** Write commands into the ring at the software tail; publish with RING_TAIL if `doorbell`. */
  submit(cmds: GpuCommand[], doorbell = true): void {
    const w = new Uint32Array(8);
    for (const c of cmds) {
      encodeGpuCommand(c, w);
      const a = this.ringPa + this.tail * GPU_CMD_BYTES;
      for (let i = 0; i < 8; i++) this.sys.m.mem.write32(a + 4 * i, w[i]!);
      this.tail = (this.tail + 1) % this.slots;
    }
    if (doorbell) this.w32(GpuReg.RING_TAIL, this.tail);
  }

  /** Ring slot as the driver wrote it in memory. */
  slot(i: number): ReturnType<typeof decodeGpuCommand> {
    const w: number[] = [];
    for (let k = 0; k < 8; k++) w.push(this.sys.m.mem.read32(this.ringPa + i * GPU_CMD_BYTES + 4 * k) >>> 0);
    return decodeGpuCommand(w);
  }

  /** What a GPU driver's fault handler captures: registers and the ring. */
  snapshot(): GpuSnapshot {
    const head = this.r32(GpuReg.RING_HEAD);
    const cmdSlot = this.r32(GpuReg.CMD_SLOT);
    const ringOps: number[] = [];
    for (let i = 0; i < this.slots; i++) ringOps.push(this.slot(i).op);
    return {
      status: this.r32(GpuReg.STATUS),
      stallCount: this.r32(GpuReg.STALL_COUNT),
      faultStatus: this.r32(GpuReg.FAULT_STATUS),
      faultAddr: this.r64(GpuReg.FAULT_ADDR),
      faultCount: this.r32(GpuReg.FAULT_COUNT),
      head,
      tail: this.r32(GpuReg.RING_TAIL),
      cmdSlot,
      cmd: this.slot(cmdSlot),
      ringOps,
    };
  }

  /** The ring drained (HEAD == TAIL) and the GPU idle. */
  idle(): boolean {
    return this.r32(GpuReg.RING_HEAD) === this.r32(GpuReg.RING_TAIL) && (this.r32(GpuReg.STATUS) & 1) === 0;
  }
}
