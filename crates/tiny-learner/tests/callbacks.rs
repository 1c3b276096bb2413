//! The smaller callbacks: Recorder, TrackResults, EarlyStopping, GradientClip, CsvLogger, SetupLearner.

mod common;

use common::{point_learner, point_loaders, temp_dir};
use tiny_learner::{
    Callback, CbResult, CsvLogger, EarlyStopping, EpochStats, GradientClip, LearnerError, LearnerState, Monitor,
    PhaseRecord, Recorder, SetupLearner, TrackResults,
};
use tiny_tensor::{Device, Tensor};

fn quiet_recorder() -> Box<Recorder> {
    Box::new(Recorder::new().show_table(false).show_progress(false))
}

#[test]
fn recorder_keeps_batch_losses_lrs_and_epoch_results() {
    let mut learn = point_learner(point_loaders(32, 16, 8, Some(1)), 0.3, vec![quiet_recorder()]);
    learn.fit(3).unwrap();
    let rec = learn.callback::<Recorder>().unwrap();
    assert_eq!(rec.losses.len(), 12);
    assert_eq!(rec.lrs, vec![0.3; 12]);
    assert_eq!(rec.epoch_iters, [4, 8, 12]);
    assert_eq!(rec.epochs, learn.history);
    let last = learn.history.last().unwrap();
    assert_eq!(last.epoch, 2);
    assert!(last.valid_loss.unwrap() < rec.epochs[0].valid_loss.unwrap(), "training helps");
    let mean: f32 = rec.losses[8..].iter().sum::<f32>() / 4.0;
    assert!((last.train_loss - mean).abs() < 1e-5, "equal batches: the epoch loss is the batch mean");
    let table = rec.table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("epoch  train_loss  valid_loss  accuracy  time"));
    assert!(lines[3].starts_with("2      "));
    #[cfg(feature = "plot")]
    {
        let dir = temp_dir("recorder");
        rec.plot_loss(&dir.join("loss.png")).unwrap();
        assert!(std::fs::metadata(dir.join("loss.png")).unwrap().len() > 1000);
    }
}

#[test]
fn track_results_prints_the_chapter_line() {
    let rec = PhaseRecord {
        epoch: 0,
        train: true,
        loss: 2.3456789,
        acc: 0.25,
        metrics: vec![("accuracy".into(), 0.25)],
        n: 9469,
        secs: 12.345,
        img_per_s: 767.0,
        data_wait_secs: 0.0,
    };
    assert_eq!(rec.line(), "0 True  loss 2.3457 acc 0.2500 n 9469 time 12.35s 767 img/s");
    let rec = PhaseRecord { train: false, ..rec };
    assert!(rec.line().starts_with("0 False loss"));
    // Other metrics follow `acc` by name.
    let rec = PhaseRecord { metrics: vec![("accuracy".into(), 0.25), ("error_rate".into(), 0.75)], ..rec };
    assert_eq!(rec.line(), "0 False loss 2.3457 acc 0.2500 error_rate 0.7500 n 9469 time 12.35s 767 img/s");

    let mut learn = point_learner(point_loaders(20, 12, 8, None), 0.3, vec![Box::new(TrackResults::quiet())]);
    learn.fit(2).unwrap();
    let track = learn.callback::<TrackResults>().unwrap();
    let phases: Vec<(usize, bool, usize)> = track.history.iter().map(|r| (r.epoch, r.train, r.n)).collect();
    assert_eq!(phases, [(0, true, 20), (0, false, 12), (1, true, 20), (1, false, 12)]);
    // The numbers are the default Recorder's one tally, which also wrote the history.
    assert_eq!(track.history, learn.phases);
    assert_eq!(learn.history.len(), 2);

    // Adding a Recorder replaces the learner's one; without any, TrackResults has nothing to print.
    learn.add_cb(quiet_recorder());
    assert_eq!(learn.callback_names().iter().filter(|n| *n == "Recorder").count(), 1);
    learn.remove_cb::<tiny_learner::Recorder>();
    assert!(matches!(learn.fit(1), Err(LearnerError::NeedsRecorder { callback: "TrackResults" })));
}

#[test]
fn early_stopping_waits_patience_epochs() {
    // With a learning rate of 0 nothing improves after the first epoch.
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.0, vec![quiet_recorder()]);
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::ValidLoss, 2)));
    learn.fit(10).unwrap();
    assert_eq!(learn.history.len(), 3);
    assert_eq!(learn.callback::<EarlyStopping>().unwrap().stopped_epoch, Some(2));

    // The learner's default Recorder is enough; only a learner whose Recorder was removed is refused.
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.0, vec![]);
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::metric("accuracy"), 2)));
    learn.fit(1).unwrap();
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.0, vec![]);
    learn.remove_cb::<tiny_learner::Recorder>();
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::metric("accuracy"), 2)));
    assert!(matches!(learn.fit(1), Err(LearnerError::NeedsRecorder { callback: "EarlyStopping" })));
}

#[test]
fn monitors_know_which_way_is_better() {
    let metrics = vec![("accuracy".to_string(), 0.5), ("error_rate".to_string(), 0.5)];
    let s = EpochStats { epoch: 0, train_loss: 1.0, valid_loss: Some(2.0), metrics, seconds: 0.0 };
    assert_eq!(Monitor::ValidLoss.value(&s), Some(2.0));
    assert_eq!(Monitor::metric("error_rate").value(&s), Some(0.5));
    assert_eq!((s.accuracy(), s.metric("f1_score")), (Some(0.5), None));
    let learner_metrics = vec![tiny_learner::metrics::accuracy(), tiny_learner::metrics::error_rate()];
    let lower = |m: Monitor| m.lower_is_better(&learner_metrics).unwrap();
    assert!(lower(Monitor::ValidLoss) && lower(Monitor::TrainLoss) && lower(Monitor::metric("error_rate")));
    assert!(!lower(Monitor::metric("accuracy")));
    assert!(Monitor::improved(true, 1.9, Some(2.0), 0.0));
    assert!(!Monitor::improved(true, 1.95, Some(2.0), 0.1));
    assert!(Monitor::improved(false, 0.6, Some(0.5), 0.0));
    assert!(!Monitor::improved(false, 0.4, Some(0.5), 0.0));
    assert!(Monitor::improved(true, 5.0, None, 0.0));
    assert!(!Monitor::improved(true, f32::NAN, None, 0.0));
}

/// Measures the global gradient norm just before the step, after clipping (order 10 > 0).
#[derive(Default)]
struct NormProbe(Vec<f32>);

impl Callback for NormProbe {
    fn order(&self) -> i32 {
        10
    }
    fn before_step(&mut self, learn: &mut LearnerState) -> CbResult {
        let sq: f32 =
            learn.model.parameters().iter().filter_map(|p| p.grad()).flat_map(|g| g.to_vec()).map(|v| v * v).sum();
        self.0.push(sq.sqrt());
        Ok(())
    }
}

#[test]
fn gradient_clip_caps_the_global_norm() {
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.1, vec![Box::new(GradientClip::new(0.01))]);
    learn.add_cb(Box::new(NormProbe::default()));
    learn.fit(1).unwrap();
    let clip = learn.callback::<GradientClip>().unwrap();
    assert!(clip.last_norm > 0.01, "the raw gradient is larger than the cap: {}", clip.last_norm);
    for n in &learn.callback::<NormProbe>().unwrap().0 {
        assert!((n - 0.01).abs() < 1e-4, "{n}");
    }
}

#[test]
fn csv_logger_writes_a_header_and_a_row_per_epoch() {
    let dir = temp_dir("csv");
    let path = dir.join("log.csv");
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.1, vec![quiet_recorder()]);
    learn.add_cb(Box::new(CsvLogger::new(&path)));
    learn.fit(2).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,train_loss,valid_loss,accuracy,time");
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("1,"));
    assert_eq!(lines[2].split(',').count(), 5);

    // Appending (for a resumed fit) keeps the rows and writes no second header.
    learn.remove_cb::<CsvLogger>();
    learn.add_cb(Box::new(CsvLogger::new(&path).append()));
    learn.fit(1).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert_eq!(text.matches("epoch,").count(), 1);
}

#[test]
fn setup_learner_normalizes_and_permutes_to_nchw() {
    let cb = SetupLearner::normalize(Device::Cpu, [0.5, 0.0, 1.0], [0.5, 2.0, 1.0]);
    let mut learn = point_learner(point_loaders(4, 4, 4, None), 0.1, vec![Box::new(cb)]);
    // One NHWC image of 1x2 pixels.
    learn.batch.x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 0.0, 4.0, 1.0], &[1, 1, 2, 3]).unwrap();
    learn.event(tiny_learner::Event::BeforeBatch).unwrap();
    assert_eq!(learn.batch.x.shape(), &[1, 3, 1, 2]);
    assert_eq!(learn.batch.x.to_vec(), vec![1.0, -1.0, 1.0, 2.0, 2.0, 0.0]);
}

#[test]
fn cuda_without_the_feature_is_an_error_not_a_panic() {
    let mut learn =
        point_learner(point_loaders(4, 4, 4, None), 0.1, vec![Box::new(SetupLearner::new(Device::Cuda(0)))]);
    assert!(learn.fit(1).is_err());
}

/// Makes every epoch's validation loss 1.0 in the history, a plateau from the first epoch on.
struct Plateau;

impl tiny_learner::Callback for Plateau {
    fn order(&self) -> i32 {
        55
    }

    fn after_epoch(&mut self, learn: &mut tiny_learner::LearnerState) -> tiny_learner::CbResult {
        if let Some(last) = learn.history.last_mut() {
            last.valid_loss = Some(1.0);
        }
        Ok(())
    }
}

#[test]
fn reduce_lr_on_plateau_divides_every_rate_after_patience_epochs_without_improvement() {
    use tiny_learner::{Monitor, Recorder, ReduceLROnPlateau};
    for (patience, want) in [(1, vec![(1, 0.01), (2, 0.001), (3, 0.0001)]), (2, vec![(2, 0.01)])] {
        let cbs: Vec<Box<dyn tiny_learner::Callback>> = vec![
            Box::new(Recorder::new().show_table(false).show_progress(false)),
            Box::new(Plateau),
            Box::new(ReduceLROnPlateau::new(Monitor::ValidLoss).patience(patience)),
        ];
        let mut learn = point_learner(point_loaders(32, 16, 8, None), 0.1, cbs);
        learn.fit(4).unwrap();
        let got = &learn.callback::<ReduceLROnPlateau>().unwrap().reductions;
        assert_eq!(got.len(), want.len(), "patience {patience}: {got:?}");
        for ((epoch, lr), (want_epoch, want_lr)) in got.iter().zip(&want) {
            assert_eq!(epoch, want_epoch);
            assert!((lr - want_lr).abs() < 1e-9, "patience {patience}: {lr} vs {want_lr}");
        }
        assert_eq!(learn.opt.as_ref().unwrap().lr(), got.last().unwrap().1);
    }
    let cbs: Vec<Box<dyn tiny_learner::Callback>> =
        vec![Box::new(Recorder::new()), Box::new(ReduceLROnPlateau::new(Monitor::ValidLoss).factor(0.5))];
    assert!(point_learner(point_loaders(32, 16, 8, None), 0.1, cbs).fit(1).is_err(), "a factor below 1 would raise");
}
