// Per-sample gradient rows of one linear layer: for each sample s, the
// layer's block of g_s in parameter order (weight row-major [out, in], then
// bias [out]):
//
//   g[s, offset + o·in + i] = δ[s, o] · a[s, i]
//   g[s, offset + out·in + o] = δ[s, o]
//
// One invocation per element of the block; x runs over the block's
// out·(in + 1) elements, y over samples.

override WG: u32 = 64u;

struct Dims {
  n: u32,          // samples
  inputs: u32,     // in
  outputs: u32,    // out
  ldg: u32,        // row stride of g: P
  offset: u32,     // the layer's first parameter
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
  if (j >= weights + dims.outputs || s >= dims.n) { return; }
  var value: f32;
  if (j < weights) {
    value = delta[s * dims.outputs + j / dims.inputs] * a[s * dims.inputs + j % dims.inputs];
  } else {
    value = delta[s * dims.outputs + (j - weights)];
  }
  g[s * dims.ldg + dims.offset + j] = value;
}
