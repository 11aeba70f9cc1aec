// Optimiser steps on the flat parameter vector θ, one invocation per
// parameter (a 2-D grid of workgroups past one dimension's limit: the flat
// index is id.x + id.y · num_workgroups.x · WG, src/kernels/dispatch.ts). The gradient is the batch's mean loss gradient plus a quadratic
// penalty's gradient, scale ⊙ θ − center (EWC: scale = λ Σ_t F_t,
// center = λ Σ_t F_t ⊙ θ*_t; L2: F_t replaced by 1; none: both zero).
//
//   sgd   v ← μ v + g;  θ ← θ − lr · v                (μ = 0: plain SGD)
//   adam  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
//         θ ← θ − lr · (m / c1) / (√(v / c2) + ε),  c1 = 1 − β1^t, c2 = 1 − β2^t

override WG: u32 = 64u;

struct Dims {
  p: u32,
  learning_rate: f32,
  momentum: f32,      // sgd
  beta1: f32,         // adam
  beta2: f32,
  epsilon: f32,
  correction1: f32,   // 1 − β1^t
  correction2: f32,   // 1 − β2^t
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> penalty_scale: array<f32>;
@group(0) @binding(4) var<storage, read> penalty_center: array<f32>;
@group(0) @binding(5) var<storage, read_write> moment1: array<f32>;
@group(0) @binding(6) var<storage, read_write> moment2: array<f32>;

fn flat(id: vec3u, groups: vec3u) -> u32 {
  return id.x + id.y * groups.x * WG;
}

fn total_gradient(i: u32) -> f32 {
  return grad[i] + penalty_scale[i] * theta[i] - penalty_center[i];
}

@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.p) { return; }
  let v = dims.momentum * moment1[i] + total_gradient(i);
  moment1[i] = v;
  theta[i] = theta[i] - dims.learning_rate * v;
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(id, nwg);
  if (i >= dims.p) { return; }
  let g = total_gradient(i);
  let m = dims.beta1 * moment1[i] + (1.0 - dims.beta1) * g;
  let v = dims.beta2 * moment2[i] + (1.0 - dims.beta2) * g * g;
  moment1[i] = m;
  moment2[i] = v;
  theta[i] = theta[i] - dims.learning_rate * (m / dims.correction1) / (sqrt(v / dims.correction2) + dims.epsilon);
}
