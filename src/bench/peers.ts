/**
 * The peers `fisher bench` runs the same workloads on, in the same run, on
 * the same adapter: TensorFlow.js (its WebGPU backend, on this process's
 * Dawn, and its CPU backend) with the best batched formulation its ops allow
 * (manual back-propagation: squared deltas times squared activations for the
 * diagonal; per-sample gradient rows and GᵀG for the full matrix) and its
 * per-sample tf.grads loop; jax-js on its WebAssembly and WebGPU devices
 * (the batched diagonal). PyTorch is in torch.ts. The JavaScript peers
 * live in their own package, bench/peers, installed on first use, so
 * fisher-gpu's own install stays small.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GpuDevice } from '../gpu/device.js';
import type { Dataset } from '../model/data.js';
import type { Network } from '../model/network.js';
import { mlpLayers, mlpOf } from './mlp.js';
import type { Peer } from './run.js';
import { tfForward, tfUnsupported, type TfOps, type TfTensor } from './tf-network.js';
import { workOf, type FisherWorkload } from './workloads.js';

/**
 * The sums over the samples divided by n, as float32: a loop, since
 * Float32Array.from with a mapping function took about 75 ms for the
 * 269,322 parameters of 784-256-256-10 (V8, Node 20) and would count
 * against a peer's time.
 */
function meanOf(total: Float64Array, n: number): Float32Array {
  const mean = new Float32Array(total.length);
  for (let i = 0; i < total.length; i++) mean[i] = total[i]! / n;
  return mean;
}

/** bench/peers of the source tree or of the installed package (dist/ sits beside bench/). */
export function peersDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..', '../../..']) {
    const dir = join(here, up, 'bench', 'peers');
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  throw new Error('bench/peers/package.json not found beside the package');
}

/** Installs the peers' package if its node_modules is missing. */
export function installPeers(log: (line: string) => void): string {
  const dir = peersDir();
  if (!existsSync(join(dir, 'node_modules', '@tensorflow', 'tfjs')) || !existsSync(join(dir, 'node_modules', '@jax-js', 'jax'))) {
    log(`installing the peers (TensorFlow.js, jax-js) in ${dir}`);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return dir;
}

/** The subset of the TF.js API the peer uses. */
type Tensor = TfTensor;
interface Tf extends TfOps {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tensor2d(values: Float32Array, shape: [number, number]): Tensor;
  tensor1d(values: Float32Array | Int32Array, dtype?: string): Tensor;
  tidy<T>(f: () => T): T;
  square(a: Tensor): Tensor;
  step(a: Tensor): Tensor;
  softmax(a: Tensor): Tensor;
  oneHot(a: Tensor, depth: number): Tensor;
  sum(a: Tensor, axis?: number): Tensor;
  expandDims(a: Tensor, axis: number): Tensor;
  concat(ts: Tensor[], axis: number): Tensor;
  cast(a: Tensor, dtype: string): Tensor;
  grads(f: (...args: Tensor[]) => Tensor): (args: Tensor[]) => Tensor[];
  losses: { softmaxCrossEntropy(labels: Tensor, logits: Tensor): Tensor };
}

let tfLoaded: Promise<Tf> | undefined;

/**
 * The peers look for navigator (jax-js reads it as it starts) and
 * navigator.gpu when they load: hand them this process's Dawn instance, or
 * (none) a navigator without a GPU, which leaves them WebAssembly and CPU.
 */
function provideNavigator(gpu: GPU | undefined): void {
  const g = globalThis as { navigator?: unknown };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: gpu ? { gpu, userAgent: 'node' } : { userAgent: 'node' }, configurable: true });
}

/** Loads TF.js from bench/peers with its WebGPU backend on our Dawn instance. */
function loadTf(gpu: GPU | undefined, dir: string): Promise<Tf> {
  tfLoaded ??= (async () => {
    provideNavigator(gpu);
    const require = createRequire(join(dir, 'package.json'));
    // TF.js prints a banner on stdout when it loads in Node; keep stdout for the table.
    const log = console.log;
    console.log = (...a: unknown[]) => console.error(...a);
    try {
      const tf = require('@tensorflow/tfjs') as Tf;
      require('@tensorflow/tfjs-backend-webgpu');
      return tf;
    } finally {
      console.log = log;
    }
  })();
  return tfLoaded;
}

/** The diagonal (or full) empirical Fisher of a ReLU/softmax MLP with TF.js ops, batched. */
async function tfFisher(tf: Tf, model: Network, data: Dataset, structure: 'diag' | 'full'): Promise<Float32Array> {
  const chunk = structure === 'full' ? 1024 : 4096;
  const p = model.parameterCount;
  const total = new Float64Array(structure === 'full' ? p * p : p);
  const weights = mlpOf(model).map((l) => [tf.tensor2d(l.weight, [l.out, l.in]), tf.tensor1d(l.bias)] as const);
  try {
    for (let s0 = 0; s0 < data.n; s0 += chunk) {
      const batch = data.slice(s0, Math.min(data.n, s0 + chunk));
      const result = tf.tidy(() => {
        const x = tf.tensor2d(batch.x, [batch.n, data.inputs]);
        const acts: Tensor[] = [x];
        const zs: Tensor[] = [];
        let a = x;
        weights.forEach(([w, b], k) => {
          const z = tf.add(tf.matMul(a, w, false, true), b);
          zs.push(z);
          a = k + 1 < weights.length ? tf.relu(z) : z;
          acts.push(a);
        });
        const labels = tf.cast(tf.tensor1d(Int32Array.from(batch.y)), 'int32');
        let delta = tf.sub(tf.softmax(zs[zs.length - 1]!), tf.oneHot(labels, model.outputs));
        const blocks: Tensor[] = [];
        for (let k = weights.length - 1; k >= 0; k--) {
          const input = acts[k]!;
          if (structure === 'diag') {
            blocks.unshift(tf.reshape(tf.matMul(tf.square(delta), tf.square(input), true, false), [-1]), tf.sum(tf.square(delta), 0));
          } else {
            const rows = tf.reshape(tf.mul(tf.expandDims(delta, 2), tf.expandDims(input, 1)), [batch.n, -1]);
            blocks.unshift(tf.concat([rows, delta], 1));
          }
          if (k > 0) delta = tf.mul(tf.matMul(delta, weights[k]![0]), tf.step(zs[k - 1]!));
        }
        if (structure === 'diag') {
          // blocks: [W_1, b_1, W_2, b_2, …] flattened, in parameter order.
          return tf.concat(blocks, 0);
        }
        const G = tf.concat(blocks, 1);
        return tf.matMul(G, G, true, false);
      });
      const values = await result.data();
      result.dispose();
      for (let i = 0; i < values.length; i++) total[i]! += values[i]!;
    }
  } finally {
    for (const [w, b] of weights) {
      w.dispose();
      b.dispose();
    }
  }
  return meanOf(total, data.n);
}

/**
 * The per-sample loop a TF.js user would write: tf.grads of each sample's
 * loss through the network (tf-network.ts), squared and summed (diagonal only).
 */
async function tfPerSampleDiagonal(tf: Tf, model: Network, data: Dataset, samples: number): Promise<Float64Array> {
  const theta = model.parameters();
  const entries = model.layout.entries;
  const params = entries.map((e) => tf.tensor(theta.slice(e.offset, e.offset + e.size), [...e.shape]));
  const index = new Map(entries.map((e, k) => [e.name, k]));
  const loss = (x: Tensor, y: Tensor) => (...p: Tensor[]) => tf.losses.softmaxCrossEntropy(y, tfForward(tf, model.layers, x, (name) => p[index.get(name)!]!));
  const total = new Float64Array(model.parameterCount);
  try {
    for (let s = 0; s < samples; s++) {
      const squares = tf.tidy(() => {
        const x = tf.tensor(data.x.subarray(s * data.inputs, (s + 1) * data.inputs), [1, ...model.inputShape]);
        const y = tf.oneHot(tf.cast(tf.tensor1d(Int32Array.of(data.y[s]!)), 'int32'), model.outputs);
        return tf.concat(tf.grads(loss(x, y))(params).map((g) => tf.reshape(tf.square(g), [-1])), 0);
      });
      const v = await squares.data();
      squares.dispose();
      for (let i = 0; i < v.length; i++) total[i]! += v[i]!;
    }
  } finally {
    for (const p of params) p.dispose();
  }
  return total;
}

/** TF.js's per-sample loop on the WebGPU backend, for any network TF.js can express; where it would take longer than the budget (estimated from a sample of it) it is skipped with its estimate. */
export function tfjsPerSamplePeer(gpu: GpuDevice, dir: string, budgetSeconds: number): Peer {
  return {
    name: 'TF.js WebGPU (per-sample tf.grads loop)',
    async run(w: FisherWorkload, model: Network, data: Dataset) {
      const unsupported = tfUnsupported(model);
      if (unsupported) return { skipped: unsupported };
      if (model.spec.likelihood.type !== 'categorical') return { skipped: 'written for a categorical likelihood' };
      if (w.kind !== 'empirical' || w.structure !== 'diag') return { skipped: 'written for the empirical diagonal only' };
      const tf = await loadTf(gpu.gpu, dir);
      if (!(await tf.setBackend('webgpu'))) return { skipped: 'TF.js could not start its webgpu backend' };
      await tf.ready();
      const probe = Math.min(20, data.n);
      await tfPerSampleDiagonal(tf, model, data, probe); // warm-up: compiles the per-sample pipelines
      const t0 = performance.now();
      await tfPerSampleDiagonal(tf, model, data, probe);
      const estimate = ((performance.now() - t0) / 1000) * (data.n / probe);
      if (estimate > budgetSeconds) return { skipped: `estimated ${estimate.toFixed(0)} s from ${probe} samples, over the ${budgetSeconds} s budget` };
      const t1 = performance.now();
      const total = await tfPerSampleDiagonal(tf, model, data, data.n);
      return { values: total.map((v) => v / data.n), seconds: (performance.now() - t1) / 1000 };
    },
  };
}

export function tfjsPeer(gpu: GpuDevice, backend: 'webgpu' | 'cpu', dir: string): Peer {
  return {
    name: `TF.js ${backend === 'webgpu' ? 'WebGPU' : 'CPU'} (batched)`,
    async run(w: FisherWorkload, model: Network, data: Dataset) {
      const notMlp = mlpLayers(model);
      if (typeof notMlp === 'string') return { skipped: notMlp };
      if (w.kind !== 'empirical') return { skipped: 'the TF.js formulation here computes the empirical kind only' };
      if (w.structure !== 'diag' && w.structure !== 'full') return { skipped: 'the TF.js formulation here computes diag and full only' };
      if (backend === 'cpu' && w.n * model.parameterCount > 2e9) return { skipped: 'too slow on the TF.js CPU backend for this size' };
      const tf = await loadTf(gpu.gpu, dir);
      if (!(await tf.setBackend(backend))) return { skipped: `TF.js could not start its ${backend} backend` };
      await tf.ready();
      // A whole warm-up run first: TF.js compiles a pipeline per shape on its first call (reported apart).
      const w0 = performance.now();
      const structure = w.structure;
      await tfFisher(tf, model, data, structure);
      const warmup = (performance.now() - w0) / 1000;
      const t0 = performance.now();
      const values = await tfFisher(tf, model, data, structure);
      return { values, seconds: (performance.now() - t0) / 1000, warmup };
    },
  };
}

/** The subset of jax-js's API the peer uses (reference-counted arrays: every use consumes, `.ref` adds one). */
interface JaxArray {
  readonly ref: JaxArray;
  transpose(): JaxArray;
  reshape(shape: number[]): JaxArray;
  add(b: JaxArray): JaxArray;
  sub(b: JaxArray): JaxArray;
  mul(b: JaxArray): JaxArray;
  sum(axis: number): JaxArray;
  astype(dtype: unknown): JaxArray;
  data(): Promise<Float32Array>;
  dispose(): void;
}
interface Jax {
  init(): Promise<string[]>;
  defaultDevice(device: string): string;
  numpy: {
    array(values: Float32Array | Int32Array, options?: { dtype: unknown }): JaxArray;
    matmul(a: JaxArray, b: JaxArray): JaxArray;
    square(a: JaxArray): JaxArray;
    greater(a: JaxArray, b: number): JaxArray;
    concatenate(xs: JaxArray[], axis: number): JaxArray;
    int32: unknown;
    float32: unknown;
  };
  nn: { relu(a: JaxArray): JaxArray; softmax(a: JaxArray, axis: number): JaxArray; oneHot(a: JaxArray, classes: number): JaxArray; logSoftmax(a: JaxArray, axis: number): JaxArray };
  grad(f: (params: JaxArray[], x: JaxArray, y: JaxArray) => JaxArray): (params: JaxArray[], x: JaxArray, y: JaxArray) => JaxArray[];
  vmap<F>(f: F, inAxes: (number | null)[]): F;
}

let jaxLoaded: Promise<{ jax: Jax; devices: string[] }> | undefined;

function loadJax(gpu: GPU | undefined, dir: string): Promise<{ jax: Jax; devices: string[] }> {
  jaxLoaded ??= (async () => {
    provideNavigator(gpu);
    const require = createRequire(join(dir, 'package.json'));
    const jax = require('@jax-js/jax') as Jax;
    return { jax, devices: await jax.init() };
  })();
  return jaxLoaded;
}

/** The diagonal empirical Fisher of a ReLU/softmax MLP with jax-js ops, batched (manual back-propagation). */
async function jaxDiagonal(jax: Jax, model: Network, data: Dataset): Promise<Float32Array> {
  const { numpy: np, nn } = jax;
  const chunk = 4096;
  const params = mlpOf(model).flatMap((l) => [np.array(l.weight).reshape([l.out, l.in]), np.array(l.bias)]);
  const total = new Float64Array(model.parameterCount);
  const L = mlpOf(model).length;
  try {
    for (let s0 = 0; s0 < data.n; s0 += chunk) {
      const b = data.slice(s0, Math.min(data.n, s0 + chunk));
      let a = np.array(b.x).reshape([b.n, data.inputs]);
      const inputs: JaxArray[] = [];
      const zs: JaxArray[] = [];
      let logits: JaxArray | undefined;
      for (let l = 0; l < L; l++) {
        inputs.push(a.ref);
        const z = np.matmul(a, params[2 * l]!.ref.transpose()).add(params[2 * l + 1]!.ref);
        if (l + 1 < L) {
          zs.push(z.ref);
          a = nn.relu(z);
        } else logits = z;
      }
      let delta = nn.softmax(logits!, -1).sub(nn.oneHot(np.array(Int32Array.from(b.y), { dtype: np.int32 }), model.outputs));
      const blocks: JaxArray[] = [];
      for (let l = L - 1; l >= 0; l--) {
        const d2 = np.square(delta.ref);
        blocks.unshift(np.matmul(d2.ref.transpose(), np.square(inputs[l]!)).reshape([-1]), d2.sum(0));
        if (l > 0) delta = np.matmul(delta, params[2 * l]!.ref).mul(np.greater(zs[l - 1]!, 0).astype(np.float32));
        else delta.dispose();
      }
      const values = await np.concatenate(blocks, 0).data();
      for (let i = 0; i < values.length; i++) total[i]! += values[i]!;
    }
  } finally {
    for (const p of params) p.dispose();
  }
  return meanOf(total, data.n);
}

/** The per-sample formulation a jax user would write: vmap(grad(loss)) over the batch, squared and summed. */
async function jaxVmapGradDiagonal(jax: Jax, model: Network, data: Dataset, maxBindingBytes: number): Promise<Float32Array> {
  const { numpy: np, nn } = jax;
  // The per-sample gradients of a chunk must fit one storage binding: jax-js's WebGPU device
  // returns wrong numbers, silently, when they do not.
  const chunk = Math.max(1, Math.min(1024, Math.floor(maxBindingBytes / (4 * model.parameterCount))));
  const L = mlpOf(model).length;
  // ℓ(θ; x, y) for one sample: x [in], y the one-hot label [classes].
  const loss = (p: JaxArray[], x: JaxArray, y: JaxArray): JaxArray => {
    let a = x;
    for (let l = 0; l < L; l++) {
      const z = np.matmul(p[2 * l]!, a).add(p[2 * l + 1]!);
      a = l + 1 < L ? nn.relu(z) : z;
    }
    return nn.logSoftmax(a, -1).mul(y).sum(0).mul(np.array(Float32Array.of(-1)).reshape([]));
  };
  const perSample = jax.vmap(jax.grad(loss), [null, 0, 0]);
  const params = mlpOf(model).flatMap((l) => [np.array(l.weight).reshape([l.out, l.in]), np.array(l.bias)]);
  const total = new Float64Array(model.parameterCount);
  try {
    for (let s0 = 0; s0 < data.n; s0 += chunk) {
      const b = data.slice(s0, Math.min(data.n, s0 + chunk));
      const x = np.array(b.x).reshape([b.n, data.inputs]);
      const y = nn.oneHot(np.array(Int32Array.from(b.y), { dtype: np.int32 }), model.outputs).astype(np.float32);
      const grads = perSample(params.map((p) => p.ref), x, y);
      const squares = grads.map((g) => np.square(g).sum(0).reshape([-1]));
      const values = await np.concatenate(squares, 0).data();
      for (let i = 0; i < values.length; i++) total[i]! += values[i]!;
    }
  } finally {
    for (const p of params) p.dispose();
  }
  return meanOf(total, data.n);
}

/**
 * jax-js on one device. The vmap(grad) formulation materialises every
 * per-sample gradient and runs at about 1 GFLOP/s here; it is skipped where
 * that estimate exceeds `budgetSeconds`.
 */
export function jaxPeer(gpu: GpuDevice, device: 'wasm' | 'webgpu', dir: string, formulation: 'batched' | 'vmap' = 'batched', budgetSeconds = Infinity): Peer {
  return {
    name: `jax-js ${device === 'wasm' ? 'WebAssembly' : 'WebGPU'} (${formulation === 'batched' ? 'batched' : 'vmap(grad)'})`,
    async run(w: FisherWorkload, model: Network, data: Dataset) {
      const notMlp = mlpLayers(model);
      if (typeof notMlp === 'string') return { skipped: notMlp };
      if (w.kind !== 'empirical' || w.structure !== 'diag') return { skipped: 'written for the empirical diagonal only' };
      const estimate = workOf(w).flops / 1e9;
      if (formulation === 'vmap' && estimate > budgetSeconds) return { skipped: `estimated ${estimate.toFixed(0)} s at 1 GFLOP/s, over the ${budgetSeconds} s budget` };
      const { jax, devices } = await loadJax(gpu.gpu, dir);
      if (!devices.includes(device)) return { skipped: `jax-js has no ${device} device here (it found ${devices.join(', ')})` };
      jax.defaultDevice(device);
      const binding = gpu.limits.maxStorageBufferBindingSize;
      const run = formulation === 'batched' ? jaxDiagonal : (j: Jax, m: Network, d: Dataset) => jaxVmapGradDiagonal(j, m, d, binding);
      const w0 = performance.now();
      await run(jax, model, data);
      const warmup = (performance.now() - w0) / 1000;
      const t0 = performance.now();
      const values = await run(jax, model, data);
      return { values, seconds: (performance.now() - t0) / 1000, warmup };
    },
  };
}

/** The peers timed as whole processes (peer-process.ts): the comparison, jax-js on WebAssembly and TF.js on WebGPU, batched. */
export const PEER_PROCESSES = {
  'jax-wasm': 'jax-js WebAssembly (batched)',
  'tfjs-webgpu': 'TF.js WebGPU (batched)',
} as const;

export type PeerProcess = keyof typeof PEER_PROCESSES;

/**
 * A whole-process peer (peer-process.ts), loaded: jax-js's or TF.js's
 * library required and started on its device (`gpu`: Dawn's instance, for
 * TF.js's webgpu backend); the function it returns computes the batched
 * diagonal of `model`, its first call compiling what the peer compiles.
 */
export async function loadPeerProcess(peer: PeerProcess, model: Network, gpu?: GPU): Promise<(data: Dataset) => Promise<Float32Array>> {
  const notMlp = mlpLayers(model);
  if (typeof notMlp === 'string') throw new Error(notMlp);
  if (peer === 'jax-wasm') {
    const { jax, devices } = await loadJax(undefined, peersDir());
    if (!devices.includes('wasm')) throw new Error(`jax-js has no wasm device here (it found ${devices.join(', ')})`);
    jax.defaultDevice('wasm');
    return (data) => jaxDiagonal(jax, model, data);
  }
  if (!gpu) throw new Error("TF.js's webgpu backend needs Dawn's GPU instance");
  const tf = await loadTf(gpu, peersDir());
  if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not start its webgpu backend');
  await tf.ready();
  return (data) => tfFisher(tf, model, data, 'diag');
}
