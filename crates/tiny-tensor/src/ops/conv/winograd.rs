//! Winograd F(2x2, 3x3) convolution for 3x3, stride-1, padding-1 layers: 16 GEMMs on transformed 4x4 tiles.
//!
//! After Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2015). The padded input is cut
//! into 4x4 tiles at stride 2, each giving a 2x2 block of the output. With `d` a tile, `g` a 3x3 kernel and
//! the fixed matrices `B`, `G` and `A` below, the block is `A^T [(G g G^T) . (B^T d B)] A`, where `.` is
//! the elementwise product. Summed over input channels, each of the 16 elementwise positions becomes one
//! GEMM `V_xi [tiles, cin] @ U_xi [cin, cout]`, so a tile needs 16 multiply-adds per channel pair where
//! im2col needs 36 (4 pixels times 9 taps): 2.25 times fewer. Channels-last data makes every transform an
//! add or subtract of contiguous channel vectors, 16 at a time.
//!
//! The input gradient of such a convolution is the same convolution of the output gradient, with the kernel
//! rotated by 180 degrees and input and output channels swapped, so both passes share one routine.

use std::sync::Mutex;

use super::Conv2dGeom;
use super::cpu::run_chunks;
use crate::cpu::{alloc, num_threads};
use crate::ops::matmul::cpu::{Mat, MatMut, gemm};

/// The target size, in floats, of one chunk's transformed tiles (`V`) and GEMM results (`M`) together.
const CHUNK_FLOATS: usize = 1 << 18;
/// The fewest tiles per chunk: each of the 16 GEMMs streams its whole `cin x cout` weight matrix, which
/// deep layers must spread over enough rows.
const MIN_TILES: usize = 64;
/// The fewest tiles in the batch for the Winograd path: the transformed weights are 16/9 the size of the
/// kernel and rewritten every call, which few tiles do not pay for.
const MIN_BATCH_TILES: usize = 128;
/// The fewest input and output channels for the Winograd path.
const MIN_CHANNELS: usize = 16;

/// Whether the Winograd path takes this convolution: a 3x3 kernel at stride 1 with padding 1, at least
/// `MIN_CHANNELS` channels in and out and `MIN_BATCH_TILES` tiles, on a CPU with AVX-512F.
///
/// Measured with bench_ops on one thread (batch 64, medians of 3 runs of 7, im2col -> Winograd): resnet18's
/// 64->64 16px forward 6.13 -> 3.50 ms and backward-input 5.83 -> 3.18 ms, 128->128 8px 5.62 -> 3.03 and
/// 5.71 -> 3.07, 256->256 4px 5.82 -> 3.16 and 5.81 -> 3.00, 512->512 4px (256 tiles) 23.9 -> 16.6 and
/// 23.6 -> 16.5; but 512->512 2px (64 tiles) 7.87 -> 7.64 and 6.59 -> 6.58, and 0.99x and 0.84x on two
/// threads, so it stays with im2col. 16->16 at 32px still gains (3.6 -> 2.9 ms), 8->8 at 16px loses
/// (0.46-0.59 -> 0.59-0.61 ms).
pub(super) fn eligible(g: &Conv2dGeom) -> bool {
    let shape = g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1;
    let tiles = g.n * g.h.div_ceil(2) * g.w.div_ceil(2);
    let sized = g.c >= MIN_CHANNELS && g.f >= MIN_CHANNELS && tiles >= MIN_BATCH_TILES;
    #[cfg(target_arch = "x86_64")]
    {
        shape && sized && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (shape, sized);
        false
    }
}

/// The forward convolution of `x` (`[n, h, w, c]`) by `w` (`[f, 3, 3, c]`), plus `bias` and then ReLU when
/// asked; returns `[n, h, w, f]`. `g` must be `eligible`.
pub(super) fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool, g: &Conv2dGeom) -> Vec<f32> {
    let u = transform_weights(w, g.f, g.c, false);
    let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.c, cout: g.f };
    let out = run(x, &u, &s, bias, relu);
    alloc::give(u);
    out
}

/// The input gradient `[n, h, w, c]` from the output gradient `dout` (`[n, h, w, f]`) and `w`
/// (`[f, 3, 3, c]`). `g` must be `eligible`.
pub(super) fn backward_input(dout: &[f32], w: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let u = transform_weights(w, g.f, g.c, true);
    let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.f, cout: g.c };
    let dx = run(dout, &u, &s, None, false);
    alloc::give(u);
    dx
}

/// One 3x3, stride-1, padding-1 convolution of `n` images of `h x w` from `cin` channels to `cout`.
struct Problem {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
}

impl Problem {
    /// Tile rows and tiles per row.
    fn tiles(&self) -> (usize, usize) {
        (self.h.div_ceil(2), self.w.div_ceil(2))
    }

    /// The first image row (counted across the batch) of tile row `unit`, where units number the tile rows
    /// of all images in order: consecutive units cover consecutive rows, so a range of them owns one
    /// contiguous slice of the output.
    fn first_row(&self, unit: usize) -> usize {
        let th = self.tiles().0;
        unit / th * self.h + (2 * (unit % th)).min(self.h)
    }
}

/// Tile rows per chunk: chunks near `CHUNK_FLOATS` with at least `MIN_TILES` tiles, and a multiple of
/// the thread count where there are enough tile rows.
fn plan(s: &Problem, units: usize, threads: usize) -> usize {
    let tw = s.tiles().1;
    let by_size = CHUNK_FLOATS / (tw * 16 * (s.cin + s.cout)).max(1);
    let by_tiles = MIN_TILES.div_ceil(tw);
    let per_chunk = by_size.max(by_tiles).clamp(1, units);
    let mut chunks = units.div_ceil(per_chunk);
    if threads > 1 {
        chunks = chunks.next_multiple_of(threads).min(units);
    }
    units.div_ceil(chunks)
}

/// Runs the convolution `s` of `src` with the transformed weights `u`, fusing `bias` and ReLU into the
/// output transform.
fn run(src: &[f32], u: &[f32], s: &Problem, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    let units = s.n * s.tiles().0;
    run_with(src, u, s, bias, relu, plan(s, units.max(1), num_threads()))
}

/// `run` with `per_chunk` tile rows a chunk.
fn run_with(src: &[f32], u: &[f32], s: &Problem, bias: Option<&[f32]>, relu: bool, per_chunk: usize) -> Vec<f32> {
    let mut out = alloc::take(s.n * s.h * s.w * s.cout);
    if out.is_empty() {
        return out;
    }
    let (th, tw) = s.tiles();
    let units = s.n * th;
    let chunks = units.div_ceil(per_chunk);
    let span = |ch: usize| (ch * per_chunk, ((ch + 1) * per_chunk).min(units));
    let mut slices = Vec::with_capacity(chunks);
    let mut rest = out.as_mut_slice();
    for ch in 0..chunks {
        let (u0, u1) = span(ch);
        let (head, tail) = rest.split_at_mut((s.first_row(u1) - s.first_row(u0)) * s.w * s.cout);
        slices.push(Mutex::new(head));
        rest = tail;
    }
    let weights = |xi: usize| Mat { offset: xi * s.cin * s.cout, ..Mat::rows(u, s.cin, s.cout) };
    run_chunks(chunks, |range, threads| {
        let mut v = alloc::take(16 * per_chunk * tw * s.cin);
        let mut m = alloc::take(16 * per_chunk * tw * s.cout);
        for ch in range {
            let (u0, u1) = span(ch);
            let tiles = (u1 - u0) * tw;
            input_transform(src, s, u0, u1, &mut v[..16 * tiles * s.cin]);
            for xi in 0..16 {
                let a = Mat { data: &v, offset: xi * s.cin, rows: tiles, cols: s.cin, rs: 16 * s.cin, cs: 1 };
                let dst = MatMut { offset: xi * tiles * s.cout, ..MatMut::rows(&mut m, tiles, s.cout) };
                gemm(dst, false, a, weights(xi), threads);
            }
            let mut guard = slices[ch].lock().unwrap_or_else(|e| e.into_inner());
            output_transform(&m[..16 * tiles * s.cout], s, u0, u1, bias, relu, &mut guard);
        }
        alloc::give(v);
        alloc::give(m);
    });
    drop(slices);
    out
}

/// A vector of channels, on which the transforms are written once: one float at a time (`f32`, the
/// portable fallback) or 16 (`Avx512`). Every method is `inline(always)` and the kernels use no closures,
/// so that all of it compiles inside the kernels' AVX-512 versions. The kernels check their slices' lengths
/// once and then move data through raw pointers, free of per-vector bounds checks.
trait Vector: Copy {
    const LANES: usize;
    fn zero() -> Self;
    /// Loads `len` (at most `LANES`) floats from `p` into the first lanes, zeroing the rest.
    ///
    /// # Safety
    /// `p..p + len` must be readable.
    unsafe fn load(p: *const f32, len: usize) -> Self;
    /// Transposes the `LANES x LANES` matrix in the first `LANES` vectors of `r`.
    fn transpose(r: &mut [Self; 16]);
    /// Asks for the cache line at `p` (which need not be valid) to be brought into the L1 cache.
    fn prefetch(p: *const f32);
    /// Stores the first `len` lanes at `p`.
    ///
    /// # Safety
    /// `p..p + len` must be writable.
    unsafe fn store(self, p: *mut f32, len: usize);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn half(self) -> Self;
    fn relu(self) -> Self;
}

impl Vector for f32 {
    const LANES: usize = 1;
    #[inline(always)]
    fn zero() -> Self {
        0.0
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, _len: usize) -> Self {
        // SAFETY: the caller guarantees `p` is readable.
        unsafe { *p }
    }
    #[inline(always)]
    fn transpose(_r: &mut [Self; 16]) {}
    #[inline(always)]
    fn prefetch(_p: *const f32) {}
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, _len: usize) {
        // SAFETY: the caller guarantees `p` is writable.
        unsafe { *p = self }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn half(self) -> Self {
        0.5 * self
    }
    #[inline(always)]
    fn relu(self) -> Self {
        self.max(0.0)
    }
}

/// 16 channels in an AVX-512 register. Its methods are only reached through the kernels' `avx512` entry
/// points, which run after the CPU was found to have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx512(std::arch::x86_64::__m512);

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Avx512, Vector};

    /// The lane mask of the first `len` lanes.
    #[inline(always)]
    fn mask(len: usize) -> __mmask16 {
        if len >= 16 { 0xffff } else { ((1u32 << len) - 1) as __mmask16 }
    }

    // SAFETY (every block below): the CPU has AVX-512F, as `Avx512` is only used inside kernels entered
    // after checking; masked loads and stores touch only the `len` floats the caller vouches for.
    impl Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            Avx512(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, len: usize) -> Self {
            Avx512(unsafe { _mm512_maskz_loadu_ps(mask(len), p) })
        }
        #[inline(always)]
        fn prefetch(p: *const f32) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
        }
        /// Four rounds of swapping the off-diagonal `b x b` blocks of every `2b x 2b` block, for
        /// `b = 8, 4, 2, 1`: rows `i` and `i + b` trade their `b`-lane halves through two-register permutes.
        #[inline(always)]
        fn transpose(r: &mut [Self; 16]) {
            for b in [8, 4, 2, 1] {
                let (mut lo, mut hi) = ([0i32; 16], [0i32; 16]);
                for l in 0..16 {
                    let top = l & b == 0;
                    lo[l] = if top { l } else { 16 + l - b } as i32;
                    hi[l] = if top { l + b } else { 16 + l } as i32;
                }
                unsafe {
                    let (lo, hi) = (_mm512_loadu_epi32(lo.as_ptr()), _mm512_loadu_epi32(hi.as_ptr()));
                    for i in 0..16 {
                        if i & b == 0 {
                            let (x, y) = (r[i].0, r[i + b].0);
                            r[i] = Avx512(_mm512_permutex2var_ps(x, lo, y));
                            r[i + b] = Avx512(_mm512_permutex2var_ps(x, hi, y));
                        }
                    }
                }
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, len: usize) {
            unsafe { _mm512_mask_storeu_ps(p, mask(len), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn half(self) -> Self {
            Avx512(unsafe { _mm512_mul_ps(self.0, _mm512_set1_ps(0.5)) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            Avx512(unsafe { _mm512_max_ps(self.0, _mm512_setzero_ps()) })
        }
    }
}

/// `B^T` on a 4-vector: `(x0 - x2, x1 + x2, x2 - x1, x1 - x3)`.
#[inline(always)]
fn bt<V: Vector>(x: [V; 4]) -> [V; 4] {
    [x[0].sub(x[2]), x[1].add(x[2]), x[2].sub(x[1]), x[1].sub(x[3])]
}

/// `G` on a 3-vector: `(g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)`.
#[inline(always)]
fn gm<V: Vector>(x: [V; 3]) -> [V; 4] {
    let even = x[0].add(x[2]);
    [x[0], even.add(x[1]).half(), even.sub(x[1]).half(), x[2]]
}

/// `A^T` on a 4-vector: `(x0 + x1 + x2, x1 - x2 - x3)`.
#[inline(always)]
fn at<V: Vector>(x: [V; 4]) -> [V; 2] {
    [x[0].add(x[1]).add(x[2]), x[1].sub(x[2]).sub(x[3])]
}

/// Element `j` of each of four 4-vectors.
#[inline(always)]
fn column<V: Vector>(e: &[[V; 4]; 4], j: usize) -> [V; 4] {
    [e[0][j], e[1][j], e[2][j], e[3][j]]
}

/// Loads four vectors at `p + k * stride`.
///
/// # Safety
/// Each must be readable for `len` floats.
#[inline(always)]
unsafe fn load4<V: Vector>(p: *const f32, stride: usize, len: usize) -> [V; 4] {
    // SAFETY: the caller vouches for the four ranges.
    unsafe {
        [V::load(p, len), V::load(p.add(stride), len), V::load(p.add(2 * stride), len), V::load(p.add(3 * stride), len)]
    }
}

/// Stores four vectors at `p + k * stride`.
///
/// # Safety
/// Each must be writable for `len` floats.
#[inline(always)]
unsafe fn store4<V: Vector>(v: [V; 4], p: *mut f32, stride: usize, len: usize) {
    // SAFETY: the caller vouches for the four ranges.
    unsafe {
        v[0].store(p, len);
        v[1].store(p.add(stride), len);
        v[2].store(p.add(2 * stride), len);
        v[3].store(p.add(3 * stride), len);
    }
}

/// Defines `$name`, which runs the generic kernel `$body` on `Avx512` vectors, compiled for AVX-512, when
/// the CPU has it (checked at run time), and on single floats otherwise.
macro_rules! dispatch {
    ($name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) {
                $body::<Avx512>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                return unsafe { avx512($($arg),*) };
            }
            $body::<f32>($($arg),*)
        }
    };
}

/// `U = G g G^T` for every filter and channel of `w` (`[f, 3, 3, c]`), as 16 matrices `[cin, cout]`: for
/// the forward pass (`cin = c`), or with the kernel rotated by 180 degrees for the input gradient
/// (`cin = f`, `cout = c`) when `flip`. The GEMM reads these row-major without repacking them.
fn transform_weights(w: &[f32], f: usize, c: usize, flip: bool) -> Vec<f32> {
    let mut u = alloc::take(16 * f * c);
    let t = if flip {
        // Input channel `fi`, output channel `ci`: tap `k` at `w[(fi * 9 + k) * c + ci]`.
        WeightLayout { cin: f, cout: c, in_stride: 9 * c, out_stride: 1, tap_stride: c, flip }
    } else {
        WeightLayout { cin: c, cout: f, in_stride: 1, out_stride: 9 * c, tap_stride: c, flip }
    };
    weight_transform(w, &t, &mut u);
    u
}

/// Where the weight transform finds tap `k` of input channel `i` and output channel `o`:
/// `w[i * in_stride + o * out_stride + k * tap_stride]`, of the rotated kernel when `flip`.
struct WeightLayout {
    cin: usize,
    cout: usize,
    in_stride: usize,
    out_stride: usize,
    tap_stride: usize,
    flip: bool,
}

dispatch!(weight_transform => weight_kernel(w: &[f32], t: &WeightLayout, u: &mut [f32]));

#[inline(always)]
fn weight_kernel<V: Vector>(w: &[f32], t: &WeightLayout, u: &mut [f32]) {
    let (ci, co) = (t.cin, t.cout);
    if ci * co == 0 {
        return;
    }
    let last = (ci - 1) * t.in_stride + (co - 1) * t.out_stride + 8 * t.tap_stride;
    assert!(w.len() > last && u.len() >= 16 * ci * co, "winograd weights: sizes checked by the caller");
    // Output channels go in the vector lanes. Where they are not contiguous (the forward pass), a block of
    // `LANES` output by `LANES` input channels is loaded along the input channels and transposed.
    let mut g = [[V::zero(); 9]; 16];
    let mut block = [V::zero(); 16];
    // Reads run along the contiguous axis of `w` in the innermost loop: the output channels of the input
    // gradient's kernel, the input channels of the forward kernel.
    let (blocks_in, blocks_out) = (ci.div_ceil(V::LANES), co.div_ceil(V::LANES));
    let (outer, inner) = if t.out_stride == 1 { (blocks_in, blocks_out) } else { (blocks_out, blocks_in) };
    for a in 0..outer {
        for b in 0..inner {
            let (ib, ob) = if t.out_stride == 1 { (a, b) } else { (b, a) };
            let (i0, o0) = (ib * V::LANES, ob * V::LANES);
            let (ilen, len) = (V::LANES.min(ci - i0), V::LANES.min(co - o0));
            // SAFETY: tap `k` of input channel `i` and output channel `o` is read at most `last` floats
            // in, and only for `i < ci`, `o < co`; position `xi` writes `u[(xi * ci + i) * co + o0..][..len]`,
            // inside `16 * ci * co`.
            unsafe {
                for k in 0..9 {
                    // Tap `(ky, kx)` of the rotated kernel is tap `(2 - ky, 2 - kx)`: row-major order reversed.
                    let tap = if t.flip { 8 - k } else { k };
                    let src = w.as_ptr().add(i0 * t.in_stride + o0 * t.out_stride + tap * t.tap_stride);
                    if t.out_stride == 1 {
                        for ii in 0..ilen {
                            g[ii][k] = V::load(src.add(ii * t.in_stride), len);
                        }
                    } else {
                        // Each filter's taps are one of `9 * len` interleaved streams, too many for the
                        // hardware prefetcher to follow: fetch two blocks ahead.
                        for (o, row) in block[..V::LANES].iter_mut().enumerate() {
                            *row = if o < len { V::load(src.add(o * t.out_stride), ilen) } else { V::zero() };
                            V::prefetch(src.wrapping_add(o * t.out_stride + 2 * V::LANES));
                        }
                        V::transpose(&mut block);
                        for ii in 0..ilen {
                            g[ii][k] = block[ii];
                        }
                    }
                }
                for (ii, gi) in g[..ilen].iter().enumerate() {
                    // Along kx for each kernel row, then along ky.
                    let rows = [gm([gi[0], gi[1], gi[2]]), gm([gi[3], gi[4], gi[5]]), gm([gi[6], gi[7], gi[8]])];
                    for j in 0..4 {
                        let col = gm([rows[0][j], rows[1][j], rows[2][j]]);
                        store4(col, u.as_mut_ptr().add((j * ci + i0 + ii) * co + o0), 4 * ci * co, len);
                    }
                }
            }
        }
    }
}

dispatch!(input_transform => input_kernel(x: &[f32], s: &Problem, u0: usize, u1: usize, v: &mut [f32]));

/// Writes `V = B^T d B` of the tiles in tile rows `u0..u1` of `x` into `v`, tile by tile (`[tiles, 16, cin]`):
/// each tile's 16 vectors go to one contiguous run, which measured faster (bench_ops resnet18 64->64
/// 16px forward 3.8 -> 3.3 ms) than 16 separate `[tiles, cin]` matrices, and the GEMM reads `V_xi` as a
/// matrix with row stride `16 cin`.
#[inline(always)]
fn input_kernel<V: Vector>(x: &[f32], s: &Problem, u0: usize, u1: usize, v: &mut [f32]) {
    let (th, tw) = s.tiles();
    let c = s.cin;
    assert!(x.len() >= s.n * s.h * s.w * c && v.len() >= 16 * (u1 - u0) * tw * c && u1 <= s.n * th);
    // Taps in the padding read this instead of the image.
    let zeros = vec![0.0f32; c];
    for unit in u0..u1 {
        let (img, ty) = (unit / th, unit % th);
        // Where each of the tile's input rows starts, or `None` in the padding.
        let mut rows = [None; 4];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = (2 * ty + i).checked_sub(1).filter(|&iy| iy < s.h).map(|iy| (img * s.h + iy) * s.w * c);
        }
        for tx in 0..tw {
            let t = (unit - u0) * tw + tx;
            let mut src = [[zeros.as_ptr(); 4]; 4];
            for (j, ix) in (2 * tx..2 * tx + 4).enumerate() {
                if let Some(ix) = ix.checked_sub(1).filter(|&ix| ix < s.w) {
                    for i in 0..4 {
                        if let Some(r) = rows[i] {
                            src[i][j] = x[r + ix * c..].as_ptr();
                        }
                    }
                }
            }
            for c0 in (0..c).step_by(V::LANES) {
                let len = V::LANES.min(c - c0);
                // SAFETY: each `src` points at `c` floats of `x` or of `zeros`, of which this reads
                // `c0..c0 + len`; position `xi` writes `v[(t * 16 + xi) * c + c0..][..len]`, inside the
                // length asserted above.
                unsafe {
                    let pix = |i: usize, j: usize| V::load(src[i][j].add(c0), len);
                    // Along the columns of each tile row, then along the rows.
                    let e = [
                        bt([pix(0, 0), pix(0, 1), pix(0, 2), pix(0, 3)]),
                        bt([pix(1, 0), pix(1, 1), pix(1, 2), pix(1, 3)]),
                        bt([pix(2, 0), pix(2, 1), pix(2, 2), pix(2, 3)]),
                        bt([pix(3, 0), pix(3, 1), pix(3, 2), pix(3, 3)]),
                    ];
                    for j in 0..4 {
                        store4(bt(column(&e, j)), v.as_mut_ptr().add((t * 16 + j) * c + c0), 4 * c, len);
                    }
                }
            }
        }
    }
}

dispatch!(output_transform => output_kernel(
    m: &[f32],
    s: &Problem,
    u0: usize,
    u1: usize,
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32]
));

/// Writes `A^T m A` of the GEMM results `m` (16 matrices `[tiles, cout]`) of tile rows `u0..u1`, plus the
/// bias and then ReLU when asked, into `out`, which starts at the first output row of tile row `u0`.
#[inline(always)]
fn output_kernel<V: Vector>(
    m: &[f32],
    s: &Problem,
    u0: usize,
    u1: usize,
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    let (th, tw) = s.tiles();
    let f = s.cout;
    let xi_stride = (u1 - u0) * tw * f;
    let base = s.first_row(u0);
    assert!(m.len() >= 16 * xi_stride && out.len() >= (s.first_row(u1) - base) * s.w * f);
    assert!(bias.is_none_or(|b| b.len() >= f));
    for unit in u0..u1 {
        let (img, ty) = (unit / th, unit % th);
        let (oy0, rows) = (img * s.h + 2 * ty - base, 2.min(s.h - 2 * ty));
        for tx in 0..tw {
            let t = (unit - u0) * tw + tx;
            let cols = 2.min(s.w - 2 * tx);
            for c0 in (0..f).step_by(V::LANES) {
                let len = V::LANES.min(f - c0);
                // SAFETY: position `xi` reads `m[xi * xi_stride + t * f + c0..][..len]`, the bias
                // `b[c0..][..len]`, and output pixel `(oy0 + p, 2 tx + q)` of this chunk is written at
                // `c0..c0 + len`, all inside the lengths asserted above.
                unsafe {
                    let (p0, xs) = (m.as_ptr().add(t * f + c0), xi_stride);
                    let e = [
                        at(load4::<V>(p0, xs, len)),
                        at(load4::<V>(p0.add(4 * xs), xs, len)),
                        at(load4::<V>(p0.add(8 * xs), xs, len)),
                        at(load4::<V>(p0.add(12 * xs), xs, len)),
                    ];
                    let y = [at([e[0][0], e[1][0], e[2][0], e[3][0]]), at([e[0][1], e[1][1], e[2][1], e[3][1]])];
                    let b = match bias {
                        Some(b) => V::load(b.as_ptr().add(c0), len),
                        None => V::zero(),
                    };
                    for p in 0..rows {
                        for q in 0..cols {
                            let val = y[q][p].add(b);
                            let val = if relu { val.relu() } else { val };
                            val.store(out.as_mut_ptr().add(((oy0 + p) * s.w + 2 * tx + q) * f + c0), len);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "winograd_tests.rs"]
mod tests;
