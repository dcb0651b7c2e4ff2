/**
 * The arm-smmu-v3 driver's hardware layer against the SMMUv3 hardware model: they meet only
 * through MMIO, memory and interrupts, as on a real machine.
 */
import { describe, expect, it } from 'vitest';
import { PORT_ABORT, PORT_BYPASS, PORT_FAULT, PortResult } from '../../../src/hw/smmuv3/port.ts';
import { SmmuV3, type SmmuV3Config } from '../../../src/hw/smmuv3/smmu.ts';
import { makeAbortSte, makeBypassSte } from '../../../src/kernel/iommu/arm-smmu-v3/make-entry.ts';
import { ArmSmmuDevice } from '../../../src/kernel/iommu/arm-smmu-v3/smmu.ts';
import { MmioRegion } from '../../../src/kernel/lib/io.ts';
import { Machine, type TraceEvent } from '../../../src/platform/index.ts';
import { inTask } from '../../integration/stack-helpers.ts';

const BASE = 0x0900_0000;

async function setup(hw: SmmuV3Config = {}, drv: { disableBypass?: boolean } = {}) {
  const m = new Machine({ seed: 1 });
  const log: TraceEvent[] = [];
  m.trace.addSink({ write: (e) => log.push(e) });
  const smmu = new SmmuV3(m, { base: BASE, irqs: { eventq: 40, gerror: 41, priq: 42 }, ...hw });
  const dev = new ArmSmmuDevice(m, new MmioRegion(m.mem, BASE, 0x20000), {
    name: '9000000.iommu',
    base: BASE,
    irqs: { eventq: 40, gerror: 41, priq: 42 },
    ...drv,
  });
  let ret = Number.NaN;
  m.exec.spawn('probe', async () => {
    ret = await dev.probe();
  });
  await m.sched.runUntilIdle();
  const lines = () => log.filter((e) => e.component === 'arm-smmu-v3 9000000.iommu').map((e) => e.message);
  return { m, smmu, dev, ret, lines, log };
}

describe('arm-smmu-v3 driver on the SMMUv3 model', () => {
  it.each([
    ['wired IRQs, linear stream table', { msi: false, twoLevelStreamTable: false, sidBits: 8 }],
    [
      'MSIs (CMD_SYNC by MSI write), 2-level stream table',
      { msi: true, twoLevelStreamTable: true, sidBits: 16 },
    ],
  ])('probes and enables the SMMU: %s', async (_name, hw) => {
    const { m, smmu, dev, ret, lines } = await setup(hw);
    expect(ret).toBe(0);
    expect(dev.enabled).toBe(true);
    expect(smmu.enabled).toBe(true);
    expect(dev.strtabFmt).toBe(hw.twoLevelStreamTable ? 1 : 0);
    expect(dev.stats.syncs).toBe(2); // CFGI_ALL, then the TLB invalidation batch
    expect(m.bugs).toEqual([]);
    expect(lines()[0]).toMatch(/^ias \d+-bit, oas \d+-bit/);
    // unattached streams: a linear table holds abort STEs (disable_bypass); in a 2-level table
    // a SID without an L2 table is C_BAD_STREAMID, a recorded fault
    const r = new PortResult();
    expect(smmu.port.translate(5, -1, 0x1000, 0, r)).toBe(hw.twoLevelStreamTable ? PORT_FAULT : PORT_ABORT);
  });

  it('writes STEs with the entry writer; the SMMU follows each update after CFGI_STE + CMD_SYNC', async () => {
    const { m, smmu, dev } = await setup({ sidBits: 16, twoLevelStreamTable: true, msi: true });
    const r = new PortResult();
    let res: Awaited<ReturnType<typeof dev.writeSte>> | undefined;
    await inTask(m, async () => {
      res = await dev.writeSte(0x1234, makeBypassSte(dev.writeFeatures));
    });
    expect(res).toMatchObject({ path: 'hitless', syncs: 2, ret: 0 });
    expect(smmu.port.translate(0x1234, -1, 0x8000_1000, 0, r)).toBe(PORT_BYPASS);
    await inTask(m, async () => {
      res = await dev.writeSte(0x1234, makeAbortSte());
    });
    expect(res).toMatchObject({ path: 'hitless', syncs: 2 });
    expect(smmu.port.translate(0x1234, -1, 0x8000_1000, 0, r)).toBe(PORT_ABORT);
    expect(dev.stats.byOpcode.CFGI_STE).toBe(4);
    expect(dev.stats.byOpcode.PREFETCH_CONFIG).toBe(2);
  });

  it('forgetting CFGI (fault injection) leaves the SMMU using the stale STE', async () => {
    const { m, smmu, dev } = await setup();
    const r = new PortResult();
    await inTask(m, async () => {
      await dev.writeSte(3, makeBypassSte(dev.writeFeatures));
    });
    expect(smmu.port.translate(3, -1, 0x8000_0000, 0, r)).toBe(PORT_BYPASS);
    dev.inject.skipCfgi = true;
    await inTask(m, async () => {
      await dev.writeSte(3, makeAbortSte());
    });
    expect(smmu.port.translate(3, -1, 0x8000_0000, 0, r)).toBe(PORT_BYPASS); // stale
    dev.inject.skipCfgi = false;
    await inTask(m, async () => {
      await dev.issue([['CFGI_STE', { StreamID: 3, Leaf: 1 }]], true);
    });
    expect(smmu.port.translate(3, -1, 0x8000_0000, 0, r)).toBe(PORT_ABORT);
  });

  it('recovers from an illegal command as Linux does: logs it, replaces it with CMD_SYNC, and the queue goes on', async () => {
    const { m, dev, lines } = await setup();
    let ret = Number.NaN;
    await inTask(m, async () => {
      // CFGI_VMS_PIDM is not implemented by this SMMU: CERROR_ILL
      ret = await dev.issue(
        [
          ['CFGI_VMS_PIDM', { VMID: 1 }],
          ['CFGI_STE', { StreamID: 1, Leaf: 1 }],
        ],
        true,
      );
    });
    expect(ret).toBe(0);
    expect(dev.stats.cmdqErrors).toBe(1);
    const l = lines();
    expect(l).toContain('unexpected global error reported (0x00000001), this could be serious');
    expect(l.find((x) => x.startsWith('CMDQ error (cons 0x'))).toMatch(/: Illegal command$/);
    const i = l.indexOf('skipping command in error state:');
    expect(l[i + 1]).toBe('\t0x0000000100000007');
    // the queue still works afterwards
    await inTask(m, async () => {
      ret = await dev.issue([['CFGI_ALL', {}]], true);
    });
    expect(ret).toBe(0);
  });

  it('logs events exactly as Linux prints them, with the decoded lines', async () => {
    const { m, smmu, dev, lines } = await setup();
    dev.sidNames.set(7, '0000:00:01.0');
    // a bad STE (V=1, reserved Config 0b001) for SID 7
    await inTask(m, async () => {
      const bad = makeAbortSte();
      bad[0] = 0x8n; // V=0 (Config=bypass): an invalid STE
      await dev.writeSte(7, bad);
    });
    const r = new PortResult();
    smmu.port.translate(7, -1, 0x8000_0000, 0, r);
    await m.sched.runUntilIdle();
    const l = lines();
    const i = l.indexOf('event 0x04 received:');
    expect(i).toBeGreaterThanOrEqual(0);
    expect(l[i + 1]).toMatch(/^\t0x0000000700000004$/);
    expect(l.slice(i + 2, i + 5).every((x) => /^\t0x[0-9a-f]{16}$/.test(x))).toBe(true);
    expect(l[i + 5]).toBe('event: C_BAD_STE client: 0000:00:01.0 sid: 0x7 ssid: 0');
    expect(dev.stats.events).toBe(1);
  });

  it('fails probe cleanly when the SMMU does not answer CR0ACK, freeing what it allocated', async () => {
    const m = new Machine();
    // a register window that reads ID registers but never acknowledges
    const regs = new Map<number, number>([
      [0x0, (1 << 1) | (2 << 2)],
      [0x4, (8 << 21) | (7 << 16)],
      [0x14, 5 | (1 << 4)],
    ]);
    m.mmio.map(BASE, 0x20000, { name: 'dead-smmu', read32: (o) => regs.get(o) ?? 0, write32: () => {} });
    const dev = new ArmSmmuDevice(m, new MmioRegion(m.mem, BASE, 0x20000), { name: 'dead', base: BASE });
    let ret = 0;
    m.exec.spawn('probe', async () => {
      ret = await dev.probe();
    });
    await m.sched.runUntilIdle();
    expect(ret).toBe(-110);
    expect(m.pages.usedPages).toBe(0);
  });
});
