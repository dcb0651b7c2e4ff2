// `iommu-lab boot [FILE.dtb|FILE.dts] [--json] [options]`: boot a platform in the kernel model and
// report what probed, what deferred and why, and how each master does DMA.

import { boardForTree } from '../../api/board.ts';
import type { DeferStrategy } from '../../kernel/base/core.ts';
import { Kernel } from '../../kernel/init/kernel.ts';
import { DEFAULT_PLATFORM_DTS } from '../../kernel/of/default-platform.ts';
import { DtsError, parseDts, parseDtsAsync } from '../../kernel/of/dts.ts';
import { FDT_MAGIC, FdtError, parseFdt } from '../../kernel/of/fdt.ts';
import { type IommuFallbackPolicy, type IommuGiveUp, LINUX_IOMMU_POLICY } from '../../kernel/of/of-iommu.ts';
import type { DeviceTree } from '../../kernel/of/tree.ts';
import type { Machine } from '../../platform/machine.ts';
import { buildBootReport, formatBootReport } from './report.ts';

export interface BootIo {
  out: (s: string) => void;
  err: (s: string) => void;
  readFile: (path: string) => Promise<Uint8Array>;
  json: boolean;
  /** Seed of the machine (default 1). */
  seed?: number;
  /** Called with the machine before boot (the CLI attaches its --trace/--log outputs). */
  onMachine?: (m: Machine) => void;
}

export const BOOT_USAGE = `usage: iommu-lab boot [FILE.dtb|FILE.dts] [--json] [options]

Boots the platform described by FILE (the embedded default platform without one), probes every
device and reports IOMMUs, devices (driver, state, deferral reason, DMA ops, StreamIDs) and iommu-maps.

options:
  --json                      one JSON object on stdout
  --iommu-policy=P            when a declared IOMMU never registers: linux (defer, then DMA without
                              it; default), strict (defer, then fail the master), bypass (no wait)
  --disabled-iommu=P          masters of a disabled IOMMU: bypass (default, as Linux) or fail
  --timeout=SECONDS           deferred-probe timeout in virtual seconds (default 10; -1 = never)
  --no-modules                built-in kernel: give up missing IOMMUs right after initcalls
  --defer-strategy=S          targeted (default) or retry-all (Linux's retry on every bind)
  --dmesg                     print the driver core's log before the report

Global --seed, --trace FILE (Perfetto) and --log FILE (dmesg-style kernel log) apply too.`;

const utf8 = new TextDecoder('utf-8');

function looksLikeDtb(b: Uint8Array): boolean {
  return b.length >= 4 && ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 === FDT_MAGIC;
}

async function loadTree(file: string, io: BootIo): Promise<DeviceTree> {
  const bytes = await io.readFile(file);
  const isDts = /\.dtsi?$/i.test(file);
  if (!isDts && (looksLikeDtb(bytes) || /\.(dtb|dtbo)$/i.test(file))) return parseFdt(bytes);
  return parseDtsAsync(utf8.decode(bytes), {
    fileName: file,
    readFile: async (p) => utf8.decode(await io.readFile(p)),
  });
}

export async function bootCommand(argv: string[], io: BootIo): Promise<number> {
  let json = io.json;
  let file: string | null = null;
  const policy: IommuFallbackPolicy = { ...LINUX_IOMMU_POLICY };
  let timeoutNs: number | undefined;
  let modules = true;
  let strategy: DeferStrategy = 'targeted';
  let showLog = false;
  for (const a of argv) {
    const [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, ''];
    if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') {
      io.out(BOOT_USAGE);
      return 0;
    } else if (k === '--iommu-policy' && !['linux', 'strict', 'bypass'].includes(v)) {
      io.err(`iommu-lab boot: --iommu-policy takes linux, strict or bypass (got "${v}")`);
      return 2;
    } else if (k === '--iommu-policy') {
      policy.noDriver = v as IommuGiveUp;
      policy.probeFailed = v as IommuGiveUp;
    } else if (k === '--disabled-iommu' && (v === 'bypass' || v === 'fail')) policy.disabled = v;
    else if (k === '--timeout' && v !== '' && Number.isFinite(Number(v))) {
      timeoutNs = Number(v) < 0 ? -1 : Math.round(Number(v) * 1e9);
    } else if (a === '--no-modules') modules = false;
    else if (k === '--defer-strategy' && (v === 'targeted' || v === 'retry-all')) strategy = v;
    else if (a === '--dmesg') showLog = true;
    else if (a.startsWith('-')) {
      io.err(`iommu-lab boot: bad option "${a}"\n${BOOT_USAGE}`);
      return 2;
    } else if (file === null) file = a;
    else {
      io.err(`iommu-lab boot: only one device tree file may be given ("${file}", "${a}")`);
      return 2;
    }
  }

  let tree: DeviceTree;
  try {
    tree =
      file === null
        ? parseDts(DEFAULT_PLATFORM_DTS, { fileName: '<default platform>' })
        : await loadTree(file, io);
  } catch (e) {
    if (e instanceof FdtError || e instanceof DtsError) {
      io.err(`iommu-lab boot: ${file}: ${e.message}`);
      return 1;
    }
    const msg = e instanceof Error ? e.message : String(e);
    io.err(`iommu-lab boot: cannot read ${file}: ${msg}`);
    return 1;
  }

  const board = boardForTree(tree, io.seed ?? 1);
  io.onMachine?.(board.machine);
  const log: string[] = [];
  const k = new Kernel({
    machine: board.machine,
    tree,
    policy,
    deferredProbeTimeoutNs: timeoutNs,
    modules,
    deferStrategy: strategy,
    log: (l) => log.push(l),
  });
  await k.boot();
  const report = buildBootReport({
    core: k.core,
    tree,
    table: k.iommuTable,
    source: file ?? '<default platform>',
    policy,
  });
  if (showLog && !json) io.out(log.join('\n'));
  io.out(json ? JSON.stringify(report, null, 2) : formatBootReport(report));
  return 0;
}
