/**
 * Ends the run with one plain line, `tests: N passed, N failed[, N skipped]`,
 * the closing line CI logs and other tools read, next to vitest's own report.
 */
import type { Reporter, RunnerTask, RunnerTestFile } from 'vitest';

function count(tasks: readonly RunnerTask[], tally: { passed: number; failed: number; skipped: number }): void {
  for (const t of tasks) {
    if (t.type === 'suite') count(t.tasks, tally);
    else if (t.mode === 'skip' || t.mode === 'todo' || t.result?.state === 'skip') tally.skipped++;
    else if (t.result?.state === 'pass') tally.passed++;
    else tally.failed++;
  }
}

export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = [], errors: unknown[] = []): void {
    const tally = { passed: 0, failed: 0, skipped: 0 };
    count(files, tally);
    // A file that failed to load counts as a failure.
    tally.failed += files.filter((f) => f.result?.state === 'fail' && f.tasks.length === 0).length + errors.length;
    const skipped = tally.skipped ? `, ${tally.skipped} skipped` : '';
    process.stdout.write(`tests: ${tally.passed} passed, ${tally.failed} failed${skipped}\n`);
  }
}
