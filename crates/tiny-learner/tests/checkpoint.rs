//! Checkpoints: resuming continues exactly, `SaveModel` on the best metric, and bad files are errors.

mod common;

use common::{InterruptAfter, mlp, point_loaders, temp_dir, weights};
use tiny_learner::{Callback, CheckpointInfo, Learner, LearnerError, Mixup, Monitor, OneCycle, Recorder, SaveModel};
use tiny_nn::cross_entropy;
use tiny_optim::Sgd;

/// A learner whose every piece of state matters for resuming: shuffled data, SGD with momentum and
/// weight decay, a one-cycle schedule with momentum cycling, and Mixup.
fn learner(init_seed: u64, cbs: Vec<Box<dyn Callback>>) -> Learner {
    tiny_nn::manual_seed(init_seed);
    let mut all: Vec<Box<dyn Callback>> = vec![
        Box::new(OneCycle::new(0.2).cycle_momentum()),
        Box::new(Mixup::new(0.4).unwrap()),
        Box::new(Recorder::new().show_table(false).show_progress(false)),
    ];
    all.extend(cbs);
    Learner::new(mlp(), point_loaders(48, 16, 8, Some(5)), cross_entropy, 0.2, all)
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9).weight_decay(1e-3)))
        .with_seed(42)
}

/// Copies of a model's tensors with their names.
fn copies(model: &dyn tiny_nn::Module) -> Vec<(String, tiny_tensor::Tensor)> {
    model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, tiny_tensor::Tensor::from_vec(t.to_vec(), t.shape()).unwrap()))
        .collect()
}

#[test]
fn four_epochs_straight_equal_two_then_resume_for_two_more() {
    let dir = temp_dir("resume");
    let mut straight = learner(1, vec![]);
    // Tests run in parallel and share tiny-nn's init generator, so copy the initial weights rather
    // than rely on the seed.
    let init = copies(straight.model.as_ref());
    straight.fit(4).unwrap();

    let ck = dir.join("ck-{epoch}.safetensors");
    let mut first = learner(1, vec![Box::new(SaveModel::every_epoch(&ck)), Box::new(InterruptAfter(1))]);
    tiny_nn::load_state_dict(first.model.as_ref(), init, true).unwrap();
    first.fit(4).unwrap();
    let saved = &first.callback::<SaveModel>().unwrap().saved;
    assert_eq!(saved.len(), 2);
    let path = dir.join("ck-1.safetensors");
    assert_eq!(saved[1], path);

    // A fresh learner, built from another initialisation and seed, as a new process would.
    let mut resumed = learner(99, vec![]).with_seed(7);
    let info = resumed.load_checkpoint(&path).unwrap();
    let want = CheckpointInfo { next_epoch: 2, n_epochs: 4, seed: 42, lr: 0.2, has_opt: true, export_info: None };
    assert_eq!(info, want, "a learner without export info writes none");
    resumed.fit_from(info.n_epochs, info.next_epoch).unwrap();

    assert_eq!(weights(resumed.model.as_ref()), weights(straight.model.as_ref()));
    let (a, b) = (straight.callback::<Recorder>().unwrap(), resumed.callback::<Recorder>().unwrap());
    assert_eq!(a.losses[a.losses.len() - 12..], b.losses[..], "the last two epochs saw the same batches and mixes");
}

#[test]
fn checkpoints_are_read_back_with_their_metadata_and_no_temp_file_is_left() {
    let dir = temp_dir("meta");
    let mut learn = learner(1, vec![Box::new(SaveModel::every_epoch(dir.join("last.safetensors")))]);
    learn.fit(1).unwrap();
    let info = CheckpointInfo::read(&dir.join("last.safetensors")).unwrap();
    assert_eq!((info.next_epoch, info.n_epochs, info.seed), (1, 1, 42));
    let (tensors, meta) = tiny_nn::load_tensors(&dir.join("last.safetensors")).unwrap();
    assert!(tensors.iter().any(|(n, _)| n == "model.0.w"));
    assert!(tensors.iter().any(|(n, _)| n.starts_with("opt.") && n.ends_with("momentum_buffer")));
    assert_eq!(meta.get("optim.kind").map(String::as_str), Some("sgd"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn save_model_best_saves_only_on_improvement() {
    let dir = temp_dir("best");
    let cb = SaveModel::best(dir.join("best-{epoch}.safetensors"), Monitor::ValidLoss);
    let mut learn = learner(1, vec![Box::new(cb)]);
    learn.fit(4).unwrap();
    let saved = learn.callback::<SaveModel>().unwrap().saved.clone();
    let losses: Vec<f32> = learn.history.iter().map(|s| s.valid_loss.unwrap()).collect();
    let mut best = f32::INFINITY;
    let expected: Vec<_> = (0..4)
        .filter(|&e| {
            let better = losses[e] < best;
            best = best.min(losses[e]);
            better
        })
        .map(|e| dir.join(format!("best-{e}.safetensors")))
        .collect();
    assert_eq!(saved, expected);
}

#[test]
fn save_model_best_once_the_recorder_is_removed_is_an_error() {
    let dir = temp_dir("norec");
    tiny_nn::manual_seed(1);
    let cb = SaveModel::best(dir.join("x.safetensors"), Monitor::metric("accuracy"));
    let mut learn = Learner::new(mlp(), point_loaders(16, 8, 8, None), cross_entropy, 0.1, vec![Box::new(cb)]);
    learn.remove_cb::<tiny_learner::Recorder>();
    assert!(matches!(learn.fit(1), Err(LearnerError::NeedsRecorder { callback: "SaveModel" })));
}

#[test]
fn bad_checkpoints_are_errors_that_change_nothing() {
    let dir = temp_dir("bad");
    let mut learn = learner(1, vec![]);
    let before = weights(learn.model.as_ref());
    assert!(matches!(learn.load_checkpoint(&dir.join("missing.safetensors")), Err(LearnerError::Nn(_))));
    // A plain model file is not a checkpoint.
    let plain = dir.join("plain.safetensors");
    tiny_nn::save_state_dict(learn.model.as_ref(), &plain).unwrap();
    assert!(matches!(learn.load_checkpoint(&plain), Err(LearnerError::Checkpoint { .. })));
    // A checkpoint of another architecture does not fit.
    let other = dir.join("other.safetensors");
    let small = Learner::new(
        Box::new(tiny_nn::Linear::new(2, 3).unwrap()),
        point_loaders(8, 8, 8, None),
        cross_entropy,
        0.1,
        vec![],
    );
    small.save_checkpoint(&other, 0).unwrap();
    assert!(matches!(learn.load_checkpoint(&other), Err(LearnerError::Nn(_))));
    assert_eq!(weights(learn.model.as_ref()), before);
    std::fs::write(dir.join("junk.safetensors"), b"not a safetensors file").unwrap();
    assert!(learn.load_checkpoint(&dir.join("junk.safetensors")).is_err());
}

#[test]
fn on_resume_the_checkpoint_wins_unless_a_hyper_parameter_is_overridden() {
    // Issue 19, fault 2: `--resume ck --lr 0` trained exactly as with the checkpoint's 0.1, and said nothing.
    let dir = temp_dir("override");
    let ck = dir.join("ck.safetensors");
    let plain = || {
        Learner::new(mlp(), point_loaders(48, 16, 8, Some(5)), cross_entropy, 0.1, vec![])
            .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)))
    };
    let mut first = plain();
    first.add_cb(Box::new(SaveModel::every_epoch(&ck)));
    first.fit(1).unwrap();
    let saved = weights(first.model.as_ref());
    // Resumed as saved: the checkpoint's learning rate trains on.
    let mut resumed = plain();
    resumed.lr = 0.5; // what a differing --lr default would have set; the checkpoint's 0.1 wins
    let info = resumed.load_checkpoint(&ck).unwrap();
    assert_eq!(resumed.lr, 0.1);
    resumed.fit_from(2, info.next_epoch).unwrap();
    assert_ne!(weights(resumed.model.as_ref()), saved);
    // Overridden: a learning rate of 0 leaves every weight where the checkpoint had it, and the change is reported.
    let mut frozen = plain();
    let info = frozen.load_checkpoint(&ck).unwrap();
    let changed = frozen.override_hyper(tiny_learner::Overrides { lr: Some(0.0), ..Default::default() });
    assert_eq!(changed, vec![("lr", 0.1, 0.0)]);
    frozen.fit_from(2, info.next_epoch).unwrap();
    assert_eq!(weights(frozen.model.as_ref()), saved);
    assert!(frozen.opt.as_ref().unwrap().param_groups().iter().all(|g| g.lr == 0.0 && g.momentum == 0.9));
}

/// From epoch 2 on, blows the weights up before validation, so that later epochs cannot be the best.
struct Sabotage;

impl Callback for Sabotage {
    fn before_validate(&mut self, learn: &mut tiny_learner::LearnerState) -> tiny_learner::CbResult {
        if learn.epoch >= 2 {
            for p in learn.model.parameters() {
                p.scale_(50.0)?;
            }
        }
        Ok(())
    }
}

#[test]
fn save_model_best_loads_the_best_weights_back_at_the_end_of_the_fit() {
    let dir = temp_dir("bestback");
    let cb = SaveModel::best(dir.join("best-{epoch}.safetensors"), Monitor::ValidLoss);
    let mut learn = learner(1, vec![Box::new(cb), Box::new(Sabotage)]);
    learn.fit(4).unwrap();
    let saved = learn.callback::<SaveModel>().unwrap().saved.clone();
    let last = saved.last().unwrap().clone();
    assert!(last.ends_with("best-0.safetensors") || last.ends_with("best-1.safetensors"), "{saved:?}");
    let (tensors, _) = tiny_nn::load_tensors(&last).unwrap();
    for (name, t) in learn.model.state_dict() {
        let (_, want) = tensors.iter().find(|(n, _)| *n == format!("model.{name}")).unwrap();
        assert_eq!(t.to_vec(), want.to_vec(), "{name} is the best epoch's, not the blown-up last one");
    }
}

#[test]
#[cfg(unix)]
fn an_output_without_room_on_its_disk_is_refused_by_check_space() {
    // Issue 29: an export on a full disk lost the trained model; train now checks the room first.
    let dir = temp_dir("space");
    let path = dir.join("model.safetensors");
    tiny_learner::check_space(&path, 1).unwrap();
    let err = tiny_learner::check_space(&path, u64::MAX / 2).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("MiB free"), "{err}");
    assert!(!path.exists(), "nothing is written");
    let _ = std::fs::remove_dir_all(&dir);
}
