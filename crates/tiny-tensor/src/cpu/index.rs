//! Gather and scatter along one dimension, and the row-wise argmax.

use super::alloc;

/// `out[o, i, :] = x[o, idx[i], :]` for a contiguous `[outer, size, inner]` input.
pub(crate) fn index_select(x: &[f32], outer: usize, size: usize, inner: usize, idx: &[u32]) -> Vec<f32> {
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
pub(crate) fn index_add(g: &[f32], outer: usize, size: usize, inner: usize, idx: &[u32]) -> Vec<f32> {
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

/// The index of the first largest value in each row of `cols` values.
pub(crate) fn argmax_rows(x: &[f32], cols: usize) -> Vec<u32> {
    x.chunks(cols)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}
