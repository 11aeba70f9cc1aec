// Layer normalisation (PyTorch's LayerNorm) over the trailing d values of
// each row, a row being one position t of one sample s (rows = n·T):
//
//   forward          μ, σ² of the row (biased), r = 1/√(σ² + eps), x̂ = (x − μ)·r,
//                    y = γ ⊙ x̂ + β (affine) or x̂; x̂ and r are saved
//   backward         e = dy ⊙ γ (or dy), dx = r·(e − mean(e) − x̂·mean(e ⊙ x̂))
//   per_sample_grad  g[s, γ_i] = Σ_t dy[s, t, i]·x̂[s, t, i],  g[s, β_i] = Σ_t dy[s, t, i]
//
// γ [d] then β [d] are read from θ at w_offset. forward and backward run one
// invocation per row; per_sample_grad one per parameter (x) and sample (y).

override WG: u32 = 64u;

struct Dims {
  rows: u32,
  d: u32,
  positions: u32,  // T: rows per sample
  affine: u32,
  eps: f32,
  w_offset: u32,
  ldg: u32,
  g_offset: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> theta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(7) var<storage, read> xhat_in: array<f32>;
@group(0) @binding(8) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(9) var<storage, read_write> g: array<f32>;

fn flat(id: vec3u, groups: vec3u) -> u32 {
  return id.x + id.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(id, nwg);
  if (r >= dims.rows) { return; }
  let base = r * dims.d;
  var sum = 0.0;
  for (var i = 0u; i < dims.d; i++) { sum += x[base + i]; }
  let mean = sum / f32(dims.d);
  var sq = 0.0;
  for (var i = 0u; i < dims.d; i++) { let c = x[base + i] - mean; sq = fma(c, c, sq); }
  let inv = inverseSqrt(sq / f32(dims.d) + dims.eps);
  rstd[r] = inv;
  for (var i = 0u; i < dims.d; i++) {
    let h = (x[base + i] - mean) * inv;
    xhat[base + i] = h;
    y[base + i] = select(h, fma(theta[dims.w_offset + i], h, theta[dims.w_offset + dims.d + i]), dims.affine != 0u);
  }
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(id, nwg);
  if (r >= dims.rows) { return; }
  let base = r * dims.d;
  var m1 = 0.0;
  var m2 = 0.0;
  for (var i = 0u; i < dims.d; i++) {
    let e = dy[base + i] * select(1.0, theta[dims.w_offset + i], dims.affine != 0u);
    m1 += e;
    m2 = fma(e, xhat_in[base + i], m2);
  }
  m1 /= f32(dims.d);
  m2 /= f32(dims.d);
  let inv = rstd_in[r];
  for (var i = 0u; i < dims.d; i++) {
    let e = dy[base + i] * select(1.0, theta[dims.w_offset + i], dims.affine != 0u);
    y[base + i] = inv * (e - m1 - xhat_in[base + i] * m2);
  }
}

@compute @workgroup_size(WG)
fn per_sample_grad(@builtin(global_invocation_id) id: vec3u) {
  let j = id.x;
  let s = id.y;
  if (j >= 2u * dims.d || s * dims.positions >= dims.rows) { return; }
  let i = j % dims.d;
  var acc = 0.0;
  for (var t = 0u; t < dims.positions; t++) {
    let at = (s * dims.positions + t) * dims.d + i;
    acc += select(dy[at], dy[at] * xhat_in[at], j < dims.d);
  }
  g[dims.g_offset + s * dims.ldg + j] = acc;
}
