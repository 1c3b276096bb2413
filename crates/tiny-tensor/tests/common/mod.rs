//! Shared test helpers: seeded random tensors, thin wrappers over `tiny_tensor::gradcheck`, and `test_device!`
//! with its device helpers.
// Each test binary that includes this module uses only its own part of it.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod device;
pub mod torch;

pub(crate) use device::{GPU_RTOL, assert_values, grad, leaf, on, test_device, tol};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::gradcheck::{Tolerance, check_direction, check_elements};
use tiny_tensor::{Result, Tensor};

/// A seeded generator, so every test sees the same numbers on every run.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in `[lo, hi)`, as a leaf that requires grad.
pub fn param(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::uniform(shape, lo, hi, &mut rng(seed)).unwrap().set_requires_grad(true)
}

/// Uniform values in `[lo, hi)` whose magnitude is at least `gap`, to keep samples away from the
/// kinks of relu and max.
pub fn away_from_zero(shape: &[usize], gap: f32, seed: u64) -> Tensor {
    let t = Tensor::uniform(shape, -1.0, 1.0, &mut rng(seed)).unwrap().to_vec();
    let v = t.into_iter().map(|x| if x.abs() < gap { x.signum() * gap + x } else { x }).collect();
    Tensor::from_vec(v, shape).unwrap().set_requires_grad(true)
}

/// Checks every element's gradient against central differences (eps 1e-2, rtol 1e-2, atol 1e-3).
pub fn gradcheck(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    gradcheck_with(inputs, f, 1e-2, 1e-2, 1e-3)
}

pub fn gradcheck_with(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, eps: f32, rtol: f64, atol: f64) {
    check_elements(inputs, f, Tolerance { eps, rtol, atol }).unwrap();
    assert_grads_where_inputs_are(inputs);
}

/// Checks one random direction per input.
pub fn gradcheck_direction(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, eps: f32, rtol: f64) {
    check_direction(inputs, f, Tolerance { eps, rtol, atol: 1e-3 }).unwrap();
    assert_grads_where_inputs_are(inputs);
}

/// After a check, the autograd gradient of every input that requires grad lives on that input's device.
fn assert_grads_where_inputs_are(inputs: &[Tensor]) {
    for (i, x) in inputs.iter().enumerate().filter(|(_, x)| x.requires_grad()) {
        let on = x.grad().map(|g| g.device());
        assert_eq!(on, Some(x.device()), "input {i}: its gradient is not on its device");
    }
}

/// Asserts two float slices agree elementwise within `tol`.
pub fn assert_all_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}
