import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORM_DTS } from '../../src/kernel/of/default-platform.ts';
import { parseDts } from '../../src/kernel/of/dts.ts';
import { FdtError, parseFdt, tryParseFdt, writeFdt } from '../../src/kernel/of/fdt.ts';
import { type DeviceTree, encodeCells } from '../../src/kernel/of/tree.ts';

const valid = writeFdt(parseDts(DEFAULT_PLATFORM_DTS));

function dump(t: DeviceTree): string[] {
  const out: string[] = [];
  for (const n of t.nodes()) {
    out.push(n.path);
    for (const [k, v] of n.properties) out.push(`  ${k}=${Buffer.from(v).toString('hex')}`);
  }
  return out;
}

function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off);
}

function patched(off: number, v: number, base = valid): Uint8Array {
  const b = base.slice();
  new DataView(b.buffer).setUint32(off, v >>> 0);
  return b;
}

function expectFdtError(b: Uint8Array, offset: number | null, re: RegExp): FdtError {
  const r = tryParseFdt(b);
  expect(r.ok).toBe(false);
  if (r.ok) throw new Error('unreachable');
  expect(r.error).toBeInstanceOf(FdtError);
  if (offset !== null) expect(r.error.offset).toBe(offset);
  expect(r.error.message).toMatch(re);
  expect(r.error.message).toMatch(/offset 0x[0-9a-f]+/);
  return r.error;
}

describe('FDT reader and writer', () => {
  it('round-trips the default platform: dts -> dtb -> tree -> dtb is byte-identical', () => {
    const t = parseFdt(valid);
    expect(writeFdt(t)).toEqual(valid);
    expect(dump(t)).toEqual(dump(parseDts(DEFAULT_PLATFORM_DTS)));
    const smmu = t.findByPath('/soc/iommu@9000000')!;
    expect(smmu.compatible).toEqual(['arm,smmu-v3']);
    expect(smmu.u32('#iommu-cells')).toBe(1);
    expect(smmu.strings('interrupt-names')).toEqual(['eventq', 'gerror', 'priq', 'cmdq-sync']);
    expect(smmu.unitAddress).toBe('9000000');
    expect(smmu.baseName).toBe('iommu');
    const gpu = t.findByPath('/soc/gpu@a000000')!;
    const iommus = gpu.u32Array('iommus')!;
    expect(t.findByPhandle(iommus[0]!)).toBe(smmu);
    expect(iommus[1]).toBe(0x100);
  });

  it('keeps the memory reservation block and boot cpuid', () => {
    const t = parseDts(
      '/dts-v1/;\n/memreserve/ 0x80000000 0x1000;\n/memreserve/ 0x100000000 0x2000;\n/ { };',
    );
    t.bootCpuidPhys = 3;
    const back = parseFdt(writeFdt(t));
    expect(back.memReserve).toEqual([
      { address: 0x80000000n, size: 0x1000n },
      { address: 0x100000000n, size: 0x2000n },
    ]);
    expect(back.bootCpuidPhys).toBe(3);
  });

  describe('malformed input: a FdtError naming the offset', () => {
    it('bad magic', () => expectFdtError(patched(0, 0xdeadbeef), 0, /bad magic 0xdeadbeef/));
    it('empty and tiny blobs', () => {
      expectFdtError(new Uint8Array(0), 0, /too short/);
      expectFdtError(valid.slice(0, 10), null, /truncated header/);
    });
    it('wrong version', () => {
      expectFdtError(patched(20, 15), 20, /unsupported version 15/);
      expectFdtError(patched(24, 18), 24, /last_comp_version 18/);
    });
    it('truncated blob (totalsize larger than the data)', () => {
      expectFdtError(valid.slice(0, valid.length - 8), valid.length - 8, /truncated: totalsize/);
    });
    it('structure block offset or size out of range', () => {
      expectFdtError(patched(8, 0x7fff0000), 8, /structure offset/);
      expectFdtError(patched(36, 0x7fff0000), 8, /structure block .* runs past/);
      expectFdtError(patched(12, valid.length + 4), 12, /strings offset/);
      expectFdtError(patched(16, 3), 16, /memory reservation/);
    });
    it('property name offset outside the strings block', () => {
      // First FDT_PROP is right after the root's BEGIN_NODE (token + empty name padded = 8 bytes).
      const structOff = u32(valid, 8);
      expect(u32(valid, structOff + 8)).toBe(3);
      const e = expectFdtError(patched(structOff + 16, 0xffff), structOff + 16, /name offset 65535/);
      expect(e.detail).toMatch(/strings block/);
    });
    it('unterminated string in the strings block', () => {
      const b = valid.slice();
      const strOff = u32(b, 12);
      const strSize = u32(b, 32);
      b[strOff + strSize - 1] = 0x41; // last NUL of the strings block
      const r = tryParseFdt(b);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.detail).toMatch(/unterminated string/);
    });
    it('bad nesting: END_NODE without BEGIN_NODE, FDT_END with open nodes, unknown token', () => {
      const structOff = u32(valid, 8);
      expectFdtError(patched(structOff, 2), structOff, /FDT_END_NODE without/);
      // Replace the final FDT_END_NODE (before FDT_END) by a NOP: root stays open.
      const structEnd = structOff + u32(valid, 36);
      expect(u32(valid, structEnd - 4)).toBe(9);
      expectFdtError(patched(structEnd - 8, 4), structEnd - 4, /FDT_END with 1 node/);
      expectFdtError(patched(structOff, 0x77), structOff, /unknown structure token 0x77/);
    });
    it('property outside a node and property running past the block', () => {
      const structOff = u32(valid, 8);
      expectFdtError(patched(structOff, 3), structOff, /property outside any node/);
      expectFdtError(patched(structOff + 12, 0x100000), structOff + 8, /property length/);
    });
  });

  it('fuzz: random byte mutations and truncations never throw anything but FdtError', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        fc.option(fc.nat(valid.length), { nil: undefined }),
        fc.boolean(),
        (muts, cut, fixSize) => {
          let b = valid.slice();
          for (const [i, v] of muts) b[i] = v;
          if (cut !== undefined) {
            b = b.slice(0, cut);
            // Also try blobs whose header agrees with the truncated length, to reach deeper code.
            if (fixSize && b.length >= 8) new DataView(b.buffer).setUint32(4, b.length);
          }
          const r = tryParseFdt(b);
          if (!r.ok) {
            expect(r.error).toBeInstanceOf(FdtError);
            expect(Number.isInteger(r.error.offset) && r.error.offset >= 0).toBe(true);
            expect(r.error.offset).toBeLessThanOrEqual(valid.length);
          } else {
            expect(r.tree.root.name).toBe('');
          }
        },
      ),
      { numRuns: 3000, seed: 0x5eed },
    );
  });

  it('fuzz: mutations inside the structure block (token-aligned words)', () => {
    const structOff = u32(valid, 8);
    const words = u32(valid, 36) / 4;
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.nat(words - 1), fc.constantFrom(0, 1, 2, 3, 4, 9, 0xffffffff, 0x10, 0x7fffffff)),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        (muts) => {
          let b = valid;
          for (const [w, v] of muts) b = patched(structOff + w * 4, v, b);
          const r = tryParseFdt(b);
          if (!r.ok) expect(r.error).toBeInstanceOf(FdtError);
        },
      ),
      { numRuns: 2000, seed: 7 },
    );
  });

  it('helpers decode cells, strings and phandles', () => {
    const t = parseFdt(valid);
    const pcie = t.findByPath('/soc/pcie@40000000')!;
    expect(pcie.u32Array('iommu-map')!.length).toBe(4);
    expect(pcie.u32('iommu-map-mask')).toBe(0xffff);
    expect(pcie.addressCells).toBe(3);
    expect(t.findByPath('/soc/pcie')).toBe(pcie);
    expect(encodeCells([1, 0xffffffff])).toEqual(new Uint8Array([0, 0, 0, 1, 255, 255, 255, 255]));
  });
});
