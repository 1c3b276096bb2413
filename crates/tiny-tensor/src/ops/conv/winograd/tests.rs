//! Unit tests of the Winograd path against a direct f64 convolution, including chunkings the planner would not choose.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Calls `visit(out, x, w)` with the flat indices of every output element, input element and weight that one
/// multiply-add of the direct convolution joins (`x` as `[n, h, w, c]`, `w` as `[f, 3, 3, c]`, the output as
/// `[n, h, w, f]`), over the taps inside the image.
fn taps(g: &Conv2dGeom, mut visit: impl FnMut(usize, usize, usize)) {
    for n in 0..g.n {
        for oy in 0..g.h {
            for ox in 0..g.w {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                        if iy >= g.h || ix >= g.w {
                            continue;
                        }
                        for f in 0..g.f {
                            for c in 0..g.c {
                                let o = ((n * g.h + oy) * g.w + ox) * g.f + f;
                                visit(o, ((n * g.h + iy) * g.w + ix) * g.c + c, ((f * 3 + ky) * 3 + kx) * g.c + c);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The direct definition, in f64: `out[n, oy, ox, f] = sum of x[n, oy + ky - 1, ox + kx - 1, c] *
/// w[f, ky, kx, c]` over the taps inside the image.
fn direct(x: &[f32], w: &[f32], g: &Conv2dGeom) -> Vec<f64> {
    let mut out = vec![0.0; g.n * g.h * g.w * g.f];
    taps(g, |o, i, k| out[o] += x[i] as f64 * w[k] as f64);
    out
}

/// The adjoint of `direct` in `x`: the input gradient `[n, h, w, c]` of the output gradient `dout`.
fn direct_input_grad(dout: &[f32], w: &[f32], g: &Conv2dGeom) -> Vec<f64> {
    let mut dx = vec![0.0; g.n * g.h * g.w * g.c];
    taps(g, |o, i, k| dx[i] += dout[o] as f64 * w[k] as f64);
    dx
}

/// The weight gradient `[f, 3, 3, c]` of `direct` from its input `x` and output gradient `dout`.
fn direct_weight_grad(x: &[f32], dout: &[f32], g: &Conv2dGeom) -> Vec<f64> {
    let mut dw = vec![0.0; g.f * 9 * g.c];
    taps(g, |o, i, k| dw[k] += dout[o] as f64 * x[i] as f64);
    dw
}

/// Checks `got` against `want` to 1e-4 of the largest magnitude in `want`.
fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!((a as f64 - b).abs() <= 1e-4 * scale, "{what}: element {i} is {a}, want {b} (scale {scale})");
    }
}

const SHAPES: [(usize, usize, usize, usize, usize); 10] = [
    // (n, h, w, c, f)
    (1, 5, 7, 3, 5),
    (2, 7, 5, 17, 3),
    (1, 1, 1, 5, 17),
    (3, 2, 2, 17, 16),
    (2, 1, 6, 16, 5),
    (1, 6, 1, 5, 16),
    (2, 8, 8, 32, 48),
    (1, 9, 9, 20, 33),
    (4, 4, 4, 64, 64),
    (2, 3, 3, 1, 1),
];

#[test]
fn forward_matches_direct_convolution() {
    let mut rng = StdRng::seed_from_u64(7);
    for (n, h, w, c, f) in SHAPES {
        let g = Conv2dGeom { n, c, h, w, f, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (x, wt, b) = (random(n * h * w * c, &mut rng), random(f * 9 * c, &mut rng), random(f, &mut rng));
        let want = direct(&x, &wt, &g);
        assert_close(&forward(&x, &wt, None, false, &g, Precision::Fp32), &want, &format!("forward {g:?}"));
        let biased: Vec<f64> = want.chunks(f).flat_map(|r| r.iter().zip(&b).map(|(v, &b)| v + b as f64)).collect();
        assert_close(&forward(&x, &wt, Some(&b), false, &g, Precision::Fp32), &biased, &format!("bias {g:?}"));
        let relu: Vec<f64> = biased.iter().map(|v| v.max(0.0)).collect();
        assert_close(&forward(&x, &wt, Some(&b), true, &g, Precision::Fp32), &relu, &format!("bias+relu {g:?}"));
        let relu: Vec<f64> = want.iter().map(|v| v.max(0.0)).collect();
        assert_close(&forward(&x, &wt, None, true, &g, Precision::Fp32), &relu, &format!("relu {g:?}"));
    }
}

#[test]
fn backward_input_matches_direct_adjoint() {
    let mut rng = StdRng::seed_from_u64(8);
    for (n, h, w, c, f) in SHAPES {
        let g = Conv2dGeom { n, c, h, w, f, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (dout, wt) = (random(n * h * w * f, &mut rng), random(f * 9 * c, &mut rng));
        assert_close(
            &backward_input(&dout, &wt, &g, Precision::Fp32),
            &direct_input_grad(&dout, &wt, &g),
            &format!("{g:?}"),
        );
    }
}

#[test]
fn backward_weight_matches_direct_gradient() {
    let mut rng = StdRng::seed_from_u64(10);
    for (n, h, w, c, f) in SHAPES {
        let g = Conv2dGeom { n, c, h, w, f, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (x, dout) = (random(n * h * w * c, &mut rng), random(n * h * w * f, &mut rng));
        assert_close(
            &backward_weight(&x, &dout, &g, Precision::Fp32),
            &direct_weight_grad(&x, &dout, &g),
            &format!("{g:?}"),
        );
    }
}

#[test]
fn every_chunking_agrees() {
    // Chunks that split images and chunks that span several, run on the thread pool when there are
    // enough of them; the pool's buffers start with garbage, so any element left unwritten would show.
    let mut rng = StdRng::seed_from_u64(9);
    let g = Conv2dGeom { n: 5, c: 16, h: 13, w: 11, f: 24, kh: 3, kw: 3, stride: 1, pad: 1 };
    let (x, wt) = (random(g.n * g.h * g.w * g.c, &mut rng), random(g.f * 9 * g.c, &mut rng));
    let want = direct(&x, &wt, &g);
    for units in [1, 2, 3, 7, 35] {
        let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.c, cout: g.f, precision: Precision::Fp32 };
        let u = transform_weights(&wt, g.f, g.c, false);
        let got = run_with(&x, &u, &s, None, false, units, Rounding::Transform);
        assert_close(&got, &want, &format!("{units} tile rows a chunk"));
    }
    let dout = random(g.n * g.h * g.w * g.f, &mut rng);
    let want = direct_weight_grad(&x, &dout, &g);
    for units in [1, 2, 3, 7, 35] {
        let s = Problem { n: g.n, h: g.h, w: g.w, cin: g.c, cout: g.f, precision: Precision::Fp32 };
        let got = backward_weight_with(&x, &dout, &s, units);
        assert_close(&got, &want, &format!("weight gradient, {units} tile rows a chunk"));
    }
}

/// In bf16 the tiles the input transform rounds into pairs as it stores them give the bits of f32 tiles rounded
/// by the GEMM's packing: forward (with bias and ReLU) and backward-input, odd channel counts (an odd row's last
/// half must be zero) and chunkings that split images, on this CPU's bf16 kernel and threads.
#[test]
fn bf16_tiles_rounded_by_the_transform_give_the_bits_of_tiles_rounded_by_packing() {
    let mut rng = StdRng::seed_from_u64(12);
    for (n, h, w, c, f) in [(2, 8, 8, 32, 48), (1, 9, 9, 17, 33), (3, 5, 7, 16, 16), (2, 6, 6, 33, 17)] {
        let (x, wt, b) = (random(n * h * w * c, &mut rng), random(f * 9 * c, &mut rng), random(f, &mut rng));
        let tile_rows = n * h.div_ceil(2);
        for (cin, cout, flip) in [(c, f, false), (f, c, true)] {
            let s = Problem { n, h, w, cin, cout, precision: Precision::Bf16 };
            let src = if flip { random(n * h * w * f, &mut rng) } else { x.clone() };
            let u = transform_weights(&wt, f, c, flip);
            for units in [1, 3, tile_rows] {
                let bias = (!flip).then_some(&b[..]);
                let want = run_with(&src, &u, &s, bias, !flip, units, Rounding::Packing);
                let got = run_with(&src, &u, &s, bias, !flip, units, Rounding::Transform);
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same && got.len() == want.len(), "{cin}->{cout} at {n}x{h}x{w}, {units} tile rows a chunk");
            }
        }
    }
}

/// The input transform's bf16 store rounds as `cpu::bf16::round` does, lane for lane, on the vectors this CPU
/// runs: ties both ways, the largest finite values rounding to infinity, infinities, NaNs of both signs and
/// payloads, denormals and zeros, in every lane position and with partial vectors.
#[test]
fn the_bf16_store_rounds_as_the_packing_does() {
    use super::vector::Vector;
    let specials = [
        1.0f32,
        -1.0,
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::from_bits(0x3f80_8001),
        f32::from_bits(0xbf81_8000),
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0xff80_0001),
        f32::from_bits(0x7fbf_ffff),
        f32::from_bits(0x0000_0001),
        f32::from_bits(0x807f_ffff),
        f32::MIN_POSITIVE,
        0.0,
        -0.0,
    ];
    let mut rng = StdRng::seed_from_u64(13);
    let mut values: Vec<f32> = specials.to_vec();
    values.extend((0..300).map(|_| f32::from_bits(rng.random::<u32>())));
    let check = |store: &dyn Fn(&[f32], &mut [u16])| {
        for (i, chunk) in values.chunks(16).enumerate() {
            let mut got = [0xabcdu16; 16];
            store(chunk, &mut got);
            for (l, &v) in chunk.iter().enumerate() {
                let want = crate::cpu::bf16::round(v);
                assert_eq!(got[l], want, "chunk {i} lane {l}: {:#010x} stored as {:#06x}", v.to_bits(), got[l]);
            }
            assert!(got[chunk.len()..].iter().all(|&h| h == 0xabcd), "chunk {i}: wrote past its lanes");
        }
    };
    check(&|src, dst| src.iter().zip(dst.iter_mut()).for_each(|(&v, d)| unsafe { v.store_bf16(d, 1) }));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        fn avx512(src: &[f32], dst: &mut [u16]) {
            use super::vector::Avx512;
            // SAFETY: the CPU has AVX-512F; `src` and `dst` hold at least `src.len()` (at most 16) elements.
            unsafe { Avx512::load(src.as_ptr(), src.len()).store_bf16(dst.as_mut_ptr(), src.len()) }
        }
        // SAFETY: the CPU has AVX-512F.
        check(&|src, dst| unsafe { avx512(src, dst) });
    } else {
        eprintln!("the_bf16_store_rounds_as_the_packing_does: AVX-512 half skipped: this CPU has no AVX-512F");
    }
}

#[test]
fn empty_batches_and_channels() {
    let g = Conv2dGeom { n: 0, c: 16, h: 4, w: 4, f: 16, kh: 3, kw: 3, stride: 1, pad: 1 };
    assert!(forward(&[], &vec![0.0; 16 * 9 * 16], None, false, &g, Precision::Fp32).is_empty());
    let g = Conv2dGeom { n: 1, c: 0, h: 3, w: 3, f: 2, kh: 3, kw: 3, stride: 1, pad: 1 };
    assert_eq!(forward(&[], &[], Some(&[1.0, -1.0]), true, &g, Precision::Fp32), [1.0, 0.0].repeat(9));
    assert!(backward_weight(&[], &[0.0; 9 * 2], &g, Precision::Fp32).is_empty());
    let g = Conv2dGeom { n: 0, c: 3, h: 4, w: 4, f: 2, kh: 3, kw: 3, stride: 1, pad: 1 };
    assert_eq!(backward_weight(&[], &[], &g, Precision::Fp32), vec![0.0; 2 * 9 * 3]);
}

/// The rms difference of `got` from `want`, over the rms of `want`.
fn rms_error(got: &[f64], want: &[f64]) -> f64 {
    let err: f64 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    (err / norm.max(1e-300)).sqrt()
}

/// In bf16 the 16 GEMMs multiply the transformed tiles and weights, each rounded after its transform, where a
/// direct bf16 convolution (PyTorch's) multiplies the rounded inputs and rounds its output. Measured here (rms error
/// over rms of the exact f64 result, the same for all three passes within 5%): Winograd 4.0e-3 to 4.1e-3, direct
/// 2.6e-3 to 2.7e-3, so bf16 Winograd errs 1.5 times as much as bf16 itself does.
#[test]
fn bf16_winograd_errs_within_twice_what_a_direct_bf16_convolution_does() {
    use crate::cpu::bf16::round_f32;
    let rounded = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| round_f32(x)).collect() };
    let stored = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| f64::from(round_f32(x as f32))).collect() };
    let widen = |v: Vec<f32>| -> Vec<f64> { v.into_iter().map(f64::from).collect() };
    let mut rng = StdRng::seed_from_u64(31);
    for (n, hw, c, f) in [(2, 16, 32, 48), (8, 8, 16, 32)] {
        let g = Conv2dGeom { n, c, h: hw, w: hw, f, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (x, w, dout) =
            (random(n * hw * hw * c, &mut rng), random(f * 9 * c, &mut rng), random(n * hw * hw * f, &mut rng));
        let (xr, wr, dr) = (rounded(&x), rounded(&w), rounded(&dout));
        let passes = [
            (
                "forward",
                widen(forward(&x, &w, None, false, &g, Precision::Bf16)),
                stored(direct(&xr, &wr, &g)),
                direct(&x, &w, &g),
            ),
            (
                "backward-input",
                widen(backward_input(&dout, &w, &g, Precision::Bf16)),
                stored(direct_input_grad(&dr, &wr, &g)),
                direct_input_grad(&dout, &w, &g),
            ),
            (
                "backward-weight",
                widen(backward_weight(&x, &dout, &g, Precision::Bf16)),
                stored(direct_weight_grad(&xr, &dr, &g)),
                direct_weight_grad(&x, &dout, &g),
            ),
        ];
        for (pass, wino, direct_bf16, exact) in passes {
            let (ours, theirs) = (rms_error(&wino, &exact), rms_error(&direct_bf16, &exact));
            // Above bf16's own error (the products really were bf16), below twice it.
            assert!(
                ours > 0.5 * theirs && ours < 2.0 * theirs,
                "{g:?} {pass}: Winograd {ours:.2e}, direct {theirs:.2e}"
            );
        }
    }
}
