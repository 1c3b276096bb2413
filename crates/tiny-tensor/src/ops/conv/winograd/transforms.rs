//! The Winograd F(2x2, 3x3) transforms: weights `G g G^T`, input tiles `B^T d B`, and outputs `A^T m A`.

use super::Problem;
#[cfg(target_arch = "x86_64")]
use super::vector::Avx512;
use super::vector::{Vector, at, bt, column, dispatch, gm, load4, store4};
use std::ops::Range;

use crate::cpu::{alloc, parallel};

/// `U = G g G^T` for every filter and channel of `w` (`[f, 3, 3, c]`), as 16 matrices `[cin, cout]`: for
/// the forward pass (`cin = c`), or with the kernel rotated by 180 degrees for the input gradient
/// (`cin = f`, `cout = c`) when `flip`. The GEMM reads these row-major without repacking them.
pub(super) fn transform_weights(w: &[f32], f: usize, c: usize, flip: bool) -> Vec<f32> {
    let mut u = alloc::take(16 * f * c);
    let t = if flip {
        // Input channel `fi`, output channel `ci`: tap `k` at `w[(fi * 9 + k) * c + ci]`.
        WeightLayout { cin: f, cout: c, in_stride: 9 * c, out_stride: 1, tap_stride: c, flip }
    } else {
        WeightLayout { cin: c, cout: f, in_stride: 1, out_stride: 9 * c, tap_stride: c, flip }
    };
    // Blocks of 16 input channels shared among the threads, each writing its own rows of the 16 matrices: on one
    // thread the transform was 4% of a resnet18 step at 128 px, twice per layer, while the other thread waited.
    let blocks = t.cin.div_ceil(16);
    let out = Rows { ptr: u.as_mut_ptr(), len: u.len() };
    parallel::each_range(&parallel::ranges(blocks, 16 * 16 * t.cout), |r| {
        weight_transform(w, &t, r.start * 16..(r.end * 16).min(t.cin), out)
    });
    u
}

/// The transformed weights, shared by the threads of `transform_weights`: each writes only the rows of its own
/// input channels.
#[derive(Clone, Copy)]
pub(super) struct Rows {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: the threads of `transform_weights` write disjoint rows (their own input channels) and nothing else
// touches the buffer while they run: it is borrowed mutably for the whole call.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

/// Where the weight transform finds tap `k` of input channel `i` and output channel `o`:
/// `w[i * in_stride + o * out_stride + k * tap_stride]`, of the rotated kernel when `flip`.
pub(super) struct WeightLayout {
    cin: usize,
    cout: usize,
    in_stride: usize,
    out_stride: usize,
    tap_stride: usize,
    flip: bool,
}

dispatch! {
/// Writes `U = G g G^T` of every input and output channel pair of `w`, read through the strides of `t`,
/// into `u` (see `transform_weights`), for the input channels `inputs` (which start on a multiple of 16).
fn weight_transform<V>(w: &[f32], t: &WeightLayout, inputs: Range<usize>, u: Rows) {
    let (ci, co) = (t.cin, t.cout);
    if ci * co == 0 || inputs.is_empty() {
        return;
    }
    let last = (ci - 1) * t.in_stride + (co - 1) * t.out_stride + 8 * t.tap_stride;
    assert!(w.len() > last && u.len >= 16 * ci * co, "winograd weights: sizes checked by the caller");
    assert!(inputs.start.is_multiple_of(16) && inputs.end <= ci);
    // Output channels go in the vector lanes. Where they are not contiguous (the forward pass), a block of
    // `LANES` output by `LANES` input channels is loaded along the input channels and transposed.
    let mut g = [[V::zero(); 9]; 16];
    let mut block = [V::zero(); 16];
    // Reads run along the contiguous axis of `w` in the innermost loop: the output channels of the input
    // gradient's kernel, the input channels of the forward kernel.
    let ibs = inputs.start / V::LANES..inputs.end.div_ceil(V::LANES);
    let blocks_out = co.div_ceil(V::LANES);
    let (outer, inner) = if t.out_stride == 1 { (ibs.len(), blocks_out) } else { (blocks_out, ibs.len()) };
    for a in 0..outer {
        for b in 0..inner {
            let (ib, ob) = if t.out_stride == 1 { (ibs.start + a, b) } else { (ibs.start + b, a) };
            let (i0, o0) = (ib * V::LANES, ob * V::LANES);
            let (ilen, len) = (V::LANES.min(inputs.end - i0), V::LANES.min(co - o0));
            // SAFETY: tap `k` of input channel `i` and output channel `o` is read at most `last` floats
            // in, and only for `i < ci`, `o < co`; position `xi` writes `u[(xi * ci + i) * co + o0..][..len]`,
            // inside `16 * ci * co`, only for `i` in `inputs`, which no other thread is given.
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
                        store4(col, u.ptr.add((j * ci + i0 + ii) * co + o0), 4 * ci * co, len);
                    }
                }
            }
        }
    }
}
}

dispatch! {
/// Writes `V = B^T d B` of the tiles in tile rows `u0..u1` of `x` into `v`, tile by tile (`[tiles, 16, cin]`):
/// each tile's 16 vectors go to one contiguous run, which measured faster (bench_ops resnet18 64->64
/// 16px forward 3.8 -> 3.3 ms) than 16 separate `[tiles, cin]` matrices, and the GEMM reads `V_xi` as a
/// matrix with row stride `16 cin`.
fn input_transform<V>(x: &[f32], s: &Problem, u0: usize, u1: usize, v: &mut [f32]) {
    assert!(v.len() >= 16 * (u1 - u0) * s.tiles().1 * s.cin);
    // SAFETY: `v` holds the 16 rows of `cin` values of every tile, back to back, as just asserted.
    unsafe { tiles_with::<V, _>(x, s, u0, u1, F32Rows(v.as_mut_ptr()), 16 * s.cin) }
}
}

dispatch! {
/// [`input_transform`] rounded to bf16 as it is stored, for the bf16 GEMM to read as rows of pairs
/// (`Lhs::Rows`): each tile's 16 rows of `cin.div_ceil(2)` pairs (an odd `cin`'s last half zero), the tiles
/// [`bf16_tile_pairs`] apart. The values are those the GEMM's packing would make of `input_transform`'s, without
/// writing and reading the f32 tiles once more.
fn input_transform_bf16<V>(x: &[f32], s: &Problem, u0: usize, u1: usize, v: &mut [u16]) {
    let (tiles, width) = ((u1 - u0) * s.tiles().1, Bf16Rows::width(s.cin));
    let tile = 2 * bf16_tile_pairs(s.cin);
    assert!(v.len() >= tiles * tile);
    // SAFETY: `v` holds every tile's 16 rows of `width` halves at `tile` halves apart, as just asserted.
    unsafe { tiles_with::<V, _>(x, s, u0, u1, Bf16Rows(v.as_mut_ptr()), tile) }
    if width > s.cin {
        (0..tiles).for_each(|t| (0..16).for_each(|xi| v[t * tile + xi * width + s.cin] = 0));
    }
}
}

/// The pairs from one tile's rows to the next in [`input_transform_bf16`]'s output: its 16 rows and one cache line
/// more, so that a GEMM reading one position's rows down the tiles does not stride by a power of two (16 rows of
/// 128, 256 or 512 channels are 4, 8 or 16 KiB, which would put every row of a block in the same cache sets).
pub(super) fn bf16_tile_pairs(cin: usize) -> usize {
    16 * cin.div_ceil(2) + 16
}

/// Where the input transform stores each tile's 16 rows of channels.
trait TileRows: Copy {
    /// Elements from one row to the next, for `c` channels.
    fn width(c: usize) -> usize;
    /// Stores the first `len` lanes of `v` at element `at`.
    ///
    /// # Safety
    /// Elements `at..at + len` must be writable.
    unsafe fn put<V: Vector>(self, v: V, at: usize, len: usize);
}

/// f32 rows of `c` values.
#[derive(Clone, Copy)]
struct F32Rows(*mut f32);

impl TileRows for F32Rows {
    #[inline(always)]
    fn width(c: usize) -> usize {
        c
    }
    #[inline(always)]
    unsafe fn put<V: Vector>(self, v: V, at: usize, len: usize) {
        // SAFETY: the caller vouches for the range.
        unsafe { v.store(self.0.add(at), len) }
    }
}

/// bf16 rows of `c.div_ceil(2)` pairs.
#[derive(Clone, Copy)]
struct Bf16Rows(*mut u16);

impl TileRows for Bf16Rows {
    #[inline(always)]
    fn width(c: usize) -> usize {
        c.next_multiple_of(2)
    }
    #[inline(always)]
    unsafe fn put<V: Vector>(self, v: V, at: usize, len: usize) {
        // SAFETY: the caller vouches for the range.
        unsafe { v.store_bf16(self.0.add(at), len) }
    }
}

/// The input transform of tile rows `u0..u1`, stored through `out`: tile `t`'s position `xi` at element
/// `t * tile + xi * S::width(cin)`.
///
/// # Safety
/// `out` must be writable for `tiles * tile` elements, `tiles` the tiles of those rows, and `tile` at least
/// `16 * S::width(cin)`.
#[inline(always)]
unsafe fn tiles_with<V: Vector, S: TileRows>(x: &[f32], s: &Problem, u0: usize, u1: usize, out: S, tile: usize) {
    let (th, tw) = s.tiles();
    let c = s.cin;
    let width = S::width(c);
    assert!(x.len() >= s.n * s.h * s.w * c && u1 <= s.n * th);
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
                // `c0..c0 + len`; position `xi` is stored at `[t * tile + xi * width + c0..][..len]`, inside
                // what the caller vouches for.
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
                        let col = bt(column(&e, j));
                        for (i, v) in col.into_iter().enumerate() {
                            out.put(v, t * tile + (j + 4 * i) * width + c0, len);
                        }
                    }
                }
            }
        }
    }
}

dispatch! {
/// Writes `A^T m A` of the GEMM results `m` (16 matrices `[tiles, cout]`) of tile rows `u0..u1`, plus the
/// bias and then ReLU when asked, into `out`, which starts at the first output row of tile row `u0`.
fn output_transform<V>(
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
}
