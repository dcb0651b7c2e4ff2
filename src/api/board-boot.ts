/**
 * Boot a real board as Linux would, as far as IOMMUs and DMA go: the machine from the device tree
 * (IOMMU models at their `reg`, a DMA master model for every master the tree puts behind a
 * modelled IOMMU), the kernel model with the generic client drivers, probing until the
 * deferred-probe timeout is over, then the proof DMA of every master bound through an IOMMU.
 */

import type { DeferStrategy } from '../kernel/base/core.ts';
import type { Device } from '../kernel/base/device.ts';
import { Kernel } from '../kernel/init/kernel.ts';
import type { IommuFallbackPolicy } from '../kernel/of/of-iommu.ts';
import type { DeviceTree } from '../kernel/of/tree.ts';
import type { Machine } from '../platform/machine.ts';
import { type Board, buildBoard, type PciRequest } from './board.ts';
import { type BootReport, buildBootReport } from './boot-report.ts';
import { proveDmaPath } from './dma-check.ts';

/** How to boot a board (see bootBoard). */
export interface BoardBootOptions {
  seed?: number;
  policy: IommuFallbackPolicy;
  /** deferred-probe timeout, virtual ns; -1: never; undefined: 10 s. */
  timeoutNs?: number;
  modules?: boolean;
  deferStrategy?: DeferStrategy;
  /** Register the generic client drivers (default true). */
  clientDrivers?: boolean;
  /** Drivers (by name) the kernel is built without ("arm-smmu-v3", ...). */
  omitDrivers?: readonly string[];
  /** Run the proof DMA of every master bound through an IOMMU (default true). */
  dmaCheck?: boolean;
  /** PCI functions to put behind host bridges instead of one per iommu-map entry. */
  pci?: readonly PciRequest[];
  /** Receives the driver core's log lines. */
  log?: (line: string) => void;
  /** Called with the machine before the kernel boots. */
  onMachine?: (m: Machine) => void;
  /** Called with the kernel before it boots (tests use it to break an IOMMU driver). */
  onKernel?: (k: Kernel) => void;
}

/** A booted board: hardware, kernel and the proof DMA's outcomes. */
export interface BootedBoard {
  board: Board;
  kernel: Kernel;
  /** The proof DMA's outcome per device ("ok" or what failed). */
  dmaChecks: Map<Device, string>;
  /** Virtual ns the proof DMAs took. */
  dmaCheckNs: number;
}

/** Boot `tree` as a real board (see the file comment). */
export async function bootBoard(tree: DeviceTree, o: BoardBootOptions): Promise<BootedBoard> {
  const board = buildBoard(tree, { seed: o.seed ?? 1, treeMasters: { pci: o.pci } });
  o.onMachine?.(board.machine);
  const k = new Kernel({
    machine: board.machine,
    tree,
    policy: o.policy,
    deferredProbeTimeoutNs: o.timeoutNs,
    modules: o.modules,
    deferStrategy: o.deferStrategy,
    clientDrivers: o.clientDrivers ?? true,
    omitDrivers: o.omitDrivers,
    log: o.log,
  });
  o.onKernel?.(k);
  await k.boot();
  const dmaChecks = new Map<Device, string>();
  const t0 = board.machine.sched.now;
  if (o.dmaCheck !== false) await runDmaChecks(k, board, dmaChecks);
  return { board, kernel: k, dmaChecks, dmaCheckNs: board.machine.sched.now - t0 };
}

/** The proof DMA of every tree master bound through its IOMMU, one after the other, in a kernel task. */
export async function runDmaChecks(k: Kernel, board: Board, out: Map<Device, string>): Promise<void> {
  const m = board.machine;
  const work: Array<{ dev: Device; port: Board['treeMasters'][number]['ports'][number] }> = [];
  for (const tm of board.treeMasters) {
    const dev = k.core.deviceForNode(tm.node) ?? k.core.devices.find((d) => d.ofNode === tm.node);
    if (dev === undefined || dev.state !== 'bound') continue;
    if (dev.dma.ops !== 'iommu') {
      out.set(dev, `not translated (dma ops ${dev.dma.ops})`);
      continue;
    }
    if (tm.ports.length > 0) work.push({ dev, port: tm.ports[0]! });
  }
  if (work.length === 0) return;
  const task = m.exec.spawn('dma-check', async () => {
    for (const w of work) {
      out.set(w.dev, await proveDmaPath(k, w.dev, w.port));
      // as drivers probing one after another would: the fault the check provoked is handled
      // (its interrupt, the driver's report) before the next device's check
      await m.exec.sleep(100_000);
    }
  });
  await m.sched.runUntil(() => task.finished);
  if (task.error !== undefined) throw task.error;
}

/** The boot report of a booted board. */
export function boardBootReport(b: BootedBoard, source: string, policy: unknown): BootReport {
  const k = b.kernel;
  return buildBootReport({
    core: k.core,
    tree: k.tree,
    table: k.iommuTable,
    source,
    policy,
    groupOf: (d) => k.iommu.groupOf(d),
    dmaChecks: b.dmaChecks,
  });
}
