//! `ClassificationInterpretation` on hand-made predictions (confusion matrix, most confused, top losses, errors), the
//! PNG writers, and `from_learner` on a small trained image classifier.
//!
//! `cargo test -p tiny-learner --test interpret -- --ignored` also writes sample pictures to
//! `$TMPDIR/interpret-samples` for a person to look at.

use std::path::{Path, PathBuf};

use tiny_data::{DataLoaders, Dataset, FolderConfig, ImageDataLoaders, ImageFolderDataset, ItemTransform, Normalize};
#[cfg(feature = "plot")]
use tiny_learner::plot::{ImageGrid, LinePlot, MatrixPlot, Series, Tile};
#[cfg(feature = "plot")]
use tiny_learner::{Batch, LrFinder, Recorder, show_batch, show_batch_denormalized};
use tiny_learner::{
    ClassificationInterpretation, ExportInfo, Learner, LearnerError, Preds, SetupLearner, TrackResults,
};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::{Device, Tensor};

const STATS: Normalize = Normalize { mean: [0.5, 0.45, 0.4], std: [0.25, 0.25, 0.25] };
const SIZE: u32 = 16;

/// A fresh folder under the system's temp folder, unique to this process and `label`.
fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-interpret-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Six items of three classes. Rows are (probabilities, target); the argmax is the prediction:
/// 0: cat as cat, 1: cat as dog (p 0.1 for cat), 2: cat as dog (0.2), 3: dog as cat (0.3), 4: golf ball as golf
/// ball (0.7), 5: dog as golf ball (0.3).
fn hand_made(losses: Option<Vec<f32>>) -> Preds {
    let probs = vec![
        0.7, 0.2, 0.1, //
        0.1, 0.8, 0.1, //
        0.2, 0.5, 0.3, //
        0.6, 0.3, 0.1, //
        0.1, 0.2, 0.7, //
        0.3, 0.3, 0.4,
    ];
    Preds { probs: Tensor::from_vec(probs, &[6, 3]).unwrap(), targets: vec![0, 0, 0, 1, 2, 1].into(), losses }
}

fn files(n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| PathBuf::from(format!("item{i}.png"))).collect()
}

fn interp(losses: Option<Vec<f32>>) -> ClassificationInterpretation {
    ClassificationInterpretation::new(hand_made(losses), names(&["cat", "dog", "golf ball"]), files(6)).unwrap()
}

#[test]
fn confusion_matrix_rows_are_actual_and_columns_predicted() {
    let i = interp(None);
    assert_eq!(i.decoded(), [0, 1, 1, 0, 2, 2]);
    assert_eq!(i.confusion_matrix(), vec![vec![1, 2, 0], vec![1, 0, 1], vec![0, 0, 1]]);
    let expected = "\
actual \\ predicted  cat  dog  golf ball
cat                   1    2          0
dog                   1    0          1
golf ball             0    0          1
";
    assert_eq!(i.confusion_table(), expected);
}

#[test]
fn most_confused_is_sorted_by_count_then_row_order() {
    let i = interp(None);
    let own = |a: &str, p: &str, n: u64| (a.to_string(), p.to_string(), n);
    assert_eq!(i.most_confused(1), vec![own("cat", "dog", 2), own("dog", "cat", 1), own("dog", "golf ball", 1)]);
    assert_eq!(i.most_confused(2), vec![own("cat", "dog", 2)]);
    assert!(i.most_confused(3).is_empty());
    // As fastai, a threshold of 0 lists every pair of different classes, the never confused ones last.
    assert_eq!(i.most_confused(0).len(), 6);
}

#[test]
fn top_losses_are_largest_first_and_k_is_clamped() {
    // Without losses they are the cross entropy -ln p(target): 0.357, 2.303, 1.609, 1.204, 0.357, 1.204.
    let i = interp(None);
    let top = i.top_losses(3);
    assert_eq!(top.iter().map(|t| t.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert!((top[0].loss - 10f32.ln()).abs() < 1e-5);
    assert!((top[1].loss - 5f32.ln()).abs() < 1e-5);
    assert_eq!((top[0].actual.as_str(), top[0].predicted.as_str()), ("cat", "dog"));
    assert!((top[0].probability - 0.8).abs() < 1e-6, "the probability of the prediction");
    assert_eq!(top[2].file, PathBuf::from("item3.png"));
    assert_eq!((top[2].predicted.as_str(), top[2].probability), ("cat", 0.6));
    // Equal losses keep item order: 3 before 5, 0 before 4.
    let all = i.top_losses(100);
    assert_eq!(all.iter().map(|t| t.index).collect::<Vec<_>>(), [1, 2, 3, 5, 0, 4]);
    assert!(i.top_losses(0).is_empty());

    // Given losses are used as they are.
    let i = interp(Some(vec![0.5, 0.1, 0.2, 3.0, 0.0, 1.0]));
    assert_eq!(i.top_losses(2).iter().map(|t| (t.index, t.loss)).collect::<Vec<_>>(), [(3, 3.0), (5, 1.0)]);
}

#[test]
fn mismatched_inputs_are_errors() {
    let bad = |r: Result<ClassificationInterpretation, LearnerError>| {
        assert!(matches!(r, Err(LearnerError::InvalidArgument { .. })), "{r:?}");
    };
    let vocab = names(&["cat", "dog", "golf ball"]);
    bad(ClassificationInterpretation::new(hand_made(None), names(&["cat", "dog"]), files(6)));
    bad(ClassificationInterpretation::new(hand_made(None), vocab.clone(), files(5)));
    bad(ClassificationInterpretation::new(hand_made(Some(vec![1.0; 4])), vocab.clone(), files(6)));
    let mut p = hand_made(None);
    p.targets = vec![3, 0, 0, 1, 2, 1].into();
    bad(ClassificationInterpretation::new(p, vocab.clone(), files(6)));
    let empty = Preds { probs: Tensor::zeros(&[0, 3]), targets: vec![].into(), losses: Some(vec![]) };
    let i = ClassificationInterpretation::new(empty, vocab, vec![]).unwrap();
    assert!(i.is_empty() && i.top_losses(5).is_empty() && i.most_confused(1).is_empty());
    assert_eq!(i.confusion_matrix(), vec![vec![0; 3]; 3]);
    #[cfg(feature = "plot")]
    {
        let err = MatrixPlot::new("m", "x", "y", names(&["a", "b"]), vec![vec![1, 2]]).unwrap_err();
        assert!(matches!(err, LearnerError::InvalidArgument { .. }));
    }
}

/// The width and height of a PNG file, which must decode.
#[cfg(feature = "plot")]
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

/// Writes an `n x n` PNG of one colour.
#[cfg(feature = "plot")]
fn write_png(path: &Path, n: u32, rgb: [u8; 3]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, n, n);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&rgb.repeat((n * n) as usize)).unwrap();
}

#[test]
#[cfg(feature = "plot")]
fn every_png_writer_writes_a_decodable_png_of_a_sensible_size() {
    let dir = temp_dir("pngs");
    let fs: Vec<PathBuf> = (0..6).map(|i| dir.join(format!("item{i}.png"))).collect();
    for (i, f) in fs.iter().enumerate() {
        write_png(f, 40, [40 * i as u8, 200, 100]);
    }
    let i = ClassificationInterpretation::new(hand_made(None), names(&["cat", "dog", "golf ball"]), fs).unwrap();

    let cm = dir.join("cm.png");
    i.plot_confusion_matrix(&cm).unwrap();
    let (w, h) = png_size(&cm);
    assert!((250..1200).contains(&w) && (250..1200).contains(&h), "{w}x{h}");

    let top = dir.join("top.png");
    i.plot_top_losses(4, &top).unwrap();
    let (w, h) = png_size(&top);
    // Four 160-pixel thumbnails in two columns and two rows, with labels and a title.
    assert!((2 * 160..2 * 160 + 100).contains(&w) && (2 * 160 + 40..2 * 160 + 200).contains(&h), "{w}x{h}");
    // k larger than the number of items shows them all.
    i.plot_top_losses(50, &top).unwrap();
    assert!(png_size(&top).0 >= 3 * 160);

    let x =
        Tensor::from_vec((0..4 * 16 * 16 * 3).map(|v| (v % 256) as f32 / 255.0).collect(), &[4, 16, 16, 3]).unwrap();
    let batch = Batch { x, y: vec![0, 1, 2, 1].into() };
    let shown = dir.join("batch.png");
    show_batch(&batch, i.vocab(), &shown, 9).unwrap();
    let (w, h) = png_size(&shown);
    assert!((2 * 128..2 * 128 + 80).contains(&w) && (2 * 128..2 * 128 + 120).contains(&h), "{w}x{h}");
    show_batch(&batch, i.vocab(), &shown, 1).unwrap();
    assert!(png_size(&shown).0 < 200, "max_items 1 shows one image");
    // The batch as the model sees it: normalised, channels first.
    let nchw = Batch {
        x: batch.x.add_scalar(-0.5).unwrap().mul_scalar(4.0).unwrap().permute(&[0, 3, 1, 2]).unwrap(),
        y: batch.y,
    };
    let stats = Normalize { mean: [0.5; 3], std: [0.25; 3] };
    show_batch_denormalized(&nchw, i.vocab(), &stats, &shown, 9).unwrap();
    let bad = Batch { x: Tensor::zeros(&[2, 16, 16]), y: vec![0, 1].into() };
    assert!(matches!(show_batch(&bad, i.vocab(), &shown, 9), Err(LearnerError::InvalidArgument { .. })));

    let plot = dir.join("loss.png");
    LinePlot::new("loss", "batch", "loss")
        .series(Series::line("train", vec![(0.0, 2.0), (1.0, 1.0)]))
        .save_png(&plot)
        .unwrap();
    assert_eq!(png_size(&plot), (720, 480));
    let grid = ImageGrid::new("", 3).tile(Tile::new(vec![0; 8 * 8 * 3], 8, 8, vec!["a very long label indeed".into()]));
    assert!(grid.render().unwrap().width < 60, "labels are cut to the tile, not the tile widened");

    // A missing image file is an error that names it.
    let missing = ClassificationInterpretation::new(hand_made(None), names(&["a", "b", "c"]), files(6)).unwrap();
    let err = missing.plot_top_losses(2, &top).unwrap_err();
    assert!(err.to_string().contains("item1.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A simple_cnn learner trained for two epochs on a 270-image synthetic Imagenette in `dir`, with its validation set
/// and class names.
fn trained(dir: &Path, cbs: Vec<Box<dyn tiny_learner::Callback>>) -> (Learner, ImageFolderDataset, ImageDataLoaders) {
    let data = dir.join("data");
    tiny_data::synth::generate_with(&data, 0.02, 3, 2).unwrap();
    let cfg = FolderConfig { size: SIZE, bs: 16, num_workers: 1, seed: 1, ..FolderConfig::default() };
    let dls = DataLoaders::from_folder(&data, &cfg).unwrap();
    let v = dls.valid.dataset();
    let valid = ImageFolderDataset::from_labelled(v.files().to_vec(), v.labels().to_vec(), *v.transform()).unwrap();
    let info = ExportInfo::new("simple_cnn", dls.vocab.names(), STATS, ItemTransform::squash(SIZE));
    tiny_nn::manual_seed(5);
    let model = Box::new(simple_cnn(dls.vocab.len()).unwrap());
    let setup = SetupLearner::normalize(Device::Cpu, STATS.mean, STATS.std);
    let mut all: Vec<Box<dyn tiny_learner::Callback>> = vec![Box::new(setup), Box::new(TrackResults::quiet())];
    all.extend(cbs);
    let again = DataLoaders::from_folder(&data, &cfg).unwrap();
    let mut learn = Learner::new(model, dls, cross_entropy, 0.1, all).with_export_info(info);
    learn.fit(2).unwrap();
    (learn, valid, again)
}

#[test]
fn from_learner_interprets_the_validation_set() {
    let dir = temp_dir("learner");
    let (mut learn, valid, dls) = trained(&dir, vec![]);
    let i = ClassificationInterpretation::from_learner(&mut learn).unwrap();
    assert_eq!(i.len(), valid.len());
    assert_eq!(i.vocab(), dls.vocab.names());
    let cm = i.confusion_matrix();
    assert_eq!(cm.iter().flatten().sum::<u64>(), valid.len() as u64);
    for (c, row) in cm.iter().enumerate() {
        let actual = valid.labels().iter().filter(|&&l| l as usize == c).count() as u64;
        assert_eq!(row.iter().sum::<u64>(), actual, "row {c} counts the items of class {c}");
    }
    let top = i.top_losses(9);
    assert!(top.windows(2).all(|w| w[0].loss >= w[1].loss));
    assert_eq!(top[0].file, valid.files()[top[0].index]);
    #[cfg(feature = "plot")]
    {
        let png = dir.join("top.png");
        i.plot_top_losses(9, &png).unwrap();
        assert!(png_size(&png).0 >= 3 * 160);
    }

    std::fs::remove_dir_all(&dir).unwrap();
}

/// Imagenette's classes in words, in the order of their WordNet ids.
#[cfg(feature = "plot")]
const WORDS: [&str; 10] = [
    "tench",
    "English springer",
    "cassette player",
    "chain saw",
    "church",
    "French horn",
    "garbage truck",
    "gas pump",
    "golf ball",
    "parachute",
];

#[test]
#[ignore = "writes sample pictures for a person to look at"]
#[cfg(feature = "plot")]
fn samples() {
    let out = std::env::temp_dir().join("interpret-samples");
    std::fs::create_dir_all(&out).unwrap();
    let dir = temp_dir("samples");
    let rec = Recorder::new().show_table(false).show_progress(false);
    let (mut learn, valid, dls) = trained(&dir, vec![Box::new(rec)]);
    learn.callback::<Recorder>().unwrap().plot_loss(&out.join("loss.png")).unwrap();
    learn.lr_find(LrFinder::new()).unwrap().plot(&out.join("lr_find.png")).unwrap();
    let i = ClassificationInterpretation::from_learner(&mut learn).unwrap();
    i.plot_confusion_matrix(&out.join("confusion_matrix_wnids.png")).unwrap();
    std::fs::write(out.join("confusion_table.txt"), i.confusion_table()).unwrap();
    i.plot_top_losses(9, &out.join("top_losses.png")).unwrap();
    let preds = learn.get_preds(true).unwrap();
    let words = ClassificationInterpretation::new(preds, names(&WORDS), valid.files().to_vec()).unwrap();
    words.plot_confusion_matrix(&out.join("confusion_matrix_words.png")).unwrap();
    words.plot_top_losses(9, &out.join("top_losses_words.png")).unwrap();
    // The curve that the 5x7 bitmap font's plots were compared on: 300 noisy batches and five epochs.
    let train =
        (0..300).map(|i| (i as f64, 2.3 * (-(i as f64) / 120.0).exp() + 0.4 + (i as f64 * 0.7).sin().abs() * 0.25));
    let valid = (1..=5).map(|e| ((e * 60) as f64, 2.3 * (-(e * 60) as f64 / 120.0).exp() + 0.55));
    LinePlot::new("loss", "batch", "loss")
        .series(Series::line("train", train.collect()))
        .series(Series::line("valid", valid.collect()).with_markers())
        .save_png(&out.join("loss_300_batches.png"))
        .unwrap();
    let b = dls.train.iter_epoch(0).next().unwrap().unwrap();
    show_batch(&Batch { x: b.x, y: b.y }, dls.vocab.names(), &out.join("show_batch.png"), 9).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn from_learner_and_tta_name_a_validation_set_without_files() {
    let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
    let src = || tiny_data::InMemory::new(x.clone(), vec![1, 0], 2).unwrap();
    let model = tiny_nn::Linear::new(2, 2).unwrap();
    let mut learn = Learner::new(model, DataLoaders::new(src(), src()), cross_entropy, 0.1, vec![]);
    let err = ClassificationInterpretation::from_learner(&mut learn).unwrap_err();
    assert!(matches!(err, LearnerError::InvalidArgument { what: "ClassificationInterpretation::from_learner", .. }));
    assert!(err.to_string().contains("no image files"), "{err}");
    let err = learn.tta(tiny_learner::Tta::default()).unwrap_err();
    assert!(matches!(err, LearnerError::InvalidArgument { what: "tta", .. }), "{err}");
}
