// SMMUv1/v2 decoding: `decode fsr|fsynr0 VALUE` with Linux's bit names, `decode --log` on the
// arm-smmu driver's context-fault prints (v6.12+ three lines, the one-line forms), global faults
// and blocked streams, a fuzz of random log text, and the round trip from the adreno demo's
// log (the driver's own lines) back through decode --log.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/tools/cli/main.ts';
import type { CliIo } from '../../src/tools/cli/types.ts';
import { scanSmmuV2Log } from '../../src/tools/decode/log-smmuv2.ts';
import { run } from '../fixtures/decode/run-decode.ts';

const V612 = `[   10.500035] arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x40000402, iova=0x45bd000000, fsynr=0x13, cbfrsynra=0x880, cb=3
[   10.500035] arm-smmu 15000000.iommu: FSR    = 40000402 [SS Format=2 TF], SID=0x880
[   10.500035] arm-smmu 15000000.iommu: FSYNR0 = 00000013 [S1CBNDX=0 WNR PLVL=3]`;
const ONE_LINE =
  'Jan  1 00:00:01 host kernel: arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0xffffffc012345000, fsynr=0x11, cbfrsynra=0x1c03, cb=3';
const OLD = '[    3.1] arm-smmu d00000.iommu: Unhandled context fault: fsr=0x8, iova=0x1000, fsynr=0x0, cb=1';
const GLOBAL = `[    4.0] arm-smmu 15000000.iommu: Unexpected global fault, this could be serious
[    4.0] arm-smmu 15000000.iommu: 	GFSR 0x80000004, GFSYNR0 0x00000002, GFSYNR1 0x00000c01, GFSYNR2 0x00000000`;
const BLOCKED =
  '[    5.0] arm-smmu 15000000.iommu: Blocked unknown Stream ID 0x2100; boot with "arm-smmu.disable_bypass=0" to allow, but this may have security implications';

describe('decode SMMUv1/v2 registers', () => {
  it('fsr and fsynr0 name the bits as Linux does', async () => {
    const f = await run(['fsr', '0x40000402']);
    expect(f.code).toBe(0);
    expect(f.out.split('\n').slice(0, 2)).toEqual([
      'FSR 0x40000402: SS TF',
      '  Linux prints: [SS Format=2 TF]',
    ]);
    const j = JSON.parse((await run(['fsynr0', '0x413'], { json: true })).out);
    expect(j).toMatchObject({
      register: 'FSYNR0',
      value: '0x413',
      flags: ['PTWF', 'WNR'],
      fields: { PLVL: 3, S1CBNDX: 0 },
    });
    expect((await run(['fsr', '0x1ffffffff'])).code).toBe(2);
    expect((await run(['fsr'])).code).toBe(2);
  });
});

describe('decode --log, arm-smmu lines', () => {
  it('the v6.12+ print, the one-line forms, global faults and blocked streams', async () => {
    const text = [V612, ONE_LINE, OLD, GLOBAL, BLOCKED].join('\n');
    const r = await run(['--log', '-'], { json: true, stdin: text });
    expect(r.code).toBe(0);
    const recs = JSON.parse(r.out);
    expect(recs.map((x: { kind: string }) => x.kind)).toEqual([
      'smmuv2-context-fault',
      'smmuv2-context-fault',
      'smmuv2-context-fault',
      'smmuv2-global-fault',
      'smmuv2-blocked-stream',
    ]);
    expect(recs[0]).toMatchObject({
      format: 'v6.12',
      fsr: '0x40000402',
      fsynr0: '0x13',
      iova: '0x45bd000000',
      cbfrsynra: '0x880',
      cb: 3,
      streamId: '0x880',
      fsrFlags: ['SS', 'TF'],
      fsynr0Flags: ['WNR'],
      stalled: true,
      write: true,
      device: '15000000.iommu',
      timestamp: '[   10.500035]',
    });
    expect(recs[1]).toMatchObject({
      format: 'one-line',
      iova: '0xffffffc012345000',
      streamId: '0x1c03',
      cb: 3,
    });
    expect(recs[2]).toMatchObject({
      format: 'old',
      cbfrsynra: null,
      streamId: null,
      fsrFlags: ['PF'],
      cb: 1,
    });
    expect(recs[3]).toMatchObject({ gfsr: '0x80000004', streamId: '0xc01', gfsrFlags: ['MULTI', 'SMCF'] });
    expect(recs[4]).toMatchObject({ streamId: '0x2100' });
    const t = await run(['--log', '-'], { stdin: text });
    expect(t.out.split('\n')[0]).toBe(
      '[   10.500035] 15000000.iommu: context fault in cb 3: TF (translation fault (no valid mapping at that address)) at iova 0x45bd000000, write, stream 0x880, level 3, stalled; FSR [SS Format=2 TF] FSYNR0 [S1CBNDX=0 WNR PLVL=3]',
    );
  });

  it('a log with neither SMMUv3 records nor arm-smmu lines still exits 1', async () => {
    const r = await run(['--log', '-'], { stdin: 'nothing to see\n' });
    expect(r.code).toBe(1);
  });

  it('random text never throws and never invents a record', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.constantFrom(V612, ONE_LINE, OLD, GLOBAL, BLOCKED)), {
          maxLength: 20,
        }),
        (parts) => {
          const text = parts.join('\n');
          const recs = scanSmmuV2Log(text);
          const expected = parts.reduce(
            (n, p) =>
              n + (p === V612 || p === ONE_LINE || p === OLD || p === GLOBAL || p === BLOCKED ? 1 : 0),
            0,
          );
          // random strings cannot spell a whole fault line by chance
          expect(recs.length).toBe(expected);
        },
      ),
      { numRuns: 200, seed: 21 },
    );
  });
});

async function cli(argv: string[]) {
  const out: string[] = [];
  const written = new Map<string, string>();
  const io: CliIo = {
    out: (s) => out.push(s),
    err: (s) => out.push(`ERR ${s}`),
    readFile: async (p) => new TextEncoder().encode(written.get(p) ?? ''),
    readStdin: async () => '',
    writeFile: async (p, d) => {
      written.set(p, typeof d === 'string' ? d : new TextDecoder().decode(d));
    },
  };
  const rc = await main(argv, io);
  return { rc, out: out.join('\n'), written, io };
}

describe('adreno-stall demo', () => {
  it('is deterministic for a seed; its arm-smmu lines are Linux-exact and decode --log reads them back', async () => {
    const a = await cli(['demo', 'adreno-stall', '--seed', '4', '--json', '--log', 'run.log']);
    expect(a.rc).toBe(0);
    const b = await cli(['demo', 'adreno-stall', '--seed', '4', '--json']);
    expect(b.out).toBe(a.out);
    const res = JSON.parse(a.out).result;
    expect(res.flow).toBe('v6.16');
    expect(res.crash.stalledAtCapture).toBeGreaterThan(0);
    expect(res.stall).toMatchObject({ afterFault: false, nextSubmit: false, after500ms: true });
    const log = a.written.get('run.log')!;
    const ctx = log.split('\n').filter((l) => /arm-smmu 15000000\.iommu: (Unhandled|FSR|FSYNR0)/.test(l));
    expect(ctx.map((l) => l.replace(/^\[[ \d.]+\] /, ''))).toEqual([
      'arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x2, iova=0x70000000, fsynr=0x0, cbfrsynra=0x880, cb=0',
      'arm-smmu 15000000.iommu: FSR    = 00000002 [Format=0 TF], SID=0x880',
      'arm-smmu 15000000.iommu: FSYNR0 = 00000000 [S1CBNDX=0 PLVL=0]',
    ]);
    // round trip
    const d = await cli(['decode', '--log', 'run.log', '--json']);
    d.written.set('run.log', log);
    const d2 = await main(['decode', '--log', 'run.log', '--json'], {
      ...d.io,
      out: (s) => {
        const recs = JSON.parse(s);
        expect(recs).toEqual([
          expect.objectContaining({
            kind: 'smmuv2-context-fault',
            format: 'v6.12',
            device: '15000000.iommu',
            cb: 0,
            streamId: '0x880',
            iova: '0x70000000',
            fsrFlags: ['TF'],
          }),
        ]);
      },
      readFile: async () => new TextEncoder().encode(log),
    });
    expect(d2).toBe(0);
  });

  it('the v5.14..v6.15 flow: the dump from the fault worker, stall stays on', async () => {
    const a = await cli(['demo', 'adreno-stall-legacy', '--seed', '1', '--json']);
    expect(a.rc).toBe(0);
    const res = JSON.parse(a.out).result;
    expect(res.flow).toBe('v6.15');
    expect(res.crash.capturedIn).toBe('worker');
    expect(res.crash.stalledAtCapture).toBeGreaterThan(0);
    expect(res.terminates).toBe(res.smmuContextFaults);
    expect(res.linesPrinted).toBe(10);
    expect(res.stall.afterFault).toBe(true);
  });
});
