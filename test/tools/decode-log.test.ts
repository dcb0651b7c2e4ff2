import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { writeFdt } from '../../src/kernel/of/fdt.ts';
import { noticeText, scanNotices } from '../../src/tools/decode/log-notices.ts';
import { scanLog } from '../../src/tools/decode/log-scan.ts';
import { run } from '../fixtures/decode/run-decode.ts';

describe('decode --log: what an auditor needs besides full records (issue 22)', () => {
  it('overflows, suppressed reports, CMDQ errors with the skipped command, sync timeouts, decoded-only events', async () => {
    const r = await run(['--log', 'smmu-reports.log']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toEqual([
      '[  100.000000] 9000000.iommu: event queue overflow: events were lost (EVTQ overflow detected)',
      '[  100.000100] 12 rate-limited reports of arm_smmu_evtq_thread suppressed (not in the log)',
      '[  100.000200] 9000000.iommu: event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0x0 iova: 0xfffff000 ipa: 0x0 unpriv data write s1 "Input address caused fault" stag: 0x0 (decoded line only: no raw words)',
      '[  100.500000] 9000000.iommu: partial record (2 of 4 words, cut short before a CMDQ error report at line 8): event 0x10 F_TRANSLATION sid: 0x100 ssid: 0',
      '[  101.000000] 9000000.iommu: CMDQ error at cons 0x100000a: Illegal command; skipped command: CMD_CFGI_STE StreamID=0x8 Leaf=0x1',
      '[  102.000000] 9000000.iommu: CMD_SYNC timeout at 0x104 (hwprod 0x105, hwcons 0x100): the SMMU did not consume the command queue in time',
      '[  103.000000] 9000000.iommu: PRI queue overflow: page requests were lost (PRIQ overflow detected)',
    ]);
    const j = JSON.parse((await run(['--log', 'smmu-reports.log'], { json: true })).out) as Array<
      Record<string, unknown>
    >;
    expect(j.map((x) => x.kind)).toEqual([
      'evtq-overflow',
      'callbacks-suppressed',
      'decoded-event',
      'partial-event',
      'cmdq-error',
      'sync-timeout',
      'priq-overflow',
    ]);
    expect(j[4]).toMatchObject({
      smmu: '9000000.iommu',
      command: 'CMD_CFGI_STE StreamID=0x8 Leaf=0x1',
      timestamp: '[  101.000000]',
    });
    expect(j[3]).toMatchObject({
      name: 'F_TRANSLATION',
      streamId: '0x100',
      inputAddress: null,
      words: ['0x10000000010', '0x20000000000'],
    });
  });

  it('--dtb names the master of each StreamID', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'decode-dtb-'));
    const dtb = path.join(dir, 'virt.dtb');
    writeFileSync(dtb, writeFdt(parseDts(DEFAULT_PLATFORM_DTS)));
    try {
      const r = await run(['--log', 'smmu-reports.log', '--dtb', dtb]);
      const lines = r.out.split('\n');
      expect(lines[2]).toMatch(/sid: 0x8 .* \[master: \/soc\/pcie@40000000 RID 0000:00:01\.0\]$/);
      // 0x100 is the GPU's, and also what the bridge's iommu-map would give 01:00.0: both named
      expect(lines[3]).toMatch(
        /partial record .* sid: 0x100 ssid: 0 \[master: \/soc\/pcie@40000000 RID 0000:01:00\.0, \/soc\/gpu@a000000\]$/,
      );
      const bad = await run(['--log', 'smmu-reports.log', '--dtb', 'journal.log']);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/cannot use --dtb journal\.log/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('iommu-lab decode --log', () => {
  it('decodes a modern Linux log, taking the client from the decoded line', async () => {
    const r = await run(['--log', 'linux-modern.log']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toEqual([
      '[   12.345678] arm-smmu-v3.0.auto: event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0 iova: 0xfffff000 ipa: 0 unpriv data write s1 "Input address caused fault" stag: 0',
      '[   13.000001] arm-smmu-v3.0.auto: event: F_PERMISSION client: (unknown) sid: 0x20 ssid: 0x5 iova: 0xffff800012345678 ipa: 0x40002000 unpriv data read s2 "Stage 1 translation table fetch" ttd_read stall stag: 0x12',
    ]);
    expect(r.err).toBe('');
  });

  it('decodes the HiSilicon report with the first word split in halves', async () => {
    const r = await run(['--log', 'hisilicon-5.3.log']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      '[  196.747107] arm-smmu-v3.0.auto: event: F_TRANSLATION client: (unknown) sid: 0x180 ssid: 0 iova: 0xffffe040 ipa: 0xffffe000 unpriv data write s1 "Input address caused fault" stag: 0',
    );
  });

  it("decodes Xen's SMMUv3 driver output", async () => {
    const r = await run(['--log', 'xen.log'], { json: true });
    expect(r.code).toBe(0);
    const [rec] = JSON.parse(r.out);
    expect(rec).toMatchObject({
      name: 'F_TRANSLATION',
      code: '0x10',
      streamId: '0x8',
      substreamId: null,
      stage2: true,
      inputAddress: '0x8090040',
      client: '(unknown)',
      line: 2,
      format: 'u64',
    });
  });

  it('handles syslog/journal and log-viewer columns with interleaved noise', async () => {
    const r = await run(['--log', 'journal.log']);
    expect(r.out.split('\n')).toEqual([
      'arm-smmu-v3.1.auto: event: C_BAD_STE client: (unknown) sid: 0x1 ssid: 0',
      'arm-smmu-v3.0.auto: event: F_CD_FETCH client: (unknown) sid: 0x3 ssid: 0 fetch_addr: 0x80000040',
    ]);
  });

  it('joins 32-bit halves in either order, checked against the header', async () => {
    const r = await run(['--log', 'halves.log'], { json: true });
    const recs = JSON.parse(r.out);
    expect(recs).toHaveLength(2);
    expect(recs[0]).toMatchObject({ name: 'C_BAD_STE', streamId: '0x11', format: 'u32-halves' });
    expect(recs[1]).toMatchObject({
      name: 'F_TRANSLATION',
      streamId: '0x22',
      read: true,
      inputAddress: '0x12345000',
    });
  });

  it('reports a record cut short as partial, with what its words give, and skips garbage', async () => {
    const r = await run(['--log', 'truncated.log']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toEqual([
      '[   20.000000] arm-smmu-v3.0.auto: partial record (2 of 4 words, cut short before the next record at line 5): event 0x10 F_TRANSLATION sid: 0x8 ssid: 0',
      '[   21.000000] arm-smmu-v3.0.auto: event: C_BAD_STREAMID client: (unknown) sid: 0xffff ssid: 0',
    ]);
    expect(r.err).toMatch(/line 1: event 0x10 record incomplete \(2 of 4 words\)/);
  });

  it('reads standard input with "-" and reports when nothing is found', async () => {
    const xen = await run(['--log', '-'], {
      stdin:
        'event 0x04 received:\n0x0000000700000004\n0x0\n0x0000000000000000\n0x0000000000000000\n0x0000000000000000\n',
    });
    expect(xen.out).toBe('event: C_BAD_STE client: (unknown) sid: 0x7 ssid: 0');
    const none = await run(['--log', '-'], { stdin: 'nothing to see\n' });
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no SMMUv3 event record .*driver report/);
    expect((await run(['--log', '-'], { stdin: '', json: true })).out).toBe('[]');
  });

  it('keeps records from two SMMUs apart when their lines interleave', () => {
    const log = [
      'a arm-smmu-v3.0.auto: event 0x04 received:',
      'b arm-smmu-v3.1.auto: event 0x02 received:',
      'a arm-smmu-v3.0.auto: 0x0000000100000004',
      'b arm-smmu-v3.1.auto: 0x0000000200000002',
      'a arm-smmu-v3.0.auto: 0x0000000000000000',
      'b arm-smmu-v3.1.auto: 0x0000000000000000',
      'a arm-smmu-v3.0.auto: 0x0000000000000000',
      'b arm-smmu-v3.1.auto: 0x0000000000000000',
      'a arm-smmu-v3.0.auto: 0x0000000000000000',
      'b arm-smmu-v3.1.auto: 0x0000000000000000',
    ].join('\n');
    const s = scanLog(log);
    expect(s.records.map((r) => [r.device, r.words[0]])).toEqual([
      ['arm-smmu-v3.0.auto', 0x0000000100000004n],
      ['arm-smmu-v3.1.auto', 0x0000000200000002n],
    ]);
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string(),
            fc.constantFrom(
              'x: event 0x10 received:',
              'x: 0x0000000000000010',
              'x: 0x00000010',
              'x: 0x00000001 00000010',
              'x: CMDQ error (cons 0x00000001): Illegal command',
              'x: skipping command in error state:',
              'x: CMD_SYNC timeout at 0x1 [hwprod 0x2, hwcons 0x3]',
              'x: EVTQ overflow detected -- events lost',
              'f: 3 callbacks suppressed',
              'x: event: F_TRANSLATION client: a b sid: 0x1 ssid: 0 iova: 0x1 ipa: 0',
              'x: event: C_BAD_STE client:  sid: 0 ssid: 0',
            ),
          ),
        ),
        (lines) => {
          const s = scanLog(lines.join('\n'));
          for (const n of scanNotices(lines.join('\n').split(/\r?\n/), s.recordLines))
            noticeText(n, () => 'cmd');
        },
      ),
    );
  });
});

describe('iommu-lab decode --log: input size', () => {
  it('one 400 KB line without spaces (and one of colons, one of "event:"s) is scanned in linear time', () => {
    const lines = [
      'x'.repeat(400_000),
      'a:'.repeat(200_000),
      'event: '.repeat(60_000),
      `[${'1'.repeat(100_000)}`,
      `${'0x00000000 '.repeat(40_000)}z`,
    ];
    const s = scanLog(lines.join('\n'));
    expect(s.records).toEqual([]);
    expect(s.warnings).toEqual([]);
  });

  it('10,000 devices whose records interleave: every record found, in linear time', () => {
    const n = 10_000;
    const dev = (i: number) => `arm-smmu-v3.${i}.auto`;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(`[    1.000000] arm-smmu-v3 ${dev(i)}: event 0x10 received:`);
    for (let w = 0; w < 4; w++) {
      for (let i = 0; i < n; i++) {
        const word = w === 0 ? (BigInt(i) << 32n) | 0x10n : BigInt(w);
        lines.push(`[    1.000001] arm-smmu-v3 ${dev(i)}:         0x${word.toString(16).padStart(16, '0')}`);
      }
    }
    const s = scanLog(lines.join('\n'));
    expect(s.warnings).toEqual([]);
    expect(s.records).toHaveLength(n);
    expect(s.records[n - 1]!.device).toBe(dev(n - 1));
    expect(s.records[n - 1]!.words).toEqual([(BigInt(n - 1) << 32n) | 0x10n, 1n, 2n, 3n]);
    expect(s.records.every((r, i) => r.words[0] === ((BigInt(i) << 32n) | 0x10n))).toBe(true);
  });
});
