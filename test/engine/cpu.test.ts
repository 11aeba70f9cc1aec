/**
 * The reference path against closed forms and against the identities of the
 * Fisher (DESIGN.md §1), on tiny models where expectations over y are taken
 * exactly by enumerating outcomes.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine, CpuModel } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import type { DenseFisher } from '../../src/fisher/structures/full.js';
import type { ActivationName } from '../../src/layers/activations.js';
import type { LikelihoodSpec } from '../../src/model/likelihoods.js';
import type { Network } from '../../src/model/network.js';
import { Rng } from '../../src/model/random.js';
import { expectClose, relativeError } from '../helpers/compare.js';
import { caseModel } from '../helpers/cases.js';
import { randomData, randomModel } from '../helpers/fixtures.js';

/** E_{y~p(·|x)}[g gᵀ] and E[g] by enumeration, and the outcome list. */
function trueFisherAt(cpu: CpuModel, x: Float32Array): { F: Float64Array; mean: Float64Array } {
  const p = cpu.model.parameterCount;
  const t = cpu.trace(x);
  const f = cpu.output(t);
  const F = new Float64Array(p * p);
  const mean = new Float64Array(p);
  const g = new Float64Array(p);
  for (const { y, p: prob } of cpu.model.likelihood.outcomes!(f)) {
    cpu.sampleGradient(x, y, g);
    for (let a = 0; a < p; a++) {
      mean[a]! += prob * g[a]!;
      for (let b = 0; b < p; b++) F[a * p + b]! += prob * g[a]! * g[b]!;
    }
  }
  return { F, mean };
}

const mlp = (widths: number[], act: ActivationName, lik: LikelihoodSpec) => () => randomModel(widths, act, lik, 11);
/** Smooth models (no ReLU, no max): second derivatives exist everywhere. */
const smooth: [string, () => Network][] = [
  ['categorical, tanh', mlp([3, 4, 3], 'tanh', { type: 'categorical' })],
  ['categorical, gelu, two hidden layers', mlp([2, 3, 3, 4], 'gelu', { type: 'categorical' })],
  ['bernoulli, sigmoid', mlp([3, 4, 2], 'sigmoid', { type: 'bernoulli' })],
  [
    'a small CNN with a residual block, layer norm and average pooling',
    () =>
      caseModel(
        {
          name: 'smooth CNN',
          spec: {
            input: [1, 5, 5],
            layers: [
              { type: 'conv2d', name: 'c1', in_channels: 1, out_channels: 2, kernel_size: 3, padding: 1 },
              { type: 'tanh' },
              { type: 'residual', layers: [{ type: 'conv2d', name: 'r.c', in_channels: 2, out_channels: 2, kernel_size: 3, padding: 1 }, { type: 'gelu' }] },
              { type: 'layernorm', name: 'norm', normalized_shape: [2, 5, 5] },
              { type: 'avgpool2d', kernel_size: 2, stride: 2, padding: 1 },
              { type: 'flatten' },
              { type: 'linear', name: 'head', in: 18, out: 3 },
            ],
            likelihood: { type: 'categorical' },
          },
          n: 1,
          batch: 1,
        },
        11,
      ),
  ],
];

describe('CPU reference: closed forms', () => {
  it('a single linear layer with softmax: empirical F = mean of (p − e_y)(p − e_y)ᵀ ⊗ x̄x̄ᵀ, true F = (diag p − ppᵀ) ⊗ x̄x̄ᵀ', async () => {
    const model = randomModel([4, 3], 'identity', { type: 'categorical' }, 5);
    const data = randomData(model, 9, 6);
    const F = (await fisher(new CpuEngine(), model, data, { structure: 'full' })) as DenseFisher;
    const P = model.parameterCount;
    const W = { weight: model.tensor('fc1.weight'), bias: model.tensor('fc1.bias') };
    // Index of W[o, i] (i < 4) or b[o] (i = 4) in θ.
    const at = (o: number, i: number) => (i < 4 ? o * 4 + i : 12 + o);
    const empirical = new Float64Array(P * P);
    const trueF = new Float64Array(P * P);
    for (let s = 0; s < data.n; s++) {
      const xbar = [...data.x.subarray(s * 4, s * 4 + 4), 1];
      const z = [0, 1, 2].map((o) => W.bias[o]! + [0, 1, 2, 3].reduce((acc, i) => acc + W.weight[o * 4 + i]! * xbar[i]!, 0));
      const zmax = Math.max(...z);
      const e = z.map((v) => Math.exp(v - zmax));
      const p = e.map((v) => v / e.reduce((a, b) => a + b, 0));
      const r = p.map((v, o) => v - (o === data.y[s] ? 1 : 0));
      for (let o = 0; o < 3; o++)
        for (let q = 0; q < 3; q++)
          for (let i = 0; i < 5; i++)
            for (let j = 0; j < 5; j++) {
              empirical[at(o, i) * P + at(q, j)]! += (r[o]! * r[q]! * xbar[i]! * xbar[j]!) / data.n;
              trueF[at(o, i) * P + at(q, j)]! += (((o === q ? p[o]! : 0) - p[o]! * p[q]!) * xbar[i]! * xbar[j]!) / data.n;
            }
    }
    expectClose(F.values, empirical, { rtol: 1e-12, atol: 1e-14 }, 'empirical Fisher');
    const cpu = new CpuModel(model);
    const enumerated = new Float64Array(P * P);
    for (let s = 0; s < data.n; s++) {
      const { F: Fs } = trueFisherAt(cpu, data.x.subarray(s * 4, s * 4 + 4));
      for (let k = 0; k < Fs.length; k++) enumerated[k]! += Fs[k]! / data.n;
    }
    expectClose(enumerated, trueF, { rtol: 1e-12, atol: 1e-14 }, 'true Fisher');
  });

  it('reduction sum is N times mean', async () => {
    const model = randomModel([5, 4, 3], 'relu', { type: 'categorical' }, 1);
    const data = randomData(model, 7, 2);
    const mean = await fisher(new CpuEngine(), model, data);
    const sum = await fisher(new CpuEngine(), model, data, { reduction: 'sum' });
    expectClose(sum.diagonal(), mean.diagonal().map((v) => v * 7), { rtol: 1e-14 }, 'sum');
  });
});

/** The model's θ in float64: finite differences move it by steps float32 cannot hold. */
function theta64(model: Network): Float64Array {
  return Float64Array.from(model.parameters());
}

describe('CPU reference: the kinds of Fisher', () => {
  const cases: [string, LikelihoodSpec][] = [
    ['categorical', { type: 'categorical' }],
    ['bernoulli', { type: 'bernoulli' }],
    ['gaussian', { type: 'gaussian', sigma: 0.6 }],
  ];
  for (const [name, lik] of cases) {
    it(`${name}: exact equals the true Fisher E_y[g gᵀ], and mc converges to it`, async () => {
      const model = randomModel([3, 4, 2], 'tanh', lik, 21);
      const data = randomData(model, 3, 22);
      const P = model.parameterCount;
      const exact = (await fisher(new CpuEngine(), model, data, { kind: 'exact', structure: 'full' })) as DenseFisher;
      if (model.likelihood.outcomes) {
        const cpu = new CpuModel(model);
        const enumerated = new Float64Array(P * P);
        for (let s = 0; s < data.n; s++) {
          const { F } = trueFisherAt(cpu, data.x.subarray(s * 3, s * 3 + 3));
          for (let k = 0; k < F.length; k++) enumerated[k]! += F[k]! / data.n;
        }
        expectClose(exact.values, enumerated, { rtol: 1e-12, atol: 1e-14 }, 'exact vs enumeration');
      }
      // M = 4000 label draws: a relative error of order 1/√M.
      const mc = (await fisher(new CpuEngine(), model, data, { kind: 'mc', samples: 4000, seed: 3, structure: 'full' })) as DenseFisher;
      const err = relativeError(mc.values, exact.values);
      expect(err).toBeLessThan(0.06);
      expect(mc.info).toMatchObject({ kind: 'mc', samples: 4000, seed: 3 });
      // A seed fixes the draws.
      const again = (await fisher(new CpuEngine(), model, data, { kind: 'mc', samples: 4000, seed: 3, structure: 'full' })) as DenseFisher;
      expect(again.values).toEqual(mc.values);
    });
  }

  it('rejects samples for kinds other than mc', async () => {
    const model = randomModel([3, 2], 'tanh', { type: 'categorical' }, 1);
    await expect(fisher(new CpuEngine(), model, randomData(model, 2, 1), { kind: 'exact', samples: 4 })).rejects.toThrow(/samples applies to kind "mc" only/);
  });
});

describe('CPU reference: identities of the Fisher', () => {
  for (const [name, build] of smooth) {
    describe(name, () => {
      const model = build();
      const lik = model.likelihood.spec;
      const P = model.parameterCount;
      const theta = theta64(model);
      const rng = new Rng(12);
      const x = rng.normals(model.inputs);
      const cpu = new CpuModel(model, theta);
      const at = (t: Float64Array) => new CpuModel(model, t);

      it('the gradient matches central differences of the loss', () => {
        const y = lik.type === 'categorical' ? [1] : Array.from({ length: model.outputs }, (_, o) => o % 2);
        const g = new Float64Array(P);
        cpu.sampleGradient(x, y, g);
        const h = 1e-6;
        const fd = Array.from({ length: P }, (_, j) => {
          const up = theta.slice();
          const dn = theta.slice();
          up[j]! += h;
          dn[j]! -= h;
          return (at(up).sampleLoss(x, y) - at(dn).sampleLoss(x, y)) / (2 * h);
        });
        expectClose(g, fd, { rtol: 1e-6, atol: 1e-8 }, 'gradient');
      });

      it('the score has mean zero under the model', () => {
        const { mean } = trueFisherAt(cpu, x);
        expectClose(mean, new Float64Array(P), { rtol: 0, atol: 1e-13 }, 'E[∇ log p]');
      });

      it('F = E[g gᵀ] equals minus the expected Hessian of log p', () => {
        const { F } = trueFisherAt(cpu, x);
        // E_y[∇²ℓ] by central differences of the float64 gradient, y ~ p(·|x, θ) held fixed.
        const t = cpu.trace(x);
        const outcomes = model.likelihood.outcomes!(cpu.output(t));
        const H = new Float64Array(P * P);
        const h = 1e-5;
        const gUp = new Float64Array(P);
        const gDn = new Float64Array(P);
        for (let j = 0; j < P; j++) {
          const up = theta.slice();
          const dn = theta.slice();
          up[j]! += h;
          dn[j]! -= h;
          for (const { y, p } of outcomes) {
            at(up).sampleGradient(x, y, gUp);
            at(dn).sampleGradient(x, y, gDn);
            for (let i = 0; i < P; i++) H[i * P + j]! += (p * (gUp[i]! - gDn[i]!)) / (2 * h);
          }
        }
        expectClose(H, F, { rtol: 1e-5, atol: 1e-8 }, '−E[∇² log p]');
      });

      it('KL(p_θ ‖ p_θ+εd) ≈ ½ ε² dᵀ F d, with an O(ε³) remainder', () => {
        const { F } = trueFisherAt(cpu, x);
        const d = Float64Array.from(rng.normals(P));
        let dFd = 0;
        for (let a = 0; a < P; a++) for (let b = 0; b < P; b++) dFd += d[a]! * F[a * P + b]! * d[b]!;
        const t = cpu.trace(x);
        const outcomes = model.likelihood.outcomes!(cpu.output(t));
        const kl = (eps: number) => {
          const moved = at(theta.map((v, i) => v + eps * d[i]!));
          return outcomes.reduce((s, { y, p }) => s + p * (moved.sampleLoss(x, y) - cpu.sampleLoss(x, y)), 0);
        };
        const rel = (eps: number) => Math.abs(kl(eps) / (0.5 * eps * eps * dFd) - 1);
        expect(rel(1e-3)).toBeLessThan(1e-2);
        // Halving ε halves the relative remainder (it is O(ε)): the quadratic term is exactly ½dᵀFd.
        const ratio = rel(2e-3) / rel(1e-3);
        expect(ratio).toBeGreaterThan(1.6);
        expect(ratio).toBeLessThan(2.4);
      });
    });
  }
});
