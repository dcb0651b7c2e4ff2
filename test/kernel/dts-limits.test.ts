/**
 * Device-tree input from outside with pathological shape: /include/ chains that multiply,
 * include loops, deep node nesting, deep expressions. Each gets a clear error naming the file and
 * line (DtsError) or the dtb offset (FdtError) — never a RangeError from a blown stack — and deep
 * inputs cost time linear in their size.
 */
import { describe, expect, it } from 'vitest';
import { DtsError, parseDts, parseDtsAsync } from '../../src/kernel/of/dts.ts';
import { FdtError, parseFdt, writeFdt } from '../../src/kernel/of/fdt.ts';
import { DeviceTree, DtNode, MAX_NODE_DEPTH } from '../../src/kernel/of/tree.ts';
import { main } from '../../src/tools/cli/main.ts';
import { fakeIo } from '../fixtures/cli-io.ts';

/** A reader over `files` that counts its calls and gives up (with a foreign error) after `cap`. */
function reader(files: Record<string, string>, cap = 100_000) {
  const r = {
    calls: 0,
    read: (p: string) => {
      if (++r.calls > cap) throw new Error(`reader called more than ${cap} times`);
      return files[p];
    },
  };
  return r;
}

function parseError(src: string, opts: Parameters<typeof parseDts>[1] = {}): DtsError {
  try {
    parseDts(src, opts);
  } catch (e) {
    if (e instanceof DtsError) return e;
    throw e;
  }
  throw new Error('parsed without error');
}

const nested = (depth: number) =>
  `/dts-v1/;\n/ {\n${'n {\n'.repeat(depth)}p = <1>;\n${'};\n'.repeat(depth)}};\n`;

describe('DTS /include/ limits', () => {
  it('a chain where each file includes the next twice is refused early, not expanded 2^n times', () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 25; i++) {
      files[`f${i}.dtsi`] =
        i === 24 ? 'leaf { };' : `/include/ "f${i + 1}.dtsi"\n/include/ "f${i + 1}.dtsi"\n`;
    }
    const r = reader(files);
    const e = parseError('/dts-v1/;\n/ {\n/include/ "f0.dtsi"\n};\n', {
      fileName: 'main.dts',
      readInclude: r.read,
    });
    expect(e.message).toMatch(/\/include\/.*(too many|more than)/);
    expect(e.file).toMatch(/f\d+\.dtsi/);
    expect(r.calls).toBeLessThan(5000);
  });

  it('an include loop names the chain', () => {
    const r = reader({ 'a.dtsi': '/include/ "b.dtsi"\n', 'b.dtsi': '/ { };\n/include/ "a.dtsi"\n' });
    const e = parseError('/dts-v1/;\n/include/ "a.dtsi"\n/ { };', {
      fileName: 'main.dts',
      readInclude: r.read,
    });
    expect(e.message).toContain('b.dtsi:2:');
    expect(e.message).toMatch(/include loop: main\.dts -> a\.dtsi -> b\.dtsi -> a\.dtsi/);
  });

  it('the same file included twice (not nested) is fine', () => {
    const r = reader({ 'p.dtsi': 'v = <7>;\n' });
    const t = parseDts('/dts-v1/;\n/ { a { /include/ "p.dtsi" }; b { /include/ "p.dtsi" }; };', {
      readInclude: r.read,
    });
    expect(t.findByPath('/a')!.u32('v')).toBe(7);
    expect(t.findByPath('/b')!.u32('v')).toBe(7);
  });
});

describe('DTS /include/ from an asynchronous reader', () => {
  it('1,000 files of 1 KB each: read once each, in as many rounds as include levels (not one per file)', async () => {
    const files: Record<string, string> = {};
    const list: string[] = [];
    for (let i = 0; i < 1000; i++) {
      files[`p${i}.dtsi`] = `n${i} { s = "${'x'.repeat(1000)}"; };\n`;
      list.push(`/include/ "p${i}.dtsi"`);
    }
    const reads = new Map<string, number>();
    const t = await parseDtsAsync(`/dts-v1/;\n/ {\n${list.join('\n')}\n};\n`, {
      fileName: 'main.dts',
      readFile: async (p) => {
        reads.set(p, (reads.get(p) ?? 0) + 1);
        return files[p];
      },
    });
    expect(t.root.children).toHaveLength(1000);
    expect(reads.size).toBe(1000);
    expect([...reads.values()].every((n) => n === 1)).toBe(true);
  });

  it('40 files each followed by a reference to a label it defines (a round per file): read', async () => {
    const files: Record<string, string> = {};
    let src = '/dts-v1/;\n/ { };\n';
    for (let i = 0; i < 40; i++) {
      files[`b${i}.dtsi`] = `/ { l${i}: n${i} { }; };\n`;
      src += `/include/ "b${i}.dtsi"\n&l${i} { v = <${i}>; };\n`;
    }
    const t = await parseDtsAsync(src, { fileName: 'main.dts', readFile: async (p) => files[p] });
    expect(t.findByPath('/n39')!.u32('v')).toBe(39);
  });
});

describe('DTS nesting limits', () => {
  it(`nodes nested ${MAX_NODE_DEPTH} deep are read; one more level is a DtsError naming the line`, () => {
    const ok = parseDts(nested(MAX_NODE_DEPTH - 1));
    let n = ok.root;
    for (let i = 0; i < MAX_NODE_DEPTH - 1; i++) n = n.children[0]!;
    expect(n.u32('p')).toBe(1);
    const e = parseError(nested(MAX_NODE_DEPTH));
    expect(e.line).toBe(MAX_NODE_DEPTH + 2);
    expect(e.message).toMatch(/nested more than \d+ levels deep/);
    // 4,000 levels: the same error, no RangeError
    expect(parseError(nested(4000)).line).toBe(MAX_NODE_DEPTH + 2);
  });

  it('2,000 nested parentheses and a deep ?: chain are DtsErrors naming the line', () => {
    const parens = `/dts-v1/;\n/ {\n  a = <${'('.repeat(2000)}1${')'.repeat(2000)}>;\n};\n`;
    const e = parseError(parens);
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/expression nested more than \d+ levels deep/);
    const ternary = `/dts-v1/;\n/ {\n  a = <(${'1 ? 1 : '.repeat(3000)}1)>;\n};\n`;
    expect(parseError(ternary).message).toMatch(/expression nested more than/);
  });

  it('16,000 unary operators are evaluated (linearly), like a short chain', () => {
    const t = parseDts(
      `/dts-v1/;\n/ {\n  a = <(${'-'.repeat(16_000)}5) (${'~'.repeat(15_999)}0) (${'!'.repeat(16_001)}0)>;\n};\n`,
    );
    expect(t.root.u32Array('a')).toEqual([5, 0xffffffff, 1]);
    const mixed = parseDts('/dts-v1/;\n/ { a = <(-~!0) (!-~3) (~-1)>; };');
    expect(mixed.root.u32Array('a')).toEqual([2, 0, 0]);
  });
});

describe('aliases', () => {
  it('an alias naming itself or another alias finds nothing (no recursion); a path alias works', () => {
    const t = parseDts('/dts-v1/;\n/ { aliases { a = "a"; b = "c"; c = "b"; s = "/soc"; }; soc { }; };');
    expect(t.findByPath('a')).toBeUndefined();
    expect(t.findByPath('b')).toBeUndefined();
    expect(t.findByPath('s')).toBe(t.findByPath('/soc'));
  });
});

describe('wide trees', () => {
  it('50,000 sibling nodes are read in time linear in their number (one index, not a scan per node)', () => {
    const body = Array.from({ length: 50_000 }, (_, i) => `n${i} { v = <${i}>; };`).join('\n');
    const t = parseDts(
      `/dts-v1/;\n/ {\n${body}\n};\n/ { n49999 { w = <1>; }; /delete-node/ n7; n7 { again; }; };\n`,
    );
    expect(t.root.children.length).toBe(50_000);
    expect(t.findByPath('/n49999')!.u32('w')).toBe(1); // merged into the existing node
    expect(t.findByPath('/n7')!.has('again')).toBe(true);
    expect(t.findByPath('/n7')!.has('v')).toBe(false); // the deleted node's properties are gone
    expect(t.findByPath('/n123')!.u32('v')).toBe(123);
  });
});

describe('deep trees', () => {
  function chain(depth: number): DeviceTree {
    const root = new DtNode('');
    let n = root;
    for (let i = 0; i < depth; i++) n = n.addChild(new DtNode(`n${i}`));
    return new DeviceTree(root);
  }

  it('DtNode.path of a node 30,000 levels deep (no recursion)', () => {
    const t = chain(30_000);
    let n = t.root;
    while (n.children.length > 0) n = n.children[0]!;
    expect(n.path.startsWith('/n0/n1/n2/')).toBe(true);
    expect(n.path.endsWith('/n29998/n29999')).toBe(true);
  });

  it('writeFdt of a 30,000-deep tree (no recursion); the reader refuses it at the first node too deep', () => {
    const blob = writeFdt(chain(30_000));
    let e: unknown;
    try {
      parseFdt(blob);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(FdtError);
    expect((e as FdtError).message).toMatch(/nested more than \d+ levels deep/);
    expect((e as FdtError).message).toContain(`/n0/n1/`);
    // a tree at the limit round-trips
    const t = parseFdt(writeFdt(chain(MAX_NODE_DEPTH - 1)));
    let n = t.root;
    let depth = 0;
    while (n.children.length > 0) {
      n = n.children[0]!;
      depth++;
    }
    expect(depth).toBe(MAX_NODE_DEPTH - 1);
  });
});

describe('iommu-lab boot with such inputs', () => {
  async function boot(file: string, files: Record<string, Uint8Array | string>) {
    const io = fakeIo(files);
    const rc = await main(['boot', file], io);
    return { rc, err: `${io.stderr.join('\n')}\n` };
  }

  it('a DTS nested 4,000 deep: exit 1 naming the file and line (not "cannot read")', async () => {
    const r = await boot('deep.dts', { 'deep.dts': nested(4000) });
    expect(r.rc).toBe(1);
    expect(r.err).toContain(`deep.dts:${MAX_NODE_DEPTH + 2}:`);
    expect(r.err).toMatch(/nested more than \d+ levels deep/);
    expect(r.err).not.toContain('cannot read');
  });

  it('a dtb nested 16,000 deep: exit 1 naming the offset and the node', async () => {
    const root = new DtNode('');
    let n = root;
    for (let i = 0; i < 16_000; i++) n = n.addChild(new DtNode('n'));
    const r = await boot('deep.dtb', { 'deep.dtb': writeFdt(new DeviceTree(root)) });
    expect(r.rc).toBe(1);
    expect(r.err).toMatch(/malformed dtb at offset 0x[0-9a-f]+ .*node \/n\/n\/.* is nested more than/);
  });

  it('an /include/ chain that doubles at every file: exit 1, promptly', async () => {
    const files: Record<string, string> = { 'main.dts': '/dts-v1/;\n/ {\n/include/ "f0.dtsi"\n};\n' };
    for (let i = 0; i < 25; i++)
      files[`f${i}.dtsi`] =
        i === 24 ? 'leaf { };' : `/include/ "f${i + 1}.dtsi"\n/include/ "f${i + 1}.dtsi"\n`;
    const r = await boot('main.dts', files);
    expect(r.rc).toBe(1);
    expect(r.err).toMatch(/more than \d+ \/include\/s in all/);
  });
});
