//! The CPU's gather and scatter along one dimension.

use super::IndexKernels;
use crate::cpu::{Cpu, alloc};
use crate::layout::Layout;
use crate::{Result, Storage, Tensor};

impl IndexKernels for Cpu {
    fn index_select(&self, x: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
        let data = index_select(&x.storage().host()[x.layout().offset..], outer, size, inner, idx);
        Ok(Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(&[outer, idx.len(), inner])))
    }

    fn index_add(&self, g: &Tensor, outer: usize, size: usize, inner: usize, idx: &[u32]) -> Result<Tensor> {
        let data = index_add(&g.storage().host()[g.layout().offset..], outer, size, inner, idx);
        Ok(Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(&[outer, size, inner])))
    }
}

/// `out[o, i, :] = x[o, idx[i], :]` for a contiguous `[outer, size, inner]` input.
fn index_select(x: &[f32], outer: usize, size: usize, inner: usize, idx: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = (o * size + i as usize) * inner;
            out.extend_from_slice(&x[start..start + inner]);
        }
    }
    out
}

/// `out[o, idx[i], :] += g[o, i, :]`, starting from zeros of `[outer, size, inner]`.
fn index_add(g: &[f32], outer: usize, size: usize, inner: usize, idx: &[u32]) -> Vec<f32> {
    let mut out = alloc::take_filled(outer * size * inner, 0.0);
    for o in 0..outer {
        for (k, &i) in idx.iter().enumerate() {
            let dst = (o * size + i as usize) * inner;
            let src = (o * idx.len() + k) * inner;
            for (d, &s) in out[dst..dst + inner].iter_mut().zip(&g[src..src + inner]) {
                *d += s;
            }
        }
    }
    out
}
