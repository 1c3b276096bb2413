//! Unit tests of the CPU convolutions' bf16 paths: the fused im2cols and the stem's fused ReLU backward.

use super::*;

/// The bf16 forward that writes im2col straight into bf16 gives the bits of an f32 im2col packed by the GEMM:
/// the same roundings of the same values, summed in the same order.
#[test]
fn the_fused_bf16_im2col_changes_no_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for g in [
        Conv2dGeom { n: 3, c: 16, h: 9, w: 7, f: 32, kh: 3, kw: 3, stride: 2, pad: 1 },
        Conv2dGeom { n: 2, c: 6, h: 5, w: 5, f: 40, kh: 3, kw: 3, stride: 1, pad: 0 },
        Conv2dGeom { n: 1, c: 2, h: 11, w: 11, f: 8, kh: 7, kw: 7, stride: 2, pad: 3 },
        // Odd rows (45 values: each row ends with a zero half), and the 7x7 stem of resnet18 (147).
        Conv2dGeom { n: 2, c: 5, h: 6, w: 7, f: 20, kh: 3, kw: 3, stride: 1, pad: 1 },
        Conv2dGeom { n: 2, c: 3, h: 12, w: 12, f: 16, kh: 7, kw: 7, stride: 2, pad: 3 },
    ] {
        let x: Vec<f32> = (0..g.n * g.h * g.w * g.c).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w: Vec<f32> = (0..g.f * g.kh * g.kw * g.c).map(|_| rng.random_range(-1.0..1.0)).collect();
        let fused = conv2d_forward(&x, &w, None, false, &g, Precision::Bf16);
        let (rows, kkc) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c);
        let mut col = vec![0.0; rows * kkc];
        im2col(&x, &g, 0, g.n, &mut col);
        let mut want = vec![0.0; rows * g.f];
        let wt = Mat::rows(&w, g.f, kkc).t();
        gemm(MatMut::rows(&mut want, rows, g.f), false, Mat::rows(&col, rows, kkc), wt, 1, Precision::Bf16);
        assert!(fused.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?}");
    }
}

/// The bf16 weight gradient whose im2col is packed straight from the images gives the bits of an f32 im2col
/// packed by the GEMM: strides 1 and 2, paddings 0 to 3, odd pixel counts (the last pair of rows has one),
/// chunks of several images and blocks of k, channel runs that cross the kernels' panels, and values that round
/// to even, overflow, are denormal, infinite or NaN.
#[test]
fn the_bf16_weight_gradients_packed_im2col_changes_no_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let specials = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), f32::MAX, -1e-39, f32::INFINITY, f32::NAN, -0.0];
    for g in [
        Conv2dGeom { n: 3, c: 16, h: 9, w: 7, f: 32, kh: 3, kw: 3, stride: 2, pad: 1 },
        Conv2dGeom { n: 2, c: 6, h: 5, w: 5, f: 40, kh: 3, kw: 3, stride: 1, pad: 0 },
        Conv2dGeom { n: 5, c: 5, h: 6, w: 7, f: 20, kh: 3, kw: 3, stride: 1, pad: 1 },
        Conv2dGeom { n: 2, c: 3, h: 12, w: 12, f: 16, kh: 7, kw: 7, stride: 2, pad: 3 },
        Conv2dGeom { n: 4, c: 64, h: 8, w: 8, f: 128, kh: 1, kw: 1, stride: 2, pad: 0 },
        Conv2dGeom { n: 40, c: 32, h: 8, w: 8, f: 64, kh: 3, kw: 3, stride: 2, pad: 1 },
        Conv2dGeom { n: 3, c: 24, h: 11, w: 9, f: 8, kh: 3, kw: 3, stride: 1, pad: 2 },
        // One chunk of several blocks of k: 640 rows, and 975 (odd).
        Conv2dGeom { n: 10, c: 2, h: 16, w: 16, f: 24, kh: 1, kw: 1, stride: 2, pad: 0 },
        Conv2dGeom { n: 5, c: 1, h: 15, w: 13, f: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
        // Buffers large enough for the pool, which the test fills with NaNs first: every word read must be written.
        Conv2dGeom { n: 4, c: 64, h: 16, w: 16, f: 16, kh: 3, kw: 3, stride: 2, pad: 1 },
        Conv2dGeom { n: 2, c: 128, h: 16, w: 16, f: 8, kh: 3, kw: 3, stride: 1, pad: 1 },
    ] {
        let p = plan_sized(&g, SMALL_CHUNK_FLOATS, SMALL_MIN_ROWS);
        let rows = p.imgs_per_chunk * p.rows_per_img;
        let images = (p.imgs_per_chunk * (g.h + 2 * g.pad) * (g.w + 2 * g.pad) * g.c).div_ceil(2);
        // (576 and 1,152 columns need no padding to any panel width.)
        for words in [images, rows.div_ceil(2) * p.kkc] {
            (0..4).for_each(|_| alloc::give_words(vec![0x7fc1_7fc1; words]));
        }
        // Ordinary values, then a few specials in the input (each NaN or infinity makes the sums it reaches NaN,
        // which would hide a misplaced value there).
        for specials_in_x in [0, 200] {
            let x: Vec<f32> = (0..g.n * g.h * g.w * g.c)
                .map(|_| match rng.random_range(0..1000) {
                    i if i < specials_in_x / 100 => specials[rng.random_range(0..specials.len())],
                    _ => rng.random_range(-1.0..1.0),
                })
                .collect();
            let dout: Vec<f32> = (0..g.n * g.oh() * g.ow() * g.f).map(|_| rng.random_range(-1.0..1.0)).collect();
            let packed = backward_weight_with(&x, &dout, &g, Precision::Bf16, Im2colBf16::Packed);
            let want = backward_weight_with(&x, &dout, &g, Precision::Bf16, Im2colBf16::F32);
            assert!(packed.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?}");
            assert!(specials_in_x > 0 || want.iter().all(|v| v.is_finite()), "{g:?}");
        }
    }
}

/// A bf16 stem whose input needs no gradient masks the ReLU and sums the bias inside its weight-gradient
/// kernel: the same weight gradient as masking first (bit for bit), and the bias sum within f32 rounding.
#[test]
fn the_stems_fused_relu_backward_matches_masking_first() {
    use rand::SeedableRng;

    use crate::{Precision, Tensor, autocast};
    if !conv_rgb16::available() {
        eprintln!("skipped: without AVX512-BF16 the stem has no fused kernel, and both runs mask first");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let x = Tensor::randn(&[4, 16, 16, 3], &mut rng).permute(&[0, 3, 1, 2]).unwrap();
    let w = Tensor::randn(&[16, 3, 3, 3], &mut rng).set_requires_grad(true);
    let b = Tensor::randn(&[16], &mut rng).set_requires_grad(true);
    let r = Tensor::randn(&[4, 16, 8, 8], &mut rng);
    let grads = |x: &Tensor| {
        w.zero_grad();
        b.zero_grad();
        let _bf16 = autocast(Precision::Bf16);
        x.conv2d_relu(&w, Some(&b), 2, 1).unwrap().mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        (w.grad().unwrap().to_vec(), b.grad().unwrap().to_vec())
    };
    let (fused_w, fused_b) = grads(&x);
    let (plain_w, plain_b) = grads(&x.detach().set_requires_grad(true));
    assert!(fused_w.iter().zip(&plain_w).all(|(a, b)| a.to_bits() == b.to_bits()));
    for (a, b) in fused_b.iter().zip(&plain_b) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}
