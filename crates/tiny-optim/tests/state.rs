//! Saving and restoring optimizer state: a restored optimizer takes exactly the step the original
//! would have, and a state that does not fit is refused with the first mismatch named.

mod common;

use common::{GRADS, P0, param, set_grad};
use tiny_nn::Parameter;
use tiny_optim::{Adam, AdamW, OptimError, Optimizer, OptimizerState, ParamGroup, Sgd};
use tiny_tensor::Tensor;

/// Two optimizers built by `make` over equal weights; the first takes the two fixed steps, its state
/// is loaded into the second, then both take one more step and must agree bit for bit.
fn resume_matches(make: impl Fn(Vec<Parameter>) -> Box<dyn Optimizer>, fresh: Box<dyn Optimizer>, fresh_p: Parameter) {
    let p = param(&P0);
    let mut opt = make(vec![p.clone()]);
    for g in GRADS {
        set_grad(&p, &g);
        opt.step().unwrap();
    }
    let state = opt.state_dict().unwrap();

    let mut restored = fresh;
    fresh_p.assign(p.tensor()).unwrap();
    restored.load_state_dict(&state).unwrap();
    assert_eq!(restored.param_groups()[0].lr, opt.param_groups()[0].lr);
    assert_eq!(restored.momentum(), opt.momentum());

    for (o, q) in [(&mut opt, &p), (&mut restored, &fresh_p)] {
        set_grad(q, &[0.3, -0.7]);
        o.step().unwrap();
    }
    assert_eq!(p.to_vec(), fresh_p.to_vec());
    assert_eq!(restored.state_dict().unwrap().step, 3);
}

#[test]
fn sgd_momentum_resumes_exactly() {
    let q = param(&[0.0, 0.0]);
    let fresh = Box::new(Sgd::new(vec![q.clone()], 0.5));
    resume_matches(|ps| Box::new(Sgd::new(ps, 0.1).momentum(0.9).nesterov(true)), fresh, q);
}

#[test]
fn adam_resumes_exactly_with_its_step_count() {
    let q = param(&[0.0, 0.0]);
    let fresh = Box::new(Adam::new(vec![q.clone()], 0.5).betas(0.5, 0.5));
    resume_matches(|ps| Box::new(Adam::new(ps, 0.1).weight_decay(0.01)), fresh, q);
}

#[test]
fn adamw_resumes_exactly() {
    let q = param(&[0.0, 0.0]);
    let fresh = Box::new(AdamW::new(vec![q.clone()], 0.5));
    resume_matches(|ps| Box::new(AdamW::new(ps, 0.1).weight_decay(0.1)), fresh, q);
}

#[test]
fn state_names_entries_by_group_parameter_and_buffer() {
    let (a, b) = (param(&[1.0]), param(&[1.0, 2.0]));
    let mut opt = Adam::new(vec![a.clone()], 0.1).param_group(vec![b.clone()], 0.01);
    set_grad(&b, &[1.0, 1.0]);
    opt.step().unwrap();
    let state = opt.state_dict().unwrap();
    let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["1.0.exp_avg", "1.0.exp_avg_sq"]);
    assert_eq!(state.kind, "adam");
    assert_eq!(state.step, 1);
    assert_eq!(state.groups[0].param_steps, [0]);
    assert_eq!(state.groups[1].param_steps, [1]);
    assert_eq!(state.groups[1].param_shapes, [vec![2]]);
    assert_eq!(state.groups[1].lr, 0.01);

    let mut sgd = Sgd::new(vec![a.clone()], 0.1).momentum(0.9);
    set_grad(&a, &[1.0]);
    sgd.step().unwrap();
    let names: Vec<String> = sgd.state_dict().unwrap().tensors.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.0.momentum_buffer"]);
}

#[test]
fn saved_state_is_a_snapshot() {
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9);
    set_grad(&p, &GRADS[0]);
    opt.step().unwrap();
    let state = opt.state_dict().unwrap();
    set_grad(&p, &GRADS[1]);
    opt.step().unwrap();
    assert_eq!(state.tensors[0].1.to_vec(), GRADS[0]);
}

#[test]
fn metadata_round_trip_restores_the_same_optimizer() {
    let p = param(&P0);
    let mut opt = Adam::new(vec![p.clone()], 0.1).param_group(vec![param(&[3.0; 6])], 0.001);
    set_grad(&p, &GRADS[0]);
    opt.step().unwrap();
    let state = opt.state_dict().unwrap();
    let back = OptimizerState::from_metadata(&state.to_metadata(), state.tensors.clone()).unwrap();
    assert_eq!((back.kind.as_str(), back.step), ("adam", 1));
    assert_eq!(back.groups, state.groups);

    let mut meta = state.to_metadata();
    meta.retain(|(k, _)| k != "optim.1.beta2");
    let err = OptimizerState::from_metadata(&meta, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("optim.1.beta2"), "{err}");
    let meta: Vec<(String, String)> = state
        .to_metadata()
        .into_iter()
        .map(|(k, v)| if k == "optim.0.lr" { (k, "fast".into()) } else { (k, v) })
        .collect();
    let err = OptimizerState::from_metadata(&meta, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("optim.0.lr"), "{err}");
}

/// The state of a two-step momentum SGD over parameters of shapes `[2]` and `[3]`.
fn two_param_state() -> OptimizerState {
    let (a, b) = (param(&P0), param(&[1.0, 2.0, 3.0]));
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], 0.1).momentum(0.9);
    set_grad(&a, &GRADS[0]);
    set_grad(&b, &[1.0, 1.0, 1.0]);
    opt.step().unwrap();
    opt.state_dict().unwrap()
}

/// Loads `state` into `opt`, expects a mismatch whose message contains `needle`, and checks that the
/// optimizer's learning rate was left alone.
fn refuses(opt: &mut dyn Optimizer, state: &OptimizerState, needle: &str) {
    let lr = opt.lr();
    match opt.load_state_dict(state) {
        Err(e @ OptimError::StateMismatch { .. }) => assert!(e.to_string().contains(needle), "{e}"),
        other => panic!("expected a mismatch naming {needle:?}, got {other:?}"),
    }
    assert_eq!(opt.lr(), lr);
}

#[test]
fn mismatched_state_is_refused_naming_the_first_difference() {
    let state = two_param_state();
    let one = || Sgd::new(vec![param(&P0)], 0.5);
    refuses(&mut one(), &state, "group 0: saved 2 parameters, the group has 1");
    let swapped = Sgd::new(vec![param(&P0), param(&[0.0; 4])], 0.5);
    refuses(&mut swapped.clone(), &state, "parameter 0.1: saved shape [3], the parameter has [4]");
    let two_groups = Sgd::new(vec![param(&P0)], 0.5).param_group(vec![param(&[0.0; 3])], 0.5);
    refuses(&mut two_groups.clone(), &state, "number of groups: saved 1, the optimizer has 2");
    refuses(&mut Adam::new(vec![param(&P0), param(&[0.0; 3])], 0.5), &state, "saved by sgd, loaded into adam");

    let fits = || Sgd::new(vec![param(&P0), param(&[0.0; 3])], 0.5);
    let mut bad_shape = state.clone();
    bad_shape.tensors[1].1 = Tensor::zeros(&[3, 1]);
    refuses(&mut fits(), &bad_shape, "entry 0.1.momentum_buffer: saved shape [3, 1]");
    let mut extra = state.clone();
    extra.tensors.push(("0.0.exp_avg".into(), Tensor::zeros(&[2])));
    refuses(&mut fits(), &extra, "entry 0.0.exp_avg does not belong");
    let mut twice = state.clone();
    twice.tensors.push(twice.tensors[0].clone());
    refuses(&mut fits(), &twice, "entry 0.0.momentum_buffer appears twice");

    let mut half = Adam::new(vec![param(&P0)], 0.1);
    let p = half.param_groups()[0].params[0].clone();
    set_grad(&p, &GRADS[0]);
    half.step().unwrap();
    let mut adam_state = half.state_dict().unwrap();
    adam_state.tensors.pop();
    refuses(&mut Adam::new(vec![param(&P0)], 0.5), &adam_state, "parameter 0.0: needs all of exp_avg, exp_avg_sq");

    fits().load_state_dict(&state).unwrap();
}

#[test]
fn groups_built_by_hand_save_their_own_hyper_parameters() {
    let groups = vec![ParamGroup { momentum: 0.5, ..ParamGroup::new(vec![param(&P0)], 0.2) }];
    let opt = Sgd::with_groups(groups).unwrap();
    let state = opt.state_dict().unwrap();
    assert_eq!((state.groups[0].lr, state.groups[0].momentum), (0.2, 0.5));
    assert!(state.tensors.is_empty());
}
