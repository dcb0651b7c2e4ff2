/**
 * Every sub-command, in the order `--help` lists them. An entry declares the command's options,
 * the global options that apply to it and its help; its implementation (the file next to this
 * one) is imported only when it runs, so `--help` and `--version` load nothing of the model.
 */

import type { Command } from './types.ts';

/** Largest `boot --timeout`, seconds: keeps virtual time well below 2^53 ns (about 104 days). */
export const MAX_BOOT_TIMEOUT_S = 1_000_000;

/** --sanitize for the commands that run a scenario (demo, run). */
const SANITIZE_OPTION: Command['options'][number] = {
  name: 'sanitize',
  type: 'string',
  value: 'MODE',
  optionalValue: 'report',
  choices: ['off', 'report', 'panic'],
  help: 'the DMA-isolation sanitizer (KASAN for device DMA): --sanitize or --sanitize=report prints its reports at the end, --sanitize=panic stops at the first; a report fails the run',
};

export const commands: readonly Command[] = [
  {
    name: 'demo',
    summary: 'run a bundled scenario (the default: the SMMUv3 stack on the virt board)',
    usage: ['demo [SCENARIO] [options]'],
    description: `Runs a scenario that comes with iommu-lab: 'iommu-lab demo NAME' is
'iommu-lab run' on the bundled module (same output, options and exit status).
The kernel log is printed as it happens, then PASS or FAIL and a summary. With
--json the output is one JSON object: the run's outcome, the scenario's results
under "result" and every trace event (virtual time in ns). The output depends
only on the scenario and the seed.`,
    helpDetails: async () => (await import('./demo.ts')).scenarioList(),
    failure: 'the scenario did not behave as designed',
    options: [SANITIZE_OPTION],
    globals: ['seed', 'json', 'trace', 'log'],
    maxArgs: 1,
    load: () => import('./demo.ts'),
  },
  {
    name: 'run',
    summary: 'run your own scenario file, once or over many seeds',
    usage: [
      'run FILE [--seed N] [options]',
      'run FILE --seeds LIST [--jobs N] [--shard I/N] [--out FILE.jsonl]',
    ],
    description: `Runs a scenario: a module (.mjs, .js or .ts) whose default export is
defineScenario({ name, ...lab options, async run(ctx) { ... } }). Each seed
boots a fresh lab; run(ctx) executes as a kernel task while virtual time moves.

One seed (--seed N, default 1): the kernel log is printed as it happens, then
PASS or FAIL with the failed assertion, the virtual time, the last kernel log
lines and the command that reproduces it.

A sweep (--seeds 1..1000, or 3,7,11): seeds run on worker threads, with a
progress line on stderr and a summary at the end (the first failing seeds and
how to reproduce each). A seed's result does not depend on --jobs or --shard.
--trace and --log record one run: rerun a seed of a sweep with --seed N.

A scenario that never ends fails instead of hanging: see the two limits below.
Durations take a unit: ns, us, ms or s (a bare number is seconds).`,
    helpDetails: async () =>
      `Injections for --inject (the driver forgets a step on purpose; see Injector in the API):\n  ${(await import('../../api/inject-names.ts')).INJECTIONS.join(', ')}`,
    failure: 'a seed failed, or FILE is not a usable scenario',
    options: [
      { name: 'seeds', type: 'string', value: 'LIST', help: 'a sweep: seeds 1..1000, 3,7,11 or 1..10,20' },
      {
        name: 'jobs',
        type: 'string',
        value: 'N',
        range: { min: 1, max: 256, integer: true },
        help: 'worker threads of a sweep (default: one per core)',
      },
      {
        name: 'shard',
        type: 'string',
        value: 'I/N',
        help: 'run every N-th seed of the list starting at the I-th; auto/N takes I from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)',
      },
      {
        name: 'out',
        type: 'string',
        value: 'FILE',
        output: true,
        help: "a sweep's results, one JSON line per seed (merge shards with 'iommu-lab report')",
      },
      {
        name: 'virtual-time-limit',
        type: 'string',
        value: 'D',
        help: 'virtual time a seed may take (default 60s)',
      },
      {
        name: 'wall-time-limit',
        type: 'string',
        value: 'D',
        help: 'wall-clock time a seed may take (default 120s)',
      },
      {
        name: 'inject',
        type: 'string',
        value: 'NAMES',
        help: 'turn injections on from boot in every seed, comma-separated (names below)',
      },
      { name: 'dry-run', type: 'boolean', help: 'check the arguments and print which seeds would run' },
      SANITIZE_OPTION,
    ],
    globals: ['seed', 'json', 'trace', 'log'],
    maxArgs: 1,
    load: () => import('./run.ts'),
  },
  {
    name: 'report',
    summary: 'merge and summarise the results files of a sweep (its shards)',
    usage: ['report FILE.jsonl... [--json]'],
    description: `Merges the results files of a sweep ('iommu-lab run FILE --seeds ... --out X'),
typically one per shard of a campaign, and prints one summary: passed, failed,
the seeds no shard produced, and the first failing seeds with the command that
reproduces each.`,
    failure: 'a seed failed or is missing, or a file is unreadable or not a results file',
    options: [],
    globals: ['json'],
    maxArgs: Number.POSITIVE_INFINITY,
    load: () => import('./report.ts'),
  },
  {
    name: 'boot',
    summary: 'boot a device tree (dtb or dts; default: the embedded platform) and report probing',
    usage: ['boot [FILE.dtb|FILE.dts] [options]'],
    description: `Boots the platform described by FILE (the embedded default platform without
one) as Linux would: every master the tree puts behind a modelled IOMMU gets a
DMA master model, generic client drivers bind what no modelled driver claims
(defer, IOMMU probe, group, default domain, DMA ops), and each master bound
through an IOMMU proves its DMA (map, device write and read, unmap, an access
that must fault). Reports IOMMUs, devices (state, reason, IOMMU, StreamIDs,
SMR masks, group, domain type, DMA ops, probe attempts, bind time, dmaCheck)
and iommu-maps. --check audits instead: dtc-style findings (file:line:column
for .dts), exit 1 on any error. The report goes to stdout; --trace and --log
hold the machine's events and the kernel's log.`,
    failure: 'the device tree could not be read or is malformed, or --check found an error',
    options: [
      {
        name: 'iommu-policy',
        type: 'string',
        value: 'P',
        choices: ['linux', 'strict', 'bypass'],
        default: 'linux',
        help: 'when a declared IOMMU never registers: linux (defer, then DMA without it; default), strict (defer, then fail the master), bypass (no wait)',
      },
      {
        name: 'disabled-iommu',
        type: 'string',
        value: 'P',
        choices: ['bypass', 'fail'],
        default: 'bypass',
        help: 'masters of a disabled IOMMU: bypass (default, as Linux) or fail',
      },
      {
        name: 'timeout',
        type: 'string',
        value: 'SECONDS',
        range: { min: 0, max: MAX_BOOT_TIMEOUT_S, special: [-1] },
        help: `deferred-probe timeout in virtual seconds, 0 to ${MAX_BOOT_TIMEOUT_S} (default 10; -1: never). The bound keeps virtual time below 2^53 ns (about 104 days), past which it would lose precision`,
      },
      {
        name: 'no-modules',
        type: 'boolean',
        help: 'built-in kernel: give up missing IOMMUs right after initcalls',
      },
      {
        name: 'sanitize',
        type: 'string',
        value: 'MODE',
        optionalValue: 'report',
        choices: ['off', 'report', 'panic'],
        help: 'the DMA-isolation sanitizer (KASAN for device DMA): --sanitize or --sanitize=report reports what DMA during boot did (a report makes the exit status 1)',
      },

      {
        name: 'defer-strategy',
        type: 'string',
        value: 'S',
        choices: ['targeted', 'retry-all'],
        default: 'targeted',
        help: "targeted (default) or retry-all (Linux's retry on every bind)",
      },
      { name: 'dmesg', type: 'boolean', help: "print the driver core's log before the report" },
      {
        name: 'check',
        type: 'boolean',
        help: 'audit DMA isolation instead of the report: dtc-style findings (file:line:column for .dts), exit 1 on any error',
      },
      {
        name: 'no-client-drivers',
        type: 'boolean',
        help: 'no generic client drivers: DMA masters the model has no driver for stay unbound',
      },
      {
        name: 'pci',
        type: 'string',
        value: 'BDF@HOST[,...]',
        help: 'PCI functions to put behind host bridges (e.g. 01:00.0@/pcie@40000000); default: one per iommu-map entry, or the functions the tree describes',
      },
    ],
    globals: ['seed', 'json', 'trace', 'log'],
    maxArgs: 1,
    load: () => import('./boot.ts'),
  },
  {
    name: 'decode',
    summary:
      'explain SMMUv3 STEs, CDs, commands, events, PRI entries, PTEs, SMMUv2 registers and kernel fault logs',
    usage: ['decode STRUCTURE WORD... [options]', 'decode --log FILE|-'],
    description: `Explains Arm SMMUv3 (IHI 0070) structures given as 64-bit hex words (0x-prefixed
or bare), word 0 first, as the Linux driver prints them. Missing trailing words
are taken as zero.

  decode event W0 W1 W2 W3   event queue record (F_TRANSLATION, C_BAD_STE, ...)
  decode ste W0 ... W7       Stream Table Entry
  decode cd W0 ... W7        Context Descriptor
  decode cmd W0 W1           command queue entry, and whether the SMMU takes it
  decode pri W0 W1           PRI queue entry (page request or stop marker)
  decode pte W --stage 1|2 --granule 4k|16k|64k --level N
                             VMSAv8-64 translation table descriptor
  decode --log FILE          find every "event 0xNN received:" record that the
                             arm-smmu-v3 driver (or Xen's SMMUv3 driver) printed
                             in a log and explain each in one line; FILE "-"
                             reads standard input. Timestamps, device names,
                             (XEN), syslog and journal columns are tolerated;
                             words printed as 0x%016llx or as 32-bit halves are
                             accepted. Also reported: queue overflows, "callbacks
                             suppressed", CMDQ errors (skipped command decoded),
                             CMD_SYNC timeouts, decoded-only events, records cut
                             short (partial). --dtb FILE names each StreamID's master.
                             The arm-smmu (SMMUv1/v2) driver's
                             "Unhandled context fault" lines (the v6.12+ print
                             and the older one-line forms), global faults and
                             "Blocked unknown Stream ID" lines are found too.
  decode fsr V | fsynr0 V | gfsr V | sctlr V | scr0 V | cbar V | smr V | s2cr V
         | id0 V | id1 V | id2 V | id7 V
                             an SMMUv1/v2 register, bits named as Linux names them

With --json the output is one JSON object (for --log, one array of records).`,
    failure: 'the log could not be read or held no event record or SMMUv3 driver report',
    options: [
      {
        name: 'log',
        type: 'string',
        value: 'FILE',
        help: 'explain the event records in a kernel log ("-": standard input)',
      },
      {
        name: 'dtb',
        type: 'string',
        value: 'FILE',
        help: "with --log: the board's device tree, to name the master of each StreamID",
      },
      {
        name: 'all',
        type: 'boolean',
        help: 'list every field, not only the non-zero ones (ste, cd, cmd, event, pri)',
      },
      {
        name: 'client',
        type: 'string',
        value: 'NAME',
        help: 'client name to show in the event line (default: the master named by the log\'s own decoded line, else "(unknown)")',
      },
      { name: 'stage', type: 'string', value: '1|2', help: 'pte: translation stage (default 1)' },
      { name: 'granule', type: 'string', value: 'G', help: 'pte: 4k, 16k or 64k (default 4k)' },
      { name: 'level', type: 'string', value: 'N', help: 'pte: lookup level, 0 to 3' },
    ],
    globals: ['json'],
    maxArgs: Number.POSITIVE_INFINITY,
    load: () => import('./decode.ts'),
  },
];
