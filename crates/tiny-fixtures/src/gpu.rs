//! The one rule for GPU tests: run where a GPU opens, skip (and say so) where none does, fail under `TINY_REQUIRE_CUDA=1`.

/// The device a GPU test runs on: the value `opened` holds when opening the GPU succeeded. Otherwise the
/// test prints that it is skipped, with the reason, and gets `None`; but with `TINY_REQUIRE_CUDA=1` in the
/// environment it panics, naming the test and the reason, so that a machine with a GPU cannot pass a device
/// suite by skipping it (a missing library, a failed kernel load or a cuBLAS error all say why here).
///
/// ```
/// let opened: Result<u8, &str> = Err("no libcuda");
/// if std::env::var("TINY_REQUIRE_CUDA").as_deref() != Ok("1") {
///     assert_eq!(tiny_fixtures::gpu_or_skip("doc", opened), None);
/// }
/// assert_eq!(tiny_fixtures::gpu_or_skip("doc", Ok::<u8, &str>(0)), Some(0));
/// ```
pub fn gpu_or_skip<D, E: std::fmt::Display>(test: &str, opened: Result<D, E>) -> Option<D> {
    match opened {
        Ok(device) => Some(device),
        Err(reason) if required() => panic!("{test}: TINY_REQUIRE_CUDA=1, but no GPU could be opened: {reason}"),
        Err(reason) => {
            eprintln!("{test}: skipped, no usable CUDA GPU ({reason})");
            None
        }
    }
}

/// Whether `TINY_REQUIRE_CUDA=1` is set.
fn required() -> bool {
    std::env::var("TINY_REQUIRE_CUDA").as_deref() == Ok("1")
}
