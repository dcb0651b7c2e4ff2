// Issue 22, "Done when" 3 (the per-class part): each check of `boot --check` / `lab.check()` on a
// small .dts with the exact location of the finding, and cpp line markers followed into the
// original files.

import { describe, expect, it } from 'vitest';
import type { Finding } from '../../src/api/board-check.ts';
import { boot } from '../../src/api/lab.ts';
import { socBoard } from './dts.ts';

/** A small board: RAM, an SMMUv3 (smmu), a disabled SMMUv3 (off), and `body` inside /soc. */
function board(body: string, rootExtra = ''): string {
  return socBoard(
    `		smmu: iommu@9000000 {
			compatible = "arm,smmu-v3";
			reg = <0x0 0x09000000 0x0 0x20000>;
			#iommu-cells = <1>;
		};
		off: iommu@9100000 {
			compatible = "arm,smmu-v3";
			reg = <0x0 0x09100000 0x0 0x20000>;
			#iommu-cells = <1>;
			status = "disabled";
		};
${body}`,
    rootExtra,
  );
}

async function check(dts: string, kernel = {}): Promise<Finding[]> {
  const lab = await boot({ board: { dts, fileName: 'audit.dts' }, kernel, trace: false });
  return lab.check();
}

/** Line (1-based) and column of the first occurrence of `needle` in `text`. */
function pos(text: string, needle: string): { line: number; column: number } {
  const i = text.indexOf(needle);
  if (i < 0) throw new Error(`${needle} not in the source`);
  const before = text.slice(0, i).split('\n');
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

function only(fs: Finding[], check: string): Finding {
  const f = fs.filter((x) => x.check === check);
  expect(f, JSON.stringify(fs, null, 1)).toHaveLength(1);
  return f[0]!;
}

describe('boot --check findings, one .dts per class (issue 22)', () => {
  it('a clean board has no findings, and its master works', async () => {
    const dts = board(
      `		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&smmu 0x10>; };`,
    );
    const lab = await boot({ board: { dts, fileName: 'audit.dts' }, trace: false });
    expect(lab.check()).toEqual([]);
    expect(lab.bootReport().devices.find((d) => d.path === '/soc/dma@a000000')).toMatchObject({
      state: 'bound',
      dmaOps: 'iommu',
      dmaCheck: 'ok',
      streamIds: [0x10],
    });
  });

  it('iommus-disabled and untranslated-dma: iommus points at a disabled IOMMU', async () => {
    const dts = board(
      `		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&off 0x10>; };`,
    );
    const fs = await check(dts);
    expect(only(fs, 'iommus-disabled')).toMatchObject({
      severity: 'warning',
      file: 'audit.dts',
      ...pos(dts, 'iommus = <&off'),
      node: '/soc/dma@a000000',
      property: 'iommus',
    });
    expect(only(fs, 'untranslated-dma')).toMatchObject({
      severity: 'warning',
      ...pos(dts, 'iommus = <&off'),
    });
  });

  it('iommus-missing: iommus points at a node without #iommu-cells', async () => {
    const dts =
      board(`		nothing: thing@b000000 { compatible = "vendor,thing"; reg = <0x0 0xb000000 0x0 0x1000>; };
		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&nothing 0x10>; };`);
    const f = only(await check(dts), 'iommus-missing');
    expect(f).toMatchObject({ severity: 'error', ...pos(dts, 'iommus = <&nothing'), property: 'iommus' });
    expect(f.message).toMatch(/has no #iommu-cells/);
  });

  it('iommu-cells: an SMMUv3 with #iommu-cells = <2>', async () => {
    const dts = board(
      `		bad: iommu@9200000 { compatible = "arm,smmu-v3"; reg = <0x0 0x09200000 0x0 0x20000>; #iommu-cells = <2>; };`,
    );
    const f = only(await check(dts), 'iommu-cells');
    expect(f).toMatchObject({
      severity: 'error',
      node: '/soc/iommu@9200000',
      property: '#iommu-cells',
      ...pos(dts, '#iommu-cells = <2>'),
    });
    expect(f.message).toBe('is 2; the arm,smmu-v3 binding takes 1');
  });

  it('iommu-map-overlap and iommu-map-gap on a host bridge', async () => {
    const dts = board(`		pcie@40000000 {
			compatible = "pci-host-ecam-generic";
			device_type = "pci";
			reg = <0x0 0x40000000 0x0 0x1000000>;
			#address-cells = <3>;
			#size-cells = <2>;
			iommu-map = <0x0 &smmu 0x0 0x100>, <0x80 &smmu 0x1000 0x100>, <0x400 &smmu 0x2000 0x100>;
		};`);
    const fs = await check(dts);
    const at = pos(dts, 'iommu-map =');
    expect(only(fs, 'iommu-map-overlap')).toMatchObject({ severity: 'error', ...at, property: 'iommu-map' });
    expect(only(fs, 'iommu-map-gap')).toMatchObject({ severity: 'warning', ...at });
    expect(only(fs, 'iommu-map-gap').message).toBe(
      'RIDs 0x180..0x3ff match no entry: their DMA is not translated',
    );
  });

  it('shared-stream: two unrelated masters with one StreamID', async () => {
    const dts =
      board(`		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&smmu 0x10>; };
		crypto@a100000 { compatible = "vendor,crypto"; reg = <0x0 0xa100000 0x0 0x1000>; iommus = <&smmu 0x11>, <&smmu 0x10>; };`);
    const lab = await boot({ board: { dts, fileName: 'audit.dts' }, trace: false });
    const f = only(lab.check(), 'shared-stream');
    expect(f).toMatchObject({
      severity: 'error',
      node: '/soc/crypto@a100000',
      ...pos(dts, 'iommus = <&smmu 0x11>'),
    });
    expect(f.message).toMatch(/StreamID 0x10 on \/soc\/iommu@9000000 is also \/soc\/dma@a000000's/);
    // and Linux's SMMUv3 driver refuses the second master (arm_smmu_insert_master)
    const r = lab.bootReport();
    const d = (p: string) => r.devices.find((x) => x.path === p)!;
    expect(d('/soc/dma@a000000').group).not.toBeNull();
    // ... which then runs without an IOMMU (of_dma_configure: dma-direct) and is not translated
    expect(d('/soc/crypto@a100000')).toMatchObject({ state: 'bound', group: null, dmaOps: 'direct' });
    expect(d('/soc/crypto@a100000').dmaCheck).toMatch(/not translated/);
  });

  it('dma-ranges: a window that reaches no RAM', async () => {
    const dts = board(`		bus@c000000 {
			compatible = "simple-bus";
			#address-cells = <1>;
			#size-cells = <1>;
			ranges = <0x0 0x0 0xc000000 0x100000>;
			dma-ranges = <0x0 0x0 0x10000000 0x1000000>;
			dma@0 { compatible = "vendor,dma"; reg = <0x0 0x1000>; iommus = <&smmu 0x20>; };
		};`);
    const f = only(await check(dts), 'dma-ranges');
    expect(f).toMatchObject({
      severity: 'error',
      node: '/soc/bus@c000000',
      property: 'dma-ranges',
      ...pos(dts, 'dma-ranges ='),
    });
  });

  it('deferred-master: an IOMMU no driver knows and no deferred-probe timeout', async () => {
    const dts =
      board(`		mystery: iommu@c100000 { compatible = "vendor,mystery-iommu"; reg = <0x0 0x0c100000 0x0 0x1000>; #iommu-cells = <0>; };
		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&mystery>; };`);
    const f = only(await check(dts, { deferredProbeTimeoutNs: -1 }), 'deferred-master');
    expect(f).toMatchObject({ severity: 'error', ...pos(dts, 'iommus = <&mystery>') });
    expect(f.message).toMatch(/left deferred: waiting for IOMMU: no driver for IOMMU \/soc\/iommu@c100000/);
  });

  it('cpp line markers: positions point into the original .dtsi', async () => {
    const dtsi = `		dma@a000000 {
			compatible = "vendor,dma";
			reg = <0x0 0xa000000 0x0 0x1000>;
			iommus = <&off 0x10>;
		};`;
    const src = board(`# 1 "soc-masters.dtsi" 1\n${dtsi}\n# 40 "board.dts" 2`);
    const pp = `# 1 "board.dts"\n# 1 "<built-in>"\n# 1 "board.dts"\n${src}`;
    const f = only(await check(pp), 'iommus-disabled');
    expect(f).toMatchObject({ file: 'soc-masters.dtsi', line: 4, column: 4 });
  });
});
