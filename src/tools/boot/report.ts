// The boot report lives in the API (src/api/boot-report.ts) so that `lab.bootReport()` and the
// CLI print the same thing; this re-export keeps the tool's imports where they were.
export * from '../../api/boot-report.ts';
