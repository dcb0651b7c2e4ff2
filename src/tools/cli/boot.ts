import { BOOT_USAGE, bootCommand as runBoot } from '../boot/index.ts';
import { attachOutputs, type MachineRun } from './run-machine.ts';
import type { Command } from './types.ts';

export const bootCommand: Command = {
  name: 'boot',
  summary: 'boot a device tree (dtb or dts; default: the embedded platform) and report probing',
  help: BOOT_USAGE,
  async run(args, opts, io) {
    let run: MachineRun | null = null;
    const rc = await runBoot(args, {
      out: io.out,
      err: io.err,
      readFile: io.readFile,
      json: opts.json,
      seed: opts.seed,
      // stdout carries the report; the machine's log goes to --log/--trace files only
      onMachine: (m) => {
        run = attachOutputs(m, { ...opts, json: false }, io, false);
      },
    });
    await (run as MachineRun | null)?.finish();
    return rc;
  },
};
