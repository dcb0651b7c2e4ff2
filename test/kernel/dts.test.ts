import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { DtsError, parseDts, parseDtsAsync } from '../../src/kernel/of/dts.ts';
import { parseFdt, writeFdt } from '../../src/kernel/of/fdt.ts';

function hexOf(v: Uint8Array | undefined): string {
  return v ? Buffer.from(v).toString('hex') : '<none>';
}

describe('DTS reader', () => {
  it('reads cells, /bits/, strings, bytestrings, mixed values, expressions and char literals', () => {
    const t = parseDts(`/dts-v1/;
      / {
        // line comment
        /* block
           comment */
        a = <1 0x10 010 (1 << 4) (3 * 4 + 1) ((-1)) (5 > 3 ? 7 : 9) 'A'>;
        b = /bits/ 8 <0x12 0x34>, /bits/ 16 <0xabcd>, /bits/ 64 <0x100000000>;
        c = "one", "two\\n", "q\\"\\x41\\101";
        d = [00 11 2233];
        e = "s", <2>, [ff];
        empty;
        lbl_prop: f = lbl_val: <lbl_cell: 1>;
      };`);
    const r = t.root;
    expect(r.u32Array('a')).toEqual([1, 16, 8, 16, 13, 0xffffffff, 7, 65]);
    expect(hexOf(r.prop('b'))).toBe('1234abcd0000000100000000');
    expect(r.strings('c')).toEqual(['one', 'two\n', 'q"AA']);
    expect(hexOf(r.prop('d'))).toBe('00112233');
    expect(hexOf(r.prop('e'))).toBe('7300' + '00000002' + 'ff');
    expect(r.prop('empty')!.length).toBe(0);
    expect(r.u32('f')).toBe(1);
  });

  it('labels, &label phandle cells, &{/path} references, path strings; phandles assigned like dtc', () => {
    const t = parseDts(`/dts-v1/;
      / {
        #address-cells = <1>; #size-cells = <1>;
        master@1000 { reg = <0x1000 0x100>; iommus = <&smmu 0x42>, <&{/iommu@2000} 7>; path = &smmu; };
        smmu: iommu@9000 { #iommu-cells = <1>; };
        iommu@2000 { #iommu-cells = <1>; phandle = <1>; };
      };`);
    const smmu = t.findByPath('/iommu@9000')!;
    const other = t.findByPath('/iommu@2000')!;
    expect(other.phandle).toBe(1);
    expect(smmu.phandle).toBe(2); // lowest unused
    expect(smmu.labels).toEqual(['smmu']);
    const m = t.findByPath('/master@1000')!;
    expect(m.u32Array('iommus')).toEqual([2, 0x42, 1, 7]);
    expect(m.string('path')).toBe('/iommu@9000');
  });

  it('merges repeated nodes, applies &label { } overrides, /delete-node/ and /delete-property/', () => {
    const t = parseDts(`/dts-v1/;
      / {
        soc { uart: serial@1 { status = "disabled"; clock-frequency = <1>; }; gone { }; gone2 { }; };
      };
      / { soc { extra = <5>; }; };
      &uart { status = "okay"; /delete-property/ clock-frequency; };
      / { soc { /delete-node/ gone; }; };
      /delete-node/ &{/soc/gone2};
    `);
    const soc = t.findByPath('/soc')!;
    expect(soc.u32('extra')).toBe(5);
    expect(soc.children.map((c) => c.name)).toEqual(['serial@1']);
    const uart = t.findByPath('/soc/serial@1')!;
    expect(uart.string('status')).toBe('okay');
    expect(uart.has('clock-frequency')).toBe(false);
  });

  it('/memreserve/ and a dts -> dtb -> tree round trip', () => {
    const t = parseDts('/dts-v1/;\n/memreserve/ 0x10000000 0x4000;\n/ { model = "x"; n { p = <1 2>; }; };');
    const back = parseFdt(writeFdt(t));
    expect(back.memReserve).toEqual([{ address: 0x10000000n, size: 0x4000n }]);
    expect(back.findByPath('/n')!.u32Array('p')).toEqual([1, 2]);
    expect(back.root.string('model')).toBe('x');
  });

  it('/include/ through an injectable reader (sync and async), relative to the including file', async () => {
    const files: Record<string, string> = {
      'dir/base.dtsi': '/ { base: base-node { v = <1>; }; }; /include/ "more.dtsi"',
      'dir/more.dtsi': '&base { w = <2>; };',
      'dir/props.dtsi': 'inc-prop = <3>;',
    };
    const src = '/dts-v1/;\n/include/ "base.dtsi"\n/ { top { /include/ "props.dtsi" }; };';
    const t = parseDts(src, { fileName: 'dir/main.dts', readInclude: (p) => files[p] });
    expect(t.findByPath('/base-node')!.u32('w')).toBe(2);
    expect(t.findByPath('/top')!.u32('inc-prop')).toBe(3);
    const reads: string[] = [];
    const t2 = await parseDtsAsync(src, {
      fileName: 'dir/main.dts',
      readFile: async (p) => {
        reads.push(p);
        return files[p];
      },
    });
    expect(t2.findByPath('/base-node')!.u32('w')).toBe(2);
    expect(reads.sort()).toEqual(['dir/base.dtsi', 'dir/more.dtsi', 'dir/props.dtsi']);
  });

  describe('errors name file, line, column and offset', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['missing /dts-v1/', '/ { };', /missing \/dts-v1\//],
      ['unknown label', '/dts-v1/;\n/ { a = <&nope>; };', /reference to "nope" not found/],
      ['unknown node ref', '/dts-v1/;\n&nope { };', /label or path "nope" not found/],
      ['unterminated node', '/dts-v1/;\n/ { a { };', /missing "}"/],
      ['unterminated string', '/dts-v1/;\n/ { a = "abc; };', /unterminated string/],
      ['unterminated cells', '/dts-v1/;\n/ { a = <1 2', /unterminated <cells>|expected an integer/],
      ['bad value', '/dts-v1/;\n/ { a = 5; };', /expected a property value/],
      ['bad bits', '/dts-v1/;\n/ { a = /bits/ 7 <1>; };', /\/bits\/ must be/],
      ['cpp', '/dts-v1/;\n#include "x.h"\n/ { };', /C preprocessor/],
      ['missing include', '/dts-v1/;\n/include/ "x.dtsi"', /no include reader|not found/],
      ['bad bytes', '/dts-v1/;\n/ { a = [0g]; };', /two hex digits/],
      ['duplicate label', '/dts-v1/;\n/ { l: a { }; l: b { }; };', /duplicate label "l"/],
      ['too big literal', '/dts-v1/;\n/ { a = <0x10000000000000000>; };', /does not fit in 64 bits/],
      ['unterminated comment', '/dts-v1/;\n/* x', /unterminated \/\* comment/],
      ['division by zero', '/dts-v1/;\n/ { a = <(1 / 0)>; };', /division by zero/],
      ['phandle in 8-bit cells', '/dts-v1/;\n/ { n: n { }; a = /bits/ 8 <&n>; };', /only allowed in 32-bit/],
    ];
    for (const [name, src, re] of cases) {
      it(name, () => {
        let err: unknown;
        try {
          parseDts(src, { fileName: 'x.dts' });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DtsError);
        const e = err as DtsError;
        expect(e.message).toMatch(re);
        expect(e.message).toMatch(/^x\.dts:\d+:\d+ \(offset \d+\)/);
        expect(e.offset).toBeGreaterThanOrEqual(0);
        expect(e.offset).toBeLessThanOrEqual(src.length);
      });
    }
    it('points at the right line and column', () => {
      try {
        parseDts('/dts-v1/;\n/ {\n  a = <1>;\n  b = <&missing>;\n};', { fileName: 'f.dts' });
        expect.unreachable();
      } catch (e) {
        expect((e as DtsError).line).toBe(4);
        expect((e as DtsError).column).toBe(8);
      }
    });
  });

  it('fuzz: truncated or mutated sources give a tree or a DtsError, nothing else', () => {
    const src = DEFAULT_PLATFORM_DTS;
    const alphabet = [
      '{',
      '}',
      ';',
      '<',
      '>',
      '"',
      '&',
      '/',
      '=',
      ',',
      ':',
      '(',
      ')',
      '[',
      ']',
      'x',
      '0',
      ' ',
      '\n',
      '#',
    ];
    fc.assert(
      fc.property(
        fc.nat(src.length),
        fc.array(fc.tuple(fc.nat(src.length - 1), fc.constantFrom(...alphabet)), { maxLength: 4 }),
        (cut, muts) => {
          const chars = src.slice(0, cut).split('');
          for (const [i, c] of muts) if (i < chars.length) chars[i] = c;
          try {
            parseDts(chars.join(''));
          } catch (e) {
            expect(e).toBeInstanceOf(DtsError);
          }
        },
      ),
      { numRuns: 1500, seed: 11 },
    );
  });
});

describe('preprocessed DTS: cpp line markers (issue 22)', () => {
  // what `cpp -nostdinc -undef -x assembler-with-cpp board.dts` leaves for dtc
  const pp = [
    '# 1 "board.dts"',
    '# 1 "<built-in>"',
    '# 1 "<command-line>"',
    '# 1 "board.dts"',
    '/dts-v1/;',
    '# 1 "soc.dtsi" 1',
    '/ {',
    '\tsoc {',
    '\t\tcompatible = "simple-bus";',
    '\t};',
    '};',
    '# 3 "board.dts" 2',
    '/ {',
    '\tmodel = "m";',
    '};',
  ].join('\n');

  it('accepts the markers; node and property positions point into the original files', () => {
    const t = parseDts(pp, { fileName: 'board.pp' });
    expect(t.root.string('model')).toBe('m');
    const soc = t.findByPath('/soc')!;
    expect(soc.srcPos).toEqual({ file: 'soc.dtsi', line: 2, column: 2 });
    expect(soc.propPos?.get('compatible')).toEqual({ file: 'soc.dtsi', line: 3, column: 3 });
    expect(t.root.propPos?.get('model')).toEqual({ file: 'board.dts', line: 4, column: 2 });
  });

  it('errors name the original file and line', () => {
    const bad = pp.replace('\tmodel = "m";', '\tmodel = <&nowhere>;');
    expect(() => parseDts(bad, { fileName: 'board.pp' })).toThrow(
      /^board\.dts:4:\d+ .*reference to "nowhere" not found/,
    );
    const syntax = pp.replace('\t\tcompatible = "simple-bus";', '\t\tcompatible = ;');
    expect(() => parseDts(syntax, { fileName: 'board.pp' })).toThrow(/^soc\.dtsi:3:\d+ /);
  });

  it('an unmarked file keeps plain positions; #include is still refused with a hint', () => {
    const t = parseDts('/dts-v1/;\n/ {\n\tx = <1>;\n};\n', { fileName: 'a.dts' });
    expect(t.root.propPos?.get('x')).toEqual({ file: 'a.dts', line: 3, column: 2 });
    expect(() => parseDts('/dts-v1/;\n#include "x.dtsi"\n/ { };\n')).toThrow(
      /C preprocessor directive: run cpp/,
    );
  });
});
