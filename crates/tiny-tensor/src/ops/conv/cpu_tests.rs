//! Unit tests of the CPU convolutions' bf16 paths: the fused im2col and the stem's fused ReLU backward.

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
