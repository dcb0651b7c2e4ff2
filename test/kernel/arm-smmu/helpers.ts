/**
 * Whole-stack helpers for the arm-smmu driver tests: a small board with one SMMUv1/v2 model
 * (any variant, its options), its interrupts wired through a GIC node, and generic bus masters
 * (iommu-lab,dma-master nodes bound by their driver, with a PlatformDmaMaster on the SMMU's port
 * each), booted with the kernel model.
 */

import { PlatformDmaMaster } from '../../../src/hw/devices/platform-master.ts';
import { SmmuV2, type SmmuV2Options } from '../../../src/hw/smmuv2/index.ts';
import type { Device } from '../../../src/kernel/base/device.ts';
import { Kernel, type KernelOptions } from '../../../src/kernel/init/kernel.ts';
import type { ArmSmmuV2Instance } from '../../../src/kernel/iommu/arm-smmu/driver.ts';
import type { IommuDomain } from '../../../src/kernel/iommu/domain.ts';
import { parseDts } from '../../../src/kernel/of/dts.ts';
import { Machine, type TraceEvent } from '../../../src/platform/index.ts';
import { inTask } from '../../integration/stack-helpers.ts';

export const SMMU_BASE = 0x0900_0000;
export const FIRST_SPI = 64;

export interface V2MasterSpec {
  /** `iommus` cells after the phandle (one or two). */
  cells: number[];
  canStall?: boolean;
  /** Compatibles before "iommu-lab,dma-master" (e.g. "qcom,adreno"). */
  compatible?: string[];
}

export interface V2BootOptions {
  seed?: number;
  /** Hardware options (compatible, banks, ...). Default arm,mmu-500 with 8 banks. */
  hw?: SmmuV2Options;
  /** Extra compatibles before the hardware's (e.g. "qcom,adreno-smmu"). */
  extraCompatible?: string[];
  iommuCells?: 1 | 2;
  streamMatchMask?: number;
  masters?: V2MasterSpec[];
  kernel?: Omit<KernelOptions, 'machine' | 'tree'>;
}

export interface V2Stack {
  m: Machine;
  hw: SmmuV2;
  k: Kernel;
  inst: ArmSmmuV2Instance;
  devs: Device[];
  ports: PlatformDmaMaster[];
  log: TraceEvent[];
  /** The driver's dmesg lines, "arm-smmu 9000000.iommu: ..." */
  lines(): string[];
}

export async function bootV2(o: V2BootOptions = {}): Promise<V2Stack> {
  const m = new Machine({ seed: o.seed ?? 1 });
  const log: TraceEvent[] = [];
  m.trace.addSink({ write: (e) => log.push(e) });
  const hwOpts: SmmuV2Options = { compatible: 'arm,mmu-500', numContextBanks: 8, ...o.hw };
  const probe = new SmmuV2(new Machine({ seed: 0 }), hwOpts);
  const f = probe.features;
  const nIrq = f.version === 1 ? 2 : f.numCb;
  const globalIrqs = [FIRST_SPI];
  const contextIrqs = Array.from({ length: nIrq }, (_, i) => FIRST_SPI + 1 + i);
  const hw = new SmmuV2(m, { ...hwOpts, name: 'smmuv2', base: SMMU_BASE, globalIrqs, contextIrqs });
  const cells = o.iommuCells ?? 1;
  const masters = o.masters ?? [{ cells: [0x10], canStall: true }];
  const irqSpec = [...globalIrqs, ...contextIrqs].map((q) => `<0 ${q - 32} 4>`).join(', ');
  // a Qualcomm MMU-500 node also lists arm,mmu-500 (that is what the driver matches)
  const tail =
    hwOpts.compatible === 'qcom,smmu-500' || hwOpts.compatible === 'marvell,ap806-smmu-500'
      ? ['arm,mmu-500']
      : [];
  const compat = [...(o.extraCompatible ?? []), hwOpts.compatible!, ...tail].map((c) => `"${c}"`).join(', ');
  const dts = `/dts-v1/;
/ {
  #address-cells = <2>;
  #size-cells = <2>;
  interrupt-parent = <&gic>;
  memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x40000000>; };
  gic: interrupt-controller@8000000 {
    compatible = "arm,gic-v3";
    #interrupt-cells = <3>;
    interrupt-controller;
    reg = <0x0 0x8000000 0x0 0x10000>;
  };
  smmu: iommu@9000000 {
    compatible = ${compat};
    reg = <0x0 0x${SMMU_BASE.toString(16)} 0x0 0x${f.windowSize.toString(16)}>;
    #global-interrupts = <1>;
    interrupts = ${irqSpec};
    #iommu-cells = <${cells}>;
    ${o.streamMatchMask !== undefined ? `stream-match-mask = <0x${o.streamMatchMask.toString(16)}>;` : ''}
  };
${masters
  .map(
    (ms, i) => `  master@${(0xa000000 + i * 0x1000).toString(16)} {
    compatible = ${[...(ms.compatible ?? []), 'iommu-lab,dma-master'].map((c) => `"${c}"`).join(', ')};
    reg = <0x0 0x${(0xa000000 + i * 0x1000).toString(16)} 0x0 0x1000>;
    iommus = <&smmu ${ms.cells.map((c) => `0x${c.toString(16)}`).join(' ')}>;
    ${ms.canStall ? 'dma-can-stall;' : ''}
  };`,
  )
  .join('\n')}
};
`;
  const tree = parseDts(dts);
  const k = new Kernel({ machine: m, tree, ...o.kernel });
  await k.boot();
  const inst = k.armSmmuDriver.instances[0];
  if (inst === undefined) throw new Error(`arm-smmu did not probe:\n${log.map((e) => e.message).join('\n')}`);
  const devs = masters.map((_, i) => {
    const n = tree.findByPath(`/master@${(0xa000000 + i * 0x1000).toString(16)}`)!;
    const d = k.core.deviceForNode(n);
    if (!d) throw new Error('no master device');
    return d;
  });
  const ports = masters.map(
    (ms, i) =>
      new PlatformDmaMaster(hw, ms.cells[0]!, { name: `master${i}`, canStall: ms.canStall ?? false }),
  );
  const lines = () =>
    log.filter((e) => e.component === 'arm-smmu 9000000.iommu' && e.name === 'log').map((e) => e.message);
  return { m, hw, k, inst, devs, ports, log, lines };
}

/** An UNMANAGED domain attached to `d` (stage 2 with `nestParent`). */
export async function attachNew(s: V2Stack, d: Device, nestParent = false): Promise<IommuDomain> {
  return inTask(s.m, async () => {
    const dom = (await (nestParent
      ? s.k.iommu.domainAllocPagingFlags(d, { nestParent })
      : s.k.iommu.domainAllocPaging(d))) as IommuDomain;
    const r = await s.k.iommu.attachDevice(dom, d);
    if (r !== 0) throw new Error(`attach failed: ${r}`);
    return dom;
  });
}

/**
 * Run a DMA operation of a port to its end, then until the machine is idle (so that the fault
 * interrupt of a failed one has been handled: a bank with a fault recorded terminates the next
 * transaction without hit-under-fault).
 */
export async function dmaWrite(s: V2Stack, port: PlatformDmaMaster, iova: number, data: Uint8Array) {
  const op = port.write(iova, data);
  await s.m.sched.runUntil(() => op.state !== 'running');
  await s.m.sched.runUntilIdle();
  return op;
}

export async function dmaRead(s: V2Stack, port: PlatformDmaMaster, iova: number, len: number) {
  const op = port.read(iova, len);
  await s.m.sched.runUntil(() => op.state !== 'running');
  await s.m.sched.runUntilIdle();
  return op;
}
