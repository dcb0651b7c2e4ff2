/**
 * Per-process GPU page tables through the public API (lab.adreno().createProcess()): two
 * processes' buffers at the same GPU address, isolated by their own TTBR0 tables; a fault in
 * the other process's range with the process's TTBR0 and the context's ASID in the fault info;
 * the kernel's global (TTBR1) buffers reachable from both; msm8996, which cannot split.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AdrenoBuffer, type AdrenoProcess, boot, GPU_OP, LabError } from '../../src/index.ts';

/** The same GPU address in both processes. */
const X = 0x1_0000_0000;
/** Where each process's job writes what it read. */
const OUT = 0x1_0010_0000;

function buf(b: AdrenoBuffer | number): AdrenoBuffer {
  if (typeof b === 'number') throw new Error(`map failed: ${b}`);
  return b;
}

function proc(p: AdrenoProcess | number): AdrenoProcess {
  if (typeof p === 'number') throw new Error(`createProcess failed: ${p}`);
  return p;
}

const copy = (a: number, b: number, len = 4096) => ({ op: GPU_OP.COPY, a, b, len });

async function twoProcesses(seed: number) {
  const lab = await boot({ board: 'adreno', seed });
  const gpu = lab.adreno();
  const A = proc(gpu.createProcess());
  const B = proc(gpu.createProcess());
  const ax = buf(A.map(X, 4096));
  const bx = buf(B.map(X, 4096));
  const aout = buf(A.map(OUT, 4096));
  const bout = buf(B.map(OUT, 4096));
  ax.fill32(0xaaaa_0001);
  bx.fill32(0xbbbb_0002);
  return { lab, gpu, A, B, ax, bx, aout, bout };
}

describe('Adreno per-process page tables (set_ttbr0_cfg)', () => {
  it("(a) each process's job reads its own buffer at the same GPU address", async () => {
    const { gpu, A, B, aout, bout } = await twoProcesses(1);
    expect(gpu.splitPagetables).toBe(true);
    expect(A.ttbr0).not.toBe(B.ttbr0);
    expect(await A.submit([copy(X, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(A.current).toBe(true);
    expect(await B.submit([copy(X, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(B.current && !A.current).toBe(true);
    expect(aout.readU32(0)).toBe(0xaaaa_0001);
    expect(bout.readU32(4092)).toBe(0xbbbb_0002);
    // back to A: the TLB was flushed at the switch, so A does not see B's cached translation
    aout.fill32(0);
    expect(await A.submit([copy(X, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(aout.readU32(0)).toBe(0xaaaa_0001);
    expect(gpu.pagetableSwitches).toBe(3);
  });

  it("(b) with B switched out, A's job at B's address faults: TTBR0 is A's table, ASID the context's", async () => {
    const { lab, gpu, A, B, aout } = await twoProcesses(2);
    const Y = 0x2_0000_0000; // only B maps it
    const by = buf(B.map(Y, 4096));
    by.fill32(0x5ec2e7);
    expect(await B.submit([copy(Y, OUT)])).toEqual({ completed: true, faults: 0 });
    aout.fill32(0x1111_1111);
    const r = await A.submit([copy(Y, OUT)]);
    expect(r.completed).toBe(true);
    expect(r.faults).toBeGreaterThan(0);
    // nothing of B's reached A (the terminated reads gave the GPU no data of B's)
    for (let o = 0; o < 4096; o += 4) expect(aout.readU32(o)).not.toBe(0x5ec2e7);
    await lab.sleep(1_000_000);
    const dump = gpu.readCrashState();
    expect(dump).not.toBeNull();
    expect(dump!.fault.iova).toBe(Y);
    expect(dump!.fault.type).toBe('TRANSLATION');
    const ttbr0 = dump!.fault.info.ttbr0;
    expect(ttbr0 % 2 ** 48).toBe(A.ttbr0);
    expect(Math.floor(ttbr0 / 2 ** 48)).toBe(gpu.contextBank); // the context's ASID
    expect(lab.smmuV2().contextBank(gpu.contextBank).far).toBe(Y);
    // and with no process table at all (B destroyed after being current), B's address faults too
    await B.submit([]);
    await B.destroy();
    expect(B.current).toBe(false);
    const before = gpu.hardwareFaultCount;
    gpu.submit(copy(Y, gpu.kernelVa(0x2000_0000)));
    expect(await gpu.fenceWait(100_000_000)).toBe(true);
    expect(gpu.hardwareFaultCount).toBeGreaterThan(before);
  });

  it("(c) the kernel's global buffers (TTBR1) are reachable from every process", async () => {
    const { lab, gpu, A, B, aout, bout } = await twoProcesses(3);
    const g = gpu.allocGlobal(8192);
    if (typeof g === 'number') throw new Error(`allocGlobal: ${g}`);
    expect(g.va).toBeGreaterThanOrEqual(2 ** 48); // the 49-bit form, bit 48 set
    expect(g.va).toBeLessThan(2 ** 49);
    expect(gpu.toIova(g.va)).toBe(g.va - 2 ** 49); // the kernel maps it sign-extended
    expect(lab.iommu.iovaToPhys(gpu.domain, gpu.toIova(g.va))).toBe(g.pa);
    g.fill32(0x6106a1);
    expect(await A.submit([copy(g.va, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(await B.submit([copy(g.va + 4096, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(aout.readU32(0)).toBe(0x6106a1);
    expect(bout.readU32(0)).toBe(0x6106a1);
    // a fault in the kernel's half: FAR reads as the sign-extended (negative) address
    const hole = gpu.kernelVa(0x3000_0000);
    expect((await A.submit([copy(hole, OUT, 4)])).faults).toBe(1);
    expect(lab.smmuV2().contextBank(gpu.contextBank).far).toBe(gpu.toIova(hole));
    expect(gpu.toIova(hole)).toBe(-(2 ** 48) + 0x3000_0000);
    await lab.sleep(600_000_000); // v6.16: stall back on at the next submit after 500 ms
    // and a process's job can write a global buffer
    expect(await A.submit([{ op: GPU_OP.FILL, a: g.va, value: 0xa, len: 4096 }])).toEqual({
      completed: true,
      faults: 0,
    });
    expect(g.readU32(0)).toBe(0xa);
  });

  it('no table switch under a running job: a job that missed its fence keeps the GPU busy', async () => {
    const { lab, A, B, bout } = await twoProcesses(7);
    buf(A.map(0x3_0000_0000, 1 << 20));
    buf(A.map(0x3_1000_0000, 1 << 20));
    // a long copy with a fence deadline it cannot meet
    const slow = await A.submit([copy(0x3_0000_0000, 0x3_1000_0000, 1 << 20)], 1_000);
    expect(slow.completed).toBe(false);
    expect(await B.submit([copy(X, OUT)])).toEqual({ completed: false, faults: 0 });
    expect(A.current).toBe(true);
    await lab.sleep(100_000_000);
    expect(await B.submit([copy(X, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(bout.readU32(0)).toBe(0xbbbb_0002);
  });

  it('unmapping from a process flushes the context: the GPU then faults there', async () => {
    const { A, ax } = await twoProcesses(4);
    expect(await A.submit([copy(X, OUT)])).toEqual({ completed: true, faults: 0 });
    expect(await A.unmap(ax)).toBe(4096);
    expect(A.iovaToPhys(X)).toBe(0);
    const r = await A.submit([copy(X, OUT)]);
    expect(r.faults).toBeGreaterThan(0);
  });

  it('(d) msm8996: no split page tables, set_ttbr0_cfg -EINVAL, the one global table', async () => {
    const lab = await boot({ board: 'adreno', seed: 5, adreno: { gpuSmmu: 'msm8996' } });
    const gpu = lab.adreno();
    expect(gpu.splitPagetables).toBe(false);
    expect(gpu.createProcess()).toBe(-22);
    // the GPU's domain is an ordinary lower-half one: global buffers below 2^48
    const g = gpu.allocGlobal(4096);
    if (typeof g === 'number') throw new Error(`allocGlobal: ${g}`);
    expect(g.va).toBeLessThan(2 ** 48);
    expect(gpu.toIova(g.va)).toBe(g.va);
    g.fill32(0x8996);
    gpu.submit({ op: GPU_OP.COPY, a: g.va, b: g.va + 2048, len: 4 });
    expect(await gpu.fenceWait()).toBe(true);
    expect(g.readU32(2048)).toBe(0x8996);
  });

  it('bad calls: LabErrors for bad arguments, errnos from the kernel', async () => {
    const { A, B } = await twoProcesses(6);
    expect(A.map(X, 4096)).toBe(-17); // EEXIST
    expect(A.map(X + 1, 4096)).toBe(-22);
    expect(A.map(2 ** 48, 4096)).toBe(-34); // the kernel's half: ERANGE
    expect(A.map(-4096, 4096)).toBe(-34);
    expect(() => A.map(0.5, 4096)).toThrow(LabError);
    expect(() => A.map(0, 0)).toThrow(LabError);
    await expect(boot({ board: 'adreno', adreno: { gpuSmmu: 'x' as never } })).rejects.toThrow(LabError);
    await B.destroy();
    expect(B.map(0x3_0000_0000, 4096)).toBe(-22);
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: -(2 ** 50), max: 2 ** 50 }), fc.constant(0x5_0000_0000)),
        (va) => {
          const r = A.map(va, 4096);
          expect(typeof r === 'number' ? r < 0 : r.va === va).toBe(true);
        },
      ),
      { numRuns: 100, seed: 21 },
    );
  });

  it("fuzz: random process calls give results, errnos or LabErrors; one process never reads another's data", async () => {
    const lab = await boot({ board: 'adreno', seed: 8 });
    const gpu = lab.adreno();
    const vaArb = fc.oneof(
      fc.constantFrom(X, OUT, 0x2_0000_0000, 2 ** 48, 0),
      fc.integer({ min: -(2 ** 49), max: 2 ** 49 }),
      fc.double(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              k: fc.constant('map' as const),
              p: fc.nat(2),
              va: vaArb,
              size: fc.integer({ min: -1, max: 3 * 4096 }),
            }),
            fc.record({ k: fc.constant('unmap' as const), p: fc.nat(2), i: fc.nat(4) }),
            fc.record({
              k: fc.constant('submit' as const),
              p: fc.nat(2),
              src: vaArb,
              len: fc.integer({ min: 0, max: 8192 }),
            }),
            fc.record({
              k: fc.constant('global' as const),
              p: fc.nat(2),
              size: fc.integer({ min: -1, max: 3 * 4096 }),
            }),
            fc.record({ k: fc.constant('destroy' as const), p: fc.nat(2) }),
          ),
          { minLength: 3, maxLength: 10 },
        ),
        async (calls) => {
          const ps = [proc(gpu.createProcess()), proc(gpu.createProcess()), proc(gpu.createProcess())];
          const bufs: AdrenoBuffer[][] = [[], [], []];
          // each process's private pattern, and an output buffer nobody else maps
          const outs = ps.map((p, i) => {
            const o = buf(p.map(0x7_0000_0000, 4096));
            const b = buf(p.map(0x7_0001_0000, 4096));
            b.fill32(0xc0de_0000 + i);
            return o;
          });
          for (const c of calls) {
            try {
              const p = ps[c.p % 3]!;
              if (c.k === 'map') {
                const r = p.map(c.va, c.size);
                if (typeof r === 'number') expect(r).toBeLessThan(0);
                else bufs[c.p % 3]!.push(r);
              } else if (c.k === 'unmap') {
                const b = bufs[c.p % 3]![c.i];
                if (b !== undefined) expect(await p.unmap(b)).toBeGreaterThanOrEqual(0);
              } else if (c.k === 'submit') {
                const r = await p.submit(
                  [copy(c.src, 0x7_0000_0000, c.len), copy(0x7_0001_0000, 0x7_0000_0000, 4)],
                  20_000_000,
                );
                expect(typeof r.completed).toBe('boolean');
              } else if (c.k === 'global') {
                const g = gpu.allocGlobal(c.size);
                expect(typeof g === 'number' ? g < 0 : g.va >= 2 ** 48).toBe(true);
              } else {
                await p.destroy();
              }
            } catch (e) {
              expect(e).toBeInstanceOf(LabError);
            }
          }
          // a process's output holds nothing of another process's private pattern
          outs.forEach((o, i) => {
            for (let off = 0; off < 4096; off += 4) {
              const v = o.readU32(off);
              if (v >>> 16 === 0xc0de) expect(v & 0xffff).toBe(i);
            }
          });
          for (const p of ps) await p.destroy();
        },
      ),
      { numRuns: 40, seed: 11 },
    );
    expect(lab.machine.bugs).toEqual([]);
  });
});
