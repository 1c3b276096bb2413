//! Metrics: each against hand-computed values, the name parser, and metrics in a fit (table, CSV, EarlyStopping).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::{point_learner, point_loaders, temp_dir};
use tiny_learner::metrics::{FLUSH_EVERY, Metric, accuracy, error_rate, top_k_accuracy};
use tiny_learner::{
    CsvLogger, EarlyStopping, F1Score, LearnerError, Monitor, Precision, Recall, Recorder, TopKAccuracy, TrackResults,
    metric_from_name, metrics_from_names,
};
use tiny_tensor::Tensor;

/// Six items of four classes. Top predictions (first best on ties) are `[0, 1, 0, 0, 1, 1]` against the targets
/// `[0, 1, 1, 1, 2, 1]`: item 3 ties classes 0 and 1 and so predicts 0; class 2 is a target but never
/// predicted; class 3 is neither.
fn fixed() -> (Tensor, Vec<u32>) {
    #[rustfmt::skip]
    let scores = vec![
        0.9, 0.05, 0.03, 0.02,
        0.1, 0.7, 0.1, 0.1,
        0.6, 0.3, 0.05, 0.05,
        0.4, 0.4, 0.1, 0.1,
        0.2, 0.5, 0.2, 0.1,
        0.3, 0.6, 0.05, 0.05,
    ];
    (Tensor::from_vec(scores, &[6, 4]).unwrap(), vec![0, 1, 1, 1, 2, 1])
}

/// The metric's value over the fixed predictions, fed as one batch and as two batches of three.
fn measure(mut m: Box<dyn Metric>) -> f32 {
    let (preds, targets) = fixed();
    m.accumulate(&preds, &targets).unwrap();
    let whole = m.value().unwrap();
    assert_eq!(m.value().unwrap(), whole, "{}: asking twice changes nothing", m.name());
    m.reset();
    assert_eq!(m.value().unwrap(), 0.0, "{}: nothing counted after reset", m.name());
    for rows in [[0, 1, 2], [3, 4, 5]] {
        let part = preds.index_select(0, &rows).unwrap();
        m.accumulate(&part, &rows.map(|r| targets[r as usize])).unwrap();
    }
    assert!((m.value().unwrap() - whole).abs() < 1e-6, "{}: the split gives the same value", m.name());
    whole
}

fn close(got: f32, want: f32) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

#[test]
fn accuracy_and_error_rate_break_ties_by_the_first_class() {
    // Hits: items 0, 1 and 5; item 3's tie goes to class 0, a miss.
    close(measure(accuracy()), 3.0 / 6.0);
    close(measure(error_rate()), 3.0 / 6.0);
    assert!(error_rate().lower_is_better() && !accuracy().lower_is_better());
    assert_eq!((accuracy().name(), error_rate().name()), ("accuracy".into(), "error_rate".into()));
}

#[test]
fn macro_precision_recall_f1_follow_sklearn() {
    // class 0: predicted 3 (items 0, 2, 3), actual 1, hits 1: P 1/3, R 1, F1 2/4.
    // class 1: predicted 3 (items 1, 4, 5), actual 4, hits 2: P 2/3, R 1/2, F1 4/7.
    // class 2: predicted 0, actual 1: P 0 (zero_division=0), R 0, F1 0.
    // class 3: neither predicted nor a target, so left out of the mean (sklearn's labels=None).
    close(measure(Box::new(Precision::new())), (1.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0);
    close(measure(Box::new(Recall::new())), (1.0 + 0.5 + 0.0) / 3.0);
    close(measure(Box::new(F1Score::new())), (0.5 + 4.0 / 7.0 + 0.0) / 3.0);
    let names: Vec<String> =
        [Box::new(Precision::new()) as Box<dyn Metric>, Box::new(Recall::new()), Box::new(F1Score::new())]
            .iter()
            .map(|m| m.name())
            .collect();
    assert_eq!(names, ["precision_score", "recall_score", "f1_score"]);
}

#[test]
fn top_k_accuracy_counts_ties_as_argmax_does() {
    // k = 1 is accuracy, the tie of item 3 included.
    close(measure(top_k_accuracy(1).unwrap()), 3.0 / 6.0);
    // k = 2: item 3 (tied with the lower class 0) now counts; item 4's target (0.2) trails class 1 (0.5) and
    // class 0, which ties it with a lower index, so it is third and misses.
    close(measure(top_k_accuracy(2).unwrap()), 5.0 / 6.0);
    close(measure(top_k_accuracy(3).unwrap()), 1.0);
    // k past the number of classes: every target is among the top k.
    close(measure(top_k_accuracy(10).unwrap()), 1.0);
    assert_eq!(top_k_accuracy(3).unwrap().name(), "top_3_accuracy");
    assert!(matches!(TopKAccuracy::new(0), Err(LearnerError::InvalidArgument { .. })));
}

#[test]
fn kept_predictions_are_counted_across_flushes() {
    // More batches than are kept before counting, so both the flush and the final count run.
    for mut m in [accuracy(), top_k_accuracy(1).unwrap(), Box::new(F1Score::new())] {
        let mut want = 0;
        for b in 0..FLUSH_EVERY + 5 {
            let preds = Tensor::from_vec(vec![0.1, 0.9, 0.8, 0.2], &[2, 2]).unwrap();
            m.accumulate(&preds, &[1, (b % 2) as u32]).unwrap();
            want += 1 + usize::from(b % 2 == 0);
        }
        let batches = FLUSH_EVERY + 5;
        let expected = if m.name() == "f1_score" {
            // Row 0 predicts class 1, a hit every batch; row 1 predicts class 0, a hit in even batches.
            let (even, odd) = (batches.div_ceil(2) as f32, (batches / 2) as f32);
            let b = batches as f32;
            (2.0 * b / (b + b + odd) + 2.0 * even / (b + even)) / 2.0
        } else {
            want as f32 / (2 * batches) as f32
        };
        close(m.value().unwrap(), expected);
        assert_eq!(m.value().unwrap(), expected, "counting twice counts nothing twice");
    }
}

#[test]
fn bad_predictions_are_errors_not_panics() {
    for make in [accuracy as fn() -> Box<dyn Metric>, || top_k_accuracy(2).unwrap(), || Box::new(Recall::new())] {
        let mut m = make();
        let rank1 = Tensor::from_vec(vec![0.1, 0.9], &[2]).unwrap();
        assert!(matches!(m.accumulate(&rank1, &[0, 1]), Err(LearnerError::InvalidArgument { .. })));
        let preds = Tensor::from_vec(vec![0.1, 0.9, 0.8, 0.2], &[2, 2]).unwrap();
        assert!(matches!(m.accumulate(&preds, &[0]), Err(LearnerError::InvalidArgument { .. })));
        let err = m.accumulate(&preds, &[0, 2]).unwrap_err().to_string();
        assert!(err.contains("target 2"), "{err}");
        m.accumulate(&preds, &[0, 1]).unwrap();
        assert!(m.value().is_ok());
    }
    // Every batch must have the same classes.
    let mut m = accuracy();
    m.accumulate(&Tensor::zeros(&[1, 3]), &[0]).unwrap();
    assert!(m.accumulate(&Tensor::zeros(&[1, 4]), &[0]).is_err());
}

#[test]
fn metrics_come_from_names() {
    let name = |s: &str| metric_from_name(s).unwrap().name();
    assert_eq!(name("accuracy"), "accuracy");
    assert_eq!(name(" error_rate "), "error_rate");
    assert_eq!(name("top_k:3"), "top_3_accuracy");
    assert_eq!(name("top_3_accuracy"), "top_3_accuracy", "a column name reads back as its metric");
    assert_eq!(name("top_k"), "top_5_accuracy", "fastai's default k");
    for (short, long) in [("f1", "f1_score"), ("precision", "precision_score"), ("recall", "recall_score")] {
        assert_eq!((name(short), name(long)), (long.to_string(), long.to_string()));
    }
    assert_eq!((name("accuracy_multi"), name("f1_multi:0.2")), ("accuracy_multi".into(), "f1_score".into()));
    match metric_from_name("acuracy") {
        Err(LearnerError::UnknownMetric { name, known }) => {
            assert_eq!(name, "acuracy");
            let single = ["accuracy", "error_rate", "top_k:K", "f1", "precision", "recall"];
            assert_eq!(known, [&single[..], &["accuracy_multi[:T]", "f1_multi[:T]"]].concat());
        }
        other => panic!("expected UnknownMetric, got {other:?}"),
    }
    let msg = metric_from_name("acuracy").unwrap_err().to_string();
    assert!(msg.contains("accuracy, error_rate, top_k:K, f1, precision, recall"), "{msg}");
    for bad in ["top_k:0", "top_k:x", "top_k:"] {
        assert!(matches!(metric_from_name(bad), Err(LearnerError::InvalidArgument { .. })), "{bad}");
    }

    let names: Vec<String> =
        metrics_from_names("accuracy,error_rate,top_k:3,f1").unwrap().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["accuracy", "error_rate", "top_3_accuracy", "f1_score"]);
    assert!(metrics_from_names(" ").unwrap().is_empty());
    assert!(matches!(metrics_from_names("accuracy,,f1"), Err(LearnerError::UnknownMetric { .. })));
    assert!(matches!(metrics_from_names("f1,f1_score"), Err(LearnerError::InvalidArgument { .. })));
}

#[test]
fn a_fit_reports_every_metric_in_the_history_table_and_csv() {
    let dir = temp_dir("metrics-fit");
    let path = dir.join("log.csv");
    let mut learn = point_learner(point_loaders(48, 24, 8, Some(1)), 0.3, vec![])
        .with_metrics(metrics_from_names("accuracy,error_rate,top_k:2,f1").unwrap());
    learn.add_cb(Box::new(Recorder::new().show_table(false).show_progress(false)));
    learn.add_cb(Box::new(TrackResults::quiet()));
    learn.add_cb(Box::new(CsvLogger::new(&path)));
    learn.fit(2).unwrap();

    let names = ["accuracy", "error_rate", "top_2_accuracy", "f1_score"];
    let last = learn.history.last().unwrap().clone();
    assert_eq!(last.metrics.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), names);
    let acc = last.accuracy().unwrap();
    close(acc + last.metric("error_rate").unwrap(), 1.0);
    assert!(last.metric("top_2_accuracy").unwrap() >= acc);

    // The Recorder and TrackResults add up the same validation phase with the same machinery.
    let track = learn.callback::<TrackResults>().unwrap();
    let valid = track.last_valid().unwrap();
    assert_eq!(valid.metrics, last.metrics);
    assert_eq!(valid.acc, acc);
    assert!(valid.line().contains(" acc ") && valid.line().contains(" top_2_accuracy "), "{}", valid.line());
    assert_eq!(track.last_train().unwrap().metrics.len(), 4, "TrackResults measures the training phase too");

    // The accuracy is the model's, computed here by hand on the validation set.
    let x =
        Tensor::from_vec(learn.dls.valid.batches(0).flat_map(|b| b.unwrap().x.to_vec()).collect(), &[24, 2]).unwrap();
    let y: Vec<u32> = learn.dls.valid.batches(0).flat_map(|b| b.unwrap().y.as_slice().to_vec()).collect();
    learn.model.train(false);
    let preds = learn.model.call(&x).unwrap().argmax(-1).unwrap();
    let hits = preds.iter().zip(&y).filter(|(p, y)| p == y).count();
    close(acc, hits as f32 / 24.0);

    let rec = learn.callback::<Recorder>().unwrap();
    let table = rec.table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "epoch  train_loss  valid_loss  accuracy  error_rate  top_2_accuracy  f1_score  time");
    assert_eq!(lines.len(), 3);
    assert!(lines[2].contains(&format!("{acc:.6}")), "{}", lines[2]);

    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "epoch,train_loss,valid_loss,accuracy,error_rate,top_2_accuracy,f1_score,time");
    assert_eq!(rows.len(), 3);
    let fields: Vec<&str> = rows[2].split(',').collect();
    assert_eq!(fields.len(), 8);
    assert_eq!(fields[3].parse::<f32>().unwrap(), acc);
}

#[test]
fn without_an_accuracy_metric_the_line_leaves_acc_out() {
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.1, vec![Box::new(TrackResults::quiet())])
        .with_metrics(vec![error_rate()]);
    learn.fit(1).unwrap();
    let valid = learn.callback::<TrackResults>().unwrap().last_valid().unwrap().clone();
    assert!(valid.acc.is_nan());
    assert!(valid.metric("error_rate").is_some());
    let line = valid.line();
    assert!(line.contains(" error_rate ") && !line.contains(" acc "), "{line}");

    let mut learn =
        point_learner(point_loaders(16, 8, 8, None), 0.1, vec![Box::new(TrackResults::quiet())]).with_metrics(vec![]);
    learn.fit(1).unwrap();
    let valid = learn.callback::<TrackResults>().unwrap().last_valid().unwrap().clone();
    assert!(valid.metrics.is_empty() && valid.acc.is_nan());
}

/// A metric whose value, epoch after epoch, is read off a script shared by all its clones.
#[derive(Debug, Clone)]
struct Scripted {
    values: Rc<Vec<f32>>,
    next: Rc<Cell<usize>>,
    lower_is_better: bool,
}

impl Metric for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }
    fn lower_is_better(&self) -> bool {
        self.lower_is_better
    }
    fn reset(&mut self) {}
    fn accumulate(&mut self, _preds: &Tensor, _targets: &[u32]) -> tiny_learner::Result<()> {
        Ok(())
    }
    fn value(&mut self) -> tiny_learner::Result<f32> {
        let i = self.next.get();
        self.next.set(i + 1);
        Ok(self.values.get(i).copied().unwrap_or(f32::NAN))
    }
}

/// The number of epochs a fit of ten runs when EarlyStopping (patience 2) watches `Scripted`.
fn epochs_until_stopped(lower_is_better: bool) -> usize {
    let values = Rc::new(vec![0.5, 0.4, 0.3, 0.35, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]);
    let metric = Scripted { values, next: Rc::new(Cell::new(0)), lower_is_better };
    let mut learn =
        point_learner(point_loaders(16, 8, 8, None), 0.1, vec![]).with_metrics(vec![accuracy(), Box::new(metric)]);
    learn.add_cb(Box::new(Recorder::new().show_table(false).show_progress(false)));
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::metric("scripted"), 2)));
    learn.fit(10).unwrap();
    learn.history.len()
}

#[test]
fn early_stopping_watches_a_metric_by_name_in_its_direction() {
    // Lower is better: 0.4 and 0.3 improve, 0.35 and 0.3 do not, so the fit stops after epoch 4.
    assert_eq!(epochs_until_stopped(true), 5);
    // Higher is better: 0.4 and 0.3 do not improve on 0.5, so it stops after epoch 2.
    assert_eq!(epochs_until_stopped(false), 3);

    // A real metric: with a learning rate of 0 the error rate never improves after the first epoch.
    let mut learn =
        point_learner(point_loaders(16, 8, 8, None), 0.0, vec![]).with_metrics(vec![accuracy(), error_rate()]);
    learn.add_cb(Box::new(Recorder::new().show_table(false).show_progress(false)));
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::metric("error_rate"), 2)));
    learn.fit(10).unwrap();
    assert_eq!(learn.history.len(), 3);

    // A name the learner has no metric for fails before the first batch, listing what it could watch.
    let mut learn = point_learner(point_loaders(16, 8, 8, None), 0.1, vec![]);
    learn.add_cb(Box::new(Recorder::new().show_table(false).show_progress(false)));
    learn.add_cb(Box::new(EarlyStopping::new(Monitor::metric("f1_score"), 2)));
    match learn.fit(3) {
        Err(LearnerError::UnknownMetric { name, known }) => {
            assert_eq!(name, "f1_score");
            assert_eq!(known, ["valid_loss", "train_loss", "accuracy"]);
        }
        other => panic!("expected UnknownMetric, got {other:?}"),
    }
    assert!(learn.history.is_empty());
}
