/**
 * A progress bar on stderr for work longer than a second, with the rate in
 * samples per second; silent when stderr is not a terminal (pipes, CI logs)
 * or when asked to be quiet.
 */
import type { SingleBar } from 'cli-progress';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

const SHOW_AFTER_MS = 1000;

export function progressBar(label: string, options: { quiet?: boolean } = {}): Progress {
  if (options.quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  const started = performance.now();
  // Loaded only where a bar can show (about 10 ms of every start otherwise); it is there long
  // before the first second has passed.
  let lib: typeof import('cli-progress') | undefined;
  void import('cli-progress').then((m) => (lib = m.default ?? m), () => undefined);
  let bar: SingleBar | undefined;
  const speed = (done: number) => Math.round(done / Math.max(1e-3, (performance.now() - started) / 1000));
  return {
    update(done, total) {
      if (!bar) {
        if (!lib || performance.now() - started < SHOW_AFTER_MS || done >= total) return;
        bar = new lib.SingleBar(
          {
            stream: process.stderr,
            format: `${label} [{bar}] {percentage}% | {value}/{total} samples | {speed} samples/s | {eta_formatted} left`,
            hideCursor: true,
          },
          lib.Presets.shades_classic,
        );
        bar.start(total, done, { speed: speed(done) });
      }
      bar.update(done, { speed: speed(done) });
    },
    stop() {
      bar?.stop();
    },
  };
}
