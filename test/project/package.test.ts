// The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), the tarball
// installed into an empty folder, and used there with no TypeScript tooling. One pack and one
// install serve the whole file; without a network and without npm's cache the install cannot
// happen, and the tests skip with a message.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string };

let dir = '';
let app = '';
/** Paths in the tarball. */
let packed: string[] = [];
/** Why the installed package cannot be tried here, if it cannot. */
let cannotInstall: string | null = null;

/** Run a command in the installed app's folder with a plain environment (no tsx, no NODE_OPTIONS). */
function inApp(cmd: string, args: string[]) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.IOMMU_LAB_FROM_SOURCE;
  return spawnSync(cmd, args, { cwd: app, env, encoding: 'utf8' });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'iommu-lab-pack-'));
  // `npm pack` builds dist/ (the prepare script) unless the build is fresh: the command says on
  // stderr when dist/ is missing or older than src/ (as after `npm ci`, it is fresh, and the
  // pack saves a second build)
  const env = { ...process.env };
  delete env.IOMMU_LAB_FROM_SOURCE;
  const fresh = spawnSync(process.execPath, [join(root, 'bin/iommu-lab.js'), '--version'], {
    encoding: 'utf8',
    env,
  });
  const built = fresh.status === 0 && fresh.stderr === '';
  // with --json, npm prints the list of packed files on stdout and the build's output on stderr
  const out = execFileSync(
    'npm',
    ['pack', '--json', '--pack-destination', dir, ...(built ? ['--ignore-scripts'] : [])],
    {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const [info] = JSON.parse(out) as [{ filename: string; files: { path: string }[] }];
  packed = info.files.map((f) => f.path);
  app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const install = spawnSync(
    'npm',
    ['install', join(dir, info.filename), '--no-audit', '--no-fund', '--prefer-offline'],
    { cwd: app, encoding: 'utf8' },
  );
  if (install.status !== 0) {
    const why = `${install.stdout}\n${install.stderr}`;
    if (!/E(NOTFOUND|AI_AGAIN|CONNREFUSED|CONNRESET|TIMEDOUT|NETUNREACH|NOTCACHED)|network/i.test(why)) {
      throw new Error(`npm install of the tarball failed:\n${why}`);
    }
    cannotInstall = `npm cannot install the tarball's dependencies here (no network, not in npm's cache): ${why.trim().split('\n').slice(-3).join(' ')}`;
    console.warn(`package.test: skipped: ${cannotInstall}`);
  }
}, 600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('holds the build, the command, the licence and the design notes, and no tests, benchmarks, CI files or sources', () => {
    for (const f of [
      'package.json',
      'README.md',
      'LICENSE',
      'docs/DESIGN.md',
      'bin/iommu-lab.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/tools/cli/main.js',
    ]) {
      expect(packed).toContain(f);
    }
    const unwanted = packed.filter((p) =>
      /^(test|bench|\.ci|src|node_modules)\/|\.test\.|^tsconfig|^vitest|^biome|\.ts$/.test(
        p.replace(/\.d\.ts$/, ''),
      ),
    );
    expect(unwanted).toEqual([]);
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(
      /^MIT License\n\nCopyright \(c\) \d{4} the iommu-lab authors\n/,
    );
  });

  it('imports from an installed tarball with plain Node: no TypeScript tooling involved', (ctx) => {
    if (cannotInstall) ctx.skip(cannotInstall);
    expect(existsSync(join(app, 'node_modules/typescript'))).toBe(false);
    const r = inApp(process.execPath, [
      '--input-type=module',
      '-e',
      "const m = await import('iommu-lab'); console.log(JSON.stringify({ url: import.meta.resolve('iommu-lab'), version: m.version }))",
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { url, version } = JSON.parse(r.stdout) as { url: string; version: string };
    expect(url).toMatch(/\/node_modules\/iommu-lab\/dist\/index\.js$/);
    expect(version).toBe(pkg.version);
    // the type declarations the package names are there
    expect(existsSync(join(app, 'node_modules/iommu-lab/dist/index.d.ts'))).toBe(true);
  });

  it('installs the iommu-lab command: --version, and a demo that writes its trace', (ctx) => {
    if (cannotInstall) ctx.skip(cannotInstall);
    const v = inApp('npx', ['--no', '--', 'iommu-lab', '--version']);
    expect([v.status, v.stdout.trim(), v.stderr]).toEqual([0, pkg.version, '']);
    const trace = join(app, 't.json');
    const a = inApp('npx', ['--no', '--', 'iommu-lab', 'demo', '--seed', '7', '--json', '--trace', trace]);
    const b = inApp('npx', ['--no', '--', 'iommu-lab', 'demo', '--seed', '7', '--json']);
    expect([a.status, b.status, a.stderr]).toEqual([0, 0, '']);
    expect(a.stdout).toBe(b.stdout);
    expect(JSON.parse(readFileSync(trace, 'utf8')).traceEvents.length).toBeGreaterThan(3);
  });
});

describe('a user scenario in the installed package', () => {
  const MJS = `import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'installed-mjs',
  masters: [{ name: 'accel', streamIds: [0x200] }],
  async run({ lab, expect }) {
    const accel = lab.master('accel');
    const buf = lab.allocPages(0);
    lab.write(buf, new Uint8Array([9, 8, 7]));
    const iova = lab.dma.mapSingle(accel.device, buf, 4096, 'to-device');
    const r = await accel.read(iova, 3);
    expect([...r.data]).toEqual(process.env.BREAK_IT ? [0, 0, 0] : [9, 8, 7]);
  },
});
`;
  const TS = `import { defineScenario, type ScenarioContext } from 'iommu-lab';
const atLeast = (ctx: ScenarioContext, n: number): void => ctx.expect(ctx.lab.now, 'virtual time').toBeGreaterThanOrEqual(n);
export default defineScenario({
  name: 'installed-ts',
  async run(ctx) {
    atLeast(ctx, process.env.BREAK_IT ? 2 ** 52 : 0);
    return { devices: ctx.lab.devices().length };
  },
});
`;

  it.for([
    ['scenario.mjs', MJS],
    ['scenario.ts', TS],
  ] as const)(
    'npx iommu-lab run %s passes, and fails with exit 1 when its assertion is false',
    ([file, text], ctx) => {
      if (cannotInstall) ctx.skip(cannotInstall);
      writeFileSync(join(app, file), text);
      const ok = inApp('npx', ['--no', '--', 'iommu-lab', 'run', file, '--seed', '3']);
      expect(ok.stderr).toBe('');
      expect(ok.stdout).toMatch(/^PASS installed-(mjs|ts) \(seed 3\)/m);
      expect(ok.status).toBe(0);
      const env: NodeJS.ProcessEnv = { ...process.env, BREAK_IT: '1' };
      delete env.NODE_OPTIONS;
      const bad = spawnSync('npx', ['--no', '--', 'iommu-lab', 'run', file, '--seed', '3'], {
        cwd: app,
        env,
        encoding: 'utf8',
      });
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(/^FAIL installed-(mjs|ts) \(seed 3\) at virtual time \d+ ns: assertion/m);
      expect(bad.stdout).toMatch(new RegExp(`reproduce: iommu-lab run ${file.replace('.', '\\.')} --seed 3`));
    },
  );

  it("the sanitizer's reports name the caller's sites from the build, not the allocators' own frames", (ctx) => {
    if (cannotInstall) ctx.skip(cannotInstall);
    const file = 'uaf.mjs';
    writeFileSync(join(app, file), readFileSync(join(root, 'examples/sanitizer-use-after-free.mjs'), 'utf8'));
    const r = inApp('npx', ['--no', '--', 'iommu-lab', 'run', file, '--json']);
    expect(r.status, r.stderr + r.stdout.slice(0, 1500)).toBe(0);
    const [rep] = (
      JSON.parse(r.stdout) as { sanitizer: { reports: Array<{ allocSite: string; freeSite: string }> } }
    ).sanitizer.reports;
    expect(rep!.allocSite).toMatch(/^Lab\.allocPages \(api\/lab\.js:\d+\) < /);
    expect(rep!.freeSite).toMatch(/^Lab\.freePages \(api\/lab\.js:\d+\) < /);
    expect(`${rep!.allocSite} ${rep!.freeSite}`).not.toMatch(/sanitizer\.js|page-alloc\.js|node_modules/);
  });
});
