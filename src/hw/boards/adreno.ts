/**
 * The iommu-lab `adreno` board: a Snapdragon-like embedded SoC (addresses after SDM845) with
 * the two SMMUs Rob Clark's discussion is about. The GPU has its own SMMU (`qcom,adreno-smmu`
 * on `qcom,smmu-v2`: stall-capable, bank 0 for the GPU, HUPCF); the display and a video block
 * share the "apps" SMMU, an MMU-500 (`qcom,sdm845-smmu-500`) on which nobody enables stall.
 *
 * ADRENO_DTS is what the firmware hands the kernel. The SMMU models are made from its nodes
 * (api/board-smmuv2.ts, as for any tree); this file adds the masters, where the tree says they
 * are: the GPU (the iommu-lab GPU register interface under an Adreno compatible, StreamID 0 on
 * the GPU SMMU, can stall), and the display and video blocks as generic bus masters on the apps
 * SMMU.
 */

import type { Machine } from '../../platform/machine.ts';
import { Gpu, type GpuOptions } from '../devices/gpu.ts';
import { PlatformDmaMaster } from '../devices/platform-master.ts';
import type { DmaIommu } from '../smmu-common/port.ts';

export const ADRENO = {
  GPU_BASE: 0x0500_0000,
  GPU_SMMU_BASE: 0x0504_0000,
  APPS_SMMU_BASE: 0x1500_0000,
  DISPLAY_BASE: 0x0ae0_1000,
  VIDEO_BASE: 0x0aa0_0000,
  /** The GPU's StreamID on its SMMU (QCOM_ADRENO_SMMU_GPU_SID). */
  GPU_SID: 0x0,
  /** The display's and the video block's StreamIDs on the apps SMMU (SMR ID; the mask widens them). */
  DISPLAY_SID: 0x880,
  VIDEO_SID: 0x2100,
  GPU_PATH: '/soc@0/gpu@5000000',
  GPU_SMMU_PATH: '/soc@0/iommu@5040000',
  APPS_SMMU_PATH: '/soc@0/iommu@15000000',
  DISPLAY_PATH: '/soc@0/display-controller@ae01000',
  VIDEO_PATH: '/soc@0/video-codec@aa00000',
} as const;

/** GIC SPI interrupt specifiers <0 n 4> for `count` lines from SPI `first`. */
function spis(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `<0 ${first + i} 4>`).join(', ');
}

/** The board's device tree (DTS text). */
export const ADRENO_DTS = `/dts-v1/;
/ {
  model = "iommu-lab Adreno board (SDM845-like)";
  compatible = "iommu-lab,adreno", "qcom,sdm845";
  #address-cells = <2>;
  #size-cells = <2>;
  interrupt-parent = <&intc>;

  memory@80000000 {
    device_type = "memory";
    reg = <0x0 0x80000000 0x0 0x40000000>;
  };

  soc@0 {
    compatible = "simple-bus";
    #address-cells = <2>;
    #size-cells = <2>;
    ranges;

    intc: interrupt-controller@17a00000 {
      compatible = "arm,gic-v3";
      #interrupt-cells = <3>;
      interrupt-controller;
      reg = <0x0 0x17a00000 0x0 0x10000>;
    };

    gpu@5000000 {
      compatible = "qcom,adreno-630.2", "qcom,adreno";
      reg = <0x0 0x05000000 0x0 0x1000>;
      reg-names = "kgsl_3d0_reg_memory";
      iommus = <&adreno_smmu 0>;
      dma-can-stall;
    };

    adreno_smmu: iommu@5040000 {
      compatible = "qcom,sdm845-smmu-v2", "qcom,adreno-smmu", "qcom,smmu-v2";
      reg = <0x0 0x05040000 0x0 0x10000>;
      #iommu-cells = <1>;
      #global-interrupts = <2>;
      interrupts = ${spis(229, 2)}, ${spis(231, 8)};
    };

    apps_smmu: iommu@15000000 {
      compatible = "qcom,sdm845-smmu-500", "arm,mmu-500";
      reg = <0x0 0x15000000 0x0 0x80000>;
      #iommu-cells = <2>;
      #global-interrupts = <1>;
      interrupts = ${spis(65, 1)}, ${spis(96, 64)};
    };

    display-controller@ae01000 {
      compatible = "iommu-lab,dma-master";
      reg = <0x0 0x0ae01000 0x0 0x1000>;
      iommus = <&apps_smmu 0x880 0x8>;
    };

    video-codec@aa00000 {
      compatible = "iommu-lab,dma-master";
      reg = <0x0 0x0aa00000 0x0 0x1000>;
      iommus = <&apps_smmu 0x2100 0x60>;
    };
  };
};
`;

export interface AdrenoBoardDevices {
  gpu: Gpu;
  display: PlatformDmaMaster;
  video: PlatformDmaMaster;
}

export interface AdrenoBoardOptions {
  /** The GPU (warps, latencies). */
  gpu?: GpuOptions;
  /**
   * The SoC of the GPU's SMMU: 'sdm845' (default, `qcom,sdm845-smmu-v2`) or 'msm8996'
   * (`qcom,msm8996-smmu-v2`, which cannot split the GPU's page tables: no per-process tables,
   * set_ttbr0_cfg is -EINVAL).
   */
  gpuSmmu?: 'sdm845' | 'msm8996';
}

/** ADRENO_DTS with the options that change the tree (the GPU SMMU's SoC compatible). */
export function adrenoDts(opts: AdrenoBoardOptions = {}): string {
  const soc = opts.gpuSmmu ?? 'sdm845';
  if (soc !== 'sdm845' && soc !== 'msm8996')
    throw new Error(`adreno.gpuSmmu must be "sdm845" or "msm8996" (got ${JSON.stringify(soc)})`);
  return soc === 'sdm845'
    ? ADRENO_DTS
    : ADRENO_DTS.replace('"qcom,sdm845-smmu-v2"', '"qcom,msm8996-smmu-v2"');
}

/** The masters of the adreno board, on the SMMU models made from ADRENO_DTS. */
export function createAdrenoDevices(
  machine: Machine,
  gpuSmmu: DmaIommu,
  appsSmmu: DmaIommu,
  opts: AdrenoBoardOptions = {},
): AdrenoBoardDevices {
  const gpu = new Gpu(gpuSmmu, ADRENO.GPU_SID, { name: 'adreno', canStall: true, ...opts.gpu }).map(
    ADRENO.GPU_BASE,
  );
  const display = new PlatformDmaMaster(appsSmmu, ADRENO.DISPLAY_SID, { name: 'display', canStall: false });
  const video = new PlatformDmaMaster(appsSmmu, ADRENO.VIDEO_SID, { name: 'video', canStall: false });
  void machine;
  return { gpu, display, video };
}
