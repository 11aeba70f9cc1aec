// Device peak probes: the roofline every kernel is judged against.
//
//   fma_throughput  each invocation runs ITERATIONS rounds of 8 independent
//                   vec4 FMA chains (no loads): 8 · 4 · 2 = 64 FLOP a round
//   copy            dst = src in vec4s: one read and one write per element
//
// The FMA result is written out (once per invocation) so the compiler keeps
// the work; the seed comes from the uniform so it cannot be folded.

override WG: u32 = 64u;

struct Dims {
  iterations: u32,  // fma_throughput: rounds per invocation
  count: u32,       // copy: vec4s to copy
  seed: f32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> src: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4f>;

@compute @workgroup_size(WG)
fn fma_throughput(@builtin(global_invocation_id) id: vec3u) {
  let s = dims.seed + f32(id.x) * 1e-7;
  var a0 = vec4f(s, s + 1.0, s + 2.0, s + 3.0);
  var a1 = a0 + 0.1; var a2 = a0 + 0.2; var a3 = a0 + 0.3;
  var a4 = a0 + 0.4; var a5 = a0 + 0.5; var a6 = a0 + 0.6; var a7 = a0 + 0.7;
  let m = vec4f(0.9999);
  let c = vec4f(1e-4);
  for (var i = 0u; i < dims.iterations; i++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  dst[id.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // A 2-D grid past one dimension's limit (src/kernels/dispatch.ts).
  let i = id.x + id.y * nwg.x * WG;
  if (i >= dims.count) { return; }
  dst[i] = src[i];
}
