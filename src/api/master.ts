/**
 * Devices that do DMA, as a scenario drives them: a generic bus master (one or more StreamIDs,
 * optional PASIDs, stall-capable or not) and a PCIe function (ATS, PRI, PASID). Each transfer
 * goes through the SMMU model's DMA port exactly as the hardware would issue it, and settles
 * with its outcome: the data, the fault that terminated it, or — for a stalled transaction —
 * the completion that a RESUME or page response later gave it.
 */

import { eventName } from '../arch/smmuv3/event.ts';
import type { PcieEndpoint } from '../hw/devices/pcie-endpoint.ts';
import type { DmaOp, PlatformDmaMaster } from '../hw/devices/platform-master.ts';
import { PORT_STATUS_NAMES } from '../hw/smmuv3/port.ts';
import type { Device } from '../kernel/base/device.ts';
import type { MasterHardware } from './board.ts';
import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';

/** Transaction attributes of one transfer. */
export interface DmaAttrs {
  /** SubstreamID / PASID to tag the transactions with. Default: none. */
  pasid?: number;
  /** Privileged transactions. Default false. */
  privileged?: boolean;
  /** Instruction fetch (reads only). Default false. */
  exec?: boolean;
}

/** Options of a platform master's transfer. */
export interface MasterDmaAttrs extends DmaAttrs {
  /** Which of the master's StreamIDs issues it. Default: its first. */
  streamId?: number;
}

/** How a transfer ended. */
export interface DmaOutcome {
  /** Every byte moved. */
  ok: boolean;
  /** "ok", or what terminated it: "fault", "abort" (platform master), or the PCIe function's reason. */
  status: string;
  /** Bytes moved before it ended. */
  bytes: number;
  /** For a read: the bytes read (zeros where nothing was read). */
  data: Uint8Array | null;
  /** Bus address of the transaction that failed, or null. */
  errorAddress: number | null;
  /** The SMMU event behind the failure ("F_TRANSLATION", ...), when the master learnt it. */
  fault: string | null;
  /** Times one of its transactions was stalled in the SMMU. */
  stalls: number;
  /** Virtual times the transfer started and ended, ns. */
  startedNs: number;
  finishedNs: number;
}

/**
 * A DMA transfer in flight. Await it for its outcome; while it runs, `stalled` tells whether a
 * transaction of it is held in the SMMU (waiting for a fault handler's answer).
 */
export class DmaTransfer implements PromiseLike<DmaOutcome> {
  private result: DmaOutcome | null = null;
  private readonly waiters: Array<(o: DmaOutcome) => void> = [];

  /** @internal */
  constructor(
    private readonly lab: Lab,
    private readonly stalledNow: () => boolean,
  ) {}

  /** @internal the device finished the transfer. */
  settle(o: DmaOutcome): void {
    this.result = o;
    for (const w of this.waiters.splice(0)) w(o);
  }

  /** The transfer has ended (successfully or not). */
  get done(): boolean {
    return this.result !== null;
  }

  /** A transaction of the transfer is held in the SMMU right now. */
  get stalled(): boolean {
    return this.result === null && this.stalledNow();
  }

  /** The outcome, once done (null before). */
  get outcome(): DmaOutcome | null {
    return this.result;
  }

  // biome-ignore lint/suspicious/noThenProperty: a transfer is awaitable by design
  then<A = DmaOutcome, B = never>(
    onOk?: ((v: DmaOutcome) => A | PromiseLike<A>) | null,
    onErr?: ((e: unknown) => B | PromiseLike<B>) | null,
  ): PromiseLike<A | B> {
    let p: Promise<DmaOutcome>;
    if (this.result !== null) p = Promise.resolve(this.result);
    // a kernel task waits the way it waits for any device: it goes on, in its own context,
    // when the completion wakes it
    else if (this.lab.isDriving)
      p = this.lab.machine.exec.park<DmaOutcome>((wake) => this.waiters.push(wake));
    else
      p = this.lab.settle(new Promise<DmaOutcome>((resolve) => this.waiters.push(resolve)), 'DMA transfer');
    return p.then(onOk, onErr);
  }
}

/** What every DMA-capable handle has. */
export interface MasterHandle {
  readonly name: string;
  /** The kernel's device for it (null if the kernel created none, e.g. its node is disabled). */
  readonly device: Device | null;
  /** Its transaction counters. */
  stats(): Record<string, number>;
}

function checkRange(iova: number, len: number, who: string): void {
  if (!Number.isSafeInteger(iova) || iova < 0) throw new LabError(`${who}: bad bus address ${String(iova)}`);
  if (!Number.isSafeInteger(len) || len <= 0) throw new LabError(`${who}: bad length ${String(len)}`);
}

/** A generic bus master added to the board (see MasterSpec). */
export class DmaMaster implements MasterHandle {
  readonly name: string;
  /** Its StreamIDs, in `iommus` order. */
  readonly streamIds: readonly number[];
  private readonly ports: PlatformDmaMaster[];

  /** @internal */
  constructor(
    private readonly lab: Lab,
    hw: Extract<MasterHardware, { kind: 'platform' }>,
    readonly device: Device | null,
  ) {
    this.name = hw.spec.name;
    this.ports = hw.ports;
    this.streamIds = hw.ports.map((p) => p.sid);
  }

  private port(sid: number | undefined): PlatformDmaMaster {
    if (sid === undefined) return this.ports[0]!;
    const p = this.ports.find((x) => x.sid === sid);
    if (p === undefined)
      throw new LabError(`${this.name}: no StreamID ${sid} (it has ${this.streamIds.join(', ')})`);
    return p;
  }

  /** Read `len` bytes at bus address `iova`. */
  read(iova: number, len: number, attrs: MasterDmaAttrs = {}): DmaTransfer {
    checkRange(iova, len, `${this.name}.read`);
    return this.start(attrs, (p, done) => p.read(iova, len, done, this.opAttrs(attrs)));
  }

  /** Write `data` at bus address `iova`. */
  write(iova: number, data: Uint8Array, attrs: MasterDmaAttrs = {}): DmaTransfer {
    if (!(data instanceof Uint8Array)) throw new LabError(`${this.name}.write: data must be a Uint8Array`);
    checkRange(iova, data.length, `${this.name}.write`);
    return this.start(attrs, (p, done) => p.write(iova, data.slice(), done, this.opAttrs(attrs)));
  }

  /** Copy `len` bytes from bus address `src` to `dst`, chunk by chunk (read, then write). */
  copy(src: number, dst: number, len: number, attrs: MasterDmaAttrs = {}): DmaTransfer {
    checkRange(src, len, `${this.name}.copy`);
    checkRange(dst, len, `${this.name}.copy`);
    return this.start(attrs, (p, done) => p.copy(src, dst, len, done, this.opAttrs(attrs)));
  }

  /** Transactions of this master held in the SMMU right now. */
  get stalledCount(): number {
    let n = 0;
    for (const p of this.ports) n += p.stalledCount;
    return n;
  }

  /** Transaction counters (all StreamIDs together). */
  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.ports) {
      for (const [k, v] of Object.entries(p.sm.stats)) out[k] = (out[k] ?? 0) + v;
    }
    return out;
  }

  private opAttrs(a: MasterDmaAttrs): { ssid: number; priv: boolean; exec: boolean } {
    const ssid = a.pasid ?? -1;
    if (!Number.isInteger(ssid) || ssid < -1 || ssid >= 1 << 20)
      throw new LabError(`${this.name}: bad PASID ${String(a.pasid)}`);
    return { ssid, priv: a.privileged === true, exec: a.exec === true };
  }

  private start(
    attrs: MasterDmaAttrs,
    go: (p: PlatformDmaMaster, done: (op: DmaOp) => void) => DmaOp,
  ): DmaTransfer {
    const p = this.port(attrs.streamId);
    const started = this.lab.now;
    let op: DmaOp | null = null;
    const t = new DmaTransfer(this.lab, () => op?.stalled === true);
    op = go(p, (o) =>
      t.settle({
        ok: o.state === 'done',
        status: o.state === 'done' ? 'ok' : (PORT_STATUS_NAMES[o.status] ?? String(o.status)),
        bytes: o.bytesDone,
        data: o.kind === 'read' ? o.data : null,
        errorAddress: o.errorAddr >= 0 ? o.errorAddr : null,
        fault: o.fault ? eventName(o.fault) : null,
        stalls: o.stalls,
        startedNs: started,
        finishedNs: o.finishedAt,
      }),
    );
    return t;
  }
}

/** A PCIe function with ATS, PRI and PASID (see PciFunctionSpec). */
export class PciFunction implements MasterHandle {
  readonly name: string;
  /** "BB:DD.F". */
  readonly bdf: string;
  /** Requester ID. */
  readonly rid: number;
  /** StreamID the iommu-map gives it. */
  readonly streamId: number;
  /** @internal */
  readonly endpoint: PcieEndpoint;

  /** @internal */
  constructor(
    private readonly lab: Lab,
    hw: Extract<MasterHardware, { kind: 'pci' }>,
    readonly device: Device | null,
  ) {
    this.endpoint = hw.endpoint;
    this.name = hw.spec.name ?? `pci-${hw.spec.bdf}`;
    this.rid = hw.rid;
    this.bdf = `${(hw.rid >> 8).toString(16).padStart(2, '0')}:${((hw.rid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${hw.rid & 7}`;
    this.streamId = hw.endpoint.sid;
  }

  /** ATS is enabled in the function's ATS capability (by the SMMU driver, at attach). */
  get atsEnabled(): boolean {
    return this.endpoint.atsEnabled;
  }

  /** PRI is enabled in its PRI capability. */
  get priEnabled(): boolean {
    return this.endpoint.priEnabled;
  }

  /** The Address Translation Cache's entries, oldest first. */
  atc(): Array<{
    pasid: number | null;
    iova: number;
    pa: number;
    size: number;
    read: boolean;
    write: boolean;
  }> {
    return this.endpoint.atc.map((e) => ({
      pasid: e.ssid >= 0 ? e.ssid : null,
      iova: e.base,
      pa: e.pa,
      size: 2 ** e.shift,
      read: e.r,
      write: e.w,
    }));
  }

  /** Read `len` bytes at `iova` (through the ATC when ATS is on; page requests when PRI is on). */
  read(iova: number, len: number, attrs: DmaAttrs = {}): DmaTransfer {
    checkRange(iova, len, `${this.name}.read`);
    return this.start(iova, new Uint8Array(len), false, attrs);
  }

  /** Write `data` at `iova`. */
  write(iova: number, data: Uint8Array, attrs: DmaAttrs = {}): DmaTransfer {
    if (!(data instanceof Uint8Array)) throw new LabError(`${this.name}.write: data must be a Uint8Array`);
    checkRange(iova, data.length, `${this.name}.write`);
    return this.start(iova, data.slice(), true, attrs);
  }

  /** Send a PCIe Stop Marker for `pasid`. */
  stopMarker(pasid: number): void {
    this.endpoint.stopMarker(pasid);
  }

  /** ATS, PRI and DMA counters. */
  stats(): Record<string, number> {
    return { ...this.endpoint.stats };
  }

  private start(iova: number, buf: Uint8Array, write: boolean, a: DmaAttrs): DmaTransfer {
    const ssid = a.pasid ?? -1;
    if (!Number.isInteger(ssid) || ssid < -1 || ssid >= 1 << 20)
      throw new LabError(`${this.name}: bad PASID ${String(a.pasid)}`);
    const started = this.lab.now;
    let finished = false;
    const t = new DmaTransfer(this.lab, () => !finished && this.endpoint.outstandingPageRequests > 0);
    this.endpoint.dma({
      ssid,
      iova,
      buf,
      write,
      priv: a.privileged,
      exec: a.exec,
      onDone: (ok, bytes, why) => {
        finished = true;
        t.settle({
          ok,
          status: ok ? 'ok' : why,
          bytes,
          data: write ? null : buf,
          errorAddress: ok ? null : iova + bytes,
          fault: null,
          stalls: 0,
          startedNs: started,
          finishedNs: this.lab.now,
        });
      },
    });
    return t;
  }
}
