import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const depcruise = join(root, 'node_modules/.bin/depcruise');

/** Run dependency-cruiser with the project's rules over a scratch tree; returns [exit code, output]. */
function cruise(files: Record<string, string>): [number, string] {
  const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-layers-'));
  try {
    for (const [p, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, p)), { recursive: true });
      writeFileSync(join(dir, p), text);
    }
    copyFileSync(join(root, 'tsconfig.json'), join(dir, 'tsconfig.json'));
    try {
      const out = execFileSync(depcruise, ['src', '--config', join(root, '.dependency-cruiser.cjs')], {
        cwd: dir,
        encoding: 'utf8',
        stdio: 'pipe',
      });
      return [0, out];
    } catch (e) {
      const err = e as { status: number; stdout: string; stderr: string };
      return [err.status, err.stdout + err.stderr];
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('layer rules of DESIGN.md', () => {
  it('accept imports that point downward', () => {
    const [code] = cruise({
      'src/platform/p.ts': 'export const p = 1;\n',
      'src/arch/a.ts': "import { p } from '../platform/p.ts';\nexport const a = p;\n",
      'src/hw/h.ts': "import { a } from '../arch/a.ts';\nexport const h = a;\n",
      'src/kernel/k.ts': "import { a } from '../arch/a.ts';\nexport const k = a;\n",
      'src/api/x.ts':
        "import { h } from '../hw/h.ts';\nimport { k } from '../kernel/k.ts';\nexport const x = h + k;\n",
      'src/tools/t.ts':
        "import { h } from '../hw/h.ts';\nimport { x } from '../api/x.ts';\nexport const t = h + x;\n",
      'src/index.ts': "export { x } from './api/x.ts';\n",
    });
    expect(code).toBe(0);
  });

  it.each([
    [
      'hw imports kernel',
      'src/hw/h.ts',
      "import { k } from '../kernel/k.ts';\nexport const h = k;\n",
      'hw-not-kernel',
    ],
    [
      'kernel imports hw',
      'src/kernel/k.ts',
      "import { h } from '../hw/h.ts';\nexport const k = h;\n",
      'kernel-not-hw',
    ],
    [
      'arch imports hw',
      'src/arch/a.ts',
      "import { h } from '../hw/h.ts';\nexport const a = h;\n",
      'arch-is-pure',
    ],
    [
      'kernel imports the public API',
      'src/kernel/k.ts',
      "import { x } from '../api/x.ts';\nexport const k = x;\n",
      'api-is-the-face',
    ],
    [
      'the package entry reaches past the API',
      'src/index.ts',
      "export { k } from './kernel/k.ts';\n",
      'entry-is-thin',
    ],
    [
      'platform imports arch',
      'src/platform/p.ts',
      "import { a } from '../arch/a.ts';\nexport const p = a;\n",
      'platform-is-the-floor',
    ],
  ])('fail the suite when %s', (_what, file, text, rule) => {
    const base: Record<string, string> = {
      'src/platform/p.ts': 'export const p = 1;\n',
      'src/arch/a.ts': 'export const a = 1;\n',
      'src/hw/h.ts': 'export const h = 1;\n',
      'src/kernel/k.ts': 'export const k = 1;\n',
      'src/api/x.ts': 'export const x = 1;\n',
    };
    base[file] = text;
    const [code, out] = cruise(base);
    expect(code).not.toBe(0);
    expect(out).toContain(rule);
  });

  it('hold for the real source tree', () => {
    const out = execFileSync(depcruise, ['src', '--config', '.dependency-cruiser.cjs'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(out).toMatch(/no dependency violations found/);
  });
});
