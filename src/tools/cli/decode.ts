import { DECODE_HELP, decodeCommand as runDecode } from '../decode/index.ts';
import type { Command } from './types.ts';

export const decodeCommand: Command = {
  name: 'decode',
  summary: 'explain SMMUv3 STEs, CDs, commands, events, PRI entries, PTEs and kernel fault logs',
  help: DECODE_HELP,
  ownOptions: ['--log'],
  run: (args, opts, io) =>
    runDecode(args, {
      out: io.out,
      err: io.err,
      readFile: async (p) => new TextDecoder().decode(await io.readFile(p)),
      readStdin: io.readStdin,
      json: opts.json,
    }),
};
