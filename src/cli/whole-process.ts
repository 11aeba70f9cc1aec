/**
 * `fisher bench --whole-process`: what a command-line user pays, the time
 * from starting `fisher compute` to its file being written, for the issue's
 * workload (the diagonal empirical Fisher of 784-256-256-10 over 10⁴
 * samples), measured by running this very command as child processes: the
 * first run, then the median of the runs after it (three, or `--runs`).
 * With `fresh`, the first
 * run meets the adapter for the first time (an empty tuning cache of its
 * own), so it includes the first use's search. The peers named are timed
 * the same way on the same files, each a process of its own
 * (src/bench/peer-process.ts: start, read, load the library, compute once,
 * write; it reports each phase), interleaved with ours run by run, so that a slow spell of the
 * machine falls on both.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { installPeers, PEER_PROCESSES, type PeerProcess } from '../bench/peers.js';

/** Whole-process times of one command: every run, the first, and the median of the runs after it. */
export interface ProcessTimes {
  /** Seconds of each run, the first first. */
  runs: number[];
  first: number;
  median: number;
}

export interface PeerWholeProcess extends Partial<ProcessTimes> {
  peer: PeerProcess;
  name: string;
  /**
   * The median over the runs after the first of the peer's time over ours in
   * the same round (the two ran back to back, so a slow spell of the machine
   * falls on both): steadier than the ratio of the medians on a noisy machine.
   */
  pairedRatio?: number;
  /** Seconds per phase (start-up, reading, loading the library, computing, writing): the medians over the runs after the first. */
  phases?: Record<string, number>;
  /** Why the peer did not run (its process failed), if it did not. */
  skipped?: string;
}

export interface WholeProcess extends ProcessTimes {
  workload: string;
  /** Whether the first run had an empty tuning cache (the first use's search included). */
  fresh: boolean;
  peers: PeerWholeProcess[];
}

const run = promisify(execFile);

/** The median of the runs after the first (the first alone if it is the only one); of an even count, the mean of the middle two. */
function laterMedian(runs: readonly number[]): number {
  const later = runs.slice(1).sort((a, b) => a - b);
  if (later.length === 0) return runs[0]!;
  const mid = (later.length - 1) / 2;
  return (later[Math.floor(mid)]! + later[Math.ceil(mid)]!) / 2;
}

/** The median of theirs[i] / ours[i] over the rounds after the first (the first alone if it is the only one). */
export function pairedRatio(ours: readonly number[], theirs: readonly number[]): number {
  const rounds = Math.min(ours.length, theirs.length);
  return laterMedian(Array.from({ length: rounds }, (_, i) => theirs[i]! / ours[i]!));
}

function times(runs: number[]): ProcessTimes {
  return { runs, first: runs[0]!, median: laterMedian(runs) };
}

async function timed(args: string[], env: NodeJS.ProcessEnv): Promise<{ seconds: number; stdout: string }> {
  const t0 = performance.now();
  const { stdout } = await run(process.execPath, args, { env, maxBuffer: 1 << 24 });
  return { seconds: (performance.now() - t0) / 1000, stdout };
}

export async function measureWholeProcess(
  options: { runs?: number; fresh?: boolean; peers?: readonly PeerProcess[]; log?: (line: string) => void } = {},
): Promise<WholeProcess> {
  const cli = process.argv[1]!;
  const peerScript = join(dirname(cli), 'peer-process.js');
  const dir = await mkdtemp(join(tmpdir(), 'fisher-whole-'));
  const env = options.fresh ? { ...process.env, FISHER_GPU_CACHE_DIR: join(dir, 'cache') } : process.env;
  const log = options.log ?? (() => {});
  try {
    await run(process.execPath, [cli, 'example', '--out-dir', dir, '--widths', '784,256,256,10'], { env });
    const files = [join(dir, 'model.json'), join(dir, 'weights.safetensors'), join(dir, 'data.safetensors')];
    const ours = ['compute', '--model', files[0]!, '--weights', files[1]!, '--data', files[2]!, '--out', join(dir, 'diag.safetensors'), '--quiet'];
    const peers = options.peers ?? [];
    if (peers.length > 0) installPeers(log);
    const runs: number[] = [];
    // Per peer its runs, each with its phases (peer-process.js prints them), or why it failed.
    const peerRuns = new Map<PeerProcess, { seconds: number; phases: [string, number][] }[] | string>(peers.map((p) => [p, []]));
    for (let i = 0; i < (options.runs ?? 4); i++) {
      runs.push((await timed([cli, ...ours], env)).seconds);
      log(`whole process, run ${i + 1}: fisher compute ${runs[i]!.toFixed(2)} s`);
      for (const peer of peers) {
        const done = peerRuns.get(peer)!;
        if (typeof done === 'string') continue;
        try {
          const { seconds, stdout } = await timed([peerScript, peer, ...files, join(dir, `${peer}.safetensors`)], process.env);
          done.push({ seconds, phases: (JSON.parse(stdout) as { phases: [string, number][] }).phases });
          log(`whole process, run ${i + 1}: ${PEER_PROCESSES[peer]} ${seconds.toFixed(2)} s`);
        } catch (e) {
          const why = ((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n').pop()!;
          peerRuns.set(peer, why);
          log(`whole process: ${PEER_PROCESSES[peer]} failed: ${why}`);
        }
      }
    }
    return {
      workload: 'diag empirical 784-256-256-10 N=10,000',
      ...times(runs),
      fresh: options.fresh ?? false,
      peers: peers.map((peer) => {
        const r = peerRuns.get(peer)!;
        if (typeof r === 'string') return { peer, name: PEER_PROCESSES[peer], skipped: r };
        const phases = Object.fromEntries(r[0]!.phases.map(([name], k) => [name, laterMedian(r.map((run) => run.phases[k]![1]))]));
        const seconds = r.map((run) => run.seconds);
        return { peer, name: PEER_PROCESSES[peer], ...times(seconds), pairedRatio: pairedRatio(runs, seconds), phases };
      }),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The whole-process lines of `fisher bench`: ours, then each peer with our speed-up over it. */
export function wholeProcessLines(w: WholeProcess): string[] {
  const lines = [`whole process, fisher compute (${w.workload}): first run ${w.first.toFixed(2)} s${w.fresh ? ' (a first use: the search included)' : ''}, then ${w.median.toFixed(2)} s (median of ${w.runs.length - 1})`];
  for (const p of w.peers) {
    if (p.skipped !== undefined) lines.push(`whole process, ${p.name}: not run (${p.skipped})`);
    else {
      const phases = Object.entries(p.phases ?? {}).map(([name, s]) => `${name} ${s.toFixed(2)} s`).join(', ');
      const paired = p.pairedRatio === undefined ? '' : `; run by run, the median ratio is ${p.pairedRatio.toFixed(2)}×`;
      lines.push(`whole process, ${p.name}: first run ${p.first!.toFixed(2)} s, then ${p.median!.toFixed(2)} s (${phases}); fisher compute is ${(p.median! / w.median).toFixed(2)}× as fast${paired}`);
    }
  }
  return lines;
}
