//! Fused cross-entropy on the GPU (`loss.cu`), with label smoothing: one launch forward, one backward.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::LossKernels;
use crate::cuda::{CudaStorage, Gpu, err, grid, view, wrap};
use crate::layout::Layout;
use crate::storage::Indices;
use crate::{Result, Tensor};

impl LossKernels for Gpu {
    fn log_softmax_nll(&self, x: &Tensor, targets: &[u32], eps: f32) -> Result<(Tensor, Tensor, Indices)> {
        let (loss, lse, targets) = forward(self, x, targets, eps)?;
        Ok((loss, lse, Indices::Cuda(targets)))
    }

    fn log_softmax_nll_backward(
        &self,
        dloss: &Tensor,
        x: &Tensor,
        lse: &Tensor,
        targets: &Indices,
        eps: f32,
    ) -> Result<Tensor> {
        backward(self, dloss, x, lse, targets.on_gpu("log_softmax_nll")?, eps)
    }
}

/// Per-row losses (label-smoothed by `eps`) and logsumexps `([n], [n])` of contiguous `[n, c]` logits, and the
/// targets uploaded once for the backward.
fn forward(g: &Gpu, x: &Tensor, targets: &[u32], eps: f32) -> Result<(Tensor, Tensor, CudaStorage<u32>)> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let (mut loss, mut lse) = (g.alloc::<f32>(n)?, g.alloc::<f32>(n)?);
    let dev_targets = g.upload_u32(targets)?;
    if n > 0 {
        let s = x.storage();
        let xs = view(&s, x);
        let (ni, ci) = (n as i64, c as i64);
        // One 32-thread block per row: Imagenette has 10 classes, and ImageNet's 1000 take 32 steps.
        let cfg = LaunchConfig { grid_dim: (n.min(65_535) as u32, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        let mut b = g.stream.launch_builder(g.func("log_softmax_nll_f32"));
        b.arg(&ni).arg(&ci).arg(&xs).arg(&dev_targets).arg(&mut loss).arg(&mut lse).arg(&eps);
        unsafe { b.launch(cfg) }.map_err(err("log_softmax_nll"))?;
    }
    let (loss, lse) = (wrap(g, loss, Layout::contiguous(&[n])), wrap(g, lse, Layout::contiguous(&[n])));
    Ok((loss, lse, CudaStorage { slice: dev_targets, ordinal: g.ordinal }))
}

/// The logits' gradient `[n, c]` from the per-row gradient `dloss` (`[n]`), all contiguous, for label
/// smoothing `eps`.
fn backward(g: &Gpu, dloss: &Tensor, x: &Tensor, lse: &Tensor, targets: &CudaStorage<u32>, eps: f32) -> Result<Tensor> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let total = n * c;
    let mut dx = g.alloc::<f32>(total)?;
    if total > 0 {
        let (sd, sx, sl) = (dloss.storage(), x.storage(), lse.storage());
        let ds = view(&sd, dloss);
        let xs = view(&sx, x);
        let ls = view(&sl, lse);
        let (t, ci) = (total as i64, c as i64);
        let mut b = g.stream.launch_builder(g.func("log_softmax_nll_backward_f32"));
        b.arg(&t).arg(&ci).arg(&ds).arg(&xs).arg(&ls).arg(&targets.slice).arg(&mut dx).arg(&eps);
        unsafe { b.launch(grid(total)) }.map_err(err("log_softmax_nll backward"))?;
    }
    Ok(wrap(g, dx, Layout::contiguous(&[n, c])))
}
