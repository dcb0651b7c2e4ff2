export interface GlobalOptions {
  seed: number;
  json: boolean;
  trace: string | null;
  log: string | null;
  help: boolean;
  version: boolean;
}

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  readFile: (path: string) => Promise<Uint8Array>;
  readStdin: () => Promise<string>;
  writeFile: (path: string, data: string) => Promise<void>;
}

export interface Command {
  name: string;
  summary: string;
  /** Full help text (usage, arguments, examples). */
  help: string;
  /**
   * Options this command defines itself that share a name with a global option; after the
   * command name they belong to the command (e.g. `decode --log FILE` reads a kernel log).
   */
  ownOptions?: readonly string[];
  run: (args: string[], opts: GlobalOptions, io: CliIo) => Promise<number>;
}
