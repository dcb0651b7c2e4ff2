/**
 * The stall path end to end: a transaction of the GPU (dma-can-stall) faults and is held by
 * the SMMUv3 model; the event becomes a page request (grpid = STAG); responses become
 * CMD_RESUME (Retry on SUCCESS, Abort otherwise). Also unrecoverable events, and the GPU
 * resolving its own faults through a domain handler.
 */
import { describe, expect, it } from 'vitest';
import { GpuOp } from '../../src/arch/devices/gpu.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_WRITE,
  PORT_FAULT,
  PORT_OK,
  PORT_STALLED,
} from '../../src/hw/smmuv3/port.ts';
import type { GpuDevice } from '../../src/kernel/drivers/gpu/iommu-lab-gpu.ts';
import { SMMU_FAULT_STALL } from '../../src/kernel/iommu/arm-smmu-v3/fault.ts';
import { iommuIovaToPhys, iommuMap } from '../../src/kernel/iommu/domain.ts';
import {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_FAULT_REASON,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFault,
} from '../../src/kernel/iommu/fault/fault.ts';
import type { FaultContext } from '../../src/kernel/iommu/fault/io-pgfault.ts';
import { bootFaults, Recorder, task, translateOnce } from '../kernel/fault/stack.ts';
import { eventDumps, inTask } from './stack-helpers.ts';

const GPU_SID = 0x100;

describe('stall: fault event', () => {
  it('a stalled transaction is reported as a page request carrying every field', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.gpu);
    await s.attachNew(s.gpu, 1);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(GPU_SID, rec);
    const got: Array<{ f: IommuFault; ctx: FaultContext; kind: string }> = [];
    s.k.faults.registerDeviceFaultHandler(
      s.gpu,
      (f, ctx) => {
        got.push({ f, ctx, kind: s.m.exec.current().kind });
        return 0;
      },
      'gpu-private',
    );
    const r1 = translateOnce(s.board, GPU_SID, 0x1234_5678, ACCESS_EXEC | ACCESS_PRIV, 1);
    const r2 = translateOnce(s.board, GPU_SID, 0x40_0000_0000, ACCESS_WRITE);
    expect([r1.status, r2.status]).toEqual([PORT_STALLED, PORT_STALLED]);
    const t0 = s.m.sched.now;
    await s.m.sched.runFor(50_000);
    expect(got).toHaveLength(2);
    const [a, b] = got;
    expect(a!.kind).toBe('atomic'); // IRQ thread, fault lock held
    expect(a!.ctx.dev).toBe(s.gpu);
    expect(a!.ctx.data).toBe('gpu-private');
    expect(a!.ctx.group!.faults).toEqual([a!.f]);
    expect(a!.f).toMatchObject({
      type: IOMMU_FAULT_PAGE_REQ,
      flags:
        IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE |
        IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA |
        IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
      pasid: 1,
      grpid: r1.stag,
      perm: IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_EXEC | IOMMU_FAULT_PERM_PRIV,
      addr: 0x1234_5678,
      privateData: [SMMU_FAULT_STALL, GPU_SID],
    });
    expect(a!.f.requester).toEqual({ dev: s.gpu, sid: GPU_SID, rid: null });
    expect(a!.f.time).toBeGreaterThan(t0);
    expect(b!.f).toMatchObject({
      type: IOMMU_FAULT_PAGE_REQ,
      flags: IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE | IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
      pasid: 0,
      grpid: r2.stag,
      perm: IOMMU_FAULT_PERM_WRITE,
      addr: 0x40_0000_0000,
    });
    // still held until someone answers
    expect(s.board.smmu.upstream.stalledCount(GPU_SID)).toBe(2);
    expect(rec.stalls).toEqual([]);
    expect(s.m.bugs).toEqual([]);
  });

  it('answers: SUCCESS -> CMD_RESUME Retry (completes once mapped, re-stalls if not), INVALID / FAILURE -> Abort', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.gpu);
    const dom = await s.attachNew(s.gpu, 1);
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(GPU_SID, rec);
    s.k.faults.registerDeviceFaultHandler(s.gpu, () => 0, null);
    const iova = [0x10000, 0x20000, 0x30000, 0x40000];
    const tx = iova.map((a) => translateOnce(s.board, GPU_SID, a, 0, 1));
    await s.m.sched.runFor(50_000);
    expect(s.k.faults.pendingGroups(s.gpu).map((g) => g.grpid)).toEqual(tx.map((t) => t.stag));
    const pa = s.m.pages.alloc(0, 'test page');
    expect(iommuMap(dom, iova[0]!, pa, 4096, 1)).toBe(0);
    const r0 = s.resumes();
    const respond = (i: number, code: 0 | 1 | 2) =>
      task(s.m, () => s.k.faults.pageResponse(s.gpu, { pasid: 1, grpid: tx[i]!.stag, code }));
    expect(await respond(0, IOMMU_PAGE_RESP_SUCCESS)).toBe(0);
    expect(await respond(1, IOMMU_PAGE_RESP_INVALID)).toBe(0);
    expect(await respond(2, IOMMU_PAGE_RESP_FAILURE)).toBe(0);
    expect(await respond(3, IOMMU_PAGE_RESP_SUCCESS)).toBe(0); // nothing mapped: stalls again
    await s.m.sched.runFor(50_000);
    expect(s.resumes() - r0).toBe(4);
    const byStag = new Map(rec.stalls.map((x) => [x.stag, x.status]));
    expect(byStag.get(tx[0]!.stag)).toBe(PORT_OK);
    expect(byStag.get(tx[1]!.stag)).toBe(PORT_FAULT);
    expect(byStag.get(tx[2]!.stag)).toBe(PORT_FAULT);
    expect(byStag.has(tx[3]!.stag)).toBe(false);
    // the retried transaction faulted again: same STAG, a new group
    const again = s.k.faults.pendingGroups(s.gpu);
    expect(again.map((g) => g.grpid)).toEqual([tx[3]!.stag]);
    expect(await respond(3, IOMMU_PAGE_RESP_INVALID)).toBe(0);
    await s.m.sched.runFor(50_000);
    expect(rec.stalls.find((x) => x.stag === tx[3]!.stag)?.status).toBe(PORT_FAULT);
    expect(s.board.smmu.upstream.stalledCount(GPU_SID)).toBe(0);
    // duplicate: refused, no command
    const r1 = s.resumes();
    expect(await respond(1, IOMMU_PAGE_RESP_SUCCESS)).toBe(-22);
    await s.m.sched.runFor(10_000);
    expect(s.resumes()).toBe(r1);
    expect(s.k.faults.deviceStats(s.gpu)!.duplicatesRefused).toBe(1);
  });

  it('no handler: the driver logs the event and aborts the stall, one CMD_RESUME (the INVALID answer)', async () => {
    const s = await bootFaults();
    const rec = new Recorder(() => s.m.sched.now);
    s.board.smmu.upstream.attach(GPU_SID, rec);
    const r0 = s.resumes();
    const t = translateOnce(s.board, GPU_SID, 0x40_0000_0000, 0);
    expect(t.status).toBe(PORT_STALLED);
    await s.m.sched.runUntilIdle();
    expect(s.resumes() - r0).toBe(1);
    expect(rec.stalls).toEqual([{ stag: t.stag, status: PORT_FAULT, t: expect.any(Number) }]);
    expect(eventDumps(s.log)).toHaveLength(1);
    expect(s.k.faults.stats.noHandler).toBe(1);
    expect(s.k.faults.stats.responses.invalid).toBe(1);
    const rs = s.records.filter((r) => r.kind === 'response');
    expect(rs).toMatchObject([{ code: IOMMU_PAGE_RESP_INVALID, by: 'no-handler', grpid: t.stag }]);
  });
});

describe('stall: unrecoverable events', () => {
  it('a terminated fault reaches the device handler as DMA_UNRECOV (and stays out of the log)', async () => {
    const s = await bootFaults();
    const got: IommuFault[] = [];
    // the PCIe device cannot stall: an untranslated access to nothing terminates with an event
    const before = eventDumps(s.log).length;
    translateOnce(s.board, 8, 0x7700_0000, ACCESS_WRITE);
    await s.m.sched.runUntilIdle();
    expect(eventDumps(s.log).length).toBe(before + 1); // nobody cared: logged
    s.k.faults.registerDeviceFaultHandler(
      s.pci,
      (f) => {
        got.push(f);
        return 0;
      },
      null,
    );
    translateOnce(s.board, 8, 0x7700_1000, ACCESS_WRITE);
    await s.m.sched.runUntilIdle();
    expect(eventDumps(s.log).length).toBe(before + 1);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({
      type: IOMMU_FAULT_DMA_UNRECOV,
      reason: IOMMU_FAULT_REASON.PTE_FETCH,
      flags: IOMMU_FAULT_UNRECOV_ADDR_VALID,
      pasid: 0,
      perm: IOMMU_FAULT_PERM_WRITE,
      addr: 0x7700_1000,
      fetchAddr: 0,
      requester: { dev: s.pci, sid: 8, rid: 8 },
    });
  });
});

describe('stall: the GPU resolves its faults', () => {
  it('a workqueue domain handler maps pages on demand; the GPU job retries and completes', async () => {
    const s = await bootFaults();
    await s.enableIopf(s.gpu);
    const dom = s.k.iommu.getDomainForDev(s.gpu)!;
    const ctxs = new Set<string>();
    s.k.faults.setDomainFaultHandler(
      dom,
      async (d, _dev, f) => {
        ctxs.add(s.m.exec.current().kind);
        await s.m.exec.sleep(2000, 'allocate backing page');
        const pa = s.m.pages.alloc(0, 'demand page');
        return iommuMap(d, f.addr - (f.addr % 4096), pa, 4096, 3) < 0 ? -12 : 0;
      },
      null,
      { context: 'workqueue' },
    );
    const gd = s.gpu.driverData as GpuDevice;
    const base = 0x40_0000_0000;
    const done = await inTask(s.m, async () => {
      gd.submit({ op: GpuOp.FILL, a: base, value: 0x5a5a5a5a, len: 16 * 4096 });
      return gd.fenceWait(100_000_000);
    });
    expect(done).toBe(true);
    for (let p = 0; p < 16; p++) {
      const pa = iommuIovaToPhys(dom, base + p * 4096);
      expect(pa).toBeGreaterThan(0);
      expect(s.m.mem.read32(pa + 4092) >>> 0).toBe(0x5a5a5a5a);
    }
    const st = s.k.faults.deviceStats(s.gpu)!;
    expect(st.responses).toEqual({ success: 16, invalid: 0, failure: 0 });
    expect([...ctxs]).toEqual(['workqueue']);
    expect(s.board.smmu.upstream.stalledCount(GPU_SID)).toBe(0);
    expect(s.m.bugs).toEqual([]);
  });
});
