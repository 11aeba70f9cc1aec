/** `fisher bench`: headless benchmarks against the device's roofline and the peers, as a table, JSON and a plot. */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { benchTable } from '../bench/report.js';
import { rooflineSvg } from '../bench/roofline.js';
import { installPeers, jaxPeer, PEER_PROCESSES, tfjsPeer, tfjsPerSamplePeer, type PeerProcess } from '../bench/peers.js';
import { torchPeer } from '../bench/torch.js';
import { cpuPeer, runBench, type Peer } from '../bench/run.js';
import { fullSuite, quickSuite } from '../bench/workloads.js';
import { tune } from '../bench/tune.js';
import { saveTuning } from '../engine/tuning.js';
import { InputError } from '../layers/errors.js';
import { openDevice } from '../gpu/device.js';
import { writeFileAtomic } from '../io/atomic.js';
import { measureWholeProcess, wholeProcessLines } from './whole-process.js';


export interface BenchArgs {
  quick: boolean;
  tune: boolean;
  /** Also time `fisher compute` as whole processes (`fresh`: the first with an empty tuning cache). */
  wholeProcess?: boolean | 'fresh';
  /** With wholeProcess: the runs after the first (default 3). */
  runs?: number;
  json?: string;
  plot?: string;
  cpuBudget: number;
  filter?: string;
  peers?: string[];
}

export const PEER_NAMES = ['cpu', 'tfjs-webgpu', 'tfjs-cpu', 'tfjs-per-sample', 'jax-wasm', 'jax-webgpu', 'jax-vmap-wasm', 'jax-vmap-webgpu', 'torch', 'torch-vmap'] as const;

export async function bench(args: BenchArgs): Promise<void> {
  if (args.runs !== undefined && !args.wholeProcess) throw new InputError('--runs counts the runs of --whole-process; give that too');
  const gpu = await openDevice();
  const log = (line: string) => process.stderr.write(`fisher bench: ${line}\n`);
  try {
    if (args.tune) {
      log(`tuning the matmul kernel on ${gpu.describe()}`);
      const { ranked, defaultGflops } = await tune(gpu, args.quick ? 'quick' : 'full', log);
      const best = ranked[0]!;
      const file = await saveTuning(gpu, { matmul: best.config, gflops: best.gflops, defaultGflops, ranked, date: new Date().toISOString(), search: 'bench --tune' });
      process.stdout.write(
        `tuned: ${JSON.stringify(best.config)} at ${best.gflops.toFixed(1)} GFLOP/s (the default: ${defaultGflops.toFixed(1)}), stored in ${file}\n`,
      );
    }
    let workloads = args.quick ? quickSuite() : fullSuite();
    if (args.filter) workloads = workloads.filter((w) => w.name.includes(args.filter!));
    const wanted = args.peers ?? (args.quick ? ['cpu'] : [...PEER_NAMES]);
    const peers: Peer[] = [];
    if (wanted.includes('cpu')) peers.push(cpuPeer(args.quick ? 5 : args.cpuBudget));
    if (wanted.some((p) => p.startsWith('tfjs') || p.startsWith('jax'))) {
      const dir = installPeers(log);
      if (wanted.includes('tfjs-webgpu')) peers.push(tfjsPeer(gpu, 'webgpu', dir));
      if (wanted.includes('tfjs-cpu')) peers.push(tfjsPeer(gpu, 'cpu', dir));
      if (wanted.includes('tfjs-per-sample')) peers.push(tfjsPerSamplePeer(gpu, dir, args.cpuBudget));
      if (wanted.includes('jax-wasm')) peers.push(jaxPeer(gpu, 'wasm', dir));
      if (wanted.includes('jax-webgpu')) peers.push(jaxPeer(gpu, 'webgpu', dir));
      if (wanted.includes('jax-vmap-wasm')) peers.push(jaxPeer(gpu, 'wasm', dir, 'vmap', args.cpuBudget));
      if (wanted.includes('jax-vmap-webgpu')) peers.push(jaxPeer(gpu, 'webgpu', dir, 'vmap', args.cpuBudget));
    }
    if (wanted.includes('torch')) peers.push(torchPeer('batched', args.cpuBudget));
    if (wanted.includes('torch-vmap')) peers.push(torchPeer('vmap', args.cpuBudget));
    const report = await runBench(gpu, workloads, {
      quick: args.quick,
      peers,
      log,
    });
    process.stdout.write(`${benchTable(report)}\n`);
    // The peers with a whole-process form, of those asked for.
    const processPeers = wanted.filter((p): p is PeerProcess => p in PEER_PROCESSES);
    const whole = args.wholeProcess ? await measureWholeProcess({ fresh: args.wholeProcess === 'fresh', peers: processPeers, log, runs: (args.runs ?? 3) + 1 }) : undefined;
    if (whole) process.stdout.write(`\n${wholeProcessLines(whole).join('\n')}\n`);
    for (const [path, text] of [
      [args.json, () => `${JSON.stringify(whole ? { ...report, wholeProcess: whole } : report, null, 2)}\n`],
      [args.plot, () => rooflineSvg(report)],
    ] as const) {
      if (!path) continue;
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, await text());
      process.stdout.write(`wrote ${path}\n`);
    }
  } finally {
    gpu.dispose();
  }
}
