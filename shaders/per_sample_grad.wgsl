// Per-sample gradient rows of one linear layer applied at T positions per
// sample (T = 1 on a flat input; the leading dimensions otherwise): for each
// sample s, the layer's block of g_s in parameter order (weight row-major
// [out, in], then bias [out] when it has one):
//
//   g[offset + s·ldg + o·in + i] = Σ_t δ[s, t, o] · a[s, t, i]
//   g[offset + s·ldg + out·in + o] = Σ_t δ[s, t, o]
//
// In blocks, as conv2d.wgsl's per_sample_grad: an invocation sums, over the
// positions, OUTPUTS outputs by BI input columns of one sample's block, the
// bias being one more column whose input is 1. Per position it loads OUTPUTS
// values of δ and BI of a for OUTPUTS · BI FMAs, where one invocation per
// element loaded two per FMA (lavapipe loads lane by lane, so loads bound
// these sums); the columns are found before the loop, which has no division
// and no branch.

override WG: u32 = 64u;
// The outputs a block computes, at most BO: all of them where the layer has
// fewer (no rows computed in vain), one pipeline per value.
override OUTPUTS: u32 = 8u;
const BO: u32 = 8u;
const BI: u32 = 8u;

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
fn per_sample_gradients(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let columns = dims.inputs + dims.has_bias;
  let in_blocks = (columns + BI - 1u) / BI;
  let out_blocks = (dims.outputs + OUTPUTS - 1u) / OUTPUTS;
  let at = id.x + id.y * nwg.x * WG;
  if (at >= dims.n * out_blocks * in_blocks) { return; }
  // Consecutive invocations take consecutive column blocks of one sample's outputs.
  let i0 = (at % in_blocks) * BI;
  let rest = at / in_blocks;
  let s = rest / out_blocks;
  let o0 = (rest % out_blocks) * OUTPUTS;
  // Column j reads a's column col[j], or (the bias's, or one past the last, never stored) the
  // constant one[j]: 1 or 0.
  var col: array<u32, BI>;
  var weight: array<bool, BI>;
  var one: array<f32, BI>;
  for (var j = 0u; j < BI; j++) {
    let i = i0 + j;
    col[j] = min(i, dims.inputs - 1u);
    weight[j] = i < dims.inputs;
    one[j] = select(0.0, 1.0, i == dims.inputs);
  }
  var out: array<u32, BO>;
  for (var r = 0u; r < OUTPUTS; r++) { out[r] = min(o0 + r, dims.outputs - 1u); }
  var acc: array<f32, BO * BI>;  // [r · BI + j]
  for (var t = 0u; t < dims.positions; t++) {
    let row = s * dims.positions + t;
    var v: array<f32, BI>;
    for (var j = 0u; j < BI; j++) { v[j] = select(one[j], a[row * dims.inputs + col[j]], weight[j]); }
    for (var r = 0u; r < OUTPUTS; r++) {
      let d = delta[row * dims.outputs + out[r]];
      for (var j = 0u; j < BI; j++) { acc[r * BI + j] = fma(d, v[j], acc[r * BI + j]); }
    }
  }
  let weights = dims.outputs * dims.inputs;
  for (var r = 0u; r < OUTPUTS; r++) {
    let o = o0 + r;
    for (var j = 0u; j < BI; j++) {
      let i = i0 + j;
      if (o < dims.outputs && i < columns) {
        let k = select(o * dims.inputs + i, weights + o, i == dims.inputs);
        g[dims.offset + s * dims.ldg + k] = acc[r * BI + j];
      }
    }
  }
}
