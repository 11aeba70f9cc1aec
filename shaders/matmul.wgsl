// Blocked matrix products: the forward pass, the backward pass, the gradient
// and the Fisher reductions of an MLP are all C[m, n] = Σ_k A(m, k) · B(k, n),
// with the operands read in different layouts and different epilogues. One
// core, these entry points:
//
//   linear_forward    Z = X Wᵀ + b, Y = act(Z)          X [M, K], W [N, K] in θ
//   linear_backward   D' = (D W) ⊙ act'(Z')              D [M, K], W [K, N] in θ
//   weight_gradient   [dW | db] = scale · Dᵀ [A, 1]      D [K, M], A [K, N-1]   ([A] and N-1 → N without a bias)
//   squared_gradient  [SW | Sb] = (D²)ᵀ [A², 1]          D [K, M], A [K, N-1]
//   gram              F = G[:, o+r0:o+r0+M]ᵀ G[:, o:o+N]  G [K, ld], upper triangle of a diagonal block at o
//   gram_sliced       the same, k in slices (one per z), each slice's F apart
//   product           C = A B into rows of stride ldc      A [M, K], B [K, N]
//   upper_update      C −= Aᵀ B on and above C's diagonal  A [K, M], B [K, N] (a blocked Cholesky's Schur complement)
//   (and conv_forward, conv_input_gradient: the convolution forms below)
//
// Letters: m, n index C's rows and columns, k the summed index. Every buffer
// is row-major; `lda`/`ldb` are the row strides of a and b as stored, and
// `a_offset`/`b_offset` where the operand starts in its buffer. W and b are
// read from θ, the flat parameter vector; weight_gradient and
// squared_gradient write into vectors of θ's layout: a layer's weight
// [out, in] row-major at c_offset, its bias [out] at c_bias_offset.
//
// Each invocation owns a TM × TN block of C and keeps it in registers: per
// step of k it needs TM values of A and TN of B for TM·TN FMAs, instead of 2
// loads per FMA of a one-thread-per-output kernel. The block product itself
// comes from one of the cores the host composes this file with, chosen per
// adapter: matmul_block.wgsl (every invocation loads its own operands),
// matmul_block_subgroup.wgsl (the lanes of a subgroup share the block's rows
// of A, each lane loading a few and broadcasting them) or
// matmul_block_shared.wgsl (workgroup-shared tiles). Entry points take the
// core's Invocation (the builtins it needs: the subgroup core adds the lane
// within the subgroup, which WGSL promises only as subgroup_invocation_id)
// and store the block's block_rows() × block_cols() (TM × TN; the core says
// whether the compiler may see them as constants).
// Out-of-range rows and columns load a clamped (valid) address and are not
// stored, so the inner loop has no branches. Block and workgroup sizes are
// overrides, set by the host at pipeline creation.

override WG_M: u32 = 8u;   // invocations per workgroup along m
override WG_N: u32 = 8u;   // invocations per workgroup along n
override TM: u32 = 4u;     // rows of C per invocation, 1 ≤ TM ≤ BLOCK_ROWS of the core
override TN: u32 = 4u;     // columns of C per invocation, 1 ≤ TN ≤ BLOCK_COLS

struct Dims {
  m: u32,              // rows of C
  n: u32,              // columns of C
  k: u32,              // length of the sum
  lda: u32,            // row stride of a
  ldb: u32,            // row stride of b
  a_offset: u32,       // first element of a in use (gram: first column of the row tile)
  b_offset: u32,       // first element of b in use (W in θ)
  bias_offset: u32,    // b's bias in θ (linear_forward)
  c_offset: u32,       // where a parameter-shaped result's weight goes (gram: the tile's first element)
  c_bias_offset: u32,  // where its bias goes
  ldc: u32,            // row stride of c (product, upper_update)
  // gram_sliced: the rows of A and B in all (k is then the rows of one slice), and the
  // elements between the slices' results in c.
  k_total: u32,
  c_slice: u32,
  // The ACT_* code of activation.wgsl the forward forms apply and the backward forms differentiate.
  // A uniform, not an override: one pipeline serves every activation (each pipeline compiles for
  // seconds on lavapipe, at its first dispatch).
  activation: u32,
  // linear_forward, conv_forward: 1 stores Z beside Y = act(Z) (the backward pass reads it), 0 only Y.
  // A uniform like the activation, so both forms share one pipeline.
  store_z: u32,
  scale: f32,          // weight_gradient's factor (1/batch for a mean)
  has_bias: u32,       // 1: the layer has a bias (the ONE forms' last column, the bias add)
  // The convolution of the conv_* entries: input [conv_c, conv_h, conv_w] and output
  // [conv_co, conv_oh, conv_ow] per sample, a conv_kh × conv_kw kernel, stride, padding, dilation.
  conv_c: u32,
  conv_h: u32,
  conv_w: u32,
  conv_co: u32,
  conv_oh: u32,
  conv_ow: u32,
  conv_kh: u32,
  conv_kw: u32,
  conv_sh: u32,
  conv_sw: u32,
  conv_ph: u32,
  conv_pw: u32,
  conv_dh: u32,
  conv_dw: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> z_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> c_act: array<f32>;
// a and b again, viewed as vec4s, for cores that load four consecutive rows
// of A or columns of B at once (see load_a4). Bound to the same buffers.
@group(0) @binding(6) var<storage, read> a4: array<vec4f>;
@group(0) @binding(7) var<storage, read> b4: array<vec4f>;

// Whether a core that can (the subgroup core) loads A's rows (VEC_A) or B's
// columns (VEC_B) four at a time. The host sets them where the operand's
// form is one a_along_m or b_along_n names and its rows are 16-byte aligned:
// offset and row stride multiples of 4, the buffer's size a multiple of 16.
// On lavapipe every lane's load is a loop over the 8 lanes with a mask test
// and a bounds test per element; a vec4 costs those once for 4 elements.
override VEC_A: bool = false;
override VEC_B: bool = false;

// How A(m, k) and B(k, n) are read. Constant at every call site, so each
// entry point compiles to straight-line loads. The convolution forms read
// x [n, C, H, W] and δ [n, CO, OH, OW] in place (implicit im2col): a patch
// element is x at the tap's pixel, 0 in the padding.
const A_MK: u32 = 0u;          // a[a_offset + m·lda + k]
const A_KM: u32 = 1u;          // a[a_offset + k·lda + m]
const A_KM_SQUARED: u32 = 2u;  // a[a_offset + k·lda + m]²
const A_IM2COL: u32 = 3u;      // patch element k = (c, ky, kx) of output pixel m = (s, oy, ox)
const A_COL2IM: u32 = 4u;      // δ at the output pixel that reads input pixel m = (s, iy, ix) through tap k = (o, ky, kx); 0 if none
const A_KM_SLICED: u32 = 5u;   // A_KM at row k + k_shift, 0 past k_total rows (a slice of k: gram_sliced)
const B_NK: u32 = 0u;          // b[b_offset + n·ldb + k]
const B_KN: u32 = 1u;          // b[b_offset + k·ldb + n]
const B_KN_ONE: u32 = 2u;      // b[b_offset + k·ldb + n], and 1 in the last column (the bias's input)
const B_KN_SQUARED_ONE: u32 = 3u;  // the same, squared
const B_CONV_T: u32 = 4u;      // W[o, n, ky, kx] at b_offset for k = (o, ky, kx): the transposed convolution
const B_KN_SLICED: u32 = 5u;   // B_KN at row k + k_shift, 0 past k_total rows

// The first row of A and B the invocation's slice of k starts at (gram_sliced; 0 elsewhere).
var<private> k_shift: u32;

// Where output pixel t = oy·OW + ox of sample s reads x through tap q = (c·KH + ky)·KW + kx, or -1 in the padding.
fn patch_index(s: u32, t: u32, q: u32) -> i32 {
  let taps = dims.conv_kh * dims.conv_kw;
  let c = q / taps;
  let ky = (q % taps) / dims.conv_kw;
  let kx = q % dims.conv_kw;
  let iy = i32((t / dims.conv_ow) * dims.conv_sh + ky * dims.conv_dh) - i32(dims.conv_ph);
  let ix = i32((t % dims.conv_ow) * dims.conv_sw + kx * dims.conv_dw) - i32(dims.conv_pw);
  if (iy < 0 || ix < 0 || iy >= i32(dims.conv_h) || ix >= i32(dims.conv_w)) { return -1; }
  return i32(((s * dims.conv_c + c) * dims.conv_h + u32(iy)) * dims.conv_w + u32(ix));
}

// Where δ [n, CO, OH, OW] holds the output that reads input pixel m = s·H·W + iy·W + ix through
// tap k = (o·KH + ky)·KW + kx: oy·stride = iy + pad − ky·dil when that is a whole row; -1 if none.
fn col2im_index(m: u32, k: u32) -> i32 {
  let plane = dims.conv_h * dims.conv_w;
  let s = m / plane;
  let iy = (m % plane) / dims.conv_w;
  let ix = m % dims.conv_w;
  let taps = dims.conv_kh * dims.conv_kw;
  let o = k / taps;
  let ty = i32(iy + dims.conv_ph) - i32(((k % taps) / dims.conv_kw) * dims.conv_dh);
  let tx = i32(ix + dims.conv_pw) - i32((k % dims.conv_kw) * dims.conv_dw);
  if (ty < 0 || tx < 0 || u32(ty) % dims.conv_sh != 0u || u32(tx) % dims.conv_sw != 0u) { return -1; }
  let oy = u32(ty) / dims.conv_sh;
  let ox = u32(tx) / dims.conv_sw;
  if (oy >= dims.conv_oh || ox >= dims.conv_ow) { return -1; }
  return i32(((s * dims.conv_co + o) * dims.conv_oh + oy) * dims.conv_ow + ox);
}

// Whether a form reads A along m: its elements m, m + 1, … are consecutive
// in memory (the shared core's adjacent lanes take adjacent rows; the
// subgroup core may load four as a vec4).
fn a_along_m(form: u32) -> bool {
  return form == A_KM || form == A_KM_SQUARED;
}

// Whether a form reads B along n, likewise.
fn b_along_n(form: u32) -> bool {
  return form == B_KN || form == B_KN_ONE || form == B_KN_SQUARED_ONE;
}

// A(m … m + 3, k) for m a multiple of 4, of a form a_along_m names. Rows
// past the last are read from the last vec4 that holds one (within its row
// of memory, the stride being a multiple of 4), and are not stored.
fn load_a4(form: u32, m: u32, k: u32) -> vec4f {
  let v = a4[(dims.a_offset + k * dims.lda + min(m, (dims.m - 1u) & ~3u)) / 4u];
  return select(v, v * v, form == A_KM_SQUARED);
}

// B(k, n … n + 3) for n a multiple of 4, of a form b_along_n names; as load_b
// with the bias's column of 1s. Columns past the last are read as in load_a4.
fn load_b4(form: u32, k: u32, n: u32) -> vec4f {
  let inputs = select(dims.n, dims.n - dims.has_bias, form != B_KN);
  let v = b4[(dims.b_offset + k * dims.ldb + min(n, (inputs - 1u) & ~3u)) / 4u];
  let w = select(v, v * v, form == B_KN_SQUARED_ONE);
  return select(w, vec4f(1.0), vec4u(n, n + 1u, n + 2u, n + 3u) >= vec4u(inputs));
}

fn load_a(form: u32, m: u32, k: u32) -> f32 {
  switch form {
    case A_KM: { return a[dims.a_offset + k * dims.lda + m]; }
    case A_KM_SQUARED: { let v = a[dims.a_offset + k * dims.lda + m]; return v * v; }
    case A_IM2COL: {
      let pixels = dims.conv_oh * dims.conv_ow;
      let i = patch_index(m / pixels, m % pixels, k);
      return select(0.0, a[u32(max(i, 0))], i >= 0);
    }
    case A_COL2IM: { let i = col2im_index(m, k); return select(0.0, a[u32(max(i, 0))], i >= 0); }
    case A_KM_SLICED: {
      let row = k + k_shift;
      return select(0.0, a[dims.a_offset + min(row, dims.k_total - 1u) * dims.lda + m], row < dims.k_total);
    }
    default: { return a[dims.a_offset + m * dims.lda + k]; }
  }
}

fn load_b(form: u32, k: u32, n: u32) -> f32 {
  switch form {
    case B_KN: { return b[dims.b_offset + k * dims.ldb + n]; }
    case B_KN_ONE, B_KN_SQUARED_ONE: {
      // With a bias, column N-1 is its constant input 1; clamp its load.
      let inputs = dims.n - dims.has_bias;
      let v = b[dims.b_offset + k * dims.ldb + min(n, inputs - 1u)];
      return select(select(v, v * v, form == B_KN_SQUARED_ONE), 1.0, n >= inputs);
    }
    case B_KN_SLICED: {
      let row = k + k_shift;
      return select(0.0, b[dims.b_offset + min(row, dims.k_total - 1u) * dims.ldb + n], row < dims.k_total);
    }
    case B_CONV_T: {
      let taps = dims.conv_kh * dims.conv_kw;
      return b[dims.b_offset + ((k / taps) * dims.conv_c + n) * taps + k % taps];
    }
    default: { return b[dims.b_offset + n * dims.ldb + k]; }
  }
}

// (first row, first column) of the invocation's block.
fn block_origin(id: vec3u) -> vec2u {
  return vec2u(id.y * TM, id.x * TN);
}

// Whether C[o + (i, j)] exists.
fn in_range(o: vec2u, i: u32, j: u32) -> bool {
  return o.x + i < dims.m && o.y + j < dims.n;
}

@compute @workgroup_size(WG_N, WG_M)
fn linear_forward(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_MK, B_NK, lane_of(inv));
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let at = (o.x + i) * dims.n + o.y + j;
        let z = block_at(&blk, i, j) + select(0.0, b[dims.bias_offset + o.y + j], dims.has_bias != 0u);
        if (dims.store_z != 0u) { c[at] = z; }
        c_act[at] = activate(dims.activation, z);
      }
    }
  }
}

@compute @workgroup_size(WG_N, WG_M)
fn linear_backward(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_MK, B_KN, lane_of(inv));
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let at = (o.x + i) * dims.n + o.y + j;
        c[at] = block_at(&blk, i, j) * activate_derivative(dims.activation, z_in[at]);
      }
    }
  }
}

// Stores C [out, in + has_bias] into θ's layout: column n < in is W[m, n],
// the last (with a bias) is b[m].
fn store_parameters(o: vec2u, blk: ptr<function, Block>, scale: f32) {
  let inputs = dims.n - dims.has_bias;
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let m = o.x + i;
        let n = o.y + j;
        let at = select(dims.c_offset + m * inputs + n, dims.c_bias_offset + m, n == inputs);
        c[at] = block_at(blk, i, j) * scale;
      }
    }
  }
}

@compute @workgroup_size(WG_N, WG_M)
fn weight_gradient(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_KM, B_KN_ONE, lane_of(inv));
  store_parameters(o, &blk, dims.scale);
}

@compute @workgroup_size(WG_N, WG_M)
fn squared_gradient(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_KM_SQUARED, B_KN_SQUARED_ONE, lane_of(inv));
  store_parameters(o, &blk, 1.0);
}

// The block into c, row-major from c_offset with row stride `ld`, or (subtract) taken from what is there.
fn store_block(o: vec2u, blk: ptr<function, Block>, ld: u32, subtract: bool, c_offset: u32) {
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let at = c_offset + (o.x + i) * ld + o.y + j;
        if (subtract) { c[at] = c[at] - block_at(blk, i, j); } else { c[at] = block_at(blk, i, j); }
      }
    }
  }
}

// F is symmetric: a block wholly below the diagonal (its first row, in F's
// numbering, past its last column) is neither computed nor stored; the host
// mirrors the upper triangle. Half the work. A block wholly past F's last row
// (a tall tile over a thin F) is skipped too.
@compute @workgroup_size(WG_N, WG_M)
fn gram(inv: Invocation) {
  let o = block_origin(inv.id);
  if (block_skippable(o.x >= dims.m || dims.a_offset + o.x >= dims.b_offset + o.y + TN)) { return; }
  var blk = block_product(o.x, o.y, A_KM, B_KN, lane_of(inv));
  store_block(o, &blk, dims.n, false, dims.c_offset);
}

// gram with k cut into slices, one per z of the dispatch, each slice's block
// stored c_slice elements after the last's: a thin Gram over many rows (K-FAC's
// factors of a convolution: 26 × 26 over 10⁶ rows) is otherwise one workgroup,
// run by one thread of a CPU-SIMD driver or one core of a GPU. The host sums
// the slices.
@compute @workgroup_size(WG_N, WG_M)
fn gram_sliced(inv: Invocation) {
  let o = block_origin(inv.id);
  if (block_skippable(o.x >= dims.m || dims.a_offset + o.x >= dims.b_offset + o.y + TN)) { return; }
  k_shift = inv.id.z * dims.k;
  var blk = block_product(o.x, o.y, A_KM_SLICED, B_KN_SLICED, lane_of(inv));
  store_block(o, &blk, dims.n, false, dims.c_offset + inv.id.z * dims.c_slice);
}

// C = A B: a blocked Cholesky's panel, U12 = U11⁻ᵀ A12 (A = L11⁻¹, small).
@compute @workgroup_size(WG_N, WG_M)
fn product(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_MK, B_KN, lane_of(inv));
  store_block(o, &blk, dims.ldc, false, dims.c_offset);
}

// C −= Aᵀ B for square C, the trailing update A22 −= U12ᵀ U12 of a blocked
// Cholesky (upper form: both operands read along rows, as gram reads G).
// Only the upper triangle is read later, so a block wholly below the
// diagonal (its first row past its last column) is skipped: half the work.
@compute @workgroup_size(WG_N, WG_M)
fn upper_update(inv: Invocation) {
  let o = block_origin(inv.id);
  if (block_skippable(o.x >= dims.m || o.x >= o.y + TN)) { return; }
  var blk = block_product(o.x, o.y, A_KM, B_KN, lane_of(inv));
  store_block(o, &blk, dims.ldc, true, dims.c_offset);
}

// The convolution as implicit products (groups = 1): rows are output pixels
// (s, oy, ox), columns output channels, the sum over the taps (c, ky, kx);
// stored in the batch's [n, CO, OH, OW] layout. Bias from θ, activation fused.
@compute @workgroup_size(WG_N, WG_M)
fn conv_forward(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_IM2COL, B_NK, lane_of(inv));
  let pixels = dims.conv_oh * dims.conv_ow;
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let m = o.x + i;
        let at = ((m / pixels) * dims.n + o.y + j) * pixels + m % pixels;
        let z = block_at(&blk, i, j) + select(0.0, b[dims.bias_offset + o.y + j], dims.has_bias != 0u);
        if (dims.store_z != 0u) { c[at] = z; }
        c_act[at] = activate(dims.activation, z);
      }
    }
  }
}

// The gradient to the convolution's input: rows are input pixels (s, iy, ix),
// columns input channels, the sum over (o, ky, kx) of W[o, c, ky, kx] · δ at
// the output that reads the pixel through the tap; times act'(z_in) of the
// input's producer; stored in the batch's [n, C, H, W] layout.
@compute @workgroup_size(WG_N, WG_M)
fn conv_input_gradient(inv: Invocation) {
  let o = block_origin(inv.id);
  var blk = block_product(o.x, o.y, A_COL2IM, B_CONV_T, lane_of(inv));
  let pixels = dims.conv_h * dims.conv_w;
  for (var i = 0u; i < block_rows(); i++) {
    for (var j = 0u; j < block_cols(); j++) {
      if (in_range(o, i, j)) {
        let m = o.x + i;
        let at = ((m / pixels) * dims.n + o.y + j) * pixels + m % pixels;
        c[at] = block_at(&blk, i, j) * activate_derivative(dims.activation, z_in[at]);
      }
    }
  }
}
