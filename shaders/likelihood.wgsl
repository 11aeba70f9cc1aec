// The likelihood head: the output gradient δ = ∂ℓ/∂f of ℓ = −log p(y | f)
// for each sample, f the network output (logits or mean), one invocation per
// sample. Three entry points, one per source of labels (the Fisher kinds):
//
//   output_gradient          y from the data (empirical)
//   sampled_output_gradient  ŷ ~ p(· | f) from counter-based uniforms (mc)
//   factor_output_gradient   column c of S, S Sᵀ = H the output Fisher (exact)
//
//   categorical  δ = softmax(f) − onehot(y)    y: a class label (as f32)      S = diag(√p) − p √pᵀ
//   gaussian     δ = (f − y) / σ²               y: one value per output        S = I / σ
//   bernoulli    δ = sigmoid(f) − y             y: one value in [0, 1] each    S = diag(√(p(1 − p)))
//
// The host learns the codes from the LIK_* constants (by name: the likelihood
// "bernoulli" is LIK_BERNOULLI). The sampling recipe and the uniforms are the
// same as the reference path's (src/model/likelihoods.ts, random.ts).

const LIK_CATEGORICAL: u32 = 0u;
const LIK_GAUSSIAN: u32 = 1u;
const LIK_BERNOULLI: u32 = 2u;

const TWO_PI: f32 = 6.28318530717958648;

override WG: u32 = 64u;
override LIKELIHOOD: u32 = 0u;

struct Dims {
  n: u32,             // samples
  outputs: u32,       // width of f and δ
  target_width: u32,  // 1 for labels, else outputs
  inv_variance: f32,  // 1/σ² (gaussian), else unused
  seed: u32,          // sampled: the seed,
  first_sample: u32,  //   the dataset index of this batch's first sample,
  draw: u32,          //   and which of the M label draws
  column: u32,        // factor: which column of S
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;

// PCG's output hash (Jarzynski & Olano 2020), as pcgHash in random.ts.
fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// Uniform in [0, 1): draw j of this label draw of batch sample s (24 bits, exact in f32).
fn uniform01(s: u32, j: u32) -> f32 {
  var h = pcg_hash(dims.seed);
  h = pcg_hash(h ^ (dims.first_sample + s));
  h = pcg_hash(h ^ dims.draw);
  h = pcg_hash(h ^ j);
  return f32(h >> 8u) / 16777216.0;
}

fn sigmoid(z: f32) -> f32 {
  return 1.0 / (1.0 + exp(-z));
}

// (max f, Σ exp(f − max)) of a row: softmax(f)_o = exp(f_o − max) / Σ.
fn softmax_stats(row: u32) -> vec2f {
  var fmax = f[row];
  for (var o = 1u; o < dims.outputs; o++) { fmax = max(fmax, f[row + o]); }
  var total = 0.0;
  for (var o = 0u; o < dims.outputs; o++) { total += exp(f[row + o] - fmax); }
  return vec2f(fmax, total);
}

fn softmax_at(row: u32, o: u32, stats: vec2f) -> f32 {
  return exp(f[row + o] - stats.x) / stats.y;
}

// δ = softmax(f) − onehot(label).
fn categorical_gradient(row: u32, label: u32) {
  let stats = softmax_stats(row);
  for (var o = 0u; o < dims.outputs; o++) {
    delta[row + o] = softmax_at(row, o, stats) - select(0.0, 1.0, o == label);
  }
}

@compute @workgroup_size(WG)
fn output_gradient(@builtin(global_invocation_id) id: vec3u) {
  let s = id.x;
  if (s >= dims.n) { return; }
  let row = s * dims.outputs;
  switch LIKELIHOOD {
    case LIK_CATEGORICAL: { categorical_gradient(row, u32(targets[s])); }
    case LIK_GAUSSIAN: {
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = (f[row + o] - targets[s * dims.target_width + o]) * dims.inv_variance;
      }
    }
    default: {  // LIK_BERNOULLI
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = sigmoid(f[row + o]) - targets[s * dims.target_width + o];
      }
    }
  }
}

@compute @workgroup_size(WG)
fn sampled_output_gradient(@builtin(global_invocation_id) id: vec3u) {
  let s = id.x;
  if (s >= dims.n) { return; }
  let row = s * dims.outputs;
  switch LIKELIHOOD {
    case LIK_CATEGORICAL: {
      // Inverse CDF: the first class whose cumulative probability exceeds u.
      let stats = softmax_stats(row);
      let u = uniform01(s, 0u);
      var label = dims.outputs - 1u;
      var cumulative = 0.0;
      for (var o = 0u; o < dims.outputs; o++) {
        cumulative += softmax_at(row, o, stats);
        if (u < cumulative) { label = o; break; }
      }
      categorical_gradient(row, label);
    }
    case LIK_GAUSSIAN: {
      // ŷ = f + σ z with z by Box–Muller from draws 2o, 2o + 1: δ = (f − ŷ)/σ² = −z/σ.
      for (var o = 0u; o < dims.outputs; o++) {
        let z = sqrt(-2.0 * log(1.0 - uniform01(s, 2u * o))) * cos(TWO_PI * uniform01(s, 2u * o + 1u));
        delta[row + o] = -z * sqrt(dims.inv_variance);
      }
    }
    default: {  // LIK_BERNOULLI: ŷ_o = 1 when u_o < p_o
      for (var o = 0u; o < dims.outputs; o++) {
        let p = sigmoid(f[row + o]);
        delta[row + o] = p - select(0.0, 1.0, uniform01(s, o) < p);
      }
    }
  }
}

@compute @workgroup_size(WG)
fn factor_output_gradient(@builtin(global_invocation_id) id: vec3u) {
  let s = id.x;
  if (s >= dims.n) { return; }
  let row = s * dims.outputs;
  let c = dims.column;
  switch LIKELIHOOD {
    case LIK_CATEGORICAL: {  // √p_c (e_c − p)
      let stats = softmax_stats(row);
      let r = sqrt(softmax_at(row, c, stats));
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = r * (select(0.0, 1.0, o == c) - softmax_at(row, o, stats));
      }
    }
    case LIK_GAUSSIAN: {  // e_c / σ
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = select(0.0, sqrt(dims.inv_variance), o == c);
      }
    }
    default: {  // LIK_BERNOULLI: e_c √(p_c (1 − p_c))
      for (var o = 0u; o < dims.outputs; o++) {
        let p = sigmoid(f[row + o]);
        delta[row + o] = select(0.0, sqrt(p * (1.0 - p)), o == c);
      }
    }
  }
}
