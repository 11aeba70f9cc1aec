/**
 * The parameter-forecasting Fisher (a Gaussian noise model on a model's
 * outputs, as in survey forecasts): with J_n = ∂μ(x_n)/∂θ the Jacobian of
 * the C outputs at data point n and Σ the noise covariance,
 *
 *   F = Σ_n J_nᵀ Σ⁻¹ J_n                                    [P, P]
 *
 * (a sum: each point adds information), and the forecast errors: the
 * marginalised σ_i = √((F⁻¹)_ii), every other parameter free, and the
 * conditional σ_i = 1/√F_ii, every other parameter fixed. The inverse is a
 * float64 Cholesky on the host; a Fisher that leaves a direction of θ
 * unconstrained is a clear error, not an infinite error bar.
 */
import { InputError } from '../layers/errors.js';
import { choleskyFactor, choleskySolveFactored, NotPositiveDefiniteError } from '../linalg/cholesky.js';

/** The noise: standard deviations σ_c of independent outputs [C], or a covariance Σ [C, C]. */
export type ForecastNoise = { sigma: ArrayLike<number> } | { covariance: ArrayLike<number> };

export interface Forecast {
  /** F [P, P] row-major. */
  fisher: Float64Array;
  /** √((F⁻¹)_ii), [P]. */
  marginalErrors: Float64Array;
  /** 1/√F_ii, [P]. */
  conditionalErrors: Float64Array;
}

/** Σ⁻¹ [C, C] from the noise, checked. */
function precision(noise: ForecastNoise, c: number): Float64Array {
  const out = new Float64Array(c * c);
  if ('sigma' in noise) {
    if (noise.sigma.length !== c) throw new InputError(`the noise has ${noise.sigma.length} standard deviations for ${c} outputs`);
    for (let i = 0; i < c; i++) {
      const s = noise.sigma[i]!;
      if (!(s > 0) || !Number.isFinite(s)) throw new InputError(`noise standard deviation ${i} is ${s}; each must be a positive number`);
      out[i * c + i] = 1 / (s * s);
    }
    return out;
  }
  if (noise.covariance.length !== c * c) throw new InputError(`the noise covariance has ${noise.covariance.length} entries for ${c} outputs, expected ${c}²`);
  for (let i = 0; i < c; i++) for (let j = 0; j < i; j++) {
    const [a, b] = [noise.covariance[i * c + j]!, noise.covariance[j * c + i]!];
    if (Math.abs(a - b) > 1e-12 * Math.max(Math.abs(a), Math.abs(b), 1e-300)) throw new InputError(`the noise covariance is not symmetric at (${i}, ${j}): ${a} and ${b}`);
  }
  let l: Float64Array;
  try {
    l = choleskyFactor(noise.covariance, c);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new InputError(`the noise covariance is not positive definite (pivot ${e.pivot})`);
    throw e;
  }
  for (let j = 0; j < c; j++) {
    const e = new Float64Array(c);
    e[j] = 1;
    const column = choleskySolveFactored(l, c, e);
    for (let i = 0; i < c; i++) out[i * c + j] = column[i]!;
  }
  return out;
}

/**
 * The forecast of `n` data points from their Jacobians J [n, C, P]
 * (row-major) and the noise.
 */
export function forecast(jacobian: ArrayLike<number>, n: number, c: number, p: number, noise: ForecastNoise): Forecast {
  if (jacobian.length !== n * c * p) throw new InputError(`the Jacobian has ${jacobian.length} values, expected N·C·P = ${n}·${c}·${p}`);
  const inv = precision(noise, c);
  const f = new Float64Array(p * p);
  const weighted = new Float64Array(c * p);
  for (let s = 0; s < n; s++) {
    const j = (r: number, q: number) => jacobian[(s * c + r) * p + q]!;
    // Σ⁻¹ J_n, then J_nᵀ (Σ⁻¹ J_n) into F.
    weighted.fill(0);
    for (let r = 0; r < c; r++) for (let t = 0; t < c; t++) {
      const w = inv[r * c + t]!;
      if (w === 0) continue;
      for (let q = 0; q < p; q++) weighted[r * p + q]! += w * j(t, q);
    }
    for (let r = 0; r < c; r++) for (let a = 0; a < p; a++) {
      const x = j(r, a);
      if (!Number.isFinite(x)) throw new InputError(`the Jacobian holds ${x} at [${s}, ${r}, ${a}]`);
      if (x === 0) continue;
      for (let b = 0; b < p; b++) f[a * p + b]! += x * weighted[r * p + b]!;
    }
  }
  let l: Float64Array;
  try {
    l = choleskyFactor(f, p);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new InputError(`the Fisher is singular (pivot ${e.pivot}): the data do not constrain every parameter, so the marginalised errors are infinite; add data or fix a parameter`);
    throw e;
  }
  const marginalErrors = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    const e = new Float64Array(p);
    e[i] = 1;
    marginalErrors[i] = Math.sqrt(choleskySolveFactored(l, p, e)[i]!);
  }
  const conditionalErrors = Float64Array.from({ length: p }, (_, i) => 1 / Math.sqrt(f[i * p + i]!));
  return { fisher: f, marginalErrors, conditionalErrors };
}
