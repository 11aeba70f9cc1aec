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
import { DEFAULT_MATMUL_CONFIG, matmulConfigProblem, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';

export interface TuningEntry {
  matmul: MatmulConfig;
  /** Geometric-mean GFLOP/s of the tuned kernels, and the default's, when tuned. */
  gflops: number;
  defaultGflops: number;
  date: string;
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
 * The matmul shapes for this device, the primary first: the tuned shape and
 * the default with their measured rates (each product picks the one predicted
 * fastest for its size), or the default alone where there is no usable tuning.
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
  if (JSON.stringify(config) === JSON.stringify(DEFAULT_MATMUL_CONFIG) || !(entry.defaultGflops > 0)) return [tuned];
  return [tuned, { config: DEFAULT_MATMUL_CONFIG, gflops: entry.defaultGflops }];
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
