import type { LabelTime } from '../gpu/timing.js';

/**
 * `fisher compute --profile`: where the whole process's time goes, as a
 * table on stderr. Phases are marked in order; the first is everything
 * before the command ran (Node's start-up and loading the modules), read
 * from the process's clock, which starts with the process. Each phase also
 * shows the minor page faults the process took in it (memory touched for
 * the first time, by any thread): in a virtual machine one costs about
 * 12 µs, so that the 37,000–39,000 of the 784-256-256-10 example's run come
 * to some 0.4 s of its CPU time (bench/RESULTS.md, issue 12's eleventh
 * part).
 */
export class Profile {
  /** Name, seconds (negative: a detail, not counted again), page faults (undefined: a detail). */
  readonly #phases: [string, number, number | undefined][] = [];
  #last: number;
  #faults: number;

  constructor(readonly enabled: boolean) {
    this.#last = performance.now();
    this.#faults = minorFaults();
    this.#phases.push(['start-up: Node and the modules', this.#last / 1000, this.#faults]);
  }

  /** Ends the phase running since the last mark, under `name`. */
  mark(name: string): void {
    const now = performance.now();
    const faults = minorFaults();
    this.#phases.push([name, (now - this.#last) / 1000, faults - this.#faults]);
    this.#last = now;
    this.#faults = faults;
  }

  /** Adds a part of the last phase, indented under it (not counted again in the total). */
  detail(name: string, seconds: number): void {
    this.#phases.push([`  ${name}`, -seconds, undefined]);
  }

  /** The table: seconds, share of the whole and page faults per phase. */
  table(): string {
    const total = this.#phases.reduce((s, [, t]) => s + (t > 0 ? t : 0), 0);
    const faults = this.#phases.reduce((s, [, , f]) => s + (f ?? 0), 0);
    const width = Math.max(...this.#phases.map(([n]) => n.length));
    const rows = this.#phases.map(
      ([name, t, f]) =>
        `${name.padEnd(width)}  ${Math.abs(t).toFixed(3).padStart(8)} s  ${((100 * Math.abs(t)) / total).toFixed(1).padStart(5)}%` +
        (f === undefined ? '' : `  ${f.toLocaleString('en-US').padStart(7)} page faults`),
    );
    return [`profile of the whole process (${total.toFixed(3)} s, ${faults.toLocaleString('en-US')} page faults):`, ...rows].join('\n');
  }

  write(): void {
    if (this.enabled) process.stderr.write(`${this.table()}\n`);
  }
}

/** The process's minor page faults so far (all threads). */
function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

/** The kernels' lines under the passes on the device: the `shown` longest, then the rest as one line. */
export function kernelLines(kernels: readonly LabelTime[], shown = 8): [string, number][] {
  const lines = kernels.slice(0, shown).map((k): [string, number] => [`${k.label} (${k.passes} dispatch${k.passes === 1 ? '' : 'es'})`, k.seconds]);
  const rest = kernels.slice(shown);
  if (rest.length > 0) lines.push([`${rest.length} other kernel${rest.length === 1 ? '' : 's'}`, rest.reduce((s, k) => s + k.seconds, 0)]);
  return lines;
}
