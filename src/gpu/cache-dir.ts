/**
 * Where fisher-gpu keeps what it learns of this machine between runs (the
 * tuning of each adapter, the reflection of each WGSL module, how each
 * adapter forms subgroups): $FISHER_GPU_CACHE_DIR, by default
 * $XDG_CACHE_HOME/fisher-gpu or ~/.cache/fisher-gpu. Everything in it can
 * be deleted at any time; it is learnt again.
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { GpuDevice } from './device.js';

export function cacheDir(): string {
  const env = process.env;
  return env['FISHER_GPU_CACHE_DIR'] ?? join(env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fisher-gpu');
}

/**
 * The cache's key for a device: its adapter's description, vendor,
 * architecture and device. Dawn's description names the driver and its
 * version (lavapipe: "llvmpipe: Mesa 25.0.7 … (LLVM 15.0.6)"), so a new
 * driver is a new key.
 */
export function adapterKey(gpu: GpuDevice): string {
  const a = gpu.adapter;
  return [a.description, a.vendor, a.architecture, a.device].join(' | ');
}

/** A JSON file of the cache directory, or undefined where there is none or it is not JSON. */
export function readCached(name: string): unknown {
  try {
    return JSON.parse(readFileSync(join(cacheDir(), name), 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Writes a JSON file of the cache directory whole under a temporary name,
 * then renames it: a reader never sees half a file. Where it cannot be
 * written, nothing is (the cache only saves time).
 */
export function writeCached(name: string, value: unknown): void {
  const file = join(cacheDir(), name);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(tmp, JSON.stringify(value));
    renameSync(tmp, file);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // There was no temporary file.
    }
  }
}
