import { parseArgs } from 'node:util';
import { formatSummary, parseResultsFile, type ResultsFile, summarize } from '../scenario/summary.ts';
import type { Command } from './types.ts';

export const REPORT_HELP = `Usage: iommu-lab report FILE.jsonl... [--json]

Merges the results files of a sweep ('iommu-lab run FILE --seeds ... --out X')
- typically one per shard of a campaign - and prints one summary: passed, failed,
seeds no shard produced, and the first failing seeds with the command that
reproduces each.

Exit status: 0 every seed of the campaign passed, 1 a seed failed or is missing
or a file is unreadable, 2 usage.`;

export const reportCommand: Command = {
  name: 'report',
  summary: 'merge and summarise the results files of a sweep (its shards)',
  help: REPORT_HELP,
  async run(args, opts, io) {
    let positionals: string[];
    try {
      positionals = parseArgs({ args, allowPositionals: true, strict: true, options: {} }).positionals;
    } catch (e) {
      io.err(`iommu-lab report: ${e instanceof Error ? e.message : String(e)}`);
      return 2;
    }
    if (positionals.length === 0) {
      io.err("iommu-lab report: give one or more results files (from 'iommu-lab run ... --out FILE')");
      return 2;
    }
    const files: ResultsFile[] = [];
    for (const p of positionals) {
      let text: string;
      try {
        text = new TextDecoder().decode(await io.readFile(p));
      } catch (e) {
        io.err(`iommu-lab report: cannot read ${p}: ${e instanceof Error ? e.message : String(e)}`);
        return 1;
      }
      try {
        files.push(parseResultsFile(text, p));
      } catch (e) {
        io.err(`iommu-lab report: ${e instanceof Error ? e.message : String(e)}`);
        return 1;
      }
    }
    const names = new Set(files.map((f) => `${f.header.scenario} (${f.header.seeds})`));
    if (names.size > 1) {
      io.err(`iommu-lab report: the files are of different campaigns: ${[...names].join(', ')}`);
      return 1;
    }
    const s = summarize(files);
    if (opts.json) io.out(JSON.stringify(s, null, 2));
    else for (const l of formatSummary(s)) io.out(l);
    return s.failed === 0 && s.missing === 0 ? 0 : 1;
  },
};
