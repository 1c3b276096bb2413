//! SGD steps on the GPU (`sgd.cu`): one strided tensor, or many contiguous ones in a single launch.

use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};

use super::{SgdKernels, SgdStep};
use crate::cuda::strided::plan;
use crate::cuda::{Gpu, err, gpu_of, grid, slice, slice_mut};
use crate::{Result, Tensor};

type Item<'a> = (&'a Tensor, &'a Tensor, Option<&'a Tensor>, bool);

impl SgdKernels for Gpu {
    fn sgd_update(&self, p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, step: &SgdStep) -> Result<()> {
        sgd_update(p, g, buffer, step)
    }

    /// When no two tensors share memory, a single kernel updates every parameter that it can walk as flat
    /// memory (dense, with its gradient and buffer in the same memory order: row-major, or channels-last conv
    /// weights); any other is updated on its own.
    fn sgd_update_all(&self, items: &[Item<'_>], step: &SgdStep) -> Result<()> {
        let tensors: Vec<&Tensor> = items.iter().flat_map(|&(p, g, b, _)| [p, g].into_iter().chain(b)).collect();
        let flat = |&&(p, g, b, _): &&Item<'_>| {
            let pl = p.layout();
            pl.is_dense() && [g].into_iter().chain(b).all(|t| t.layout().is_dense() && t.layout().same_memory_order(pl))
        };
        let one_launch = tensors.iter().enumerate().all(|(i, a)| tensors[i + 1..].iter().all(|b| !a.shares_storage(b)));
        let (many, single): (Vec<_>, Vec<_>) =
            if one_launch { items.iter().partition(flat) } else { (vec![], items.iter().collect()) };
        if !many.is_empty() {
            sgd_update_many(&many.iter().map(|&&item| item).collect::<Vec<_>>(), step)?;
        }
        for &&(p, g, b, first) in &single {
            sgd_update(p, g, b, &SgdStep { first, ..*step })?;
        }
        Ok(())
    }
}

/// The `flags` word of `kernels/sgd.cu`: bit 0 a momentum buffer, bit 1 its first step, bit 2 Nesterov.
fn sgd_flags(has_buffer: bool, first: bool, nesterov: bool) -> i32 {
    i32::from(has_buffer) | i32::from(first) << 1 | i32::from(nesterov) << 2
}

/// In place, one fused SGD step of `p` from `g` with an optional momentum buffer (`sgd_update_f32`).
fn sgd_update(p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, step: &SgdStep) -> Result<()> {
    let gpu = gpu_of(p)?;
    let pl = p.layout().clone();
    if pl.numel() == 0 {
        return Ok(());
    }
    let (gl, bl) = (g.layout(), buffer.map_or(&pl, |b| b.layout()));
    let (shape, [ps, gs, bs]) =
        plan(&pl.shape, [&pl.strides, &gl.strides, &bl.strides], [pl.offset, gl.offset, bl.offset], true)?;
    let flags = sgd_flags(buffer.is_some(), step.first, step.nesterov);
    let n = pl.numel() as i64;
    let sg = g.storage();
    let mut sp = p.storage_mut();
    let mut sb = buffer.map(|b| b.storage_mut());
    let mut b = gpu.stream.launch_builder(gpu.func("sgd_update_f32"));
    b.arg(&n).arg(&shape).arg(&ps).arg(&gs).arg(&bs).arg(slice_mut(&mut sp)).arg(slice(&sg));
    // Without a buffer the kernel never touches `b`, so a null pointer stands in for it.
    let null: u64 = 0;
    match sb.as_mut() {
        Some(sb) => b.arg(slice_mut(sb)),
        None => b.arg(&null),
    };
    b.arg(&step.lr).arg(&step.momentum).arg(&step.dampening).arg(&step.weight_decay).arg(&flags);
    unsafe { b.launch(grid(pl.numel())) }.map_err(err("sgd_update"))?;
    Ok(())
}

/// Elements per block in the multi-tensor launch.
const CHUNK: usize = 4096;

/// One SGD step of many contiguous tensors `(p, g, momentum buffer, first)` on one GPU, in one launch: the
/// tensors' addresses and lengths go up as one small table, then each block updates one chunk of one tensor.
fn sgd_update_many(items: &[(&Tensor, &Tensor, Option<&Tensor>, bool)], step: &SgdStep) -> Result<()> {
    let Some(&(p0, ..)) = items.first() else { return Ok(()) };
    let gpu = gpu_of(p0)?;
    let address = |t: &Tensor| -> u64 {
        let s = t.storage();
        slice(&s).device_ptr(&gpu.stream).0 + (t.layout().offset * size_of::<f32>()) as u64
    };
    let mut words: Vec<u64> = Vec::with_capacity(items.len() * 5);
    let mut chunks: Vec<u64> = Vec::new();
    for (k, &(p, g, b, first)) in items.iter().enumerate() {
        let n = p.layout().numel();
        let flags = sgd_flags(b.is_some(), first, step.nesterov) as u64;
        words.extend([address(p), address(g), b.map_or(0, address), n as u64, flags]);
        for start in (0..n).step_by(CHUNK) {
            chunks.extend([k as u64, start as u64]);
        }
    }
    let n_chunks = chunks.len() / 2;
    if n_chunks == 0 {
        return Ok(());
    }
    words.extend(chunks);
    // Uploaded as 32-bit halves, low half first: the kernel reads them back as 64-bit words (little-endian).
    let halves: Vec<u32> = words.iter().flat_map(|&w| [w as u32, (w >> 32) as u32]).collect();
    let table = gpu.upload_u32(&halves)?;
    let cfg =
        LaunchConfig { grid_dim: (n_chunks.min(65_535) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (tensors, n_chunks, chunk) = (items.len() as i64, n_chunks as i64, CHUNK as i64);
    let mut b = gpu.stream.launch_builder(gpu.func("sgd_update_many_f32"));
    b.arg(&table).arg(&tensors).arg(&n_chunks).arg(&chunk);
    b.arg(&step.lr).arg(&step.momentum).arg(&step.dampening).arg(&step.weight_decay);
    unsafe { b.launch(cfg) }.map_err(err("sgd_update_many"))?;
    Ok(())
}
