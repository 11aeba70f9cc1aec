import type { LabelTime } from '../gpu/timing.js';

/**
 * `fisher compute --profile`: where the whole process's time goes, as a
 * table on stderr. Phases are marked in order; the first is everything
 * before the command ran (Node's start-up and loading the modules), read
 * from the process's clock, which starts with the process.
 */
export class Profile {
  readonly #phases: [string, number][] = [];
  #last: number;

  constructor(readonly enabled: boolean) {
    this.#last = performance.now();
    this.#phases.push(['start-up: Node and the modules', this.#last / 1000]);
  }

  /** Ends the phase running since the last mark, under `name`. */
  mark(name: string): void {
    const now = performance.now();
    this.#phases.push([name, (now - this.#last) / 1000]);
    this.#last = now;
  }

  /** Adds a part of the last phase, indented under it (not counted again in the total). */
  detail(name: string, seconds: number): void {
    this.#phases.push([`  ${name}`, -seconds]);
  }

  /** The table: seconds and share of the whole per phase. */
  table(): string {
    const total = this.#phases.reduce((s, [, t]) => s + (t > 0 ? t : 0), 0);
    const width = Math.max(...this.#phases.map(([n]) => n.length));
    const rows = this.#phases.map(([name, t]) => `${name.padEnd(width)}  ${Math.abs(t).toFixed(3).padStart(8)} s  ${((100 * Math.abs(t)) / total).toFixed(1).padStart(5)}%`);
    return [`profile of the whole process (${total.toFixed(3)} s):`, ...rows].join('\n');
  }

  write(): void {
    if (this.enabled) process.stderr.write(`${this.table()}\n`);
  }
}

/** The kernels' lines under the passes on the device: the `shown` longest, then the rest as one line. */
export function kernelLines(kernels: readonly LabelTime[], shown = 8): [string, number][] {
  const lines = kernels.slice(0, shown).map((k): [string, number] => [`${k.label} (${k.passes} dispatch${k.passes === 1 ? '' : 'es'})`, k.seconds]);
  const rest = kernels.slice(shown);
  if (rest.length > 0) lines.push([`${rest.length} other kernel${rest.length === 1 ? '' : 's'}`, rest.reduce((s, k) => s + k.seconds, 0)]);
  return lines;
}
