import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { run } from '../fixtures/decode/run-decode.ts';

describe('iommu-lab decode <structure>', () => {
  it('explains an event record in the Linux driver style', async () => {
    const r = await run([
      'event',
      '0x0000002000005813',
      '0x0000118880000012',
      '0xffff800012345678',
      '0x40002000',
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('F_PERMISSION (0x13)');
    expect(r.out).toContain(
      'event: F_PERMISSION client: (unknown) sid: 0x20 ssid: 0x5 iova: 0xffff800012345678 ipa: 0x40002000 unpriv data read s2 "Stage 1 translation table fetch" ttd_read stall stag: 0x12',
    );
    expect(r.out).toMatch(/STAG\s+0x12\s+\(stall tag\)/);
  });

  it('prints event JSON with the documented keys', async () => {
    const r = await run(['event', '800000010', '8000000000', '8090040', '0'], { json: true });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({
      name: 'F_TRANSLATION',
      code: '0x10',
      streamId: '0x8',
      substreamId: null,
      stall: false,
      stag: '0x0',
      read: false,
      privileged: false,
      instruction: false,
      class: 'CD',
      stage2: true,
      inputAddress: '0x8090040',
      ipa: '0x0',
      fetchAddress: null,
    });
  });

  it('pads missing words with zero and says so', async () => {
    const r = await run(['event', '0x0000000100000004']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/1 of 4 words given/);
    expect(r.out).toContain('event: C_BAD_STE client: (unknown) sid: 0x1 ssid: 0');
  });

  it('decodes an STE with Config meaning and non-zero fields', async () => {
    const r = await run(['ste', '0x000000008000100b', '0x00000000080000d4']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('STE: valid, Config 0x5: S1 translate, S2 bypass');
    expect(r.out).toMatch(/S1ContextPtr\s+0x80001000/);
    expect(r.out).toMatch(/S1CSH\s+0x3\s+\(Inner Shareable\)/);
    expect(r.out).not.toMatch(/S2VMID/);
    const all = await run(['ste', '0x9', '--all']);
    expect(all.out).toMatch(/S2VMID\s+0x0/);
    const j = JSON.parse((await run(['ste', '0x9'], { json: true })).out);
    expect(j).toMatchObject({ kind: 'ste', name: 'STE', fields: { V: true, Config: '0x4', S1CDMax: '0x0' } });
  });

  it('decodes a CD', async () => {
    const r = await run(['cd', '0x12348025_80003510', '0x0000000812345000'], { json: true });
    const j = JSON.parse(r.out);
    expect(j.fields).toMatchObject({
      V: true,
      T0SZ: '0x10',
      ASID: '0x1234',
      TTB0: '0x812345000',
      AA64: false,
    });
  });

  it('decodes commands and reports whether the SMMU would accept them', async () => {
    const ok = await run(['cmd', '0x0000004200000003', '1']);
    expect(ok.out).toContain('CMD_CFGI_STE (opcode 0x3)');
    expect(ok.out).toMatch(/StreamID\s+0x42/);
    expect(ok.out).toContain('validation: ok');
    const bad = await run(['cmd', '0x3046'], { json: true });
    expect(JSON.parse(bad.out)).toMatchObject({
      name: 'CMD_SYNC',
      valid: false,
      problems: ['CS == 0b11 is reserved'],
    });
    const unknown = await run(['cmd', '0x99', '0']);
    expect(unknown.out).toContain('unknown command (opcode 0x99)');
    expect(unknown.out).toContain('CERROR_ILL');
  });

  it('decodes PRI entries and stop markers', async () => {
    const j = JSON.parse((await run(['pri', '0xf400004200000010', '0x7f0012345007'], { json: true })).out);
    expect(j).toMatchObject({
      streamId: '0x10',
      substreamId: '0x42',
      last: true,
      read: true,
      write: true,
      exec: false,
      privileged: true,
      prgIndex: '0x7',
      address: '0x7f0012345000',
      stopMarker: false,
    });
    const stop = await run(['pri', '0xc000000000000008', '0x3']);
    expect(stop.out).toContain('PRI stop marker: sid 0x8');
  });

  it('decodes page-table descriptors', async () => {
    const r = await run(['pte', '0x00600000800007c3', '--stage', '1', '--granule', '4k', '--level', '3']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('page');
    expect(r.out).toContain('output address: 0x80000000');
    const j = JSON.parse((await run(['pte', '0x40000401', '--level=1'], { json: true })).out);
    expect(j).toMatchObject({
      kind: 'pte',
      type: 'block',
      outputAddress: '0x40000000',
      mappingSize: '0x40000000',
    });
    const s2 = JSON.parse((await run(['pte', '0x4ff', '--stage', '2', '--level', '3'], { json: true })).out);
    expect(s2.fields).toMatchObject({ MemAttr: '0xf', S2AP: '0x3', AF: true });
  });

  it('prints help', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const form of [
      'decode event',
      'decode ste',
      'decode cd',
      'decode cmd',
      'decode pri',
      'decode pte',
      '--log',
    ]) {
      expect(r.out).toContain(form);
    }
  });

  it.each([
    [[], /name a structure \(event, ste, cd, cmd, pri, pte\) or give --log FILE/],
    [['bogus', '1'], /unknown structure 'bogus'/],
    [['event'], /needs 1 to 4 hex words/],
    [['event', '1', '2', '3', '4', '5'], /at most 4 words/],
    [['ste', '0xZZ'], /word 0: '0xZZ' is not a hex number/],
    [['cmd', '0x1ffffffffffffffff'], /does not fit in 64 bits/],
    [['pte', '0x3'], /needs --level/],
    [['pte', '0x3', '--level', '7'], /--level must be/],
    [['pte', '0x3', '--level', '3', '--granule', '8k'], /--granule must be/],
    [['pte', '0x3', '--level', '3', '--stage', '3'], /--stage must be 1 or 2/],
    [['pte', '0x40000003', '--granule', '64k', '--level', '0'], /the 64KB granule has no level 0/],
    [['event', '1', '--frobnicate'], /unknown option '--frobnicate' for decode/],
    [['--log'], /--log needs a value/],
    [['--trace', 'x.json', 'event', '1'], /--trace does not apply to decode: it produces no trace/],
    [['--seed', '3', 'event', '1'], /--seed does not apply to decode/],
  ])('rejects bad arguments %j with exit 2 and a message', async (argv, msg) => {
    const r = await run(argv as string[]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
  });

  it('a log it cannot read is bad input: exit 1 and a message', async () => {
    const r = await run(['--log', 'does-not-exist.log']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read does-not-exist.log: ENOENT/);
  });

  it('never throws and always exits 0, 1 or 2 on random arguments', async () => {
    const token = fc.oneof(
      fc.constantFrom(
        'event',
        'ste',
        'cd',
        'cmd',
        'pri',
        'pte',
        '--level',
        '--stage',
        '--granule',
        '--all',
        '--json',
        '3',
        '4k',
      ),
      fc.string({ maxLength: 20 }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => `0x${v.toString(16)}`),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(token, { maxLength: 8 }), fc.boolean(), async (argv, json) => {
        const r = await run(argv, { json });
        expect([0, 1, 2]).toContain(r.code);
      }),
      { numRuns: 200 },
    );
  });
});
