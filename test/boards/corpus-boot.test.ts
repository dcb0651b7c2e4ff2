// Issue 22, "Done when" 1: on each corpus board, every available master whose IOMMU is modelled and
// available binds through it with the StreamIDs (and SMR masks) of its `iommus` cells, in a group,
// and its proof DMA works; masters of disabled IOMMUs follow the policy; unmodelled IOMMU kinds are
// named. The probe-attempt count stays within 3 per device.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type BootedBoard, boardBootReport, bootBoard } from '../../src/api/board-boot.ts';
import { iommuHardware } from '../../src/api/board-masters.ts';
import type { BootReport } from '../../src/api/boot-report.ts';
import { boot } from '../../src/api/lab.ts';
import { parseFdt } from '../../src/kernel/of/fdt.ts';
import { LINUX_IOMMU_POLICY, ofIommuSpecs } from '../../src/kernel/of/of-iommu.ts';
import { notPopulatedReason } from '../../src/kernel/of/of-platform.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const corpusDir = path.resolve(here, '../../../shared/corpus/dtb');
const haveCorpus = existsSync(corpusDir);
if (!haveCorpus) console.warn(`corpus boards skipped: ${corpusDir} not found`);
const boards = haveCorpus ? readdirSync(corpusDir).filter((f) => f.endsWith('.dtb')) : [];

/**
 * Masters behind a modelled IOMMU that do not end bound with a working proof DMA, and why: what
 * they do instead is asserted, so that a change (a fix) makes this test fail until updated.
 */
const KNOWN: Array<{ board: string; path: RegExp; outcome: RegExp; why: string }> = [];

async function bootCorpus(file: string): Promise<{ b: BootedBoard; r: BootReport }> {
  const tree = parseFdt(readFileSync(path.join(corpusDir, file)));
  const b = await bootBoard(tree, { policy: { ...LINUX_IOMMU_POLICY } });
  return { b, r: boardBootReport(b, file, null) };
}

describe.skipIf(!haveCorpus)('corpus boards boot as Linux would (issue 22)', () => {
  it.each(boards)('%s: masters bind through modelled IOMMUs and prove their DMA', async (file) => {
    const { b, r } = await bootCorpus(file);
    const tree = b.kernel.tree;
    const hw = iommuHardware(b.board);
    let checked = 0;
    for (const node of tree.nodes()) {
      if (!node.has('iommus') || !node.available || notPopulatedReason(node) !== null) continue;
      const specs = ofIommuSpecs(tree, node);
      if (!specs.ok || specs.entries.length === 0) continue;
      const iommu = specs.entries[0]!.node;
      const d = r.devices.find((x) => x.path === node.path);
      expect(d, node.path).toBeDefined();
      const mine = specs.entries.filter((e) => e.node === iommu);
      expect(d!.iommu, node.path).toBe(iommu.path);
      expect(d!.streamIds, node.path).toEqual(mine.flatMap((e) => e.args.slice(0, 1)));
      if ((iommu.u32('#iommu-cells') ?? 1) >= 2)
        expect(d!.streamMasks, node.path).toEqual(mine.map((e) => e.args[1]));
      else expect(d!.streamMasks, node.path).toBeUndefined();
      if (!iommu.available) {
        // Linux's default policy for a disabled IOMMU: -ENODEV at once, DMA without translation
        expect(d, node.path).toMatchObject({ state: 'bound', group: null, domainType: 'none' });
        expect(['direct', 'swiotlb']).toContain(d!.dmaOps);
        expect(d!.reason, node.path).toMatch(/is disabled/);
      } else if (hw.has(iommu)) {
        const known = KNOWN.find((k) => k.board === file && k.path.test(node.path));
        if (known !== undefined) {
          // a limitation of another part of the model, stated here so that a fix shows up
          expect(`${d!.state}: ${d!.dmaCheck ?? d!.reason}`, `${node.path} (${known.why})`).toMatch(
            known.outcome,
          );
          continue;
        }
        expect(d, node.path).toMatchObject({ state: 'bound', dmaOps: 'iommu' });
        expect(d!.group, node.path).not.toBeNull();
        if (d!.domainType === 'identity') {
          // the IOMMU driver asked for an identity default domain (qcom's def_domain_type list)
          expect(d!.dmaCheck, node.path).toBe('ok (identity domain: no isolation)');
        } else {
          expect(['dma', 'dma-fq'], node.path).toContain(d!.domainType);
          expect(d!.dmaCheck, node.path).toBe('ok');
        }
        checked++;
      } else {
        // an IOMMU kind the model lacks: named, with what Linux would do
        expect(d!.unmodelledIommu, node.path).toBeDefined();
        expect(d!.unmodelledIommu!.compatible).toBe(iommu.compatible[0]);
      }
    }
    // PCI functions behind modelled IOMMUs
    for (const d of r.devices.filter((x) => x.bus === 'pci')) {
      const target = d.iommu === null ? undefined : tree.findByPath(d.iommu);
      const known = KNOWN.find((k) => k.board === file && k.path.test(d.path));
      if (known !== undefined && target !== undefined && hw.has(target)) {
        expect(`${d.state}: ${d.dmaCheck ?? d.reason}`, `${d.path} (${known.why})`).toMatch(known.outcome);
      } else if (target !== undefined && hw.has(target) && target.available) {
        expect(d, d.path).toMatchObject({ state: 'bound', dmaOps: 'iommu', dmaCheck: 'ok' });
        expect(d.group, d.path).not.toBeNull();
        checked++;
      }
    }
    // nodes Linux never makes devices are not listed
    expect(
      r.devices.some(
        (x) => x.path.includes('/reserved-memory/') || x.compatible.includes('operating-points-v2'),
      ),
    ).toBe(false);
    // probe attempts stay within 3 per device
    // (a driver that rejects the match, e.g. msm-adreno finding no GPU model, costs one more)
    for (const d of r.devices)
      expect(d.probeAttempts - (d.rejectedBy?.length ?? 0), d.path).toBeLessThanOrEqual(3);
    if (hw.size > 0) expect(checked).toBeGreaterThan(0);
    expect(r.lastBindNs).not.toBeNull();
  });

  it.skipIf(!boards.includes('rk3588-rock-5b.dtb'))(
    'rk3588: rockchip-iommu masters are unmodelled; the SMMUv3 PCIe functions work',
    async () => {
      const { r } = await bootCorpus('rk3588-rock-5b.dtb');
      const rk = r.devices.filter((d) => d.unmodelledIommu !== undefined);
      expect(rk.length).toBe(11);
      for (const d of rk) {
        expect(d.unmodelledIommu!.linuxDriver).toBe('rockchip-iommu');
        // policy linux: deferred until the timeout, then DMA without translation
        expect(d).toMatchObject({ state: 'bound', domainType: 'none', group: null });
        expect(d.reason).toMatch(/no driver for IOMMU .*-ETIMEDOUT: gave up waiting/);
      }
      const pci = r.devices.filter((d) => d.bus === 'pci');
      expect(pci.map((d) => d.streamIds[0])).toEqual([0x4000, 0x0, 0x2000]);
      for (const d of pci)
        expect(d).toMatchObject({
          state: 'bound',
          dmaOps: 'iommu',
          dmaCheck: 'ok',
          iommu: '/iommu@fc900000',
        });
      expect(new Set(pci.map((d) => d.group)).size).toBe(3);
    },
  );

  it.skipIf(!boards.includes('morello-sdp.dtb'))(
    '--pci: the functions a user asks for replace the one per iommu-map entry',
    async () => {
      const tree = parseFdt(readFileSync(path.join(corpusDir, 'morello-sdp.dtb')));
      const b = await bootBoard(tree, {
        policy: { ...LINUX_IOMMU_POLICY },
        pci: [
          { rid: 0x100, host: '/pcie@28c0000000' },
          { rid: 0x208, host: '/pcie@28c0000000' },
        ],
      });
      const r = boardBootReport(b, 'morello', null);
      const fns = r.devices.filter((d) => d.bus === 'pci' && d.path.startsWith('/pcie@28c0000000/'));
      expect(fns.map((d) => [d.name, d.streamIds, d.dmaCheck])).toEqual([
        ['0000:01:00.0', [0x100], 'ok'],
        ['0000:02:01.0', [0x208], 'ok'],
      ]);
      // the other bridge still gets one function per iommu-map entry
      expect(r.devices.filter((d) => d.path.startsWith('/pcie@4fc0000000/')).map((d) => d.name)).toEqual([
        '0000:00:00.0',
      ]);
      await expect(
        bootBoard(parseFdt(readFileSync(path.join(corpusDir, 'morello-sdp.dtb'))), {
          policy: { ...LINUX_IOMMU_POLICY },
          pci: [{ rid: 0x100, host: '/nope' }],
        }),
      ).rejects.toThrow(/--pci: no PCI host bridge at \/nope/);
    },
  );

  it.skipIf(!boards.includes('armada-8040-mcbin.dtb'))(
    'masters of a disabled IOMMU follow the policy: bypass (Linux) or fail',
    async () => {
      const file = path.join(corpusDir, 'armada-8040-mcbin.dtb');
      const masters = (r: BootReport) =>
        r.devices.filter((d) => d.iommu === '/soc/bus@f0000000/iommu@100000' && d.status === 'okay');
      const bypass = await bootBoard(parseFdt(readFileSync(file)), { policy: { ...LINUX_IOMMU_POLICY } });
      const rb = masters(boardBootReport(bypass, file, null));
      expect(rb.length).toBeGreaterThan(0);
      for (const d of rb) {
        expect(d).toMatchObject({ state: 'bound', dmaOps: 'direct', probeAttempts: 2 });
        expect(d.reason).toMatch(
          /IOMMU \/soc\/bus@f0000000\/iommu@100000 is disabled; DMA is not translated/,
        );
      }
      const fail = await bootBoard(parseFdt(readFileSync(file)), {
        policy: { ...LINUX_IOMMU_POLICY, disabled: 'fail' },
      });
      const rf = masters(boardBootReport(fail, file, null));
      expect(rf.map((d) => d.path)).toEqual(rb.map((d) => d.path));
      for (const d of rf) {
        expect(d).toMatchObject({ state: 'failed', dmaOps: 'none' });
        expect(d.reason).toMatch(/is disabled \(policy: fail\)/);
      }
    },
  );

  it.skipIf(!boards.includes('morello-sdp.dtb'))(
    'domain types per kernel settings: dma (strict), dma-fq (lazy), identity (passthrough)',
    async () => {
      const file = path.join(corpusDir, 'morello-sdp.dtb');
      const types = async (kernel: { strict?: boolean; passthrough?: boolean }) => {
        const lab = await boot({ board: { file }, kernel, trace: false });
        return lab
          .bootReport()
          .devices.filter((d) => d.iommu !== null)
          .map((d) => [d.domainType, d.dmaCheck]);
      };
      expect(await types({})).toEqual(Array(3).fill(['dma', 'ok']));
      expect(await types({ strict: false })).toEqual(Array(3).fill(['dma-fq', 'ok']));
      expect(await types({ passthrough: true })).toEqual(
        Array(3).fill(['identity', 'ok (identity domain: no isolation)']),
      );
    },
  );

  it.skipIf(!boards.includes('sdm845-db845c.dtb'))(
    'a driver that rejects the match (-ENODEV) leaves the device to the next one: the Adreno GPU without a GPU model',
    async () => {
      const { r } = await bootCorpus('sdm845-db845c.dtb');
      const gpu = r.devices.find((d) => d.path === '/soc@0/gpu@5000000')!;
      if (gpu.iommu === null || gpu.dmaOps !== 'iommu') return; // the arm-smmu driver is not in this model
      expect(gpu).toMatchObject({
        state: 'bound',
        driver: 'iommu-lab-generic-client',
        rejectedBy: ['msm-adreno'],
        // qcom's def_domain_type list: the Adreno GPU gets an identity default domain
        domainType: 'identity',
        dmaCheck: 'ok (identity domain: no isolation)',
      });
    },
  );
});
