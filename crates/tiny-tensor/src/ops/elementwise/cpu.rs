//! The CPU's elementwise kernels: unary maps, broadcast binary maps, strided copies and in-place updates.

use super::{BinaryKernel, BinaryOp, ElementwiseKernels, UnaryKernel, UnaryOp, Update};
use crate::cpu::strided::for_each_run;
use crate::cpu::{Cpu, alloc, parallel, simd};
use crate::layout::{Layout, contiguous_strides};
use crate::{Result, Storage, Tensor};

impl ElementwiseKernels for Cpu {
    fn unary(&self, x: &Tensor, op: UnaryOp, p: [f32; 2]) -> Result<Tensor> {
        let s = x.storage();
        let (data, layout) = op.cpu(Map { x: s.host(), l: x.layout(), p });
        Ok(new(data, layout))
    }

    fn binary(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, op: BinaryOp) -> Result<Tensor> {
        let (sa, sb) = (a.storage(), b.storage());
        let (data, layout) = op.cpu(Zip { a: sa.host(), al, b: sb.host(), bl });
        Ok(new(data, layout))
    }

    fn update(&self, dst: &Tensor, src: Option<(&Tensor, &Layout)>, how: Update) -> Result<()> {
        let src_storage = src.map(|(t, _)| t.storage());
        let mut d = dst.storage_mut();
        let (d, dl) = (d.host_mut(), dst.layout());
        match (how, src_storage.as_ref().zip(src)) {
            (Update::Scale(alpha), _) => scale_inplace(d, dl, alpha),
            (Update::Copy, Some((s, (_, sl)))) => copy_into(d, dl, s.host(), sl),
            (Update::AddScaled(alpha), Some((s, (_, sl)))) => add_scaled_inplace(d, dl, s.host(), sl, alpha),
            (_, None) => return Err(super::missing_source()),
        }
        Ok(())
    }

    fn contiguous(&self, x: &Tensor) -> Result<Tensor> {
        Ok(new(self.to_vec(x)?, Layout::contiguous(x.shape())))
    }

    fn to_vec(&self, x: &Tensor) -> Result<Vec<f32>> {
        Ok(copy_contiguous(x.storage().host(), x.layout()))
    }

    fn copy_from_host(&self, x: &Tensor) -> Result<Tensor> {
        self.contiguous(x)
    }
}

/// A host tensor over `data`.
fn new(data: Vec<f32>, layout: Layout) -> Tensor {
    Tensor::from_storage(Storage::Cpu(data), layout)
}

/// Applies a unary op to every element. A dense input (any dimension order) is mapped straight over its
/// storage and keeps its strides; anything else is gathered into row-major order.
struct Map<'a> {
    x: &'a [f32],
    l: &'a Layout,
    p: [f32; 2],
}

impl UnaryKernel for Map<'_> {
    type Out = (Vec<f32>, Layout);

    fn visit(self, f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Self::Out {
        let [p0, p1] = self.p;
        map(self.x, self.l, |v| f(v, p0, p1))
    }
}

/// Combines two operands already broadcast to one shape with a binary op.
struct Zip<'a> {
    a: &'a [f32],
    al: &'a Layout,
    b: &'a [f32],
    bl: &'a Layout,
}

impl BinaryKernel for Zip<'_> {
    type Out = (Vec<f32>, Layout);

    fn visit(self, f: impl Fn(f32, f32) -> f32 + Sync) -> Self::Out {
        zip(self.a, self.al, self.b, self.bl, f)
    }
}

fn map(x: &[f32], l: &Layout, f: impl Fn(f32) -> f32 + Sync) -> (Vec<f32>, Layout) {
    let n = l.numel();
    if l.is_dense() {
        let mut out = alloc::take(n);
        dense(&mut out, |r, out| map_dense(&x[l.offset..][r], out, &f));
        return (out, Layout { shape: l.shape.clone(), strides: l.strides.clone(), offset: 0 });
    }
    let strides = contiguous_strides(&l.shape);
    let mut out = alloc::take(n);
    for_each_run(&l.shape, [&strides, &l.strides], [0, l.offset], |len, [o, i], [_, si]| {
        for (j, y) in out[o..o + len].iter_mut().enumerate() {
            *y = f(x[i + j * si]);
        }
    });
    (out, Layout::contiguous(&l.shape))
}

/// The result takes the memory order of whichever operand is dense, so channels-last activations stay
/// channels-last.
fn zip(a: &[f32], al: &Layout, b: &[f32], bl: &Layout, f: impl Fn(f32, f32) -> f32 + Sync) -> (Vec<f32>, Layout) {
    let n = al.numel();
    if al.is_dense() && bl.is_dense() && al.strides == bl.strides {
        let (a, b) = (&a[al.offset..al.offset + n], &b[bl.offset..bl.offset + n]);
        let mut out = alloc::take(n);
        dense(&mut out, |r, out| zip_dense(&a[r.clone()], &b[r], out, &f));
        return (out, Layout { shape: al.shape.clone(), strides: al.strides.clone(), offset: 0 });
    }
    let strides = if al.is_dense() { al.dense_strides_like() } else { bl.dense_strides_like() };
    let mut out = alloc::take(n);
    for_each_run(
        &al.shape,
        [&strides, &al.strides, &bl.strides],
        [0, al.offset, bl.offset],
        |len, [o, i, j], [_, si, sj]| {
            let out = &mut out[o..o + len];
            match (si, sj) {
                (1, 1) => out.iter_mut().zip(&a[i..i + len]).zip(&b[j..j + len]).for_each(|((y, &x), &z)| *y = f(x, z)),
                (1, 0) => out.iter_mut().zip(&a[i..i + len]).for_each(|(y, &x)| *y = f(x, b[j])),
                (0, 1) => out.iter_mut().zip(&b[j..j + len]).for_each(|(y, &z)| *y = f(a[i], z)),
                _ => out.iter_mut().enumerate().for_each(|(k, y)| *y = f(a[i + k * si], b[j + k * sj])),
            }
        },
    );
    (out, Layout { shape: al.shape.clone(), strides, offset: 0 })
}

/// Runs `kernel(range, out[range])` over `out` cut into one range per thread (a single range when small).
fn dense(out: &mut [f32], kernel: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync) {
    let ranges = parallel::ranges(out.len(), 1);
    let parts = parallel::split(out, &ranges, 1);
    parallel::each(&ranges, parts, kernel);
}

simd::vectorized! {
/// `out[i] = f(x[i])`, compiled for AVX-512 where the CPU has it (the crate's baseline is SSE2); the op's small
/// closure is inlined into whichever copy runs.
fn map_dense<F: Fn(f32) -> f32>(x: &[f32], out: &mut [f32], f: &F) {
    out.iter_mut().zip(x).for_each(|(y, &v)| *y = f(v));
}
}

simd::vectorized! {
/// `out[i] = f(a[i], b[i])`, compiled for AVX-512 where the CPU has it, like `map_dense`.
fn zip_dense<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], out: &mut [f32], f: &F) {
    out.iter_mut().zip(a).zip(b).for_each(|((y, &x), &z)| *y = f(x, z));
}
}

/// Writes the elements of `src` (laid out by `sl`, broadcast to `dl`'s shape) into `dst` at `dl`.
pub(crate) fn copy_into(dst: &mut [f32], dl: &Layout, src: &[f32], sl: &Layout) {
    for_each_run(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], |len, [o, i], [so, si]| {
        if so == 1 && si == 1 {
            dst[o..o + len].copy_from_slice(&src[i..i + len]);
        } else {
            for k in 0..len {
                dst[o + k * so] = src[i + k * si];
            }
        }
    });
}

/// The elements in row-major order.
pub(crate) fn copy_contiguous(src: &[f32], l: &Layout) -> Vec<f32> {
    let n = l.numel();
    let mut out = alloc::take(n);
    if l.is_contiguous() {
        out.copy_from_slice(&src[l.offset..l.offset + n]);
        return out;
    }
    if let Some((images, c, hw)) = nchw_viewed_as_nhwc(l) {
        transpose_images(&src[l.offset..l.offset + n], images, c, hw, &mut out);
        return out;
    }
    copy_into(&mut out, &Layout::contiguous(&l.shape), src, l);
    out
}

/// `(n, c, h * w)` when `l` is a dense NCHW tensor seen through `permute([0, 2, 3, 1])`: what
/// `to_channels_last` copies. The strided walk would move it a channel count of floats at a time.
fn nchw_viewed_as_nhwc(l: &Layout) -> Option<(usize, usize, usize)> {
    let [n, h, w, c] = l.shape[..] else { return None };
    let want = [c * h * w, w, 1, h * w];
    (n * h * w * c > 0 && l.strides == want).then_some((n, c, h * w))
}

/// Transposes each of `images` row-major `[c, hw]` matrices of `src` into `[hw, c]` in `out`, in blocks of
/// 64 pixels, so that the `c` rows being read and the block being written stay in cache.
fn transpose_images(src: &[f32], images: usize, c: usize, hw: usize, out: &mut [f32]) {
    const BLOCK: usize = 64;
    for (img, dst) in src.chunks_exact(c * hw).zip(out.chunks_exact_mut(c * hw)).take(images) {
        for p0 in (0..hw).step_by(BLOCK) {
            let p1 = (p0 + BLOCK).min(hw);
            for (ch, row) in img.chunks_exact(hw).enumerate() {
                for (p, &v) in (p0..p1).zip(&row[p0..p1]) {
                    dst[p * c + ch] = v;
                }
            }
        }
    }
}

/// In place, `dst += alpha * src` with `src` (laid out by `sl`) broadcast to `dl`'s shape.
pub(crate) fn add_scaled_inplace(dst: &mut [f32], dl: &Layout, src: &[f32], sl: &Layout, alpha: f32) {
    for_each_run(&dl.shape, [&dl.strides, &sl.strides], [dl.offset, sl.offset], |len, [o, i], [so, si]| {
        if so == 1 && si == 1 {
            dst[o..o + len].iter_mut().zip(&src[i..i + len]).for_each(|(d, &s)| *d += alpha * s);
        } else {
            (0..len).for_each(|k| dst[o + k * so] += alpha * src[i + k * si]);
        }
    });
}

/// In place, `dst *= alpha`.
pub(crate) fn scale_inplace(dst: &mut [f32], dl: &Layout, alpha: f32) {
    for_each_run(&dl.shape, [&dl.strides], [dl.offset], |len, [o], [so]| {
        (0..len).for_each(|k| dst[o + k * so] *= alpha);
    });
}
