// Per-process GPU page tables on the Adreno: two processes, one GPU address, two buffers.
//
// The GPU's SMMU (qcom,adreno-smmu on sdm845) gives the GPU's domain split page tables
// (IO_PGTABLE_QUIRK_ARM_TTBR1): the kernel's global buffers live in the TTBR1 half — GPU
// addresses with bit 48 set, which the kernel maps at their sign-extended IOVAs and the SMMU
// sign-extends (TCR2.SEP = UPSTREAM) — and each process gets its own TTBR0 table, installed
// with the adreno_smmu_priv's set_ttbr0_cfg while its jobs run (msm switches tables from the
// ring; the model's driver does it between jobs, with a TLBIASID of the context). Both
// processes map a buffer at the same address; each job reads its own. A job of one process at
// an address only the other maps faults — the crash state shows the faulting process's TTBR0
// and the context's ASID — and the kernel's global buffer is reachable from both.
//
//   npx iommu-lab run examples/adreno-per-process.mjs
import { defineScenario, GPU_OP } from 'iommu-lab';

const X = 0x1_0000_0000; // the same GPU address in both processes
const OUT = 0x1_0010_0000; // where each job writes what it read
const ok = (b) => {
  if (typeof b === 'number') throw new Error(`errno ${b}`);
  return b;
};

export default defineScenario({
  name: 'adreno-per-process',
  description: 'Adreno per-process GPU page tables (TTBR0) isolating two processes; kernel buffers in TTBR1',
  board: 'adreno',

  async run({ lab, expect, rng }) {
    const gpu = lab.adreno();
    expect(gpu.splitPagetables, 'split page tables on sdm845').toBe(true);

    const a = ok(gpu.createProcess());
    const b = ok(gpu.createProcess());
    const aX = ok(a.map(X, 4096));
    const bX = ok(b.map(X, 4096));
    const aOut = ok(a.map(OUT, 4096));
    const bOut = ok(b.map(OUT, 4096));
    const secretA = rng.int(1, 0x7fff_ffff);
    const secretB = secretA ^ 0x5a5a_5a5a;
    aX.fill32(secretA);
    bX.fill32(secretB);

    const copy = (src) => [{ op: GPU_OP.COPY, a: src, b: OUT, len: 4096 }];
    expect(await a.submit(copy(X)), "A's job").toEqual({ completed: true, faults: 0 });
    expect(await b.submit(copy(X)), "B's job").toEqual({ completed: true, faults: 0 });
    expect(aOut.readU32(0), 'A read its own buffer at X').toBe(secretA);
    expect(bOut.readU32(0), 'B read its own buffer at X').toBe(secretB);

    // the kernel's global buffer (TTBR1): one GPU address for both processes
    const shared = ok(gpu.allocGlobal(4096));
    expect(shared.va >= 2 ** 48 && shared.va < 2 ** 49, 'a 49-bit address with bit 48 set').toBe(true);
    shared.fill32(0x6106a1);
    expect(await a.submit(copy(shared.va)), 'A reads the global buffer').toEqual({
      completed: true,
      faults: 0,
    });
    expect(aOut.readU32(0)).toBe(0x6106a1);
    expect(await b.submit(copy(shared.va)), 'B reads the global buffer').toEqual({
      completed: true,
      faults: 0,
    });
    expect(bOut.readU32(0)).toBe(0x6106a1);

    // B's private buffer at Y: A's job there faults in A's own table
    const Y = 0x2_0000_0000;
    ok(b.map(Y, 4096)).fill32(secretB);
    const r = await a.submit(copy(Y));
    expect(r.faults > 0, "A's job at B's address faults").toBe(true);
    expect(aOut.readU32(0) !== secretB, "B's data did not reach A").toBe(true);
    await lab.sleep(1_000_000);
    const dump = gpu.readCrashState();
    expect(dump?.fault.iova, 'the crash state has the faulting address').toBe(Y);
    expect(dump.fault.info.ttbr0 % 2 ** 48, "TTBR0 was A's table").toBe(a.ttbr0);
    expect(Math.floor(dump.fault.info.ttbr0 / 2 ** 48), "with the GPU context's ASID").toBe(gpu.contextBank);
    expect(gpu.pagetableSwitches, 'A, B, A, B, A').toBe(5);
  },
});
