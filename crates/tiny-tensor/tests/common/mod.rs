//! Shared test helpers: seeded random tensors and central finite-difference gradient checks.
#![allow(dead_code)]

use rand::SeedableRng;
use rand::rngs::StdRng;
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

fn replace(inputs: &[Tensor], i: usize, data: Vec<f32>) -> Vec<Tensor> {
    let mut out: Vec<Tensor> = inputs.to_vec();
    out[i] = Tensor::from_vec(data, inputs[i].shape()).unwrap();
    out
}

fn assert_close(what: &str, analytic: f64, numeric: f64, rtol: f64, atol: f64) {
    let tol = atol + rtol * numeric.abs().max(analytic.abs());
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic} vs finite difference {numeric} (tolerance {tol})"
    );
}

/// Contracts `f(inputs)` with a fixed random tensor `r` (L = sum(f * r)) and compares the autograd
/// gradient of every element of every input that requires grad with central differences
/// `(L(x + eps) - L(x - eps)) / 2 eps`, computed in f64 from f32 evaluations.
pub fn gradcheck(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    gradcheck_with(inputs, f, 1e-2, 1e-2, 1e-3)
}

pub fn gradcheck_with(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, eps: f32, rtol: f64, atol: f64) {
    let out = f(inputs).unwrap();
    let r = Tensor::uniform(out.shape(), -1.0, 1.0, &mut rng(99)).unwrap();
    let loss = |xs: &[Tensor]| -> f64 {
        let _g = tiny_tensor::no_grad();
        let y = f(xs).unwrap().to_vec();
        y.iter().zip(r.to_vec()).map(|(&a, b)| a as f64 * b as f64).sum()
    };
    for x in inputs {
        x.zero_grad();
    }
    out.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, x) in inputs.iter().enumerate() {
        if !x.requires_grad() {
            continue;
        }
        let grad = x.grad().unwrap_or_else(|| panic!("input {i} got no gradient")).to_vec();
        let base = x.to_vec();
        for j in 0..base.len() {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[j] += eps;
            minus[j] -= eps;
            let numeric = (loss(&replace(inputs, i, plus)) - loss(&replace(inputs, i, minus))) / (2.0 * eps as f64);
            assert_close(&format!("input {i} element {j}"), grad[j] as f64, numeric, rtol, atol);
        }
    }
}

/// Like `gradcheck`, but along one random direction `v` per input: compares `<grad, v>` with
/// `(L(x + eps v) - L(x - eps v)) / 2 eps`. For ops whose inputs are too big to check element by element.
pub fn gradcheck_direction(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, eps: f32, rtol: f64) {
    let out = f(inputs).unwrap();
    let r = Tensor::uniform(out.shape(), -1.0, 1.0, &mut rng(7)).unwrap();
    let loss = |xs: &[Tensor]| -> f64 {
        let _g = tiny_tensor::no_grad();
        let y = f(xs).unwrap().to_vec();
        y.iter().zip(r.to_vec()).map(|(&a, b)| a as f64 * b as f64).sum()
    };
    for x in inputs {
        x.zero_grad();
    }
    out.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, x) in inputs.iter().enumerate() {
        if !x.requires_grad() {
            continue;
        }
        let grad = x.grad().unwrap().to_vec();
        let v = Tensor::uniform(x.shape(), -1.0, 1.0, &mut rng(100 + i as u64)).unwrap().to_vec();
        let base = x.to_vec();
        let plus: Vec<f32> = base.iter().zip(&v).map(|(a, b)| a + eps * b).collect();
        let minus: Vec<f32> = base.iter().zip(&v).map(|(a, b)| a - eps * b).collect();
        let numeric = (loss(&replace(inputs, i, plus)) - loss(&replace(inputs, i, minus))) / (2.0 * eps as f64);
        let analytic: f64 = grad.iter().zip(&v).map(|(&g, &d)| g as f64 * d as f64).sum();
        assert_close(&format!("input {i} along a random direction"), analytic, numeric, rtol, 1e-3);
    }
}

/// Asserts two float slices agree elementwise within `tol`.
pub fn assert_all_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}
