// Probe deferral on your own device tree.
//
// Boots examples/boards/deferral.dts (a board of our own, not the built-in one) and asks what the
// probe-deferral discussion asks of a real board: who bound, who deferred on which IOMMU, and
// why. The SMMU waits for its clock controller (which waits for its oscillator); the camera
// behind it defers until the SMMU has registered, then binds with DMA through it; the DMA
// engine behind an IOMMU no driver knows waits until the deferred-probe timeout and then, as
// Linux does, goes on without an IOMMU.
//
//   npx iommu-lab run examples/probe-deferral.mjs
import { fileURLToPath } from 'node:url';
import { defineScenario } from 'iommu-lab';

export default defineScenario({
  name: 'probe-deferral',
  description: 'a user device tree: the SMMU waits for its clock, masters wait for their IOMMUs',
  board: { file: fileURLToPath(new URL('./boards/deferral.dts', import.meta.url)) },
  // hardware for the camera node of the tree, so it can really do DMA
  masters: [{ name: 'camera', node: '/soc/camera@c000000' }],

  async run({ lab, expect }) {
    const state = (path) => lab.devices().find((d) => d.path === path);
    const smmu = state('/soc/iommu@9000000');
    const camera = state('/soc/camera@c000000');
    const dmac = state('/soc/dma-controller@c200000');

    expect(smmu.state, 'SMMU').toBe('bound');
    expect(camera.state, 'camera').toBe('bound');
    expect(camera.dmaOps, 'camera DMA ops').toBe('iommu');
    expect(lab.device('/soc/camera@c000000').probeAttempts, 'camera probes (deferred first)').toBeGreaterThan(
      1,
    );
    // the DMA engine's IOMMU never registers: after the timeout it runs without translation
    expect(dmac.state, 'DMA engine').toBe('bound');
    expect(dmac.dmaOps, 'DMA engine DMA ops').toBe('direct');

    const log = lab.dmesg().join('\n');
    // as Linux prints it: the camera joins its IOMMU group; the DMA engine's wait ends with
    // driver_deferred_probe_check_state's warning (nothing is left pending, so no "deferred probe
    // pending" line: Linux prints those only for devices still deferred when the timeout fires)
    expect(log, 'kernel log').toMatch(/platform c000000\.camera: Adding to iommu group 0/);
    expect(log, 'kernel log').toMatch(
      /platform c200000\.dma-controller: deferred probe timeout, ignoring dependency/,
    );
    expect(log, 'kernel log').not.toMatch(/deferred probe pending/);

    // the camera's DMA goes through the SMMU it waited for
    const cam = lab.master('camera');
    const frame = lab.allocPages(0);
    const iova = lab.dma.mapSingle(cam.device, frame, 4096, 'from-device');
    expect((await cam.write(iova, new Uint8Array([1, 2, 3]))).ok, 'camera DMA').toBe(true);
    expect([...lab.read(frame, 3)], 'frame').toEqual([1, 2, 3]);

    return lab.devices().map((d) => ({ device: d.name, state: d.state, driver: d.driver, dma: d.dmaOps }));
  },

  report: (devs) =>
    devs.map((d) => `${d.device.padEnd(28)} ${d.state.padEnd(9)} ${String(d.driver).padEnd(22)} ${d.dma}`),
});
