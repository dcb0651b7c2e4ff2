/**
 * Recoverable faults handled end to end, per second of wall time, on the whole stack (virt
 * board, kernel model, SMMUv3 driver and fault layer, SMMUv3 hardware model):
 *
 *  - iopf.stall.e2e: the GPU (8 warps, dma-can-stall) runs a FILL over pages nothing maps. Each
 *    page: the write faults and stalls -> event record -> event IRQ thread -> fault core ->
 *    the GPU's fault handler maps the page and answers SUCCESS -> CMD_RESUME (Retry) -> the
 *    retried write completes and the warp goes on.
 *  - iopf.pri.e2e: the PCIe test device (ATS + PRI) writes pages nothing maps. Each page:
 *    Translation Request (no access) -> Page Request -> PRI queue -> PRI IRQ thread -> fault
 *    core -> handler maps and answers SUCCESS -> CMD_PRI_RESP -> the device retries the
 *    translation and completes the write.
 * Handlers map every faulting page onto one physical page (no allocation in the loop).
 */

import { GpuOp } from '../src/arch/devices/gpu.ts';
import type { GpuDevice } from '../src/kernel/drivers/gpu/iommu-lab-gpu.ts';
import { type IommuDomain, iommuMap } from '../src/kernel/iommu/domain.ts';
import { IOMMU_PAGE_RESP_SUCCESS } from '../src/kernel/iommu/fault/fault.ts';
import { bootStack, dev, GPU_PATH, PCI_PATH } from '../test/integration/stack-helpers.ts';
import type { BenchCase, BenchResult } from './types.ts';

type Stack = Awaited<ReturnType<typeof bootStack>>;

async function inKernel<T>(s: Stack, fn: () => Promise<T>): Promise<T> {
  let out!: T;
  let err: unknown = null;
  const t = s.m.exec.spawn('bench', async () => {
    try {
      out = await fn();
    } catch (e) {
      err = e;
    }
  });
  await s.m.sched.runUntil(() => t.finished);
  if (err) throw err;
  return out;
}

/** Install a handler that maps the faulting page (onto `pa`) in the group's domain and answers SUCCESS. */
function mapOnDemand(
  s: Stack,
  d: Parameters<Stack['k']['faults']['registerDeviceFaultHandler']>[0],
  domain: IommuDomain,
) {
  const pa = s.m.pages.alloc(0, 'bench backing page');
  s.k.faults.registerDeviceFaultHandler(
    d,
    (f, ctx) => {
      const page = f.addr - (f.addr % 4096);
      if (iommuMap(domain, page, pa, 4096, 3) < 0) return -12;
      return s.k.faults.groupResponse(ctx.group!, IOMMU_PAGE_RESP_SUCCESS);
    },
    null,
  );
}

async function stallE2e(pages: number): Promise<{ perSec: number; faults: number }> {
  const s = await bootStack({ trace: false, board: { gpu: { warps: 8 } } });
  const gpu = dev(s.k, GPU_PATH);
  const gd = gpu.driverData as GpuDevice;
  const domain = s.k.iommu.getDomainForDev(gpu)!;
  if ((await inKernel(s, () => s.k.faults.enableIopf(gpu))) !== 0) throw new Error('enableIopf');
  mapOnDemand(s, gpu, domain);
  let base = 0x40_0000_0000;
  const job = async (n: number) => {
    const ok = await inKernel(s, async () => {
      gd.submit({ op: GpuOp.FILL, a: base, value: 1, len: n * 4096 });
      return gd.fenceWait(60_000_000_000);
    });
    base += n * 4096;
    if (!ok) throw new Error('GPU job did not complete');
  };
  await job(2000); // warm-up
  const before = s.k.faults.stats.responses.success;
  const t0 = performance.now();
  await job(pages);
  const secs = (performance.now() - t0) / 1000;
  const faults = s.k.faults.stats.responses.success - before;
  if (faults !== pages) throw new Error(`expected ${pages} faults, handled ${faults}`);
  return { perSec: faults / secs, faults };
}

async function priE2e(pages: number): Promise<{ perSec: number; faults: number }> {
  const s = await bootStack({ trace: false });
  const pci = dev(s.k, PCI_PATH);
  const ep = s.board!.pcieTestdev;
  const domain = await inKernel(s, async () => {
    const d = (await s.k.iommu.domainAllocPaging(pci)) as IommuDomain;
    if ((await s.k.iommu.attachDevice(d, pci)) !== 0) throw new Error('attach');
    if ((await s.k.faults.enableIopf(pci)) !== 0) throw new Error('enableIopf');
    return d;
  });
  mapOnDemand(s, pci, domain);
  // the endpoint model allows maxPageRequestRetries (4) page requests per DMA job
  const chunk = 4;
  const buf = new Uint8Array(chunk * 4096);
  let base = 0x1000_0000;
  const run = async (n: number) => {
    for (let done = 0; done < n; done += chunk) {
      const len = Math.min(chunk, n - done) * 4096;
      let fin = false;
      let ok = false;
      ep.dma({
        ssid: -1,
        iova: base,
        buf: buf.subarray(0, len),
        write: true,
        onDone: (o) => {
          fin = true;
          ok = o;
        },
      });
      await s.m.sched.runUntil(() => fin);
      if (!ok) throw new Error('PCIe DMA failed');
      base += len;
    }
  };
  await run(1024); // warm-up
  const before = s.k.faults.stats.responses.success;
  const t0 = performance.now();
  await run(pages);
  const secs = (performance.now() - t0) / 1000;
  const faults = s.k.faults.stats.responses.success - before;
  if (faults !== pages) throw new Error(`expected ${pages} faults, handled ${faults}`);
  return { perSec: faults / secs, faults };
}

export const benchmarks: BenchCase[] = [
  {
    name: 'iopf.stall.e2e',
    run: async (): Promise<BenchResult[]> => {
      const r = await stallE2e(20_000);
      return [{ name: 'iopf.stall.e2e', value: r.perSec, unit: 'faults/s' }];
    },
  },
  {
    name: 'iopf.pri.e2e',
    run: async (): Promise<BenchResult[]> => {
      const r = await priE2e(20_000);
      return [{ name: 'iopf.pri.e2e', value: r.perSec, unit: 'faults/s' }];
    },
  },
];
