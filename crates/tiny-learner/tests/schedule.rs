//! OneCycle against the chapter's numbers, the pure schedule functions, momentum cycling and the ParamScheduler.

mod common;

use common::{point_learner, point_loaders};
use tiny_learner::schedule::{Sched, Shape, combine, one_cycle_lr, one_cycle_mom};
use tiny_learner::{
    Callback, CbResult, FitOneCycle, Hyper, LearnerState, LrRange, OneCycle, ParamScheduler, Recorder, head_split,
};
use tiny_optim::Sgd;

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-3)
}

#[test]
fn one_cycle_matches_the_chapter_for_5_epochs_of_74_batches() {
    // 74 training items in batches of 1: 74 batches per epoch, 370 steps in all.
    let mut learn = point_learner(point_loaders(74, 4, 1, None), 0.1, vec![Box::new(OneCycle::new(0.1))]);
    learn.add_cb(Box::new(Recorder::new().show_table(false).show_progress(false)));
    learn.fit(5).unwrap();
    let lrs = &learn.callback::<OneCycle>().unwrap().lrs();
    assert_eq!(lrs.len(), 370);
    // The issue quotes these to 6 decimals, so they are checked to 1e-6.
    for (step, want) in [(0, 0.01), (74, 0.082), (185, 0.066667), (369, 0.00036)] {
        assert!((lrs[step] - want).abs() < 1e-6, "step {step}: {} != {want}", lrs[step]);
    }
    // The optimizer really ran at those rates: the Recorder reads them back from it.
    let seen = &learn.callback::<Recorder>().unwrap().lrs;
    assert_eq!(seen, lrs);
    let peak = lrs.iter().cloned().fold(0.0, f32::max);
    assert!(close(peak, 0.1, 5e-3), "the peak is at 25% of training: {peak}");
}

#[test]
fn the_pure_function_gives_the_same_values() {
    let at = |step: usize| one_cycle_lr(step as f32 / 370.0, 0.1, 0.25, 10.0, Shape::Linear);
    assert!(close(at(0), 0.01, 1e-5));
    assert!(close(at(74), 0.082, 1e-5));
    assert!(close(at(185), 0.0666667, 1e-5));
    assert!(close(at(369), 0.00036036, 1e-3));
}

#[test]
fn cosine_one_cycle_has_the_same_end_points_and_is_smooth() {
    let at = |pos| one_cycle_lr(pos, 0.1, 0.25, 10.0, Shape::Cosine);
    assert!(close(at(0.0), 0.01, 1e-6));
    assert!(close(at(0.25), 0.1, 1e-6));
    assert!(at(1.0).abs() < 1e-8);
    // Half way up the warm-up, a cosine is at the mid value; a quarter of the way it is lower than linear.
    assert!(close(at(0.125), 0.055, 1e-5));
    assert!(at(0.0625) < one_cycle_lr(0.0625, 0.1, 0.25, 10.0, Shape::Linear));
}

#[test]
fn combine_splits_training_into_stretches() {
    let phases = [(0.3, Sched::lin(0.0, 1.0)), (0.7, Sched::cos(1.0, 0.0))];
    assert_eq!(combine(&phases, 0.0), 0.0);
    assert!(close(combine(&phases, 0.15), 0.5, 1e-6));
    assert!(close(combine(&phases, 0.3), 1.0, 1e-6));
    assert!(close(combine(&phases, 0.65), 0.5, 1e-5));
    assert!(combine(&phases, 1.0).abs() < 1e-7);
    assert!(combine(&phases, 2.0).abs() < 1e-7, "past the end the last value holds");
}

#[test]
fn momentum_cycles_from_095_to_085_and_back() {
    assert!(close(one_cycle_mom(0.0, 0.95, 0.85, 0.25, Shape::Linear), 0.95, 1e-6));
    assert!(close(one_cycle_mom(0.25, 0.95, 0.85, 0.25, Shape::Linear), 0.85, 1e-6));
    assert!(close(one_cycle_mom(1.0, 0.95, 0.85, 0.25, Shape::Linear), 0.95, 1e-6));

    let cb = OneCycle::new(0.1).cosine().cycle_momentum();
    let mut learn = point_learner(point_loaders(8, 4, 1, None), 0.1, vec![Box::new(cb)])
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)));
    learn.fit(2).unwrap();
    let moms = &learn.callback::<OneCycle>().unwrap().momentums();
    assert_eq!(moms.len(), 16);
    assert!(close(moms[0], 0.95, 1e-6) && close(moms[4], 0.85, 1e-6));
    let last = *moms.last().unwrap();
    assert!(last > 0.94 && last < 0.95, "{last}");
    let opt = learn.opt.as_ref().unwrap();
    assert!(close(opt.momentum(), last, 1e-6), "the optimizer's momentum follows the schedule");
}

/// Reads the optimizer's first group before every batch, after the schedulers (order 60) have set it.
#[derive(Default)]
struct Spy {
    /// Training or not, `pct_train`, the learning rate and the momentum of each batch.
    seen: Vec<(bool, f32, f32, f32)>,
}

impl Callback for Spy {
    fn order(&self) -> i32 {
        61
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        let opt = learn.opt.as_ref().expect("the fit made the optimizer");
        self.seen.push((learn.training, learn.pct_train(), opt.lr(), opt.momentum()));
        Ok(())
    }
}

#[test]
fn a_param_scheduler_sets_the_optimizer_before_training_batches_only() {
    let (lr, mom) = (Sched::cos(0.2, 0.002), Sched::lin(0.95, 0.85));
    let sched = ParamScheduler::new().with(Hyper::Lr, lr).with(Hyper::Mom, mom);
    // 8 training points in batches of 2 and 4 validation points: 4 training and 2 validation batches an epoch.
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(sched), Box::new(Spy::default())];
    let mut learn = point_learner(point_loaders(8, 4, 2, None), 0.5, cbs)
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.5)));
    learn.fit(3).unwrap();
    let seen = &learn.callback::<Spy>().unwrap().seen;
    assert_eq!(seen.len(), 3 * (4 + 2));
    let mut last = None;
    for (i, &(training, pos, got_lr, got_mom)) in seen.iter().enumerate() {
        if training {
            assert_eq!((got_lr, got_mom), (lr.at(pos), mom.at(pos)), "training batch {i} at pos {pos}");
            last = Some((got_lr, got_mom));
        } else {
            assert_eq!(Some((got_lr, got_mom)), last, "validation batch {i} keeps the last training batch's values");
        }
    }
    let train_pos: Vec<f32> = seen.iter().filter(|s| s.0).map(|s| s.1).collect();
    assert_eq!(train_pos, (0..12).map(|i| (i as f64 / 12.0) as f32).collect::<Vec<_>>(), "pos = pct_train, 12 steps");
    // The recorded values (fastai's hps) are those the optimizer ran with.
    let sched = learn.callback::<ParamScheduler>().unwrap();
    let train_lrs: Vec<f32> = seen.iter().filter(|s| s.0).map(|s| s.2).collect();
    assert_eq!(sched.values(Hyper::Lr), train_lrs);
    assert_eq!(sched.hps(Hyper::Mom).len(), 12);
    assert!(sched.hps(Hyper::Mom).iter().all(|groups| groups.len() == 1), "one value per group, one group");
    let opt = learn.opt.as_ref().unwrap();
    assert_eq!((opt.lr(), opt.momentum()), last.unwrap(), "validation left the optimizer as training did");
}

/// The `pos` of training step `step` of `n_epochs` epochs of `n_iter` batches, as OneCycle and FitOneCycle wrote it out
/// before `pct_train`.
fn old_pos(step: usize, n_iter: usize, n_epochs: usize) -> f32 {
    let (epoch, iter) = (step / n_iter, step % n_iter);
    let bn = epoch * n_iter + iter;
    (bn as f64 / (n_epochs * n_iter).max(1) as f64) as f32
}

#[test]
fn the_presets_set_the_values_of_the_former_callbacks_bit_for_bit() {
    // 10 points in batches of 3: 4 training batches an epoch (the last one short), 3 epochs.
    for (one_cycle, shape) in [
        (OneCycle::new(0.1), Shape::Linear),
        (OneCycle::new(0.3).cosine(), Shape::Cosine),
        (OneCycle::new(0.1).cycle_momentum(), Shape::Linear),
        (OneCycle::new(0.2).cosine().cycle_momentum(), Shape::Cosine),
    ] {
        let (base, cycles) = (one_cycle.base_lr, one_cycle.moms.is_some());
        let cbs: Vec<Box<dyn Callback>> = vec![Box::new(one_cycle), Box::new(Spy::default())];
        let mut learn = point_learner(point_loaders(10, 4, 3, None), base, cbs)
            .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)));
        learn.fit(3).unwrap();
        let cb = learn.callback::<OneCycle>().unwrap();
        let (lrs, moms) = (cb.lrs(), cb.momentums());
        assert_eq!(lrs.len(), 12);
        assert_eq!(moms.len(), if cycles { 12 } else { 0 });
        // one_cycle_lr and one_cycle_mom as they were written before the ParamScheduler.
        let sched = |start, end| Sched { start, end, shape };
        let old_lr = |pos| combine(&[(0.25, sched(base / 10.0, base)), (1.0 - 0.25, sched(base, 0.0))], pos);
        let old_mom = |pos| combine(&[(0.25, sched(0.95, 0.85)), (1.0 - 0.25, sched(0.85, 0.95))], pos);
        for step in 0..12 {
            let pos = old_pos(step, 4, 3);
            assert_eq!(lrs[step].to_bits(), old_lr(pos).to_bits(), "step {step}");
            assert_eq!(lrs[step].to_bits(), one_cycle_lr(pos, base, 0.25, 10.0, shape).to_bits(), "step {step}");
            if cycles {
                assert_eq!(moms[step].to_bits(), old_mom(pos).to_bits(), "step {step}");
                assert_eq!(moms[step].to_bits(), one_cycle_mom(pos, 0.95, 0.85, 0.25, shape).to_bits(), "step {step}");
            }
        }
        let seen: Vec<f32> = learn.callback::<Spy>().unwrap().seen.iter().filter(|s| s.0).map(|s| s.2).collect();
        assert_eq!(seen, lrs, "the optimizer ran at the recorded rates");
    }

    // FitOneCycle over two parameter groups, body and head, against the formula it had as a callback of its own.
    let old_lr = |peak: f32, pos: f32| {
        let (start, end) = (peak / 25.0, peak / 1e5);
        combine(&[(0.25, Sched::cos(start, peak)), (1.0 - 0.25, Sched::cos(peak, end))], pos)
    };
    let old_mom = |pos: f32| combine(&[(0.25, Sched::cos(0.95, 0.85)), (1.0 - 0.25, Sched::cos(0.85, 0.95))], pos);
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(FitOneCycle::new(LrRange::Slice(1e-3, 1e-1)))];
    let mut learn = point_learner(point_loaders(10, 4, 3, None), 0.1, cbs)
        .with_splitter(head_split("2"))
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)));
    learn.fit(3).unwrap();
    let lrs = learn.callback::<FitOneCycle>().unwrap().lrs();
    let peaks = LrRange::Slice(1e-3, 1e-1).per_group(2);
    assert_eq!(lrs.len(), 12);
    for (step, groups) in lrs.iter().enumerate() {
        let want: Vec<u32> = peaks.iter().map(|&peak| old_lr(peak, old_pos(step, 4, 3)).to_bits()).collect();
        assert_eq!(groups.iter().map(|lr| lr.to_bits()).collect::<Vec<_>>(), want, "step {step}");
    }
    let opt = learn.opt.as_ref().unwrap();
    let last_pos = old_pos(11, 4, 3);
    assert_eq!(opt.param_groups().iter().map(|g| g.lr).collect::<Vec<_>>(), lrs[11], "the groups ran at them");
    assert!(opt.param_groups().iter().all(|g| g.momentum.to_bits() == old_mom(last_pos).to_bits()));
}
