import { describe, expect, it } from 'vitest';
import type { Tensor } from '../../src/io/dtypes.js';
import { ACTIVATIONS, ACTIVATION_NAMES } from '../../src/layers/activations.js';
import { Dataset } from '../../src/model/data.js';
import { assertFinite, InputError } from '../../src/layers/errors.js';
import { LIKELIHOOD_TYPES, likelihoodOf } from '../../src/model/likelihoods.js';
import { Network } from '../../src/model/network.js';
import { parseSpec } from '../../src/model/spec.js';
import { erf } from '../../src/linalg/special.js';
import { expectClose } from '../helpers/compare.js';
import { mlpSpec } from '../helpers/fixtures.js';

const lin = (name: string, i: number, o: number) => ({ type: 'linear', name, in: i, out: o });
const cat = { type: 'categorical' };

describe('model spec', () => {
  it('parses layers with their activations and the parameter layout in PyTorch order', () => {
    const m = Network.random({ layers: [lin('fc1', 3, 4), { type: 'gelu' }, lin('fc2', 4, 2)], likelihood: cat }, 1);
    expect(m.layers.map((l) => [l.type, l.name ?? null])).toEqual([
      ['linear', 'fc1'],
      ['gelu', null],
      ['linear', 'fc2'],
    ]);
    expect(m.inputShape).toEqual([3]);
    expect(m.layout.entries.map((e) => [e.name, e.offset, e.size])).toEqual([
      ['fc1.weight', 0, 12],
      ['fc1.bias', 12, 4],
      ['fc2.weight', 16, 8],
      ['fc2.bias', 24, 2],
    ]);
    expect(m.parameterCount).toBe(26);
    // θ puts W[o, i] at offset + o·in + i.
    expect(m.parameters()[1 * 3 + 2]).toBe(m.tensor('fc1.weight')[1 * 3 + 2]);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an object', [], /expected a JSON object/],
    ['no layers', { layers: [], likelihood: cat }, /non-empty/],
    ['an unknown layer type', { layers: [lin('a', 2, 2), { type: 'conv3d' }], likelihood: cat }, /layers\[1\]: unknown layer type "conv3d" \(known: linear, conv2d, .*relu/],
    ['mismatched sizes', { layers: [lin('a', 2, 3), { type: 'relu' }, lin('b', 4, 2)], likelihood: cat }, /layers\[2\] linear \("b"\): linear takes in = 4 on its input's last dimension, but its input has shape \[3\]/],
    ['an activation first without an input shape', { layers: [{ type: 'relu' }, lin('a', 2, 2)], likelihood: cat }, /"input" .* is needed unless the first layer is linear/],
    ['an activation after the output', { layers: [lin('a', 2, 2), { type: 'relu' }], likelihood: cat }, /output layer/],
    ['a zero width', { layers: [lin('a', 0, 2)], likelihood: cat }, /"in" must be an integer ≥ 1, got 0/],
    ['an unknown field', { layers: [{ ...lin('a', 2, 2), activation: 'relu' }], likelihood: cat }, /unknown field "activation" for linear \(known: type, name, in, out, bias\)/],
    ['a non-flat output', { input: [2, 3], layers: [lin('a', 3, 2)], likelihood: cat }, /gives \[2, 2\] per sample; the likelihood needs a flat output/],
    ['no parameters', { input: [3], layers: [{ type: 'flatten' }], likelihood: cat }, /no parameters/],
    ['a duplicate name', { layers: [lin('a', 2, 2), lin('a', 2, 2)], likelihood: cat }, /used twice/],
    ['an unknown likelihood', { layers: [lin('a', 2, 2)], likelihood: { type: 'poisson' } }, /unknown likelihood "poisson"/],
    ['a negative sigma', { layers: [lin('a', 2, 2)], likelihood: { type: 'gaussian', sigma: -1 } }, /sigma/],
    ['categorical with one output', { layers: [lin('a', 2, 1)], likelihood: cat }, /at least 2 outputs/],
  ];
  for (const [what, spec, message] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => parseSpec(spec)).toThrow(InputError);
      expect(() => parseSpec(spec)).toThrow(message);
    });
  }
});

describe('weights and data', () => {
  const spec = mlpSpec([3, 4, 2], 'relu', { type: 'categorical' });
  const good = () => Network.random(spec, 3).tensors();
  const withTensor = (name: string, t: Tensor | undefined) => {
    const m = good();
    if (t) m.set(name, t);
    else m.delete(name);
    return m;
  };
  const cases: [string, Map<string, Tensor>, RegExp][] = [
    ['a missing tensor', withTensor('fc2.bias', undefined), /missing tensor "fc2.bias" of shape \[2\]/],
    ['a wrong shape', withTensor('fc1.weight', { dtype: 'F32', shape: [3, 4], data: new Float32Array(12) }), /"fc1.weight" has shape \[3, 4\], expected \[4, 3\]/],
    ['a wrong dtype', withTensor('fc1.bias', { dtype: 'F64', shape: [4], data: new Float64Array(4) }), /"fc1.bias" is F64, expected F32/],
    ['an unexpected tensor', withTensor('fc3.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) }), /unexpected tensor "fc3.weight"/],
    ['a NaN', withTensor('fc1.weight', { dtype: 'F32', shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => (i === 7 ? NaN : 0)) }), /"fc1.weight" holds NaN at index \[2, 1\]/],
    ['an Inf', withTensor('fc2.bias', { dtype: 'F32', shape: [2], data: new Float32Array([0, -Infinity]) }), /"fc2.bias" holds -Infinity at index 1/],
  ];
  for (const [what, tensors, message] of cases) {
    it(`rejects weights with ${what}`, () => expect(() => Network.fromSpec(spec, tensors)).toThrow(message));
  }

  const model = Network.random(spec, 3);
  const x = (n: number, w = 3) => ({ dtype: 'F32' as const, shape: [n, w], data: new Float32Array(n * w) });
  const dataCases: [string, Record<string, Tensor>, RegExp][] = [
    ['no x', { y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /missing tensor "x"/],
    ['the wrong width', { x: x(2, 5), y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" has shape \[2, 5\], expected \[N, 3\]/],
    ['a label out of range', { x: x(2), y: { dtype: 'I64', shape: [2], data: new BigInt64Array([0n, 2n]) } }, /index 1: label 2 is not a class in \[0, 2\)/],
    ['a negative label', { x: x(2), y: { dtype: 'I32', shape: [2], data: new Int32Array([-1, 0]) } }, /label -1/],
    ['float labels', { x: x(2), y: { dtype: 'F32', shape: [2], data: new Float32Array(2) } }, /must be I32 or I64/],
    ['labels of the wrong length', { x: x(2), y: { dtype: 'I32', shape: [3], data: new Int32Array(3) } }, /expected \[2\]/],
    ['a NaN input', { x: { dtype: 'F32', shape: [2, 3], data: new Float32Array([0, 0, 0, 0, NaN, 0]) }, y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" holds NaN at index \[1, 1\]/],
    ['x shorter than its shape', { x: { dtype: 'F32', shape: [2, 3], data: new Float32Array(5) }, y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" must hold a Float32Array of 6 values for its shape \[2, 3\], got 5/],
    ['x not float32', { x: { dtype: 'F32', shape: [2, 3], data: new Float64Array(6) }, y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" must hold a Float32Array of 6 values/],
  ];
  for (const [what, tensors, message] of dataCases) {
    it(`rejects data with ${what}`, () => expect(() => Dataset.fromTensors(new Map(Object.entries(tensors)), model)).toThrow(message));
  }

  it('names the first NaN or ±Inf in any kind of array, and passes finite ones however large', () => {
    for (const make of [(v: number[]) => Float32Array.from(v), (v: number[]) => Float64Array.from(v), (v: number[]) => v]) {
      const finite = make([0, -0, 1, -3.4e38, 3.4e38, 1e-45]);
      expect(() => assertFinite(make(Array.from({ length: 1000 }, () => 3.4e38)), 'big')).not.toThrow();
      expect(() => assertFinite(finite, 't')).not.toThrow();
      for (const [bad, at] of [[NaN, 0], [Infinity, 3], [-Infinity, 5]] as const) {
        const v = Array.from(finite);
        v[at] = bad;
        v.push(NaN);
        expect(() => assertFinite(make(v), 't', [7])).toThrow(new InputError(`t holds ${bad} at index ${at}`));
      }
    }
  });

  it('slices rows as views that are datasets in full', () => {
    const d = new Dataset(Float32Array.from({ length: 12 }, (_, i) => i), Float32Array.of(0, 1, 0, 1), 4, 3, 1);
    const part = d.slice(1, 9);
    expect(part).toBeInstanceOf(Dataset);
    expect([part.n, part.inputs, part.targetWidth]).toEqual([3, 3, 1]);
    expect(Array.from(part.x)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(part.y)).toEqual([1, 0, 1]);
    expect(part.x.buffer).toBe(d.x.buffer);
    expect(() => part.check(model)).not.toThrow();
    expect(Array.from(part.slice(1, 2).x)).toEqual([6, 7, 8]);
    expect(() => d.slice(3, 2)).toThrow(RangeError);
  });

  it('takes values targets for gaussian and bernoulli, checked', () => {
    const g = Network.random(mlpSpec([3, 2], 'relu', { type: 'gaussian', sigma: 2 }), 1);
    const d = Dataset.fromTensors(new Map([['x', x(2)], ['y', { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }]]), g);
    expect(Array.from(d.y)).toEqual([1, 2, 3, 4]);
    const b = Network.random(mlpSpec([3, 2], 'relu', { type: 'bernoulli' }), 1);
    expect(() => Dataset.fromTensors(new Map([['x', x(1)], ['y', { dtype: 'F32', shape: [1, 2], data: new Float32Array([1, 3]) }]]), b)).toThrow(/not in \[0, 1\]/);
    expect(() => Dataset.fromTensors(new Map([['x', x(2)], ['y', { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }]]), g)).toThrow(/"y" must hold a Float32Array of 4 values for its shape \[2, 2\], got 3/);
    expect(() => Dataset.fromTensors(new Map([['x', x(2)], ['y', { dtype: 'F32', shape: [2, 2], data: new Float32Array([0, 1, Infinity, 2]) }]]), g)).toThrow(/"y" holds Infinity at index \[1, 0\]/);
  });
});

describe('activation and likelihood tables', () => {
  it('erf matches reference values to 1e-14', () => {
    // Values from Abramowitz & Stegun table 7.1 and high-precision tables.
    const ref: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [2.5, 0.9995930479825550],
      [3, 0.9999779095030014],
      [4, 0.9999999845827421],
      [-1.5, -0.9661051464753108],
    ];
    for (const [x, e] of ref) expect(Math.abs(erf(x) - e)).toBeLessThan(1e-14);
  });

  it('every derivative matches a central difference', () => {
    for (const name of ACTIVATION_NAMES) {
      const a = ACTIVATIONS[name];
      const zs = [-3.1, -0.7, -0.01, 0.013, 0.4, 2.9];
      const h = 1e-6;
      expectClose(
        zs.map((z) => a.df(z)),
        zs.map((z) => (a.f(z + h) - a.f(z - h)) / (2 * h)),
        { rtol: 1e-7, atol: 1e-8 },
        `${name}'`,
      );
    }
  });

  it('every output gradient matches a central difference of the loss, and H = E[∇ℓ ∇ℓᵀ]', () => {
    const f = [0.3, -1.2, 0.8];
    for (const type of LIKELIHOOD_TYPES) {
      const lik = likelihoodOf(type === 'gaussian' ? { type, sigma: 0.7 } : { type });
      const y = type === 'categorical' ? [2] : type === 'bernoulli' ? [1, 0, 1] : [0.1, 0.2, -0.3];
      const g = new Float64Array(3);
      lik.outputGradient(f, y, g);
      const h = 1e-6;
      const fd = f.map((_, o) => {
        const up = f.slice();
        const dn = f.slice();
        up[o]! += h;
        dn[o]! -= h;
        return (lik.loss(up, y) - lik.loss(dn, y)) / (2 * h);
      });
      expectClose(g, fd, { rtol: 1e-7, atol: 1e-9 }, `${type} ∂ℓ/∂f`);
      if (lik.outcomes) {
        const H = new Float64Array(9);
        for (const { y: yy, p } of lik.outcomes(f)) {
          lik.outputGradient(f, yy, g);
          for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) H[a * 3 + b]! += p * g[a]! * g[b]!;
        }
        expectClose(H, lik.outputFisher(f), { rtol: 1e-12, atol: 1e-15 }, `${type} H`);
      }
    }
  });
});
