//! The exact event order of a fit, a training pass and a validation pass, and every cancellation kind.

mod common;

use common::{EventLog, TRAIN_BATCH, VALID_BATCH, point_learner, point_loaders, weights};
use tiny_learner::{Callback, Cancel, CbResult, Event, LearnerError, LearnerState};

/// A learner with 2 training batches and 1 validation batch, logging events.
fn learner(log: EventLog) -> tiny_learner::Learner {
    point_learner(point_loaders(8, 4, 4, None), 0.1, vec![Box::new(log)])
}

fn log(learn: &tiny_learner::Learner) -> Vec<String> {
    learn.callback::<EventLog>().unwrap().events.clone()
}

fn seq(parts: &[&[&str]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().map(|s| s.to_string())).collect()
}

#[test]
fn fit_fires_every_event_in_fastai_order() {
    let mut learn = learner(EventLog::default());
    learn.fit(1).unwrap();
    let expected = seq(&[
        &["before_fit", "before_epoch", "before_train"],
        &TRAIN_BATCH,
        &TRAIN_BATCH,
        &["after_train", "before_validate"],
        &VALID_BATCH,
        &["after_validate", "after_epoch", "after_fit"],
    ]);
    assert_eq!(log(&learn), expected);
}

#[test]
fn two_epochs_repeat_the_epoch_block() {
    let mut learn = learner(EventLog::default());
    learn.fit(2).unwrap();
    let events = log(&learn);
    assert_eq!(events.iter().filter(|e| *e == "before_epoch").count(), 2);
    assert_eq!(events.iter().filter(|e| *e == "after_step").count(), 4);
    assert_eq!(events.first().unwrap(), "before_fit");
    assert_eq!(events.last().unwrap(), "after_fit");
    assert_eq!(learn.epoch, 1);
}

#[test]
fn one_epoch_train_only() {
    let mut learn = learner(EventLog::default());
    learn.one_epoch(true).unwrap();
    assert_eq!(log(&learn), seq(&[&["before_train"], &TRAIN_BATCH, &TRAIN_BATCH, &["after_train"]]));
    assert!(learn.opt.is_some(), "a training pass creates the optimizer");
}

#[test]
fn one_epoch_validate_only_changes_nothing() {
    let mut learn = learner(EventLog::default());
    let before = weights(learn.model.as_ref());
    learn.one_epoch(false).unwrap();
    assert_eq!(log(&learn), seq(&[&["before_validate"], &VALID_BATCH, &["after_validate"]]));
    assert_eq!(weights(learn.model.as_ref()), before);
}

#[test]
fn cancel_batch_skips_the_rest_of_that_batch_only() {
    let mut learn = learner(EventLog::cancelling(Event::AfterPred, Some(0), Some(true), Cancel::Batch));
    let before = weights(learn.model.as_ref());
    learn.one_epoch(true).unwrap();
    let expected = seq(&[
        &["before_train", "before_batch", "after_pred", "after_cancel_batch", "after_batch"],
        &TRAIN_BATCH,
        &["after_train"],
    ]);
    assert_eq!(log(&learn), expected);
    assert_ne!(weights(learn.model.as_ref()), before, "the second batch still steps");
}

#[test]
fn cancel_train_goes_on_to_validation() {
    let mut learn = learner(EventLog::cancelling(Event::BeforeBatch, Some(1), Some(true), Cancel::Train));
    learn.fit(1).unwrap();
    let expected = seq(&[
        &["before_fit", "before_epoch", "before_train"],
        &TRAIN_BATCH,
        &["before_batch", "after_cancel_train", "after_train", "before_validate"],
        &VALID_BATCH,
        &["after_validate", "after_epoch", "after_fit"],
    ]);
    assert_eq!(log(&learn), expected);
}

#[test]
fn cancel_valid_ends_validation() {
    let mut learn = learner(EventLog::cancelling(Event::BeforeValidate, None, None, Cancel::Valid));
    learn.fit(1).unwrap();
    let expected = seq(&[
        &["before_fit", "before_epoch", "before_train"],
        &TRAIN_BATCH,
        &TRAIN_BATCH,
        &["after_train", "before_validate", "after_cancel_validate", "after_validate", "after_epoch", "after_fit"],
    ]);
    assert_eq!(log(&learn), expected);
}

#[test]
fn cancel_epoch_skips_to_the_next_epoch() {
    let cancel =
        EventLog { cancel_at: Some((Event::AfterTrain, None, Some(0), None, Cancel::Epoch)), ..EventLog::default() };
    let mut learn = learner(cancel);
    learn.fit(2).unwrap();
    let events = log(&learn);
    let first_epoch = seq(&[
        &["before_fit", "before_epoch", "before_train"],
        &TRAIN_BATCH,
        &TRAIN_BATCH,
        &["after_train", "after_cancel_epoch", "after_epoch", "before_epoch"],
    ]);
    assert_eq!(events[..first_epoch.len()], first_epoch[..]);
    assert_eq!(events.iter().filter(|e| *e == "before_validate").count(), 1, "only epoch 1 validates");
    assert_eq!(events.last().unwrap(), "after_fit");
}

#[test]
fn cancel_fit_fires_after_cancel_fit_then_after_fit() {
    let mut learn = learner(EventLog::cancelling(Event::AfterBatch, Some(0), Some(true), Cancel::Fit));
    learn.fit(3).unwrap();
    let expected =
        seq(&[&["before_fit", "before_epoch", "before_train"], &TRAIN_BATCH, &["after_cancel_fit", "after_fit"]]);
    assert_eq!(log(&learn), expected);
}

#[test]
fn a_cancel_nothing_catches_is_an_error() {
    let mut learn = learner(EventLog::cancelling(Event::BeforeValidate, None, None, Cancel::Train));
    match learn.fit(1) {
        Err(LearnerError::UncaughtCancel(Cancel::Train)) => {}
        other => panic!("expected UncaughtCancel(Train), got {other:?}"),
    }
}

/// Fails with an error at the first training `after_loss`.
struct Failing;

impl Callback for Failing {
    fn after_loss(&mut self, _learn: &mut LearnerState) -> CbResult {
        Err(LearnerError::InvalidArgument { what: "Failing", msg: "boom".into() }.into())
    }
}

#[test]
fn an_error_ends_the_fit_without_after_events() {
    let mut learn = learner(EventLog::default());
    learn.add_cb(Box::new(Failing));
    let err = learn.fit(1).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(log(&learn).last().unwrap(), "after_loss");
}

/// Records whether gradients were being recorded at each `after_loss`.
#[derive(Default)]
struct GradProbe {
    seen: Vec<(bool, bool, bool)>,
}

impl Callback for GradProbe {
    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        self.seen.push((learn.training, tiny_tensor::is_grad_enabled(), learn.loss.requires_grad()));
        Ok(())
    }
}

#[test]
fn validation_computes_no_gradients() {
    let mut learn = learner(EventLog::default());
    learn.add_cb(Box::new(GradProbe::default()));
    learn.fit(1).unwrap();
    let seen = &learn.callback::<GradProbe>().unwrap().seen;
    assert_eq!(seen, &[(true, true, true), (true, true, true), (false, false, false)]);
    assert!(tiny_tensor::is_grad_enabled(), "grad mode is back on after validation");
}

/// Names itself so the test can see the order callbacks run in.
struct Named(&'static str, i32);

impl Callback for Named {
    fn name(&self) -> &str {
        self.0
    }
    fn order(&self) -> i32 {
        self.1
    }
}

#[test]
fn callbacks_run_by_order_then_insertion() {
    let mut learn = point_learner(point_loaders(4, 4, 4, None), 0.1, vec![]);
    for (n, o) in [("late", 10), ("first", -5), ("a", 0), ("b", 0)] {
        learn.add_cb(Box::new(Named(n, o)));
    }
    // The learner's own Recorder runs at order 50.
    assert_eq!(learn.callback_names(), ["first", "a", "b", "late", "Recorder"]);
    assert!(learn.remove_cb::<Named>().is_some());
    assert_eq!(learn.callback_names(), ["a", "b", "late", "Recorder"]);
}

/// Replaces the targets of every batch with class 0, to show callbacks may change the state.
struct AllZero;

impl Callback for AllZero {
    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        learn.batch.y = vec![0; learn.batch.y.len()].into();
        Ok(())
    }
}

#[test]
fn callbacks_can_change_the_batch() {
    let mut learn = point_learner(point_loaders(32, 16, 8, None), 0.5, vec![Box::new(AllZero)]);
    learn.add_cb(Box::new(tiny_learner::TrackResults::quiet()));
    learn.fit(5).unwrap();
    let acc = learn.callback::<tiny_learner::TrackResults>().unwrap().last_valid().unwrap().acc;
    assert_eq!(acc, 1.0, "everything is class 0 after the callback");
}

/// Records `n_iter` as each phase begins.
#[derive(Default)]
struct PhaseSize(Vec<(bool, usize)>);

impl Callback for PhaseSize {
    fn before_train(&mut self, learn: &mut LearnerState) -> CbResult {
        self.0.push((true, learn.n_iter));
        Ok(())
    }
    fn before_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.0.push((false, learn.n_iter));
        Ok(())
    }
}

#[test]
fn the_batch_count_is_known_before_each_phase() {
    // 12 training items in batches of 4, 4 validation items: 3 and 1 batches.
    let mut learn = point_learner(point_loaders(12, 4, 4, None), 0.1, vec![Box::new(PhaseSize::default())]);
    learn.fit(2).unwrap();
    assert_eq!(learn.callback::<PhaseSize>().unwrap().0, [(true, 3), (false, 1), (true, 3), (false, 1)]);
}

/// A callback that overrides every event method by hand, each recording its own name.
#[derive(Default)]
struct EveryMethod {
    ran: Vec<&'static str>,
}

/// Writes `EveryMethod`'s methods, each pushing the name it is spelled with.
macro_rules! record_methods {
    ($($method:ident),+ $(,)?) => {
        $(fn $method(&mut self, _learn: &mut LearnerState) -> CbResult {
            self.ran.push(stringify!($method));
            Ok(())
        })+
    };
}

impl Callback for EveryMethod {
    record_methods!(
        before_fit,
        after_cancel_fit,
        after_fit,
        before_epoch,
        after_cancel_epoch,
        after_epoch,
        before_train,
        after_cancel_train,
        after_train,
        before_validate,
        after_cancel_validate,
        after_validate,
        before_batch,
        after_pred,
        after_loss,
        before_backward,
        after_backward,
        before_step,
        after_step,
        after_cancel_batch,
        after_batch,
    );
}

#[test]
fn every_event_calls_the_method_of_its_name() {
    let mut learn = learner(EventLog::default());
    let mut cb = EveryMethod::default();
    for &event in Event::ALL {
        cb.on(event, &mut learn).unwrap();
        assert_eq!(cb.ran.last().copied(), Some(event.name()), "{event:?}");
        assert_eq!(event.to_string(), event.name());
    }
    assert_eq!(cb.ran.len(), 21, "one method per event, each called once");
    let mut names: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 21, "the events' names are distinct");
}
