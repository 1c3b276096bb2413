//! The bf16 GEMM against sums of exact bf16 products, and its kernels, packings and thread splits against
//! each other, bit for bit.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Lhs, PackedB, Rhs, product as run_product, tile_vectors};
use crate::cpu::bf16::{Bf16Kernel, bf16_kernel, round_f32};
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
