// The block product of matmul.wgsl, plain: every invocation loads the TM
// values of A and TN of B it needs at each step of k. Composed before
// matmul.wgsl, whose dims, load_a, load_b, TM and TN it uses.

const BLOCK_ROWS: u32 = 8u;
const BLOCK_COLS: u32 = 8u;

struct Invocation {
  @builtin(global_invocation_id) id: vec3u,
}

// This core shares nothing between lanes: it needs no lane.
fn lane_of(inv: Invocation) -> u32 {
  return 0u;
}

struct Block {
  v: array<f32, 64>,  // BLOCK_ROWS × BLOCK_COLS, [i·BLOCK_COLS + j] = C[row0 + i, col0 + j]
}

// C[row0 + i, col0 + j] of a block.
fn block_at(blk: ptr<function, Block>, i: u32, j: u32) -> f32 {
  return (*blk).v[i * BLOCK_COLS + j];
}

// Whether the caller may skip the block (no lanes to coordinate with here).
fn block_skippable(skip: bool) -> bool {
  return skip;
}

// The TM × TN block of C at (row0, col0). `lane` is unused by this core.
fn block_product(row0: u32, col0: u32, a_form: u32, b_form: u32, lane: u32) -> Block {
  var acc: Block;
  var rows: array<u32, BLOCK_ROWS>;
  var cols: array<u32, BLOCK_COLS>;
  for (var i = 0u; i < TM; i++) { rows[i] = min(row0 + i, dims.m - 1u); }
  for (var j = 0u; j < TN; j++) { cols[j] = min(col0 + j, dims.n - 1u); }
  for (var k = 0u; k < dims.k; k++) {
    var av: array<f32, BLOCK_ROWS>;
    var bv: array<f32, BLOCK_COLS>;
    for (var i = 0u; i < TM; i++) { av[i] = load_a(a_form, rows[i], k); }
    for (var j = 0u; j < TN; j++) { bv[j] = load_b(b_form, k, cols[j]); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        acc.v[i * BLOCK_COLS + j] = fma(av[i], bv[j], acc.v[i * BLOCK_COLS + j]);
      }
    }
  }
  return acc;
}

// The rows and columns the entry points store a block by: TM and TN,
// constants, so that their loops unroll and the block stays in registers.
fn block_rows() -> u32 {
  return TM;
}

fn block_cols() -> u32 {
  return TN;
}
