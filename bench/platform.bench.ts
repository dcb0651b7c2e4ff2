import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Machine, MmioBus, PhysicalMemory, Rng, Scheduler } from '../src/platform/index.ts';
import { type BenchCase, timeLoop } from './types.ts';

const GIB = 2 ** 30;
const RAM = 0x8000_0000;

/** 1 GiB of touched RAM and a table of random 8-byte-aligned addresses inside it. */
function touchedGiB(): { mem: PhysicalMemory; addrs: Float64Array } {
  const mem = new PhysicalMemory(new MmioBus(), [{ base: RAM, size: GIB }]);
  for (let pa = RAM; pa < RAM + GIB; pa += 4096) mem.write64(pa, 1, 0);
  const rng = new Rng(1);
  const addrs = new Float64Array(1 << 20);
  for (let i = 0; i < addrs.length; i++) addrs[i] = RAM + rng.below(GIB / 8) * 8;
  return { mem, addrs };
}

export const benchmarks: BenchCase[] = [
  {
    name: 'platform.memory',
    async run() {
      const { mem, addrs } = touchedGiB();
      const mask = addrs.length - 1;
      let sink = 0;
      const reads = (n: number) => {
        for (let i = 0; i < n; i++) {
          mem.read64(addrs[i & mask]!);
          sink ^= mem.r64[0]!;
        }
      };
      const writes = (n: number) => {
        for (let i = 0; i < n; i++) mem.write64(addrs[i & mask]!, i, 0);
      };
      const N = 5_000_000;
      const tr = timeLoop(reads, N);
      const tw = timeLoop(writes, N);
      const src = RAM + 0x1000_0000;
      const copies = (n: number) => {
        for (let i = 0; i < n; i++) mem.copy(RAM + (i & 0xffff) * 4096, src + (i & 0xff) * 4096, 4096);
      };
      const C = 500_000;
      const tc = timeLoop(copies, C, 5, 10_000);
      if (sink === 0.5) console.log(sink);
      return [
        { name: 'platform.memory.read64_random_1gib', value: N / tr, unit: 'reads/s' },
        { name: 'platform.memory.write64_random_1gib', value: N / tw, unit: 'writes/s' },
        { name: 'platform.memory.copy4k', value: C / tc, unit: 'copies/s' },
      ];
    },
  },
  {
    name: 'platform.scheduler',
    async run() {
      const N = 2_000_000;
      const run = (n: number) => {
        const s = new Scheduler();
        let left = n;
        const rng = new Rng(3);
        const tick = () => {
          if (--left > 0) s.schedule(rng.below(1000), tick);
        };
        // 64 concurrent chains keep the heap non-trivial
        for (let i = 0; i < 64; i++) s.schedule(i, tick);
        s.runUntilIdleSync();
      };
      const t = timeLoop(run, N, 5, 50_000);
      return [{ name: 'platform.scheduler.events', value: N / t, unit: 'events/s' }];
    },
  },
  {
    name: 'platform.memory.footprint',
    async run() {
      // a fresh process, so the peak RSS is the model's and not earlier benchmarks'
      const script = join(dirname(fileURLToPath(import.meta.url)), 'mem-footprint.ts');
      const out = execFileSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8' });
      const r = JSON.parse(out) as { peakRssBytes: number; frames: number; footprintBytes: number };
      return [
        { name: 'platform.memory.peak_rss_after_1gib_scattered', value: r.peakRssBytes / GIB, unit: 'GiB' },
        {
          name: 'platform.memory.model_bytes_per_touched_page',
          value: r.footprintBytes / r.frames,
          unit: 'bytes',
        },
      ];
    },
  },
];

// keep the Machine import honest: the footprint script uses the same construction path
export const _machine = Machine;
