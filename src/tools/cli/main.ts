/**
 * `iommu-lab` command line: global options, sub-command dispatch, help.
 * Every command is a function of its arguments and the seed; output goes through `io`
 * so tests can run commands in-process.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { commands } from './commands.ts';
import type { CliIo, GlobalOptions } from './types.ts';

const VERSION: string = (createRequire(import.meta.url)('../../../package.json') as { version: string })
  .version;

export const GLOBAL_HELP = `Global options:
  --seed N        seed of the run's PRNG (default 1); same seed, same output
  --json          machine-readable JSON on stdout instead of text
  --trace FILE    write a Chrome/Perfetto trace-event JSON file (open in ui.perfetto.dev)
  --log FILE      write the dmesg-style log of the run to FILE
  -h, --help      show help (also: iommu-lab help COMMAND)
  -V, --version   print the version`;

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `iommu-lab ${VERSION} — an executable model of the IOMMU stack (Arm SMMUv3, Linux IOMMU subsystem)

Usage: iommu-lab [global options] COMMAND [args]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

${GLOBAL_HELP}

Run 'iommu-lab COMMAND --help' for a command's own arguments.`;
}

/**
 * Split global options (allowed anywhere) from the command and its arguments. After the
 * command name, options the command declares in `ownOptions` are the command's.
 */
export function parseGlobal(argv: string[]): { opts: GlobalOptions; rest: string[] } | { error: string } {
  const opts: GlobalOptions = { seed: 1, json: false, trace: null, log: null, help: false, version: false };
  const rest: string[] = [];
  let own: readonly string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    // options a command defines itself belong to it once its name has been seen
    if (rest.length === 0 && !a.startsWith('-')) own = commands.find((c) => c.name === a)?.ownOptions ?? [];
    if (own.includes(flag)) {
      rest.push(a);
      continue;
    }
    switch (flag) {
      case '--seed': {
        const v = value();
        if (v === undefined || !/^(0x[0-9a-f]+|\d+)$/i.test(v) || Number(v) > 0xffffffff) {
          return { error: `--seed needs an integer between 0 and 4294967295 (got ${v ?? 'nothing'})` };
        }
        opts.seed = Number(v);
        break;
      }
      case '--json':
        opts.json = true;
        break;
      case '--trace':
      case '--log': {
        const v = value();
        if (v === undefined || v === '') return { error: `${flag} needs a file name` };
        if (flag === '--trace') opts.trace = v;
        else opts.log = v;
        break;
      }
      case '-h':
      case '--help':
        opts.help = true;
        break;
      case '-V':
      case '--version':
        opts.version = true;
        break;
      default:
        rest.push(a);
    }
  }
  return { opts, rest };
}

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
    writeFile: (p, data) => writeFile(p, data),
  };
}

/** Run the CLI; returns the process exit code. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const parsed = parseGlobal(argv);
  if ('error' in parsed) {
    io.err(`iommu-lab: ${parsed.error}\nTry 'iommu-lab --help'.`);
    return 2;
  }
  const { opts, rest } = parsed;
  if (opts.version) {
    io.out(VERSION);
    return 0;
  }
  let [name, ...args] = rest;
  if (name === 'help') {
    if (args[0] === undefined) {
      io.out(usage());
      return 0;
    }
    name = args[0];
    args = [];
    opts.help = true;
  }
  if (name === undefined) {
    if (opts.help) {
      io.out(usage());
      return 0;
    }
    io.err(`iommu-lab: no command given\n\n${usage()}`);
    return 2;
  }
  const cmd = commands.find((c) => c.name === name);
  if (cmd === undefined) {
    io.err(`iommu-lab: unknown command '${name}'. Commands: ${commands.map((c) => c.name).join(', ')}`);
    return 2;
  }
  if (opts.help) {
    io.out(`${cmd.help}\n\n${GLOBAL_HELP}`);
    return 0;
  }
  // output files are checked before the run, so a bad path costs nothing
  for (const [flag, path] of [
    ['--trace', opts.trace],
    ['--log', opts.log],
  ] as const) {
    if (path === null) continue;
    try {
      await io.writeFile(path, '');
    } catch (e) {
      io.err(`iommu-lab: ${flag}: cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    }
  }
  try {
    return await cmd.run(args, opts, io);
  } catch (e) {
    // A bug in iommu-lab itself, not in the user's input: say so plainly.
    io.err(`iommu-lab ${name}: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 70;
  }
}
