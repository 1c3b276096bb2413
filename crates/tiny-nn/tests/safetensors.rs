//! Saving and loading modules as safetensors: round trips, mismatches, and no half-written files.

use std::path::PathBuf;

use tiny_nn::{Module, NnError, load_module, load_tensors, resnet18, save_module, simple_cnn};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-nn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_restores_parameters_and_buffers() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("resnet.safetensors");
    let a = resnet18(10).unwrap();
    // Make the running statistics non-trivial.
    a.forward(&tiny_tensor::Tensor::ones(&[2, 3, 32, 32])).unwrap();
    save_module(&a, &path).unwrap();
    let b = resnet18(10).unwrap();
    load_module(&b, &path).unwrap();
    for ((na, ta), (nb, tb)) in a.state_dict().into_iter().zip(b.state_dict()) {
        assert_eq!(na, nb);
        assert_eq!(ta.to_vec(), tb.to_vec(), "{na}");
    }
    let (tensors, meta) = load_tensors(&path).unwrap();
    assert_eq!(tensors.len(), 62 + 40);
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
fn a_file_that_does_not_fit_names_the_first_mismatch_and_changes_nothing() {
    let dir = temp_dir("mismatch");
    let path = dir.join("cnn.safetensors");
    save_module(&simple_cnn(10).unwrap(), &path).unwrap();
    let five = simple_cnn(5).unwrap();
    let before = five.parameters()[0].to_vec();
    let err = load_module(&five, &path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state does not match the module: 5.w has shape [10, 128] in the file but [5, 128] in the module"
    );
    assert_eq!(five.parameters()[0].to_vec(), before, "nothing was loaded");
    let err = load_module(&resnet18(10).unwrap(), &path).unwrap_err();
    assert!(err.to_string().contains("missing tensor stem.0.weight"), "{err}");
    std::fs::write(dir.join("junk.safetensors"), b"not a safetensors file").unwrap();
    assert!(matches!(load_module(&five, &dir.join("junk.safetensors")), Err(NnError::Format { .. })));
    assert!(matches!(load_module(&five, &dir.join("absent.safetensors")), Err(NnError::Io { .. })));
    std::fs::remove_dir_all(dir).unwrap();
}
