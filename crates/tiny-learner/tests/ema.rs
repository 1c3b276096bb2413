//! `Ema`: the average against its closed form, timm's warm-up, validation on the average, and an exact resume.

mod common;

use common::{InterruptAfter, mlp, point_loaders, temp_dir, weights};
use tiny_learner::{Callback, CbResult, Ema, EmaWarmup, Learner, LearnerState, Recorder, SaveModel};
use tiny_nn::cross_entropy;
use tiny_optim::Sgd;

/// Records the weights when the fit begins and after every optimizer step, before `Ema` (order 5) sees them.
#[derive(Default)]
struct StepWeights(Vec<Vec<Vec<f32>>>);

impl Callback for StepWeights {
    fn order(&self) -> i32 {
        4
    }
    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.0.push(weights(learn.model.as_ref()));
        Ok(())
    }
    fn after_step(&mut self, learn: &mut LearnerState) -> CbResult {
        self.0.push(weights(learn.model.as_ref()));
        Ok(())
    }
}

fn learner(cbs: Vec<Box<dyn Callback>>) -> Learner {
    tiny_nn::manual_seed(3);
    let mut all: Vec<Box<dyn Callback>> = vec![Box::new(Recorder::new().show_table(false).show_progress(false))];
    all.extend(cbs);
    Learner::new(mlp(), point_loaders(48, 16, 8, Some(5)), cross_entropy, 0.3, all)
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)))
        .with_seed(42)
}

/// The averaged weights, flattened per tensor.
fn averaged(learn: &Learner) -> (Vec<Vec<f32>>, u64) {
    let (tensors, updates) = Ema::averaged(learn.state()).expect("a fit began");
    (tensors.iter().map(|(_, t)| t.to_vec()).collect(), updates)
}

#[test]
fn the_average_is_the_closed_form_sum_of_the_steps() {
    // With a constant decay d from the starting weights w0, after n steps e_n = d^n w0 + (1 - d) sum_k d^(n-k) w_k.
    let d = 0.9f64;
    let mut learn =
        learner(vec![Box::new(StepWeights::default()), Box::new(Ema::new(d as f32).unwrap().validate_ema(false))]);
    learn.fit(2).unwrap();
    let seen = &learn.callback::<StepWeights>().unwrap().0;
    let n = seen.len() - 1;
    assert_eq!(n, 12, "two epochs of six batches");
    let (got, updates) = averaged(&learn);
    assert_eq!(updates, n as u64);
    for (t, got) in got.iter().enumerate() {
        let largest = seen[n][t].iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        for (i, &g) in got.iter().enumerate() {
            let mut want = d.powi(n as i32) * f64::from(seen[0][t][i]);
            for (k, w) in seen.iter().enumerate().skip(1) {
                want += (1.0 - d) * d.powi((n - k) as i32) * f64::from(w[t][i]);
            }
            assert!((f64::from(g) - want).abs() <= 1e-6 * largest, "tensor {t} element {i}: {g} vs {want}");
        }
    }
    // The model keeps its own weights: the last step's.
    assert_eq!(weights(learn.model.as_ref()), seen[n]);
}

#[test]
fn timms_warmup_grows_the_decay_from_zero_and_the_first_update_copies() {
    let ema = Ema::new(0.999).unwrap().warmup(EmaWarmup::default());
    // timm's ModelEmaV3.get_decay(step) for step = t + 1: 1 - (1 + t)^(-2/3), capped at the decay.
    for (t, want) in [(0u64, 0.0f64), (1, 1.0 - 2f64.powf(-2.0 / 3.0)), (9, 1.0 - 10f64.powf(-2.0 / 3.0))] {
        assert!((f64::from(ema.decay_at(t)) - want).abs() < 1e-6, "update {t}: {} vs {want}", ema.decay_at(t));
    }
    assert_eq!(ema.decay_at(10_000_000), 0.999);
    let power = Ema::new(0.999).unwrap().warmup(EmaWarmup { gamma: 1.0, power: 0.75 });
    assert!((f64::from(power.decay_at(15)) - (1.0 - 16f64.powf(-0.75))).abs() < 1e-6);
    assert!(Ema::new(1.0).is_err() && Ema::new(-0.1).is_err());

    // One step: the average is the weights after it, exactly.
    let mut learn = learner(vec![Box::new(ema.validate_ema(false))]);
    learn.state_mut().dls = point_loaders(8, 8, 8, None);
    learn.fit(1).unwrap();
    assert_eq!(averaged(&learn), (weights(learn.model.as_ref()), 1));
}

#[test]
fn validation_runs_on_the_average_and_replace_weights_hands_it_to_the_model() {
    let mut learn = learner(vec![Box::new(Ema::new(0.8).unwrap().replace_weights(true))]);
    learn.fit(2).unwrap();
    let (avg, _) = averaged(&learn);
    assert_eq!(weights(learn.model.as_ref()), avg, "replace_weights");
    // The last epoch's validation loss is the averaged model's (which the model now is).
    let logged = learn.callback::<Recorder>().unwrap().epochs.last().unwrap().valid_loss.unwrap();
    learn.remove_cb::<Ema>();
    let again = learn.validate().unwrap().loss;
    assert_eq!(logged, again);

    // Without replace_weights the model's own weights come back after each validation.
    let mut own = learner(vec![Box::new(StepWeights::default()), Box::new(Ema::new(0.8).unwrap())]);
    own.fit(2).unwrap();
    let last = own.callback::<StepWeights>().unwrap().0.last().unwrap().clone();
    assert_eq!(weights(own.model.as_ref()), last);
    assert_ne!(averaged(&own).0, last);
}

#[test]
fn a_resumed_fit_continues_the_average_exactly() {
    let dir = temp_dir("ema-resume");
    let mut straight = learner(vec![Box::new(Ema::new(0.9).unwrap().warmup(EmaWarmup::default()))]);
    straight.fit(4).unwrap();

    let ck = dir.join("ck-{epoch}.safetensors");
    let cbs: Vec<Box<dyn Callback>> = vec![
        Box::new(Ema::new(0.9).unwrap().warmup(EmaWarmup::default())),
        Box::new(SaveModel::every_epoch(&ck)),
        Box::new(InterruptAfter(1)),
    ];
    learner(cbs).fit(4).unwrap();
    let mut resumed = learner(vec![Box::new(Ema::new(0.9).unwrap().warmup(EmaWarmup::default()))]);
    let info = resumed.load_checkpoint(&dir.join("ck-1.safetensors")).unwrap();
    assert_eq!(Ema::averaged(resumed.state()).map(|(t, u)| (t.len(), u)), Some((4, 12)), "2 epochs of 6 updates");
    resumed.fit_from(info.n_epochs, info.next_epoch).unwrap();
    assert_eq!(averaged(&resumed), averaged(&straight));
    assert_eq!(weights(resumed.model.as_ref()), weights(straight.model.as_ref()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cancels the fit in the middle of a validation phase.
struct CancelInValidation;

impl Callback for CancelInValidation {
    fn after_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training && learn.epoch == 1 { Err(tiny_learner::Cancel::Fit.into()) } else { Ok(()) }
    }
}

#[test]
fn the_lr_finder_leaves_the_average_alone_and_a_cancelled_validation_gives_the_weights_back() {
    // The finder's growing rates are not training: the average sits the search out.
    let mut learn = learner(vec![Box::new(Ema::new(0.9).unwrap())]);
    learn.lr_find(tiny_learner::LrFinder::new()).unwrap();
    assert!(Ema::averaged(learn.state()).is_none(), "no average from the search");
    learn.fit(1).unwrap();
    assert_eq!(averaged(&learn).1, 6, "the fit's six steps only");
    assert!(learn.callback::<Ema>().is_some(), "the callback is back");

    // A fit cancelled during validation (on the average) ends with the model's own weights.
    let cbs: Vec<Box<dyn Callback>> =
        vec![Box::new(StepWeights::default()), Box::new(Ema::new(0.5).unwrap()), Box::new(CancelInValidation)];
    let mut cancelled = learner(cbs);
    cancelled.fit(3).unwrap();
    let last = cancelled.callback::<StepWeights>().unwrap().0.last().unwrap().clone();
    assert_eq!(weights(cancelled.model.as_ref()), last);
    assert_ne!(averaged(&cancelled).0, last);
}

/// Makes the last epoch's validation loss ten times worse, so that the best epoch is an earlier one.
struct SpoilLastValidation;

impl Callback for SpoilLastValidation {
    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training && learn.epoch + 1 == learn.n_epochs {
            learn.loss = learn.loss.mul_scalar(10.0)?;
        }
        Ok(())
    }
}

#[test]
fn with_save_best_the_model_ends_on_the_best_epochs_average() {
    // SaveModel::best puts back the best epoch's weights and average; replace_weights then takes that average, not
    // the last epoch's.
    let dir = temp_dir("ema-best");
    let path = dir.join("best.safetensors");
    let cbs: Vec<Box<dyn Callback>> = vec![
        Box::new(Ema::new(0.8).unwrap().replace_weights(true)),
        Box::new(SaveModel::best(&path, tiny_learner::Monitor::ValidLoss)),
        Box::new(SpoilLastValidation),
    ];
    let mut learn = learner(cbs);
    learn.fit(3).unwrap();
    let (tensors, _) = tiny_nn::load_tensors(&path).unwrap();
    let mut saved: Vec<(String, Vec<f32>)> =
        tensors.into_iter().filter_map(|(n, t)| Some((n.strip_prefix("cb.Ema.")?.to_string(), t.to_vec()))).collect();
    let mut model: Vec<(String, Vec<f32>)> =
        learn.model.state_dict().into_iter().map(|(n, t)| (n, t.to_vec())).collect();
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    model.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(model, saved);
    let _ = std::fs::remove_dir_all(&dir);
}
