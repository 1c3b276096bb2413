//! Splitting a CPU kernel's work into one contiguous part per thread, for kernels outside GEMM.

use std::ops::Range;
use std::sync::Mutex;

use super::num_threads;

/// Below this many elements of work a kernel runs on the calling thread: waking a second thread
/// costs more than it saves.
pub(crate) const MIN_PARALLEL: usize = 1 << 15;

/// Splits `0..count` into one contiguous range per thread, or a single range when the work
/// (`count * unit` elements) is too small to share.
pub(crate) fn ranges(count: usize, unit: usize) -> Vec<Range<usize>> {
    let parts = if count.saturating_mul(unit) < MIN_PARALLEL { 1 } else { num_threads().clamp(1, count.max(1)) };
    even(count, parts)
}

/// Splits `0..count` into `parts` contiguous ranges whose lengths differ by at most one.
pub(crate) fn even(count: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts).map(|t| count * t / parts..count * (t + 1) / parts).collect()
}

/// Splits `0..weights.len()` into one contiguous range per thread holding about equal shares of the total
/// weight (a single range when the total is too small to share).
pub(crate) fn ranges_by_weight(weights: &[usize]) -> Vec<Range<usize>> {
    let total: usize = weights.iter().sum();
    split_by_weight(weights, if total < MIN_PARALLEL { 1 } else { num_threads().clamp(1, weights.len().max(1)) })
}

/// Splits `0..weights.len()` into `parts` contiguous ranges (at least one) of about equal weight, none empty
/// while there are enough items.
fn split_by_weight(weights: &[usize], parts: usize) -> Vec<Range<usize>> {
    let total: usize = weights.iter().sum();
    let parts = parts.clamp(1, weights.len().max(1));
    let (mut ranges, mut start, mut acc) = (Vec::with_capacity(parts), 0, 0);
    for (i, &w) in weights.iter().enumerate() {
        acc += w;
        // Range `t` closes once it holds its share, or when only one item per later range is left.
        let t = ranges.len();
        let (later_items, later_ranges) = (weights.len() - (i + 1), parts - (t + 1));
        let full = acc * parts >= total * (t + 1);
        if later_ranges > 0 && later_items >= later_ranges && (full || later_items == later_ranges) {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    ranges.push(start..weights.len());
    ranges
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
/// several (range `i` on the pool's worker `i`, see `pool.rs`), and returns the results in order.
pub(crate) fn each<P: Send, R: Send>(
    ranges: &[Range<usize>],
    parts: Vec<P>,
    work: impl Fn(Range<usize>, P) -> R + Sync,
) -> Vec<R> {
    if ranges.len() <= 1 {
        return ranges.iter().cloned().zip(parts).map(|(r, p)| work(r, p)).collect();
    }
    // Each range and its part, taken by whichever thread runs it.
    let jobs: Vec<Mutex<Option<_>>> = ranges.iter().cloned().zip(parts).map(|job| Mutex::new(Some(job))).collect();
    let results: Vec<Mutex<Option<R>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
    super::pool::run(jobs.len(), &|i| {
        if let Some((r, p)) = lock(&jobs[i]).take() {
            *lock(&results[i]) = Some(work(r, p));
        }
    });
    results.into_iter().filter_map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner())).collect()
}

/// Locks `m`, whatever a panic left in it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work(range)` for every range, each on a thread of its own when there are several, and returns the
/// results in order: `each` for work that needs no piece of an output.
pub(crate) fn each_range<R: Send>(ranges: &[Range<usize>], work: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    each(ranges, vec![(); ranges.len()], |r, ()| work(r))
}

/// The sum of `partials` (all of one length), or `None` when there are none: every later buffer is added into
/// the first in turn, element by element, so the sums do not depend on how the elements are shared among the
/// threads. The later buffers go back to the pool.
pub(crate) fn sum(partials: Vec<Vec<f32>>) -> Option<Vec<f32>> {
    let mut partials = partials.into_iter();
    let mut total = partials.next()?;
    let rest: Vec<Vec<f32>> = partials.collect();
    if !rest.is_empty() {
        let ranges = ranges(total.len(), rest.len() + 1);
        let pieces = split(&mut total, &ranges, 1);
        each(&ranges, pieces, |r, piece| {
            for part in &rest {
                piece.iter_mut().zip(&part[r.clone()]).for_each(|(a, b)| *a += b);
            }
        });
    }
    rest.into_iter().for_each(super::alloc::give);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::{split_by_weight, sum};

    #[test]
    fn weighted_ranges_cover_every_item_once_in_balanced_runs() {
        assert_eq!(split_by_weight(&[5, 5, 5, 5], 2), vec![0..2, 2..4]);
        // One large item first: it makes a range alone.
        assert_eq!(split_by_weight(&[100, 1, 1, 1], 2), vec![0..1, 1..4]);
        assert_eq!(split_by_weight(&[1, 1, 1, 100], 2), vec![0..3, 3..4]);
        // More parts than items, and no items.
        assert_eq!(split_by_weight(&[3, 4], 8), vec![0..1, 1..2]);
        assert_eq!(split_by_weight(&[], 2), vec![0..0]);
        // Zero weights still leave every range an item.
        assert_eq!(split_by_weight(&[0, 0, 0], 3), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn sums_add_the_partials_in_their_order() {
        assert_eq!(sum(Vec::new()), None);
        let (n, parts) = (100_000, 3);
        let partials: Vec<Vec<f32>> =
            (0..parts).map(|p| (0..n).map(|i| (i * (p + 1)) as f32 * 0.1).collect()).collect();
        let expected: Vec<f32> =
            (0..n).map(|i| partials.iter().skip(1).fold(partials[0][i], |acc, part| acc + part[i])).collect();
        assert_eq!(sum(partials).unwrap(), expected);
    }
}
