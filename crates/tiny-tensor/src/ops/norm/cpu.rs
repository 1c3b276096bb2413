//! Fused batch normalisation over `[outer, c, inner]` views: statistics, normalisation and backward
//! each in one or two passes instead of a chain of elementwise ops.
//!
//! Channels-last data is the case `inner == 1`: loops then run across the channels of a row, which
//! vectorises; NCHW data runs along each channel's `inner` values instead.

use super::{NormKernels, RunningStats};
use crate::cpu::{Cpu, alloc};
use crate::{Result, Storage, Tensor};

impl NormKernels for Cpu {
    fn batch_norm_stats(
        &self,
        x: &Tensor,
        dims: (usize, usize, usize),
        w: &Tensor,
        b: &Tensor,
        eps: f32,
        running: Option<RunningStats<'_>>,
        unbias: f32,
    ) -> Result<[Storage; 5]> {
        let c = dims.1;
        let (m, v) = stats(&x.storage().host()[x.layout().offset..], dims);
        let (sw, sb) = (w.storage(), b.storage());
        let (ws, bs) = (&sw.host()[w.layout().offset..][..c], &sb.host()[b.layout().offset..][..c]);
        let (invstd, scale, shift) = finalize(&m, &v, ws, bs, eps);
        if let Some(r) = running {
            for (stat, batch, factor) in [(r.mean, &m, 1.0), (r.var, &v, unbias)] {
                let mut st = stat.storage_mut();
                update_running(&mut st.host_mut()[stat.layout().offset..][..c], batch, factor, r.momentum);
            }
            if let Some(n) = r.num_batches_tracked {
                n.storage_mut().host_mut()[n.layout().offset] += 1.0;
            }
        }
        Ok([m, v, invstd, scale, shift].map(Storage::Cpu))
    }

    fn batch_norm_affine(
        &self,
        x: &Tensor,
        dims: (usize, usize, usize),
        scale: &Tensor,
        shift: &Tensor,
    ) -> Result<Storage> {
        let (sx, sc, sh) = (x.storage(), scale.storage(), shift.storage());
        let (sc, sh) = (&sc.host()[scale.layout().offset..], &sh.host()[shift.layout().offset..]);
        Ok(Storage::Cpu(affine(&sx.host()[x.layout().offset..], dims, sc, sh)))
    }

    fn batch_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        dims: (usize, usize, usize),
        mean: &Tensor,
        invstd: &Tensor,
        w: &Tensor,
    ) -> Result<(Storage, Storage, Storage)> {
        let (sx, sd) = (x.storage(), dy.storage());
        let (sm, si, sw) = (mean.storage(), invstd.storage(), w.storage());
        let (dx, dw, db) = backward(
            &sd.host()[dy.layout().offset..],
            &sx.host()[x.layout().offset..],
            dims,
            &sm.host()[mean.layout().offset..],
            &si.host()[invstd.layout().offset..],
            &sw.host()[w.layout().offset..],
        );
        Ok((Storage::Cpu(dx), Storage::Cpu(dw), Storage::Cpu(db)))
    }
}

/// Rows summed in f32 before folding into the f64 totals, so long reductions stay exact.
const BLOCK: usize = 256;

/// Per-channel sums of `f(channel, value)` over `x` seen as `[outer, c, inner]`.
fn channel_sums(x: &[f32], (outer, c, inner): (usize, usize, usize), f: impl Fn(usize, f32) -> f32) -> Vec<f64> {
    let mut total = vec![0.0f64; c];
    if c * inner == 0 {
        return total; // no values: every sum is zero (and a zero-sized chunk would not split)
    }
    if inner == 1 {
        let mut part = vec![0.0f32; c];
        for (r, row) in x.chunks_exact(c).take(outer).enumerate() {
            for (ch, (p, &v)) in part.iter_mut().zip(row).enumerate() {
                *p += f(ch, v);
            }
            if (r + 1) % BLOCK == 0 || r + 1 == outer {
                total.iter_mut().zip(&mut part).for_each(|(t, p)| *t += std::mem::take(p) as f64);
            }
        }
    } else {
        for row in x.chunks_exact(c * inner).take(outer) {
            for (ch, run) in row.chunks_exact(inner).enumerate() {
                total[ch] += run.iter().map(|&v| f(ch, v) as f64).sum::<f64>();
            }
        }
    }
    total
}

/// The per-channel mean and biased variance of `x` seen as `[outer, c, inner]` (two passes).
fn stats(x: &[f32], dims: (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let n = (dims.0 * dims.2).max(1) as f64;
    let mean: Vec<f32> = channel_sums(x, dims, |_, v| v).iter().map(|s| (s / n) as f32).collect();
    let var = channel_sums(x, dims, |ch, v| (v - mean[ch]) * (v - mean[ch])).iter().map(|s| (s / n) as f32).collect();
    (mean, var)
}

/// Per channel, `invstd = 1 / sqrt(var + eps)` and the affine map's `scale = w * invstd` and
/// `shift = b - mean * scale`.
fn finalize(mean: &[f32], var: &[f32], w: &[f32], b: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let invstd: Vec<f32> = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f32> = w.iter().zip(&invstd).map(|(&w, &i)| w * i).collect();
    let shift = b.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
    (invstd, scale, shift)
}

/// In place, `running = (1 - momentum) * running + momentum * factor * batch`.
fn update_running(running: &mut [f32], batch: &[f32], factor: f32, momentum: f32) {
    for (r, &v) in running.iter_mut().zip(batch) {
        *r = *r * (1.0 - momentum) + v * factor * momentum;
    }
}

/// `y = x * scale[c] + shift[c]`: normalise, scale and shift folded into one affine map per channel.
fn affine(x: &[f32], (outer, c, inner): (usize, usize, usize), scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = alloc::take(x.len());
    if c * inner == 0 {
        return y; // an empty tensor
    }
    for (yr, xr) in y.chunks_exact_mut(c * inner).zip(x.chunks_exact(c * inner)).take(outer) {
        if inner == 1 {
            for (((yv, &xv), &s), &t) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
                *yv = xv * s + t;
            }
        } else {
            for (ch, (yc, xc)) in yr.chunks_exact_mut(inner).zip(xr.chunks_exact(inner)).enumerate() {
                let (s, t) = (scale[ch], shift[ch]);
                yc.iter_mut().zip(xc).for_each(|(yv, &xv)| *yv = xv * s + t);
            }
        }
    }
    y
}

/// Per-channel sums of `f(channel, dy, x)` over two tensors of one `[outer, c, inner]` layout.
fn paired_sums(
    dy: &[f32],
    x: &[f32],
    (outer, c, inner): (usize, usize, usize),
    f: impl Fn(usize, f32, f32) -> f32,
) -> Vec<f32> {
    if c * inner == 0 {
        return vec![0.0; c]; // no values: every sum is zero
    }
    let mut total = vec![0.0f64; c];
    let mut part = vec![0.0f32; c];
    for (r, (dyr, xr)) in dy.chunks_exact(c * inner).zip(x.chunks_exact(c * inner)).take(outer).enumerate() {
        if inner == 1 {
            for (ch, ((p, &g), &xv)) in part.iter_mut().zip(dyr).zip(xr).enumerate() {
                *p += f(ch, g, xv);
            }
        } else {
            for ch in 0..c {
                let (gs, xs) = (&dyr[ch * inner..(ch + 1) * inner], &xr[ch * inner..(ch + 1) * inner]);
                part[ch] += gs.iter().zip(xs).map(|(&g, &xv)| f(ch, g, xv)).sum::<f32>();
            }
        }
        if (r + 1) % BLOCK == 0 || r + 1 == outer {
            total.iter_mut().zip(&mut part).for_each(|(t, p)| *t += std::mem::take(p) as f64);
        }
    }
    total.iter().map(|&t| t as f32).collect()
}

/// The backward of training-mode batchnorm, with `xhat = (x - mean) * invstd`:
/// `db = sum(dy)`, `dw = sum(dy * xhat)`, `dx = w * invstd * (dy - db / n - xhat * dw / n)`.
/// `dy` and `x` share one `[outer, c, inner]` layout; returns `(dx, dw, db)`.
fn backward(
    dy: &[f32],
    x: &[f32],
    dims: (usize, usize, usize),
    mean: &[f32],
    invstd: &[f32],
    w: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (outer, c, inner) = dims;
    let n = (outer * inner).max(1) as f32;
    let db = paired_sums(dy, x, dims, |_, g, _| g);
    let dw = paired_sums(dy, x, dims, |ch, g, xv| g * (xv - mean[ch]) * invstd[ch]);
    let k0: Vec<f32> = (0..c).map(|ch| w[ch] * invstd[ch]).collect();
    let (mdb, mdw): (Vec<f32>, Vec<f32>) = (db.iter().map(|v| v / n).collect(), dw.iter().map(|v| v / n).collect());
    let mut dx = alloc::take(x.len());
    if c * inner == 0 {
        return (dx, dw, db);
    }
    for ((dxr, dyr), xr) in
        dx.chunks_exact_mut(c * inner).zip(dy.chunks_exact(c * inner)).zip(x.chunks_exact(c * inner))
    {
        if inner == 1 {
            for ch in 0..c {
                let xhat = (xr[ch] - mean[ch]) * invstd[ch];
                dxr[ch] = k0[ch] * (dyr[ch] - mdb[ch] - xhat * mdw[ch]);
            }
        } else {
            for ch in 0..c {
                for i in ch * inner..(ch + 1) * inner {
                    let xhat = (xr[i] - mean[ch]) * invstd[ch];
                    dxr[i] = k0[ch] * (dyr[i] - mdb[ch] - xhat * mdw[ch]);
                }
            }
        }
    }
    (dx, dw, db)
}
