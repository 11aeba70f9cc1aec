// Per-sample gradient rows of one linear layer applied at T positions per
// sample (T = 1 on a flat input; the leading dimensions otherwise): for each
// sample s, the layer's block of g_s in parameter order (weight row-major
// [out, in], then bias [out] when it has one):
//
//   g[offset + s·ldg + o·in + i] = Σ_t δ[s, t, o] · a[s, t, i]
//   g[offset + s·ldg + out·in + o] = Σ_t δ[s, t, o]
//
// One invocation per element of the block; x runs over the block's
// elements, y over samples.

override WG: u32 = 64u;

struct Dims {
  n: u32,          // samples
  inputs: u32,     // in
  outputs: u32,    // out
  positions: u32,  // T
  has_bias: u32,
  ldg: u32,        // row stride of g
  offset: u32,     // g's first element
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;

@compute @workgroup_size(WG)
fn per_sample_gradients(@builtin(global_invocation_id) id: vec3u) {
  let j = id.x;
  let s = id.y;
  let weights = dims.outputs * dims.inputs;
  if (j >= weights + dims.has_bias * dims.outputs || s >= dims.n) { return; }
  var value = 0.0;
  for (var t = 0u; t < dims.positions; t++) {
    let row = s * dims.positions + t;
    if (j < weights) {
      value = fma(delta[row * dims.outputs + j / dims.inputs], a[row * dims.inputs + j % dims.inputs], value);
    } else {
      value += delta[row * dims.outputs + (j - weights)];
    }
  }
  g[dims.offset + s * dims.ldg + j] = value;
}
