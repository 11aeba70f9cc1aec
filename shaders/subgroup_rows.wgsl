enable subgroups;

// Whether the device forms the subgroups of a WG_N × WG_M workgroup as its
// rows: WG_N lanes each, all in one row. WGSL does not promise how
// invocations form subgroups, and the subgroup core of matmul
// (matmul_block_subgroup.wgsl) needs exactly this; the host runs this
// check once per workgroup shape before it uses the core. A module of its
// own, so that it compiles in milliseconds.
//
//   rows  out[i] = 1 for each invocation i of the grid (row-major over
//         global_invocation_id) whose subgroup is WG_N lanes of its
//         workgroup row, else 0

override WG_M: u32 = 1u;
override WG_N: u32 = 1u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG_N, WG_M)
fn rows(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(subgroup_size) size: u32) {
  // Within a workgroup, global_invocation_id's row is the workgroup row.
  let row_shared = subgroupAll(id.y == subgroupBroadcastFirst(id.y));
  out[id.y * groups.x * WG_N + id.x] = select(0.0, 1.0, row_shared && size == WG_N);
}
