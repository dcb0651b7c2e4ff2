/**
 * The main demo: the whole stack on the virt board.
 *
 * The lab has booted the default device tree: the SMMUv3 driver probed the SMMUv3 model through
 * its registers and registered it, and the GPU and the PCIe test device got DMA domains. The GPU
 * driver copies a buffer with a command that reads and writes through dma_map_single mappings
 * (its ring itself lives in dma_alloc_coherent memory); the PCIe device reads a mapped buffer
 * with ATS. Then a command with a bad pointer faults: the SMMU stalls the GPU's reads, the driver
 * logs the event exactly as Linux prints it and, with no fault handler, aborts them.
 * Everything depends only on the seed.
 */

import { GpuOp } from '../../arch/devices/gpu.ts';
import { defineScenario, type Lab } from '../../index.ts';
import type { GpuDevice } from '../../kernel/drivers/gpu/iommu-lab-gpu.ts';
import { demoInfo, pad } from './index.ts';

export interface DeviceStats {
  device: string;
  streamId: string;
  domain: string;
  /** Transactions the SMMU translated for the device (all outcomes). */
  translations: number;
  faults: number;
  tlbHits: number;
  tlbMisses: number;
  /** TLB hit rate of the device's untranslated traffic (null without lookups). */
  tlbHitRate: number | null;
  /** Commands the SMMUv3 driver issued on the device's behalf (attach, unmaps). */
  commands: number;
  atsTranslationRequests: number | null;
  atcHits: number | null;
}

export interface SmmuDemoResult {
  smmu: { path: string; state: string; features: string[] };
  /** Commands the SMMUv3 driver issued while the kernel booted (probe, attach). */
  bootCommands: number;
  transfers: Array<{ device: string; bytes: number; iova: string; ok: boolean }>;
  fault: { device: string; iova: string; eventsLogged: number; stalledThenAborted: number };
  devices: DeviceStats[];
}

interface Counters {
  tx: number;
  faults: number;
  hits: number;
  misses: number;
  cmds: number;
}

const ZERO: Counters = { tx: 0, faults: 0, hits: 0, misses: 0, cmds: 0 };
const hex = (v: number) => `0x${v.toString(16)}`;

function counters(lab: Lab): Counters {
  const s = lab.board.virt!.smmu.stats();
  return {
    tx: s.port!.transactions ?? 0,
    faults: (s.port!.fault ?? 0) + (s.stall?.stalled ?? 0),
    hits: s.tlb!.hits ?? 0,
    misses: s.tlb!.misses ?? 0,
    cmds: lab.kernel.smmuDriver.instances[0]?.smmu.stats.commands ?? 0,
  };
}

/** b - a + sum, field by field. */
function addDelta(sum: Counters, a: Counters, b: Counters): Counters {
  return {
    tx: sum.tx + b.tx - a.tx,
    faults: sum.faults + b.faults - a.faults,
    hits: sum.hits + b.hits - a.hits,
    misses: sum.misses + b.misses - a.misses,
    cmds: sum.cmds + b.cmds - a.cmds,
  };
}

export default defineScenario<SmmuDemoResult>({
  ...demoInfo('smmu'),

  async run({ lab, expect, fail, rng }) {
    const board = lab.board.virt ?? fail('the smmu demo runs on the virt board');
    const m = lab.machine;
    const say = (name: string, msg: string) => m.trace.emit('demo', name, msg);
    const inst = lab.kernel.smmuDriver.instances[0] ?? fail('the SMMUv3 driver did not bind');
    const gpuDev = lab.device('/soc/gpu@a000000');
    const pciDev = lab.device('/soc/pcie@40000000/pcie-testdev@1,0');
    const gpu = gpuDev.driverData as GpuDevice;
    const pcie = lab.pci('pcie-testdev');
    // everything so far was boot: the SMMUv3 driver's probe and the default domains' attach
    const bootCommands = counters(lab).cmds;
    const perDevice = new Map<string, Counters>();
    const measure = async (dev: string, fn: () => Promise<void>) => {
      const c = counters(lab);
      await fn();
      perDevice.set(dev, addDelta(perDevice.get(dev) ?? ZERO, c, counters(lab)));
    };
    const transfers: SmmuDemoResult['transfers'] = [];

    // ---- GPU: COPY between two mapped buffers, through the ring in coherent memory
    const bytes = 4 * 4096;
    const src = lab.allocPages(2, 'demo gpu src');
    const dst = lab.allocPages(2, 'demo gpu dst');
    const data = rng.bytes(bytes);
    lab.write(src, data);
    await measure(gpuDev.name, async () => {
      const srcIova = lab.dma.mapSingle(gpuDev, src, bytes, 'to-device');
      const dstIova = lab.dma.mapSingle(gpuDev, dst, bytes, 'from-device');
      gpu.submit({ op: GpuOp.COPY, a: srcIova, b: dstIova, len: bytes });
      const done = await gpu.fenceWait();
      const ok = done && Buffer.from(lab.read(dst, bytes)).equals(Buffer.from(data));
      say(
        'gpu.copy',
        `gpu: copied ${bytes} bytes iova ${hex(srcIova)} -> ${hex(dstIova)}: ${ok ? 'verified' : 'CORRUPT'}`,
      );
      transfers.push({ device: gpuDev.name, bytes, iova: hex(srcIova), ok });
      await lab.dma.unmapSingle(gpuDev, srcIova, bytes, 'to-device');
      await lab.dma.unmapSingle(gpuDev, dstIova, bytes, 'from-device');
    });

    // ---- PCIe test device: reads a mapped buffer using ATS (translation request, then translated reads)
    await measure(pciDev.name, async () => {
      const pbytes = 2 * 4096;
      const pbuf = lab.allocPages(1, 'demo pcie buffer');
      const pdata = data.subarray(0, pbytes);
      lab.write(pbuf, pdata);
      const piova = lab.dma.mapSingle(pciDev, pbuf, pbytes, 'to-device');
      const got = await pcie.read(piova, pbytes);
      const ok = got.ok && Buffer.from(got.data!).equals(Buffer.from(pdata));
      say(
        'pcie.read',
        `pcie-testdev: read ${pbytes} bytes at iova ${hex(piova)}: ${ok ? 'verified' : 'FAILED'}`,
      );
      transfers.push({ device: pciDev.name, bytes: pbytes, iova: hex(piova), ok });
      await lab.dma.unmapSingle(pciDev, piova, pbytes, 'to-device');
    });

    // ---- a bad pointer: the GPU reads an IOVA nothing maps
    const bad = 0xdead_0000;
    const fault = { device: gpuDev.name, iova: hex(bad), eventsLogged: 0, stalledThenAborted: 0 };
    const before = inst.smmu.stats.eventsLogged;
    await measure(gpuDev.name, async () => {
      const dst2 = lab.dma.mapSingle(gpuDev, dst, 4096, 'from-device');
      gpu.submit({ op: GpuOp.COPY, a: bad, b: dst2, len: 4096 });
      await gpu.fenceWait();
      await lab.dma.unmapSingle(gpuDev, dst2, 4096, 'from-device');
    });
    // the event thread logs the fault when the event queue's interrupt has run it
    await lab.waitFor(() => inst.smmu.stats.eventsLogged > before);
    fault.eventsLogged = inst.smmu.stats.eventsLogged - before;
    fault.stalledThenAborted = board.smmu.stats().stall!.terminated ?? 0;

    const f = inst.smmu.features;
    const features = Object.entries({
      s1: f.s1,
      s2: f.s2,
      ats: f.ats,
      pri: f.pri,
      msi: f.msi,
      stall: f.stalls,
      ril: f.ril,
      '2lvl-strtab': f.twoLvlStrtab,
    })
      .filter(([, v]) => v)
      .map(([n]) => n);
    const devices: DeviceStats[] = [];
    for (const [dev, sid] of [
      [gpuDev, board.gpu.sid],
      [pciDev, board.pcieTestdev.sid],
    ] as const) {
      const d = perDevice.get(dev.name) ?? ZERO;
      const dom = lab.iommu.getDomainForDev(dev);
      const isPci = dev === pciDev;
      devices.push({
        device: dev.name,
        streamId: hex(sid),
        domain: dom ? String(dom) : 'none',
        translations: d.tx,
        faults: d.faults,
        tlbHits: d.hits,
        tlbMisses: d.misses,
        tlbHitRate: d.hits + d.misses > 0 ? d.hits / (d.hits + d.misses) : null,
        commands: d.cmds,
        atsTranslationRequests: isPci ? pcie.stats().translationRequests! : null,
        atcHits: isPci ? pcie.stats().atcHits! : null,
      });
    }
    say('done', `SMMU commands during boot (probe, attach): ${bootCommands}`);

    expect(
      transfers.map((t) => t.ok),
      'GPU copy and PCIe read verified',
    ).toEqual([true, true]);
    expect(fault.eventsLogged, 'events the driver logged for the bad pointer').toBeGreaterThan(0);
    return {
      smmu: { path: inst.dev.ofNode?.path ?? inst.dev.name, state: 'registered', features },
      bootCommands,
      transfers,
      fault,
      devices,
    };
  },

  report(r) {
    const lines = [
      `SMMU ${r.smmu.path}: ${r.smmu.state} (${r.smmu.features.join(', ')}); ${r.bootCommands} commands during boot`,
      '',
      'transfers:',
      ...r.transfers.map(
        (t) =>
          `  ${pad(t.device, 34)} ${pad(t.bytes, 6)} bytes at iova ${pad(t.iova, 12)} ${t.ok ? 'ok' : 'FAILED'}`,
      ),
      `fault: ${r.fault.device} read iova ${r.fault.iova}: ${r.fault.eventsLogged} event(s) logged, ${r.fault.stalledThenAborted} stalled transaction(s) aborted`,
      '',
      `${pad('device', 34)} ${pad('sid', 6)} ${pad('translations', 12)} ${pad('faults', 7)} ${pad('TLB hit rate', 13)} ${pad('commands', 9)} ATS requests`,
    ];
    for (const d of r.devices) {
      const rate = d.tlbHitRate === null ? '-' : `${(d.tlbHitRate * 100).toFixed(1)}%`;
      lines.push(
        `${pad(d.device, 34)} ${pad(d.streamId, 6)} ${pad(d.translations, 12)} ${pad(d.faults, 7)} ${pad(rate, 13)} ${pad(d.commands, 9)} ${d.atsTranslationRequests ?? '-'}`,
      );
    }
    return lines;
  },
});
