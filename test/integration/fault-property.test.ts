/**
 * Property: for random interleavings of stall faults (GPU), PRI page-request groups (PCIe
 * device, with and without PASID, partial requests), handler responses with any code (and
 * duplicates), domain changes, PASID detaches and device removals, every recoverable fault
 * gets exactly one response — at the device (one completion per stalled transaction, one PRG
 * response per group) and in the fault core (one response per group) — and no transaction
 * stays stalled forever.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PORT_STALLED } from '../../src/hw/smmuv3/port.ts';
import type { PriResponseCode, UpstreamMaster } from '../../src/hw/smmuv3/upstream.ts';
import type { IommuDomain } from '../../src/kernel/iommu/domain.ts';
import type { IommuPageResponseCode } from '../../src/kernel/iommu/fault/fault.ts';
import type { IopfGroup } from '../../src/kernel/iommu/fault/io-pgfault.ts';
import { bootFaults, task, translateOnce } from '../kernel/fault/stack.ts';

const GPU_SID = 0x100;
const PCI_SID = 8;
const BAD = 0x40_0000_0000;

type Action =
  | { k: 'stall'; page: number }
  | { k: 'pri'; pasid: boolean; pages: number }
  | { k: 'respond'; pick: number; code: IommuPageResponseCode; byId: boolean }
  | { k: 'detach'; gpu: boolean }
  | { k: 'remove'; gpu: boolean }
  | { k: 'advance'; ns: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('stall' as const), page: fc.nat(7) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('pri' as const),
      pasid: fc.boolean(),
      pages: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('respond' as const),
      pick: fc.nat(50),
      code: fc.constantFrom(0, 1, 2) as fc.Arbitrary<IommuPageResponseCode>,
      byId: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('detach' as const), gpu: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('remove' as const), gpu: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('advance' as const), ns: fc.integer({ min: 0, max: 150_000 }) }),
  },
);

async function runCase(actions: Action[]): Promise<void> {
  const s = await bootFaults({ trace: false, keepRecords: false });
  const { m, k, board } = s;
  await s.enableIopf(s.gpu);
  await s.enableIopf(s.pci);
  const pciRid = await s.attachNew(s.pci);
  let pciPasidDom = await s.attachNew(s.pci, 1);
  void pciRid;
  // device side: what each StreamID hears back
  const stallOut = new Map<number, number>(); // stag -> transactions held and not yet completed
  let stallErrors = 0;
  const priResp = new Map<number, number>(); // prgi -> responses
  const gpuDev: UpstreamMaster = {
    stallCompleted: (_sid, stag) => {
      const n = stallOut.get(stag) ?? 0;
      if (n <= 0) stallErrors++;
      stallOut.set(stag, n - 1);
    },
  };
  const pciDev: UpstreamMaster = {
    priResponse: (_sid, _ssid, prgi, _code: PriResponseCode) =>
      priResp.set(prgi, (priResp.get(prgi) ?? 0) + 1),
  };
  board.smmu.upstream.attach(GPU_SID, gpuDev);
  board.smmu.upstream.attach(PCI_SID, pciDev);
  // fault-core side: responses per group
  const delivered = new Set<number>();
  const responses = new Map<number, number>();
  k.faults.observe((r) => {
    if (r.kind === 'fault' && r.outcome === 'delivered') delivered.add(r.groupId!);
    if (r.kind === 'response') responses.set(r.groupId, (responses.get(r.groupId) ?? 0) + 1);
  });
  const groups: IopfGroup[] = [];
  for (const d of [s.gpu, s.pci])
    k.faults.registerDeviceFaultHandler(
      d,
      (_f, ctx) => {
        groups.push(ctx.group!);
        return 0;
      },
      null,
      { timeoutNs: 400_000 },
    );
  let gpuAlt: IommuDomain | null = null;
  const removed = { gpu: false, pci: false };
  let nextPrgi = 0;
  const issuedPrgs: number[] = [];
  for (const a of actions) {
    switch (a.k) {
      case 'stall': {
        const r = translateOnce(board, GPU_SID, BAD + a.page * 4096, 0);
        if (r.status === PORT_STALLED) stallOut.set(r.stag, (stallOut.get(r.stag) ?? 0) + 1);
        break;
      }
      case 'pri': {
        const prgi = nextPrgi++;
        issuedPrgs.push(prgi);
        const ssid = a.pasid ? 1 : -1;
        for (let p = 0; p < a.pages; p++)
          board.smmu.upstream.priRequest(
            PCI_SID,
            ssid,
            0x10_0000 + (prgi * 4 + p) * 4096,
            prgi,
            p === a.pages - 1,
            true,
            false,
            false,
            false,
          );
        break;
      }
      case 'respond': {
        if (groups.length === 0) break;
        const g = groups[a.pick % groups.length]!;
        if (a.byId) {
          const pasid = g.pasid === 0 ? undefined : g.pasid;
          await task(m, () => k.faults.pageResponse(g.dev, { pasid, grpid: g.grpid, code: a.code }));
        } else k.faults.groupResponse(g, a.code);
        break;
      }
      case 'detach': {
        if (a.gpu && !removed.gpu) {
          await task(m, async () => {
            if (gpuAlt === null) {
              gpuAlt = (await k.iommu.domainAllocPaging(s.gpu)) as IommuDomain;
              expect(await k.iommu.attachDevice(gpuAlt, s.gpu)).toBe(0);
            } else {
              await k.iommu.detachDevice(gpuAlt, s.gpu);
              gpuAlt = null;
            }
          });
        } else if (!a.gpu && !removed.pci) {
          await task(m, async () => {
            await k.iommu.detachDevicePasid(pciPasidDom, s.pci, 1);
            pciPasidDom = (await k.iommu.domainAllocPaging(s.pci)) as IommuDomain;
            expect(await k.iommu.attachDevicePasid(pciPasidDom, s.pci, 1)).toBe(0);
          });
        }
        break;
      }
      case 'remove': {
        const key = a.gpu ? 'gpu' : 'pci';
        if (!removed[key]) {
          removed[key] = true;
          await task(m, () => k.iommu.releaseDevice(a.gpu ? s.gpu : s.pci));
        }
        break;
      }
      case 'advance':
        await m.sched.runFor(a.ns);
        break;
    }
  }
  await m.sched.runUntilIdle();
  // no transaction stays stalled; each completed exactly once
  expect(board.smmu.upstream.stalledCount(GPU_SID)).toBe(0);
  expect(stallErrors).toBe(0);
  for (const [stag, n] of stallOut) expect({ stag, n }).toEqual({ stag, n: 0 });
  // each PRG got exactly one response
  for (const prgi of issuedPrgs) expect({ prgi, n: priResp.get(prgi) ?? 0 }).toEqual({ prgi, n: 1 });
  // each group delivered to a handler was answered exactly once
  for (const id of delivered) expect({ id, n: responses.get(id) ?? 0 }).toEqual({ id, n: 1 });
  for (const [id, n] of responses) expect({ id, n }).toEqual({ id, n: 1 });
  expect(k.faults.liveObjects).toBe(0);
  expect(m.bugs.map((b) => b.message)).toEqual([]);
}

describe('fault API property', () => {
  it('every recoverable fault gets exactly one response; nothing stays stalled', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 60 }), (actions) => runCase(actions)),
      { numRuns: 60, seed: 0x10f, endOnFailure: true },
    );
  }, 60_000);
});
