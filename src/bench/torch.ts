/**
 * The PyTorch peer: bench/peers/torch_peer.py, run by a python3 that imports
 * torch, on CUDA where torch sees a GPU and on the CPU otherwise. The model
 * and data go to it as raw float32/int32 files in a temporary folder and the
 * Fisher comes back the same way; its own timing (after a warm-up, with CUDA
 * synchronised) is what counts. Where no python3 has torch, the peer is
 * reported as skipped with the reason.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Dataset } from '../model/data.js';
import type { Network } from '../model/network.js';
import { mlpLayers, mlpOf, type MlpLayer } from './mlp.js';
import { peersDir } from './peers.js';
import type { Peer } from './run.js';
import type { FisherWorkload } from './workloads.js';

export type TorchFormulation = 'batched' | 'vmap';

interface TorchInfo {
  python: string;
  version: string;
  /** 'cuda' or 'cpu': where the peer will run. */
  device: string;
}

/** The interpreters tried, in order: $FISHER_GPU_PYTHON, then python3 on PATH, then the system's. */
function pythonCandidates(): string[] {
  const env = process.env['FISHER_GPU_PYTHON'];
  return [...(env ? [env] : []), 'python3', '/usr/bin/python3'];
}

let found: TorchInfo | string | undefined;

/** The first python3 that imports torch, or why there is none. Asked once per process. */
export function findTorch(): TorchInfo | string {
  if (found !== undefined) return found;
  for (const python of pythonCandidates()) {
    try {
      const out = execFileSync(python, ['-c', 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 60_000,
      });
      const [version, device] = out.trim().split(/\s+/);
      if (version && device) return (found = { python, version, device });
    } catch {
      // this interpreter is missing or has no torch: try the next
    }
  }
  return (found = `no python3 with torch (tried ${pythonCandidates().join(', ')}; on Debian: apt install python3-torch)`);
}

/** The request's files: x [n, in] float32, y [n] int32, and W{l} [out, in] and b{l} [out] float32 (an MLP) or theta.f32 [P]. */
function writeInputs(folder: string, model: Network, data: Dataset, mlp: boolean): void {
  const f32 = (name: string, values: Float32Array) => writeFileSync(join(folder, name), new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  f32('x.f32', data.x);
  const y = Int32Array.from(data.y);
  writeFileSync(join(folder, 'y.i32'), new Uint8Array(y.buffer));
  if (!mlp) {
    f32('theta.f32', model.parameters());
    return;
  }
  mlpOf(model).forEach((l, k) => {
    f32(`W${k + 1}.f32`, l.weight);
    f32(`b${k + 1}.f32`, l.bias);
  });
}

/** Runs `formulation` on torch's device; skips where its estimate from a prefix exceeds `budgetSeconds`. */
export function torchPeer(formulation: TorchFormulation, budgetSeconds: number): Peer {
  const torch = findTorch();
  const where = typeof torch === 'string' ? '' : ` ${torch.version} ${torch.device === 'cuda' ? 'CUDA' : 'CPU'}`;
  return {
    name: `PyTorch${where} (${formulation === 'batched' ? 'batched' : 'vmap(grad)'})`,
    async run(w: FisherWorkload, model: Network, data: Dataset) {
      if (typeof torch === 'string') return { skipped: torch };
      if (w.kind !== 'empirical') return { skipped: 'the PyTorch formulations here compute the empirical kind only' };
      if (model.spec.likelihood.type !== 'categorical') return { skipped: 'written for a categorical likelihood' };
      if (w.structure !== 'diag' && w.structure !== 'full' && (w.structure !== 'kfac' || formulation !== 'batched')) {
        return { skipped: `the ${formulation} formulation here computes ${formulation === 'batched' ? 'diag, full and kfac' : 'diag and full'}` };
      }
      const layers = mlpLayers(model);
      // A ReLU MLP goes as its widths; any other network, and K-FAC, as its spec and θ (DESIGN.md §4).
      const mlp = w.structure !== 'kfac' && typeof layers !== 'string' && layers.every((l, k) => l.activation === (k + 1 < layers.length ? 'relu' : 'identity'));
      const folder = mkdtempSync(join(tmpdir(), 'fisher-gpu-torch-'));
      try {
        writeInputs(folder, model, data, mlp);
        const network = mlp ? { widths: [model.inputs, ...(layers as MlpLayer[]).map((l) => l.out)] } : { spec: model.specJson(), parameters: model.layout.entries.map((e) => ({ name: e.name, shape: e.shape })) };
        const request = {
          folder,
          ...network,
          n: data.n,
          structure: w.structure,
          kfac: 'expand',
          formulation,
          device: 'auto',
          budget_seconds: budgetSeconds,
        };
        writeFileSync(join(folder, 'request.json'), JSON.stringify(request));
        let stdout: string;
        try {
          ({ stdout } = await promisify(execFile)(torch.python, [join(peersDir(), 'torch_peer.py'), join(folder, 'request.json')], { encoding: 'utf8', maxBuffer: 1 << 24 }));
        } catch (e) {
          // Python's last line of stderr names the exception; the traceback above it is noise in a table.
          const stderr = String((e as { stderr?: string }).stderr ?? '').trim();
          throw new Error(stderr.split('\n').pop() || (e as Error).message);
        }
        const reply = JSON.parse(stdout.trim().split('\n').pop()!) as { seconds?: number; warmup?: number; skipped?: string; blas?: string; threads?: number };
        if (reply.skipped !== undefined) return { skipped: reply.skipped };
        const bytes = readFileSync(join(folder, 'fisher.f32'));
        const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
        return { values, seconds: reply.seconds!, warmup: reply.warmup!, note: `BLAS ${reply.blas}, ${reply.threads} threads` };
      } finally {
        rmSync(folder, { recursive: true, force: true });
      }
    },
  };
}
