//! Fused cross-entropy on the CPU: per-row logsumexp and loss, and the `softmax - q` backward, with label smoothing.

use super::LossKernels;
use crate::cpu::Cpu;
use crate::layout::Layout;
use crate::storage::Indices;
use crate::{Result, Storage, Tensor};

impl LossKernels for Cpu {
    fn log_softmax_nll(&self, x: &Tensor, targets: &[u32], eps: f32) -> Result<(Tensor, Tensor, Indices)> {
        let s = x.storage();
        let (off, len) = (x.layout().offset, x.layout().numel());
        let (loss, lse) = log_softmax_nll(&s.host()[off..off + len], x.shape()[1], targets, eps);
        let n = targets.len();
        Ok((vector(loss, n), vector(lse, n), Indices::Cpu(targets.to_vec())))
    }

    fn log_softmax_nll_backward(
        &self,
        dloss: &Tensor,
        x: &Tensor,
        lse: &Tensor,
        targets: &Indices,
        eps: f32,
    ) -> Result<Tensor> {
        let targets = targets.on_host("log_softmax_nll")?;
        let (sd, sx, sl) = (dloss.storage(), x.storage(), lse.storage());
        let (n, c) = (x.shape()[0], x.shape()[1]);
        // Exactly the tensors' elements: a view may have more of its storage after its last row.
        let (od, ox, ol) = (dloss.layout().offset, x.layout().offset, lse.layout().offset);
        let (ds, xs, ls) = (&sd.host()[od..od + n], &sx.host()[ox..ox + n * c], &sl.host()[ol..ol + n]);
        let dx = log_softmax_nll_backward(ds, xs, ls, c, targets, eps);
        Ok(Tensor::from_storage(Storage::Cpu(dx), Layout::contiguous(x.shape())))
    }
}

/// A host vector of `n` values.
fn vector(data: Vec<f32>, n: usize) -> Tensor {
    Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(&[n]))
}

/// For each row `i` of contiguous `[n, c]` logits: `lse[i] = m + ln(sum_j exp(x[i, j] - m))` with `m` the
/// row's maximum, and `loss[i] = (1 - eps) * (lse[i] - x[i, targets[i]]) + eps * mean_j(lse[i] - x[i, j])`,
/// the cross entropy against `q = (1 - eps) * one_hot + eps / c`. Returns `(loss, lse)`.
///
/// With `eps == 0` the loss is exactly `lse[i] - x[i, targets[i]]`: the smoothing term is not computed, so
/// it cannot change a single bit (nor turn a `-inf` logit away from the target into NaN).
fn log_softmax_nll(x: &[f32], c: usize, targets: &[u32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let (mut loss, mut lse) = (Vec::with_capacity(targets.len()), Vec::with_capacity(targets.len()));
    for (row, &t) in x.chunks_exact(c.max(1)).zip(targets) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
        let l = m + log_sum;
        lse.push(l);
        let nll = l - row[t as usize];
        loss.push(if eps == 0.0 {
            nll
        } else {
            // mean_j(lse - x_j) = ln(sum) + mean_j(m - x_j): every term is >= 0, so nothing cancels even
            // for logits of +-1e4.
            let gap = row.iter().map(|&v| m - v).sum::<f32>() / c as f32;
            (1.0 - eps) * nll + eps * (log_sum + gap)
        });
    }
    (loss, lse)
}

/// `dx[i, j] = dloss[i] * (exp(x[i, j] - lse[i]) - q[i, j])` over contiguous `[n, c]`, with
/// `q = (1 - eps) * one_hot(targets) + eps / c`: `eps / c` is taken off every element and `1 - eps` more off
/// the target's, which for `eps == 0` is bit for bit the unsmoothed `dloss * softmax - dloss * one_hot`.
fn log_softmax_nll_backward(dloss: &[f32], x: &[f32], lse: &[f32], c: usize, targets: &[u32], eps: f32) -> Vec<f32> {
    let (hit, off) = (1.0 - eps, eps / c.max(1) as f32);
    let mut dx = vec![0.0; x.len()];
    let rows = dx.chunks_exact_mut(c.max(1)).zip(x.chunks_exact(c.max(1)));
    for (i, (d, row)) in rows.enumerate() {
        for (dj, &v) in d.iter_mut().zip(row) {
            *dj = dloss[i] * ((v - lse[i]).exp() - off);
        }
        d[targets[i] as usize] -= dloss[i] * hit;
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels as they were before label smoothing, to hold `eps == 0` to them bit for bit.
    fn unsmoothed(x: &[f32], c: usize, targets: &[u32], dloss: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mut loss, mut lse, mut dx) = (vec![], vec![], vec![0.0; x.len()]);
        for (i, (row, &t)) in x.chunks_exact(c).zip(targets).enumerate() {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let l = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
            lse.push(l);
            loss.push(l - row[t as usize]);
            for (j, &v) in row.iter().enumerate() {
                dx[i * c + j] = dloss[i] * (v - l).exp();
            }
            dx[i * c + t as usize] -= dloss[i];
        }
        (loss, lse, dx)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn eps_zero_is_the_unsmoothed_cross_entropy_bit_for_bit() {
        let c = 7;
        let x: Vec<f32> = (0..5 * c).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.731).collect();
        let mut x_extreme = x.clone();
        x_extreme[3] = 1e4;
        x_extreme[9] = -1e4;
        x_extreme[20] = f32::NEG_INFINITY;
        let targets = [0u32, 6, 3, 3, 1];
        let dloss = [0.5f32, -1.25, 2.0, 1e-3, -0.0];
        for x in [x, x_extreme] {
            let (want_loss, want_lse, want_dx) = unsmoothed(&x, c, &targets, &dloss);
            let (loss, lse) = log_softmax_nll(&x, c, &targets, 0.0);
            let dx = log_softmax_nll_backward(&dloss, &x, &lse, c, &targets, 0.0);
            assert_eq!(bits(&loss), bits(&want_loss));
            assert_eq!(bits(&lse), bits(&want_lse));
            assert_eq!(bits(&dx), bits(&want_dx));
        }
    }

    #[test]
    fn smoothing_is_the_cross_entropy_against_the_smoothed_target() {
        // -sum_j q_j log p_j with q = (1 - eps) one_hot + eps / c, in f64.
        let (c, eps) = (4usize, 0.3f32);
        let x = [2.0f32, -1.0, 0.5, 1e3, -3.0, 0.0, 4.0, 1.0];
        let targets = [1u32, 2];
        let (loss, lse) = log_softmax_nll(&x, c, &targets, eps);
        let dx = log_softmax_nll_backward(&[1.0, 1.0], &x, &lse, c, &targets, eps);
        for (i, row) in x.chunks_exact(c).enumerate() {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let l = m + row.iter().map(|&v| (f64::from(v) - m).exp()).sum::<f64>().ln();
            let q = |j: usize| {
                f64::from(eps) / c as f64 + if j == targets[i] as usize { 1.0 - f64::from(eps) } else { 0.0 }
            };
            let want: f64 = row.iter().enumerate().map(|(j, &v)| q(j) * (l - f64::from(v))).sum();
            assert!((f64::from(loss[i]) - want).abs() <= 1e-6 * want.abs().max(1.0), "row {i}: {} vs {want}", loss[i]);
            for (j, &v) in row.iter().enumerate() {
                let want = (f64::from(v) - l).exp() - q(j);
                assert!((f64::from(dx[i * c + j]) - want).abs() <= 1e-6, "dx[{i}, {j}]: {} vs {want}", dx[i * c + j]);
            }
        }
    }
}
