/**
 * The per-adapter tuning cache: the matmul shapes found fastest on an
 * adapter (by the short search of its first use, `ensureTuned`, or by
 * `fisher bench --tune`), stored in a small JSON file keyed by the
 * adapter's description and read when an engine starts. Without an entry,
 * or where the stored shape no longer fits the device, the defaults of the
 * adapter's kind (autotune.ts).
 *
 * File: $FISHER_GPU_CACHE_DIR/tuning.json, by default
 * $XDG_CACHE_HOME/fisher-gpu or ~/.cache/fisher-gpu. FISHER_GPU_TUNING=off
 * neither reads it nor searches: the plain default shape on every adapter.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { GpuDevice } from '../gpu/device.js';
import { trace } from '../gpu/trace.js';
import { writeFileAtomic } from '../io/atomic.js';
import { adapterKey, cacheDir, readCached } from '../gpu/cache-dir.js';
import { DEFAULT_MATMUL_CONFIG, describeMatmulConfig, matmulConfigProblem, readMatmulConfig, sameMatmulConfig, tileOf, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';
import { defaultShapesFor, firstUseProblems, quickCandidates, searchShapes } from './autotune.js';

export interface TuningEntry {
  matmul: MatmulConfig;
  /** Geometric-mean GFLOP/s of the tuned kernels, and the default's, when tuned. */
  gflops: number;
  defaultGflops: number;
  /** Every candidate scored, best first (absent in caches written before it was kept). */
  ranked?: MatmulShape[];
  date: string;
  /** Which search found it: the short one of first use, or `fisher bench --tune`. */
  search?: 'first use' | 'bench --tune';
}

/**
 * The shapes worth choosing from: those no other shape beats with a tile
 * as small or smaller in both directions and a rate as high or higher. A
 * product then pays for padding only where a smaller tile would be slower.
 */
export function paretoShapes(shapes: readonly MatmulShape[]): MatmulShape[] {
  return shapes.filter((s, i) => {
    const a = tileOf(s.config);
    return !shapes.some((o, j) => {
      const b = tileOf(o.config);
      const noWorse = b.rows <= a.rows && b.cols <= a.cols && o.gflops >= s.gflops;
      const better = b.rows < a.rows || b.cols < a.cols || o.gflops > s.gflops || j < i;
      return j !== i && noWorse && better;
    });
  });
}

/** The tuning cache's file in the cache directory. */
const TUNING_FILE = 'tuning.json';

export function tuningCacheFile(): string {
  return join(cacheDir(), TUNING_FILE);
}

function readCache(): Record<string, TuningEntry> {
  const parsed = readCached(TUNING_FILE);
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, TuningEntry>) : {};
}

/**
 * The matmul shapes for this device, the primary first: the tuned shape,
 * then the other candidates tuning scored that are on the front of tile size
 * against rate (paretoShapes; in a cache without the scores, the default),
 * each with its measured rate. Each product picks the one predicted fastest
 * for its size; pipelines are built only for the shapes picked. Without a
 * usable tuning: the defaults of the adapter's kind (autotune.ts).
 */
export function matmulShapesFor(gpu: GpuDevice): MatmulShape[] {
  // Off: the one plain shape every adapter runs, the reproducible baseline (the tests run it).
  if (tuningOff()) return [{ config: DEFAULT_MATMUL_CONFIG, gflops: 1 }];
  const fallback = defaultShapesFor(gpu);
  const entry = readCache()[adapterKey(gpu)];
  if (!entry) return fallback;
  const config = readMatmulConfig(entry.matmul);
  const problem = config ? matmulConfigProblem(config, gpu) : 'not a matmul configuration';
  if (!config || problem) {
    trace(`ignoring the tuned matmul shape ${JSON.stringify(entry.matmul)}: ${problem}`);
    return fallback;
  }
  const tuned = { config, gflops: entry.gflops };
  const ranked = (entry.ranked ?? []).flatMap((r) => {
    const c = readMatmulConfig(r.config);
    return c && !matmulConfigProblem(c, gpu) ? [{ config: c, gflops: r.gflops }] : [];
  });
  const others: MatmulShape[] = ranked.length ? ranked : entry.defaultGflops > 0 ? [{ config: fallback[fallback.length - 1]!.config, gflops: entry.defaultGflops }] : [];
  return [tuned, ...paretoShapes([tuned, ...others]).filter((s) => !sameMatmulConfig(s.config, config))];
}

function tuningOff(): boolean {
  return typeof process === 'undefined' || process.env['FISHER_GPU_TUNING'] === 'off';
}

/** Whether this device's shapes come from the tuning cache. */
export function isTuned(gpu: GpuDevice): boolean {
  return !tuningOff() && readCache()[adapterKey(gpu)] !== undefined;
}

/** The short search's budget: candidates are scored until it has passed (each takes seconds on lavapipe, mostly compiling). */
export const FIRST_USE_BUDGET_SECONDS = 5;

/**
 * The first time fisher-gpu meets an adapter (no entry in the cache, and
 * FISHER_GPU_TUNING is not `off`): a short search of the kind's candidates
 * on small problems, stored in the cache, said in one line to `say`
 * (stderr in the command line). Later runs read the cache. Returns the
 * entry stored, or undefined where nothing was searched.
 */
export async function ensureTuned(gpu: GpuDevice, say: (line: string) => void = () => undefined): Promise<TuningEntry | undefined> {
  if (tuningOff() || readCache()[adapterKey(gpu)]) return undefined;
  const { size, products } = firstUseProblems(gpu);
  const r = await searchShapes(gpu, quickCandidates(gpu), size, { budgetSeconds: FIRST_USE_BUDGET_SECONDS, repeats: 2, products });
  const best = r.ranked[0]!;
  // The winner alone: one shape for every product, so a cold run compiles each kernel once (seconds each on lavapipe).
  const entry: TuningEntry = { matmul: best.config, gflops: best.gflops, defaultGflops: r.defaultGflops, ranked: [best], date: new Date().toISOString(), search: 'first use' };
  const file = await saveTuning(gpu, entry);
  say(
    `fisher: first use of ${gpu.adapter.description}: chose ${describeMatmulConfig(best.config)} for the matrix kernels (${best.gflops.toFixed(1)} GFLOP/s on ${size === 'probe' ? 'a small product' : 'the full products'}; ${r.ranked.length} shape${r.ranked.length === 1 ? '' : 's'} tried in ${r.seconds.toFixed(1)} s), cached in ${file}; "fisher bench --tune" searches further, FISHER_GPU_TUNING=off skips this`,
  );
  return entry;
}

/** The primary (tuned, else default) matmul shape for this device. */
export function matmulConfigFor(gpu: GpuDevice): MatmulConfig {
  return matmulShapesFor(gpu)[0]!.config;
}

/** Stores the tuned shape for this device. */
export async function saveTuning(gpu: GpuDevice, entry: TuningEntry): Promise<string> {
  const file = tuningCacheFile();
  mkdirSync(join(file, '..'), { recursive: true });
  const cache = readCache();
  cache[adapterKey(gpu)] = entry;
  await writeFileAtomic(file, `${JSON.stringify(cache, null, 2)}\n`);
  return file;
}
