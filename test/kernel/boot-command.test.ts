import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { parseFdt, writeFdt } from '../../src/kernel/of/fdt.ts';
import { ofIommuSpecs, parseIdMap } from '../../src/kernel/of/of-iommu.ts';
import { hex } from '../../src/kernel/of/tree.ts';
import type { BootReport } from '../../src/tools/boot/report.ts';
import { main } from '../../src/tools/cli/main.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sharedDir = path.resolve(repoRoot, '../shared');
const corpusDir = path.join(sharedDir, 'corpus/dtb');

/** Runs `iommu-lab boot ARGV…` in-process; `files` are read before the real file system. */
async function run(argv: string[], files: Record<string, Uint8Array | string> = {}) {
  let out = '';
  let err = '';
  const rc = await main(['boot', ...argv], {
    out: (s) => {
      out += `${s}\n`;
    },
    err: (s) => {
      err += `${s}\n`;
    },
    readFile: async (p) => {
      const f = files[p];
      if (f === undefined) return new Uint8Array(await readFile(p));
      return typeof f === 'string' ? new TextEncoder().encode(f) : f;
    },
    readStdin: async () => '',
    writeFile: async () => {},
  });
  return { rc, out, err };
}

describe('iommu-lab boot', () => {
  it('--check prints dtc-style findings with file:line:column and exits 1 on an error', async () => {
    const file = path.join(repoRoot, 'examples/boards/audit.dts');
    const { rc, out } = await run(['--check', file]);
    expect(rc).toBe(1);
    expect(out).toContain(
      `${file}:46:4: error (shared-stream): /soc/crypto@a100000:iommus: StreamID 0x21 on /soc/iommu@9000000 is also /soc/dma-controller@a000000's`,
    );
    expect(out).toMatch(/1 error\(s\), 3 warning\(s\)\n$/);
    const json = await run(['--check', '--json', file]);
    expect(json.rc).toBe(1);
    const r = JSON.parse(json.out) as { findings: Array<{ check: string; line?: number }> };
    expect(r.findings.map((f) => f.check).sort()).toEqual([
      'iommu-map-gap',
      'iommus-disabled',
      'shared-stream',
      'untranslated-dma',
    ]);
    // the default platform is clean: exit 0
    expect((await run(['--check'])).rc).toBe(0);
  });

  it('--pci BDF@HOST puts the functions asked for behind a host bridge; a bad one is refused', async () => {
    const file = path.join(repoRoot, 'examples/boards/audit.dts');
    const { rc, out } = await run(['--json', '--pci', '02:00.0@/soc/pcie@40000000', file]);
    expect(rc).toBe(0);
    const r = JSON.parse(out) as BootReport;
    expect(r.devices.filter((d) => d.bus === 'pci').map((d) => [d.name, d.streamIds, d.dmaCheck])).toEqual([
      ['0000:02:00.0', [0x300], 'ok'],
    ]);
    const bad = await run(['--pci', '02:00.0', file]);
    expect(bad.rc).toBe(1);
    expect(bad.err).toMatch(/--pci 02:00.0: expected BDF@HOSTPATH/);
  });

  it('--no-client-drivers leaves masters without a modelled driver unbound', async () => {
    const { rc, out } = await run(['--json', '--no-client-drivers']);
    expect(rc).toBe(0);
    const r = JSON.parse(out) as BootReport;
    const eth = r.devices.find((x) => x.path === '/soc/pcie@40000000/ethernet@2,0')!;
    expect(eth).toMatchObject({ bus: 'pci', state: 'no-driver', dmaOps: 'none' });
  });

  it('boots the default platform: honest states, deferral, timeout, DMA ops', async () => {
    const { rc, out } = await run(['--json']);
    expect(rc).toBe(0);
    const r = JSON.parse(out) as BootReport;
    const iommu = (p: string) => r.iommus.find((x) => x.path === p)!;
    const dev = (p: string) => r.devices.find((x) => x.path === p)!;
    // the SMMUv3 driver probes the SMMUv3 hardware model of the virt board and registers it
    expect(iommu('/soc/iommu@9000000')).toMatchObject({
      compatible: ['arm,smmu-v3'],
      status: 'okay',
      state: 'registered',
      driver: 'arm-smmu-v3',
      linuxDriver: 'arm-smmu-v3',
      reason: null,
    });
    expect(iommu('/soc/iommu@a100000')).toMatchObject({
      state: 'no-driver',
      compatible: ['vendor,unknown-iommu'],
    });
    // GPU: behind the SMMU → deferred until the SMMU registered, then DMA through the IOMMU
    expect(dev('/soc/gpu@a000000')).toMatchObject({
      state: 'bound',
      dmaOps: 'iommu',
      reason: null,
      iommus: [{ iommu: '/soc/iommu@9000000', args: ['0x100'] }],
    });
    expect(dev('/soc/gpu@a000000').probeAttempts).toBeGreaterThan(1);
    expect(dev('/soc/dma-controller@a010000')).toMatchObject({
      state: 'bound',
      dmaOps: 'direct',
      iommus: [],
      reason: null,
    });
    expect(dev('/soc/dma-controller@a020000')).toMatchObject({
      state: 'bound',
      iommus: [{ iommu: '/soc/iommu@a100000', args: [] }],
    });
    expect(dev('/soc/pcie@40000000/pcie-testdev@1,0')).toMatchObject({
      bus: 'pci',
      state: 'bound',
      dmaOps: 'iommu',
      iommus: [{ iommu: '/soc/iommu@9000000', args: ['0x8'] }],
    });
    // no modelled driver: the generic client driver binds it through the IOMMU
    expect(dev('/soc/pcie@40000000/ethernet@2,0')).toMatchObject({
      bus: 'pci',
      state: 'bound',
      driver: 'iommu-lab-generic-client',
      dmaOps: 'iommu',
    });
    expect(r.iommuMaps).toEqual([
      {
        path: '/soc/pcie@40000000',
        entries: [{ ridBase: '0x0', iommu: '/soc/iommu@9000000', iommuBase: '0x0', length: '0x10000' }],
        mask: '0xffff',
      },
    ]);
    // the DMA engine behind the driverless IOMMU still waits for the deferred-probe timeout;
    // the SMMU's own probe (register handshakes, CMD_SYNCs) adds microseconds of virtual time
    expect(r.probeTimedOut).toBe(true);
    expect(r.virtualTimeNs).toBeGreaterThanOrEqual(10e9);
    expect(r.virtualTimeNs).toBeLessThan(10e9 + 1e6);
    for (const d of r.devices) expect(['bound', 'no-driver']).toContain(d.state);
    expect(dev('/soc/clock-controller@a030000').probeAttempts).toBeGreaterThan(1);
  });

  it('is deterministic and has a text form', async () => {
    const a = await run(['--json']);
    const b = await run(['--json']);
    expect(a.out).toBe(b.out);
    const t = await run([]);
    expect(t.rc).toBe(0);
    expect(t.out).toMatch(/\/soc\/iommu@9000000 {2}\[arm,smmu-v3\] {2}registered/);
    expect(t.out).toMatch(
      /bus=platform driver=iommu-lab-gpu state=bound dma=iommu iommu=\/soc\/iommu@9000000<0x100>/,
    );
  });

  it('boots a .dts file with /include/, and the same platform as .dtb', async () => {
    const files = {
      'p/board.dts': '/dts-v1/;\n/include/ "soc.dtsi"\n&gpu { status = "disabled"; };',
      'p/soc.dtsi': DEFAULT_PLATFORM_DTS.replace('/dts-v1/;', '').replace(
        'gpu@a000000 {',
        'gpu: gpu@a000000 {',
      ),
      'p/board.dtb': writeFdt(parseDts(DEFAULT_PLATFORM_DTS)),
    };
    const a = await run(['p/board.dts', '--json'], files);
    expect(a.rc).toBe(0);
    const r = JSON.parse(a.out) as BootReport;
    expect(r.devices.find((d) => d.path === '/soc/gpu@a000000')).toMatchObject({
      status: 'disabled',
      state: 'disabled',
    });
    const b = await run(['p/board.dtb', '--json'], files);
    const def = await run(['--json']);
    const strip = (s: string) => JSON.parse(s, (k, v) => (k === 'source' ? undefined : v));
    expect(strip(b.out)).toEqual(strip(def.out));
  });

  it('malformed input: non-zero exit and a message naming the offset', async () => {
    const good = writeFdt(parseDts(DEFAULT_PLATFORM_DTS));
    const bad = good.slice();
    bad[0] = 0;
    const r1 = await run(['x.dtb'], { 'x.dtb': bad });
    expect(r1.rc).toBe(1);
    expect(r1.err).toMatch(/x\.dtb: malformed dtb at offset 0x0 \(0\): bad magic/);
    const r2 = await run(['t.dtb'], { 't.dtb': good.slice(0, 100) });
    expect(r2.rc).toBe(1);
    expect(r2.err).toMatch(/offset 0x64 \(100\): truncated/);
    const r3 = await run(['y.dts'], { 'y.dts': '/dts-v1/;\n/ { a = <1 ; };' });
    expect(r3.rc).toBe(1);
    expect(r3.err).toMatch(/y\.dts:2:\d+ \(offset \d+\)/);
    const r4 = await run(['/nonexistent/file.dtb']);
    expect(r4.rc).toBe(1);
    expect(r4.err).toMatch(/cannot read/);
    const r5 = await run(['--bogus']);
    expect(r5.rc).toBe(2);
  });

  it('policies from the command line: strict fails the masters of a driverless IOMMU', async () => {
    const { out } = await run(['--json', '--iommu-policy=strict', '--timeout=1']);
    const r = JSON.parse(out) as BootReport;
    expect(r.virtualTimeNs).toBeGreaterThanOrEqual(1e9);
    expect(r.virtualTimeNs).toBeLessThan(1e9 + 1e6);
    // the DMA engine behind the driverless IOMMU fails; the GPU behind the SMMUv3 is unaffected
    expect(r.devices.find((d) => d.path === '/soc/dma-controller@a020000')).toMatchObject({
      state: 'failed',
    });
    expect(r.devices.find((d) => d.path === '/soc/gpu@a000000')).toMatchObject({
      state: 'bound',
      dmaOps: 'iommu',
    });
  });
});

describe.skipIf(!existsSync(corpusDir))('real device trees (../shared/corpus/dtb)', () => {
  if (!existsSync(corpusDir)) console.log(`skipping corpus boot tests: ${corpusDir} not found`);
  it('every dtb boots: IOMMUs, masters with raw cells, iommu-maps, honest no-driver', async () => {
    const files = (await readdir(corpusDir)).filter((f) => f.endsWith('.dtb')).sort();
    expect(files.length).toBeGreaterThanOrEqual(10);
    const summary: Record<string, { devices: number; iommus: number; maps: number }> = {};
    for (const f of files) {
      const file = path.join(corpusDir, f);
      const { rc, out, err } = await run([file, '--json']);
      expect(err, f).toBe('');
      expect(rc, f).toBe(0);
      const r = JSON.parse(out) as BootReport;
      const tree = parseFdt(new Uint8Array(await readFile(file)));
      // Every node with #iommu-cells is listed as an IOMMU.
      const iommuNodes = [...tree.nodes()].filter((n) => n.has('#iommu-cells')).map((n) => n.path);
      expect(r.iommus.map((i) => i.path).sort(), f).toEqual(iommuNodes.sort());
      for (const i of r.iommus) {
        // The SMMUv3 and arm-smmu (SMMUv1/v2) drivers exist in the model: an available
        // arm,smmu-v3 or arm-smmu node (which gets a hardware model on the board) registers;
        // nothing else may claim to.
        if ((i.compatible.includes('arm,smmu-v3') || i.linuxDriver === 'arm-smmu') && i.status === 'okay') {
          expect(i.state, `${f} ${i.path}`).toBe('registered');
        } else expect(['no-driver', 'disabled'], `${f} ${i.path}`).toContain(i.state);
      }
      const registered = new Set(r.iommus.filter((i) => i.state === 'registered').map((i) => i.path));
      // Every node with `iommus` is a device listing each IOMMU path and the raw cells.
      for (const n of tree.nodes()) {
        if (!n.has('iommus')) continue;
        const d = r.devices.find((x) => x.path === n.path);
        expect(d, `${f} ${n.path}`).toBeDefined();
        const specs = ofIommuSpecs(tree, n);
        expect(d!.iommus, `${f} ${n.path}`).toEqual(
          specs.entries.map((e) => ({ iommu: e.node.path, args: e.args.map((a) => hex(a)) })),
        );
        expect(d!.iommus.length, `${f} ${n.path}`).toBeGreaterThan(0);
        if (d!.state === 'bound' && d!.dmaOps === 'iommu') {
          expect(
            d!.iommus.some((x) => registered.has(x.iommu)),
            `${f} ${n.path}`,
          ).toBe(true);
        }
      }
      // Every iommu-map decoded.
      const mapNodes = [...tree.nodes()].filter((n) => n.has('iommu-map'));
      expect(
        r.iommuMaps.map((m) => m.path),
        f,
      ).toEqual(mapNodes.map((n) => n.path));
      for (const m of r.iommuMaps) {
        const info = parseIdMap(tree, tree.findByPath(m.path)!);
        expect(m.entries.length, `${f} ${m.path}`).toBe(info.entries.length);
        for (const e of m.entries) expect(e.iommu, `${f} ${m.path}`).not.toBeNull();
      }
      // Unknown compatibles are no-driver with a reason, never faked.
      for (const d of r.devices) {
        if (d.state === 'no-driver') expect(d.reason, `${f} ${d.path}`).toBeTruthy();
        if (d.state === 'bound') expect(d.driver, `${f} ${d.path}`).not.toBeNull();
      }
      summary[f] = { devices: r.devices.length, iommus: r.iommus.length, maps: r.iommuMaps.length };
    }
    console.log(JSON.stringify(summary));
  });

  it('per-board facts', async () => {
    const boot = async (f: string) =>
      JSON.parse((await run([path.join(corpusDir, f), '--json'])).out) as BootReport;
    // SDM845: apps_smmu is an MMU-500 with #iommu-cells = <2> (SID, mask).
    const sdm = await boot('sdm845-db845c.dtb');
    const apps = sdm.iommus.find((i) => i.compatible.includes('arm,mmu-500'))!;
    expect(apps).toMatchObject({ iommuCells: 2, linuxDriver: 'arm-smmu', state: 'registered' });
    expect(
      sdm.devices
        // platform masters' iommus cells (a PCI function's entry is its iommu-map StreamID)
        .filter((d) => d.bus !== 'pci' && d.iommus.some((x) => x.iommu === apps.path))
        .every((d) => d.iommus[0]!.args.length === 2),
    ).toBe(true);
    // RK3588: eleven rockchip,iommu with #iommu-cells = <0>, masters have empty args.
    const rk = await boot('rk3588-rock-5b.dtb');
    const rkIommus = rk.iommus.filter((i) =>
      i.compatible.some((c) => c.startsWith('rockchip,') && c.endsWith('iommu')),
    );
    expect(rkIommus.length).toBeGreaterThanOrEqual(11);
    expect(rkIommus.every((i) => i.iommuCells === 0)).toBe(true);
    // FVP: one SMMUv3 and a PCI iommu-map pointing at it.
    const fvp = await boot('fvp-base-revc.dtb');
    const smmu = fvp.iommus.find((i) => i.compatible.includes('arm,smmu-v3'))!;
    expect(smmu.iommuCells).toBe(1);
    expect(fvp.iommuMaps[0]!.entries[0]!.iommu).toBe(smmu.path);
    // Juno: iommu-map-mask present and a disabled IOMMU.
    const juno = await boot('juno-r2.dtb');
    expect(juno.iommuMaps.some((m) => m.mask !== null)).toBe(true);
    expect(juno.iommus.some((i) => i.state === 'disabled')).toBe(true);
    // Tegra234: iommu-map on PCIe and on host1x, nvidia,smmu-500.
    const tegra = await boot('tegra234-p3737-0000-p3701-0000.dtb');
    expect(tegra.iommuMaps.some((m) => /host1x/.test(m.path))).toBe(true);
    expect(tegra.iommus.every((i) => i.linuxDriver === 'arm-smmu')).toBe(true);
  });
});
