/**
 * Every sub-command, in the order `--help` lists them. An entry declares the command's options,
 * the global options that apply to it and its help; its implementation (the file next to this
 * one) is imported only when it runs, so `--help` and `--version` load nothing of the model.
 */

import type { Command } from './types.ts';

/** Largest `boot --timeout`, seconds: keeps virtual time well below 2^53 ns (about 104 days). */
export const MAX_BOOT_TIMEOUT_S = 1_000_000;

export const commands: readonly Command[] = [
  {
    name: 'demo',
    summary: 'run a built-in scenario on the simulated machine',
    usage: ['demo [SCENARIO] [options]'],
    description: `Runs a built-in scenario and prints its kernel-style log and a summary.
With --json the output is one JSON object: the scenario's results and every
trace event (virtual time in ns). The output depends only on the scenario and
the seed.`,
    helpDetails: async () => (await import('./demo.ts')).scenarioList(),
    failure: 'the scenario did not behave as designed',
    options: [],
    globals: ['seed', 'json', 'trace', 'log'],
    maxArgs: 1,
    load: () => import('./demo.ts'),
  },
  {
    name: 'boot',
    summary: 'boot a device tree (dtb or dts; default: the embedded platform) and report probing',
    usage: ['boot [FILE.dtb|FILE.dts] [options]'],
    description: `Boots the platform described by FILE (the embedded default platform without
one), probes every device and reports IOMMUs, devices (driver, state, deferral
reason, DMA ops, StreamIDs) and iommu-maps. The report goes to stdout; --trace
and --log hold the machine's events and the kernel's log.`,
    failure: 'the device tree could not be read or is malformed',
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
        name: 'defer-strategy',
        type: 'string',
        value: 'S',
        choices: ['targeted', 'retry-all'],
        default: 'targeted',
        help: "targeted (default) or retry-all (Linux's retry on every bind)",
      },
      { name: 'dmesg', type: 'boolean', help: "print the driver core's log before the report" },
    ],
    globals: ['seed', 'json', 'trace', 'log'],
    maxArgs: 1,
    load: () => import('./boot.ts'),
  },
  {
    name: 'decode',
    summary: 'explain SMMUv3 STEs, CDs, commands, events, PRI entries, PTEs and kernel fault logs',
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
                             accepted.

With --json the output is one JSON object (for --log, one array of records).`,
    failure: 'the log could not be read or held no complete event record',
    options: [
      {
        name: 'log',
        type: 'string',
        value: 'FILE',
        help: 'explain the event records in a kernel log ("-": standard input)',
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
