/**
 * Touch 1 GiB of simulated memory as 262144 pages scattered at random over the whole 52-bit
 * physical address space, then report the process's peak RSS. Run in a fresh process.
 */
import { Machine } from '../src/platform/index.ts';

const m = new Machine({ ram: [{ base: 0, size: 2 ** 52 }], pagePool: { base: 0, size: 2 ** 30 } });
const pages = 262144;
let touched = 0;
while (touched < pages) {
  const pa = (m.rng.next53() % 2 ** 40) * 4096;
  if (m.mem.read32(pa) === 0) {
    m.mem.write32(pa, 0xffffffff);
    m.mem.fill(pa + 4, 4092, 0xa5); // every byte of the page is written
    touched++;
  }
}
process.stdout.write(
  JSON.stringify({
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    frames: m.mem.touchedFrames,
    footprintBytes: m.mem.footprintBytes,
  }),
);
