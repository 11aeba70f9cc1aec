// The block product of matmul.wgsl with workgroup-shared tiles, the design
// of the fast WGSL and CUDA matrix products on discrete GPUs: per step of
// TILE_K along k, the workgroup's invocations load the tiles
// A[BM × TILE_K] and B[TILE_K × BN] of its whole output tile
// (BM = WG_M·TM, BN = WG_N·TN) into workgroup memory together, then each
// invocation multiplies its TM × TN block from there, in registers. Every
// value of A and B is so read from device memory once per workgroup tile
// instead of once per invocation.
//
// The tiles are held k-major in vec4s: at each step of k an invocation
// reads its TM values of A and TN of B as TM/4 + TN/4 vec4 loads from
// workgroup memory and updates its block by TM·TN/4 vec4 FMAs. So TM and TN
// are multiples of 4 (the host checks). The loads from device memory stay
// scalar, adjacent invocations reading adjacent addresses of whichever
// operand layout the entry point reads: operands sit at any offset of
// θ-shaped buffers, where a vec4 view would need 16-byte alignment.
// Composed before matmul.wgsl, whose dims, load_a, load_b, the A_*/B_*
// forms with a_along_m and b_along_n, TM, TN, WG_M and WG_N it uses.

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

// Two vec4s per row, as the accumulators are held.
struct Block {
  v: array<vec4f, 16>,  // BLOCK_ROWS × BLOCK_COLS / 4, [2·i + h] = C[row0 + i, col0 + 4h … 4h + 3]
}

// C[row0 + i, col0 + j] of a block.
fn block_at(blk: ptr<function, Block>, i: u32, j: u32) -> f32 {
  return (*blk).v[2u * i + j / 4u][j % 4u];
}

var<workgroup> tile_a: array<vec4f, WG_M * TM * TILE_K / 4u>;  // [kk · BM/4 + q][s] = A(tile row 4q + s, k0 + kk)
var<workgroup> tile_b: array<vec4f, TILE_K * WG_N * TN / 4u>;  // [kk · BN/4 + q][s] = B(k0 + kk, tile column 4q + s)
var<workgroup> any_work: u32;

// The workgroup loads tiles together, so it skips a block only when every
// invocation does: one that has work marks it (they all write the same 1),
// and the load after a barrier gives every invocation the same answer.
fn block_skippable(skip: bool) -> bool {
  if (!skip) { any_work = 1u; }
  return workgroupUniformLoad(&any_work) == 0u;
}


// The TM × TN block of C at (row0, col0); `lane` is the invocation's index in its workgroup.
fn block_product(row0: u32, col0: u32, a_form: u32, b_form: u32, lane: u32) -> Block {
  let bm4 = WG_M * TM / 4u;
  let bn4 = WG_N * TN / 4u;
  let invocations = WG_M * WG_N;
  // This invocation's block within the workgroup's tile (in vec4s), and the tile's origin in C.
  let local_row4 = (lane / WG_N) * TM / 4u;
  let local_col4 = (lane % WG_N) * TN / 4u;
  let tile_row = row0 - 4u * local_row4;
  let tile_col = col0 - 4u * local_col4;
  var acc: array<vec4f, 16>;  // as Block.v
  for (var k0 = 0u; k0 < dims.k; k0 += TILE_K) {
    // Each slot of a tile is 4 values along m (A) or n (B) at one k. Adjacent
    // lanes take adjacent slots along m or n where the layout is contiguous
    // there, else along k.
    for (var e = lane; e < bm4 * TILE_K; e += invocations) {
      let q = select(e / TILE_K, e % bm4, a_along_m(a_form));
      let kk = select(e % TILE_K, e / bm4, a_along_m(a_form));
      let k = min(k0 + kk, dims.k - 1u);
      let r = tile_row + 4u * q;
      let v = vec4f(
        load_a(a_form, min(r, dims.m - 1u), k),
        load_a(a_form, min(r + 1u, dims.m - 1u), k),
        load_a(a_form, min(r + 2u, dims.m - 1u), k),
        load_a(a_form, min(r + 3u, dims.m - 1u), k));
      tile_a[kk * bm4 + q] = select(vec4f(0.0), v, k0 + kk < dims.k);
    }
    for (var e = lane; e < TILE_K * bn4; e += invocations) {
      let q = select(e / TILE_K, e % bn4, b_along_n(b_form));
      let kk = select(e % TILE_K, e / bn4, b_along_n(b_form));
      let k = min(k0 + kk, dims.k - 1u);
      let c = tile_col + 4u * q;
      let v = vec4f(
        load_b(b_form, k, min(c, dims.n - 1u)),
        load_b(b_form, k, min(c + 1u, dims.n - 1u)),
        load_b(b_form, k, min(c + 2u, dims.n - 1u)),
        load_b(b_form, k, min(c + 3u, dims.n - 1u)));
      tile_b[kk * bn4 + q] = select(vec4f(0.0), v, k0 + kk < dims.k);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      var av: array<vec4f, BLOCK_ROWS / 4u>;
      var bv: array<vec4f, BLOCK_COLS / 4u>;
      for (var q = 0u; q < TM / 4u; q++) { av[q] = tile_a[kk * bm4 + local_row4 + q]; }
      for (var q = 0u; q < TN / 4u; q++) { bv[q] = tile_b[kk * bn4 + local_col4 + q]; }
      for (var i = 0u; i < TM; i++) {
        let a = vec4f(av[i / 4u][i % 4u]);
        for (var h = 0u; h < TN / 4u; h++) { acc[2u * i + h] = fma(a, bv[h], acc[2u * i + h]); }
      }
    }
    workgroupBarrier();
  }
  return Block(acc);
}

// The rows and columns the entry points store a block by: TM and TN,
// constants, so that their loops unroll and the block stays in registers.
fn block_rows() -> u32 {
  return TM;
}

fn block_cols() -> u32 {
  return TN;
}
