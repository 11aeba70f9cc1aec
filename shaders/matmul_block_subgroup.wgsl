enable subgroups;
// Broadcasts after a subgroup-uniform early return (gram's skipped blocks)
// are well defined: the whole subgroup returns or none of it.
diagnostic(off, subgroup_uniformity);

// The block product of matmul.wgsl with the rows of A shared across a
// subgroup. The host uses this core only where subgroups have exactly WG_N
// lanes, as many as a workgroup row; where the lanes of a subgroup own the
// same TM rows (they do when a subgroup is a workgroup row, as drivers form
// them), at each step of k the lane numbered l (subgroup_invocation_id)
// loads rows l, l + WG_N, … of the block and the others receive them by
// subgroupShuffle. WGSL does not promise how invocations form subgroups, so a
// subgroup whose lanes own different rows computes its blocks unshared. A lane then
// loads TM / WG_N values of A instead of TM, which lets blocks grow tall (on
// a CPU-SIMD driver such as lavapipe, per-lane loads are the bottleneck).
// Composed before matmul.wgsl, whose dims, load_a, load_b, TM, TN and WG_N
// it uses. TM must be a multiple of WG_N.

struct Invocation {
  @builtin(global_invocation_id) id: vec3u,
  @builtin(subgroup_invocation_id) lane: u32,
}

fn lane_of(inv: Invocation) -> u32 {
  return inv.lane;
}

const BLOCK_ROWS: u32 = 64u;
const BLOCK_COLS: u32 = 8u;

// Two vec4s per row, as the accumulators are held: block_product's copy
// into it is 2·TM vec4 moves (into 8 scalars per row, it cost lavapipe's
// compiler about half a second per pipeline).
struct Block {
  v: array<vec4f, 128>,  // BLOCK_ROWS × BLOCK_COLS / 4, [2·i + h] = C[row0 + i, col0 + 4h … 4h + 3]
}

// C[row0 + i, col0 + j] of a block.
fn block_at(blk: ptr<function, Block>, i: u32, j: u32) -> f32 {
  return (*blk).v[2u * i + j / 4u][j % 4u];
}

// A block may be skipped only when the whole subgroup skips it.
fn block_skippable(skip: bool) -> bool {
  return subgroupAll(skip);
}

// Columns are held as two vec4s (TN ≤ 8), so the inner step is two vec4 FMAs
// per row: small enough a loop body for the compiler to unroll fully.
fn block_product(row0: u32, col0: u32, a_form: u32, b_form: u32, lane: u32) -> Block {
  if (!subgroupAll(row0 == subgroupBroadcastFirst(row0))) { return unshared_block_product(row0, col0, a_form, b_form); }
  var acc: array<vec4f, 128>;  // as Block.v
  var cols: array<u32, BLOCK_COLS>;
  for (var j = 0u; j < BLOCK_COLS; j++) { cols[j] = min(col0 + min(j, TN - 1u), dims.n - 1u); }
  for (var k = 0u; k < dims.k; k++) {
    let b0 = vec4f(load_b(b_form, k, cols[0]), load_b(b_form, k, cols[1]), load_b(b_form, k, cols[2]), load_b(b_form, k, cols[3]));
    let b1 = vec4f(load_b(b_form, k, cols[4]), load_b(b_form, k, cols[5]), load_b(b_form, k, cols[6]), load_b(b_form, k, cols[7]));
    for (var r = 0u; r < TM; r += WG_N) {
      let mine = load_a(a_form, min(row0 + r + lane, dims.m - 1u), k);
      for (var l = 0u; l < WG_N; l++) {
        let a = vec4f(subgroupShuffle(mine, l));
        acc[2u * (r + l)] = fma(a, b0, acc[2u * (r + l)]);
        acc[2u * (r + l) + 1u] = fma(a, b1, acc[2u * (r + l) + 1u]);
      }
    }
  }
  // Copied out, so that the accumulators stay apart from the block the
  // entry points index. A loop of 2·TM trips: lavapipe unrolls loops of at
  // most 32, so for tall blocks this one stays rolled and acc an array in
  // memory, each FMA a load and a store. That is faster than what its
  // register allocator makes of 256 live accumulators in 16 registers
  // (32 × 8 blocks, alternated: bench/RESULTS.md, issue 12's second part).
  var out: Block;
  for (var i = 0u; i < 2u * TM; i++) { out.v[i] = acc[i]; }
  return out;
}

// The block with every lane loading its own operands: correct however the
// subgroup is formed, and slow; block_product falls back to it. One loop
// over the block's elements, kept small: each result goes into the block
// through a ladder of constant-indexed selects (a store at a computed index
// into the block cost lavapipe's compiler seconds per pipeline).
fn unshared_block_product(row0: u32, col0: u32, a_form: u32, b_form: u32) -> Block {
  var out: Block;
  let count = TM * TN;
  for (var e = 0u; e < count; e++) {
    let i = e / TN;
    let j = e % TN;
    let r = min(row0 + i, dims.m - 1u);
    let c = min(col0 + j, dims.n - 1u);
    var acc = 0.0;
    for (var k = 0u; k < dims.k; k++) { acc = fma(load_a(a_form, r, k), load_b(b_form, k, c), acc); }
    let low = (vec4u(0u, 1u, 2u, 3u) == vec4u(j));
    let high = (vec4u(4u, 5u, 6u, 7u) == vec4u(j));
    for (var t = 0u; t < TM; t++) {
      let here = vec4<bool>(t == i);
      out.v[2u * t] = select(out.v[2u * t], vec4f(acc), low & here);
      out.v[2u * t + 1u] = select(out.v[2u * t + 1u], vec4f(acc), high & here);
    }
  }
  return out;
}
