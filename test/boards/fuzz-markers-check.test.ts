// Fuzz (issue 22): cpp line markers, well-formed or not, at random line starts of a board's source
// give a tree or a DtsError (never another exception), and every position they lead to is a
// position (a file name, line >= 1, column >= 1); `lab.check()` on such a board gives findings
// or nothing, never an exception.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boot } from '../../src/api/lab.ts';
import { DtsError, parseDts } from '../../src/kernel/of/dts.ts';
import { socBoard } from './dts.ts';

const BOARD =
  socBoard(`		smmu: iommu@9000000 { compatible = "arm,smmu-v3"; reg = <0x0 0x09000000 0x0 0x20000>; #iommu-cells = <1>; };
		dma@a000000 { compatible = "vendor,dma"; reg = <0x0 0xa000000 0x0 0x1000>; iommus = <&smmu 0x10>; };
		crypto@a100000 { compatible = "vendor,crypto"; reg = <0x0 0xa100000 0x0 0x1000>; iommus = <&smmu 0x10>; };`);

const marker = fc.oneof(
  fc
    .tuple(fc.nat(100_000), fc.constantFrom('a.dtsi', 'b.dts', 'dir/c.dtsi', 'we"ird.dtsi', ''))
    .map(([n, f]) => `# ${n} "${f.replace(/"/g, '\\\\"')}"${n % 3 === 0 ? ' 1' : n % 3 === 1 ? ' 2' : ''}`),
  fc.nat(100).map((n) => `#line ${n} "l.dtsi"`),
  fc.constantFrom(
    '# 12',
    '# x "f"',
    '# 3 "unterminated',
    '#',
    '# 4294967296 "big.dtsi"',
    '#  7   "sp.dtsi"  3 4',
  ),
);

function splice(src: string, inserts: Array<[number, string]>): string {
  const lines = src.split('\n');
  for (const [at, m] of inserts) lines.splice(at % (lines.length + 1), 0, m);
  return lines.join('\n');
}

describe('fuzz: cpp line markers and boot --check (issue 22)', () => {
  it('a tree or a DtsError; positions are positions', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(40), marker), { maxLength: 6 }), (ins) => {
        const src = splice(BOARD, ins);
        try {
          const t = parseDts(src, { fileName: 'fuzz.dts' });
          for (const n of t.nodes()) {
            for (const p of [n.srcPos, ...(n.propPos?.values() ?? [])]) {
              if (p === null) continue;
              expect(typeof p.file).toBe('string');
              expect(p.line).toBeGreaterThanOrEqual(0);
              expect(p.column).toBeGreaterThanOrEqual(1);
            }
          }
        } catch (e) {
          if (!(e instanceof DtsError)) throw e;
        }
      }),
      { numRuns: 300, seed: 22 },
    );
  });

  it('lab.check() on a board with markers: findings, never an exception', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(40), marker), { maxLength: 3 }), async (ins) => {
        const src = splice(BOARD, ins);
        let ok = true;
        try {
          parseDts(src);
        } catch {
          ok = false;
        }
        if (!ok) return;
        const lab = await boot({ board: { dts: src }, trace: false });
        const fs = lab.check();
        expect(fs.filter((f) => f.check === 'shared-stream')).toHaveLength(1);
      }),
      { numRuns: 15, seed: 22 },
    );
  });
});
