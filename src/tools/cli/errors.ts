/** A command line that cannot run as given: the CLI prints the message and exits with 2. */
export class UsageError extends Error {
  /** The command whose line it is, once known (its help is then the one to read). */
  command: string | undefined;
}
