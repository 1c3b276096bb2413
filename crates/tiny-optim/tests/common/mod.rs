//! Helpers shared by the integration tests: fixed parameters, fixed gradients and close comparisons.
#![allow(dead_code)]

use tiny_nn::Parameter;
use tiny_optim::Optimizer;
use tiny_tensor::Tensor;

/// The starting weights of the hand-computed tests.
pub const P0: [f32; 2] = [1.0, -2.0];

/// The gradients of the first and second step of the hand-computed tests.
pub const GRADS: [[f32; 2]; 2] = [[0.5, 1.0], [-1.0, 2.0]];

/// A parameter holding `values` as a 1-D tensor.
pub fn param(values: &[f32]) -> Parameter {
    Parameter::new(Tensor::from_vec(values.to_vec(), &[values.len()]).unwrap())
}

/// Gives `p` the gradient `g`, as `backward` would.
pub fn set_grad(p: &Parameter, g: &[f32]) {
    p.set_grad(Some(Tensor::from_vec(g.to_vec(), p.shape()).unwrap())).unwrap();
}

/// Asserts that `actual` and `expected` agree to `1e-5` relative to their size.
pub fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{actual:?} vs {expected:?}");
    }
}

/// Runs the two fixed steps on `p` with `opt` and checks the weights after each against `expected`.
pub fn check_two_steps(p: &Parameter, opt: &mut dyn Optimizer, expected: [[f32; 2]; 2]) {
    for (g, want) in GRADS.iter().zip(expected) {
        set_grad(p, g);
        opt.step().unwrap();
        opt.zero_grad();
        assert_close(&p.to_vec(), &want);
    }
}
