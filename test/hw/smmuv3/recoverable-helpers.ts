// Test helpers for the recoverable-fault tests: the register-level driver of device-driver.ts
// plus the PRI queue, RESUME/STALL_TERM/PRI_RESP/ATC_INV commands, and a recording upstream
// master (the device side).

import { dwordsToWords } from '../../../src/arch/smmuv3/bits.ts';
import { type DecodedPri, decodePri, PRI_DWORDS } from '../../../src/arch/smmuv3/pri.ts';
import { CR0, Q_PTR, SMMU_REG } from '../../../src/arch/smmuv3/regs.ts';
import { PortResult } from '../../../src/hw/smmuv3/port.ts';
import type { SmmuV3Config } from '../../../src/hw/smmuv3/smmu.ts';
import type { PriResponseCode, UpstreamMaster } from '../../../src/hw/smmuv3/upstream.ts';
import { Machine } from '../../../src/platform/machine.ts';
import { type DriverInit, PageTable, SmmuDriver } from './device-driver.ts';

export const CR0_ALL = CR0.CMDQEN | CR0.EVTQEN | CR0.SMMUEN;

export class RecDriver extends SmmuDriver {
  priq = 0;
  priqLog2 = 4;

  constructor(opts: SmmuV3Config = {}, m = new Machine()) {
    super(opts, m);
  }

  override init(o: DriverInit & { pri?: boolean; priqLog2?: number; atschk?: boolean } = {}): this {
    super.init(o);
    if (o.pri) {
      this.priqLog2 = o.priqLog2 ?? 4;
      this.priq = this.alloc(16 << this.priqLog2);
      this.w64(SMMU_REG.PRIQ_BASE, this.priq | this.priqLog2);
      this.w32(SMMU_REG.PRIQ_PROD_P1, 0);
      this.w32(SMMU_REG.PRIQ_CONS_P1, 0);
    }
    if (o.pri || o.atschk) this.setCr0(CR0_ALL | (o.pri ? CR0.PRIQEN : 0) | (o.atschk ? CR0.ATSCHK : 0));
    return this;
  }

  setCr0(v: number): void {
    if (!this.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, v)) throw new Error('CR0ACK timeout');
  }

  /** Decoded PRI entries between CONS and PROD; consumes them and acknowledges overflow. */
  priEntries(ack = true): DecodedPri[] {
    const out: DecodedPri[] = [];
    const log2 = this.priqLog2;
    const mask = (2 << log2) - 1;
    const prod = this.r32(SMMU_REG.PRIQ_PROD_P1);
    let cons = this.r32(SMMU_REG.PRIQ_CONS_P1);
    const dw = new Uint32Array(PRI_DWORDS);
    while ((prod & mask) !== (cons & mask)) {
      const a = this.priq + (cons & ((1 << log2) - 1)) * 16;
      for (let i = 0; i < 2; i++) {
        this.m.mem.read64(a + 8 * i);
        dw[2 * i] = this.m.mem.r64[0]!;
        dw[2 * i + 1] = this.m.mem.r64[1]!;
      }
      out.push(decodePri(dwordsToWords(dw, 2)));
      cons = (cons & Q_PTR.OVFLG) | (((cons & mask) + 1) & mask);
    }
    if (ack) cons = ((prod & Q_PTR.OVFLG) | (cons & mask)) >>> 0;
    this.w32(SMMU_REG.PRIQ_CONS_P1, cons >>> 0);
    return out;
  }

  resume(sid: number, stag: number, retry: boolean, abort = false): void {
    this.cmd('RESUME', { StreamID: sid, STAG: stag, Ac: retry ? 1 : 0, Ab: abort ? 1 : 0 });
    this.sync();
  }

  /** A stage-1 stream (4K, 48-bit) with CD extra fields; returns its page table. */
  s1Stream(sid: number, cd: Record<string, number> = {}, ste: Record<string, number> = {}): PageTable {
    const pt = new PageTable(this);
    const cdAddr = this.alloc(4096);
    this.writeCd(cdAddr, this.s1Cd(pt.root, 3, cd));
    this.writeSte(sid, { V: 1, Config: 0b101, S1ContextPtr: cdAddr, ...ste });
    return pt;
  }

  /** A stage-2-only stream (40-bit IPA, start level 1, 2 concatenated tables). */
  s2Stream(sid: number, ste: Record<string, number> = {}): PageTable {
    const pt = new PageTable(this, 40, 1, 2);
    this.writeSte(sid, {
      V: 1,
      Config: 0b110,
      S2VMID: 9,
      S2T0SZ: 24,
      S2SL0: 1,
      S2TG: 0,
      S2PS: 2,
      S2AA64: 1,
      S2R: 1,
      S2TTB: pt.root,
      ...ste,
    });
    return pt;
  }

  /** 64-bit descriptor at `pa` as a bigint. */
  desc(pa: number): bigint {
    this.m.mem.read64(pa);
    return (BigInt(this.m.mem.r64[1]! >>> 0) << 32n) | BigInt(this.m.mem.r64[0]! >>> 0);
  }
}

export interface Completion {
  sid: number;
  stag: number;
  status: number;
  oa: number;
  fault: number;
  time: number;
}

/** A device side that records everything the SMMU tells it. */
export class RecordingMaster implements UpstreamMaster {
  readonly completions: Completion[] = [];
  readonly responses: Array<{ sid: number; ssid: number; prg: number; code: PriResponseCode; time: number }> =
    [];
  readonly invalidations: Array<{
    sid: number;
    ssid: number;
    address: number;
    size: number;
    global: boolean;
  }> = [];
  /** Virtual ns before acknowledging an ATC invalidation (-1: never). */
  ackDelayNs = 0;
  private readonly pendingAcks: Array<() => void> = [];

  constructor(private readonly m: Machine) {}

  stallCompleted(sid: number, stag: number, status: number, r: PortResult): void {
    this.completions.push({ sid, stag, status, oa: r.oa, fault: r.fault, time: this.m.sched.now });
  }

  priResponse(sid: number, ssid: number, prg: number, code: PriResponseCode): void {
    this.responses.push({ sid, ssid, prg, code, time: this.m.sched.now });
  }

  atcInvalidate(
    sid: number,
    ssid: number,
    address: number,
    size: number,
    global: boolean,
    done: () => void,
  ): void {
    this.invalidations.push({ sid, ssid, address, size, global });
    if (this.ackDelayNs < 0) this.pendingAcks.push(done);
    else if (this.ackDelayNs === 0) done();
    else this.m.sched.schedule(this.ackDelayNs, done, 'test ack');
  }

  /** Acknowledge the invalidations held back (ackDelayNs = -1). */
  ackAll(): void {
    for (const d of this.pendingAcks.splice(0)) d();
  }
}

export { PortResult };
