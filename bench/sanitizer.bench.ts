/**
 * Device DMA throughput with the DMA-isolation sanitizer off, in report mode and in panic mode,
 * in one run: a platform master behind the SMMUv3 writes 64 bytes into each of N mapped pages in
 * turn (each transaction translated by the port and, with the sanitizer on, checked: the frame's
 * kind and free sequence against the TLB entry's fill), the three labs taking turns over 7
 * rounds; N = 512 (TLB hits) and N = 16,384 (every transaction a walk). Reports transactions/s (best, median, range) and the
 * per-round ratio report/off and panic/off (target: report costs at most 2x).
 */

import { boot } from '../src/api/index.ts';
import { ACCESS_WRITE } from '../src/hw/smmu-common/port.ts';
import type { SanitizeMode } from '../src/platform/sanitizer.ts';
import { type BenchCase, type BenchResult, median } from './types.ts';

const TX = 400_000;
const ROUNDS = 7;

async function setup(mode: SanitizeMode, PAGES: number) {
  const lab = await boot({ masters: [{ name: 'nic', streamIds: [0x210] }], sanitize: mode, trace: false });
  const nic = lab.master('nic');
  const iovas: number[] = [];
  for (let i = 0; i < PAGES; i++) {
    const pa = lab.allocPages(0, 'bench buffer');
    iovas.push(lab.dma.mapSingle(nic.device!, pa, 4096, 'from-device'));
  }
  const hw = lab.board.masters[0]!;
  if (hw.kind !== 'platform') throw new Error('expected a platform master');
  const sm = hw.ports[0]!.sm;
  const buf = new Uint8Array(64).fill(0xa5);
  const ia = Float64Array.from(iovas);
  const waiter = { stallDone: () => {} };
  let bad = 0;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      if (sm.access(waiter, 0, ia[i % PAGES]! + ((i >>> 14) & 63) * 64, ACCESS_WRITE, buf, 0, 64) !== 0)
        bad++;
    }
  };
  run(TX); // warm-up, and fill the TLB
  return { lab, run, bad: () => bad };
}

/** The three modes in turns over `pages` mapped pages; results named `name`.*. */
async function compare(name: string, pages: number): Promise<BenchResult[]> {
  const modes: SanitizeMode[] = ['off', 'report', 'panic'];
  const labs: Array<Awaited<ReturnType<typeof setup>>> = [];
  for (const m of modes) labs.push(await setup(m, pages));
  const rates: number[][] = modes.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < modes.length; k++) {
      const m = (k + r) % modes.length; // each mode takes its turn first
      const t0 = performance.now();
      labs[m]!.run(TX);
      rates[m]!.push(TX / ((performance.now() - t0) / 1000));
    }
  }
  for (const [i, l] of labs.entries()) {
    if (l.bad() !== 0) throw new Error(`${modes[i]}: ${l.bad()} transactions failed`);
    const reports = l.lab.sanitizer?.reports.length ?? 0;
    if (reports !== 0) throw new Error(`${modes[i]}: ${reports} sanitizer reports on correct traffic`);
  }
  const out: BenchResult[] = [];
  for (const [i, m] of modes.entries()) {
    const xs = rates[i]!;
    out.push({ name: `${name}.${m}`, value: Math.max(...xs), unit: 'tx/s' });
    out.push({ name: `${name}.${m}.median`, value: median(xs), unit: 'tx/s' });
    out.push({ name: `${name}.${m}.range`, value: Math.max(...xs) - Math.min(...xs), unit: 'tx/s' });
  }
  for (const i of [1, 2]) {
    const perRound = rates[0]!.map((off, r) => off / rates[i]![r]!);
    out.push({ name: `${name}.cost_${modes[i]}_vs_off`, value: median(perRound), unit: 'x (round median)' });
    out.push({
      name: `${name}.cost_${modes[i]}_vs_off.range`,
      value: Math.max(...perRound) - Math.min(...perRound),
      unit: 'x',
    });
  }
  return out;
}

export const benchmarks: BenchCase[] = [
  // 512 pages: TLB hits after the first pass
  { name: 'sanitizer.dma.tlb_hit', run: () => compare('sanitizer.dma.tlb_hit', 512) },
  // 16,384 pages, twice the TLB's 8,192 entries, visited in turn: every transaction walks (with
  // the sanitizer on, through the Walker, which checks every descriptor read)
  { name: 'sanitizer.dma.walk', run: () => compare('sanitizer.dma.walk', 16_384) },
];
