import type { DeferStrategy } from '../../kernel/base/core.ts';
import type { IommuGiveUp } from '../../kernel/of/of-iommu.ts';
import { bootCommand } from '../boot/index.ts';
import { attachOutputs, type MachineRun } from './run-machine.ts';
import type { RunContext } from './types.ts';

export async function run(ctx: RunContext): Promise<number> {
  const o = ctx.options;
  // the grammar checked the choices and the range (commands.ts)
  const timeout = o.timeout === undefined ? undefined : Number(o.timeout);
  let machine: MachineRun | null = null;
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
      out: ctx.io.out,
      err: ctx.io.err,
      readFile: ctx.io.readFile,
      json: ctx.global.json,
      seed: ctx.global.seed,
      // stdout carries the report; the machine's log goes to --log/--trace files only
      onMachine: (m) => {
        machine = attachOutputs(m, ctx, false);
      },
    },
  );
  (machine as MachineRun | null)?.finish();
  return rc;
}
