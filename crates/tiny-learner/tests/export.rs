//! After the fit: `get_preds`, `predict`, `tta`, `export` and `load_learner` on a small generated image folder,
//! and the errors of a missing or corrupt image and of files that are not exports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tiny_data::{DataLoaders, Dataset, FolderConfig, ImageFolderDataset, ItemTransform, Normalize};
use tiny_learner::{ExportInfo, Learner, LearnerError, SetupLearner, TrackResults, Tta, load_learner};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_tensor::Device;

const STATS: Normalize = Normalize { mean: [0.5, 0.45, 0.4], std: [0.25, 0.25, 0.25] };
const SIZE: u32 = 16;

/// A fresh folder under the system's temp folder, unique to this process and `label`.
fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-export-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The values of a model's tensors, in state_dict order.
fn weights_of(model: &dyn tiny_nn::Module) -> Vec<Vec<f32>> {
    model.state_dict().iter().map(|(_, t)| t.to_vec()).collect()
}

/// A simple_cnn learner trained for two epochs on a 270-image synthetic Imagenette in `dir`, with its validation set.
fn trained(dir: &Path) -> (Learner, ImageFolderDataset) {
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
    let cbs: Vec<Box<dyn tiny_learner::Callback>> = vec![Box::new(setup), Box::new(TrackResults::quiet())];
    let mut learn = Learner::new(model, dls, cross_entropy, 0.1, cbs).with_export_info(info);
    learn.fit(2).unwrap();
    (learn, valid)
}

#[test]
fn get_preds_matches_the_fit_and_an_export_predicts_the_same_classes() {
    let dir = temp_dir("roundtrip");
    let (mut learn, valid) = trained(&dir);
    let last = learn.callback::<TrackResults>().unwrap().last_valid().unwrap().clone();
    let history = learn.callback::<TrackResults>().unwrap().history.len();

    let preds = learn.get_preds(true).unwrap();
    assert_eq!(preds.len(), valid.len());
    assert_eq!(preds.targets.as_slice(), valid.labels());
    let probs = preds.probs.to_vec();
    for row in probs.chunks(preds.n_classes()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "each row is a distribution: {row:?}");
    }
    // The same weights and batches as the fit's last validation phase: the same accuracy and mean loss.
    assert_eq!(preds.accuracy().unwrap(), last.acc);
    let losses = preds.losses.as_ref().unwrap();
    let mean = losses.iter().sum::<f32>() / losses.len() as f32;
    assert!((mean - last.loss).abs() < 1e-5, "{mean} vs {}", last.loss);
    assert_eq!(learn.callback::<TrackResults>().unwrap().history.len(), history, "get_preds logs nothing");

    let export = dir.join("model.safetensors");
    learn.export(&export).unwrap();
    // The data folder is gone: the export alone must predict.
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let files: Vec<PathBuf> = valid
        .files()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let to = images.join(format!("{i}.jpg"));
            std::fs::copy(f, &to).unwrap();
            to
        })
        .collect();
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    let mut loaded = load_learner(&export, Device::Cpu).unwrap();
    let predicted = loaded.predict_all(&files).unwrap();
    let decoded = preds.decoded().unwrap();
    let vocab = &loaded.state().export_info.as_ref().unwrap().vocab.clone();
    for (i, p) in predicted.iter().enumerate() {
        assert_eq!(p.index, decoded[i], "item {i}");
        assert_eq!(p.class, vocab[p.index as usize]);
        let row = &probs[i * vocab.len()..(i + 1) * vocab.len()];
        for (a, b) in p.probs.iter().zip(row) {
            assert!((a - b).abs() < 1e-5, "item {i}: {a} vs {b}");
        }
    }
    let one = loaded.predict(&files[0]).unwrap();
    // A batch of one sums in another order than a batch of 64, so the probabilities may differ in the last bits.
    assert_eq!((&one.class, one.index), (&predicted[0].class, predicted[0].index), "predict is predict_all of one");
    assert!(one.probs.iter().zip(&predicted[0].probs).all(|(a, b)| (a - b).abs() < 1e-6));
    let top = one.top(3, vocab);
    assert_eq!(top[0], (one.class.clone(), one.probs[one.index as usize]));
    assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tta_mixes_augmented_passes_with_the_plain_one() {
    let dir = temp_dir("tta");
    let (mut learn, _) = trained(&dir);
    let plain = learn.get_preds(false).unwrap();
    // beta = 1 keeps only the plain pass.
    let only_plain = learn.tta(Tta { beta: 1.0, ..Tta::default() }).unwrap();
    assert_eq!(only_plain.probs.to_vec(), plain.probs.to_vec());
    let mixed = learn.tta(Tta::default()).unwrap();
    assert_eq!(mixed.targets, plain.targets);
    assert_ne!(mixed.probs.to_vec(), plain.probs.to_vec(), "the augmented passes change the probabilities");
    for row in mixed.probs.to_vec().chunks(mixed.n_classes()) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let again = learn.tta(Tta::default()).unwrap();
    assert_eq!(again.probs.to_vec(), mixed.probs.to_vec(), "the passes are seeded, so TTA is repeatable");

    // Issue 29: an export whose write fails leaves the trained model in the fallback folder, and says why.
    let (gone, spare) = (dir.join("gone/model.safetensors"), dir.join("spare"));
    std::fs::create_dir_all(&spare).unwrap();
    let (saved, failed) = learn.export_or_fallback(&gone, &spare).unwrap();
    assert_eq!(saved, spare.join(format!("model-{}.safetensors", std::process::id())));
    assert!(failed.unwrap().to_string().contains("gone"));
    let reloaded = load_learner(&saved, Device::Cpu).unwrap();
    assert_eq!(weights_of(reloaded.state().model.as_ref()), weights_of(learn.state().model.as_ref()));
    let (saved, failed) = learn.export_or_fallback(&dir.join("here.safetensors"), &spare).unwrap();
    assert!(failed.is_none() && saved == dir.join("here.safetensors") && saved.is_file());
    let err = learn.export_or_fallback(&gone, &dir.join("missing-too")).unwrap_err().to_string();
    assert!(err.contains("gone") && err.contains("missing-too") && err.contains("either"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_names_a_missing_or_corrupt_file() {
    let dir = temp_dir("badpredict");
    let (learn, _) = trained(&dir);
    let export = dir.join("m.safetensors");
    learn.export(&export).unwrap();
    let mut loaded = load_learner(&export, Device::Cpu).unwrap();
    let missing = dir.join("no-such.jpg");
    let err = loaded.predict(&missing).unwrap_err().to_string();
    assert!(err.contains("no-such.jpg"), "{err}");
    let text = dir.join("notes.jpg");
    std::fs::write(&text, b"this is text, not an image").unwrap();
    let err = loaded.predict(&text).unwrap_err().to_string();
    assert!(err.contains("notes.jpg"), "{err}");
    // A learner that was never told its classes says what predict needs.
    let dls = DataLoaders::new(
        tiny_learner::InMemory::new(tiny_tensor::Tensor::zeros(&[0, 1]), vec![], 1).unwrap(),
        tiny_learner::InMemory::new(tiny_tensor::Tensor::zeros(&[0, 1]), vec![], 1).unwrap(),
    );
    let mut bare = Learner::new(Box::new(simple_cnn(2).unwrap()), dls, cross_entropy, 0.1, vec![]);
    let err = bare.predict(&text).unwrap_err().to_string();
    assert!(err.contains("with_export_info"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The message of `load_learner`'s error on `path`, which must be [`LearnerError::Export`].
fn refusal(path: &Path) -> String {
    match load_learner(path, Device::Cpu) {
        Err(e @ LearnerError::Export { .. }) => e.to_string(),
        Err(e) => panic!("{} gave another error: {e:?}", path.display()),
        Ok(_) => panic!("{} was loaded", path.display()),
    }
}

#[test]
fn load_learner_says_what_a_file_is_when_it_is_not_an_export() {
    let dir = temp_dir("notexport");
    let (learn, _) = trained(&dir);
    let export = dir.join("m.safetensors");
    learn.export(&export).unwrap();
    let bytes = std::fs::read(&export).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(refusal(&truncated).contains("truncated or not a safetensors file"));

    let checkpoint = dir.join("ck.safetensors");
    learn.state().save_checkpoint(&checkpoint, 2).unwrap();
    assert!(refusal(&checkpoint).contains("training checkpoint"));

    let plain = dir.join("plain.safetensors");
    tiny_nn::save_state_dict(learn.state().model.as_ref(), &plain).unwrap();
    assert!(refusal(&plain).contains("plain state_dict"));

    // The same weights under a metadata that claims another architecture, or a newer format.
    let (tensors, meta) = tiny_nn::load_tensors(&export).unwrap();
    let relabel = |name: &str, key: &str, value: &str| {
        let mut meta: HashMap<String, String> = meta.clone();
        meta.insert(key.into(), value.into());
        let path = dir.join(name);
        tiny_nn::save_tensors(&path, &tensors, &meta).unwrap();
        path
    };
    let other = refusal(&relabel("other.safetensors", "tiny.arch", "resnet18"));
    assert!(other.contains("not those of resnet18"), "{other}");
    let newer = refusal(&relabel("newer.safetensors", "tiny.format", "tiny-learner-export-2"));
    assert!(newer.contains("tiny-learner-export-2") && newer.contains("tiny-learner-export-1"), "{newer}");
    let unknown = refusal(&relabel("unknown.safetensors", "tiny.arch", "vgg16"));
    assert!(unknown.contains("vgg16") && unknown.contains("simple_cnn, resnet18"), "{unknown}");

    // A diverged model is never exported.
    let first = learn.state().model.parameters()[0].tensor().clone();
    first.scale_(f32::NAN).unwrap();
    let nan = dir.join("nan.safetensors");
    assert!(matches!(learn.export(&nan), Err(LearnerError::NonFiniteCheckpoint { .. })));
    assert!(!nan.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pretrained_weights_must_end_in_imagenets_thousand_classes() {
    // Issue 29: `--pretrained` took any file at data/weights/MODEL.safetensors, and loaded its head whenever it fit.
    let dir = std::env::temp_dir().join(format!("tiny-imagenet-head-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let arch = tiny_learner::Arch::named("resnet18").unwrap();
    let (imagenet, ten) = (dir.join("imagenet.safetensors"), dir.join("ten.safetensors"));
    tiny_nn::save_state_dict(&tiny_nn::resnet18(1000).unwrap(), &imagenet).unwrap();
    tiny_nn::save_state_dict(&tiny_nn::resnet18(10).unwrap(), &ten).unwrap();
    arch.check_imagenet_weights(&imagenet).unwrap();
    let err = arch.check_imagenet_weights(&ten).unwrap_err().to_string();
    assert!(err.contains("a 10-class head") && err.contains("--init"), "{err}");
    let err = tiny_learner::Arch::named("resnet34").unwrap().check_imagenet_weights(&dir.join("none")).unwrap_err();
    assert!(err.to_string().contains("none"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_or_an_export_too_large_for_this_machine_is_refused_by_name_before_any_allocation() {
    // Issue 29: `--size 4096 --bs 64`, or an export edited to size 100000, aborted in an allocation.
    use tiny_learner::memory::{check_training_memory, training_bytes};
    let model = tiny_nn::resnet18(10).unwrap();
    check_training_memory(&model, 64, 64).unwrap();
    let err = check_training_memory(&model, 4096, 64).unwrap_err().to_string();
    assert!(err.contains("64 images at 4096 px") && err.contains("--bs") && err.contains("--size"), "{err}");
    // Area scales the estimate: 128 px is four times 64 px, both above the probe's size and below it.
    let (a, b) = (training_bytes(&model, 64, 8).unwrap(), training_bytes(&model, 128, 8).unwrap());
    assert!((b / a - 4.0).abs() < 1e-9, "{a} {b}");
    assert!((training_bytes(&model, 64, 16).unwrap() / a - 2.0).abs() < 1e-9);

    let dir = temp_dir("huge-export");
    let x = tiny_tensor::Tensor::zeros(&[4, 3, 8, 8]);
    let dls = DataLoaders::new(
        tiny_learner::InMemory::new(x.clone(), vec![0, 1, 0, 1], 2).unwrap(),
        tiny_learner::InMemory::new(x, vec![0, 1, 0, 1], 2).unwrap(),
    );
    let vocab = ["a".to_string(), "b".to_string()];
    let info = ExportInfo::new("simple_cnn", &vocab, STATS, ItemTransform::squash(100_000));
    let learn = Learner::new(simple_cnn(2).unwrap(), dls, cross_entropy, 0.1, vec![]).with_export_info(info);
    let path = dir.join("huge.safetensors");
    learn.export(&path).unwrap();
    let Err(err) = load_learner(&path, Device::Cpu) else { panic!("an export at 100000 px was loaded") };
    let err = err.to_string();
    assert!(err.contains("huge.safetensors") && err.contains("100000 px") && err.contains("GiB"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
