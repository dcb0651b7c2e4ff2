// `iommu-lab boot [FILE.dtb|FILE.dts]`: boot a platform in the kernel model and
// report what probed, what deferred and why, and how each master does DMA.

import { type PciRequest, parseBdf } from '../../api/board.ts';
import { boardBootReport, bootBoard } from '../../api/board-boot.ts';
import { checkBoard, formatFinding } from '../../api/board-check.ts';
import { LabError } from '../../api/errors.ts';
import type { DeferStrategy } from '../../kernel/base/core.ts';
import { DEFAULT_PLATFORM_DTS } from '../../kernel/of/default-platform.ts';
import { DtsError, parseDts, parseDtsAsync } from '../../kernel/of/dts.ts';
import { FDT_MAGIC, FdtError, parseFdt } from '../../kernel/of/fdt.ts';
import { type IommuFallbackPolicy, type IommuGiveUp, LINUX_IOMMU_POLICY } from '../../kernel/of/of-iommu.ts';
import type { DeviceTree } from '../../kernel/of/tree.ts';
import type { Machine } from '../../platform/machine.ts';
import { formatDmesg } from '../../platform/trace.ts';
import { formatBootReport } from './report.ts';

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

/** What `iommu-lab boot` was asked (parsed by the CLI's grammar, src/tools/cli/commands.ts). */
export interface BootOptions {
  /** dtb or dts file; null: the embedded default platform */
  file: string | null;
  /** when a declared IOMMU never registers (no driver, or its probe failed) */
  iommuPolicy: IommuGiveUp;
  /** masters of a disabled IOMMU */
  disabledIommu: 'bypass' | 'fail';
  /** deferred-probe timeout, virtual ns; -1: never; undefined: the kernel's default (10 s) */
  timeoutNs?: number;
  /** false: a built-in kernel, missing IOMMUs are given up right after initcalls */
  modules: boolean;
  deferStrategy: DeferStrategy;
  /** print the driver core's log before the report */
  dmesg: boolean;
  /** register the generic client drivers (default true; --no-client-drivers) */
  clientDrivers?: boolean;
  /** PCI functions, as BDF@HOSTPATH (--pci) */
  pci?: string[];
  /** audit instead of the report: findings, exit 1 on any error (--check) */
  check?: boolean;
}

const utf8 = new TextDecoder('utf-8');

/** "BB:DD.F@/path/to/host" → a PCI request. */
function parsePciRequest(text: string): PciRequest {
  const at = text.indexOf('@');
  if (at < 0) throw new LabError(`--pci ${text}: expected BDF@HOSTPATH, e.g. 00:01.0@/pcie@40000000`);
  return { rid: parseBdf(text.slice(0, at)), host: text.slice(at + 1) };
}

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

export async function bootCommand(o: BootOptions, io: BootIo): Promise<number> {
  const file = o.file;
  const json = io.json;
  const policy: IommuFallbackPolicy = {
    ...LINUX_IOMMU_POLICY,
    noDriver: o.iommuPolicy,
    probeFailed: o.iommuPolicy,
    disabled: o.disabledIommu,
  };

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

  let pci: PciRequest[];
  try {
    pci = (o.pci ?? []).map(parsePciRequest);
  } catch (e) {
    io.err(`iommu-lab boot: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  const log: string[] = [];
  let booted: Awaited<ReturnType<typeof bootBoard>>;
  try {
    booted = await bootBoard(tree, {
      seed: io.seed ?? 1,
      policy,
      timeoutNs: o.timeoutNs,
      modules: o.modules,
      deferStrategy: o.deferStrategy,
      clientDrivers: o.clientDrivers ?? true,
      pci,
      onMachine: (m) => {
        // --dmesg: the machine's log, formatted as demo and run format it (formatDmesg)
        if (o.dmesg) m.trace.addSink({ write: (e) => e.level !== 'debug' && log.push(formatDmesg(e)) });
        io.onMachine?.(m);
      },
    });
  } catch (e) {
    if (e instanceof LabError) {
      io.err(`iommu-lab boot: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const report = boardBootReport(booted, file ?? '<default platform>', policy);
  if (o.check === true) {
    const findings = checkBoard(report, tree, booted.kernel.core);
    const errors = findings.filter((f) => f.severity === 'error').length;
    if (json) io.out(JSON.stringify({ source: report.source, findings }, null, 2));
    else {
      for (const f of findings) io.out(formatFinding(f, report.source));
      io.out(`${errors} error(s), ${findings.length - errors} warning(s)`);
    }
    return errors > 0 ? 1 : 0;
  }
  if (o.dmesg && !json) io.out(log.join('\n'));
  io.out(json ? JSON.stringify(report, null, 2) : formatBootReport(report));
  return 0;
}
