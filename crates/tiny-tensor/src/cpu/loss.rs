//! Fused cross-entropy on the CPU: per-row logsumexp and loss, and the `softmax - one_hot` backward.

/// For each row `i` of contiguous `[n, c]` logits: `lse[i] = m + ln(sum_j exp(x[i, j] - m))` with `m` the
/// row's maximum, and `loss[i] = lse[i] - x[i, targets[i]]`. Returns `(loss, lse)`.
pub(crate) fn log_softmax_nll(x: &[f32], c: usize, targets: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let (mut loss, mut lse) = (Vec::with_capacity(targets.len()), Vec::with_capacity(targets.len()));
    for (row, &t) in x.chunks_exact(c.max(1)).zip(targets) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let l = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
        lse.push(l);
        loss.push(l - row[t as usize]);
    }
    (loss, lse)
}

/// `dx[i, j] = dloss[i] * (exp(x[i, j] - lse[i]) - [j == targets[i]])` over contiguous `[n, c]`.
pub(crate) fn log_softmax_nll_backward(dloss: &[f32], x: &[f32], lse: &[f32], c: usize, targets: &[u32]) -> Vec<f32> {
    let mut dx = vec![0.0; x.len()];
    let rows = dx.chunks_exact_mut(c.max(1)).zip(x.chunks_exact(c.max(1)));
    for (i, (d, row)) in rows.enumerate() {
        for (dj, &v) in d.iter_mut().zip(row) {
            *dj = dloss[i] * (v - lse[i]).exp();
        }
        d[targets[i] as usize] -= dloss[i];
    }
    dx
}
