//! Splitting a CPU kernel's work into one contiguous part per thread, for kernels outside GEMM.

use std::ops::Range;

use super::num_threads;

/// Below this many elements of work a kernel runs on the calling thread: waking a second thread
/// costs more than it saves.
pub(crate) const MIN_PARALLEL: usize = 1 << 15;

/// Splits `0..count` into one contiguous range per thread, or a single range when the work
/// (`count * unit` elements) is too small to share.
pub(crate) fn ranges(count: usize, unit: usize) -> Vec<Range<usize>> {
    let parts = if count.saturating_mul(unit) < MIN_PARALLEL { 1 } else { num_threads().clamp(1, count.max(1)) };
    (0..parts).map(|t| count * t / parts..count * (t + 1) / parts).collect()
}

/// Cuts `data` into consecutive pieces of `r.len() * unit` elements, one per range.
pub(crate) fn split<'a, T>(mut data: &'a mut [T], ranges: &[Range<usize>], unit: usize) -> Vec<&'a mut [T]> {
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        let at = (r.len() * unit).min(data.len());
        let (head, tail) = std::mem::take(&mut data).split_at_mut(at);
        parts.push(head);
        data = tail;
    }
    parts
}

/// Runs `work(range, part)` for every range and its part, each on a thread of its own when there are
/// several, and returns the results in order.
pub(crate) fn each<P: Send, R: Send>(
    ranges: &[Range<usize>],
    parts: Vec<P>,
    work: impl Fn(Range<usize>, P) -> R + Sync,
) -> Vec<R> {
    if ranges.len() <= 1 {
        return ranges.iter().cloned().zip(parts).map(|(r, p)| work(r, p)).collect();
    }
    let mut results: Vec<Option<R>> = ranges.iter().map(|_| None).collect();
    rayon::scope(|s| {
        for ((slot, r), p) in results.iter_mut().zip(ranges.iter().cloned()).zip(parts) {
            let work = &work;
            s.spawn(move |_| *slot = Some(work(r, p)));
        }
    });
    results.into_iter().flatten().collect()
}
