#!/usr/bin/env node
// Entry point: runs the CLI as built into dist/ by `npm ci`, `npm install` or `npm pack` (the
// `prepare` script), so starting it compiles nothing.
//
// In a checkout whose dist/ is missing, or older than a file in src/ (sources edited or pulled
// since the last build), it runs the TypeScript sources through tsx instead and says so in one
// line on stderr; IOMMU_LAB_FROM_SOURCE=1 asks for that without the note. An installed package
// has no src/ and always runs dist/.
import { existsSync, readdirSync, statSync } from 'node:fs';

const built = new URL('../dist/tools/cli/main.js', import.meta.url);
const src = new URL('../src/', import.meta.url);

/** Newest modification time of the files under `dir` (ms). */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

let why = process.env.IOMMU_LAB_FROM_SOURCE === '1' ? '' : null;
if (why === null && existsSync(src)) {
  if (!existsSync(built)) why = 'no build in dist/';
  else if (newest(src) > statSync(built).mtimeMs) why = 'dist/ is older than src/';
}
let main;
if (why === null) ({ main } = await import(built.href));
else {
  if (why) process.stderr.write(`iommu-lab: ${why} (npm run build); running the sources through tsx\n`);
  const tsx = await import('tsx/esm/api').catch(() => null);
  if (tsx === null) {
    process.stderr.write('iommu-lab: cannot run the sources either: tsx is not installed (run npm ci)\n');
    process.exit(1);
  }
  tsx.register();
  ({ main } = await import(new URL('tools/cli/main.ts', src).href));
}
process.exitCode = await main(process.argv.slice(2));
