// 2-D max and average pooling (PyTorch's MaxPool2d and AvgPool2d with
// ceil_mode false; AvgPool2d with count_include_pad, so every window divides
// by kh·kw) over a batch, channel by channel:
//
//   max_forward   y[s, c, oy, ox] = max over the window of x, padding −∞;
//                 arg = the winner's index in its channel plane (iy·w + ix),
//                 the first in row-major order on ties, as PyTorch
//   max_backward  dx[s, c, iy, ix] = Σ over the windows whose arg is (iy, ix) of dy
//                 (max_backward_tiled: the same where the windows tile the input)
//   avg_forward   y = Σ over the window of x (padding 0) / (kh·kw)
//   avg_backward  dx[s, c, iy, ix] = Σ over the windows holding (iy, ix) of dy / (kh·kw)
//
// Window (oy, ox) covers iy = oy·stride_h − pad_h + ky, ky < kh (likewise
// ix). One invocation per output (forward, max_backward_tiled) or input
// (backward) element; the backward passes gather, so overlapping windows
// need no atomics, except where windows tile the input and none overlap.

override WG: u32 = 64u;

struct Dims {
  n: u32,
  c: u32,
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  kh: u32,
  kw: u32,
  stride_h: u32,
  stride_w: u32,
  pad_h: u32,
  pad_w: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> arg: array<u32>;
@group(0) @binding(5) var<storage, read> arg_in: array<u32>;

fn flat(id: vec3u, groups: vec3u) -> u32 {
  return id.x + id.y * groups.x * WG;
}

// The range of output rows (or columns) whose window holds input row i:
// oy·stride ≤ i + pad ≤ oy·stride + k − 1.
fn windows(i: u32, pad: u32, k: u32, stride: u32, count: u32) -> vec2u {
  let hi = (i + pad) / stride;
  let lo = select(0u, (i + pad + stride - k) / stride, i + pad + 1u > k);
  return vec2u(lo, min(hi + 1u, count));
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  if (at >= dims.n * dims.c * dims.oh * dims.ow) { return; }
  let ox = at % dims.ow;
  let oy = (at / dims.ow) % dims.oh;
  let base = (at / (dims.oh * dims.ow)) * dims.h * dims.w;
  var best = -3.4028234663852886e38;
  var found = false;
  var where_ = 0u;
  for (var ky = 0u; ky < dims.kh; ky++) {
    let iy = i32(oy * dims.stride_h + ky) - i32(dims.pad_h);
    if (iy < 0 || iy >= i32(dims.h)) { continue; }
    for (var kx = 0u; kx < dims.kw; kx++) {
      let ix = i32(ox * dims.stride_w + kx) - i32(dims.pad_w);
      if (ix < 0 || ix >= i32(dims.w)) { continue; }
      let k = u32(iy) * dims.w + u32(ix);
      let v = x[base + k];
      if (!found || v > best) {
        best = v;
        where_ = k;
        found = true;
      }
    }
  }
  y[at] = best;
  arg[at] = where_;
}

@compute @workgroup_size(WG)
fn max_backward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  let plane = dims.h * dims.w;
  if (at >= dims.n * dims.c * plane) { return; }
  let k = at % plane;
  let ix = k % dims.w;
  let iy = k / dims.w;
  let base = (at / plane) * dims.oh * dims.ow;
  let rows = windows(iy, dims.pad_h, dims.kh, dims.stride_h, dims.oh);
  let cols = windows(ix, dims.pad_w, dims.kw, dims.stride_w, dims.ow);
  var acc = 0.0;
  for (var oy = rows.x; oy < rows.y; oy++) {
    for (var ox = cols.x; ox < cols.y; ox++) {
      let o = base + oy * dims.ow + ox;
      if (arg_in[o] == k) { acc += dy[o]; }
    }
  }
  y[at] = acc;
}

// max_backward where the windows tile the input (stride = kernel, and the
// last window reaches the edge): one invocation per window writes each of
// its elements, dy at the winner and 0 elsewhere. For 2 × 2 windows a
// quarter of the gather's invocations, and no search over windows.
@compute @workgroup_size(WG)
fn max_backward_tiled(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  if (at >= dims.n * dims.c * dims.oh * dims.ow) { return; }
  let ox = at % dims.ow;
  let oy = (at / dims.ow) % dims.oh;
  let base = (at / (dims.oh * dims.ow)) * dims.h * dims.w;
  let d = dy[at];
  let winner = arg_in[at];
  for (var ky = 0u; ky < dims.kh; ky++) {
    let iy = i32(oy * dims.stride_h + ky) - i32(dims.pad_h);
    if (iy < 0 || iy >= i32(dims.h)) { continue; }
    for (var kx = 0u; kx < dims.kw; kx++) {
      let ix = i32(ox * dims.stride_w + kx) - i32(dims.pad_w);
      if (ix < 0 || ix >= i32(dims.w)) { continue; }
      let k = u32(iy) * dims.w + u32(ix);
      y[base + k] = select(0.0, d, k == winner);
    }
  }
}

@compute @workgroup_size(WG)
fn avg_forward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  if (at >= dims.n * dims.c * dims.oh * dims.ow) { return; }
  let ox = at % dims.ow;
  let oy = (at / dims.ow) % dims.oh;
  let base = (at / (dims.oh * dims.ow)) * dims.h * dims.w;
  var acc = 0.0;
  for (var ky = 0u; ky < dims.kh; ky++) {
    let iy = i32(oy * dims.stride_h + ky) - i32(dims.pad_h);
    if (iy < 0 || iy >= i32(dims.h)) { continue; }
    for (var kx = 0u; kx < dims.kw; kx++) {
      let ix = i32(ox * dims.stride_w + kx) - i32(dims.pad_w);
      if (ix < 0 || ix >= i32(dims.w)) { continue; }
      acc += x[base + u32(iy) * dims.w + u32(ix)];
    }
  }
  y[at] = acc / f32(dims.kh * dims.kw);
}

@compute @workgroup_size(WG)
fn avg_backward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  let plane = dims.h * dims.w;
  if (at >= dims.n * dims.c * plane) { return; }
  let k = at % plane;
  let rows = windows(k / dims.w, dims.pad_h, dims.kh, dims.stride_h, dims.oh);
  let cols = windows(k % dims.w, dims.pad_w, dims.kw, dims.stride_w, dims.ow);
  let base = (at / plane) * dims.oh * dims.ow;
  var acc = 0.0;
  for (var oy = rows.x; oy < rows.y; oy++) {
    for (var ox = cols.x; ox < cols.y; ox++) { acc += dy[base + oy * dims.ow + ox]; }
  }
  y[at] = acc / f32(dims.kh * dims.kw);
}
