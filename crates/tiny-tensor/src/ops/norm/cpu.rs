//! Fused batch normalisation over `[outer, c, inner]` views: statistics, normalisation and backward
//! each in one or two passes instead of a chain of elementwise ops.
//!
//! Channels-last data is the case `inner == 1`: loops then run across the channels of a row, which
//! vectorises; NCHW data runs along each channel's `inner` values instead.

use super::{NormKernels, RunningStats};
use std::ops::Range;

use crate::cpu::{Cpu, alloc, parallel, simd};
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
        relu: bool,
    ) -> Result<Storage> {
        let (sx, sc, sh) = (x.storage(), scale.storage(), shift.storage());
        let (sc, sh) = (&sc.host()[scale.layout().offset..], &sh.host()[shift.layout().offset..]);
        Ok(Storage::Cpu(affine(&sx.host()[x.layout().offset..], dims, sc, sh, relu)))
    }

    fn batch_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        dims: (usize, usize, usize),
        mean: &Tensor,
        invstd: &Tensor,
        w: &Tensor,
        relu: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Storage, Storage, Storage)> {
        let (sx, sd) = (x.storage(), dy.storage());
        let (sm, si, sw) = (mean.storage(), invstd.storage(), w.storage());
        let affine = relu.map(|(scale, shift)| (scale.storage(), shift.storage(), scale, shift));
        let mask = affine.as_ref().map(|(sc, sh, scale, shift)| Mask {
            scale: &sc.host()[scale.layout().offset..],
            shift: &sh.host()[shift.layout().offset..],
        });
        let (dx, dw, db) = backward(
            &sd.host()[dy.layout().offset..],
            &sx.host()[x.layout().offset..],
            dims,
            &sm.host()[mean.layout().offset..],
            &si.host()[invstd.layout().offset..],
            &sw.host()[w.layout().offset..],
            mask,
        );
        Ok((Storage::Cpu(dx), Storage::Cpu(dw), Storage::Cpu(db)))
    }
}

/// Rows summed in f32 before folding into the f64 totals, so long reductions stay exact.
const BLOCK: usize = 256;

/// `K` per-channel sums at once over the `rows` rows of channels-last data: `add(rows, part)` adds the
/// terms of a block of rows into `part`, where sum `k` of channel `ch` is `part[k * c + ch]`. Rows are summed
/// in f32 in blocks of `BLOCK`, and the block sums are folded into f64 in order; the blocks are shared among
/// the threads, so the result is the same for any thread count.
fn row_sums<const K: usize>(rows: usize, c: usize, add: impl Fn(Range<usize>, &mut [f32]) + Sync) -> [Vec<f64>; K] {
    let mut total = std::array::from_fn(|_| vec![0.0f64; c]);
    if c == 0 {
        return total;
    }
    let blocks = rows.div_ceil(BLOCK);
    let ranges = parallel::ranges(blocks, BLOCK * c);
    let parts = parallel::each_range(&ranges, |blocks| {
        let mut sums = vec![0.0f32; blocks.len() * K * c];
        for (b, part) in blocks.zip(sums.chunks_exact_mut(K * c)) {
            add(b * BLOCK..((b + 1) * BLOCK).min(rows), part);
        }
        sums
    });
    for part in parts.iter().flat_map(|p| p.chunks_exact(K * c)) {
        for (t, p) in total.iter_mut().zip(part.chunks_exact(c)) {
            t.iter_mut().zip(p).for_each(|(t, &p)| *t += p as f64);
        }
    }
    total
}

simd::vectorized! {
/// Adds the channels-last `rows` (`c` floats each) into `sum`, and when `mean` is not empty, their squared
/// deviations from it instead.
fn add_rows(x: &[f32], rows: Range<usize>, mean: &[f32], sum: &mut [f32]) {
    let c = sum.len();
    for row in x[rows.start * c..rows.end * c].chunks_exact(c) {
        if mean.is_empty() {
            sum.iter_mut().zip(row).for_each(|(p, &v)| *p += v);
        } else {
            sum.iter_mut().zip(row).zip(mean).for_each(|((p, &v), &m)| *p += (v - m) * (v - m));
        }
    }
}
}

/// The affine map that a fused ReLU followed (`Tensor::batch_norm_relu`). The gradient passes where
/// `x * scale + shift > 0`, which is where the ReLU's output is positive: `relu_grad`'s mask, recomputed from the
/// input with the forward's own expression, so that neither the mask nor the output is kept.
#[derive(Clone, Copy)]
struct Mask<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
}

/// `g` where `x * s + t > 0`, else 0: `relu_grad` of the gradient `g` at the output `relu(x * s + t)`.
#[inline(always)]
fn masked(g: f32, x: f32, s: f32, t: f32) -> f32 {
    if x * s + t > 0.0 { g } else { 0.0 }
}

simd::vectorized! {
/// Adds `dy` and `dy * (x - mean)` of the channels-last `rows` into `part`'s two halves, `dy` masked first when a
/// ReLU followed.
fn add_paired_rows(dy: &[f32], x: &[f32], rows: Range<usize>, mean: &[f32], mask: Option<Mask<'_>>, part: &mut [f32]) {
    let c = mean.len();
    let (sum_dy, sum_dyx) = part.split_at_mut(c);
    let (dy, x) = (&dy[rows.start * c..rows.end * c], &x[rows.start * c..rows.end * c]);
    for (g, xr) in dy.chunks_exact(c).zip(x.chunks_exact(c)) {
        match mask {
            None => {
                for ((((a, b), &g), &xv), &m) in sum_dy.iter_mut().zip(sum_dyx.iter_mut()).zip(g).zip(xr).zip(mean) {
                    *a += g;
                    *b += g * (xv - m);
                }
            }
            Some(k) => {
                let sums = sum_dy.iter_mut().zip(sum_dyx.iter_mut());
                for ((((a, b), (&g, &xv)), &m), (&s, &t)) in
                    sums.zip(g.iter().zip(xr)).zip(mean).zip(k.scale[..c].iter().zip(&k.shift[..c]))
                {
                    let g = masked(g, xv, s, t);
                    *a += g;
                    *b += g * (xv - m);
                }
            }
        }
    }
}
}

/// Per-channel sums of `f(channel, value)` over `x` seen as `[outer, c, inner]` with `inner > 1`.
fn channel_sums(x: &[f32], (outer, c, inner): (usize, usize, usize), f: impl Fn(usize, f32) -> f32) -> Vec<f64> {
    let mut total = vec![0.0f64; c];
    if c * inner == 0 {
        return total; // no values: every sum is zero (and a zero-sized chunk would not split)
    }
    for row in x.chunks_exact(c * inner).take(outer) {
        for (ch, run) in row.chunks_exact(inner).enumerate() {
            total[ch] += run.iter().map(|&v| f(ch, v) as f64).sum::<f64>();
        }
    }
    total
}

/// The per-channel mean and biased variance of `x` seen as `[outer, c, inner]` (two passes).
fn stats(x: &[f32], dims: (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let (outer, c, inner) = dims;
    let n = (outer * inner).max(1) as f64;
    if inner != 1 {
        let mean: Vec<f32> = channel_sums(x, dims, |_, v| v).iter().map(|s| (s / n) as f32).collect();
        let sq = channel_sums(x, dims, |ch, v| (v - mean[ch]) * (v - mean[ch]));
        return (mean, sq.iter().map(|s| (s / n) as f32).collect());
    }
    let [sum] = row_sums::<1>(outer, c, |rows, p| add_rows(x, rows, &[], p));
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let [sq] = row_sums::<1>(outer, c, |rows, p| add_rows(x, rows, &mean, p));
    (mean, sq.iter().map(|s| (s / n) as f32).collect())
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

/// `y = x * scale[c] + shift[c]`: normalise, scale and shift folded into one affine map per channel, then
/// `max(y, 0)` when `relu` (ReLU's own expression, so the fused op gives its bits). The `outer` rows are shared among
/// the threads.
fn affine(x: &[f32], (outer, c, inner): (usize, usize, usize), scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    let mut y = alloc::take(x.len());
    let len = c * inner;
    if len == 0 {
        return y; // an empty tensor
    }
    let ranges = parallel::ranges(outer, len);
    let parts = parallel::split(&mut y, &ranges, len);
    parallel::each(&ranges, parts, |rows, y| {
        let x = &x[rows.start * len..rows.end * len];
        if relu { affine_relu_rows(x, inner, scale, shift, y) } else { affine_rows(x, inner, scale, shift, y) }
    });
    y
}

simd::vectorized! {
/// `affine` for whole rows of `[c, inner]` floats, into `y`.
fn affine_rows(x: &[f32], inner: usize, scale: &[f32], shift: &[f32], y: &mut [f32]) {
    affine_rows_with(x, inner, scale, shift, y, |v| v)
}
}

simd::vectorized! {
/// `affine` with its ReLU for whole rows of `[c, inner]` floats, into `y`.
fn affine_relu_rows(x: &[f32], inner: usize, scale: &[f32], shift: &[f32], y: &mut [f32]) {
    affine_rows_with(x, inner, scale, shift, y, |v| v.max(0.0))
}
}

/// The loop of `affine_rows` and `affine_relu_rows`, with `act` applied to each output; inlined into each, so that
/// each is compiled (and vectorised) with its own activation.
#[inline(always)]
fn affine_rows_with(x: &[f32], inner: usize, scale: &[f32], shift: &[f32], y: &mut [f32], act: impl Fn(f32) -> f32) {
    let len = scale.len() * inner;
    for (yr, xr) in y.chunks_exact_mut(len).zip(x.chunks_exact(len)) {
        if inner == 1 {
            for (((yv, &xv), &s), &t) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
                *yv = act(xv * s + t);
            }
        } else {
            for (ch, (yc, xc)) in yr.chunks_exact_mut(inner).zip(xr.chunks_exact(inner)).enumerate() {
                let (s, t) = (scale[ch], shift[ch]);
                yc.iter_mut().zip(xc).for_each(|(yv, &xv)| *yv = act(xv * s + t));
            }
        }
    }
}

/// The per-channel sums `(sum(dy), sum(dy * (x - mean)))` over two tensors of one `[outer, c, inner]`
/// layout, in one pass, `dy` masked first when a ReLU followed.
fn paired_sums(
    dy: &[f32],
    x: &[f32],
    (outer, c, inner): (usize, usize, usize),
    mean: &[f32],
    mask: Option<Mask<'_>>,
) -> [Vec<f64>; 2] {
    if inner == 1 {
        return row_sums::<2>(outer, c, |rows, p| add_paired_rows(dy, x, rows, mean, mask, p));
    }
    let mut total = [vec![0.0f64; c], vec![0.0f64; c]];
    if c * inner == 0 {
        return total; // no values: every sum is zero
    }
    let mut part = [vec![0.0f32; c], vec![0.0f32; c]];
    let mut masked_dy = vec![0.0f32; if mask.is_some() { inner } else { 0 }];
    for (r, (dyr, xr)) in dy.chunks_exact(c * inner).zip(x.chunks_exact(c * inner)).take(outer).enumerate() {
        for ch in 0..c {
            let (mut gs, xs) = (&dyr[ch * inner..(ch + 1) * inner], &xr[ch * inner..(ch + 1) * inner]);
            if let Some(k) = mask {
                let (s, t) = (k.scale[ch], k.shift[ch]);
                masked_dy.iter_mut().zip(gs.iter().zip(xs)).for_each(|(m, (&g, &xv))| *m = masked(g, xv, s, t));
                gs = &masked_dy;
            }
            part[0][ch] += gs.iter().sum::<f32>();
            part[1][ch] += gs.iter().zip(xs).map(|(&g, &xv)| g * (xv - mean[ch])).sum::<f32>();
        }
        if (r + 1) % BLOCK == 0 || r + 1 == outer {
            for (t, p) in total.iter_mut().zip(&mut part) {
                t.iter_mut().zip(p.iter_mut()).for_each(|(t, p)| *t += std::mem::take(p) as f64);
            }
        }
    }
    total
}

/// The backward of training-mode batchnorm, with `xhat = (x - mean) * invstd`:
/// `db = sum(dy)`, `dw = sum(dy * xhat)`, `dx = w * invstd * (dy - db / n - xhat * dw / n)`, where `dy` is first
/// masked by the ReLU's gradient when one followed (`mask`). `dy` and `x` share one `[outer, c, inner]` layout;
/// returns `(dx, dw, db)`. The sums take one pass and `dx` another; the threads share `dx` in either layout, and
/// the sums in the channels-last one.
fn backward(
    dy: &[f32],
    x: &[f32],
    dims: (usize, usize, usize),
    mean: &[f32],
    invstd: &[f32],
    w: &[f32],
    mask: Option<Mask<'_>>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (outer, c, inner) = dims;
    let n = (outer * inner).max(1) as f32;
    let [sum_dy, sum_dyx] = paired_sums(dy, x, dims, mean, mask);
    let db: Vec<f32> = sum_dy.iter().map(|&t| t as f32).collect();
    let dw: Vec<f32> = sum_dyx.iter().zip(invstd).map(|(&t, &i)| (t * i as f64) as f32).collect();
    let k0: Vec<f32> = (0..c).map(|ch| w[ch] * invstd[ch]).collect();
    let (mdb, mdw): (Vec<f32>, Vec<f32>) = (db.iter().map(|v| v / n).collect(), dw.iter().map(|v| v / n).collect());
    let mut dx = alloc::take(x.len());
    let len = c * inner;
    if len == 0 {
        return (dx, dw, db);
    }
    let ranges = parallel::ranges(outer, 2 * len);
    let parts = parallel::split(&mut dx, &ranges, len);
    let coef = DxCoefficients { mean, invstd, k0: &k0, mdb: &mdb, mdw: &mdw };
    parallel::each(&ranges, parts, |rows, dx| {
        let (dy, x) = (&dy[rows.start * len..rows.end * len], &x[rows.start * len..rows.end * len]);
        match mask {
            None => dx_rows(dy, x, inner, &coef, dx),
            Some(k) => dx_relu_rows(dy, x, inner, &coef, k, dx),
        }
    });
    (dx, dw, db)
}

/// The per-channel values `dx` is computed from: `dx = k0 * (dy - mdb - (x - mean) * invstd * mdw)`.
struct DxCoefficients<'a> {
    mean: &'a [f32],
    invstd: &'a [f32],
    k0: &'a [f32],
    mdb: &'a [f32],
    mdw: &'a [f32],
}

simd::vectorized! {
/// Batchnorm's input gradient for whole rows of `[c, inner]` floats, into `dx`.
fn dx_rows(dy: &[f32], x: &[f32], inner: usize, k: &DxCoefficients<'_>, dx: &mut [f32]) {
    dx_rows_with(dy, x, inner, k, dx, |_, g, _| g)
}
}

simd::vectorized! {
/// Batchnorm's input gradient for whole rows of `[c, inner]` floats, into `dx`, with `dy` masked by the ReLU that
/// followed.
fn dx_relu_rows(dy: &[f32], x: &[f32], inner: usize, k: &DxCoefficients<'_>, mask: Mask<'_>, dx: &mut [f32]) {
    let c = k.mean.len();
    let (scale, shift) = (&mask.scale[..c], &mask.shift[..c]);
    dx_rows_with(dy, x, inner, k, dx, |ch, g, xv| masked(g, xv, scale[ch], shift[ch]))
}
}

/// The loop of `dx_rows` and `dx_relu_rows`: `grad(channel, dy, x)` is the gradient that reaches the batchnorm's
/// output. Inlined into each, so that each is compiled (and vectorised) with its own.
#[inline(always)]
fn dx_rows_with(
    dy: &[f32],
    x: &[f32],
    inner: usize,
    k: &DxCoefficients<'_>,
    dx: &mut [f32],
    grad: impl Fn(usize, f32, f32) -> f32,
) {
    let c = k.mean.len();
    let (mean, invstd, k0, mdb, mdw) = (&k.mean[..c], &k.invstd[..c], &k.k0[..c], &k.mdb[..c], &k.mdw[..c]);
    let len = c * inner;
    for ((dxr, dyr), xr) in dx.chunks_exact_mut(len).zip(dy.chunks_exact(len)).zip(x.chunks_exact(len)) {
        if inner == 1 {
            let (dxr, dyr, xr) = (&mut dxr[..c], &dyr[..c], &xr[..c]);
            for ch in 0..c {
                let xhat = (xr[ch] - mean[ch]) * invstd[ch];
                dxr[ch] = k0[ch] * (grad(ch, dyr[ch], xr[ch]) - mdb[ch] - xhat * mdw[ch]);
            }
        } else {
            for ch in 0..c {
                for i in ch * inner..(ch + 1) * inner {
                    let xhat = (xr[i] - mean[ch]) * invstd[ch];
                    dxr[i] = k0[ch] * (grad(ch, dyr[i], xr[i]) - mdb[ch] - xhat * mdw[ch]);
                }
            }
        }
    }
}
