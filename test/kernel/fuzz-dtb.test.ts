/**
 * Fuzz: mutated real device trees (the embedded platform's dtb) — nested inside long chains of
 * nodes, widened by many siblings, with words of the structure block overwritten and the blob
 * truncated. The dtb reader must give a tree or an FdtError; an accepted tree stays within
 * Linux's FDT_MAX_DEPTH, every node has a path, and it writes back to an equal dtb; `boot`
 * answers every blob with a report (exit 0) or a message (exit 1), never an internal error.
 *
 * Found before their fixes (see the report of issue 20): DtNode.path overflowing the stack on a
 * deep chain, writeFdt recursing the same way, and boot failing on such a tree ("internal
 * error"); both properties find them within their first few dozen cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import {
  FDT_BEGIN_NODE,
  FDT_END_NODE,
  FdtError,
  parseFdt,
  tryParseFdt,
  writeFdt,
} from '../../src/kernel/of/fdt.ts';
import { type DeviceTree, MAX_NODE_DEPTH } from '../../src/kernel/of/tree.ts';
import { main } from '../../src/tools/cli/main.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

const BASE = writeFdt(parseDts(DEFAULT_PLATFORM_DTS));

interface Mutation {
  /** Chain of nodes the whole platform is nested in. */
  deepen: number;
  /** Empty sibling nodes added under the root. */
  widen: number;
  /** Structure-block words overwritten: [index (scaled to the block), value]. */
  words: Array<[number, number]>;
  /** Bytes kept (fraction of the blob), or 1. */
  keep: number;
}

const rd32 = (b: Uint8Array, o: number) =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const wr32 = (b: Uint8Array, o: number, v: number) => {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
};

/**
 * The platform blob with `deepen` BEGIN_NODE "x" right after the root's own, the same number of
 * END_NODEs before the root's, and `widen` empty nodes "w" after the chain; header fixed up.
 * Built here, word by word, so the harness itself does not recurse.
 */
function mutate(m: Mutation): Uint8Array {
  const offStruct = rd32(BASE, 8);
  const offStrings = rd32(BASE, 12);
  const sizeStruct = rd32(BASE, 36);
  const rootHead = offStruct + 8; // FDT_BEGIN_NODE + "" padded
  const rootTail = offStruct + sizeStruct - 8; // the root's FDT_END_NODE, then FDT_END
  const extra = m.deepen * 8 + m.widen * 12 + m.deepen * 4;
  const out = new Uint8Array(BASE.length + extra);
  let o = 0;
  out.set(BASE.subarray(0, rootHead), 0);
  o = rootHead;
  for (let i = 0; i < m.deepen; i++, o += 8) {
    wr32(out, o, FDT_BEGIN_NODE);
    wr32(out, o + 4, 0x78000000); // "x\0\0\0"
  }
  for (let i = 0; i < m.widen; i++, o += 12) {
    wr32(out, o, FDT_BEGIN_NODE);
    wr32(out, o + 4, 0x77000000); // "w\0\0\0"
    wr32(out, o + 8, FDT_END_NODE);
  }
  out.set(BASE.subarray(rootHead, rootTail), o);
  o += rootTail - rootHead;
  for (let i = 0; i < m.deepen; i++, o += 4) wr32(out, o, FDT_END_NODE);
  out.set(BASE.subarray(rootTail), o);
  wr32(out, 4, out.length); // totalsize
  wr32(out, 12, offStrings + extra);
  wr32(out, 36, sizeStruct + extra);
  const structWords = (sizeStruct + extra) / 4;
  for (const [i, v] of m.words) wr32(out, offStruct + 4 * Math.floor(i * structWords), v);
  return m.keep < 1 ? out.subarray(0, Math.floor(out.length * m.keep)) : out;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  deepen: fc.oneof(
    { weight: 2, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 80 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 20_000 }) },
  ),
  widen: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 2000 }) },
  ),
  words: fc.oneof(
    { weight: 2, arbitrary: fc.constant([] as Array<[number, number]>) },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.tuple(
          fc.double({ min: 0, max: 0.999, noNaN: true }),
          fc.oneof(fc.constantFrom(1, 2, 3, 4, 9), fc.integer({ min: 0, max: 0xffffffff })),
        ),
        { maxLength: 4 },
      ),
    },
  ),
  keep: fc.oneof(
    { weight: 4, arbitrary: fc.constant(1) },
    { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
  ),
});

/** Node count, greatest depth, and the paths of every 64th node and of the deepest: no recursion. */
function survey(t: DeviceTree) {
  let count = 0;
  let deepest = { n: t.root, depth: 0 };
  const paths: string[] = [];
  const stack = [deepest];
  while (stack.length > 0) {
    const e = stack.pop()!;
    if (count++ % 64 === 0) paths.push(e.n.path);
    if (e.depth > deepest.depth) deepest = e;
    for (const c of e.n.children) stack.push({ n: c, depth: e.depth + 1 });
  }
  paths.push(deepest.n.path);
  return { count, maxDepth: deepest.depth, paths };
}

describe('fuzz: mutated device trees', () => {
  it('the dtb reader gives a tree within FDT_MAX_DEPTH or an FdtError; trees write back equal', () => {
    fc.assert(
      fc.property(mutation, (m) => {
        const r = tryParseFdt(mutate(m)); // rethrows anything but FdtError
        if (!r.ok) {
          expect(r.error).toBeInstanceOf(FdtError);
          return;
        }
        const all = survey(r.tree);
        expect(all.maxDepth).toBeLessThan(MAX_NODE_DEPTH);
        for (const p of all.paths) expect(p.startsWith('/')).toBe(true);
        expect(survey(parseFdt(writeFdt(r.tree)))).toEqual(all);
      }),
      { numRuns: 200, seed: 0x20d7b },
    );
  });

  it('boot answers every mutated dtb with a report or a message (exit 0 or 1)', async () => {
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const io = fakeIo({ 'fuzz.dtb': mutate(m) });
        const rc = await main(['boot', 'fuzz.dtb', '--json'], io);
        const err = io.stderr.join('');
        expect([0, 1]).toContain(rc);
        if (rc === 1) expect(err).toMatch(/^iommu-lab boot: fuzz\.dtb: malformed dtb at offset/);
      }),
      { numRuns: 40, seed: 0xb007 },
    );
  });
});
