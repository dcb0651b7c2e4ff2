import { BOOT_USAGE, bootCommand as runBoot } from '../boot/index.ts';
import type { Command } from './types.ts';

export const bootCommand: Command = {
  name: 'boot',
  summary: 'boot a device tree (dtb or dts; default: the embedded platform) and report probing',
  help: BOOT_USAGE,
  run: (args, opts, io) =>
    runBoot(args, { out: io.out, err: io.err, readFile: io.readFile, json: opts.json }),
};
