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
//! rotated by 180 degrees and input and output channels swapped, so both passes share one routine. The
//! weight gradient (`weight_grad.rs`) goes through the same tiles by the chain rule.

mod transforms;
mod vector;
mod weight_grad;

use std::sync::Mutex;

use super::Conv2dGeom;
use super::cpu::run_chunks;
use crate::autocast::Precision;
use crate::cpu::alloc;
use crate::ops::matmul::bf16 as gemm16;
use crate::ops::matmul::cpu::{Mat, MatMut, Rhs, gemm_rhs};
use transforms::{input_transform, input_transform_bf16, output_transform, transform_weights};
pub(super) use weight_grad::backward_weight;
#[cfg(test)]
use weight_grad::backward_weight_with;

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
/// `MIN_CHANNELS` channels in and out and `MIN_BATCH_TILES` tiles, on a CPU with AVX-512F, unless
/// `TINY_WINOGRAD=0` (read once per process) sends these convolutions through im2col, as on CPUs without
/// AVX-512: a switch for measuring one path against the other (the last bits of results change).
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
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let off = *OFF.get_or_init(|| std::env::var("TINY_WINOGRAD").as_deref() == Ok("0"));
        shape && sized && !off && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (shape, sized);
        false
    }
}

/// The forward convolution of `x` (`[n, h, w, c]`) by `w` (`[f, 3, 3, c]`), plus `bias` and then ReLU when
/// asked; returns `[n, h, w, f]`. `g` must be `eligible`. In bf16 the transformed tiles and weights are what is
/// rounded: the weights as the 16 GEMMs pack them, the tiles as the input transform stores them; the transforms'
/// arithmetic stays f32.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Conv2dGeom,
    precision: Precision,
) -> Vec<f32> {
    let u = transform_weights(w, g.f, g.c, false);
    let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.c, cout: g.f, precision };
    let out = run(x, &u, &s, bias, relu);
    alloc::give(u);
    out
}

/// The input gradient `[n, h, w, c]` from the output gradient `dout` (`[n, h, w, f]`) and `w`
/// (`[f, 3, 3, c]`). `g` must be `eligible`.
pub(super) fn backward_input(dout: &[f32], w: &[f32], g: &Conv2dGeom, precision: Precision) -> Vec<f32> {
    let u = transform_weights(w, g.f, g.c, true);
    let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.f, cout: g.c, precision };
    let dx = run(dout, &u, &s, None, false);
    alloc::give(u);
    dx
}

/// One 3x3, stride-1, padding-1 convolution of `n` images of `h x w` from `cin` channels to `cout`, its GEMMs
/// in `precision`.
struct Problem {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    precision: Precision,
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

/// Tile rows per chunk: chunks near `CHUNK_FLOATS` with at least `MIN_TILES` tiles. The plan does not look
/// at the thread count: each chunk's GEMMs have as many rows as it has tiles, and the gemm crate blocks their
/// sums by the size of the call, so a plan that followed the threads could change a result's last bits.
fn plan(s: &Problem, units: usize) -> usize {
    let tw = s.tiles().1;
    let by_size = CHUNK_FLOATS / (tw * 16 * (s.cin + s.cout)).max(1);
    let by_tiles = MIN_TILES.div_ceil(tw);
    let per_chunk = by_size.max(by_tiles).clamp(1, units);
    units.div_ceil(units.div_ceil(per_chunk))
}

/// Runs the convolution `s` of `src` with the transformed weights `u`, fusing `bias` and ReLU into the
/// output transform.
fn run(src: &[f32], u: &[f32], s: &Problem, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    let units = s.n * s.tiles().0;
    run_with(src, u, s, bias, relu, plan(s, units.max(1)), Rounding::Transform)
}

/// Where the bf16 products' tiles are rounded to bf16: by the input transform as it stores them (what `run`
/// does: the f32 tiles are never written), or by the GEMM as it packs f32 tiles (the route the tests compare
/// it with, bit for bit). Products in f32 ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounding {
    Transform,
    /// Only the tests' reference route.
    #[cfg(test)]
    Packing,
}

/// `run` with `per_chunk` tile rows a chunk, its bf16 tiles rounded where `rounding` says.
fn run_with(
    src: &[f32],
    u: &[f32],
    s: &Problem,
    bias: Option<&[f32]>,
    relu: bool,
    per_chunk: usize,
    rounding: Rounding,
) -> Vec<f32> {
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
    // The 16 weight matrices, prepared once for every chunk (packed into bf16 for bf16 products).
    // Packed by all the threads: for 512 channels the 16 matrices are 4M values, which one thread would pack
    // while the other waits.
    let pack = |xi: usize| Rhs::new(Mat { offset: xi * s.cin * s.cout, ..Mat::rows(u, s.cin, s.cout) }, s.precision);
    let ranges = crate::cpu::parallel::ranges(16, if s.precision == Precision::Bf16 { s.cin * s.cout } else { 0 });
    let weights: Vec<Rhs<'_>> =
        crate::cpu::parallel::each_range(&ranges, |r| r.map(pack).collect::<Vec<_>>()).into_iter().flatten().collect();
    // In bf16 the input transform writes the tiles as rows of pairs (`Lhs::Rows`: 16 rows of `cin.div_ceil(2)`
    // pairs a tile, `tile` pairs apart, padded to whole tiles of rows), which the GEMMs read without packing them.
    let (pairs, tile) = (s.cin.div_ceil(2), transforms::bf16_tile_pairs(s.cin));
    let rows_of_pairs = s.precision == Precision::Bf16 && rounding == Rounding::Transform;
    run_chunks(chunks, |range, threads| {
        let padded = (per_chunk * tw).div_ceil(gemm16::ROW_PADDING) * gemm16::ROW_PADDING;
        let mut v = alloc::take(if rows_of_pairs { 0 } else { 16 * per_chunk * tw * s.cin });
        let mut v16 = alloc::take_words(if rows_of_pairs { padded * tile } else { 0 });
        let mut m = alloc::take(16 * per_chunk * tw * s.cout);
        for ch in range {
            let (u0, u1) = span(ch);
            let tiles = (u1 - u0) * tw;
            if rows_of_pairs {
                input_transform_bf16(src, s, u0, u1, gemm16::as_halves(&mut v16[..tiles * tile]));
            } else {
                input_transform(src, s, u0, u1, &mut v[..16 * tiles * s.cin]);
            }
            for xi in 0..16 {
                let dst = MatMut { offset: xi * tiles * s.cout, ..MatMut::rows(&mut m, tiles, s.cout) };
                match &weights[xi] {
                    Rhs::Bf16(packed) if rows_of_pairs => {
                        let a = gemm16::Lhs::Rows { data: &v16[xi * pairs..], rows: tiles, k: s.cin, stride: tile };
                        gemm16::gemm_packed(dst, false, a, packed, threads);
                    }
                    b => {
                        let a = Mat { data: &v, offset: xi * s.cin, rows: tiles, cols: s.cin, rs: 16 * s.cin, cs: 1 };
                        gemm_rhs(dst, false, a, b, threads);
                    }
                }
            }
            let mut guard = slices[ch].lock().unwrap_or_else(|e| e.into_inner());
            output_transform(&m[..16 * tiles * s.cout], s, u0, u1, bias, relu, &mut guard);
        }
        alloc::give(v);
        alloc::give_words(v16);
        alloc::give(m);
    });
    drop(slices);
    out
}

#[cfg(test)]
mod tests;
