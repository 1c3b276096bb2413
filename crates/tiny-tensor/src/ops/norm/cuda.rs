//! The GPU's training-mode batchnorm kernels (`batchnorm.cu`), over data arranged `[outer, c, inner]`: per-channel
//! sums as a 2-D pass of partial sums (coalesced along the channels of channels-last data) and a finishing pass.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{NormKernels, RunningStats};
use crate::cuda::strided::i32_of;
use crate::cuda::{Gpu, columns, err, grid, slice_mut, view};
use crate::{Result, Storage, Tensor};

impl NormKernels for Gpu {
    /// From contiguous `x`, in one launch: the per-channel mean and biased variance, `invstd`, the affine map's
    /// `scale` and `shift`, and the running statistics (contiguous `[c]` tensors) and their batch count updated in place.
    fn batch_norm_stats(
        &self,
        x: &Tensor,
        (outer, c, inner): (usize, usize, usize),
        w: &Tensor,
        b: &Tensor,
        eps: f32,
        running: Option<RunningStats<'_>>,
        unbias: f32,
    ) -> Result<[Storage; 5]> {
        let g = self;
        // The kernel writes every channel's values, so the buffers need no zeroing.
        let mut out =
            [g.alloc::<f32>(c)?, g.alloc::<f32>(c)?, g.alloc::<f32>(c)?, g.alloc::<f32>(c)?, g.alloc::<f32>(c)?];
        if c > 0 {
            let (sx, sw, sb) = (x.storage(), w.storage(), b.storage());
            let (xs, ws, bs) = (view(&sx, x), view(&sw, w), view(&sb, b));
            let (o, ci, i) = (outer as i64, i32_of("batch_norm", "channels", c)?, inner as i64);
            let cfg = partial_launch(outer, c, inner);
            let parts = cfg.grid_dim.1 as usize;
            let (mut s1, mut s2) = (g.alloc::<f64>(parts * c)?, g.alloc::<f64>(parts * c)?);
            let mut launch = g.stream.launch_builder(g.func("bn_stats_partial_f32"));
            launch.arg(&xs).arg(&o).arg(&ci).arg(&i).arg(&mut s1).arg(&mut s2);
            unsafe { launch.launch(cfg) }.map_err(err("batch_norm stats"))?;
            let [mean, var, invstd, scale, shift] = &mut out;
            let p = parts as i64;
            let mut launch = g.stream.launch_builder(g.func("bn_stats_finish_f32"));
            launch.arg(&p).arg(&s1).arg(&s2).arg(&xs).arg(&o).arg(&ci).arg(&i);
            launch.arg(mean).arg(var).arg(&ws).arg(&bs).arg(&eps);
            launch.arg(invstd).arg(scale).arg(shift);
            // The running statistics are written through their storages, locked for the launch; a null pointer (0)
            // tells the kernel there are none.
            let (null, momentum) = (0u64, running.map_or(0.0, |r| r.momentum));
            let mut locks = running.map(|r| [(r.mean.storage_mut(), r.mean), (r.var.storage_mut(), r.var)]);
            let mut stats =
                locks.as_mut().map(|l| l.each_mut().map(|(s, t)| slice_mut(s).slice_mut(t.layout().offset..)));
            match &mut stats {
                Some([rm, rv]) => launch.arg(rm).arg(rv),
                None => launch.arg(&null).arg(&null),
            };
            launch.arg(&momentum).arg(&unbias);
            let counter = running.and_then(|r| r.num_batches_tracked);
            let mut count_lock = counter.map(|n| (n.storage_mut(), n));
            let mut count = count_lock.as_mut().map(|(s, t)| slice_mut(s).slice_mut(t.layout().offset..));
            match &mut count {
                Some(n) => launch.arg(n),
                None => launch.arg(&null),
            };
            unsafe { launch.launch(finish_launch(c, parts)) }.map_err(err("batch_norm stats"))?;
        }
        Ok(out.map(|s| g.storage(s)))
    }

    /// `y = x * scale[c] + shift[c]` over contiguous `x`, then `relu(y)` when `relu`.
    fn batch_norm_affine(
        &self,
        x: &Tensor,
        (outer, c, inner): (usize, usize, usize),
        scale: &Tensor,
        shift: &Tensor,
        relu: bool,
    ) -> Result<Storage> {
        let g = self;
        let total = outer * c * inner;
        let mut y = g.alloc::<f32>(total)?;
        let (sx, sc, sh) = (x.storage(), scale.storage(), shift.storage());
        let src = view(&sx, x);
        let (t, ci, i) = (total as i64, i32_of("batch_norm", "channels", c)?, inner as i64);
        let mut b = g.stream.launch_builder(g.func("bn_affine_f32"));
        let (scale, shift) = (view(&sc, scale), view(&sh, shift));
        let relu = i32::from(relu);
        b.arg(&t).arg(&src).arg(&mut y).arg(&scale).arg(&shift).arg(&ci).arg(&i).arg(&relu);
        unsafe { b.launch(grid(total)) }.map_err(err("batch_norm affine"))?;
        Ok(g.storage(y))
    }

    /// The gradients `(dx, dw, db)` of training-mode batchnorm, with `dy` and `x` in the same contiguous arrangement,
    /// `dy` masked by a fused ReLU when `relu` holds the forward's scale and shift.
    fn batch_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        (outer, c, inner): (usize, usize, usize),
        mean: &Tensor,
        invstd: &Tensor,
        w: &Tensor,
        relu: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Storage, Storage, Storage)> {
        let g = self;
        let total = outer * c * inner;
        // The kernels write every element of all three, so they need no zeroing.
        let (mut dw, mut db) = (g.alloc::<f32>(c)?, g.alloc::<f32>(c)?);
        let mut dx = g.alloc::<f32>(total)?;
        if c == 0 {
            return Ok((g.storage(dx), g.storage(dw), g.storage(db)));
        }
        let (sd, sx, sm, si, sw) = (dy.storage(), x.storage(), mean.storage(), invstd.storage(), w.storage());
        let dys = view(&sd, dy);
        let xs = view(&sx, x);
        let means = view(&sm, mean);
        let invs = view(&si, invstd);
        let ws = view(&sw, w);
        // The fused ReLU's scale and shift, or null pointers (0) when none followed.
        let null = 0u64;
        let affine = relu.map(|(scale, shift)| (scale.storage(), shift.storage(), scale, shift));
        let mask = affine.as_ref().map(|(sc, sh, scale, shift)| (view(sc, scale), view(sh, shift)));
        let (o, ci, i) = (outer as i64, i32_of("batch_norm", "channels", c)?, inner as i64);
        let cfg = partial_launch(outer, c, inner);
        let parts = cfg.grid_dim.1 as usize;
        let (mut sg, mut sgx) = (g.alloc::<f64>(parts * c)?, g.alloc::<f64>(parts * c)?);
        let mut b = g.stream.launch_builder(g.func("bn_backward_partial_f32"));
        b.arg(&dys).arg(&xs).arg(&means).arg(&invs).arg(&o).arg(&ci).arg(&i).arg(&mut sg).arg(&mut sgx);
        match &mask {
            Some((sc, sh)) => b.arg(sc).arg(sh),
            None => b.arg(&null).arg(&null),
        };
        unsafe { b.launch(cfg) }.map_err(err("batch_norm backward"))?;
        let p = parts as i64;
        let mut b = g.stream.launch_builder(g.func("bn_backward_finish_f32"));
        b.arg(&p).arg(&sg).arg(&sgx).arg(&ci).arg(&mut dw).arg(&mut db);
        unsafe { b.launch(finish_launch(c, parts)) }.map_err(err("batch_norm backward"))?;
        let (t, n) = (total as i64, (outer * inner).max(1) as f32);
        let mut b = g.stream.launch_builder(g.func("bn_backward_dx_f32"));
        b.arg(&t).arg(&dys).arg(&xs).arg(&means).arg(&invs).arg(&ws).arg(&dw).arg(&db);
        b.arg(&mut dx).arg(&ci).arg(&i).arg(&n);
        match &mask {
            Some((sc, sh)) => b.arg(sc).arg(sh),
            None => b.arg(&null).arg(&null),
        };
        unsafe { b.launch(grid(total)) }.map_err(err("batch_norm backward"))?;
        Ok((g.storage(dx), g.storage(dw), g.storage(db)))
    }
}

/// The partial-sum pass over `[outer, c, inner]` data: channels-last data (`inner` 1) is `outer` rows of `c`
/// channels, threads along the channels; NCHW data gives a block per channel, threads along `inner`.
fn partial_launch(outer: usize, c: usize, inner: usize) -> LaunchConfig {
    if inner == 1 { columns(outer, c, None) } else { columns(outer, inner, Some(c)) }
}

/// The finishing pass: one block per channel (a block-stride loop past 65,535), its threads along the `parts`
/// partial sums.
fn finish_launch(c: usize, parts: usize) -> LaunchConfig {
    let threads = parts.next_power_of_two().clamp(32, 256) as u32;
    LaunchConfig { grid_dim: (c.clamp(1, 65_535) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}
