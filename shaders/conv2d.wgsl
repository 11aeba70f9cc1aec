// 2-D convolution (PyTorch's Conv2d: cross-correlation with stride, zero
// padding, dilation and groups) over a batch, direct summation:
//
//   forward          y[s, o, oy, ox] = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · x[s, g·CG + c, iy, ix]
//                    iy = oy·stride_h − pad_h + ky·dil_h (likewise ix); out-of-range x is 0
//   input_gradient   dx[s, ci, iy, ix] = Σ over the (o, ky, kx) that read it of W[o, c, ky, kx] · dy[s, o, oy, ox]
//   (and input_gradient_unit_stride: the same at stride 1, in blocks)
//   per_sample_grad  g[s, (o, c, ky, kx)] = Σ_{oy, ox} dy[s, o, oy, ox] · x[s, g·CG + c, iy, ix],
//                    g[s, bias o] = Σ_{oy, ox} dy[s, o, oy, ox]
//   im2col           g[s, (oy, ox), (c, ky, kx)] = x[s, c, iy, ix]   (groups = 1: K-FAC's patches)
//
// Letters: s the sample, o an output channel, c an input channel within its
// group (CG = c_in / groups of them; group g = o / (c_out / groups)). Every
// tensor is row-major; W [c_out, CG, kh, kw] then b [c_out] are read from θ
// at w_offset. forward fuses an output activation (y = act(z), z stored when
// STORE_Z) and the input gradients the input producer's act'(z_in).
// forward, input_gradient_unit_stride and per_sample_grad run in blocks: an
// invocation takes up to 8 output channels of a group by 8 pixels or taps
// (below). input_gradient (any stride) runs one invocation per element of
// dx, im2col one per output pixel. Composed after activation.wgsl.

override WG: u32 = 64u;
override ACTIVATION: u32 = 0u;
override STORE_Z: bool = false;
// The output channels a block of the blocked kernels computes, at most CB_M: fewer where a
// group has fewer (no rows computed in vain), one pipeline per value.
override CHANNELS: u32 = 8u;

struct Dims {
  n: u32,
  c_in: u32,
  h: u32,
  w: u32,
  c_out: u32,
  oh: u32,
  ow: u32,
  kh: u32,
  kw: u32,
  stride_h: u32,
  stride_w: u32,
  pad_h: u32,
  pad_w: u32,
  dil_h: u32,
  dil_w: u32,
  groups: u32,
  has_bias: u32,
  w_offset: u32,   // W's first element in θ; the bias follows it
  ldg: u32,        // per_sample_grad: row stride of g
  g_offset: u32,   // per_sample_grad: g's first element
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> theta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> z_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> z_out: array<f32>;  // not `z`: activation.wgsl's functions take a z
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> g: array<f32>;

fn flat(id: vec3u, groups: vec3u) -> u32 {
  return id.x + id.y * groups.x * WG;
}

fn weight_count() -> u32 {
  return dims.c_out * (dims.c_in / dims.groups) * dims.kh * dims.kw;
}

// forward, and input_gradient_unit_stride, in blocks: an invocation computes
// CHANNELS output channels (of one group) at CB_N output pixels of one sample,
// summing over the input channels of the group and the kernel's taps. Per
// tap it loads CHANNELS weights and CB_N inputs for CHANNELS · CB_N FMAs, where one
// invocation per output element loaded two per FMA (lavapipe loads lane by
// lane, so loads bound these sums), and the loop holds no division.
//
// Both see a convolution as out[s, o, oy, ox] = Σ_{q, ky, kx} weight(o, q, ky, kx) ·
// in[s, q of o's group, oy·stride − pad + ky·dil, ox·stride − pad + kx·dil]: the forward
// pass as it is, and the gradient to the input (at unit stride) as dy convolved with the
// kernel transposed and flipped, whose padding dil·(k − 1) − pad may be negative.
const CB_M: u32 = 8u;  // at most; CHANNELS of them in use
const CB_N: u32 = 8u;

struct ConvView {
  ci: u32,   // input channels, and per group
  gi: u32,
  hi: u32,   // input plane
  wi: u32,
  co: u32,   // output channels, and per group
  go: u32,
  ho: u32,   // output plane
  wo: u32,
  sh: u32,
  sw: u32,
  ph: i32,
  pw: i32,
  transposed: bool,
}

fn forward_view() -> ConvView {
  return ConvView(dims.c_in, dims.c_in / dims.groups, dims.h, dims.w, dims.c_out, dims.c_out / dims.groups, dims.oh, dims.ow,
                  dims.stride_h, dims.stride_w, i32(dims.pad_h), i32(dims.pad_w), false);
}

fn transposed_view() -> ConvView {
  return ConvView(dims.c_out, dims.c_out / dims.groups, dims.oh, dims.ow, dims.c_in, dims.c_in / dims.groups, dims.h, dims.w,
                  1u, 1u, i32(dims.dil_h * (dims.kh - 1u)) - i32(dims.pad_h), i32(dims.dil_w * (dims.kw - 1u)) - i32(dims.pad_w), true);
}

struct ConvBlock {
  acc: array<f32, CB_M * CB_N>,  // [i · CB_N + j]: channel o0 + i, pixel t0 + j
  s: u32,
  o0: u32,
  o_last: u32,  // the group's last output channel
  t0: u32,
  valid: bool,  // false: past the last block
}

fn conv_block(v: ConvView, at: u32) -> ConvBlock {
  var r: ConvBlock;
  let plane = v.ho * v.wo;
  let pixel_blocks = (plane + CB_N - 1u) / CB_N;
  let out_blocks = (v.go + CHANNELS - 1u) / CHANNELS;  // per group
  let per_sample = dims.groups * out_blocks * pixel_blocks;
  r.valid = at < dims.n * per_sample;
  if (!r.valid) { return r; }
  // Consecutive invocations take consecutive pixel blocks of one sample's channels.
  r.t0 = (at % pixel_blocks) * CB_N;
  let rest = at / pixel_blocks;
  r.s = rest / (dims.groups * out_blocks);
  let grp = (rest % (dims.groups * out_blocks)) / out_blocks;
  r.o0 = grp * v.go + (rest % out_blocks) * CHANNELS;
  r.o_last = (grp + 1u) * v.go - 1u;
  let taps = dims.kh * dims.kw;
  // Pixel j reads rows from row[j] and columns from col[j] (plus the tap's offset).
  var row: array<i32, CB_N>;
  var col: array<i32, CB_N>;
  for (var j = 0u; j < CB_N; j++) {
    let t = min(r.t0 + j, plane - 1u);
    row[j] = i32((t / v.wo) * v.sh) - v.ph;
    col[j] = i32((t % v.wo) * v.sw) - v.pw;
  }
  // Channel i's weight for input q of the group and tap k is theta[wrow[i] + q · q_stride + k'],
  // k' = k forward, taps − 1 − k transposed (the kernel flipped).
  var wrow: array<u32, CB_M>;
  for (var i = 0u; i < CHANNELS; i++) {
    let o = min(r.o0 + i, r.o_last);
    // transposed: o is an input channel of the layer, reading its output channels grp·gi + q.
    wrow[i] = dims.w_offset + select(o * v.gi, (grp * v.gi * v.go + o - grp * v.go), v.transposed) * taps;
  }
  let q_stride = select(taps, v.go * taps, v.transposed);
  for (var q = 0u; q < v.gi; q++) {
    let in_plane = (r.s * v.ci + grp * v.gi + q) * v.hi * v.wi;
    let wq = q * q_stride;
    for (var ky = 0u; ky < dims.kh; ky++) {
      let tap_y = i32(ky * dims.dil_h);
      for (var kx = 0u; kx < dims.kw; kx++) {
        let tap_x = i32(kx * dims.dil_w);
        let k = ky * dims.kw + kx;
        let wk = wq + select(k, taps - 1u - k, v.transposed);
        var xv: array<f32, CB_N>;
        for (var j = 0u; j < CB_N; j++) {
          let iy = row[j] + tap_y;
          let ix = col[j] + tap_x;
          let inside = iy >= 0 && ix >= 0 && iy < i32(v.hi) && ix < i32(v.wi);
          xv[j] = select(0.0, conv_input(v, select(0u, in_plane + u32(iy) * v.wi + u32(ix), inside)), inside);
        }
        for (var i = 0u; i < CHANNELS; i++) {
          let w = theta[wrow[i] + wk];
          for (var j = 0u; j < CB_N; j++) { r.acc[i * CB_N + j] = fma(w, xv[j], r.acc[i * CB_N + j]); }
        }
      }
    }
  }
  return r;
}

// The view's input: x forward, dy transposed. A branch the compiler folds (the view is
// constant in each entry point), so that each loads from one buffer; both bindings are used.
fn conv_input(v: ConvView, at: u32) -> f32 {
  if (v.transposed) { return dy[at]; }
  return x[at];
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let v = forward_view();
  let r = conv_block(v, flat(id, nwg));
  if (!r.valid) { return; }
  let plane = v.ho * v.wo;
  let biases = dims.w_offset + weight_count();
  for (var i = 0u; i < CHANNELS; i++) {
    let o = r.o0 + i;
    let bias = select(0.0, theta[biases + min(o, r.o_last)], dims.has_bias != 0u);
    for (var j = 0u; j < CB_N; j++) {
      let t = r.t0 + j;
      if (o <= r.o_last && t < plane) {
        let at = (r.s * v.co + o) * plane + t;
        let z = r.acc[i * CB_N + j] + bias;
        if (STORE_Z) { z_out[at] = z; }
        y[at] = activate(ACTIVATION, z);
      }
    }
  }
}

@compute @workgroup_size(WG)
fn input_gradient(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  let plane = dims.h * dims.w;
  if (at >= dims.n * dims.c_in * plane) { return; }
  let ix = at % dims.w;
  let iy = (at / dims.w) % dims.h;
  let ci = (at / plane) % dims.c_in;
  let s = at / (plane * dims.c_in);
  let cg = dims.c_in / dims.groups;
  let og = dims.c_out / dims.groups;
  let grp = ci / cg;
  let c = ci % cg;
  var acc = 0.0;
  for (var q = 0u; q < og; q++) {
    let o = grp * og + q;
    let wc = dims.w_offset + (o * cg + c) * dims.kh * dims.kw;
    let dyo = (s * dims.c_out + o) * dims.oh;
    for (var ky = 0u; ky < dims.kh; ky++) {
      // oy · stride = iy + pad − ky · dil, when that is a whole output row.
      let ty = i32(iy + dims.pad_h) - i32(ky * dims.dil_h);
      if (ty < 0 || u32(ty) % dims.stride_h != 0u) { continue; }
      let oy = u32(ty) / dims.stride_h;
      if (oy >= dims.oh) { continue; }
      for (var kx = 0u; kx < dims.kw; kx++) {
        let tx = i32(ix + dims.pad_w) - i32(kx * dims.dil_w);
        if (tx < 0 || u32(tx) % dims.stride_w != 0u) { continue; }
        let ox = u32(tx) / dims.stride_w;
        if (ox >= dims.ow) { continue; }
        acc = fma(theta[wc + ky * dims.kw + kx], dy[(dyo + oy) * dims.ow + ox], acc);
      }
    }
  }
  y[at] = acc * activate_derivative(ACTIVATION, z_in[at]);
}

// The gradient to the input at unit stride, in blocks (conv_block's transposed view), times
// act'(z_in) of the input's producer. Other strides take input_gradient.
@compute @workgroup_size(WG)
fn input_gradient_unit_stride(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let v = transposed_view();
  let r = conv_block(v, flat(id, nwg));
  if (!r.valid) { return; }
  let plane = v.ho * v.wo;
  for (var i = 0u; i < CHANNELS; i++) {
    let o = r.o0 + i;
    for (var j = 0u; j < CB_N; j++) {
      let t = r.t0 + j;
      if (o <= r.o_last && t < plane) {
        let at = (r.s * v.co + o) * plane + t;
        y[at] = r.acc[i * CB_N + j] * activate_derivative(ACTIVATION, z_in[at]);
      }
    }
  }
}

// per_sample_grad in blocks: an invocation sums, over the output pixels, a
// CHANNELS × PSG_N block of one sample's gradient: CHANNELS output channels of
// one group by PSG_N of their taps (c, ky, kx), the bias being one more tap
// whose input is 1. Per pixel it loads CHANNELS values of dy and PSG_N of x
// for CHANNELS · PSG_N FMAs, where one invocation per parameter loaded two per FMA
// (lavapipe loads lane by lane, so loads bound these sums); the taps' offsets
// are worked out before the loop, which has no division and no branch.
const PSG_N: u32 = 8u;

@compute @workgroup_size(WG)
fn per_sample_grad(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let cg = dims.c_in / dims.groups;
  let og = dims.c_out / dims.groups;
  let taps = cg * dims.kh * dims.kw;  // weights per output channel
  let columns = taps + dims.has_bias;
  let tap_blocks = (columns + PSG_N - 1u) / PSG_N;
  let out_blocks = (og + CHANNELS - 1u) / CHANNELS;  // per group
  let at = flat(id, nwg);
  if (at >= dims.n * dims.groups * out_blocks * tap_blocks) { return; }
  // Consecutive invocations take consecutive tap blocks of one sample's channels.
  let j0 = (at % tap_blocks) * PSG_N;
  let rest = at / tap_blocks;
  let s = rest / (dims.groups * out_blocks);
  let grp = (rest % (dims.groups * out_blocks)) / out_blocks;
  let o0 = grp * og + (rest % out_blocks) * CHANNELS;
  let o_last = (grp + 1u) * og - 1u;
  let plane = dims.oh * dims.ow;
  // Tap j reads x at (oy·stride + row[j], ox·stride + col[j]) of channel plane base[j]; a tap
  // that is the bias (or past the last) is never in the image, and reads one[j] (1 or 0).
  var base: array<u32, PSG_N>;
  var row: array<i32, PSG_N>;
  var col: array<i32, PSG_N>;
  var one: array<f32, PSG_N>;
  let never = -i32(dims.oh * dims.stride_h) - 1;
  for (var j = 0u; j < PSG_N; j++) {
    let tap = j0 + j;
    let kx = tap % dims.kw;
    let ky = (tap / dims.kw) % dims.kh;
    let c = tap / (dims.kw * dims.kh);
    let weight = tap < taps;
    base[j] = select(0u, ((s * dims.c_in + grp * cg + c) * dims.h) * dims.w, weight);
    row[j] = select(never, i32(ky * dims.dil_h) - i32(dims.pad_h), weight);
    col[j] = i32(kx * dims.dil_w) - i32(dims.pad_w);
    one[j] = select(0.0, 1.0, tap == taps && dims.has_bias != 0u);
  }
  var dyo: array<u32, CB_M>;
  for (var i = 0u; i < CHANNELS; i++) { dyo[i] = (s * dims.c_out + min(o0 + i, o_last)) * plane; }
  var acc: array<f32, CB_M * PSG_N>;  // [i · PSG_N + j]
  for (var oy = 0u; oy < dims.oh; oy++) {
    let iy0 = i32(oy * dims.stride_h);
    for (var ox = 0u; ox < dims.ow; ox++) {
      let ix0 = i32(ox * dims.stride_w);
      let t = oy * dims.ow + ox;
      var v: array<f32, PSG_N>;
      for (var j = 0u; j < PSG_N; j++) {
        let iy = iy0 + row[j];
        let ix = ix0 + col[j];
        let inside = iy >= 0 && ix >= 0 && iy < i32(dims.h) && ix < i32(dims.w);
        let xv = x[select(0u, base[j] + u32(iy) * dims.w + u32(ix), inside)];
        v[j] = select(one[j], xv, inside);
      }
      for (var i = 0u; i < CHANNELS; i++) {
        let d = dy[dyo[i] + t];
        for (var j = 0u; j < PSG_N; j++) { acc[i * PSG_N + j] = fma(d, v[j], acc[i * PSG_N + j]); }
      }
    }
  }
  let weights = dims.c_out * taps;
  for (var i = 0u; i < CHANNELS; i++) {
    let o = o0 + i;
    for (var j = 0u; j < PSG_N; j++) {
      let tap = j0 + j;
      if (o <= o_last && tap < columns) {
        let k = select(o * taps + tap, weights + o, tap == taps);
        g[dims.g_offset + s * dims.ldg + k] = acc[i * PSG_N + j];
      }
    }
  }
}

// The patches of groups = 1 (K-FAC's ā): g[(s·oh·ow + t)·taps + k] for output
// pixel t = (oy, ox) and tap k = (c, ky, kx), taps = c_in·kh·kw, 0 outside
// the image. One invocation per output pixel (a row of g), its taps in a
// loop: the pixel's divisions once per row, not once per element.
@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let at = flat(id, nwg);
  let plane = dims.oh * dims.ow;
  if (at >= dims.n * plane) { return; }
  let s = at / plane;
  let t = at % plane;
  let iy0 = i32((t / dims.ow) * dims.stride_h) - i32(dims.pad_h);
  let ix0 = i32((t % dims.ow) * dims.stride_w) - i32(dims.pad_w);
  var out = at * dims.c_in * dims.kh * dims.kw;
  for (var c = 0u; c < dims.c_in; c++) {
    let xc = (s * dims.c_in + c) * dims.h;
    for (var ky = 0u; ky < dims.kh; ky++) {
      let iy = iy0 + i32(ky * dims.dil_h);
      for (var kx = 0u; kx < dims.kw; kx++) {
        let ix = ix0 + i32(kx * dims.dil_w);
        let inside = iy >= 0 && ix >= 0 && iy < i32(dims.h) && ix < i32(dims.w);
        g[out] = select(0.0, x[select(0u, (xc + u32(iy)) * dims.w + u32(ix), inside)], inside);
        out++;
      }
    }
  }
}
