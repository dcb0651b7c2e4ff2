// The embedded default platform: what `iommu-lab` boots when given no device tree.
//
// Addresses match the platform and hardware models: GIC distributor 0x0800_0000, ITS 0x0808_0000
// (GITS_TRANSLATER, the MSI doorbell, at ITS + 0x1_0040), SMMUv3 0x0900_0000 (128 KiB: pages 0
// and 1), PCIe ECAM 0x4000_0000, GPU 0x0a00_0000, DMA engine 0x0a01_0000, RAM 1 GiB at 0x8000_0000.
//
// Nodes are declared in an order that makes boot exercise probe deferral: the SMMU comes before
// the clock and power controllers it needs, and the oscillator feeding them comes last.
// Interrupt specifiers are <type number flags>: type 0 = SPI, flags 1 = edge rising, 4 = level high.

export const DEFAULT_PLATFORM_DTS = `/dts-v1/;

/ {
	compatible = "iommu-lab,virt";
	model = "iommu-lab virtual platform";
	#address-cells = <2>;
	#size-cells = <2>;
	interrupt-parent = <&gic>;

	chosen {
		bootargs = "deferred_probe_timeout=10";
	};

	memory@80000000 {
		device_type = "memory";
		reg = <0x0 0x80000000 0x0 0x40000000>;
	};

	gic: interrupt-controller@8000000 {
		compatible = "arm,gic-v3";
		#interrupt-cells = <3>;
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		interrupt-controller;
		reg = <0x0 0x08000000 0x0 0x10000>,	/* GICD */
		      <0x0 0x080a0000 0x0 0xf60000>;	/* GICR */

		its: msi-controller@8080000 {
			compatible = "arm,gic-v3-its";
			msi-controller;
			#msi-cells = <1>;
			reg = <0x0 0x08080000 0x0 0x20000>;	/* GITS_TRANSLATER at +0x10040 */
		};
	};

	soc {
		compatible = "simple-bus";
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;

		smmu: iommu@9000000 {
			compatible = "arm,smmu-v3";
			reg = <0x0 0x09000000 0x0 0x20000>;
			interrupts = <0 74 1>, <0 75 1>, <0 76 1>, <0 77 1>;
			interrupt-names = "eventq", "gerror", "priq", "cmdq-sync";
			msi-parent = <&its 0x0>;
			dma-coherent;
			#iommu-cells = <1>;
			clocks = <&clkc 0>;
			clock-names = "core";
			power-domains = <&pd 0>;
		};

		pcie@40000000 {
			compatible = "pci-host-ecam-generic";
			device_type = "pci";
			reg = <0x0 0x40000000 0x0 0x10000000>;	/* ECAM, buses 0-255 */
			bus-range = <0x0 0xff>;
			#address-cells = <3>;
			#size-cells = <2>;
			ranges = <0x02000000 0x0 0x50000000 0x0 0x50000000 0x0 0x10000000>;
			dma-coherent;
			msi-map = <0x0 &its 0x0 0x10000>;
			/* RID -> StreamID 1:1 on the SMMU; the mask keeps bus, device and function. */
			iommu-map = <0x0 &smmu 0x0 0x10000>;
			iommu-map-mask = <0xffff>;
			ats-supported;

			pcie-testdev@1,0 {
				compatible = "pci1b36,5";
				reg = <0x0800 0x0 0x0 0x0 0x0>;	/* 00:01.0, RID 0x8 */
			};

			ethernet@2,0 {
				compatible = "pci8086,10d3";
				reg = <0x1000 0x0 0x0 0x0 0x0>;	/* 00:02.0, RID 0x10: no driver in the model */
			};
		};

		gpu@a000000 {
			compatible = "iommu-lab,gpu";
			reg = <0x0 0x0a000000 0x0 0x10000>;
			interrupts = <0 80 4>;
			iommus = <&smmu 0x100>;
			dma-can-stall;
			pasid-num-bits = <20>;
			dma-coherent;
			power-domains = <&pd 1>;
		};

		dma-controller@a010000 {
			compatible = "iommu-lab,dma-engine";
			reg = <0x0 0x0a010000 0x0 0x1000>;
			interrupts = <0 81 4>;
			#dma-cells = <1>;
			dma-channels = <8>;
			clocks = <&clkc 1>;
		};

		/* An IOMMU no driver knows: its masters wait for it, then give up (see of-iommu.ts). */
		legacy_iommu: iommu@a100000 {
			compatible = "vendor,unknown-iommu";
			reg = <0x0 0x0a100000 0x0 0x1000>;
			#iommu-cells = <0>;
		};

		dma-controller@a020000 {
			compatible = "iommu-lab,dma-engine";
			reg = <0x0 0x0a020000 0x0 0x1000>;
			interrupts = <0 82 4>;
			#dma-cells = <1>;
			dma-channels = <2>;
			iommus = <&legacy_iommu>;
		};

		clkc: clock-controller@a030000 {
			compatible = "iommu-lab,clock-controller";
			reg = <0x0 0x0a030000 0x0 0x1000>;
			#clock-cells = <1>;
			clocks = <&osc>;
			clock-output-names = "smmu_core", "dma_core", "pd_ctrl";
			iommu-lab,clock-count = <3>;
		};

		pd: power-controller@a040000 {
			compatible = "iommu-lab,power-controller";
			reg = <0x0 0x0a040000 0x0 0x1000>;
			#power-domain-cells = <1>;
			clocks = <&clkc 2>;
		};
	};

	osc: oscillator {
		compatible = "fixed-clock";
		#clock-cells = <0>;
		clock-frequency = <100000000>;
		clock-output-names = "osc100m";
	};
};
`;
