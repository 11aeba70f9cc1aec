// Activation functions and their derivatives, f32. A library of functions
// (no entry points) that kernels needing activations are composed with.
// The host learns the codes from the ACT_* constants below (by name: the
// activation "gelu" is ACT_GELU), so this file is the only place they are
// numbered.

const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_TANH: u32 = 2u;
const ACT_SIGMOID: u32 = 3u;
const ACT_GELU: u32 = 4u;

const INV_SQRT2: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;

// erf through the Chebyshev fit of erfc in Numerical Recipes (erfcc),
// fractional error below 1.2e-7 everywhere: enough for f32.
fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277))))))));
  let erfc = t * exp(poly);
  return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
}

fn sigmoid_f32(z: f32) -> f32 {
  // exp(-z) overflows to inf for z < -88: the result is then 0, as it should be.
  return 1.0 / (1.0 + exp(-z));
}

fn tanh_f32(z: f32) -> f32 {
  // Some drivers compute tanh as a ratio of exponentials that overflows to
  // NaN for large |z|; tanh(±15) is ±1 in f32 anyway.
  return tanh(clamp(z, -15.0, 15.0));
}

fn activate(code: u32, z: f32) -> f32 {
  switch code {
    case ACT_RELU: { return max(z, 0.0); }
    case ACT_TANH: { return tanh_f32(z); }
    case ACT_SIGMOID: { return sigmoid_f32(z); }
    case ACT_GELU: { return z * 0.5 * (1.0 + erf_f32(z * INV_SQRT2)); }
    default: { return z; }
  }
}

// d activate / dz at z.
fn activate_derivative(code: u32, z: f32) -> f32 {
  switch code {
    case ACT_RELU: { return select(0.0, 1.0, z > 0.0); }
    case ACT_TANH: { let t = tanh_f32(z); return 1.0 - t * t; }
    case ACT_SIGMOID: { let s = sigmoid_f32(z); return s * (1.0 - s); }
    case ACT_GELU: { return 0.5 * (1.0 + erf_f32(z * INV_SQRT2)) + z * INV_SQRT_2PI * exp(-0.5 * z * z); }
    default: { return 1.0; }
  }
}
