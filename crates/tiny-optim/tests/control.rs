//! Driving an optimizer: learning rate and momentum setters, groups, skipped parameters, bad input.

mod common;

use common::{GRADS, P0, assert_close, param, set_grad};
use tiny_optim::{Adam, OptimError, Optimizer, ParamGroup, Sgd};

#[test]
fn set_lr_changes_every_group_and_the_step_size() {
    let (a, b) = (param(&[1.0]), param(&[1.0]));
    let mut opt: Box<dyn Optimizer> = Box::new(Sgd::new(vec![a.clone()], 0.1).param_group(vec![b.clone()], 0.2));
    assert_eq!(opt.lr(), 0.1);
    opt.set_lr(0.5);
    assert!(opt.param_groups().iter().all(|g| g.lr == 0.5));
    set_grad(&a, &[1.0]);
    set_grad(&b, &[2.0]);
    opt.step().unwrap();
    assert_close(&a.to_vec(), &[0.5]);
    assert_close(&b.to_vec(), &[0.0]);
}

#[test]
fn each_group_steps_with_its_own_learning_rate() {
    let (a, b) = (param(&[1.0]), param(&[1.0]));
    let mut opt = Sgd::new(vec![a.clone()], 0.1).momentum(0.9).param_group(vec![b.clone()], 0.01);
    assert_eq!(opt.param_groups()[1].momentum, 0.9, "a new group inherits the other hyper-parameters");
    opt.param_groups_mut()[0].lr = 0.3;
    set_grad(&a, &[1.0]);
    set_grad(&b, &[1.0]);
    opt.step().unwrap();
    assert_close(&a.to_vec(), &[0.7]);
    assert_close(&b.to_vec(), &[0.99]);
}

#[test]
fn set_momentum_drives_sgd_momentum() {
    let p = param(&P0);
    let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9);
    set_grad(&p, &GRADS[0]);
    opt.step().unwrap();
    opt.set_momentum(0.0);
    assert_eq!(Optimizer::momentum(&opt), 0.0);
    // Without momentum the second step is plain SGD: [0.95, -2.1] - 0.1 * [-1, 2].
    set_grad(&p, &GRADS[1]);
    opt.step().unwrap();
    assert_close(&p.to_vec(), &[1.05, -2.3]);
}

#[test]
fn set_momentum_drives_adam_beta1() {
    let p = param(&P0);
    let mut opt = Adam::new(vec![p.clone()], 0.1);
    assert_eq!(opt.momentum(), 0.9);
    opt.set_momentum(0.5);
    assert_eq!(opt.param_groups()[0].momentum, 0.5);
    for g in GRADS {
        set_grad(&p, &g);
        opt.step().unwrap();
    }
    // The same two steps as `Adam::betas(0.5, 0.999)`.
    let q = param(&P0);
    let mut reference = Adam::new(vec![q.clone()], 0.1).betas(0.5, 0.999);
    for g in GRADS {
        set_grad(&q, &g);
        reference.step().unwrap();
    }
    assert_eq!(p.to_vec(), q.to_vec());
}

#[test]
fn zero_grad_forgets_gradients_and_step_skips_parameters_without_one() {
    let (a, b) = (param(&[1.0]), param(&[1.0]));
    let mut opt = Adam::new(vec![a.clone(), b.clone()], 0.1);
    set_grad(&a, &[1.0]);
    opt.step().unwrap();
    assert_eq!(b.to_vec(), [1.0]);
    opt.zero_grad();
    assert!(a.grad().is_none() && b.grad().is_none());
    opt.step().unwrap();
    assert_close(&a.to_vec(), &[0.9]);
    let state = opt.state_dict().unwrap();
    assert_eq!((state.step, state.groups[0].param_steps.clone()), (2, vec![1, 0]));
    assert!(a.is_leaf() && a.requires_grad(), "an update records no graph");
}

#[test]
fn groups_must_be_non_empty_and_disjoint() {
    assert!(matches!(Sgd::with_groups(Vec::new()), Err(OptimError::NoParamGroups)));
    let p = param(&[1.0]);
    let groups = vec![ParamGroup::new(vec![param(&[2.0]), p.clone()], 0.1), ParamGroup::new(vec![p.clone()], 0.1)];
    assert!(matches!(Adam::with_groups(groups), Err(OptimError::DuplicateParameter { group: 1, index: 0 })));

    let mut twice = Sgd::new(vec![p.clone(), p.clone()], 0.1);
    set_grad(&p, &[1.0]);
    assert!(matches!(twice.step(), Err(OptimError::DuplicateParameter { group: 0, index: 1 })));
    assert_eq!(p.to_vec(), [1.0], "a refused step changes nothing");
}

#[test]
fn invalid_hyper_parameters_are_errors_not_panics() {
    let p = param(&[1.0]);
    set_grad(&p, &[1.0]);
    let mut sgd = Sgd::new(vec![p.clone()], 0.1);
    sgd.set_lr(f32::NAN);
    assert!(matches!(sgd.step(), Err(OptimError::InvalidHyperParameter { name: "lr", .. })));
    sgd.set_lr(-0.1);
    assert!(matches!(sgd.step(), Err(OptimError::InvalidHyperParameter { name: "lr", .. })));

    let mut adam = Adam::new(vec![p.clone()], 0.1).param_group(vec![param(&[1.0])], 0.1);
    adam.param_groups_mut()[1].momentum = 1.0;
    let err = adam.step().unwrap_err();
    assert!(matches!(err, OptimError::InvalidHyperParameter { group: 1, .. }), "{err}");
    assert!(err.to_string().contains("beta1"), "{err}");
    assert_eq!(p.to_vec(), [1.0]);
}

#[test]
fn optimizers_can_be_sent_to_another_thread() {
    let p = param(&[1.0]);
    let mut opt: Box<dyn Optimizer> = Box::new(Sgd::new(vec![p.clone()], 0.5));
    set_grad(&p, &[1.0]);
    std::thread::spawn(move || opt.step().unwrap()).join().unwrap();
    assert_eq!(p.to_vec(), [0.5]);
}

#[test]
fn split_groups_cuts_one_group_into_groups_with_its_hyper_parameters() {
    let ps: Vec<_> = (0..5).map(|i| param(&[i as f32])).collect();
    for mut opt in [
        Box::new(Sgd::new(ps.clone(), 0.1).momentum(0.9).weight_decay(0.01)) as Box<dyn Optimizer>,
        Box::new(Adam::new(ps.clone(), 0.1).weight_decay(0.01)),
        Box::new(tiny_optim::AdamW::new(ps.clone(), 0.1).weight_decay(0.01)),
    ] {
        let momentum = opt.momentum();
        opt.split_groups(&[2, 0, 3]).unwrap();
        let groups = opt.param_groups();
        assert_eq!(groups.iter().map(|g| g.params.len()).collect::<Vec<_>>(), [2, 0, 3]);
        assert!(groups.iter().all(|g| g.lr == 0.1 && g.momentum == momentum && g.weight_decay == 0.01));
        assert_eq!(groups[2].params[0].id(), ps[2].id(), "the order is kept");
        let again = opt.split_groups(&[1, 1]).unwrap_err();
        assert!(matches!(again, OptimError::BadSplit { .. }), "{again}");
    }
    let mut opt = Sgd::new(ps.clone(), 0.1);
    let err = opt.split_groups(&[2, 2]).unwrap_err().to_string();
    assert!(err.contains("add up to 4, the group has 5"), "{err}");
    assert_eq!(opt.param_groups().len(), 1, "a failed split changes nothing");
}
