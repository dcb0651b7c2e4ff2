/**
 * The whole stack on the virt board: the default device tree boots, the SMMUv3 driver binds
 * and registers, masters get default DMA domains, and DMA mapped with the DMA API is
 * translated by the SMMUv3 hardware model through the tables the kernel wrote.
 */
import { describe, expect, it } from 'vitest';
import { createVirtBoard, VIRT } from '../../src/hw/boards/virt.ts';
import { PORT_OK, PORT_STALLED, PortResult } from '../../src/hw/smmuv3/port.ts';
import { Kernel } from '../../src/kernel/init/kernel.ts';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { Machine, type TraceEvent } from '../../src/platform/index.ts';
import { inTask } from './stack-helpers.ts';

async function bootVirt(seed = 1) {
  const m = new Machine({ seed });
  const log: TraceEvent[] = [];
  m.trace.addSink({ write: (e) => log.push(e) });
  const board = createVirtBoard(m);
  const k = new Kernel({ machine: m, tree: parseDts(DEFAULT_PLATFORM_DTS) });
  await k.boot();
  return { m, board, k, log };
}

describe('SMMUv3 stack on the virt board', () => {
  it('binds the SMMUv3 driver and gives the GPU an IOMMU default domain', async () => {
    const { m, k } = await bootVirt();
    const smmuDev = k.core.devices.find((d) => d.ofNode?.path === '/soc/iommu@9000000')!;
    expect(smmuDev.state).toBe('bound');
    const gpu = k.core.devices.find((d) => d.ofNode?.path === '/soc/gpu@a000000')!;
    expect(gpu.state).toBe('bound');
    expect(gpu.dma.ops).toBe('iommu');
    expect(gpu.iommu?.ids).toEqual([VIRT.GPU_SID]);
    const domain = k.iommu.getDomainForDev(gpu);
    expect(domain?.isDma).toBe(true);
    expect(m.bugs.map((b) => b.message)).toEqual([]);
  });

  it('DMA mapped with dma_map_single lands in the right physical pages through the SMMU', async () => {
    const { m, board, k, log } = await bootVirt();
    const gpu = k.device('/soc/gpu@a000000')!;
    const buf = m.pages.alloc(1, 'test buffer'); // 8 KiB
    const data = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff);
    m.mem.writeBytes(buf, data);
    const iova = k.dma.mapSingle(gpu, buf + 0x100, 0x1800, 'to-device');
    expect(iova).toBeGreaterThan(0);
    expect(iova).not.toBe(buf + 0x100); // translated, not 1:1
    const got = new Uint8Array(0x1800);
    const n = board.smmu.port.dmaRead(VIRT.GPU_SID, -1, iova, got, 0, got.length);
    expect(n).toBe(0x1800);
    expect(Buffer.from(got).equals(Buffer.from(data.subarray(0x100, 0x1900)))).toBe(true);
    // after unmap the DMA faults and the driver logs the event in Linux's format
    await inTask(m, () => k.dma.unmapSingle(gpu, iova, 0x1800, 'to-device'));
    // the GPU has dma-can-stall: the faulting read is held (CD.S), reported, and — with no fault
    // handler registered — aborted by the driver with CMD_RESUME
    const r = new PortResult();
    expect(board.smmu.port.translate(VIRT.GPU_SID, -1, iova, 0, r)).toBe(PORT_STALLED);
    expect(board.smmu.upstream.stalledCount(VIRT.GPU_SID)).toBe(1);
    await m.sched.runUntilIdle();
    expect(board.smmu.upstream.stalledCount(VIRT.GPU_SID)).toBe(0);
    const lines = log.filter((e) => e.component === 'arm-smmu-v3 9000000.iommu').map((e) => e.message);
    const i = lines.indexOf('event 0x10 received:');
    expect(i).toBeGreaterThanOrEqual(0);
    expect(lines[i + 5]).toBe(
      `event: F_TRANSLATION client: a000000.gpu sid: 0x100 ssid: 0 iova: 0x${iova.toString(16)} ipa: 0`,
    );
    expect(lines[i + 6]).toMatch(/^unpriv data read s1 "Input address caused fault" stall stag: /);
    expect(board.smmu.port.translate(VIRT.GPU_SID, -1, iova + 0x100000, 0, r)).not.toBe(PORT_OK);
  });
});
