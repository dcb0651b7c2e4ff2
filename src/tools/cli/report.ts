import { formatSummary, parseResultsFile, type ResultsFile, summarize } from '../scenario/summary.ts';
import { UsageError } from './errors.ts';
import type { RunContext } from './types.ts';

export async function run(ctx: RunContext): Promise<number> {
  const { io } = ctx;
  if (ctx.args.length === 0)
    throw new UsageError("give one or more results files (from 'iommu-lab run ... --out FILE')");
  const files: ResultsFile[] = [];
  for (const p of ctx.args) {
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
  if (ctx.global.json) io.out(JSON.stringify(s, null, 2));
  else for (const l of formatSummary(s)) io.out(l);
  if (s.failed > 0 || s.missing > 0) {
    io.err(`iommu-lab report: ${s.failed} seed(s) failed${s.missing > 0 ? `, ${s.missing} missing` : ''}`);
  }
  return s.failed === 0 && s.missing === 0 ? 0 : 1;
}
