// The likelihood head: the output gradient δ = ∂ℓ/∂f of ℓ = −log p(y | f)
// for each sample, f the network output (logits or mean), one invocation per
// sample. The host learns the codes from the LIK_* constants (by name: the
// likelihood "bernoulli" is LIK_BERNOULLI).
//
//   categorical  δ = softmax(f) − onehot(y)        y: one class label (as f32)
//   gaussian     δ = (f − y) / σ²                  y: one value per output
//   bernoulli    δ = sigmoid(f) − y                y: one value in [0, 1] per output

const LIK_CATEGORICAL: u32 = 0u;
const LIK_GAUSSIAN: u32 = 1u;
const LIK_BERNOULLI: u32 = 2u;

override WG: u32 = 64u;
override LIKELIHOOD: u32 = 0u;

struct Dims {
  n: u32,             // samples
  outputs: u32,       // width of f and δ
  target_width: u32,  // 1 for labels, else outputs
  inv_variance: f32,  // 1/σ² (gaussian), else unused
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;

@compute @workgroup_size(WG)
fn output_gradient(@builtin(global_invocation_id) id: vec3u) {
  let s = id.x;
  if (s >= dims.n) { return; }
  let row = s * dims.outputs;
  switch LIKELIHOOD {
    case LIK_CATEGORICAL: {
      var fmax = f[row];
      for (var o = 1u; o < dims.outputs; o++) { fmax = max(fmax, f[row + o]); }
      var total = 0.0;
      for (var o = 0u; o < dims.outputs; o++) { total += exp(f[row + o] - fmax); }
      let label = u32(targets[s]);
      for (var o = 0u; o < dims.outputs; o++) {
        let p = exp(f[row + o] - fmax) / total;
        delta[row + o] = p - select(0.0, 1.0, o == label);
      }
    }
    case LIK_GAUSSIAN: {
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = (f[row + o] - targets[s * dims.target_width + o]) * dims.inv_variance;
      }
    }
    default: {  // LIK_BERNOULLI
      for (var o = 0u; o < dims.outputs; o++) {
        delta[row + o] = 1.0 / (1.0 + exp(-f[row + o])) - targets[s * dims.target_width + o];
      }
    }
  }
}
