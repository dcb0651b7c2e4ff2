import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

const io = fakeIo;
const root = resolve(import.meta.dirname, '../..');

describe('iommu-lab CLI', () => {
  it('prints help listing the commands and the global options', async () => {
    const t = io();
    expect(await main(['--help'], t)).toBe(0);
    const text = t.stdout.join('\n');
    expect(text).toMatch(/Usage: iommu-lab/);
    expect(text).toMatch(/demo\s+run a bundled scenario/);
    expect(text).toMatch(/run\s+run your own scenario file/);
    for (const o of ['--seed N', '--json', '--trace FILE', '--log FILE', '--version'])
      expect(text).toContain(o);
    const t2 = io();
    expect(await main(['demo', '--help'], t2)).toBe(0);
    expect(t2.stdout.join('\n')).toMatch(
      /Scenarios:\n {2}smmu +\(default\) the booted virt board[\s\S]*\n {2}basic +a DMA copy engine[\s\S]*\n {2}gpu-crash-dump +a GPU job[\s\S]*\n {2}pri +a PCIe device with PRI/,
    );
  });

  it('rejects unknown commands and bad options with exit 2 and a message', async () => {
    const t = io();
    expect(await main(['frobnicate'], t)).toBe(2);
    expect(t.stderr.join('\n')).toMatch(/unknown command 'frobnicate'/);
    const t2 = io();
    expect(await main(['--seed', 'banana', 'demo'], t2)).toBe(2);
    expect(t2.stderr.join('\n')).toMatch(/--seed needs an integer/);
    const t3 = io();
    expect(await main(['demo', 'nope'], t3)).toBe(2);
    const t4 = io();
    expect(await main([], t4)).toBe(2);
  });

  it('demo --seed 7 --json prints the same bytes every run, and other seeds differ', async () => {
    const runs: string[] = [];
    for (const seed of ['7', '7', '8']) {
      const t = io();
      expect(await main(['demo', '--seed', seed, '--json'], t)).toBe(0);
      runs.push(t.stdout.join('\n'));
    }
    expect(runs[0]).toBe(runs[1]);
    expect(runs[2]).not.toBe(runs[0]);
    const r = JSON.parse(runs[0]!);
    expect(r).toMatchObject({ scenario: 'smmu', seed: 7, ok: true, error: null, bugs: [] });
    const res = r.result;
    expect(res.smmu.state).toBe('registered');
    expect(res.transfers.map((x: { ok: boolean }) => x.ok)).toEqual([true, true]);
    expect(res.fault.eventsLogged).toBe(1);
    const msgs = r.events.map((e: { message: string }) => e.message);
    expect(msgs).toContain('event 0x10 received:');
    expect(msgs).toContain(
      'event: F_TRANSLATION client: a000000.gpu sid: 0x100 ssid: 0 iova: 0xdead0000 ipa: 0',
    );
    expect(res.devices.map((d: { device: string }) => d.device)).toEqual(['a000000.gpu', '0000:00:01.0']);
    for (const d of res.devices) expect(d.translations).toBeGreaterThan(0);
  });

  it("demo basic: the virt board's DMA engine programmed through MMIO, MSI and a bus error", async () => {
    const t = io();
    expect(await main(['demo', 'basic', '--seed', '7', '--json'], t)).toBe(0);
    const r = JSON.parse(t.stdout.join('\n')).result;
    expect(r.transfers.map((x: { status: string }) => x.status)).toEqual(['ok', 'ok', 'ok', 'bus-error']);
    expect(r.interrupts).toBe(4);
    expect(r.pagesLeaked).toBe(0);
  });

  it('demo NAME is run on the bundled module: the same output as iommu-lab run for the same seed', async () => {
    const module = resolve(root, 'src/tools/demo/basic.ts');
    const [viaDemo, viaRun] = [io(), io()];
    expect(await main(['demo', 'basic', '--seed', '3', '--json'], viaDemo)).toBe(0);
    expect(await main(['run', module, '--seed', '3', '--json'], viaRun)).toBe(0);
    expect(viaDemo.stdout.join('\n')).toBe(viaRun.stdout.join('\n'));
    expect(JSON.parse(viaDemo.stdout.join('\n'))).toMatchObject({ scenario: 'basic', seed: 3, ok: true });
    // the text output too: the live log, then PASS and the demo's report
    const text = io();
    expect(await main(['demo', 'basic', '--seed', '3'], text)).toBe(0);
    expect(text.stdout.join('\n')).toMatch(
      /dma-demo: transfer 3 failed: bus error at 0x4000\n\nPASS basic \(seed 3\): \d+ ns of virtual time\n4 transfers in/,
    );
  });

  it('--trace writes Chrome trace-event JSON and --log a dmesg-style log', async () => {
    const t = io();
    expect(await main(['demo', '--trace', 'out.json', '--log', 'run.log'], t)).toBe(0);
    const trace = JSON.parse(t.written.get('out.json')!);
    expect(Array.isArray(trace.traceEvents)).toBe(true);
    for (const e of trace.traceEvents) {
      expect(typeof e.name).toBe('string');
      expect(['M', 'i', 'X']).toContain(e.ph);
      expect(typeof e.pid).toBe('number');
      if (e.ph !== 'M') expect(typeof e.ts).toBe('number');
    }
    expect(t.written.get('run.log')!).toMatch(/^\[ {3}10\.\d{6}\] demo: gpu: copied 16384 bytes/m);
  });

  it('decode --log reads a kernel log (the command owns --log after its name); a global --log before it stays global', async () => {
    const log =
      '[   12.345678] arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:\n' +
      '[   12.345679] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000800000010\n' +
      '[   12.345680] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000020a00000000\n' +
      '[   12.345681] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x00000000deadb000\n' +
      '[   12.345682] arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000000000000\n';
    const t = io({ 'k.log': log });
    expect(await main(['--json', 'decode', '--log', 'k.log'], t)).toBe(0);
    const recs = JSON.parse(t.stdout.join('\n'));
    expect(recs[0]).toMatchObject({ name: 'F_TRANSLATION', streamId: '0x8', inputAddress: '0xdeadb000' });
    // before the name, --log is the global output option, which decode refuses (it writes no log)
    const g = io({ 'k.log': log });
    expect(await main(['--log', 'out.log', 'decode', '--log', 'k.log'], g)).toBe(2);
    expect(g.stderr.join('\n')).toMatch(/--log before the command name is the global option/);
    expect([g.stdout, g.written.size]).toEqual([[], 0]);
  });

  it('boot honours the global --trace and --log; an unwritable output path fails before the run', async () => {
    const t = io();
    expect(await main(['--trace', 'boot.json', '--log', 'boot.log', 'boot'], t)).toBe(0);
    expect(t.stdout.join('\n')).toMatch(/IOMMUs \(2\):/); // the report stays on stdout
    expect(JSON.parse(t.written.get('boot.json')!).traceEvents.length).toBeGreaterThan(10);
    expect(t.written.get('boot.log')!).toMatch(/arm-smmu-v3 9000000\.iommu: ias 48-bit/);
    const bad = io({}, { readOnly: ['/nonexistent/x.json'] });
    expect(await main(['--trace', '/nonexistent/x.json', 'demo', 'basic'], bad)).toBe(1);
    expect(bad.stderr.join('\n')).toMatch(/--trace: cannot write \/nonexistent\/x\.json: EACCES/);
    expect(bad.stdout).toEqual([]); // nothing ran
    const extra = io();
    expect(await main(['demo', 'basic', 'extra'], extra)).toBe(2);
    expect(extra.stderr.join('\n')).toMatch(/unexpected argument 'extra'/);
  });
});
