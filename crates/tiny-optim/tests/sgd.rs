//! `Sgd`: the first two steps of each variant against values worked out by hand.
//!
//! Every test starts from `p = [1, -2]` with `lr = 0.1`, gradients `g1 = [0.5, 1]` then
//! `g2 = [-1, 2]`, and follows PyTorch's formulas: `d = g + wd * p`, `buf = d` on the first step and
//! `buf = m * buf + (1 - dampening) * d` after, `d = buf` (or `d + m * buf` with Nesterov),
//! `p -= lr * d`.

mod common;

use common::{P0, check_two_steps, param};
use tiny_optim::Sgd;

#[test]
fn plain_sgd_is_p_minus_lr_g() {
    // [1 - 0.1 * 0.5, -2 - 0.1 * 1] = [0.95, -2.1], then [0.95 + 0.1, -2.1 - 0.2] = [1.05, -2.3].
    let p = param(&P0);
    check_two_steps(&p, &mut Sgd::new(vec![p.clone()], 0.1), [[0.95, -2.1], [1.05, -2.3]]);
}

#[test]
fn weight_decay_is_added_to_the_gradient() {
    // d1 = [0.5 + 0.1, 1 - 0.2] = [0.6, 0.8], p = [0.94, -2.08];
    // d2 = [-1 + 0.094, 2 - 0.208] = [-0.906, 1.792], p = [1.0306, -2.2592].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).weight_decay(0.1);
    check_two_steps(&p, &mut opt, [[0.94, -2.08], [1.0306, -2.2592]]);
}

#[test]
fn momentum_starts_with_the_gradient() {
    // buf1 = g1, p = [0.95, -2.1]; buf2 = 0.9 * [0.5, 1] + [-1, 2] = [-0.55, 2.9], p = [1.005, -2.39].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9);
    check_two_steps(&p, &mut opt, [[0.95, -2.1], [1.005, -2.39]]);
}

#[test]
fn momentum_with_weight_decay() {
    // buf1 = d1 = [0.6, 0.8], p = [0.94, -2.08]; d2 = [-0.906, 1.792],
    // buf2 = 0.9 * [0.6, 0.8] + d2 = [-0.366, 2.512], p = [0.9766, -2.3312].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9).weight_decay(0.1);
    check_two_steps(&p, &mut opt, [[0.94, -2.08], [0.9766, -2.3312]]);
}

#[test]
fn dampening_scales_the_new_gradient_after_the_first_step() {
    // buf1 = g1 (no dampening on the first step); buf2 = 0.9 * [0.5, 1] + 0.5 * [-1, 2] = [-0.05, 1.9].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9).dampening(0.5);
    check_two_steps(&p, &mut opt, [[0.95, -2.1], [0.955, -2.29]]);
}

#[test]
fn nesterov_looks_ahead_along_the_buffer() {
    // d1 = g1 + 0.9 * g1 = [0.95, 1.9], p = [0.905, -2.19];
    // buf2 = [-0.55, 2.9], d2 = [-1 - 0.495, 2 + 2.61] = [-1.495, 4.61], p = [1.0545, -2.651].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9).nesterov(true);
    check_two_steps(&p, &mut opt, [[0.905, -2.19], [1.0545, -2.651]]);
}

#[test]
fn nesterov_with_weight_decay() {
    // d1 = [0.6, 0.8], buf1 = d1, p = 1 - 0.1 * 1.9 * d1 = [0.886, -2.152];
    // d2 = [-0.9114, 1.7848], buf2 = [-0.3714, 2.5048], d2 + 0.9 * buf2 = [-1.24566, 4.03912],
    // p = [1.010566, -2.555912].
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9).nesterov(true).weight_decay(0.1);
    check_two_steps(&p, &mut opt, [[0.886, -2.152], [1.010566, -2.555912]]);
}
