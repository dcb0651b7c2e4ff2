/**
 * Nested translation through the SMMUv3 driver: a guest owns a CD table and stage-1 tables in
 * its IPA space (a vSTE describes them), over a stage-2 parent domain the host owns.
 */
import { describe, expect, it } from 'vitest';
import { createVirtBoard, VIRT } from '../../src/hw/boards/virt.ts';
import { PORT_OK, PORT_STALLED, PortResult } from '../../src/hw/smmuv3/port.ts';
import { Kernel } from '../../src/kernel/init/kernel.ts';
import type { SmmuDomain } from '../../src/kernel/iommu/arm-smmu-v3/iommu.ts';
import { makeS1Cd } from '../../src/kernel/iommu/arm-smmu-v3/make-entry.ts';
import type { IommuDomain } from '../../src/kernel/iommu/domain.ts';
import { ArmLpaeIoPgtable } from '../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { type IoPgtableCfg, machinePgtableEnv } from '../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/kernel/iommu/prot.ts';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { Machine, type TraceEvent } from '../../src/platform/index.ts';
import { inTask } from './stack-helpers.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

async function setup() {
  const m = new Machine({ seed: 5 });
  const log: TraceEvent[] = [];
  m.trace.addSink({ write: (e) => log.push(e) });
  const board = createVirtBoard(m);
  const k = new Kernel({ machine: m, tree: parseDts(DEFAULT_PLATFORM_DTS) });
  await k.boot();
  const { iommu } = k.smmuDriver.instances[0]!;
  const gpu = k.device('/soc/gpu@a000000')!;
  return { m, board, k, iommu, gpu, log };
}

describe('nested domains', () => {
  it('translates guest IOVA -> IPA (guest stage 1) -> PA (host stage 2), and reports stage-2 faults', async () => {
    const { m, board, k, iommu, gpu, log } = await setup();
    const s2 = iommu.domainAllocPaging(gpu, { nestParent: true }) as IommuDomain;
    expect((s2.priv as SmmuDomain).stage).toBe(2);
    const host = (s2.priv as SmmuDomain).pgt;
    // the guest's RAM: host identity-maps the RAM the guest's tables live in (IPA == PA there)
    host.mapPages(0x8000_0000, 0x8000_0000, 0x200000, 64, RW);
    // and one guest page at IPA 0x1_0000_0000 backed by host page Y
    const Y = m.pages.alloc(0, 'guest page Y');
    host.mapPages(0x1_0000_0000, Y, 0x1000, 1, RW);
    // the guest's stage 1: IOVA 0x40000 -> IPA 0x1_0000_0000; IOVA 0x50000 -> IPA 0x2_0000_0000 (unbacked)
    const cfg: IoPgtableCfg = {
      quirks: 0,
      pgsizeBitmap: 0x1000 + 0x200000,
      ias: 48,
      oas: 48,
      coherentWalk: true,
      tlb: null,
    };
    const guest = ArmLpaeIoPgtable.alloc('arm-64-lpae-s1', cfg, null, machinePgtableEnv(m))!;
    guest.mapPages(0x40000, 0x1_0000_0000, 0x1000, 1, RW);
    guest.mapPages(0x50000, 0x2_0000_0000, 0x1000, 1, RW);
    const c = cfg.armLpaeS1Cfg!;
    const cdTable = m.pages.alloc(0, 'guest CD table');
    const cd = makeS1Cd(
      { stallEnabled: true },
      { asid: 9, ttbr: BigInt(c.ttbr), ...c.tcr, mair: BigInt(c.mair) },
    );
    for (const [i, w] of cd.entries())
      m.mem.write64(cdTable + i * 8, Number(w & 0xffffffffn) | 0, Number(w >> 32n) | 0);
    // the vSTE: V, Config = S1_TRANS, linear CD table at cdTable (an IPA), no substreams
    const vste = [1n | (5n << 1n) | BigInt(cdTable), 0n];
    const nested = iommu.domainAllocNested(gpu, s2, { vste }) as IommuDomain;
    expect(typeof nested).toBe('object');
    expect(await inTask(m, () => k.iommu.attachDevice(nested, gpu))).toBe(0);

    const ste = k.smmuDriver.instances[0]!.smmu.readSte(VIRT.GPU_SID);
    expect(Number((ste[0]! >> 1n) & 7n)).toBe(7); // Config = nested
    expect((ste[1]! >> (83n - 64n)) & 1n).toBe(1n); // MEV

    m.mem.write32(Y + 0x10, 0xfeedf00d);
    const r = new PortResult();
    expect(board.smmu.port.translate(VIRT.GPU_SID, -1, 0x40010, 0, r)).toBe(PORT_OK);
    expect(r.oa).toBe(Y + 0x10);
    const buf = new Uint8Array(4);
    expect(board.smmu.port.dmaRead(VIRT.GPU_SID, -1, 0x40010, buf, 0, 4)).toBe(4);
    expect(new DataView(buf.buffer).getUint32(0, true)).toBe(0xfeedf00d);

    // stage-2 fault on the final IPA: class IN, S2=1, the IPA reported
    expect(board.smmu.port.translate(VIRT.GPU_SID, -1, 0x50000, 0, r)).toBe(PORT_STALLED);
    await m.sched.runUntilIdle();
    const lines = log.filter((e) => e.component === 'arm-smmu-v3 9000000.iommu').map((e) => e.message);
    const i = lines.lastIndexOf('event 0x10 received:');
    expect(lines[i + 5]).toBe(
      'event: F_TRANSLATION client: a000000.gpu sid: 0x100 ssid: 0 iova: 0x50000 ipa: 0x200000000',
    );
    expect(lines[i + 6]).toMatch(/^unpriv data read s2 "Input address caused fault" stall stag: /);
  });

  it('refuses vSTEs with fields a guest may not set, and non-stage-2 parents', async () => {
    const { iommu, gpu } = await setup();
    const s2 = iommu.domainAllocPaging(gpu, { nestParent: true }) as IommuDomain;
    const s1 = iommu.domainAllocPaging(gpu) as IommuDomain;
    const ok = [1n | (5n << 1n) | 0x8010_0000n, 0n];
    expect(typeof iommu.domainAllocNested(gpu, s2, { vste: ok })).toBe('object');
    expect(iommu.domainAllocNested(gpu, s1, { vste: ok })).toBe(-22);
    expect(iommu.domainAllocNested(gpu, s2, { vste: [1n | (6n << 1n), 0n] })).toBe(-5); // Config = S2
    expect(iommu.domainAllocNested(gpu, s2, { vste: [ok[0]!, 1n << 28n] })).toBe(-5); // EATS
    expect(iommu.domainAllocNested(gpu, s2, { vste: [ok[0]!, 0n, 1n] })).toBe(-5); // word 2
    expect(typeof iommu.domainAllocNested(gpu, s2, { vste: [0n, 0xffn] })).toBe('object'); // V=0: abort
  });
});
