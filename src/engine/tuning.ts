/**
 * The per-adapter tuning cache: the matmul shape `fisher bench --tune` found
 * fastest on an adapter, stored in a small JSON file keyed by the adapter's
 * description and read when an engine starts (safe defaults where there is
 * none, or where the stored shape no longer fits the device).
 *
 * File: $FISHER_GPU_CACHE_DIR/tuning.json, by default
 * $XDG_CACHE_HOME/fisher-gpu or ~/.cache/fisher-gpu. FISHER_GPU_TUNING=off
 * ignores it.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { GpuDevice } from '../gpu/device.js';
import { trace } from '../gpu/trace.js';
import { writeFileAtomic } from '../io/atomic.js';
import { DEFAULT_MATMUL_CONFIG, matmulConfigProblem, tileOf, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';

export interface TuningEntry {
  matmul: MatmulConfig;
  /** Geometric-mean GFLOP/s of the tuned kernels, and the default's, when tuned. */
  gflops: number;
  defaultGflops: number;
  /** Every candidate scored, best first (absent in caches written before it was kept). */
  ranked?: MatmulShape[];
  date: string;
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

export function tuningCacheFile(): string {
  const env = process.env;
  const dir = env['FISHER_GPU_CACHE_DIR'] ?? join(env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fisher-gpu');
  return join(dir, 'tuning.json');
}

/** The cache's key for a device: its adapter's description, vendor and architecture. */
export function adapterKey(gpu: GpuDevice): string {
  const a = gpu.adapter;
  return [a.description, a.vendor, a.architecture, a.device].join(' | ');
}

function readCache(): Record<string, TuningEntry> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(tuningCacheFile(), 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, TuningEntry>) : {};
  } catch {
    return {};
  }
}

/**
 * The matmul shapes for this device, the primary first: the tuned shape,
 * then the other candidates tuning scored that are on the front of tile size
 * against rate (paretoShapes; in a cache without the scores, the default),
 * each with its measured rate. Each product picks the one predicted fastest
 * for its size; pipelines are built only for the shapes picked. Without a
 * usable tuning: the default alone.
 */
export function matmulShapesFor(gpu: GpuDevice): MatmulShape[] {
  const fallback = [{ config: DEFAULT_MATMUL_CONFIG, gflops: 1 }];
  if (typeof process === 'undefined' || process.env['FISHER_GPU_TUNING'] === 'off') return fallback;
  const entry = readCache()[adapterKey(gpu)];
  if (!entry) return fallback;
  const config = { ...DEFAULT_MATMUL_CONFIG, ...entry.matmul };
  const problem = matmulConfigProblem(config, gpu);
  if (problem) {
    trace(`ignoring the tuned matmul shape ${JSON.stringify(config)}: ${problem}`);
    return fallback;
  }
  const tuned = { config, gflops: entry.gflops };
  const others: MatmulShape[] = entry.ranked?.length
    ? entry.ranked.filter((r) => !matmulConfigProblem(r.config, gpu))
    : entry.defaultGflops > 0
      ? [{ config: DEFAULT_MATMUL_CONFIG, gflops: entry.defaultGflops }]
      : [];
  const same = (a: MatmulConfig) => JSON.stringify(a) === JSON.stringify(config);
  return [tuned, ...paretoShapes([tuned, ...others]).filter((s) => !same(s.config))];
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
