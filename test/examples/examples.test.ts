/**
 * Every scenario in examples/ runs and passes: each asserts its own outcome with ctx.expect, so a
 * pass here means the behaviour it documents holds. Run in-process (the CLI runs the same
 * definitions on worker threads; test/tools/run.test.ts covers that path).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario, type ScenarioDefinition } from '../../src/index.ts';

const dir = join(import.meta.dirname, '../../examples');
const files = readdirSync(dir).filter((f) => /\.(mjs|ts)$/.test(f));

async function load(f: string): Promise<ScenarioDefinition> {
  return (await import(join(dir, f))).default as ScenarioDefinition;
}

describe('examples/', () => {
  it('has at least eight scenarios', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });

  it.each(files)('%s passes (seed 1)', async (f) => {
    const def = await load(f);
    const r = await runScenario(def, { seed: 1 });
    expect(r.error, JSON.stringify(r.error)).toBeNull();
    expect(r.ok).toBe(true);
    expect(r.bugs).toEqual([]);
  });

  it('the isolation property holds over a handful of seeds', async () => {
    const def = await load('isolation-property.mjs');
    for (let seed = 2; seed <= 6; seed++) {
      const r = await runScenario(def, { seed });
      expect(r.error, `seed ${seed}: ${JSON.stringify(r.error)}`).toBeNull();
    }
  });

  it('the isolation property catches a driver that skips its TLB invalidations', async () => {
    const def = await load('isolation-property.mjs');
    let caught = 0;
    for (let seed = 1; seed <= 8; seed++) {
      const r = await runScenario({ ...def, inject: ['skip-tlbi'] }, { seed });
      if (!r.ok) {
        caught++;
        expect(r.error?.kind).toBe('assertion');
        expect(r.error?.message).toMatch(/not mapped for it\): expected true to be false/);
      }
    }
    expect(caught).toBeGreaterThan(0);
  });

  it('the teardown example sees the reused page clobbered only with the TLBI skipped', async () => {
    const r = await runScenario(await load('teardown-missing-tlbi.mjs'), { seed: 3 });
    const res = r.result as {
      buggy: { reusedPageClobbered: boolean };
      correct: { reusedPageClobbered: boolean };
    };
    expect([res.buggy.reusedPageClobbered, res.correct.reusedPageClobbered]).toEqual([true, false]);
  });
});

describe('README', () => {
  it("the scenario in 'Write your own scenario' passes", async () => {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Write your own scenario'));
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-readme-'));
    try {
      const file = join(dir, 'my-scenario.mjs');
      writeFileSync(file, code!);
      const def = (await import(file)).default as ScenarioDefinition;
      const r = await runScenario(def, { seed: 1 });
      expect(r.error, JSON.stringify(r.error)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
