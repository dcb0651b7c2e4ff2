/**
 * `iommu-lab` command line: parse (grammar.ts, from the declarations in commands.ts), check the
 * output files, load the command's implementation, run it, write the output files it produced.
 * Output goes through `io` so tests can run commands in-process.
 *
 * Exit codes, the same for every command: 0 success, 1 the run failed or its input was bad,
 * 2 usage error, 70 internal error (a bug in iommu-lab).
 */

import { readFile } from 'node:fs/promises';
import { VERSION } from '../../version.ts';
import { commands } from './commands.ts';
import { UsageError } from './errors.ts';
import { parseCommandLine } from './grammar.ts';
import { commandHelp, globalHelp } from './help.ts';
import { checkWritable, replaceFile } from './output-file.ts';
import type { CliIo, RunContext } from './types.ts';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** EX_SOFTWARE of sysexits.h: an internal error, a bug in iommu-lab. */
export const EXIT_INTERNAL = 70;

export function defaultIo(): CliIo {
  // a reader that went away (`iommu-lab ... | head`) ends the output, not the program with a trace
  const quietOnEpipe = (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  };
  process.stdout.on('error', quietOnEpipe);
  process.stderr.on('error', quietOnEpipe);
  return {
    out: (s) => process.stdout.write(`${s}\n`),
    err: (s) => process.stderr.write(`${s}\n`),
    readFile: async (p) => new Uint8Array(await readFile(p)),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    writeFile: replaceFile,
    checkWritable,
  };
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Run the CLI; returns the process exit code. Never throws. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  let name = '';
  try {
    const line = parseCommandLine(argv, commands);
    if (line.kind === 'version') {
      io.out(VERSION);
      return EXIT_OK;
    }
    if (line.kind === 'help') {
      const c = line.command;
      io.out(
        c === null
          ? globalHelp(VERSION, commands)
          : commandHelp(c, c.helpDetails ? await c.helpDetails() : null),
      );
      return EXIT_OK;
    }
    const { command, global } = line;
    name = command.name;

    // Output files are checked before the run and touched only when written, after it.
    for (const [flag, path] of line.outputs) {
      try {
        await io.checkWritable?.(path);
      } catch (e) {
        io.err(`iommu-lab ${name}: ${flag}: cannot write ${path}: ${message(e)}`);
        return EXIT_FAILED;
      }
    }

    const produced = new Map<'trace' | 'log', () => string>();
    const ctx: RunContext = {
      args: line.args,
      options: line.options,
      global,
      io,
      output: (kind, text) => void produced.set(kind, text),
    };
    let rc = await (await command.load()).run(ctx);
    if (rc === EXIT_USAGE) return rc; // refused: no file is written
    if (rc !== EXIT_OK && rc !== EXIT_FAILED) throw new Error(`${name} returned exit code ${rc}`);

    for (const kind of ['trace', 'log'] as const) {
      const path = global[kind];
      if (path === null) continue;
      const text = produced.get(kind);
      if (text === undefined) {
        io.err(`iommu-lab ${name}: --${kind} ${path} not written: the run ended before it produced any`);
        continue;
      }
      try {
        await io.writeFile(path, text());
      } catch (e) {
        io.err(`iommu-lab ${name}: --${kind}: cannot write ${path}: ${message(e)}`);
        rc = EXIT_FAILED;
      }
    }
    return rc;
  } catch (e) {
    if (e instanceof UsageError) {
      const cmd = e.command ?? (name || undefined);
      io.err(`iommu-lab${cmd ? ` ${cmd}` : ''}: ${e.message}`);
      io.err(`Try 'iommu-lab ${cmd ? `${cmd} ` : ''}--help'.`);
      return EXIT_USAGE;
    }
    // a bug in iommu-lab itself, not in the user's input: say so plainly
    io.err(
      `iommu-lab${name ? ` ${name}` : ''}: internal error (a bug in iommu-lab; please report it): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
    );
    return EXIT_INTERNAL;
  }
}
