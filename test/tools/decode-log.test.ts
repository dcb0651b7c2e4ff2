import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scanLog } from '../../src/tools/decode/log-scan.ts';
import { run } from '../fixtures/decode/run-decode.ts';

describe('iommu-lab decode --log', () => {
  it('decodes a modern Linux log, taking the client from the decoded line', async () => {
    const r = await run(['--log', 'linux-modern.log']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toEqual([
      '[   12.345678] event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0 iova: 0xfffff000 ipa: 0 unpriv data write s1 "Input address caused fault" stag: 0',
      '[   13.000001] event: F_PERMISSION client: (unknown) sid: 0x20 ssid: 0x5 iova: 0xffff800012345678 ipa: 0x40002000 unpriv data read s2 "Stage 1 translation table fetch" ttd_read stall stag: 0x12',
    ]);
    expect(r.err).toBe('');
  });

  it('decodes the HiSilicon report with the first word split in halves', async () => {
    const r = await run(['--log', 'hisilicon-5.3.log']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      '[  196.747107] event: F_TRANSLATION client: (unknown) sid: 0x180 ssid: 0 iova: 0xffffe040 ipa: 0xffffe000 unpriv data write s1 "Input address caused fault" stag: 0',
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
      'event: C_BAD_STE client: (unknown) sid: 0x1 ssid: 0',
      'event: F_CD_FETCH client: (unknown) sid: 0x3 ssid: 0 fetch_addr: 0x80000040',
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

  it('skips incomplete records and garbage with a warning', async () => {
    const r = await run(['--log', 'truncated.log']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('[   21.000000] event: C_BAD_STREAMID client: (unknown) sid: 0xffff ssid: 0');
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
    expect(none.err).toMatch(/no complete SMMUv3 event record/);
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
            ),
          ),
        ),
        (lines) => void scanLog(lines.join('\n')),
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
