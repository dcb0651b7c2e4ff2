/**
 * The C reference in ../shared/perf-ref: bench.c, compiled once with gcc -O2 into a temporary
 * directory (never into ../shared), run as often as a benchmark needs for side-by-side rounds.
 * Unavailable (with the reason) when the source or gcc is missing; the benchmarks then skip
 * their C comparison with a message.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PERFREF_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'perf-ref');

export class PerfRefC {
  private dir = '';
  private exe = '';
  /** Why the reference is unavailable, or '' once built. */
  readonly error: string;

  constructor() {
    this.error = this.build();
  }

  private build(): string {
    const src = join(PERFREF_DIR, 'bench.c');
    if (!existsSync(src)) return `${src} not found`;
    this.dir = mkdtempSync(join(tmpdir(), 'iommu-lab-perfref-'));
    this.exe = join(this.dir, 'bench');
    try {
      execFileSync('gcc', ['-O2', '-o', this.exe, src], { stdio: 'pipe' });
    } catch (e) {
      return `gcc unavailable or failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
    }
    return '';
  }

  /** One run with bench.c's arguments (M RUN MEM_MB); its rows by name (value only), or null. */
  run(args: string[] = []): Map<string, number> | null {
    if (this.error) return null;
    const out = execFileSync(this.exe, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
    const rows = new Map<string, number>();
    for (const line of out.trim().split('\n')) {
      const [name, value] = line.split(' ');
      if (name !== undefined && value !== undefined && Number.isFinite(Number(value)))
        rows.set(name, Number(value));
    }
    return rows;
  }

  dispose(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = '';
  }
}
