import { bootCommand } from './boot.ts';
import { decodeCommand } from './decode.ts';
import { demoCommand } from './demo.ts';
import { reportCommand } from './report.ts';
import { runCommand } from './run.ts';
import type { Command } from './types.ts';

/** Every sub-command, in the order `--help` lists them. */
export const commands: Command[] = [demoCommand, runCommand, reportCommand, bootCommand, decodeCommand];
