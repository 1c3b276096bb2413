//! PyTorch state_dicts in and out: round trips, dtypes, strict and non-strict loads, pretrained bodies, and
//! errors that name every key at fault and change nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use tiny_nn::{
    Module, NnError, load_pretrained, load_state_dict, load_state_dict_file, load_tensors, resnet18, save_state_dict,
    simple_cnn,
};
use tiny_tensor::Tensor;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-nn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every value of a module's state, by name.
fn values(m: &dyn Module) -> Vec<(String, Vec<f32>)> {
    m.state_dict().into_iter().map(|(n, t)| (n, t.to_vec())).collect()
}

/// Writes raw safetensors entries `(name, dtype, shape, little-endian bytes)`, as another library would.
fn write_raw(path: &Path, entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView<'_>)> =
        entries.iter().map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn round_trip_restores_parameters_and_buffers() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("resnet.safetensors");
    let a = resnet18(10).unwrap();
    // Make the running statistics and the batch counters non-trivial.
    a.forward(&Tensor::ones(&[2, 3, 32, 32])).unwrap();
    save_state_dict(&a, &path).unwrap();
    let b = resnet18(10).unwrap();
    let report = load_state_dict_file(&b, &path, true).unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(values(&a), values(&b));
    let (tensors, meta) = load_tensors(&path).unwrap();
    // torchvision's resnet18 state_dict: 62 parameters and 20 batchnorms with three buffers each.
    assert_eq!(tensors.len(), 62 + 60);
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "resnet.safetensors")
        .collect();
    assert!(leftovers.is_empty(), "no temporary files are left behind");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn batch_counters_are_saved_as_int64_like_pytorchs() {
    let dir = temp_dir("int64");
    let path = dir.join("resnet.safetensors");
    let m = resnet18(10).unwrap();
    for _ in 0..3 {
        m.forward(&Tensor::ones(&[2, 3, 32, 32])).unwrap();
    }
    save_state_dict(&m, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let counter = st.tensor("layer3.1.bn2.num_batches_tracked").unwrap();
    assert_eq!((counter.dtype(), counter.shape()), (Dtype::I64, &[][..]));
    assert_eq!(counter.data(), 3i64.to_le_bytes());
    assert_eq!(st.tensor("conv1.weight").unwrap().dtype(), Dtype::F32);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn conv_weights_load_in_pytorchs_order_whatever_tinys_memory_order() {
    // A [f, c, kh, kw] weight as PyTorch lays it out; tiny keeps conv weights channels-last in memory.
    let dir = temp_dir("order");
    let path = dir.join("cnn.safetensors");
    let m = simple_cnn(10).unwrap();
    let mut state = m.state_dict();
    let ramp: Vec<f32> = (0..16 * 3 * 9).map(|i| i as f32).collect();
    state[0].1 = Tensor::from_vec(ramp.clone(), &[16, 3, 3, 3]).unwrap();
    tiny_nn::save_tensors(&path, &state, &HashMap::new()).unwrap();
    let fresh = simple_cnn(10).unwrap();
    load_state_dict_file(&fresh, &path, true).unwrap();
    let w = fresh.named_parameters()[0].1.clone();
    assert_eq!(w.to_vec(), ramp, "to_vec reads in the logical [f, c, kh, kw] order");
    // Element [f=1, c=2, kh=0, kw=1] is at 1*27 + 2*9 + 0*3 + 1 in PyTorch's order.
    let picked = w.narrow(0, 1, 1).unwrap().narrow(1, 2, 1).unwrap().narrow(3, 1, 1).unwrap().narrow(2, 0, 1).unwrap();
    assert_eq!(picked.item().unwrap(), 46.0);
    // And it saves back in PyTorch's order.
    save_state_dict(&fresh, &path).unwrap();
    let (back, _) = load_tensors(&path).unwrap();
    assert_eq!(back.iter().find(|(n, _)| n == "0.w").unwrap().1.to_vec(), ramp);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn other_dtypes_are_converted_to_f32() {
    let dir = temp_dir("dtypes");
    let path = dir.join("mixed.safetensors");
    let f16 = [0x3c00u16, 0xc000, 0x3555].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16 = [1.5f32, -3.0].iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
    let f64s = [0.1f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(
        &path,
        &[
            ("a", Dtype::F16, vec![3], f16),
            ("b", Dtype::BF16, vec![2], bf16),
            ("c", Dtype::F64, vec![2], f64s),
            ("d", Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
        ],
    );
    let (t, _) = load_tensors(&path).unwrap();
    let by: HashMap<_, _> = t.into_iter().map(|(n, t)| (n, (t.shape().to_vec(), t.to_vec()))).collect();
    assert_eq!(by["a"], (vec![3], vec![1.0, -2.0, 0.333_251_95]));
    assert_eq!(by["b"], (vec![2], vec![1.5, -3.0]));
    assert_eq!(by["c"], (vec![2], vec![0.1, 2.0]));
    assert_eq!(by["d"], (vec![], vec![7.0]));
    // Booleans and 8-bit floats are not converted: one error names the file and each such tensor.
    write_raw(
        &path,
        &[
            ("ok", Dtype::F32, vec![1], 1f32.to_le_bytes().to_vec()),
            ("mask", Dtype::BOOL, vec![2], vec![1, 0]),
            ("q", Dtype::F8_E4M3, vec![1], vec![0x38]),
        ],
    );
    let err = load_tensors(&path).unwrap_err();
    assert!(matches!(err, NnError::UnsupportedDtype { .. }));
    let msg = err.to_string();
    assert!(msg.contains("mixed.safetensors") && msg.contains("mask (BOOL)") && msg.contains("q (F8_E4M3)"), "{msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_state_that_does_not_fit_names_every_key_at_fault_and_changes_nothing() {
    let dir = temp_dir("mismatch");
    let path = dir.join("cnn.safetensors");
    let mut state = simple_cnn(10).unwrap().state_dict();
    state.retain(|(n, _)| n != "1.b" && n != "2.w");
    state.push(("head.w".into(), Tensor::zeros(&[2])));
    tiny_nn::save_tensors(&path, &state, &HashMap::new()).unwrap();
    let five = simple_cnn(5).unwrap();
    let before = values(&five);
    let err = load_state_dict_file(&five, &path, true).unwrap_err();
    let NnError::StateDict(m) = &err else { panic!("{err}") };
    assert_eq!(m.missing, ["1.b", "2.w"]);
    assert_eq!(m.unexpected, ["head.w"]);
    assert_eq!(m.mismatched.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["5.b", "5.w"]);
    assert_eq!(
        err.to_string(),
        format!(
            "{} does not fit the module: 2 missing keys (1.b, 2.w); 1 unexpected key (head.w); 2 keys of another \
             shape (5.b: [10] in the state, [5] in the module; 5.w: [10, 128] in the state, [5, 128] in the module)",
            path.display()
        )
    );
    assert_eq!(values(&five), before, "nothing was loaded");
    // Non-strict: missing and unexpected keys are reported, but a shape mismatch is still an error, as in
    // PyTorch, and still nothing is written.
    assert!(matches!(load_state_dict_file(&five, &path, false), Err(NnError::StateDict(_))));
    assert_eq!(values(&five), before);
    let ten = simple_cnn(10).unwrap();
    let report = load_state_dict_file(&ten, &path, false).unwrap();
    assert_eq!(report.missing_keys, ["1.b", "2.w"]);
    assert_eq!(report.unexpected_keys, ["head.w"]);
    let err = load_state_dict_file(&resnet18(10).unwrap(), &path, true).unwrap_err();
    // Batchnorm counters may be absent (see below); the other 62 + 40 keys are named.
    let msg = err.to_string();
    assert!(
        msg.contains("102 missing keys (bn1.bias, bn1.running_mean,") && msg.contains("9 unexpected keys"),
        "{msg}"
    );
    std::fs::write(dir.join("junk.safetensors"), b"not a safetensors file").unwrap();
    assert!(matches!(load_state_dict_file(&five, &dir.join("junk.safetensors"), true), Err(NnError::Format { .. })));
    assert!(matches!(load_state_dict_file(&five, &dir.join("absent.safetensors"), true), Err(NnError::Io { .. })));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_batch_counter_is_no_mismatch_as_in_pytorch() {
    // PyTorch's batchnorm fills in num_batches_tracked when an older state_dict lacks it.
    let m = resnet18(10).unwrap();
    let mut state = m.state_dict();
    state.retain(|(n, _)| !n.ends_with("num_batches_tracked"));
    assert_eq!(load_state_dict(&resnet18(10).unwrap(), state, true).unwrap(), Default::default());
}

#[test]
fn a_pretrained_body_loads_under_a_fresh_head_of_another_size() {
    let dir = temp_dir("pretrained");
    let path = dir.join("imagenet.safetensors");
    let imagenet = resnet18(1000).unwrap();
    imagenet.forward(&Tensor::ones(&[2, 3, 32, 32])).unwrap();
    save_state_dict(&imagenet, &path).unwrap();
    let ten = resnet18(10).unwrap();
    let head_before: Vec<Vec<f32>> = ten.fc.parameters().iter().map(|p| p.to_vec()).collect();
    // A plain strict load refuses the 1,000-class head.
    assert!(load_state_dict_file(&ten, &path, true).is_err());
    let report = load_pretrained(&ten, &path, "fc").unwrap();
    assert_eq!(report.missing_keys, ["fc.bias", "fc.weight"]);
    assert!(report.unexpected_keys.is_empty());
    let (got, want) = (values(&ten), values(&imagenet));
    for ((name, v), (_, w)) in got.iter().zip(&want) {
        if !name.starts_with("fc.") {
            assert_eq!(v, w, "{name}");
        }
    }
    assert_eq!(ten.fc.parameters().iter().map(|p| p.to_vec()).collect::<Vec<_>>(), head_before, "fresh head kept");
    // With a head of the same size, everything loads.
    let same = resnet18(1000).unwrap();
    assert_eq!(load_pretrained(&same, &path, "fc").unwrap(), Default::default());
    assert_eq!(values(&same), values(&imagenet));
    // Outside the head, every key must still fit.
    let err = load_pretrained(&simple_cnn(10).unwrap(), &path, "5").unwrap_err();
    assert!(matches!(err, NnError::StateDict(_)), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn temporary_files_of_dead_writers_are_removed_and_live_ones_kept() {
    // A `kill -9` during a save used to leave its `.NAME.tmp-PID` (20 MB for simple_cnn's checkpoints) forever.
    let dir = temp_dir("stale");
    let path = dir.join("ck.safetensors");
    let dead = dir.join(".ck.safetensors.tmp-4294967295"); // above any Linux pid_max: no such process
    let live = dir.join(format!(".ck.safetensors.tmp-{}", 1)); // init always runs
    let other = dir.join(".other.safetensors.tmp-4294967295"); // another file's: not ours to remove
    for f in [&dead, &live, &other] {
        std::fs::write(f, b"partial").unwrap();
    }
    save_state_dict(&simple_cnn(10).unwrap(), &path).unwrap();
    if cfg!(target_os = "linux") {
        assert!(!dead.exists(), "a dead writer's temporary file is removed");
    }
    assert!(live.exists() && other.exists(), "a live writer's, and another file's, are kept");
    assert!(load_state_dict_file(&simple_cnn(10).unwrap(), &path, true).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}
