//! Multi-label learning end to end: a CSV with a label delimiter trains with binary cross entropy, is measured by
//! `accuracy_multi` and `F1ScoreMulti` (checked against hand counts), predicts through an export, and is interpreted
//! per class; Mixup mixes its binary losses.

use std::path::PathBuf;

use tiny_data::synth::shapes::{self, ShapesConfig};
use tiny_data::{Column, CsvColumns, DataLoaders, FolderConfig, ImageFolder, InMemory, ItemTransform, Normalize};
use tiny_learner::metrics::{AccuracyMulti, F1ScoreMulti, Metric};
use tiny_learner::{
    ClassificationInterpretation, ExportInfo, Learner, LearnerState, MultiLabelInterpretation, Preds, SetupLearner,
    Targets, load_learner, metric_from_name,
};
use tiny_nn::{Linear, bce_with_logits_flat, bce_with_logits_items, simple_cnn};
use tiny_tensor::{Device, Tensor};

const STATS: Normalize = Normalize { mean: [0.4, 0.4, 0.4], std: [0.25, 0.25, 0.25] };

/// A fresh folder under the system's temp folder, unique to this process and `label`.
fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-multi-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn accuracy_multi_and_f1_multi_match_hand_counts() {
    // Outputs (logits) of 3 items over 3 classes; at thresh 0.5 (logit 0) the predictions are
    // [1 0 1], [0 0 0], [1 1 0] against targets [1 0 0], [0 1 0], [1 1 0].
    let preds = Tensor::from_vec(vec![2.0, -1.0, 0.5, -3.0, -0.2, -1.0, 0.1, 4.0, -2.0], &[3, 3]).unwrap();
    let flags = [1, 0, 0, 0, 1, 0, 1, 1, 0];
    let mut acc = AccuracyMulti::new(0.5);
    acc.accumulate(&preds, &flags).unwrap();
    // 7 of the 9 item-class pairs are right.
    assert!((acc.value().unwrap() - 7.0 / 9.0).abs() < 1e-6);
    // Per class: tp/fp/fn = 2/0/0, 1/0/1, 0/1/0, so F1 = 1, 2/3, 0; the macro mean over all three.
    let mut f1 = F1ScoreMulti::new(0.5);
    f1.accumulate(&preds, &flags).unwrap();
    assert!((f1.value().unwrap() - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-6);
    // A lower threshold predicts more: at 0.4 (logit -0.405) item 1's -0.2 turns into a right yes.
    let mut low = AccuracyMulti::new(0.4);
    low.accumulate(&preds, &flags).unwrap();
    assert!((low.value().unwrap() - 8.0 / 9.0).abs() < 1e-6);
    // Accumulated over two batches, as over one.
    let mut two = AccuracyMulti::new(0.5);
    two.accumulate(&preds.narrow(0, 0, 1).unwrap(), &flags[..3]).unwrap();
    two.accumulate(&preds.narrow(0, 1, 2).unwrap(), &flags[3..]).unwrap();
    assert_eq!(two.value().unwrap(), acc.value().unwrap());
    // Class indices where flags are due, and flags that are not 0 or 1, are errors naming the metric.
    let err = AccuracyMulti::new(0.5).accumulate(&preds, &[0, 1, 2]).unwrap_err().to_string();
    assert!(err.contains("accuracy_multi") && err.contains("3 flags per item"), "{err}");
    assert!(AccuracyMulti::new(0.5).accumulate(&preds, &[2; 9]).is_err());
    // A batch of another width is an error, even before the first batches are counted.
    let mut width = AccuracyMulti::new(0.5);
    width.accumulate(&preds.narrow(1, 0, 2).unwrap(), &[1, 0, 0, 1, 1, 1]).unwrap();
    let err = width.accumulate(&preds, &flags).unwrap_err().to_string();
    assert!(err.contains("predictions have 3 classes, earlier batches had 2"), "{err}");
    assert!((width.value().unwrap() - 5.0 / 6.0).abs() < 1e-6);
    assert_eq!(metric_from_name("f1_multi:0.3").unwrap().name(), "f1_score");
    assert!(metric_from_name("accuracy_multi:x").is_err());
}

#[test]
fn the_multi_label_metrics_match_fastais_formulas_and_scikit_learn() {
    // `parity/multi_label_metrics.py`: fastai's accuracy_multi, scikit-learn's macro f1_score (F1ScoreMulti) and
    // multilabel_confusion_matrix on seeded logits, with a class never present nor predicted and one always present.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/multi_label_metrics.json"));
    let fx: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let names: Vec<String> = (0..12).map(|c| format!("c{c}")).collect();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
        let logits: Vec<f32> = serde_json::from_value(case["logits"].clone()).unwrap();
        let flags: Vec<u32> = serde_json::from_value(case["flags"].clone()).unwrap();
        let thresh = case["thresh"].as_f64().unwrap() as f32;
        let preds = Tensor::from_vec(logits, &shape).unwrap();
        // Two batches, as a phase would give them.
        let half = shape[0] / 2;
        let (mut acc, mut f1) = (AccuracyMulti::new(thresh), F1ScoreMulti::new(thresh));
        for (rows, fl) in [(0..half, &flags[..half * shape[1]]), (half..shape[0], &flags[half * shape[1]..])] {
            let part = preds.narrow(0, rows.start, rows.len()).unwrap();
            acc.accumulate(&part, fl).unwrap();
            f1.accumulate(&part, fl).unwrap();
        }
        let want = |key: &str| case[key].as_f64().unwrap() as f32;
        assert!((acc.value().unwrap() - want("accuracy_multi")).abs() < 1e-6, "{name} accuracy_multi");
        assert!((f1.value().unwrap() - want("f1_macro")).abs() < 1e-6, "{name} f1");
        // The interpretation's per-class confusion, from sigmoid probabilities.
        let probs = Tensor::from_vec(preds.to_vec().iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(), &shape);
        let targets = Targets::multi_hot(flags.clone(), shape[1]).unwrap();
        let p = Preds { probs: probs.unwrap(), targets, losses: None };
        let files = vec![PathBuf::from("f.jpg"); shape[0]];
        let interp = MultiLabelInterpretation::new(p, names[..shape[1]].to_vec(), files, thresh).unwrap();
        let want: Vec<[[u64; 2]; 2]> = serde_json::from_value(case["confusion"].clone()).unwrap();
        assert_eq!(interp.per_class_confusion(), want, "{name} confusion");
    }
}

#[test]
fn a_multi_label_learner_fits_gathers_sigmoids_and_predicts_through_an_export() {
    let dir = temp_dir("fit");
    let data = dir.join("shapes");
    shapes::generate(&data, &ShapesConfig { train: 96, valid: 32, size: 32, seed: 4 }).unwrap();
    let columns = CsvColumns {
        label: Column::from("labels"),
        valid: Some(Column::from("is_valid")),
        folder: Some("images".into()),
        label_delim: Some(' '),
        ..CsvColumns::default()
    };
    let cfg = FolderConfig { size: 32, bs: 16, num_workers: 1, seed: 1, ..FolderConfig::default() };
    let folder = ImageFolder::from_csv(&data, "labels.csv", &columns, &cfg).unwrap();
    let dls = DataLoaders::from_image_folder(folder, &cfg).unwrap();
    let vocab = dls.vocab.names().to_vec();
    assert_eq!(vocab, ["circle", "cross", "ring", "square", "triangle"]);
    tiny_nn::manual_seed(2);
    let setup = SetupLearner::normalize(Device::Cpu, STATS.mean, STATS.std);
    let info = ExportInfo::new("simple_cnn", &vocab, STATS, ItemTransform::squash(32)).with_multi_label(0.4);
    let mut learn = Learner::new(simple_cnn(5).unwrap(), dls, bce_with_logits_flat, 0.05, vec![Box::new(setup)])
        .with_export_info(info);
    // The default metric of multi-label loaders is accuracy_multi.
    assert_eq!(learn.state().metrics[0].name(), "accuracy_multi");
    learn.fit(1).unwrap();
    let stats = learn.state().history.last().unwrap().clone();
    let fit_acc = stats.metric("accuracy_multi").unwrap();

    // get_preds: a sigmoid per class (not a distribution), the targets' rows, each item's mean binary loss.
    let preds = learn.get_preds(true).unwrap();
    assert!(preds.is_multi_label() && preds.targets.width() == 5 && preds.len() == 32);
    let probs = preds.probs.to_vec();
    assert!(probs.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let losses = preds.losses.clone().unwrap();
    let mean = losses.iter().sum::<f32>() / losses.len() as f32;
    let valid_loss = stats.valid_loss.unwrap();
    assert!((mean - valid_loss).abs() < 1e-4, "{mean} against the fit's {valid_loss}");
    assert!((preds.accuracy().unwrap() - fit_acc).abs() < 1e-6);
    // Each item's loss is the binary cross entropy of its probabilities.
    let (p0, t0) = (&probs[..5], preds.targets.item(0));
    let by_hand: f32 =
        p0.iter().zip(t0).map(|(&p, &t)| -(if t == 1 { p.ln() } else { (1.0 - p).ln() })).sum::<f32>() / 5.0;
    assert!((by_hand - losses[0]).abs() < 1e-4, "{by_hand} against {}", losses[0]);

    // Interpretation: per-class 2x2 tables adding up to the items; the single-label view refuses.
    let interp = MultiLabelInterpretation::from_learner(&mut learn).unwrap();
    assert_eq!(interp.thresh(), 0.4);
    for m in interp.per_class_confusion() {
        assert_eq!(m.iter().flatten().sum::<u64>(), 32);
    }
    let top = interp.top_losses(3);
    assert!(top[0].loss >= top[1].loss && top[0].actual.contains(';'));
    assert!(interp.confusion_table().starts_with("class"));
    assert!(ClassificationInterpretation::from_learner(&mut learn).is_err());

    // The export keeps the threshold; a fresh learner predicts the same classes for files it never saw.
    let export = dir.join("model.safetensors");
    learn.export(&export).unwrap();
    let fresh = dir.join("fresh");
    shapes::generate(&fresh, &ShapesConfig { train: 1, valid: 5, size: 48, seed: 77 }).unwrap();
    let files: Vec<PathBuf> = (0..6).map(|i| fresh.join("images").join(format!("{i:05}.jpg"))).collect();
    let here = learn.predict_all(&files).unwrap();
    let mut loaded = load_learner(&export, Device::Cpu).unwrap();
    let info = loaded.state().export_info.clone().unwrap();
    assert!(info.multi_label && info.thresh == 0.4);
    let there = loaded.predict_all(&files).unwrap();
    assert_eq!(here, there);
    for p in &there {
        let above: Vec<String> =
            p.probs.iter().enumerate().filter(|(_, q)| **q > 0.4).map(|(c, _)| vocab[c].clone()).collect();
        assert_eq!(p.labels, above);
        assert_eq!(p.class, above.join(";"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks each training loss against the binary loss of the batch's own targets: with an `alpha` so small that every
/// weight is within 1e-3 of 1, Mixup's mixed loss is that loss (so its item loss is the binary one, not the softmax's).
#[derive(Default)]
struct CheckMix {
    close: bool,
    checked: usize,
}

impl tiny_learner::Callback for CheckMix {
    fn order(&self) -> i32 {
        100
    }

    fn after_loss(&mut self, learn: &mut LearnerState) -> tiny_learner::CbResult {
        if learn.training {
            assert!(learn.batch.y.is_multi_label());
            let own = bce_with_logits_items(&learn.preds, learn.batch.y.as_slice())?.mean_all()?.item()?;
            let mixed = learn.loss.item()?;
            assert!(mixed.is_finite());
            if self.close {
                assert!((mixed - own).abs() < 2e-3, "mixed {mixed} against {own}");
            }
            self.checked += 1;
        }
        Ok(())
    }
}

#[test]
fn mixup_and_in_memory_sources_take_multi_hot_targets() {
    let x = Tensor::from_vec((0..32).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5).collect(), &[8, 4]).unwrap();
    let rows: Vec<u32> = (0..24).map(|i| u32::from(i % 4 == 0 || i % 5 == 0)).collect();
    let y = Targets::multi_hot(rows, 3).unwrap();
    // Not told that they are multi-label: the learner sees it in the targets.
    let dls = DataLoaders::new(
        InMemory::with_targets(x.clone(), y.clone(), 4).unwrap(),
        InMemory::with_targets(x, y, 8).unwrap(),
    );
    let mut learn = Learner::new(Linear::new(4, 3).unwrap(), dls, bce_with_logits_flat, 0.1, vec![]);
    for (alpha, close) in [(1e-4, true), (0.4, false)] {
        learn.add_cb(Box::new(tiny_learner::Mixup::new(alpha).unwrap()));
        learn.add_cb(Box::new(CheckMix { close, checked: 0 }));
        learn.fit(2).unwrap();
        assert_eq!(learn.remove_cb::<CheckMix>().unwrap().checked, 4);
        let lams = learn.remove_cb::<tiny_learner::Mixup>().unwrap().lams;
        assert!(!close || lams.iter().all(|&l| l > 0.999), "{lams:?}");
    }
    assert!(learn.state().history.last().unwrap().metric("accuracy_multi").is_some());
    // Its export must say so (a loaded model would otherwise predict one class by softmax), with a probability.
    let path = std::env::temp_dir().join(format!("tiny-multi-{}-refused.safetensors", std::process::id()));
    let info = ExportInfo::new("simple_cnn", &["a".into(), "b".into(), "c".into()], STATS, ItemTransform::squash(16));
    learn.state_mut().export_info = Some(info.clone());
    let err = learn.export(&path).unwrap_err().to_string();
    assert!(err.contains("with_multi_label"), "{err}");
    learn.state_mut().export_info = Some(info.with_multi_label(f32::NAN));
    assert!(learn.export(&path).unwrap_err().to_string().contains("not a probability"));
    assert!(!path.exists());
    // Preds built by hand: multi-label ones go to MultiLabelInterpretation only.
    let probs = Tensor::from_vec(vec![0.9, 0.1, 0.6], &[1, 3]).unwrap();
    let preds = Preds { probs, targets: Targets::multi_hot(vec![1, 0, 0], 3).unwrap(), losses: None };
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert!(ClassificationInterpretation::new(preds.clone(), names.clone(), vec!["f".into()]).is_err());
    let interp = MultiLabelInterpretation::new(preds, names, vec!["f".into()], 0.5).unwrap();
    assert_eq!(interp.decoded().as_slice(), [1, 0, 1]);
}
