//! Central finite-difference gradient checks, like `torch.autograd.gradcheck`, for tests of any op.
//!
//! Each check contracts `f(inputs)` with a fixed random tensor `r`, so `L = sum(f * r)` is a scalar,
//! and compares autograd's gradient of `L` with `(L(x + eps d) - L(x - eps d)) / 2 eps`, evaluated in
//! f64 from f32 forwards. Inputs may live on any device: the perturbed copies and `r` are made on the host and
//! moved to the device of the tensor they stand for.

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{Result, Tensor, no_grad};

/// Tolerances of a gradient check: step `eps`, relative `rtol`, absolute `atol`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub eps: f32,
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    /// eps 1e-2, rtol 1e-2, atol 1e-3: right for f32 ops on inputs of order 1.
    fn default() -> Self {
        Tolerance { eps: 1e-2, rtol: 1e-2, atol: 1e-3 }
    }
}

/// `inputs` with input `i` replaced by `data`, on the device of input `i`.
fn with_input(inputs: &[Tensor], i: usize, data: Vec<f32>) -> Result<Vec<Tensor>> {
    let mut out = inputs.to_vec();
    out[i] = Tensor::from_vec(data, inputs[i].shape())?.to_device(inputs[i].device())?;
    Ok(out)
}

fn compare(what: String, analytic: f64, numeric: f64, tol: Tolerance) -> std::result::Result<(), String> {
    let allowed = tol.atol + tol.rtol * numeric.abs().max(analytic.abs());
    if (analytic - numeric).abs() <= allowed {
        Ok(())
    } else {
        Err(format!("{what}: analytic {analytic} vs finite difference {numeric} (tolerance {allowed})"))
    }
}

/// The contraction tensor, the scalar objective, and the autograd gradients of every input.
struct Setup {
    r: Vec<f32>,
    grads: Vec<Option<Vec<f32>>>,
}

fn setup(inputs: &[Tensor], f: &impl Fn(&[Tensor]) -> Result<Tensor>, seed: u64) -> Result<Setup> {
    let out = f(inputs)?;
    let r = Tensor::uniform(out.shape(), -1.0, 1.0, &mut StdRng::seed_from_u64(seed))?;
    for x in inputs {
        x.zero_grad();
    }
    out.mul(&r.to_device(out.device())?)?.sum_all()?.backward()?;
    let grads = inputs.iter().map(|x| x.grad().map(|g| g.try_to_vec()).transpose()).collect::<Result<_>>()?;
    Ok(Setup { r: r.to_vec(), grads })
}

fn objective(inputs: &[Tensor], f: &impl Fn(&[Tensor]) -> Result<Tensor>, r: &[f32]) -> Result<f64> {
    let _guard = no_grad();
    Ok(f(inputs)?.try_to_vec()?.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum())
}

/// `(L(plus) - L(minus)) / 2 eps` with input `i` replaced by `plus` and by `minus`.
fn central_difference(
    inputs: &[Tensor],
    i: usize,
    (plus, minus): (Vec<f32>, Vec<f32>),
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
    r: &[f32],
    eps: f32,
) -> std::result::Result<f64, String> {
    let lp = with_input(inputs, i, plus).and_then(|xs| objective(&xs, f, r)).map_err(|e| e.to_string())?;
    let lm = with_input(inputs, i, minus).and_then(|xs| objective(&xs, f, r)).map_err(|e| e.to_string())?;
    Ok((lp - lm) / (2.0 * eps as f64))
}

/// Checks every element of every input that requires grad. Returns a message naming the first
/// element whose gradient disagrees.
pub fn check_elements(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    tol: Tolerance,
) -> std::result::Result<(), String> {
    let s = setup(inputs, &f, 99).map_err(|e| e.to_string())?;
    for (i, x) in inputs.iter().enumerate().filter(|(_, x)| x.requires_grad()) {
        let grad = s.grads[i].as_ref().ok_or(format!("input {i} got no gradient"))?;
        let base = x.try_to_vec().map_err(|e| e.to_string())?;
        for j in 0..base.len() {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[j] += tol.eps;
            minus[j] -= tol.eps;
            let numeric = central_difference(inputs, i, (plus, minus), &f, &s.r, tol.eps)?;
            compare(format!("input {i} element {j}"), grad[j] as f64, numeric, tol)?;
        }
    }
    Ok(())
}

/// Checks one random direction per input, `<grad, d>` against the directional finite difference: for
/// ops whose inputs are too large to check element by element (convolutions, batchnorm, blocks).
pub fn check_direction(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    tol: Tolerance,
) -> std::result::Result<(), String> {
    let s = setup(inputs, &f, 7).map_err(|e| e.to_string())?;
    for (i, x) in inputs.iter().enumerate().filter(|(_, x)| x.requires_grad()) {
        let grad = s.grads[i].as_ref().ok_or(format!("input {i} got no gradient"))?;
        let mut rng = StdRng::seed_from_u64(100 + i as u64);
        let d = Tensor::uniform(x.shape(), -1.0, 1.0, &mut rng).map_err(|e| e.to_string())?.to_vec();
        let base = x.try_to_vec().map_err(|e| e.to_string())?;
        let plus = base.iter().zip(&d).map(|(a, b)| a + tol.eps * b).collect();
        let minus = base.iter().zip(&d).map(|(a, b)| a - tol.eps * b).collect();
        let numeric = central_difference(inputs, i, (plus, minus), &f, &s.r, tol.eps)?;
        let analytic = grad.iter().zip(&d).map(|(&g, &v)| g as f64 * v as f64).sum();
        compare(format!("input {i} along a random direction"), analytic, numeric, tol)?;
    }
    Ok(())
}
