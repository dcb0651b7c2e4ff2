// Issue 22, "Done when" 4: the log lines of a deferral, a group and a fault, compared with the text
// Linux prints (drivers/base/dd.c, drivers/iommu/iommu.c, arm-smmu-v3.c), including dev_printk's
// "<driver or bus> <device>: " prefix.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { boot } from '../../src/api/lab.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const morello = path.resolve(here, '../../../shared/corpus/dtb/morello-sdp.dtb');
const T = '\\[\\s*\\d+\\.\\d{6}\\]';
const ls1028a = path.resolve(here, '../../../shared/corpus/dtb/fsl-ls1028a-rdb.dtb');

/** A board whose SMMUv3 waits for a clock no driver provides, and a master behind it. */
const PENDING = `/dts-v1/;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x20000000>; };
	soc {
		compatible = "simple-bus";
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		clk: clock-controller@c300000 { compatible = "vendor,clk"; reg = <0x0 0xc300000 0x0 0x1000>; #clock-cells = <1>; };
		smmu: iommu@9000000 {
			compatible = "arm,smmu-v3";
			reg = <0x0 0x09000000 0x0 0x20000>;
			#iommu-cells = <1>;
			clocks = <&clk 0>;
		};
		camera@c000000 { compatible = "vendor,camera"; reg = <0x0 0xc000000 0x0 0x1000>; iommus = <&smmu 0x42>; };
	};
};
`;

describe('log lines as Linux prints them (issue 22)', () => {
  it('deferral: pending devices are named only when the deferred-probe timeout fires', async () => {
    const lab = await boot({ board: { dts: PENDING }, trace: true });
    const log = lab.dmesg();
    // dd.c deferred_probe_timeout_work_func: dev_warn(dev, "deferred probe pending: %s", reason),
    // the reason being "<driver>: <message>" (device_set_deferred_probe_reason)
    const pending = log.filter((l) => l.includes('deferred probe pending'));
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatch(
      new RegExp(
        `^${T} platform 9000000\\.iommu: deferred probe pending: arm-smmu-v3: clock provider /soc/clock-controller@c300000 not registered$`,
      ),
    );
    // printed at the timeout (10 s), not at the deferral
    expect(pending[0]).toMatch(/^\[\s*10\.\d{6}\]/);
    // dd.c driver_deferred_probe_check_state: dev_warn(dev, "deferred probe timeout, ignoring dependency")
    expect(log).toContainEqual(
      expect.stringMatching(
        new RegExp(`^${T} platform c000000\\.camera: deferred probe timeout, ignoring dependency$`),
      ),
    );
  });

  it('deferral reason: "not registered yet" while the IOMMU driver exists but has not probed', async () => {
    const lab = await boot({ board: { dts: PENDING }, kernel: { deferredProbeTimeoutNs: -1 }, trace: true });
    const r = lab.bootReport();
    expect(r.devicesDeferred.find((d) => d.device === 'c000000.camera')!.reason).toBe(
      'waiting for IOMMU: IOMMU /soc/iommu@9000000 not registered yet (its probe deferred: clock provider /soc/clock-controller@c300000 not registered)',
    );
    // no timeout, so Linux prints no pending line
    expect(lab.dmesg().some((l) => l.includes('deferred probe pending'))).toBe(false);
  });

  it.skipIf(!existsSync(morello))('group, default domain and fault lines on Morello', async () => {
    const lab = await boot({ board: { file: morello }, trace: true });
    await lab.waitFor(() => lab.dmesg().some((l) => l.includes('event 0x10 received')));
    const log = lab.dmesg();
    const has = (re: string) => expect(log).toContainEqual(expect.stringMatching(new RegExp(`^${T} ${re}$`)));
    // iommu.c iommu_subsys_init: pr_info("Default domain type: %s%s\n"), pr_fmt "iommu: "
    has('iommu: Default domain type: Translated');
    has('iommu: DMA domain TLB invalidation policy: strict mode');
    // iommu.c iommu_group_add_device: dev_info(dev, "Adding to iommu group %d\n") — before the
    // driver binds, so the prefix is the bus name
    has('platform 2cc00000\\.display: Adding to iommu group 0');
    has('pci 0000:00:00\\.0: Adding to iommu group 1');
    // arm-smmu-v3.c arm_smmu_dump_event (the proof DMA's access after unmap)
    has('arm-smmu-v3 4f400000\\.iommu: event 0x10 received:');
    has('arm-smmu-v3 4f400000\\.iommu: \\t0x0000000000000010');
    has(
      'arm-smmu-v3 4f400000\\.iommu: event: F_TRANSLATION client: 0000:00:00\\.0 sid: 0 ssid: 0 iova: 0xfffff000 ipa: 0',
    );
    has('arm-smmu-v3 4f400000\\.iommu: unpriv data read s1 "Input address caused fault" stag: 0');
  });

  it.skipIf(!existsSync(ls1028a))('group and fault lines behind an MMU-500 (LS1028A-RDB)', async () => {
    const lab = await boot({ board: { file: ls1028a }, trace: true });
    const log = lab.dmesg();
    const has = (re: string) => expect(log).toContainEqual(expect.stringMatching(new RegExp(`^${T} ${re}$`)));
    has('platform 3100000\\.usb: Adding to iommu group 0');
    has('pci 0000:00:00\\.0: Adding to iommu group \\d+');
    // arm-smmu.c arm_smmu_context_fault (v6.12+): dev_err_ratelimited(smmu->dev, "Unhandled context
    // fault: fsr=0x%x, iova=0x%08lx, fsynr=0x%x, cbfrsynra=0x%x, cb=%d\n") — the proof DMA's
    // access after unmap, by StreamID 1 in context bank 0
    has(
      'arm-smmu 5000000\\.iommu: Unhandled context fault: fsr=0x2, iova=0xfffffffff000, fsynr=0x3, cbfrsynra=0x1, cb=0',
    );
  });

  it('passthrough: "Default domain type: Passthrough" and no invalidation-policy line', async () => {
    const lab = await boot({ kernel: { passthrough: true }, trace: true });
    const log = lab.dmesg();
    expect(log).toContainEqual(
      expect.stringMatching(new RegExp(`^${T} iommu: Default domain type: Passthrough$`)),
    );
    expect(log.some((l) => l.includes('TLB invalidation policy'))).toBe(false);
  });
});
