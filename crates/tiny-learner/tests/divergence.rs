//! A diverged fit stops with an error naming where, and never overwrites a good checkpoint (issue 19, fault 1).

mod common;

use common::{point_learner, point_loaders, temp_dir, weights};
use tiny_learner::{LearnerError, SaveModel, TerminateOnNaN};

#[test]
fn a_nan_loss_stops_the_fit_and_names_the_epoch_and_batch() {
    // A learning rate of 1e6 drives the MLP's logits to infinity within a few epochs (here epoch 2, batch 1).
    let mut learn = point_learner(point_loaders(64, 16, 8, Some(3)), 1e6, vec![Box::new(TerminateOnNaN::new())]);
    let err = learn.fit(3).unwrap_err();
    match &err {
        LearnerError::NonFiniteLoss { epoch, phase: "training", batch, loss } => {
            assert!(*epoch < 3 && *batch < 8 && !loss.is_finite(), "{err}");
            assert!(err.to_string().contains(&format!("epoch {epoch}, training batch {batch}")), "{err}");
        }
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
    // Without the callback the same fit runs to its end on NaN weights, as it did before.
    let mut unguarded = point_learner(point_loaders(64, 16, 8, Some(3)), 1e6, vec![]);
    unguarded.fit(3).unwrap();
    assert!(weights(unguarded.model.as_ref()).iter().flatten().any(|v| !v.is_finite()));
}

#[test]
fn a_checkpoint_of_non_finite_weights_is_refused_and_the_good_one_kept() {
    let dir = temp_dir("divergence");
    let path = dir.join("run.safetensors");
    let mut good = point_learner(point_loaders(64, 16, 8, Some(3)), 0.1, vec![Box::new(SaveModel::every_epoch(&path))]);
    good.fit(1).unwrap();
    let saved = std::fs::read(&path).unwrap();
    // Diverge without TerminateOnNaN: the epoch ends with NaN weights and SaveModel tries to write them.
    let mut bad = point_learner(point_loaders(64, 16, 8, Some(3)), 1e20, vec![Box::new(SaveModel::every_epoch(&path))]);
    match bad.fit(1) {
        Err(LearnerError::NonFiniteCheckpoint { path: p, count, .. }) => assert!(p == path && count > 0),
        other => panic!("expected the checkpoint to be refused, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), saved, "the good checkpoint is untouched");
    let others: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(others.len(), 1, "no temporary file is left: {others:?}");
}

#[test]
fn a_checkpoint_path_that_cannot_be_written_fails_before_the_first_batch() {
    // Issue 19, fault 5: `--save nodir/c.safetensors` failed after a whole epoch, naming the hidden temporary file.
    let dir = temp_dir("unwritable");
    let path = dir.join("nodir").join("c.safetensors");
    let mut learn =
        point_learner(point_loaders(64, 16, 8, Some(3)), 0.1, vec![Box::new(SaveModel::every_epoch(&path))]);
    let before = weights(learn.model.as_ref());
    let err = learn.fit(1).unwrap_err();
    assert!(matches!(&err, LearnerError::Io { path: p, .. } if *p == path), "{err}");
    assert!(err.to_string().starts_with(&path.display().to_string()), "names the file asked for: {err}");
    assert_eq!(weights(learn.model.as_ref()), before, "no batch was trained");
    assert!(tiny_learner::check_writable(&dir.join("ok.safetensors")).is_ok());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe leaves nothing behind");
}
