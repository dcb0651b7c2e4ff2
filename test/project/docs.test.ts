/**
 * The API reference (`npm run docs`, typedoc) builds without a warning: every name the package
 * exports has a TSDoc comment, and no comment links to something that does not exist.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');

describe('API reference', () => {
  it('typedoc documents every exported name without warnings', () => {
    let out = '';
    try {
      out = execFileSync(
        join(root, 'node_modules/.bin/typedoc'),
        ['--emit', 'none', '--treatWarningsAsErrors'],
        {
          cwd: root,
          encoding: 'utf8',
          stdio: 'pipe',
        },
      );
    } catch (e) {
      const err = e as { stdout: string; stderr: string };
      throw new Error(`typedoc failed:\n${err.stdout}${err.stderr}`);
    }
    expect(out).not.toMatch(/does not have any documentation/);
  }, 120_000);
});
