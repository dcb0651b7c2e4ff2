// The small boards the board tests write: RAM and a simple-bus /soc holding `soc` (2 address and
// 2 size cells throughout).

/** A board with 512 MiB of RAM at 0x80000000, `soc` inside /soc, `rootExtra` at the root. */
export function socBoard(soc: string, rootExtra = ''): string {
  return `/dts-v1/;
/ {
	compatible = "example,audit";
	#address-cells = <2>;
	#size-cells = <2>;
	memory@80000000 {
		device_type = "memory";
		reg = <0x0 0x80000000 0x0 0x20000000>;
	};
${rootExtra}
	soc {
		compatible = "simple-bus";
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
${soc}
	};
};
`;
}
