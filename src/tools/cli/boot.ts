import type { DeferStrategy } from '../../kernel/base/core.ts';
import type { IommuGiveUp } from '../../kernel/of/of-iommu.ts';
import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import { bootCommand } from '../boot/index.ts';
import { sanitizeOption } from './run.ts';
import { attachOutputs, type MachineRun } from './run-machine.ts';
import type { RunContext } from './types.ts';

export async function run(ctx: RunContext): Promise<number> {
  const o = ctx.options;
  // the grammar checked the choices and the range (commands.ts)
  const timeout = o.timeout === undefined ? undefined : Number(o.timeout);
  let machine: MachineRun | null = null;
  const sanitize = sanitizeOption(o);
  let sanitizer: DmaSanitizer | null = null;
  // in JSON mode the report is one object: the sanitizer's findings go into it
  let jsonText: string | null = null;
  const rc = await bootCommand(
    {
      file: ctx.args[0] ?? null,
      iommuPolicy: o['iommu-policy'] as IommuGiveUp,
      disabledIommu: o['disabled-iommu'] as 'bypass' | 'fail',
      timeoutNs: timeout === undefined ? undefined : timeout < 0 ? -1 : Math.round(timeout * 1e9),
      modules: o['no-modules'] !== true,
      deferStrategy: o['defer-strategy'] as DeferStrategy,
      dmesg: o.dmesg === true,
      clientDrivers: o['no-client-drivers'] !== true,
      check: o.check === true,
      pci: typeof o.pci === 'string' && o.pci !== '' ? o.pci.split(',') : [],
    },
    {
      out: (s) => {
        if (sanitizer !== null && ctx.global.json) jsonText = s;
        else ctx.io.out(s);
      },
      err: ctx.io.err,
      readFile: ctx.io.readFile,
      json: ctx.global.json,
      seed: ctx.global.seed,
      // stdout carries the report; the machine's log goes to --log/--trace files only
      onMachine: (m) => {
        machine = attachOutputs(m, ctx, false);
        // before the kernel boots, so that every allocation is tracked
        if (sanitize !== null) sanitizer = m.enableSanitizer(sanitize);
      },
    },
  );
  const san = sanitizer as DmaSanitizer | null;
  if (san !== null) {
    if (ctx.global.json) {
      const text = jsonText as string | null;
      if (text !== null) {
        let report: Record<string, unknown> | null = null;
        try {
          report = JSON.parse(text) as Record<string, unknown>;
        } catch {
          report = null;
        }
        ctx.io.out(
          report === null
            ? text
            : JSON.stringify({ ...report, sanitizer: { mode: san.mode, reports: san.reports } }, null, 2),
        );
      }
    } else {
      ctx.io.out('');
      ctx.io.out(
        san.reports.length === 0
          ? `DMA sanitizer (${san.mode}): no violations`
          : `DMA sanitizer (${san.mode}): ${san.reports.length} violation(s)\n${san.format()}`,
      );
    }
    if (rc === 0 && san.reports.length > 0) {
      (machine as MachineRun | null)?.finish();
      return 1;
    }
  }
  (machine as MachineRun | null)?.finish();
  return rc;
}
