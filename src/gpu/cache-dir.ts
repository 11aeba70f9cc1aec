/**
 * Where fisher-gpu keeps what it learns of this machine between runs (the
 * tuning of each adapter, the reflection of each WGSL module):
 * $FISHER_GPU_CACHE_DIR, by default $XDG_CACHE_HOME/fisher-gpu or
 * ~/.cache/fisher-gpu. Everything in it can be deleted at any time.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheDir(): string {
  const env = process.env;
  return env['FISHER_GPU_CACHE_DIR'] ?? join(env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fisher-gpu');
}
