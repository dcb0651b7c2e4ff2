/**
 * The shapes of the command line: what a command declares (its options, which global options
 * apply to it, how to load it) and what it gets when it runs.
 */

/** Where a command reads and writes; tests pass a fake one and run commands in-process. */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  readFile: (path: string) => Promise<Uint8Array>;
  readStdin: () => Promise<string>;
  /**
   * Replace the file at `path` with `data` in one step (the real one writes a temporary file in
   * the same folder and renames it), so a failed write never leaves half a file.
   */
  writeFile: (path: string, data: string) => Promise<void>;
  /**
   * Throw (with the reason) if `path` could not be written; never creates or changes anything.
   * Called for every output file before a command runs.
   */
  checkWritable?: (path: string) => Promise<void>;
}

/** Global options a command may accept; each command declares the ones that mean something to it. */
export type GlobalName = 'seed' | 'json' | 'trace' | 'log';

/** One option of the command line, as `node:util.parseArgs` takes it, plus its help. */
export interface OptionSpec {
  /** Long name without dashes: 'timeout' is --timeout. */
  name: string;
  type: 'boolean' | 'string';
  /** One letter: 'h' is -h. */
  short?: string;
  /** The value's placeholder in help (string options): FILE, N, SECONDS. */
  value?: string;
  /** The only values accepted (string options); anything else is a usage error. */
  choices?: readonly string[];
  /**
   * A number option: the value must be a plain decimal number from `min` to `max` (an integer if
   * `integer`), or one of `special`; anything else is a usage error.
   */
  range?: { min: number; max: number; integer?: boolean; special?: readonly number[] };
  /**
   * The value of `--name` given alone (a string option whose value is optional: `--sanitize`
   * means `--sanitize=report`; another value must follow '=').
   */
  optionalValue?: string;
  /** Value when the option is not given (a boolean option defaults to false). */
  default?: string;
  /** One line of help (wrapped at 80 columns). */
  help: string;
  /**
   * A file the command writes. It is checked before the command runs and, like --trace and
   * --log, must be written only through `io.writeFile` and only by a run that goes ahead.
   */
  output?: boolean;
}

/** Option values after parsing: booleans are true or false, strings are undefined when not given. */
export type OptionValues = Readonly<Record<string, string | boolean | undefined>>;

/** The global options, parsed. Those a command does not declare keep these defaults. */
export interface GlobalOptions {
  /** --seed N (default 1) */
  seed: number;
  json: boolean;
  /** --trace FILE */
  trace: string | null;
  /** --log FILE */
  log: string | null;
}

/** What a command's `run` gets. */
export interface RunContext {
  /** Positional arguments after the command name. */
  args: string[];
  /** The command's own options, by name. */
  options: OptionValues;
  global: GlobalOptions;
  io: CliIo;
  /**
   * Hand over the contents of --trace or --log. The CLI writes the file after `run` returns 0
   * or 1, never on a usage error or an internal error; `text` is called only then.
   */
  output: (kind: 'trace' | 'log', text: () => string) => void;
}

/** A command's implementation, loaded only when the command runs (or its help asks for details). */
export interface CommandModule {
  /** Returns the exit code: 0 success, 1 the run failed or its input was bad, 2 usage error. */
  run: (ctx: RunContext) => Promise<number>;
}

/** One entry of commands.ts. Declarations import nothing of the model, so --help and --version are fast. */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage forms after `iommu-lab `, e.g. 'demo [SCENARIO] [options]'. */
  usage: readonly string[];
  /** What the command does; lines of at most 80 columns. */
  description: string;
  /** Details computed from the implementation (e.g. the list of scenarios), for COMMAND --help. */
  helpDetails?: () => Promise<string>;
  /** What exit status 1 means for this command. */
  failure: string;
  options: readonly OptionSpec[];
  /** The global options that mean something to this command; the others are refused. */
  globals: readonly GlobalName[];
  /** How many positional arguments it takes at most. */
  maxArgs: number;
  load: () => Promise<CommandModule>;
}
