enable subgroups;
// Shuffles after a subgroup-uniform early return (gram's skipped blocks)
// are well defined: the whole subgroup returns or none of it.
diagnostic(off, subgroup_uniformity);

// The block product of matmul.wgsl with the rows of A shared across a
// subgroup: at each step of k the lane numbered l (subgroup_invocation_id)
// loads rows l, l + WG_N, … of the block and the others receive them by
// subgroupShuffle. A lane so loads TM / WG_N values of A instead of TM,
// which lets blocks grow tall (on a CPU-SIMD driver such as lavapipe,
// per-lane loads are the bottleneck). Where the host sets VEC_A (A's rows
// consecutive in memory and aligned), lane l loads rows 4l … 4l + 3 of each
// 4·WG_N as one vec4 instead; with VEC_B, its 8 columns of B as two vec4s.
// On lavapipe that made the squared-gradient products up to twice as fast
// (bench/RESULTS.md, issue 12's fifth part).
//
// This needs each subgroup to be one workgroup row: WG_N lanes that own the
// same rows. WGSL does not promise how invocations form subgroups, so the
// host checks it on the device (subgroup_rows.wgsl) before it uses a
// workgroup shape, and uses the core only where subgroups have exactly WG_N
// lanes. There is no fallback in the kernel for subgroups formed otherwise:
// any fallback, even one branch in the loop over k, cost lavapipe's
// compiler 2.5–3.5 s more per pipeline (bench/RESULTS.md).
// Composed before matmul.wgsl, whose dims, load_a, load_b, load_a4, load_b4,
// a_along_m, b_along_n, VEC_A, VEC_B, TM, TN and WG_N it uses. TM must be a multiple of WG_N; with VEC_A, of 4·WG_N, and with
// VEC_B, TN of 4 (the host checks).

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
// per row (one where TN ≤ 4): small enough a loop body for the compiler to
// unroll fully.
fn block_product(row0: u32, col0: u32, a_form: u32, b_form: u32, lane: u32) -> Block {
  var acc: array<vec4f, 128>;  // as Block.v
  var cols: array<u32, BLOCK_COLS>;
  for (var j = 0u; j < BLOCK_COLS; j++) { cols[j] = min(col0 + min(j, TN - 1u), dims.n - 1u); }
  // Constant once the overrides are set and the forms inlined: each
  // pipeline compiles one way of loading (a branch left in this loop costs
  // lavapipe's compiler seconds).
  let vec_a = VEC_A && a_along_m(a_form);
  let vec_b = VEC_B && b_along_n(b_form);
  // Whether the block has columns in the second vec4 of a row: with TN ≤ 4
  // (thin Grams) half the FMAs and loads of a step go.
  let wide = TN > 4u;
  for (var k = 0u; k < dims.k; k++) {
    var b0: vec4f;
    var b1: vec4f;
    if (vec_b) {
      b0 = load_b4(b_form, k, col0);
      if (wide) { b1 = load_b4(b_form, k, col0 + 4u); }
    } else {
      // Only the block's TN columns (the tests on the override fold at pipeline creation):
      // a thin Gram's 8 × 1 blocks load one.
      b0 = vec4f(load_b(b_form, k, cols[0]));
      if (TN > 1u) { b0.y = load_b(b_form, k, cols[1]); }
      if (TN > 2u) { b0.z = load_b(b_form, k, cols[2]); }
      if (TN > 3u) { b0.w = load_b(b_form, k, cols[3]); }
      if (wide) { b1 = vec4f(load_b(b_form, k, cols[4]), load_b(b_form, k, cols[5]), load_b(b_form, k, cols[6]), load_b(b_form, k, cols[7])); }
    }
    if (vec_a) {
      // Lane l loads rows 4l … 4l + 3 of each 4·WG_N (TM is a multiple of it).
      for (var r = 0u; r < TM; r += 4u * WG_N) {
        let mine = load_a4(a_form, row0 + r + 4u * lane, k);
        for (var l = 0u; l < WG_N; l++) {
          let q = subgroupShuffle(mine, l);
          for (var s = 0u; s < 4u; s++) {
            let a = vec4f(q[s]);
            let i = r + 4u * l + s;
            acc[2u * i] = fma(a, b0, acc[2u * i]);
            if (wide) { acc[2u * i + 1u] = fma(a, b1, acc[2u * i + 1u]); }
          }
        }
      }
    } else {
      for (var r = 0u; r < TM; r += WG_N) {
        let mine = load_a(a_form, min(row0 + r + lane, dims.m - 1u), k);
        for (var l = 0u; l < WG_N; l++) {
          let a = vec4f(subgroupShuffle(mine, l));
          acc[2u * (r + l)] = fma(a, b0, acc[2u * (r + l)]);
          if (wide) { acc[2u * (r + l) + 1u] = fma(a, b1, acc[2u * (r + l) + 1u]); }
        }
      }
    }
  }
  // Copied out, so that the accumulators stay apart from the block the
  // entry points index. A loop of 2·TM trips: lavapipe unrolls loops of at
  // most 32, so for tall blocks this one stays rolled and acc an array in
  // memory, each FMA a load and a store. That is faster than what its
  // register allocator makes of 256 live accumulators in 16 registers
  // (32 × 8 blocks, alternated: bench/RESULTS.md, issue 12's second part).
  // Returning acc itself compiles in a third of the time, and ran about
  // 45% slower (measured again in issue 12's fourth part).
  var out: Block;
  for (var i = 0u; i < 2u * TM; i++) { out.v[i] = acc[i]; }
  return out;
}

// The rows and columns the entry points store a block by: TM and TN, as
// values the compiler cannot fold (dims.k is never 2³² − 1), so that their
// loops stay rolled. Unrolled, the 32 × 8 stores of a tall block, each with
// its bounds tests, cost lavapipe's compiler 2 s more per pipeline, and
// ran no faster.
fn block_rows() -> u32 {
  return select(TM, 0u, dims.k == 0xffffffffu);
}

fn block_cols() -> u32 {
  return select(TN, 0u, dims.k == 0xffffffffu);
}
