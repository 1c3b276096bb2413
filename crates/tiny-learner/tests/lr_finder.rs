//! The LR finder: its schedule, each way it stops, restoring the learner, the suggestion and the plot.

mod common;

use common::{mlp, point_learner, point_loaders, weights};
use tiny_learner::FinderStop;
use tiny_learner::{Callback, CbResult, Learner, LearnerState, LrFinder, Recorder};
use tiny_tensor::Tensor;

/// A loss that is always 1 and has zero gradients, so training never diverges.
fn flat_loss(preds: &Tensor, _y: &[u32]) -> tiny_nn::Result<Tensor> {
    Ok(preds.mul_scalar(0.0)?.sum_all()?.add_scalar(1.0)?)
}

#[test]
fn chapter_schedule_multiplies_by_1_2_and_stops_past_10() {
    let mut learn = Learner::new(mlp(), point_loaders(40, 8, 4, None), flat_loss, 0.1, vec![]);
    let res = learn.lr_find(LrFinder::new()).unwrap();
    assert_eq!(res.stop, Some(FinderStop::LrAboveMax));
    assert!((res.lrs[0] - 1.2e-6).abs() < 1e-12, "the first batch already uses start * 1.2");
    for pair in res.lrs.windows(2) {
        assert!((pair[1] / pair[0] - 1.2).abs() < 1e-4);
    }
    // 1e-6 * 1.2^k <= 10 for k = 1..=88; batch 89 exceeds 10 and is not recorded.
    assert_eq!(res.lrs.len(), 88);
    assert!(*res.lrs.last().unwrap() <= 10.0);
    assert_eq!(learn.lr, 0.1, "lr is restored");
    assert!(learn.opt.is_none(), "no optimizer before, none after");
    assert_eq!(learn.callback_names(), ["Recorder"], "the finder callback is removed");
}

#[test]
fn exponential_schedule_runs_the_given_steps() {
    let mut learn = Learner::new(mlp(), point_loaders(40, 8, 4, None), flat_loss, 0.1, vec![]);
    let res = learn.lr_find(LrFinder::new().start_lr(1e-5).exponential(1.0, 25)).unwrap();
    assert_eq!(res.stop, Some(FinderStop::StepsDone));
    assert_eq!(res.lrs.len(), 25);
    assert!((res.lrs[0] - 1e-5).abs() < 1e-10 && (res.lrs[24] - 1.0).abs() < 1e-5);
    assert_eq!(res.losses, vec![1.0; 25]);
}

#[test]
fn divergence_stops_the_search_and_everything_is_restored() {
    let mut learn = point_learner(point_loaders(64, 16, 4, Some(3)), 0.123, vec![]);
    learn.create_opt().unwrap();
    let before = weights(learn.model.as_ref());
    let res = learn.lr_find(LrFinder::new()).unwrap();
    assert!(matches!(res.stop, Some(FinderStop::Diverged | FinderStop::NotANumber)), "{:?}", res.stop);
    let mut best = f32::INFINITY;
    for &l in &res.losses {
        assert!(l <= 4.0 * best, "no recorded loss is past 4x the minimum before it");
        best = best.min(l);
    }
    assert!(*res.lrs.last().unwrap() < 10.0);
    assert_eq!(weights(learn.model.as_ref()), before, "model restored bit for bit");
    assert_eq!(learn.opt.as_ref().unwrap().lr(), 0.123, "the earlier optimizer is back");
    let s = res.suggestion.unwrap();
    assert!(s >= res.lrs[0] / 10.0 && s <= *res.lrs.last().unwrap() / 10.0, "{s}");
}

/// Turns the loss into NaN from the 10th training batch on.
struct NanAfter10;

impl Callback for NanAfter10 {
    fn after_loss(&mut self, learn: &mut LearnerState) -> CbResult {
        if learn.training && learn.iter >= 10 {
            learn.loss = learn.loss.mul_scalar(f32::NAN)?;
        }
        Ok(())
    }
}

#[test]
fn nan_stops_the_search_and_the_model_is_clean_after() {
    let mut learn = Learner::new(mlp(), point_loaders(80, 8, 4, None), flat_loss, 0.1, vec![Box::new(NanAfter10)]);
    let before = weights(learn.model.as_ref());
    let res = learn.lr_find(LrFinder::new()).unwrap();
    assert_eq!(res.stop, Some(FinderStop::NotANumber));
    assert_eq!(res.losses.len(), 10);
    assert_eq!(weights(learn.model.as_ref()), before);
}

#[test]
fn validation_is_skipped_and_the_recorder_sees_no_valid_loss() {
    let rec = Recorder::new().show_table(false).show_progress(false);
    let mut learn = Learner::new(mlp(), point_loaders(40, 8, 4, None), flat_loss, 0.1, vec![Box::new(rec)]);
    learn.lr_find(LrFinder::new()).unwrap();
    assert!(!learn.history.is_empty());
    assert!(learn.history.iter().all(|s| s.valid_loss.is_none()));
}

#[test]
#[cfg(feature = "plot")]
fn the_plot_is_a_png_with_ink_on_it() {
    let mut learn = point_learner(point_loaders(64, 16, 4, Some(3)), 0.1, vec![]);
    let res = learn.lr_find(LrFinder::new()).unwrap();
    let dir = common::temp_dir("lr-plot");
    let path = dir.join("lr_find.png");
    res.plot(&path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (720, 480));
    let ink = buf.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    assert!(ink > 2000, "{ink} coloured pixels");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
}
