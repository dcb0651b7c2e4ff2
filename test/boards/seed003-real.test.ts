// Issue 22, "Done when" 2: seed 003's three cases of "IOMMU declared but not registered" on a real
// board (Morello: the display behind /soc/iommu@2ce00000, PCIe functions behind two more SMMUv3s),
// under each policy: 3a the kernel has no driver for the IOMMU, 3b the IOMMU's probe waits for a
// clock whose driver comes later (a module loaded at 2 s), 3c the IOMMU's probe fails.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { boardBootReport, bootBoard } from '../../src/api/board-boot.ts';
import type { BootReport, DeviceReport } from '../../src/api/boot-report.ts';
import { simpleClockControllerDriver } from '../../src/kernel/drivers/clk.ts';
import { parseFdt } from '../../src/kernel/of/fdt.ts';
import type { IommuGiveUp } from '../../src/kernel/of/of-iommu.ts';
import { type DeviceTree, DtNode, encodeCells, encodeStrings } from '../../src/kernel/of/tree.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const dtb = path.resolve(here, '../../../shared/corpus/dtb/morello-sdp.dtb');
const have = existsSync(dtb);
if (!have) console.warn(`seed-003 real-board tests skipped: ${dtb} not found`);

const SMMU = '/soc/iommu@2ce00000';
const DISPLAY = '/display@2cc00000';
const TIMEOUT = 10e9;

function tree(): DeviceTree {
  return parseFdt(readFileSync(dtb));
}

async function bootWith(
  t: DeviceTree,
  policy: IommuGiveUp,
  extra: { omitDrivers?: string[]; lateDriverNs?: number } = {},
): Promise<{ r: BootReport; log: string[]; display: DeviceReport }> {
  const log: string[] = [];
  const b = await bootBoard(t, {
    policy: { disabled: 'bypass', noDriver: policy, probeFailed: policy },
    omitDrivers: [
      ...(extra.omitDrivers ?? []),
      ...(extra.lateDriverNs === undefined ? [] : ['iommu-lab-clkc']),
    ],
    log: (l) => log.push(l),
    onKernel: (k) => {
      // a clock driver built as a module, loaded a while after boot
      if (extra.lateDriverNs !== undefined)
        k.machine.sched.schedule(
          extra.lateDriverNs,
          () => void k.core.registerDriver(simpleClockControllerDriver),
        );
    },
  });
  const r = boardBootReport(b, 'morello', policy);
  return { r, log, display: r.devices.find((d) => d.path === DISPLAY)! };
}

/** The SMMU's probe fails: its register window is too small for an SMMUv3. */
function failingSmmu(t: DeviceTree): DeviceTree {
  const n = t.findByPath(SMMU)!;
  const reg = n.u32Array('reg')!;
  n.setProp('reg', encodeCells([reg[0]!, reg[1]!, 0, 0x1000]));
  t.invalidate();
  return t;
}

/** The SMMU needs a clock from a clock controller (whose driver is loaded late in 3b). */
function clockedSmmu(t: DeviceTree): DeviceTree {
  const soc = t.findByPath('/soc')!;
  let ph = t.maxPhandle();
  const osc = new DtNode('smmu-osc');
  osc.setProp('compatible', encodeStrings(['fixed-clock']));
  osc.setProp('#clock-cells', encodeCells([0]));
  osc.setProp('clock-frequency', encodeCells([100_000_000]));
  osc.setProp('phandle', encodeCells([++ph]));
  t.root.addChild(osc);
  const clkc = new DtNode('clock-controller@2cf00000');
  clkc.setProp('compatible', encodeStrings(['iommu-lab,clock-controller']));
  clkc.setProp('reg', encodeCells([0, 0x2cf00000, 0, 0x1000]));
  clkc.setProp('#clock-cells', encodeCells([1]));
  clkc.setProp('clocks', encodeCells([ph]));
  clkc.setProp('iommu-lab,clock-count', encodeCells([1]));
  clkc.setProp('phandle', encodeCells([++ph]));
  soc.addChild(clkc);
  t.findByPath(SMMU)!.setProp('clocks', encodeCells([ph, 0]));
  t.invalidate();
  return t;
}

const POLICIES: IommuGiveUp[] = ['linux', 'strict', 'bypass'];

describe.skipIf(!have)('seed 003 on a real board (Morello)', () => {
  it('baseline: the display binds through its SMMUv3 at the first attempt and proves its DMA', async () => {
    const { display } = await bootWith(tree(), 'linux');
    expect(display).toMatchObject({ state: 'bound', dmaOps: 'iommu', dmaCheck: 'ok', probeAttempts: 1 });
  });

  it.each(POLICIES)('3a: no driver for the SMMUv3 (policy %s)', async (policy) => {
    const { r, display } = await bootWith(tree(), policy, { omitDrivers: ['arm-smmu-v3'] });
    expect(r.iommus.find((i) => i.path === SMMU)).toMatchObject({ state: 'no-driver', driver: null });
    expect(display.probeAttempts).toBeLessThanOrEqual(3);
    if (policy === 'linux') {
      // deferred until the deferred-probe timeout, then DMA without translation
      expect(display).toMatchObject({ state: 'bound', dmaOps: 'direct', group: null, domainType: 'none' });
      expect(display.reason).toMatch(
        /no driver for IOMMU \/soc\/iommu@2ce00000 .*-ETIMEDOUT: gave up waiting/,
      );
      expect(display.boundNs).toBeGreaterThanOrEqual(TIMEOUT);
    } else if (policy === 'strict') {
      expect(display).toMatchObject({ state: 'failed', dmaOps: 'none' });
      expect(display.reason).toMatch(/gave up waiting \(policy: strict\)/);
    } else {
      expect(display).toMatchObject({ state: 'bound', dmaOps: 'direct', probeAttempts: 1 });
      expect(display.reason).toMatch(/policy: bypass/);
      expect(display.boundNs).toBeLessThan(TIMEOUT);
    }
  });

  it.each(POLICIES)('3b: the SMMUv3 waits for a clock loaded at 2 s (policy %s)', async (policy) => {
    const { r, log, display } = await bootWith(clockedSmmu(tree()), policy, { lateDriverNs: 2e9 });
    // every policy waits for an IOMMU whose driver exists: then translated DMA
    expect(r.iommus.find((i) => i.path === SMMU)).toMatchObject({ state: 'registered', probeAttempts: 3 });
    expect(display).toMatchObject({ state: 'bound', dmaOps: 'iommu', dmaCheck: 'ok', reason: null });
    expect(display.probeAttempts).toBeLessThanOrEqual(3);
    expect(display.boundNs).toBeGreaterThanOrEqual(2e9);
    expect(display.boundNs).toBeLessThan(TIMEOUT);
    // Linux's log: the display joins a group once the SMMU is there; nothing is left pending
    expect(log.join('\n')).not.toMatch(/deferred probe pending/);
    expect(display.reason).toBeNull();
  });

  it.each(POLICIES)('3c: the SMMUv3 probe fails (policy %s)', async (policy) => {
    const { r, display } = await bootWith(failingSmmu(tree()), policy);
    expect(r.iommus.find((i) => i.path === SMMU)).toMatchObject({ state: 'failed' });
    expect(display.probeAttempts).toBeLessThanOrEqual(3);
    if (policy === 'linux') {
      expect(display).toMatchObject({ state: 'bound', dmaOps: 'direct', domainType: 'none' });
      expect(display.reason).toMatch(
        /probe of IOMMU \/soc\/iommu@2ce00000 failed: .*-ETIMEDOUT: gave up waiting/,
      );
    } else if (policy === 'strict') {
      expect(display).toMatchObject({ state: 'failed' });
      expect(display.reason).toMatch(/policy: strict/);
    } else {
      expect(display).toMatchObject({ state: 'bound', dmaOps: 'direct', probeAttempts: 1 });
    }
  });
});
