//! `Adam` and `AdamW`: the first two steps against values worked out by hand.
//!
//! Every test starts from `p = [1, -2]` with `lr = 0.1`, gradients `g1 = [0.5, 1]` then
//! `g2 = [-1, 2]`. The first Adam step has `m_hat = g` and `v_hat = g^2`, so it moves each weight by
//! `lr * sign(g)`; the second is worked out in the comments.

mod common;

use common::{P0, check_two_steps, param};
use tiny_optim::{Adam, AdamW};

#[test]
fn adam_matches_the_bias_corrected_formula() {
    // m2 = 0.9 * 0.1 * g1 + 0.1 * g2 = [-0.055, 0.29], v2 = 0.999 * 0.001 * g1^2 + 0.001 * g2^2
    // = [0.00124975, 0.004999]; m_hat = m2 / 0.19, v_hat = v2 / 0.001999;
    // p = [0.9, -2.1] - 0.1 * m_hat / (sqrt(v_hat) + 1e-8) = [0.9366104, -2.1965182].
    let p = param(&P0);
    check_two_steps(&p, &mut Adam::new(vec![p.clone()], 0.1), [[0.9, -2.1], [0.9366104, -2.1965182]]);
}

#[test]
fn adam_betas_and_eps_are_used() {
    // With betas (0.5, 0.9): m2 = [-0.375, 1.25] / 0.75, v2 = [0.1225, 0.49] / 0.19.
    let p = param(&P0);
    let mut opt = Adam::new(vec![p.clone()], 0.1).betas(0.5, 0.9).eps(1e-8);
    check_two_steps(&p, &mut opt, [[0.9, -2.1], [0.96227, -2.2037833]]);
}

#[test]
fn adam_weight_decay_is_an_l2_term_in_the_gradient() {
    // g1 + 0.1 * p = [0.6, 0.8] keeps its sign, so step 1 is still [0.9, -2.1];
    // g2 + 0.1 * p = [-0.91, 1.79], m2 = [-0.037, 0.251], v2 = [0.00118774, 0.00384346],
    // p = [0.9252635, -2.195272].
    let p = param(&P0);
    let mut opt = Adam::new(vec![p.clone()], 0.1).weight_decay(0.1);
    check_two_steps(&p, &mut opt, [[0.9, -2.1], [0.9252635, -2.195272]]);
}

#[test]
fn adamw_shrinks_the_weights_before_the_adam_update() {
    // Step 1: p * (1 - 0.1 * 0.1) = [0.99, -1.98], minus 0.1 * sign(g1) = [0.89, -2.08].
    // Step 2: [0.8811, -2.0592] plus plain Adam's second move [0.0366104, -0.0965182].
    let p = param(&P0);
    let mut opt = AdamW::new(vec![p.clone()], 0.1).weight_decay(0.1);
    check_two_steps(&p, &mut opt, [[0.89, -2.08], [0.9177104, -2.155718]]);
}

#[test]
fn adamw_defaults_to_weight_decay_0_01() {
    use tiny_optim::Optimizer;
    let opt = AdamW::new(vec![param(&P0)], 0.1);
    let group = &opt.param_groups()[0];
    assert_eq!((group.weight_decay, group.momentum, group.beta2, group.eps), (0.01, 0.9, 0.999, 1e-8));
}
