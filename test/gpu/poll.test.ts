/**
 * Pacing Dawn's event polling (src/gpu/poll.ts): native callbacks queued
 * alone without pause are deferred by a timer once a wait has polled for
 * 2 ms; every other setImmediate is untouched; the global is restored when
 * the last user is done.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openDevice } from '../../src/gpu/device.js';
import { pacePolling, pollingPaced } from '../../src/gpu/poll.js';

const original = globalThis.setImmediate;

/** What setImmediate queued a callback with: 'Immediate' or 'Timeout' (then cancelled). */
function queuedBy(fn: () => unknown): string {
  const handle = globalThis.setImmediate(fn) as unknown as { constructor: { name: string } };
  const kind = handle.constructor.name;
  if (kind === 'Timeout') clearTimeout(handle as unknown as NodeJS.Timeout);
  else clearImmediate(handle as unknown as NodeJS.Immediate);
  return kind;
}

/** Polls like Dawn for `ms`: a native callback queued every 0.2 ms; returns the last queue's kind. */
function pollFor(ms: number): string {
  const end = performance.now() + ms;
  let kind = queuedBy(Date.now);
  while (performance.now() < end) {
    const next = performance.now() + 0.2;
    while (performance.now() < next);
    kind = queuedBy(Date.now);
  }
  return kind;
}

describe('pacing of Dawn\'s polling', () => {
  afterEach(() => {
    expect(globalThis.setImmediate).toBe(original);
  });

  it('answers a short wait at once and defers a long one; leaves JavaScript callbacks alone', async () => {
    const release = pacePolling();
    try {
      expect(pollingPaced()).toBe(true);
      expect(queuedBy(Date.now)).toBe('Immediate');
      expect(pollFor(5)).toBe('Timeout');
      // A JavaScript callback is queued as ever, even in the middle of a long wait.
      expect(queuedBy(() => 1)).toBe('Immediate');
      // After a pause, a new wait polls at once again.
      await new Promise((r) => setTimeout(r, 20));
      expect(queuedBy(Date.now)).toBe('Immediate');
    } finally {
      release();
    }
    expect(pollingPaced()).toBe(false);
    expect(pollFor(5)).toBe('Immediate');
  });

  it('stays paced until its last user is done, and is off with FISHER_GPU_POLL=spin', () => {
    const a = pacePolling();
    const b = pacePolling();
    a();
    a();
    expect(pollingPaced()).toBe(true);
    b();
    expect(pollingPaced()).toBe(false);
    process.env['FISHER_GPU_POLL'] = 'spin';
    try {
      const c = pacePolling();
      expect(globalThis.setImmediate).toBe(original);
      c();
    } finally {
      delete process.env['FISHER_GPU_POLL'];
    }
  });

  it('is on while a Dawn device is open', async () => {
    const gpu = await openDevice();
    try {
      expect(pollingPaced()).toBe(true);
      // Work still completes: a write and a read back through the paced polling.
      const buf = await gpu.storage(16, 'poll test', new Float32Array([1, 2, 3, 4]));
      expect(Array.from(await gpu.readF32(buf, 16))).toEqual([1, 2, 3, 4]);
      gpu.buffers.release(buf);
    } finally {
      gpu.dispose();
    }
    expect(pollingPaced()).toBe(false);
  });
});
