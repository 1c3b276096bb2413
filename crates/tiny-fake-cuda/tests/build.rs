//! Builds the fake libraries into a temporary folder and checks the library and its three links; skipped without g++.

use std::path::Path;

#[test]
fn builds_the_library_and_its_links() {
    let out = std::env::temp_dir().join(format!("tiny-fake-cuda-test-{}", std::process::id()));
    // A stale file under one of the link names is replaced, as a rerun of `cargo xtask fake-cuda` needs.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("libcuda.so"), "stale").unwrap();
    let built = tiny_fake_cuda::build(&out);
    let lib = match built {
        Ok(lib) => lib,
        Err(tiny_fake_cuda::Error::NoCompiler(e)) => {
            eprintln!("builds_the_library_and_its_links: skipped, g++ not found ({e})");
            let _ = std::fs::remove_dir_all(&out);
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(lib, out.join(tiny_fake_cuda::LIBRARY));
    assert!(std::fs::metadata(&lib).unwrap().len() > 0, "{} is empty", lib.display());
    for name in tiny_fake_cuda::LINKS {
        let link = out.join(name);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(tiny_fake_cuda::LIBRARY), "{name}");
        // The link resolves to the library itself.
        assert_eq!(std::fs::canonicalize(&link).unwrap(), std::fs::canonicalize(&lib).unwrap(), "{name}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_folder_that_cannot_be_made_is_named_in_the_error() {
    // A regular file stands where the output folder's parent should be.
    let blocker = std::env::temp_dir().join(format!("tiny-fake-cuda-blocker-{}", std::process::id()));
    std::fs::write(&blocker, "").unwrap();
    let err = tiny_fake_cuda::build(&blocker.join("out")).unwrap_err();
    std::fs::remove_file(&blocker).unwrap();
    assert!(matches!(err, tiny_fake_cuda::Error::Io { what: "creating", .. }), "{err:?}");
    assert!(err.to_string().contains("tiny-fake-cuda-blocker"), "{err}");
}
