// Auditing a board's DMA isolation: boot --check as an API.
//
// Boots examples/boards/audit.dts the way Linux would (every master the tree puts behind an
// IOMMU gets a device model and a generic driver; each one bound through the IOMMU proves its
// DMA), then asks lab.check() what an auditor wants to know, each finding with the file, line and
// column of the property at fault: the crypto block shares StreamID 0x21 with an unrelated DMA
// controller (one group, one address space), the display's SMMU is disabled (its DMA is not
// translated), and the PCIe bridge's iommu-map leaves bus 1 without translation.
//
//   npx iommu-lab run examples/board-audit.mjs
//   npx iommu-lab boot --check examples/boards/audit.dts     (the same, from the command line)
import { fileURLToPath } from 'node:url';
import { defineScenario, formatFinding } from 'iommu-lab';

const file = fileURLToPath(new URL('./boards/audit.dts', import.meta.url));

export default defineScenario({
  name: 'board-audit',
  description: 'boot --check as an API: shared StreamIDs, a disabled SMMU, an iommu-map gap',
  board: { file },

  async run({ lab, expect }) {
    const report = lab.bootReport();
    const dev = (path) => report.devices.find((d) => d.path === path);
    // the camera: bound by the generic client driver through the SMMU, its proof DMA works
    const cam = dev('/soc/camera@a200000');
    expect([cam.state, cam.dmaOps, cam.streamIds, cam.dmaCheck], 'camera').toEqual([
      'bound',
      'iommu',
      [0x30],
      'ok',
    ]);
    // the DMA controller and the crypto block share a StreamID, so Linux gives them one group
    expect(dev('/soc/crypto@a100000').group, 'shared group').toBe(dev('/soc/dma-controller@a000000').group);
    // the display runs without translation: its SMMU is disabled
    expect(dev('/soc/display@a300000').dmaOps, 'display DMA').toBe('direct');

    const findings = lab.check();
    const by = (check) => findings.filter((f) => f.check === check);
    expect(
      by('shared-stream').map((f) => [f.severity, f.node, f.line]),
      'shared StreamID',
    ).toEqual([['error', '/soc/crypto@a100000', 46]]);
    expect(
      by('iommus-disabled').map((f) => [f.node, f.line, f.column]),
      'disabled SMMU',
    ).toEqual([['/soc/display@a300000', 58, 4]]);
    expect(
      by('iommu-map-gap').map((f) => f.message),
      'iommu-map gap',
    ).toEqual(['RIDs 0x100..0x1ff match no entry: their DMA is not translated']);
    return { findings: findings.map((f) => formatFinding(f, file)) };
  },

  report: (r) => r.findings,
});
