import { describe, expect, it } from 'vitest';
import { Device } from '../../src/kernel/base/device.ts';
import { pciHotplugAdd } from '../../src/kernel/drivers/pci.ts';
import { ofMapId, parseIdMap } from '../../src/kernel/of/of-iommu.ts';
import { ofFwLinks, ofPlatformDeviceCreate } from '../../src/kernel/of/of-platform.ts';
import { DtNode, encodeCells, encodeStrings } from '../../src/kernel/of/tree.ts';
import { bootDts, dts } from './helpers/boot.ts';

const IOMMU = (label: string, addr: string, cells: number, extra = '') => `
  ${label}: iommu@${addr} { compatible = "iommu-lab,test-iommu"; reg = <0x0 0x${addr} 0x0 0x1000>; #iommu-cells = <${cells}>; ${extra} };`;
const MASTER = (name: string, extra: string) => `
  ${name} { compatible = "iommu-lab,test-master"; ${extra} };`;

describe('of_iommu: the three cases', () => {
  it('no IOMMU declared: dma-direct, 32-bit default mask', async () => {
    const k = await bootDts(dts(MASTER('m@0', '')));
    const m = k.dev('/m@0');
    expect(m.state).toBe('bound');
    expect(m.dma.ops).toBe('direct');
    expect(m.dma.mask).toBe(0xffff_ffffn);
    expect(m.iommu).toBeNull();
    expect(m.reason).toBeNull();
  });

  it('no IOMMU and RAM above the DMA mask: SWIOTLB; a wider mask makes it direct', async () => {
    const body = MASTER('m32@0', '') + MASTER('m64@1', 'test,dma-bits = <64>;');
    const k = await bootDts(dts(body, '<0x0 0x80000000 0x1 0x00000000>')); // RAM up to 0x1_8000_0000
    expect(k.dev('/m32@0').dma.ops).toBe('swiotlb');
    expect(k.dev('/m64@1').dma.ops).toBe('direct');
  });

  it('IOMMU registered: of_xlate with the raw cells, #iommu-cells 0, 1 and 2, several entries', async () => {
    const body =
      IOMMU('i0', 'a000', 0) +
      IOMMU('i1', 'b000', 1) +
      IOMMU('i2', 'c000', 2) +
      MASTER('m0@0', 'iommus = <&i0>;') +
      MASTER('m1@1', 'iommus = <&i1 0x10>, <&i1 0x11>;') +
      MASTER('m2@2', 'iommus = <&i2 0x20 0x7f80>;');
    const k = await bootDts(dts(body));
    const m0 = k.dev('/m0@0');
    const m1 = k.dev('/m1@1');
    const m2 = k.dev('/m2@2');
    for (const m of [m0, m1, m2]) {
      expect(m.state).toBe('bound');
      expect(m.dma.ops).toBe('iommu');
    }
    expect(m0.iommu!.iommuNode.path).toBe('/iommu@a000');
    expect(m0.iommu!.ids).toEqual([]);
    expect(m1.iommu!.ids).toEqual([0x10, 0x11]);
    expect(m2.iommu!.ids).toEqual([0x20, 0x7f80]);
    expect(k.testIommu.log.xlates.filter((x) => x.dev === m1.name).map((x) => x.args)).toEqual([
      [0x10],
      [0x11],
    ]);
    // The master now depends on its IOMMU (run-time device link).
    expect(k.core.consumersOf(k.dev('/iommu@b000'))).toContain(m1);
  });

  it('IOMMU declared, driver exists but probes late: master deferred, then bound behind it', async () => {
    // The IOMMU defers 3 times on its own (no named supplier) before it registers.
    const body = MASTER('m@0', 'iommus = <&i 5>;') + IOMMU('i', 'a000', 1, 'test,defer-count = <3>;');
    const k = await bootDts(dts(body), { noTime: true });
    const m = k.dev('/m@0');
    const i = k.dev('/iommu@a000');
    // Still deferred after late_initcall: nothing else bound to retrigger it.
    expect(i.state).toBe('deferred');
    expect(m.state).toBe('deferred');
    expect(m.reason).toMatch(
      /waiting for IOMMU: IOMMU \/iommu@a000 not registered yet \(its probe deferred: test IOMMU deferral/,
    );
    expect(k.core.devicesDeferred().map((d) => d.device.name)).toEqual(
      expect.arrayContaining([m.name, i.name]),
    );
    // A bind elsewhere (hot-plugged device) retriggers the IOMMU; then the master follows.
    const n = new DtNode('late@9');
    n.setProp('compatible', encodeStrings(['iommu-lab,test-master']));
    k.tree.root.addChild(n);
    await ofPlatformDeviceCreate(k.core, k.tree, n);
    await k.core.settled();
    // late@9 bound → IOMMU retried (deferral 3/3 → wait) ... drive it with two more binds.
    for (let j = 0; j < 3 && i.state !== 'bound'; j++) await k.core.bind(i);
    await k.core.settled();
    expect(i.state).toBe('bound');
    expect(m.state).toBe('bound');
    expect(m.dma.ops).toBe('iommu');
    expect(m.iommu!.ids).toEqual([5]);
  });

  it('IOMMU node disabled: -ENODEV at once, master uses dma-direct (or fails with policy "fail")', async () => {
    const body = IOMMU('i', 'a000', 1, 'status = "disabled";') + MASTER('m@0', 'iommus = <&i 1>;');
    const k = await bootDts(dts(body), { noTime: true });
    const m = k.dev('/m@0');
    expect(m.state).toBe('bound');
    expect(m.probeAttempts).toBe(1);
    expect(m.dma.ops).toBe('direct');
    expect(m.reason).toMatch(/IOMMU \/iommu@a000 is disabled/);
    const k2 = await bootDts(dts(body), { policy: { disabled: 'fail' } });
    expect(k2.dev('/m@0').state).toBe('failed');
    expect(k2.dev('/m@0').reason).toMatch(/disabled \(policy: fail\).*ENODEV/);
  });

  it('IOMMU with no driver: deferred until the timeout, then dma-direct with a note (Linux policy)', async () => {
    const body =
      `
  u: iommu@a000 { compatible = "vendor,unknown-iommu"; #iommu-cells = <0>; };` +
      MASTER('m@0', 'iommus = <&u>;');
    const k = await bootDts(dts(body), { noTime: true });
    const m = k.dev('/m@0');
    expect(m.state).toBe('deferred');
    expect(m.reason).toMatch(/no driver for IOMMU \/iommu@a000 \(vendor,unknown-iommu\)/);
    expect(k.core.probeTimedOut).toBe(false);
    await k.run();
    expect(k.sched.now).toBe(10_000_000_000); // the Linux default, in virtual time
    expect(k.core.probeTimedOut).toBe(true);
    expect(m.state).toBe('bound');
    expect(m.dma.ops).toBe('direct');
    expect(m.reason).toMatch(/-ETIMEDOUT: gave up waiting, DMA is not translated/);
  });

  it('IOMMU with no driver: strict policy fails the master; bypass policy never waits', async () => {
    const body =
      `
  u: iommu@a000 { compatible = "vendor,unknown-iommu"; #iommu-cells = <0>; };` +
      MASTER('m@0', 'iommus = <&u>;');
    const strict = await bootDts(dts(body), { policy: { noDriver: 'strict' } });
    expect(strict.dev('/m@0').state).toBe('failed');
    expect(strict.dev('/m@0').reason).toMatch(/policy: strict/);
    const bypass = await bootDts(dts(body), { policy: { noDriver: 'bypass' }, noTime: true });
    expect(bypass.dev('/m@0').state).toBe('bound');
    expect(bypass.dev('/m@0').probeAttempts).toBe(1);
  });

  it('without modules, a missing IOMMU is given up right after initcalls (-ENODEV)', async () => {
    const body =
      `
  u: iommu@a000 { compatible = "vendor,unknown-iommu"; #iommu-cells = <0>; };` +
      MASTER('m@0', 'iommus = <&u>;');
    const k = await bootDts(dts(body), { modules: false, noTime: true });
    expect(k.dev('/m@0').state).toBe('bound');
    expect(k.dev('/m@0').reason).toMatch(/-ENODEV: gave up/);
    expect(k.sched.now).toBe(0);
  });

  it('IOMMU probe failed for good: master deferred until the timeout then direct; strict policy fails it', async () => {
    const body = IOMMU('i', 'a000', 1, 'test,probe = "error";') + MASTER('m@0', 'iommus = <&i 3>;');
    const k = await bootDts(dts(body));
    expect(k.dev('/iommu@a000').state).toBe('failed');
    expect(k.dev('/m@0').state).toBe('bound');
    expect(k.dev('/m@0').dma.ops).toBe('direct');
    expect(k.dev('/m@0').reason).toMatch(/probe of IOMMU \/iommu@a000 failed/);
    const s = await bootDts(dts(body), { policy: { probeFailed: 'strict' } });
    expect(s.dev('/m@0').state).toBe('failed');
  });

  it('an IOMMU that registers before the timeout releases its deferred masters (module load)', async () => {
    const body = IOMMU('i', 'a000', 1) + MASTER('m@0', 'iommus = <&i 9>;');
    const { builtinDrivers } = await import('../../src/kernel/drivers/index.ts');
    const { testMasterDriver, makeTestIommuDriver } = await import('./helpers/test-iommu.ts');
    const k = await bootDts(dts(body), { drivers: [...builtinDrivers(), testMasterDriver], noTime: true });
    const m = k.dev('/m@0');
    expect(m.state).toBe('deferred');
    await k.sched.runFor(5e9);
    expect(m.state).toBe('deferred');
    await k.core.registerDriver(makeTestIommuDriver()); // "insmod" at t = 5 s
    await k.core.settled();
    expect(m.state).toBe('bound');
    expect(m.iommu!.ids).toEqual([9]);
  });
});

describe('PCI: iommu-map and iommu-map-mask', () => {
  const host = (map: string) => `
  pcie@40000000 {
    compatible = "pci-host-ecam-generic"; device_type = "pci";
    reg = <0x0 0x40000000 0x0 0x10000000>; bus-range = <0 0xff>;
    #address-cells = <3>; #size-cells = <2>;
    ${map}
    ep@1,0 { compatible = "pci1b36,5"; reg = <0x0800 0 0 0 0>; };
    ep@1,3 { compatible = "pci1b36,5"; reg = <0x0b00 0 0 0 0>; };
    ep@3,0 { compatible = "pci1b36,5"; reg = <0x11800 0 0 0 0>; };
  };`;

  it('of_map_id semantics: ranges, mask before lookup, several IOMMUs, no match, bad masks', async () => {
    const body =
      IOMMU('a', 'a000', 1) +
      IOMMU('b', 'b000', 1) +
      host('iommu-map = <0x0 &a 0x1000 0x100>, <0x100 &b 0x0 0x100>; iommu-map-mask = <0xfff8>;');
    const k = await bootDts(dts(body));
    const pcie = k.tree.findByPath('/pcie@40000000')!;
    const a = k.tree.findByPath('/iommu@a000')!;
    const b = k.tree.findByPath('/iommu@b000')!;
    expect(ofMapId(k.tree, pcie, 0x0b)).toEqual({ ok: true, target: a, id: 0x1008 }); // function bits masked off
    expect(ofMapId(k.tree, pcie, 0x118)).toEqual({ ok: true, target: b, id: 0x18 });
    expect(ofMapId(k.tree, pcie, 0x200)).toEqual({ ok: true, target: null, id: 0x200 });
    expect(ofMapId(k.tree, pcie, 0x118, 'iommu-map', 'iommu-map-mask', a)).toEqual({
      ok: true,
      target: null,
      id: 0x118,
    });
    const info = parseIdMap(k.tree, pcie);
    expect(info.mask).toBe(0xfff8);
    expect(info.entries.map((e) => [e.ridBase, e.iommu?.path, e.iommuBase, e.length])).toEqual([
      [0, '/iommu@a000', 0x1000, 0x100],
      [0x100, '/iommu@b000', 0, 0x100],
    ]);
    const devs = k.core.devices.filter((d) => d.busName === 'pci');
    expect(devs.map((d) => [d.name, d.state, d.dma.ops, d.iommu?.iommuNode.path, d.iommu?.ids])).toEqual([
      ['0000:00:01.0', 'bound', 'iommu', '/iommu@a000', [0x1008]],
      ['0000:00:01.3', 'bound', 'iommu', '/iommu@a000', [0x1008]],
      ['0000:01:03.0', 'bound', 'iommu', '/iommu@b000', [0x18]],
    ]);
    const bad = new DtNode('x');
    bad.setProp('iommu-map', encodeCells([0x7, a.phandle!, 0, 1]));
    bad.setProp('iommu-map-mask', encodeCells([0xfff8]));
    expect(ofMapId(k.tree, bad, 7)).toMatchObject({ ok: false, errno: -14 });
    bad.setProp('iommu-map', encodeCells([0x7, a.phandle!, 0]));
    expect(ofMapId(k.tree, bad, 7)).toMatchObject({ ok: false, errno: -22 });
  });

  it('a RID outside the map gets no IOMMU (dma-direct); hot-plugged functions are configured too', async () => {
    const k = await bootDts(dts(IOMMU('a', 'a000', 1) + host('iommu-map = <0x0 &a 0x0 0x10>;')));
    const byName = (n: string) => k.core.devices.find((d) => d.name === n)!;
    expect(byName('0000:00:01.0').dma.ops).toBe('iommu');
    expect(byName('0000:01:03.0').dma.ops).toBe('direct');
    expect(byName('0000:01:03.0').reason).toMatch(/no iommu-map entry for RID 0x118/);
    const hostDev = k.dev('/pcie@40000000');
    const hp = pciHotplugAdd(k.core, hostDev, 0x0f, { vendor: 0x1b36, device: 5 });
    await k.core.settled();
    expect(hp.state).toBe('bound');
    expect(hp.iommu!.ids).toEqual([0x0f]);
  });
});

describe('driver model: suppliers, ordering, timeout, unbind, hot-plug', () => {
  const providers = `
  osc: osc { compatible = "fixed-clock"; #clock-cells = <0>; clock-frequency = <1000>; };
  clkc: clock-controller@c000 { compatible = "iommu-lab,clock-controller"; #clock-cells = <1>; clocks = <&osc>; };
  pd: power-controller@d000 { compatible = "iommu-lab,power-controller"; #power-domain-cells = <1>; clocks = <&clkc 2>; };`;

  it('an IOMMU that needs a clock and a power domain probes after them; its master after it', async () => {
    // Declared in the worst order: master, IOMMU, then the providers (osc last).
    const body =
      MASTER('m@0', 'iommus = <&i 0x77>;') +
      IOMMU('i', 'a000', 1, 'clocks = <&clkc 0>; power-domains = <&pd 0>;') +
      providers.split('\n').reverse().join('\n');
    const k = await bootDts(dts(body), { noTime: true });
    const order = k.core.logLines
      .filter((l) => l.includes('bound to'))
      .map((l) => l.split(': bound')[0]!.split('] ')[1]!.split(' ')[1]);
    // log lines name devices as Linux does ("<driver> c000.clock-controller"); find them by node path
    const idx = (p: string) => order.indexOf(k.dev(p).name);
    expect(idx('/osc')).toBeLessThan(idx('/clock-controller@c000'));
    expect(idx('/clock-controller@c000')).toBeLessThan(idx('/power-controller@d000'));
    expect(idx('/power-controller@d000')).toBeLessThan(idx('/iommu@a000'));
    expect(idx('/iommu@a000')).toBeLessThan(idx('/m@0'));
    expect(k.dev('/m@0').iommu!.ids).toEqual([0x77]);
    expect(k.sched.now).toBe(0); // no timeout needed
    // fw_devlink links exist for clocks/power-domains (mandatory) and iommus (optional).
    const links = ofFwLinks(k.tree, k.tree.findByPath('/iommu@a000')!);
    expect(links.map((l) => [l.kind, l.supplierNode?.path, l.optional])).toEqual([
      ['clocks', '/clock-controller@c000', false],
      ['power-domains', '/power-controller@d000', false],
    ]);
    // Each device was tried a bounded number of times (targeted retries).
    for (const d of k.core.devices) expect(d.probeAttempts).toBeLessThanOrEqual(3);
  });

  it('a missing clock provider keeps the consumer deferred with a reason, even after the timeout', async () => {
    const body =
      `
  nc: clock-controller@e000 { compatible = "vendor,unknown-clk"; #clock-cells = <1>; };` +
      MASTER('m@0', 'clocks = <&nc 1>;');
    const k = await bootDts(dts(body));
    expect(k.core.probeTimedOut).toBe(true);
    const m = k.dev('/m@0');
    expect(m.state).toBe('deferred');
    expect(m.reason).toBe('clock provider /clock-controller@e000 not registered');
    expect(k.core.devicesDeferred()).toEqual([{ device: m, reason: m.reason }]);
  });

  it('the timeout is configurable and re-armed when a driver registers', async () => {
    const body =
      `
  u: iommu@a000 { compatible = "vendor,unknown-iommu"; #iommu-cells = <0>; };` +
      MASTER('m@0', 'iommus = <&u>;');
    const k = await bootDts(dts(body), { timeoutNs: 2e9, noTime: true });
    await k.sched.runFor(1.5e9);
    await k.core.registerDriver({ name: 'nothing', bus: 'platform', ofMatch: ['none'], probe: () => 0 });
    await k.run();
    expect(k.sched.now).toBe(3.5e9);
    expect(k.dev('/m@0').state).toBe('bound');
  });

  it('unbinding a supplier unbinds its consumers; rebinding brings them back', async () => {
    const body = providers + IOMMU('i', 'a000', 1, 'clocks = <&clkc 0>;') + MASTER('m@0', 'iommus = <&i 1>;');
    const k = await bootDts(dts(body));
    const clkc = k.dev('/clock-controller@c000');
    const i = k.dev('/iommu@a000');
    const m = k.dev('/m@0');
    const pd = k.dev('/power-controller@d000');
    expect([clkc, i, m, pd].map((d) => d.state)).toEqual(['bound', 'bound', 'bound', 'bound']);
    await k.core.unbind(clkc);
    expect(clkc.state).toBe('unbound');
    expect(i.state).toBe('deferred');
    expect(m.state).toBe('deferred');
    expect(pd.state).toBe('deferred');
    expect(m.iommu).toBeNull();
    expect(k.core.iommuFor(i.ofNode!)).toBeUndefined();
    expect(i.reason).toMatch(/supplier \/clock-controller@c000 was unbound/);
    await k.core.bind(clkc);
    await k.core.settled();
    expect([clkc, i, m, pd].map((d) => d.state)).toEqual(['bound', 'bound', 'bound', 'bound']);
    expect(m.dma.ops).toBe('iommu');
    // Unbinding only the IOMMU takes its master down with it.
    await k.core.unbind(i);
    expect(m.state).toBe('deferred');
    await k.core.bind(i);
    await k.core.settled();
    expect(m.state).toBe('bound');
  });

  it('hot-plug: a device added at run time probes; removing its IOMMU unbinds it', async () => {
    const k = await bootDts(dts(IOMMU('i', 'a000', 1, 'phandle = <0x42>;')));
    const node = new DtNode('hot@5');
    node.setProp('compatible', encodeStrings(['iommu-lab,test-master']));
    node.setProp('iommus', encodeCells([k.tree.findByPath('/iommu@a000')!.phandle!, 0x55]));
    k.tree.root.addChild(node);
    await ofPlatformDeviceCreate(k.core, k.tree, node);
    const hot = k.core.deviceForNode(node)!;
    expect(hot.state).toBe('bound');
    expect(hot.iommu!.ids).toEqual([0x55]);
    await k.core.removeDevice(k.dev('/iommu@a000'));
    expect(hot.state).toBe('deferred');
    expect(hot.reason).toMatch(/was removed/);
  });

  it('hot-plug of an IOMMU releases the devices deferred on it', async () => {
    // The master points at an IOMMU node that has no device yet (its bus is disabled, so nothing
    // below it was populated).
    const body =
      `
  late-bus { status = "disabled"; i: iommu@a000 { compatible = "iommu-lab,test-iommu"; #iommu-cells = <1>; }; };` +
      MASTER('m@0', 'iommus = <&i 0x31>;');
    const k = await bootDts(dts(body), { noTime: true });
    const m = k.dev('/m@0');
    expect(m.state).toBe('deferred');
    const attempts = m.probeAttempts;
    // Plug the IOMMU in at t = 1 s.
    await k.sched.runFor(1e9);
    await ofPlatformDeviceCreate(k.core, k.tree, k.tree.findByPath('/late-bus/iommu@a000')!);
    await k.core.settled();
    expect(m.state).toBe('bound');
    expect(m.iommu!.ids).toEqual([0x31]);
    expect(m.probeAttempts).toBe(attempts + 1);
  });

  it('a device with no matching driver is "no-driver", and binds when its driver registers', async () => {
    const k = await bootDts(dts(`  x@0 { compatible = "vendor,thing"; };`));
    const x = k.dev('/x@0');
    expect(x.state).toBe('no-driver');
    await k.core.registerDriver({
      name: 'thing',
      bus: 'platform',
      ofMatch: ['vendor,thing'],
      probe: () => 0,
    });
    expect(x.state).toBe('bound');
    expect(x.probeAttempts).toBe(1);
  });

  it('a probe that fails or throws is "failed" with a reason; a manual Device on an unknown bus is no-driver', async () => {
    const k = await bootDts(dts(`  x@0 { compatible = "vendor,x"; }; y@0 { compatible = "vendor,y"; };`));
    await k.core.registerDriver({ name: 'x', bus: 'platform', ofMatch: ['vendor,x'], probe: () => -12 });
    await k.core.registerDriver({
      name: 'y',
      bus: 'platform',
      ofMatch: ['vendor,y'],
      probe: async () => {
        throw new Error('boom');
      },
    });
    await k.core.settled();
    expect(k.dev('/x@0').state).toBe('failed');
    expect(k.dev('/x@0').reason).toBe('probe failed: -ENOMEM');
    expect(k.dev('/y@0').state).toBe('failed');
    expect(k.dev('/y@0').reason).toMatch(/probe threw: boom/);
    const d = new Device({ name: 'orphan', bus: 'nowhere' });
    await k.core.addDevice(d);
    expect(d.state).toBe('no-driver');
  });

  it('both deferral strategies reach the same final state', async () => {
    const body =
      MASTER('m@0', 'iommus = <&i 0x77>;') +
      IOMMU('i', 'a000', 1, 'clocks = <&clkc 0>; power-domains = <&pd 0>;') +
      providers;
    const a = await bootDts(dts(body), { strategy: 'targeted' });
    const b = await bootDts(dts(body), { strategy: 'retry-all' });
    const snap = (k: typeof a) => k.core.devices.map((d) => [d.name, d.state, d.dma.ops, d.iommu?.ids]);
    expect(snap(a)).toEqual(snap(b));
    expect(a.core.stats.probeAttempts).toBeLessThanOrEqual(b.core.stats.probeAttempts);
  });
});

describe('dma-ranges and dma-coherent', () => {
  it('offset, bus limit and mask from the parent bus; coherency inherited', async () => {
    const body = `
  bus@0 {
    compatible = "simple-bus"; #address-cells = <1>; #size-cells = <1>;
    ranges = <0x0 0x0 0x0 0x80000000>;
    dma-ranges = <0x0 0x0 0x80000000 0x40000000>;
    dma-coherent;
    m@100 { compatible = "iommu-lab,test-master"; reg = <0x100 0x10>; };
  };`;
    const k = await bootDts(dts(body));
    const m = k.dev('/bus@0/m@100');
    expect(m.dma.ranges).toEqual([{ cpuStart: 0x80000000n, dmaStart: 0n, size: 0x40000000n }]);
    expect(m.dma.busLimit).toBe(0x3fffffffn);
    expect(m.dma.mask).toBe(0x3fffffffn);
    expect(m.dma.coherent).toBe(true);
    expect(m.dma.ops).toBe('direct'); // reaches 0x8000_0000 + 1 GiB = all RAM
  });
});

describe('deferral cost', () => {
  it('worst-order chain: targeted retries grow linearly (2N-1), retry-all quadratically (N(N+1)/2)', async () => {
    const { bootChain } = await import('../../bench/boot.bench.ts');
    for (const n of [200, 400, 800]) {
      const t = await bootChain(n, 'targeted');
      expect(t.bound).toBe(n);
      expect(t.attempts).toBe(2 * n - 1);
    }
    const naive = await bootChain(400, 'retry-all');
    expect(naive.bound).toBe(400);
    expect(naive.attempts).toBe((400 * 401) / 2);
  });
});
