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
//
// The functions here name their arguments v (and their locals a_*): kernels
// composed with this file bind buffers named x, y, z, and a reflection that
// matches names would take a function's x for the kernel's.
fn erf_f32(v: f32) -> f32 {
  let a_abs = abs(v);
  let a_t = 1.0 / (1.0 + 0.5 * a_abs);
  let a_poly = -a_abs * a_abs - 1.26551223 + a_t * (1.00002368 + a_t * (0.37409196 + a_t * (0.09678418 +
    a_t * (-0.18628806 + a_t * (0.27886807 + a_t * (-1.13520398 + a_t * (1.48851587 +
    a_t * (-0.82215223 + a_t * 0.17087277))))))));
  let a_erfc = a_t * exp(a_poly);
  return select(a_erfc - 1.0, 1.0 - a_erfc, v >= 0.0);
}

fn sigmoid_f32(v: f32) -> f32 {
  // exp(-v) overflows to inf for v < -88: the result is then 0, as it should be.
  return 1.0 / (1.0 + exp(-v));
}

fn tanh_f32(v: f32) -> f32 {
  // Some drivers compute tanh as a ratio of exponentials that overflows to
  // NaN for large |v|; tanh(±15) is ±1 in f32 anyway.
  return tanh(clamp(v, -15.0, 15.0));
}

fn activate(code: u32, v: f32) -> f32 {
  switch code {
    case ACT_RELU: { return max(v, 0.0); }
    case ACT_TANH: { return tanh_f32(v); }
    case ACT_SIGMOID: { return sigmoid_f32(v); }
    case ACT_GELU: { return v * 0.5 * (1.0 + erf_f32(v * INV_SQRT2)); }
    default: { return v; }
  }
}

// Added to a code in a backward epilogue: the derivative is taken from the
// output a = activate(code, z), saved in place of z, for the activations
// whose derivative is a function of their output (derivative_at_output's
// cases; the host reads them from there). Their z need not be stored: a
// buffer less per layer, its stores and its memory. The same float32
// operations either way, so the results are the same bit for bit.
const ACT_AT_OUTPUT: u32 = 16u;

// d activate / dv at v (v the pre-activation; the output where the code
// carries ACT_AT_OUTPUT).
fn activate_derivative(code: u32, v: f32) -> f32 {
  if (code >= ACT_AT_OUTPUT) { return derivative_at_output(code - ACT_AT_OUTPUT, v); }
  switch code {
    case ACT_RELU: { return select(0.0, 1.0, v > 0.0); }
    case ACT_TANH: { let a_t = tanh_f32(v); return 1.0 - a_t * a_t; }
    case ACT_SIGMOID: { let a_s = sigmoid_f32(v); return a_s * (1.0 - a_s); }
    case ACT_GELU: { return 0.5 * (1.0 + erf_f32(v * INV_SQRT2)) + v * INV_SQRT_2PI * exp(-0.5 * v * v); }
    default: { return 1.0; }
  }
}

// d activate / dv from the output a = activate(code, v), where it is a
// function of it. The default (1) serves the identity; no other code comes
// here (the host adds ACT_AT_OUTPUT only to the codes of the cases below).
fn derivative_at_output(code: u32, a: f32) -> f32 {
  switch code {
    case ACT_RELU: { return select(0.0, 1.0, a > 0.0); }
    case ACT_TANH: { return 1.0 - a * a; }
    case ACT_SIGMOID: { return a * (1.0 - a); }
    default: { return 1.0; }
  }
}
