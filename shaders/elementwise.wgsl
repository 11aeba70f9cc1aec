// Elementwise kernels over whole batches of values, one invocation per
// element: activations that are not fused into the product before them,
// their derivatives, the residual block's sum and its backward, and the
// reduction of per-sample gradient rows over the samples.
//
//   activation_forward   y = act(x)
//   activation_backward  dx = dy ⊙ act'(z)
//   add_into             y = y + x                     (y = x + f(x), f(x) computed into y)
//   add_backward         dx = (dy + dbranch) ⊙ act'(z)   (act: the input's producer's, or identity)
//   column_reduce        out[offset + z·count + j] = scale · Σ_{s in slice z} r(rows[s·ld + j]),  r = x or x²
//   transpose            y[offset + (s, j, i)] = x[(s, i, j)]    x [count/(rows·ld), rows, ld]
//   positions_sum        y[offset + (s, j)] = scale · Σ_t x[(s, t, j)]   x [count/ld, rows, ld]
//   augmented_difference y[(o, i)] = x[offset + θ(o, i)] − pre[θ(o, i)]   into [W | b] [rows, count/rows]
//   augmented_accumulate y[offset + θ(o, i)] += scale · x[(o, i)]        from [W | b] [rows, count/rows]
//   compensated_add      (y, comp)[j] += Σ_s x[s·ld + j]   a running total and its compensation (Neumaier)
//
// θ(o, i) is where entry (o, i) of a layer's augmented [W | b] sits in its
// slice of θ: o·ld + i for the weight (i < ld), rows·ld + o for the bias
// (i = ld, where count/rows = ld + 1). An EWC penalty's K-FAC term G D A
// works on D = θ − θ* in that shape (src/engine/gpu.ts).
//
// Ranges longer than one dimension of workgroups allows are laid out as a
// 2-D grid (src/kernels/dispatch.ts): the flat index is
// id.x + id.y · num_workgroups.x · WG. Composed after activation.wgsl.

override WG: u32 = 64u;
override ACTIVATION: u32 = 0u;  // an ACT_* code
override SQUARE: bool = false;  // column_reduce: sum squares

struct Dims {
  count: u32,   // elements (column_reduce: columns; positions_sum: outputs)
  rows: u32,    // column_reduce: samples; transpose, positions_sum: the middle dimension
  ld: u32,      // column_reduce: row stride; transpose, positions_sum: the last dimension
  offset: u32,  // column_reduce, transpose, positions_sum: first element of the output
  scale: f32,   // column_reduce, positions_sum: factor
  slice: u32,   // column_reduce: rows per slice (one per z of the dispatch); 0: all in one
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> pre: array<f32>;  // z, the pre-activation (not `z`: activation.wgsl's functions take a z)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> comp: array<f32>;  // compensated_add: what y's additions rounded away

fn flat(id: vec3u, groups: vec3u) -> u32 {
  return id.x + id.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn activation_forward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.count) { return; }
  y[i] = activate(ACTIVATION, x[i]);
}

// x is dy here.
@compute @workgroup_size(WG)
fn activation_backward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.count) { return; }
  y[i] = x[i] * activate_derivative(ACTIVATION, pre[i]);
}

@compute @workgroup_size(WG)
fn add_into(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.count) { return; }
  y[i] = y[i] + x[i];
}

// x is dy, y holds dbranch and receives dx.
@compute @workgroup_size(WG)
fn add_backward(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.count) { return; }
  y[i] = (x[i] + y[i]) * activate_derivative(ACTIVATION, pre[i]);
}

// x holds the rows [rows, ld]; one invocation per column and slice of the
// rows (z of the dispatch), each slice's sums count elements after the last's.
// A float32 sum over 10⁶ rows (K-FAC's Σ ā over a convolution's patches)
// drifts, and runs in one thread: slices of a few thousand rows, summed by
// the host in float64, run in parallel, and each is compensated as
// compensated_add's (Neumaier): a plain float32 sum of 4,096 rows of
// positive values still drifted past 1e-5.
@compute @workgroup_size(WG)
fn column_reduce(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = flat(id, nwg);
  if (j >= dims.count) { return; }
  let per = select(dims.rows, dims.slice, dims.slice != 0u);
  let last = min(dims.rows, (id.z + 1u) * per);
  var acc = 0.0;
  var c = 0.0;
  for (var s = id.z * per; s < last; s++) {
    let x_s = x[s * dims.ld + j];
    let v = select(x_s, x_s * x_s, SQUARE);
    let t = acc + v;
    c += select(v - t + acc, acc - t + v, abs(acc) >= abs(v));
    acc = t;
  }
  y[dims.offset + id.z * dims.count + j] = dims.scale * (acc + c);
}

// A running total over batches held on the device, so that batches need no
// read-back each: y[j] += each row's x[s·ld + j] by Neumaier's compensated
// summation, the rounding error of each addition collected in comp[j]. The
// true total is y + comp (the host adds them in float64): float32 sums of
// thousands of batches then stay as accurate as float64 ones of their
// partials. One invocation per column.
@compute @workgroup_size(WG)
fn compensated_add(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = flat(id, nwg);
  if (j >= dims.count) { return; }
  var s = y[j];
  var c = comp[j];
  for (var r = 0u; r < dims.rows; r++) {
    let v = x[r * dims.ld + j];
    let t = s + v;
    c += select(v - t + s, s - t + v, abs(s) >= abs(v));
    s = t;
  }
  y[j] = s;
  comp[j] = c;
}

// Each sample's [rows, ld] matrix transposed: K-FAC's δ rows from a
// channel-major conv output (rows = 1 copies). One invocation per row of x,
// its ld elements in a loop: the divisions once per row, not per element
// (a CPU-SIMD driver divides lane by lane).
@compute @workgroup_size(WG)
fn transpose(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(id, nwg);
  if (r * dims.ld >= dims.count) { return; }
  let s = r / dims.rows;
  let i = r % dims.rows;
  let to = dims.offset + s * dims.rows * dims.ld + i;
  for (var j = 0u; j < dims.ld; j++) { y[to + j * dims.rows] = x[r * dims.ld + j]; }
}

// Sums over the positions of each sample: one invocation per (sample, column).
@compute @workgroup_size(WG)
fn positions_sum(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = flat(id, nwg);
  if (k >= dims.count) { return; }
  let s = k / dims.ld;
  let j = k % dims.ld;
  var acc = 0.0;
  for (var t = 0u; t < dims.rows; t++) { acc += x[(s * dims.rows + t) * dims.ld + j]; }
  y[dims.offset + k] = dims.scale * acc;
}

@compute @workgroup_size(WG)
fn augmented_difference(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = flat(id, nwg);
  if (k >= dims.count) { return; }
  let at = augmented_index(k);
  y[k] = x[dims.offset + at] - pre[at];
}

@compute @workgroup_size(WG)
fn augmented_accumulate(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = flat(id, nwg);
  if (k >= dims.count) { return; }
  let at = dims.offset + augmented_index(k);
  y[at] = y[at] + dims.scale * x[k];
}

// θ(o, i) of augmented entry k = o·(count/rows) + i, within the layer's slice.
fn augmented_index(k: u32) -> u32 {
  let columns = dims.count / dims.rows;
  let o = k / columns;
  let i = k % columns;
  return select(o * dims.ld + i, dims.rows * dims.ld + o, i >= dims.ld);
}
