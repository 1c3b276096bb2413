//! Shared test helpers: seeded random tensors and thin wrappers over `tiny_tensor::gradcheck`.
#![allow(dead_code)]

pub mod torch;

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
}

/// Checks one random direction per input.
pub fn gradcheck_direction(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, eps: f32, rtol: f64) {
    check_direction(inputs, f, Tolerance { eps, rtol, atol: 1e-3 }).unwrap();
}

/// Asserts two float slices agree elementwise within `tol`.
pub fn assert_all_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}
