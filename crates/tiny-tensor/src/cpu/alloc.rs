//! A pool of freed CPU buffers, reused by size: a training step allocates the same sizes every batch,
//! so recycling them avoids the page faults and zeroing of fresh memory (the idea of PyTorch's caching
//! allocator, on the host).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Buffers smaller than this are left to the system allocator, which handles them well.
const MIN_FLOATS: usize = 16 * 1024;
/// The most memory the pool keeps idle.
const MAX_POOLED_BYTES: usize = 1 << 30;

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| Mutex::new(Pool::default()));

fn reuse(n: usize) -> Option<Vec<f32>> {
    if n < MIN_FLOATS {
        return None;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let v = pool.free.get_mut(&n)?.pop()?;
    pool.bytes -= n * 4;
    Some(v)
}

/// A buffer of `n` floats with unspecified (but initialised) contents, for kernels that overwrite
/// every element.
pub(crate) fn take(n: usize) -> Vec<f32> {
    reuse(n).unwrap_or_else(|| vec![0.0; n])
}

/// A buffer of `n` copies of `value`.
pub(crate) fn take_filled(n: usize, value: f32) -> Vec<f32> {
    match reuse(n) {
        Some(mut v) => {
            v.fill(value);
            v
        }
        None => vec![value; n],
    }
}

/// Returns a buffer to the pool (or to the system when the pool is full or the buffer is small).
pub(crate) fn give(v: Vec<f32>) {
    let n = v.len();
    if n < MIN_FLOATS || v.capacity() != n {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.bytes + n * 4 <= MAX_POOLED_BYTES {
        pool.bytes += n * 4;
        pool.free.entry(n).or_default().push(v);
    }
}

/// A buffer of `n` 32-bit words with unspecified contents (bf16 pairs), from the same pool as the floats.
pub(crate) fn take_words(n: usize) -> Vec<u32> {
    let mut v = std::mem::ManuallyDrop::new(take(n));
    // SAFETY: f32 and u32 have the same size and alignment and every bit pattern is valid for both, so the
    // allocation (pointer, length, capacity) is a valid Vec<u32>; the Vec<f32> is not dropped.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<u32>(), v.len(), v.capacity()) }
}

/// Returns a buffer of words to the pool (see [`take_words`]).
pub(crate) fn give_words(v: Vec<u32>) {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: as in `take_words`, the other way round.
    give(unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) });
}

/// Releases every idle buffer to the system allocator.
pub fn empty_cache() {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.free.clear();
    pool.bytes = 0;
}
