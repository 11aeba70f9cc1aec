/**
 * Pacing Dawn's event polling in Node.
 *
 * While any of its promises is pending (a buffer map, onSubmittedWorkDone,
 * an asynchronous pipeline build), Dawn's Node bindings poll their events
 * from a callback they queue again and again with the global setImmediate:
 * a busy loop on the main thread for as long as the GPU works. On a GPU
 * that costs one host core. On a CPU-SIMD driver such as lavapipe, where
 * the "GPU" is the same cores, it takes one of them from the kernels: on 2
 * cores a batch of products ran 35–40% slower (bench/RESULTS.md, issue 12).
 *
 * Paced, each wait still polls at once for its first SPIN_MS (a short wait
 * is answered as fast as before), then every PACE_MS. Dawn's callbacks are
 * told from others as native functions queued alone; any other caller's
 * setImmediate is untouched. FISHER_GPU_POLL=spin turns pacing off.
 */

/** How long a wait polls at every turn of the event loop. */
const SPIN_MS = 2;
/** How often it polls after that. */
const PACE_MS = 1;
/** A gap this long between two polls means a new wait. */
const NEW_WAIT_GAP_MS = 4 * PACE_MS;

let users = 0;
let original: typeof setImmediate | undefined;
let installed: typeof setImmediate | undefined;
let waitStart = 0;
let lastPoll = -Infinity;

function isNative(fn: unknown): boolean {
  return typeof fn === 'function' && Function.prototype.toString.call(fn).endsWith('{ [native code] }');
}

function pacingOff(): boolean {
  return typeof process === 'undefined' || process.env['FISHER_GPU_POLL'] === 'spin';
}

/**
 * Paces Dawn's polling until the returned function is called (each caller
 * calls it once; the global setImmediate is restored when the last does).
 * Does nothing where pacing is off or there is no setImmediate (a browser).
 */
export function pacePolling(): () => void {
  if (pacingOff() || typeof globalThis.setImmediate !== 'function') return () => undefined;
  if (users++ === 0) {
    const real = globalThis.setImmediate;
    original = real;
    const paced = (fn: (...args: unknown[]) => void, ...args: unknown[]): unknown => {
      if (args.length === 0 && isNative(fn)) {
        const now = performance.now();
        if (now - lastPoll > NEW_WAIT_GAP_MS) waitStart = now;
        lastPoll = now;
        if (now - waitStart >= SPIN_MS) return setTimeout(fn, PACE_MS);
      }
      return real(fn, ...args);
    };
    // Keeps setImmediate's own properties (util.promisify's custom form).
    installed = Object.assign(paced, real) as unknown as typeof setImmediate;
    globalThis.setImmediate = installed;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--users === 0 && original) {
      // Unless someone replaced it since: theirs stays.
      if (globalThis.setImmediate === installed) globalThis.setImmediate = original;
      original = installed = undefined;
    }
  };
}

/** Whether Dawn's polling is paced now (for tests). */
export function pollingPaced(): boolean {
  return users > 0;
}
