import { decodeCommand } from '../decode/index.ts';
import type { RunContext } from './types.ts';

export function run(ctx: RunContext): Promise<number> {
  const o = ctx.options;
  const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : null);
  return decodeCommand(
    {
      positional: ctx.args,
      json: ctx.global.json,
      all: o.all === true,
      client: str(o.client),
      stage: str(o.stage),
      granule: str(o.granule),
      level: str(o.level),
      log: str(o.log),
      dtb: str(o.dtb),
    },
    {
      out: ctx.io.out,
      err: ctx.io.err,
      readFile: async (p) => new TextDecoder().decode(await ctx.io.readFile(p)),
      readStdin: ctx.io.readStdin,
      readBytes: ctx.io.readFile,
    },
  );
}
