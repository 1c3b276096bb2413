//! 2-D convolution on channels-last data: im2col into a small cache-sized buffer, then one GEMM per chunk.
//!
//! With `x` as `[n, h, w, c]` the im2col matrix has one row per output pixel and columns ordered
//! `(ky, kx, c)`, so each kernel row is one contiguous copy and the output `[n*oh*ow, f]` is already
//! channels-last: no transposes anywhere. The batch is cut into chunks of whole images whose im2col
//! buffer stays around 1 MiB, so it is written and read back from cache, and chunks run on
//! separate threads. Two shapes go elsewhere first: 3-channel inputs to the direct kernels of `cpu_rgb.rs`, and
//! 3x3 stride-1 layers that `winograd::eligible` takes to Winograd F(2x2, 3x3).

use super::cpu_rgb::{self as conv_rgb, Operand};
use super::cpu_rgb_bf16 as conv_rgb16;
use super::winograd;
use super::{Conv2dGeom, ConvKernels};
use crate::autocast::Precision;
use crate::cpu::{Cpu, alloc, num_threads, parallel};
use crate::ops::matmul::bf16 as gemm16;
use crate::ops::matmul::cpu::{Mat, MatMut, Rhs, gemm, gemm_rhs};
use crate::{Result, Storage, Tensor};

impl ConvKernels for Cpu {
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let (sx, sw) = (x.storage(), w.storage());
        let sb = bias.map(|b| (b.storage(), b.layout().offset));
        let bias = sb.as_ref().map(|(s, at)| &s.host()[*at..]);
        let (xs, ws) = (&sx.host()[x.layout().offset..], &sw.host()[w.layout().offset..]);
        Ok(Storage::Cpu(conv2d_forward(xs, ws, bias, relu, g, precision)))
    }

    fn conv2d_backward_input(
        &self,
        dout: &Tensor,
        w: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let (sd, sw) = (dout.storage(), w.storage());
        let (ds, ws) = (&sd.host()[dout.layout().offset..], &sw.host()[w.layout().offset..]);
        Ok(Storage::Cpu(conv2d_backward_input(ds, ws, g, precision)))
    }

    fn conv2d_backward_weight(
        &self,
        x: &Tensor,
        dout: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
    ) -> Result<Storage> {
        let (sx, sd) = (x.storage(), dout.storage());
        let (xs, ds) = (&sx.host()[x.layout().offset..], &sd.host()[dout.layout().offset..]);
        Ok(Storage::Cpu(conv2d_backward_weight(xs, ds, g, precision)))
    }

    fn conv2d_relu_backward_params(
        &self,
        x: &Tensor,
        dout: &Tensor,
        out: &Tensor,
        g: &Conv2dGeom,
        precision: Precision,
        bias: bool,
    ) -> Result<Option<(Storage, Option<Storage>)>> {
        if !(conv_rgb::eligible(g) && precision == Precision::Bf16 && conv_rgb16::available()) {
            return Ok(None);
        }
        let (sx, sd, so) = (x.storage(), dout.storage(), out.storage());
        let xs = &sx.host()[x.layout().offset..];
        let d = conv_rgb16::Grad {
            dout: &sd.host()[dout.layout().offset..],
            relu_out: Some(&so.host()[out.layout().offset..]),
        };
        let (dw, db) = stem_params_bf16(xs, &d, g, bias);
        Ok(Some((Storage::Cpu(dw), db.map(Storage::Cpu))))
    }
}

/// The target size, in floats, of one chunk's im2col buffer.
const CHUNK_FLOATS: usize = 1 << 18;
/// The fewest GEMM rows per chunk: GEMM packs the whole weight matrix on every call, so deep layers
/// (large `kh * kw * c`) need enough rows to pay for it, even past the cache-sized target.
const MIN_ROWS: usize = 1024;
/// The backward passes prefer smaller chunks: their im2col (weight) or col2im (input) buffer is both
/// written and read around the GEMM, and a chunk that stays in L2 pays more than the extra GEMM calls
/// cost (measured: backward-input 16->32 3.0 -> 2.75 ms, backward-weight 64->128 2.09 -> 1.86 ms).
const SMALL_CHUNK_FLOATS: usize = CHUNK_FLOATS / 16;
const SMALL_MIN_ROWS: usize = 128;

/// The shortest kernel-row run (`kw * c` values) whose bf16 weight gradient packs its im2col straight from the
/// images. Measured with bench_ops on one thread (backward-weight, medians of 5 alternated runs on a Zen 3):
/// simple_cnn's 16->32 layer 11.2 -> 9.1 ms, 32->64 7.9 -> 7.6, 64->128 6.1 -> 6.3, and resnet18's 7x7 stem at
/// 128 px (runs of 21) 201 -> 142 ms; but simple_cnn's 3->16 (3x3, runs of 9) 10.0 -> 11.8. On CPUs with
/// AVX512-BF16, whose packing of an f32 im2col is faster than the AVX2 one measured here, it is unmeasured.
const MIN_PACKED_RUN: usize = 16;

struct Plan {
    rows_per_img: usize,
    kkc: usize,
    imgs_per_chunk: usize,
    chunks: usize,
    /// Whether the conv is 1x1, stride 1, no padding: the input already is the im2col matrix.
    pointwise: bool,
}

fn plan(g: &Conv2dGeom) -> Plan {
    plan_sized(g, CHUNK_FLOATS, MIN_ROWS)
}

fn plan_sized(g: &Conv2dGeom, chunk_floats: usize, min_rows: usize) -> Plan {
    let rows_per_img = g.oh() * g.ow();
    let kkc = g.kh * g.kw * g.c;
    let by_size = chunk_floats / (rows_per_img * kkc).max(1);
    let by_rows = min_rows.div_ceil(rows_per_img.max(1));
    let imgs_per_chunk = by_size.max(by_rows).clamp(1, g.n.max(1));
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
    Plan { rows_per_img, kkc, imgs_per_chunk, chunks: g.n.div_ceil(imgs_per_chunk), pointwise }
}

/// Splits `0..chunks` into one contiguous range per thread and runs `work(range, 1)` on each; with fewer
/// chunks than threads, a single `work(0..chunks, threads)` lets GEMM itself use all the threads instead.
pub(super) fn run_chunks<R: Send>(chunks: usize, work: impl Fn(std::ops::Range<usize>, usize) -> R + Sync) -> Vec<R> {
    let threads = num_threads();
    if threads <= 1 || chunks < threads {
        return vec![work(0..chunks, threads)];
    }
    parallel::each_range(&parallel::even(chunks, threads), |range| work(range, 1))
}

/// The output columns `ox_lo..ox_hi` whose window needs no horizontal padding.
fn interior_columns(g: &Conv2dGeom) -> (usize, usize) {
    let ow = g.ow();
    let ox_lo = g.pad.div_ceil(g.stride).min(ow);
    let ox_hi = if g.w + g.pad >= g.kw { ((g.w + g.pad - g.kw) / g.stride + 1).clamp(ox_lo, ow) } else { ox_lo };
    (ox_lo, ox_hi)
}

/// Walks the im2col matrix of images `n0..n1` one kernel row at a time, visiting for each output pixel
/// and kernel row the part inside the image and the parts in the zero padding (offsets in elements, `col`
/// relative to image `n0`, its rows `ld` elements apart: `kh * kw * c`, or more for padded rows). Row validity is decided once per output row, and pixels whose window lies fully inside the
/// image take a branch-free path. `visit(col_offset, Some(x_offset), len)` is a run inside the image,
/// `visit(col_offset, None, len)` one in the padding.
fn for_each_run(g: &Conv2dGeom, n0: usize, n1: usize, ld: usize, mut visit: impl FnMut(usize, Option<usize>, usize)) {
    let (oh, ow, c) = (g.oh(), g.ow(), g.c);
    let seg = g.kw * c;
    let (ox_lo, ox_hi) = interior_columns(g);
    for n in n0..n1 {
        for oy in 0..oh {
            let row = ((n - n0) * oh + oy) * ow * ld;
            for ky in 0..g.kh {
                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                if iy < 0 || iy >= g.h as isize {
                    (0..ow).for_each(|ox| visit(row + ox * ld + ky * seg, None, seg));
                    continue;
                }
                let src_row = (n * g.h + iy as usize) * g.w * c;
                for ox in (0..ox_lo).chain(ox_hi..ow) {
                    let d = row + ox * ld + ky * seg;
                    let x0 = (ox * g.stride) as isize - g.pad as isize;
                    let lo = ((-x0).max(0) as usize).min(g.kw);
                    let hi = ((g.w as isize - x0).clamp(0, g.kw as isize) as usize).max(lo);
                    visit(d, None, lo * c);
                    if hi > lo {
                        visit(d + lo * c, Some(src_row + (x0 + lo as isize) as usize * c), (hi - lo) * c);
                    }
                    visit(d + hi * c, None, seg - hi * c);
                }
                for ox in ox_lo..ox_hi {
                    visit(row + ox * ld + ky * seg, Some(src_row + (ox * g.stride - g.pad) * c), seg);
                }
            }
        }
    }
}

/// Copies `len` values (floats, or bf16 halves); the short runs of low channel counts get fixed-size moves
/// instead of a `memcpy` call, which would cost more than the copy.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], d: usize, src: &[T], s: usize, len: usize) {
    #[inline(always)]
    fn fixed<const N: usize, T: Copy>(dst: &mut [T], d: usize, src: &[T], s: usize) {
        if let (Some(to), Some(from)) = (dst[d..].first_chunk_mut::<N>(), src[s..].first_chunk::<N>()) {
            *to = *from;
        }
    }
    match len {
        3 => fixed::<3, T>(dst, d, src, s),
        9 => fixed::<9, T>(dst, d, src, s),
        21 => fixed::<21, T>(dst, d, src, s),
        _ => dst[d..d + len].copy_from_slice(&src[s..s + len]),
    }
}

/// Fills `col` with the im2col rows of images `n0..n1`.
fn im2col(x: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, col: &mut [f32]) {
    for_each_run(g, n0, n1, g.kh * g.kw * g.c, |d, s, len| match s {
        Some(s) => copy_run(col, d, x, s, len),
        None => col[d..d + len].fill(0.0),
    });
}

/// Writes the im2col rows of images `n0..n1` into `pairs` as bf16, `kkc.div_ceil(2)` pairs a row (an odd `kkc`
/// ends each row with a zero half): the images are converted to bf16 once, into `images`, then the same walk as
/// [`im2col`] copies their runs of halves (a conversion per run costs more than the copy for short runs).
fn im2col_bf16(
    x: &[f32],
    g: &Conv2dGeom,
    (n0, n1): (usize, usize),
    pairs: &mut [u32],
    images: &mut [u16],
    vector: bool,
) {
    let kkc = g.kh * g.kw * g.c;
    let row = 2 * kkc.div_ceil(2);
    let rows = (n1 - n0) * g.oh() * g.ow();
    let img = g.h * g.w * g.c;
    let base = n0 * img;
    gemm16::halves(&x[base..n1 * img], &mut images[..(n1 - n0) * img], vector);
    let halves = gemm16::as_halves(pairs);
    for_each_run(g, n0, n1, row, |d, s, len| match s {
        Some(s) => copy_run(halves, d, images, s - base, len),
        None => halves[d..d + len].fill(0),
    });
    if row != kkc {
        (0..rows).for_each(|r| halves[r * row + kkc] = 0);
    }
}

/// The im2col matrix of images `n0..n1` (a row per output pixel, `kh * kw * c` columns) rounded to bf16 and packed
/// as the right operand of the weight gradient's product, with no f32 copy in between: the images are converted
/// once into `images` inside their zero padding (`h + 2 pad` by `w + 2 pad` pixels), so that each kernel row of a
/// window is one run of `kw * c` halves, and the runs of two output pixels are interleaved into pairs.
fn im2col_packed(
    x: &[f32],
    g: &Conv2dGeom,
    (n0, n1): (usize, usize),
    images: &mut [u16],
    vector: bool,
) -> gemm16::PackedB {
    let (hp, wp, c, pad) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.c, g.pad);
    let (oh, ow) = (g.oh(), g.ow());
    let padded = hp * wp * c;
    let images = &mut images[..(n1 - n0) * padded];
    for (img, n) in images.chunks_exact_mut(padded).zip(n0..) {
        img[..pad * wp * c].fill(0);
        img[(pad + g.h) * wp * c..].fill(0);
        for (y, row) in img[pad * wp * c..(pad + g.h) * wp * c].chunks_exact_mut(wp * c).enumerate() {
            row[..pad * c].fill(0);
            row[(pad + g.w) * c..].fill(0);
            gemm16::halves(&x[(n * g.h + y) * g.w * c..][..g.w * c], &mut row[pad * c..(pad + g.w) * c], vector);
        }
    }
    let images = &*images;
    let run = g.kw * c;
    // Where each output pixel's window starts in `images`.
    let windows: Vec<usize> = (0..n1 - n0)
        .flat_map(|i| {
            (0..oh).flat_map(move |oy| (0..ow).map(move |ox| ((i * hp + oy * g.stride) * wp + ox * g.stride) * c))
        })
        .collect();
    gemm16::PackedB::from_row_pairs(windows.len(), g.kh * run, |kp, pair| {
        let (even, odd) = (windows[2 * kp], windows.get(2 * kp + 1));
        for ky in 0..g.kh {
            let at = ky * wp * c;
            pair.put(ky * run, &images[even + at..][..run], odd.map(|o| &images[o + at..][..run]));
        }
    })
}

/// Sums the im2col rows in `col` into images `n0..n1` of `dx` (the adjoint of `im2col`), overwriting
/// them; `dx` holds exactly those images.
fn col2im(col: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if g.c.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        unsafe { col2im_avx512(col, g, n0, n1, dx) };
        return;
    }
    dx.fill(0.0);
    let base = n0 * g.h * g.w * g.c;
    for_each_run(g, n0, n1, g.kh * g.kw * g.c, |d, s, len| {
        if let Some(s) = s {
            for (a, &b) in dx[s - base..s - base + len].iter_mut().zip(&col[d..d + len]) {
                *a += b;
            }
        }
    });
}

/// `col2im` for channel counts that are a multiple of 16, with AVX-512: windows that touch the padding go
/// through slices, and the interior windows of each kernel row are added whole vectors at a time through
/// pointers, free of bounds checks and closure calls. With each row zeroed as it is first reached, this
/// took bench_ops 16->32 backward-input from 2.83-2.90 to 2.49-2.62 ms on one thread.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn col2im_avx512(col: &[f32], g: &Conv2dGeom, n0: usize, n1: usize, dx: &mut [f32]) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_loadu_ps, _mm512_storeu_ps};
    let (oh, ow, c) = (g.oh(), g.ow(), g.c);
    let seg = g.kw * c;
    let kkc = g.kh * seg;
    assert!(col.len() >= (n1 - n0) * oh * ow * kkc && dx.len() >= (n1 - n0) * g.h * g.w * c);
    let (ox_lo, ox_hi) = interior_columns(g);
    let row_len = g.w * c;
    for i in 0..n1 - n0 {
        let img = i * g.h * row_len;
        // Rows `..zeroed` of this image are set; each later row is zeroed just before its first window
        // lands on it, while it is in cache.
        let mut zeroed = 0;
        for oy in 0..oh {
            let col_row = (i * oh + oy) * ow * kkc;
            for ky in 0..g.kh {
                let Some(iy) = (oy * g.stride + ky).checked_sub(g.pad).filter(|&iy| iy < g.h) else { continue };
                if iy >= zeroed {
                    dx[img + zeroed * row_len..img + (iy + 1) * row_len].fill(0.0);
                    zeroed = iy + 1;
                }
                let dx_row = img + iy * row_len;
                for ox in (0..ox_lo).chain(ox_hi..ow) {
                    let x0 = (ox * g.stride) as isize - g.pad as isize;
                    let lo = ((-x0).max(0) as usize).min(g.kw);
                    let hi = ((g.w as isize - x0).clamp(0, g.kw as isize) as usize).max(lo);
                    if hi == lo {
                        continue;
                    }
                    let (d, s) = (col_row + ox * kkc + ky * seg + lo * c, dx_row + (x0 + lo as isize) as usize * c);
                    let len = (hi - lo) * c;
                    dx[s..s + len].iter_mut().zip(&col[d..d + len]).for_each(|(a, &b)| *a += b);
                }
                // SAFETY: an interior window `ox` reads `seg` floats of its im2col row and adds them onto
                // image columns `ox * stride - pad ..` plus `kw`, all inside the image row; both lengths
                // were asserted above.
                unsafe {
                    let src = col.as_ptr().add(col_row + ky * seg);
                    let dst = dx.as_mut_ptr().add(dx_row);
                    for ox in ox_lo..ox_hi {
                        let (from, to) = (src.add(ox * kkc), dst.add((ox * g.stride - g.pad) * c));
                        for j in (0..seg).step_by(16) {
                            let sum = _mm512_add_ps(_mm512_loadu_ps(to.add(j)), _mm512_loadu_ps(from.add(j)));
                            _mm512_storeu_ps(to.add(j), sum);
                        }
                    }
                }
            }
        }
        dx[img + zeroed * row_len..img + g.h * row_len].fill(0.0);
    }
}

/// Adds the bias and applies ReLU to a chunk of output rows while they are still in cache.
fn epilogue(out: &mut [f32], f: usize, bias: Option<&[f32]>, relu: bool) {
    match (bias, relu) {
        (Some(b), true) => {
            out.chunks_exact_mut(f).for_each(|r| r.iter_mut().zip(b).for_each(|(o, &v)| *o = (*o + v).max(0.0)))
        }
        (Some(b), false) => out.chunks_exact_mut(f).for_each(|r| r.iter_mut().zip(b).for_each(|(o, &v)| *o += v)),
        (None, true) => out.iter_mut().for_each(|o| *o = o.max(0.0)),
        (None, false) => {}
    }
}

/// `out[n, oy, ox, f] = bias[f] + sum over (ky, kx, c) of x[n, iy, ix, c] * w[f, ky, kx, c]`, with
/// `x` as `[n, h, w, c]` and `w` as `[f, kh, kw, c]`, then ReLU when `relu`; returns `[n, oh, ow, f]`.
fn conv2d_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Conv2dGeom,
    precision: Precision,
) -> Vec<f32> {
    if winograd::eligible(g) {
        return winograd::forward(x, w, bias, relu, g, precision);
    }
    let p = plan(g);
    let mut out = alloc::take(g.n * p.rows_per_img * g.f);
    if out.is_empty() {
        return out;
    }
    let chunk_out = p.imgs_per_chunk * p.rows_per_img * g.f;
    let out_chunks: Vec<std::sync::Mutex<&mut [f32]>> = out.chunks_mut(chunk_out).map(std::sync::Mutex::new).collect();
    if conv_rgb::eligible(g) {
        // Each chunk of images through a direct kernel, into its own rows of `out`.
        let each_chunk = |kernel: &(dyn Fn(usize, usize, &mut [f32]) + Sync)| {
            run_chunks(p.chunks, |range, _| {
                for ch in range {
                    let (n0, n1) = (ch * p.imgs_per_chunk, ((ch + 1) * p.imgs_per_chunk).min(g.n));
                    kernel(n0, n1, &mut out_chunks[ch].lock().unwrap_or_else(|e| e.into_inner()));
                }
            });
        };
        if precision == Precision::Bf16 && conv_rgb16::available() {
            // The stem's own bf16 kernel. (Through the bf16 GEMM instead, simple_cnn's stem took 2.35 ms at batch
            // 128, the f32 kernel on rounded copies 2.0: with 16 filters each broadcast feeds one vector either
            // way, and the im2col of 3 channels costs more than the products it saves.)
            let wp = conv_rgb16::pack_weights(w, g.f);
            each_chunk(&|n0, n1, rows| conv_rgb16::forward(x, &wp, bias, relu, g, n0, n1, rows));
        } else {
            // The f32 kernel; in bf16 (on a CPU without AVX512-BF16) its operands are rounded first, so each
            // product is the same exact product of two bf16 that a bf16 GEMM would sum.
            let (x, w) = (Operand::new(x, precision), Operand::new(w, precision));
            let wt = transpose(&w, g.f, p.kkc);
            each_chunk(&|n0, n1, rows| conv_rgb::forward(&x, &wt, bias, relu, g, n0, n1, rows));
            alloc::give(wt);
        }
        drop(out_chunks);
        return out;
    }
    let wt = Rhs::new(Mat::rows(w, g.f, p.kkc).t(), precision);
    // In bf16 the im2col is written straight into bf16 rows.
    let fused = match &wt {
        Rhs::Bf16(packed) if !p.pointwise => Some(packed),
        _ => None,
    };
    run_chunks(p.chunks, |range, threads| {
        let f32_col = !p.pointwise && fused.is_none();
        let mut col = alloc::take(if f32_col { p.imgs_per_chunk * p.rows_per_img * p.kkc } else { 0 });
        let padded = (p.imgs_per_chunk * p.rows_per_img).div_ceil(gemm16::ROW_PADDING) * gemm16::ROW_PADDING;
        let mut pairs = alloc::take_words(if fused.is_some() { padded * p.kkc.div_ceil(2) } else { 0 });
        // Enough 32-bit words for the chunk's images as bf16 halves.
        let mut images =
            alloc::take_words(if fused.is_some() { (p.imgs_per_chunk * g.h * g.w * g.c).div_ceil(2) } else { 0 });
        for ch in range {
            let (n0, n1) = (ch * p.imgs_per_chunk, ((ch + 1) * p.imgs_per_chunk).min(g.n));
            let rows = (n1 - n0) * p.rows_per_img;
            if let Some(packed) = fused {
                im2col_bf16(x, g, (n0, n1), &mut pairs, gemm16::as_halves(&mut images), packed.vector());
                let lhs = gemm16::Lhs::Rows { data: &pairs, rows, k: p.kkc, stride: p.kkc.div_ceil(2) };
                let mut guard = out_chunks[ch].lock().unwrap_or_else(|e| e.into_inner());
                gemm16::gemm_packed(MatMut::rows(&mut guard, rows, g.f), false, lhs, packed, threads);
                epilogue(&mut guard, g.f, bias, relu);
                continue;
            }
            let lhs = if p.pointwise {
                Mat { offset: n0 * p.rows_per_img * p.kkc, ..Mat::rows(x, rows, p.kkc) }
            } else {
                im2col(x, g, n0, n1, &mut col[..rows * p.kkc]);
                Mat::rows(&col, rows, p.kkc)
            };
            let mut guard = out_chunks[ch].lock().unwrap_or_else(|e| e.into_inner());
            gemm_rhs(MatMut::rows(&mut guard, rows, g.f), false, lhs, &wt, threads);
            epilogue(&mut guard, g.f, bias, relu);
        }
        alloc::give(col);
        alloc::give_words(pairs);
        alloc::give_words(images);
    });
    drop(out_chunks);
    out
}

/// The input gradient `[n, h, w, c]` from the output gradient `dout` (`[n, oh, ow, f]`) and `w`.
fn conv2d_backward_input(dout: &[f32], w: &[f32], g: &Conv2dGeom, precision: Precision) -> Vec<f32> {
    if winograd::eligible(g) {
        return winograd::backward_input(dout, w, g, precision);
    }
    let p = plan_sized(g, SMALL_CHUNK_FLOATS, SMALL_MIN_ROWS);
    let img = g.h * g.w * g.c;
    // The direct kernel's chunk is zeroed just before it adds into it, while it is in cache; col2im and
    // the pointwise GEMM overwrite theirs.
    let mut dx = alloc::take(g.n * img);
    if dx.is_empty() {
        return dx;
    }
    let dx_chunks: Vec<std::sync::Mutex<&mut [f32]>> =
        dx.chunks_mut(p.imgs_per_chunk * img).map(std::sync::Mutex::new).collect();
    let direct = conv_rgb::eligible(g);
    let (dout, w) = if direct {
        (Operand::new(dout, precision), Operand::new(w, precision))
    } else {
        (Operand::Borrowed(dout), Operand::Borrowed(w))
    };
    let wm = Rhs::new(Mat::rows(&w, g.f, p.kkc), if direct { Precision::Fp32 } else { precision });
    run_chunks(p.chunks, |range, threads| {
        let needs_dcol = !direct && !p.pointwise;
        let mut dcol = alloc::take(if needs_dcol { p.imgs_per_chunk * p.rows_per_img * p.kkc } else { 0 });
        for ch in range {
            let (n0, n1) = (ch * p.imgs_per_chunk, ((ch + 1) * p.imgs_per_chunk).min(g.n));
            let rows = (n1 - n0) * p.rows_per_img;
            let d = Mat { offset: n0 * p.rows_per_img * g.f, ..Mat::rows(&dout, rows, g.f) };
            let mut guard = dx_chunks[ch].lock().unwrap_or_else(|e| e.into_inner());
            if direct {
                guard.fill(0.0);
                conv_rgb::input_grad(&dout, &w, g, n0, n1, &mut guard);
            } else if p.pointwise {
                gemm_rhs(MatMut::rows(&mut guard, rows, p.kkc), false, d, &wm, threads);
            } else {
                gemm_rhs(MatMut::rows(&mut dcol[..rows * p.kkc], rows, p.kkc), false, d, &wm, threads);
                col2im(&dcol[..rows * p.kkc], g, n0, n1, &mut guard);
            }
        }
        alloc::give(dcol);
    });
    drop(dx_chunks);
    dx
}

/// The weight gradient `[f, kh, kw, c]` from the input `x` (`[n, h, w, c]`) and `dout`.
fn conv2d_backward_weight(x: &[f32], dout: &[f32], g: &Conv2dGeom, precision: Precision) -> Vec<f32> {
    backward_weight_with(x, dout, g, precision, Im2colBf16::ByRun)
}

/// How a bf16 weight gradient's im2col reaches the GEMM: packed straight from the images, or written in f32 and
/// packed by the GEMM (the same bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Im2colBf16 {
    /// Packed straight from the images where a kernel row's run is at least `MIN_PACKED_RUN` values: what
    /// `conv2d_backward_weight` does.
    ByRun,
    /// Packed straight from the images whatever the run (only for the tests).
    #[cfg(test)]
    Packed,
    /// Written in f32 and packed by the GEMM whatever the run (only for the tests).
    #[cfg(test)]
    F32,
}

/// `conv2d_backward_weight` with a bf16 im2col made as `route` says.
fn backward_weight_with(x: &[f32], dout: &[f32], g: &Conv2dGeom, precision: Precision, route: Im2colBf16) -> Vec<f32> {
    if winograd::eligible(g) {
        return winograd::backward_weight(x, dout, g, precision);
    }
    let direct = conv_rgb::eligible(g);
    if direct && precision == Precision::Bf16 && conv_rgb16::available() {
        // The stem in bf16 on AVX512-BF16: its own kernel, which rounds as it gathers.
        return stem_params_bf16(x, &conv_rgb16::Grad { dout, relu_out: None }, g, false).0;
    }
    // Otherwise a direct kernel multiplies rounded copies in bf16.
    let (x, dout) = if direct {
        (Operand::new(x, precision), Operand::new(dout, precision))
    } else {
        (Operand::Borrowed(x), Operand::Borrowed(dout))
    };
    let p = if direct { plan(g) } else { plan_sized(g, SMALL_CHUNK_FLOATS, SMALL_MIN_ROWS) };
    // In bf16 the im2col is packed straight from the images (the same pairs as packing an f32 im2col), where a
    // kernel row's run of `kw * c` halves is long enough to pay for the interleave's calls (a 3x3 kernel over 3
    // channels, runs of 9, is not; the 7x7 stem's runs of 21 are).
    let packed = precision == Precision::Bf16
        && !direct
        && !p.pointwise
        && match route {
            Im2colBf16::ByRun => g.kw * g.c >= MIN_PACKED_RUN,
            #[cfg(test)]
            Im2colBf16::Packed => true,
            #[cfg(test)]
            Im2colBf16::F32 => false,
        };
    let vector = crate::cpu::bf16::bf16_kernel().has_avx512_bf16();
    // Each thread adds its chunks into its own dW. The GEMM writes it as `[f, kkc]` row-major, the result's
    // order (a transpose afterwards cost 5% of a resnet18 step); the direct kernel writes `[kkc, f]`. The first
    // chunk's GEMM overwrites the partial; the direct kernel adds into zeros.
    let partials = run_chunks(p.chunks, |range, threads| {
        let first = range.start;
        let zeroed = direct || range.is_empty();
        let mut dw = if zeroed { alloc::take_filled(p.kkc * g.f, 0.0) } else { alloc::take(p.kkc * g.f) };
        let f32_col = !direct && !p.pointwise && !packed;
        let mut col = alloc::take(if f32_col { p.imgs_per_chunk * p.rows_per_img * p.kkc } else { 0 });
        // Enough 32-bit words for the chunk's padded images as bf16 halves.
        let padded_img = (g.h + 2 * g.pad) * (g.w + 2 * g.pad) * g.c;
        let mut images = alloc::take_words(if packed { (p.imgs_per_chunk * padded_img).div_ceil(2) } else { 0 });
        for ch in range {
            let (n0, n1) = (ch * p.imgs_per_chunk, ((ch + 1) * p.imgs_per_chunk).min(g.n));
            if direct {
                conv_rgb::weight_grad(&x, &dout, g, n0, n1, &mut dw);
                continue;
            }
            let rows = (n1 - n0) * p.rows_per_img;
            let d = Mat { offset: n0 * p.rows_per_img * g.f, ..Mat::rows(&dout, rows, g.f) };
            if packed {
                let cols = im2col_packed(&x, g, (n0, n1), gemm16::as_halves(&mut images), vector);
                let lhs = gemm16::Lhs::F32(d.t());
                gemm16::gemm_packed(MatMut::rows(&mut dw, g.f, p.kkc), ch != first, lhs, &cols, threads);
                continue;
            }
            let cols = if p.pointwise {
                Mat { offset: n0 * p.rows_per_img * p.kkc, ..Mat::rows(&x, rows, p.kkc) }
            } else {
                im2col(&x, g, n0, n1, &mut col[..rows * p.kkc]);
                Mat::rows(&col, rows, p.kkc)
            };
            gemm(MatMut::rows(&mut dw, g.f, p.kkc), ch != first, d.t(), cols, threads, precision);
        }
        alloc::give(col);
        alloc::give_words(images);
        dw
    });
    let dw = parallel::sum(partials).unwrap_or_else(|| alloc::take_filled(p.kkc * g.f, 0.0));
    if !direct {
        return dw;
    }
    let t = transpose(&dw, p.kkc, g.f);
    alloc::give(dw);
    t
}

/// The RGB stem's weight gradient (`[f, 3, 3, 3]`) and, when `bias`, bias gradient in bf16 from its input and the
/// output gradient (masked by the ReLU's output when `d` has it), each thread adding its chunks into its own partial
/// sums.
fn stem_params_bf16(x: &[f32], d: &conv_rgb16::Grad<'_>, g: &Conv2dGeom, bias: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let p = plan(g);
    let partials = run_chunks(p.chunks, |range, _| {
        let mut dw = alloc::take_filled(p.kkc * g.f, 0.0);
        let mut db = bias.then(|| vec![0.0f32; g.f]);
        for ch in range {
            let (n0, n1) = (ch * p.imgs_per_chunk, ((ch + 1) * p.imgs_per_chunk).min(g.n));
            conv_rgb16::weight_grad(x, d, g, (n0, n1), &mut dw, db.as_deref_mut());
        }
        (dw, db)
    });
    let mut partials = partials.into_iter();
    let (mut dw, mut db) =
        partials.next().unwrap_or_else(|| (alloc::take_filled(p.kkc * g.f, 0.0), bias.then(|| vec![0.0; g.f])));
    for (part_w, part_b) in partials {
        dw.iter_mut().zip(&part_w).for_each(|(a, b)| *a += b);
        alloc::give(part_w);
        if let (Some(db), Some(pb)) = (db.as_mut(), part_b) {
            db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
        }
    }
    // The kernel writes `[kkc, f]`; the result is `[f, kkc]`.
    let t = transpose(&dw, p.kkc, g.f);
    alloc::give(dw);
    (t, db)
}

/// The transpose of a row-major `rows x cols` matrix, into a recycled buffer (a fresh one would cost a page
/// fault per 4 KiB: a tenth of a resnet18 step went to zeroing pages here), in 32 x 32 tiles so that both
/// the reads and the writes stay in cache.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut t = alloc::take(rows * cols);
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    t[j * rows + i] = m[i * cols + j];
                }
            }
        }
    }
    t
}

#[cfg(test)]
#[path = "cpu_tests.rs"]
mod tests;
