// The block product of matmul.wgsl with workgroup-shared tiles, the design
// of the fast WGSL and CUDA matrix products on discrete GPUs: per step of
// TILE_K along k, the workgroup's invocations load the tiles
// A[BM × TILE_K] and B[TILE_K × BN] of its whole output tile
// (BM = WG_M·TM, BN = WG_N·TN) into workgroup memory together, adjacent
// invocations reading adjacent addresses of whichever operand layout the
// entry point reads, then each invocation multiplies its TM × TN block
// from there, in registers. Every value of A and B is so read from device
// memory once per workgroup tile instead of once per invocation.
// Composed before matmul.wgsl, whose dims, load_a, load_b, the A_*/B_*
// forms, TM, TN, WG_M and WG_N it uses.

const TILE_K: u32 = 16u;

struct Invocation {
  @builtin(global_invocation_id) id: vec3u,
  @builtin(local_invocation_index) lane: u32,
}

// The invocation's index in its workgroup (local.y · WG_N + local.x).
fn lane_of(inv: Invocation) -> u32 {
  return inv.lane;
}

const BLOCK_ROWS: u32 = 8u;
const BLOCK_COLS: u32 = 8u;

struct Block {
  v: array<f32, 64>,  // BLOCK_ROWS × BLOCK_COLS, [i·BLOCK_COLS + j] = C[row0 + i, col0 + j]
}

// C[row0 + i, col0 + j] of a block.
fn block_at(blk: ptr<function, Block>, i: u32, j: u32) -> f32 {
  return (*blk).v[i * BLOCK_COLS + j];
}

var<workgroup> tile_a: array<f32, WG_M * TM * TILE_K>;  // [r · TILE_K + kk] = A(tile row r, k0 + kk)
var<workgroup> tile_b: array<f32, TILE_K * WG_N * TN>;  // [kk · BN + c] = B(k0 + kk, tile column c)
var<workgroup> any_work: u32;

// The workgroup loads tiles together, so it skips a block only when every
// invocation does: one that has work marks it (they all write the same 1),
// and the load after a barrier gives every invocation the same answer.
fn block_skippable(skip: bool) -> bool {
  if (!skip) { any_work = 1u; }
  return workgroupUniformLoad(&any_work) == 0u;
}

// Whether a form reads A along m (then adjacent lanes take adjacent rows).
fn a_along_m(form: u32) -> bool {
  return form == A_KM || form == A_KM_SQUARED;
}

// Whether a form reads B along n.
fn b_along_n(form: u32) -> bool {
  return form == B_KN || form == B_KN_ONE || form == B_KN_SQUARED_ONE;
}

// The TM × TN block of C at (row0, col0); `lane` is the invocation's index in its workgroup.
fn block_product(row0: u32, col0: u32, a_form: u32, b_form: u32, lane: u32) -> Block {
  let bm = WG_M * TM;
  let bn = WG_N * TN;
  let invocations = WG_M * WG_N;
  // This invocation's block within the workgroup's tile, and the tile's origin in C.
  let local_row = (lane / WG_N) * TM;
  let local_col = (lane % WG_N) * TN;
  let tile_row = row0 - local_row;
  let tile_col = col0 - local_col;
  var acc: Block;
  for (var k0 = 0u; k0 < dims.k; k0 += TILE_K) {
    for (var e = lane; e < bm * TILE_K; e += invocations) {
      // Along m or along k, whichever the layout stores contiguously.
      let r = select(e / TILE_K, e % bm, a_along_m(a_form));
      let kk = select(e % TILE_K, e / bm, a_along_m(a_form));
      let k = k0 + kk;
      let v = load_a(a_form, min(tile_row + r, dims.m - 1u), min(k, dims.k - 1u));
      tile_a[r * TILE_K + kk] = select(0.0, v, k < dims.k);
    }
    for (var e = lane; e < TILE_K * bn; e += invocations) {
      let c = select(e / TILE_K, e % bn, b_along_n(b_form));
      let kk = select(e % TILE_K, e / bn, b_along_n(b_form));
      let k = k0 + kk;
      let v = load_b(b_form, min(k, dims.k - 1u), min(tile_col + c, dims.n - 1u));
      tile_b[kk * bn + c] = select(0.0, v, k < dims.k);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      var av: array<f32, BLOCK_ROWS>;
      var bv: array<f32, BLOCK_COLS>;
      for (var i = 0u; i < TM; i++) { av[i] = tile_a[(local_row + i) * TILE_K + kk]; }
      for (var j = 0u; j < TN; j++) { bv[j] = tile_b[kk * bn + local_col + j]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc.v[i * BLOCK_COLS + j] = fma(av[i], bv[j], acc.v[i * BLOCK_COLS + j]);
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}
