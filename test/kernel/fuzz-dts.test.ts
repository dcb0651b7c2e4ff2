/**
 * Fuzz: structured random DTS — the embedded platform's source with a random piece spliced into
 * a node body (nodes nested up to 6,000 deep, up to 3,000 parentheses or ?: levels, runs of up
 * to 20,000 unary operators, /include/ graphs over up to 25 files with loops and repeats), then
 * random characters replaced after it. parseDts must give a tree or a DtsError naming a line of a file it
 * read, and read at most MAX_INCLUDES + 1 includes (the reader below gives up — with a foreign
 * error — after 20,000 reads, which an include chain that multiplies reaches at once).
 *
 * Found before their fixes (issue 20): the RangeErrors of deep nodes, parentheses and unary
 * operators, and the include chain that doubles at each file; the property fails on one of
 * them within its first cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { DtsError, MAX_INCLUDES, parseDts } from '../../src/kernel/of/dts.ts';

type Piece =
  | { k: 'nest'; depth: number }
  | { k: 'parens'; depth: number }
  | { k: 'unary'; ops: string }
  | { k: 'ternary'; depth: number }
  | { k: 'include'; files: number[][]; doubling: boolean }
  | { k: 'none' };

const piece: fc.Arbitrary<Piece> = fc.oneof(
  fc.record({ k: fc.constant('nest' as const), depth: fc.integer({ min: 1, max: 6000 }) }),
  fc.record({ k: fc.constant('parens' as const), depth: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({
    k: fc.constant('unary' as const),
    ops: fc
      .tuple(fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }))
      .map(([n, seed]) => Array.from({ length: n }, (_, i) => '-~!'[(seed >>> (i % 29)) % 3]!).join('')),
  }),
  fc.record({ k: fc.constant('ternary' as const), depth: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({
    k: fc.constant('include' as const),
    // file i includes the files listed (any index: loops and repeats allowed)
    files: fc.array(fc.array(fc.nat(24), { maxLength: 3 }), { minLength: 1, maxLength: 25 }),
    doubling: fc.boolean(),
  }),
  fc.constant({ k: 'none' as const }),
);

/** The piece as DTS text (node-body items) and the include files it needs. */
function render(p: Piece): { text: string; files: Record<string, string> } {
  const files: Record<string, string> = {};
  switch (p.k) {
    case 'nest':
      return { text: `${'n {\n'.repeat(p.depth)}p = <1>;\n${'};\n'.repeat(p.depth)}`, files };
    case 'parens':
      return { text: `q = <${'('.repeat(p.depth)}1${')'.repeat(p.depth)}>;\n`, files };
    case 'unary':
      return { text: `q = <(${p.ops}1)>;\n`, files };
    case 'ternary':
      return { text: `q = <(${'1 ? 2 : '.repeat(p.depth)}3)>;\n`, files };
    case 'include': {
      const n = p.files.length;
      p.files.forEach((inc, i) => {
        // a doubling chain includes the next file twice; otherwise the random graph
        const targets = p.doubling ? (i + 1 < n ? [i + 1, i + 1] : []) : inc.map((j) => j % n);
        files[`inc/f${i}.dtsi`] =
          `v${i} = <${i}>;\n${targets.map((j) => `/include/ "f${j}.dtsi"\n`).join('')}`;
      });
      return { text: '/include/ "inc/f0.dtsi"\n', files };
    }
    default:
      return { text: '', files };
  }
}

const BODY_AT = DEFAULT_PLATFORM_DTS.indexOf('\t\tgpu@a000000 {');

describe('fuzz: random DTS', () => {
  it('parseDts gives a tree or a DtsError naming a line of a file it read; includes stay bounded', () => {
    fc.assert(
      fc.property(
        piece,
        fc.array(
          fc.tuple(
            fc.double({ min: 0, max: 0.999, noNaN: true }),
            fc.constantFrom('{', '}', ';', '(', '"', '/', '<', 'x'),
          ),
          {
            maxLength: 3,
          },
        ),
        (p, edits) => {
          const { text, files } = render(p);
          // the random characters go after the piece, so that the piece is always read
          let tail = DEFAULT_PLATFORM_DTS.slice(BODY_AT);
          for (const [at, c] of edits) {
            const i = Math.floor(at * tail.length);
            tail = tail.slice(0, i) + c + tail.slice(i + 1);
          }
          const src = `${DEFAULT_PLATFORM_DTS.slice(0, BODY_AT)}${text}${tail}`;
          let reads = 0;
          const readInclude = (path: string) => {
            if (++reads > 20_000) throw new Error(`include reader called ${reads} times`);
            return files[path];
          };
          try {
            const t = parseDts(src, { fileName: 'main.dts', readInclude });
            expect(t.root.children.length).toBeGreaterThan(0);
          } catch (e) {
            if (!(e instanceof DtsError)) throw e;
            expect(e.line).toBeGreaterThanOrEqual(1);
            expect(e.file === 'main.dts' || e.file in files).toBe(true);
          }
          expect(reads).toBeLessThanOrEqual(MAX_INCLUDES + 1);
        },
      ),
      { numRuns: 300, seed: 0xd75 },
    );
  });
});
