//! The bf16 GEMM against sums of exact bf16 products, and its kernels, packings and thread splits against
//! each other, bit for bit.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{KC, Lhs, PackedB, Rhs, product as run_product, tile_vectors};
use crate::cpu::bf16::{Bf16Kernel, bf16_kernel, dot_pair, pair, round, round_f32};
use crate::ops::matmul::cpu::{Mat, MatMut};

/// A `rows x cols` matrix in a buffer of its own, in one of three memory orders: row-major, column-major
/// (a transposed view), or rows and columns both strided (a padded, every-other-column view).
fn matrix(rng: &mut StdRng, rows: usize, cols: usize, order: usize) -> (Vec<f32>, usize, usize) {
    let (rs, cs, len) = match order {
        0 => (cols, 1, rows * cols),
        1 => (1, rows, rows * cols),
        _ => (2 * cols + 3, 2, rows * (2 * cols + 3)),
    };
    let mut data = vec![f32::NAN; len.max(1)];
    for i in 0..rows {
        for j in 0..cols {
            data[i * rs + j * cs] = rng.random_range(-2.0..2.0);
        }
    }
    (data, rs, cs)
}

/// `dst (+)= a @ b` through the bf16 GEMM with `kernel` and `threads` threads, B packed whole beforehand
/// (`packed`) or a block at a time.
fn product(a: Mat<'_>, b: Mat<'_>, init: &[f32], accumulate: bool, threads: usize, kernel: Bf16Kernel) -> Vec<f32> {
    product_with(a, b, init, accumulate, threads, kernel, true)
}

/// The vector kernels this CPU can run: the portable one always, AVX512-BF16 where it is (the tiles have tests
/// of their own).
fn kernels() -> Vec<Bf16Kernel> {
    if bf16_kernel().has_avx512_bf16() {
        vec![Bf16Kernel::Portable, Bf16Kernel::Avx512Bf16]
    } else {
        vec![Bf16Kernel::Portable]
    }
}

/// Whether the AMX tiles run here; where they do not, says the test is skipped and why, or fails the test when
/// `TINY_REQUIRE_AMX=1` (as `TINY_REQUIRE_CUDA` does for the GPU).
fn tiles_or_skip(test: &str) -> bool {
    match crate::cpu::bf16::amx_tiles() {
        Ok(()) => true,
        Err(reason) if std::env::var("TINY_REQUIRE_AMX").as_deref() == Ok("1") => {
            panic!("{test}: TINY_REQUIRE_AMX=1, but the AMX tiles cannot run: {reason}")
        }
        Err(reason) => {
            eprintln!("{test}: skipped: {reason}");
            false
        }
    }
}

fn product_with(
    a: Mat<'_>,
    b: Mat<'_>,
    init: &[f32],
    acc: bool,
    threads: usize,
    kernel: Bf16Kernel,
    packed: bool,
) -> Vec<f32> {
    let mut out = init.to_vec();
    let dst = MatMut::rows(&mut out, a.rows, b.cols);
    if packed {
        run_product(dst, acc, Lhs::F32(a), Rhs::Packed(&PackedB::for_kernel(b, kernel)), threads);
    } else {
        run_product(dst, acc, Lhs::F32(a), Rhs::Streamed { b, nv: tile_vectors(b.cols), kernel }, threads);
    }
    out
}

/// Shapes that reach every tile width (16, 32, 48 and 64 columns), the edges of tiles, of k blocks and of the
/// tiles' groups of blocks, odd k and splits by rows and by columns.
const SHAPES: [(usize, usize, usize); 11] = [
    (70, 48, 2501),
    (1, 1, 1),
    (5, 7, 3),
    (13, 16, 9),
    (25, 17, 257),
    (24, 32, 256),
    (40, 33, 600),
    (100, 70, 513),
    (3, 200, 40),
    (32, 144, 300),
    (9, 64, 31),
];

#[test]
fn each_element_is_the_f32_sum_of_exact_bf16_products() {
    for kernel in kernels() {
        sums_of_exact_products(kernel);
    }
}

fn sums_of_exact_products(kernel: Bf16Kernel) {
    let mut rng = StdRng::seed_from_u64(3);
    for (m, n, k) in SHAPES {
        let (a, ars, acs) = matrix(&mut rng, m, k, 0);
        let (b, brs, bcs) = matrix(&mut rng, k, n, 0);
        let am = Mat { data: &a, offset: 0, rows: m, cols: k, rs: ars, cs: acs };
        let bm = Mat { data: &b, offset: 0, rows: k, cols: n, rs: brs, cs: bcs };
        let got = product(am, bm, &vec![0.0; m * n], false, 1, kernel);
        let mut off_by_rounding = 0;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut scale, mut unrounded) = (0f64, 0f64, 0f64);
                for p in 0..k {
                    let (x, y) = (a[i * ars + p * acs], b[p * brs + j * bcs]);
                    exact += f64::from(round_f32(x)) * f64::from(round_f32(y));
                    scale += f64::from(round_f32(x) * round_f32(y)).abs();
                    unrounded += f64::from(x) * f64::from(y);
                }
                // k roundings of a running f32 sum, each at most half an ulp of a partial sum.
                let tol = k as f64 * 2f64.powi(-24) * scale;
                let g = f64::from(got[i * n + j]);
                assert!(
                    (g - exact).abs() <= tol,
                    "{kernel} {m}x{n}x{k} ({i}, {j}): {g} vs {exact} (tolerance {tol:e})"
                );
                off_by_rounding += usize::from((g - unrounded).abs() > tol);
            }
        }
        // The operands really were rounded: the f32 operands' product is further away than the sums' error.
        // (Past a thousand values of k the tolerance is wider than the operands' rounding moves a sum.)
        assert!(
            !(8..=1000).contains(&k) || off_by_rounding > m * n / 2,
            "{m}x{n}x{k}: {off_by_rounding} of {} off",
            m * n
        );
    }
}

/// Calls `check` with every shape of [`SHAPES`] in each pair of memory `orders` (see [`matrix`]), writing over
/// and accumulating into a random destination, and a name for the case.
fn each_case(seed: u64, orders: &[(usize, usize)], check: impl Fn(&str, Mat<'_>, Mat<'_>, &[f32], bool)) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (m, n, k) in SHAPES {
        for &(order_a, order_b) in orders {
            let (a, ars, acs) = matrix(&mut rng, m, k, order_a);
            let (b, brs, bcs) = matrix(&mut rng, k, n, order_b);
            let am = Mat { data: &a, offset: 0, rows: m, cols: k, rs: ars, cs: acs };
            let bm = Mat { data: &b, offset: 0, rows: k, cols: n, rs: brs, cs: bcs };
            let init: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            for accumulate in [false, true] {
                let case = format!("{m}x{n}x{k} orders {order_a}/{order_b} accumulate {accumulate}");
                check(&case, am, bm, &init, accumulate);
            }
        }
    }
}

/// Whether two results are the same bits.
fn same_bits(x: &[f32], y: &[f32]) -> bool {
    x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn kernels_packings_and_thread_counts_give_the_same_bits() {
    let vector = kernels().contains(&Bf16Kernel::Avx512Bf16);
    if !vector {
        eprintln!("this CPU has no AVX512-BF16: only the portable kernel is compared across thread counts");
    }
    let avx512 = if vector { Bf16Kernel::Avx512Bf16 } else { Bf16Kernel::Portable };
    each_case(5, &[(0, 0), (1, 1), (0, 1), (1, 0), (2, 2)], |case, am, bm, init, accumulate| {
        // The portable kernel and AVX512-BF16 agree bit for bit, whatever the threads and packing.
        let want = product(am, bm, init, accumulate, 1, Bf16Kernel::Portable);
        for (threads, kernel, packed) in
            [(2, Bf16Kernel::Portable, false), (1, avx512, true), (2, avx512, false), (3, avx512, true)]
        {
            let got = product_with(am, bm, init, accumulate, threads, kernel, packed);
            assert!(same_bits(&got, &want), "{case} threads {threads} {kernel} packed {packed}");
        }
    });
}

#[test]
fn ties_round_to_even_before_the_product() {
    // 1 + 2^-8 lies halfway between two bf16: it rounds to 1; 1 + 3 * 2^-8 rounds up to 1 + 2^-6.
    let a = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)];
    let b = [1.0, 1.0];
    let am = Mat::rows(&a, 1, 2);
    let bm = Mat::rows(&b, 2, 1);
    for kernel in kernels() {
        assert_eq!(product(am, bm, &[0.0], false, 1, kernel), [2.0 + 2f32.powi(-6)], "{kernel}");
        assert_eq!(product(am, bm, &[0.5], true, 1, kernel), [2.5 + 2f32.powi(-6)], "{kernel}");
    }
}

#[test]
fn the_amx_tiles_sum_exact_bf16_products() {
    if tiles_or_skip("the_amx_tiles_sum_exact_bf16_products") {
        sums_of_exact_products(Bf16Kernel::AmxBf16);
    }
}

/// The tiles sum in their own order, so their bits are compared with themselves: across thread counts, packing
/// and memory orders (a transposed A is packed row-major by its own packer), accumulating or not.
#[test]
fn the_amx_tiles_give_the_same_bits_whatever_the_threads_and_packing() {
    if !tiles_or_skip("the_amx_tiles_give_the_same_bits_whatever_the_threads_and_packing") {
        return;
    }
    each_case(9, &[(0, 0), (1, 1), (0, 1), (2, 2)], |case, am, bm, init, accumulate| {
        let want = product(am, bm, init, accumulate, 1, Bf16Kernel::AmxBf16);
        // Within the tolerance of the exact sums from the vector kernel's (which is checked against them).
        let vector = product(am, bm, init, accumulate, 1, Bf16Kernel::Avx512Bf16);
        for (x, y) in want.iter().zip(&vector) {
            assert!((x - y).abs() <= 4e-5 * am.cols as f32, "{case}: tiles {x} vs vector {y}");
        }
        for (threads, packed) in [(2, false), (3, true), (1, false)] {
            let got = product_with(am, bm, init, accumulate, threads, Bf16Kernel::AmxBf16, packed);
            assert!(same_bits(&got, &want), "{case} threads {threads} tiles packed {packed}");
        }
    });
}

/// `init (+)= a @ b` as the GEMM sums it, written out with the scalar step: for each block of `KC` values of k,
/// a sum from zero over its pairs in order ([`dot_pair`]), added to the destination.
fn scalar_product(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), init: &[f32], accumulate: bool) -> Vec<f32> {
    let half = |v: &[f32], at: usize, stride: usize, p: usize| if p < k { round(v[at + p * stride]) } else { 0 };
    let mut out = init.to_vec();
    for i in 0..m {
        for j in 0..n {
            for k0 in (0..k).step_by(KC) {
                let mut sum = 0.0;
                for p in (k0..(k0 + KC).min(k)).step_by(2) {
                    let x = pair(half(a, i * k, 1, p), half(a, i * k, 1, p + 1));
                    let y = pair(half(b, j, n, p), half(b, j, n, p + 1));
                    sum = dot_pair(sum, x, y);
                }
                let d = &mut out[i * n + j];
                *d = if accumulate || k0 > 0 { *d + sum } else { sum };
            }
        }
    }
    out
}

/// Values whose products may come out denormal: tiny ones (2^-70 to 2^-56), ordinary ones and zeros, each in
/// the rows or blocks of k given by `tiny`.
fn mixed_values(rng: &mut StdRng, len: usize, tiny: impl Fn(usize) -> bool) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let e = if tiny(i) { rng.random_range(-70..-56) } else { rng.random_range(-4..4) };
            if rng.random_range(0..8) == 0 { 0.0 } else { rng.random_range(-2.0f32..2.0) * 2f32.powi(e) }
        })
        .collect()
}

/// The portable kernel leaves out its flushes where the operands' exponents show no sum can be denormal; where
/// one can (some rows, blocks of k or columns tiny), it flushes, and the result is the scalar step's bit for bit,
/// with A as f32 or as rows of pairs, B packed whole or streamed, on one thread or more.
#[test]
fn the_portable_kernel_flushes_exactly_where_a_sum_can_be_denormal() {
    let mut rng = StdRng::seed_from_u64(23);
    for (m, n, k) in [(40, 33, 600), (13, 16, 9), (100, 70, 513), (25, 64, 257)] {
        // A tiny in its odd rows' even blocks of k, B in its first 8 columns of all blocks but the third.
        let a = mixed_values(&mut rng, m * k, |i| (i / k) % 2 == 1 && ((i % k) / KC).is_multiple_of(2));
        let b = mixed_values(&mut rng, k * n, |i| i % n < 8 && (i / n) / KC != 2);
        let (am, bm) = (Mat::rows(&a, m, k), Mat::rows(&b, k, n));
        let init: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let k2 = k.div_ceil(2);
        for accumulate in [false, true] {
            let want = scalar_product(&a, &b, (m, n, k), &init, accumulate);
            for (threads, packed) in [(1, true), (2, false), (3, true)] {
                let got = product_with(am, bm, &init, accumulate, threads, Bf16Kernel::Portable, packed);
                assert!(
                    same_bits(&got, &want),
                    "{m}x{n}x{k} accumulate {accumulate} threads {threads} packed {packed}"
                );
            }
            for stride in [k2, k2 + 3] {
                let (mut got, rows) = (init.clone(), rows_of_pairs(&a, m, k, stride));
                let lhs = Lhs::Rows { data: &rows, rows: m, k, stride };
                let packed = PackedB::for_kernel(bm, Bf16Kernel::Portable);
                run_product(MatMut::rows(&mut got, m, n), accumulate, lhs, Rhs::Packed(&packed), 2);
                assert!(same_bits(&got, &want), "{m}x{n}x{k} accumulate {accumulate}, A as rows of pairs at {stride}");
            }
        }
    }
}

/// `a` (`m x k`, row-major) as rows of pairs for `Lhs::Rows`, row `i` at `stride * i`, the last row padded to a
/// whole tile of rows; the gaps between rows and the padding rows hold NaNs, which no valid row may read.
fn rows_of_pairs(a: &[f32], m: usize, k: usize, stride: usize) -> Vec<u32> {
    let k2 = k.div_ceil(2);
    let padded = m.div_ceil(super::ROW_PADDING) * super::ROW_PADDING;
    let mut rows = vec![0x7fc0_7fc0u32; (padded - 1) * stride + k2];
    for i in 0..m {
        for p in 0..k2 {
            let at = |q: usize| if q < k { round(a[i * k + q]) } else { 0 };
            rows[i * stride + p] = pair(at(2 * p), at(2 * p + 1));
        }
    }
    rows
}

/// A as rows of pairs, back to back or at a wider stride (a Winograd chunk's tiles), gives the bits of the same A
/// as f32 rows packed by the product, on every kernel this CPU runs, the tiles included, on one thread or two.
#[test]
fn rows_of_pairs_at_any_stride_give_the_bits_of_f32_rows() {
    let mut kernels = kernels();
    if tiles_or_skip("rows_of_pairs_at_any_stride_give_the_bits_of_f32_rows, its AMX part") {
        kernels.push(Bf16Kernel::AmxBf16);
    }
    let mut rng = StdRng::seed_from_u64(37);
    for (m, n, k) in [(40, 33, 600), (13, 16, 9), (100, 70, 513), (97, 64, 31)] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0..2.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let init: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        for &kernel in &kernels {
            let packed = PackedB::for_kernel(Mat::rows(&b, k, n), kernel);
            for (threads, accumulate) in [(1, false), (2, true)] {
                let mut want = init.clone();
                let f32_rows = Lhs::F32(Mat::rows(&a, m, k));
                run_product(MatMut::rows(&mut want, m, n), accumulate, f32_rows, Rhs::Packed(&packed), threads);
                for stride in [k.div_ceil(2), k.div_ceil(2) + 3, k.div_ceil(2) + 16] {
                    let (mut got, rows) = (init.clone(), rows_of_pairs(&a, m, k, stride));
                    let lhs = Lhs::Rows { data: &rows, rows: m, k, stride };
                    run_product(MatMut::rows(&mut got, m, n), accumulate, lhs, Rhs::Packed(&packed), threads);
                    assert!(same_bits(&got, &want), "{kernel:?} {m}x{n}x{k} stride {stride} threads {threads}");
                }
            }
        }
    }
}

#[test]
fn the_smallest_exponent_skips_zeros_and_counts_denormals_as_zero() {
    use super::kernel::smallest_exponent;
    let mut rng = StdRng::seed_from_u64(29);
    for len in [0, 1, 7, 8, 9, 64, 101] {
        for _ in 0..50 {
            let pairs: Vec<u32> = (0..len)
                .map(|_| {
                    let mut half = || match rng.random_range(0..6) {
                        0 => 0x8000 * rng.random_range(0..2u16),
                        1 => rng.random_range(1..0x80u16) | (0x8000 * rng.random_range(0..2u16)),
                        _ => rng.random::<u16>(),
                    };
                    pair(half(), half())
                })
                .collect();
            let want = pairs
                .iter()
                .flat_map(|&p| [p as u16, (p >> 16) as u16])
                .map(|h| if h & 0x7fff == 0 { 255 } else { (h >> 7) & 0xff })
                .min()
                .unwrap_or(255);
            assert_eq!(smallest_exponent(&pairs), want, "{pairs:08x?}");
        }
    }
}

/// The packing without bf16 instructions (AVX2 where the CPU has it) against pairs made one by one with
/// [`round`], for both layouts, lanes or k contiguous or neither, panel widths of the tiles, and values that
/// round to even, overflow, are denormal, infinite or NaN.
#[test]
fn packing_gives_the_pairs_of_rounding_each_value() {
    use super::pack::{Layout, Source, block};
    let mut rng = StdRng::seed_from_u64(31);
    let specials = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), f32::MAX, -1e-39, f32::INFINITY, f32::NAN, -0.0];
    for (lanes, kc) in [(1, 1), (5, 2), (13, 33), (24, 16), (40, 255), (3, 256), (17, 7)] {
        for width in [6, 12, 16, 32, 48] {
            for (lane_stride, k_stride) in [(1, lanes + 2), (kc + 1, 1), (2 * kc + 3, 2)] {
                let len = (lanes - 1) * lane_stride + (kc - 1) * k_stride + 1;
                let data: Vec<f32> = (0..len)
                    .map(|_| {
                        if rng.random_range(0..5) == 0 {
                            specials[rng.random_range(0..specials.len())]
                        } else {
                            rng.random_range(-3.0f32..3.0)
                        }
                    })
                    .collect();
                let src = Source { data: &data, offset: 0, lane_stride, k_stride };
                let (kc2, padded) = (kc.div_ceil(2), lanes.div_ceil(width) * width);
                let half = |l: usize, k: usize| {
                    if l < lanes && k < kc { round(data[l * lane_stride + k * k_stride]) } else { 0 }
                };
                for layout in [Layout::PanelMajor, Layout::RowMajor] {
                    let mut got = vec![0xdead_beef; padded * kc2];
                    block(src, lanes, width, kc, layout, &mut got, false);
                    for l in 0..padded {
                        for kp in 0..kc2 {
                            let (panel, i) = (l / width, l % width);
                            let at = panel * width * kc2
                                + if layout == Layout::PanelMajor { kp * width + i } else { i * kc2 + kp };
                            let want = pair(half(l, 2 * kp), half(l, 2 * kp + 1));
                            assert_eq!(
                                got[at], want,
                                "{lanes}x{kc} width {width} strides {lane_stride}/{k_stride} {layout:?}: lane {l}, pair {kp}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The threshold of `kernel::no_denormal_sums` is exact: with A's exponents 70 and B's 71 (2^-57 and 2^-56) two
/// products can differ by 2^-127, a denormal the instruction flushes to zero; one exponent more and they cannot.
#[test]
fn the_flushes_are_left_out_only_from_exponent_sum_142_on() {
    let (a0, b0) = (2f32.powi(-57), 2f32.powi(-56));
    let eighth = 2f32.powi(-7);
    // The odd products first: (1 + 2^-7)^2 - (1 + 2^-6) = 2^-14, times 2^-113.
    let a = [a0, (1.0 + eighth) * a0];
    for (scale, want) in [(1.0, 0.0), (2.0, 2f32.powi(-126))] {
        let b = [-(1.0 + 2.0 * eighth) * b0 * scale, (1.0 + eighth) * b0 * scale];
        for kernel in kernels() {
            let got = product(Mat::rows(&a, 1, 2), Mat::rows(&b, 2, 1), &[0.0], false, 1, kernel);
            assert_eq!(got[0].to_bits(), want.to_bits(), "{kernel}, B scaled by {scale}: {:e}", got[0]);
        }
    }
}

/// A B packed from pairs of rows of bf16 halves, put in runs that start and end anywhere (across panels too), is
/// the packing of those rows in f32: the same pairs, zeros in the padding columns and in the odd half past an odd
/// `k`, the same exponents; every word is written (the pool hands the larger packings a buffer of NaNs).
#[test]
fn packing_from_pairs_of_rows_gives_the_packing_of_the_rows() {
    let mut rng = StdRng::seed_from_u64(47);
    let specials = [1.0 + 2f32.powi(-8), f32::MAX, -1e-39, f32::INFINITY, f32::NAN, -0.0, 2f32.powi(-70)];
    for (k, n) in [(1, 1), (3, 17), (255, 40), (256, 48), (513, 100), (700, 545), (129, 1000)] {
        let b: Vec<f32> = (0..k * n)
            .map(|_| match rng.random_range(0..20) {
                0 => specials[rng.random_range(0..specials.len())],
                _ => rng.random_range(-2.0..2.0),
            })
            .collect();
        let want = PackedB::new(Mat::rows(&b, k, n));
        (0..4).for_each(|_| crate::cpu::alloc::give_words(vec![0x7fc1_7fc1; want.data.len()]));
        let halves: Vec<u16> = b.iter().map(|&v| round(v)).collect();
        let cuts: Vec<usize> = (0..n).filter(|_| rng.random_range(0..7) == 0).collect();
        let got = PackedB::from_row_pairs(k, n, |kp, row| {
            let (even, odd) = (&halves[2 * kp * n..][..n], (2 * kp + 1 < k).then(|| &halves[(2 * kp + 1) * n..][..n]));
            let mut from = 0;
            for to in cuts.iter().copied().chain([n]).filter(|&c| c > 0) {
                row.put(from, &even[from..to], odd.map(|o| &o[from..to]));
                from = to;
            }
        });
        assert_eq!((got.k, got.n, got.nv, got.kernel), (want.k, want.n, want.nv, want.kernel));
        assert!(got.data == want.data, "{k} x {n}");
        assert_eq!(got.exponents, want.exponents, "{k} x {n}");
    }
}

/// Runs of halves (what an im2col written straight into bf16 is made of) are [`round`] of each value, with the
/// vector conversions this CPU has (AVX2, AVX512-BF16) and at lengths that end inside a vector: ties both ways,
/// overflow, denormals, infinities, NaNs of both signs and zeros.
#[test]
fn halves_are_the_rounding_of_each_value() {
    let mut rng = StdRng::seed_from_u64(53);
    let specials = [
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-8),
        f32::MAX,
        -1e-39,
        f32::INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001),
        -0.0,
    ];
    for len in [0, 1, 7, 15, 16, 17, 33, 100] {
        let src: Vec<f32> = (0..len)
            .map(|_| match rng.random_range(0..3) {
                0 => specials[rng.random_range(0..specials.len())],
                _ => rng.random_range(-3.0f32..3.0),
            })
            .collect();
        let vectors = if bf16_kernel().has_avx512_bf16() { vec![false, true] } else { vec![false] };
        for vector in vectors {
            let mut out = vec![0xdead; len + 3];
            super::halves(&src, &mut out, vector);
            for (i, &v) in src.iter().enumerate() {
                assert_eq!(out[i], round(v), "length {len}, value {i} ({v:e}), vector {vector}");
            }
            assert!(out[len..].iter().all(|&h| h == 0xdead), "length {len}: wrote past the run");
        }
    }
}
