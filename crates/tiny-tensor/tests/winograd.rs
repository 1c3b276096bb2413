//! The Winograd path through the public API: convolutions big enough to take it (3x3, stride 1, padding 1,
//! 16+ channels, 128+ tiles, on an AVX-512 CPU) against direct loops, forward with bias and ReLU, and the input
//! gradient. Without AVX-512 the same shapes check the im2col path, and the test says so.

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::Tensor;

/// `out[n, f, y, x] = sum of x[n, c, y + ky - 1, x + kx - 1] * w[f, c, ky, kx]` in NCHW, in f64.
fn direct(x: &[f32], w: &[f32], (n, c, h, wd, f): (usize, usize, usize, usize, usize)) -> Vec<f64> {
    let mut out = vec![0.0; n * f * h * wd];
    for (i, o) in out.iter_mut().enumerate() {
        let (b, fo, oy, ox) = (i / (f * h * wd), i / (h * wd) % f, i / wd % h, i % wd);
        for ci in 0..c {
            for ky in 0..3 {
                for kx in 0..3 {
                    let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                    if iy < h && ix < wd {
                        let xv = x[((b * c + ci) * h + iy) * wd + ix] as f64;
                        *o += xv * w[((fo * c + ci) * 3 + ky) * 3 + kx] as f64;
                    }
                }
            }
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f64]) {
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.len());
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!((a as f64 - b).abs() <= 1e-4 * scale, "element {i}: {a} vs {b}");
    }
}

#[test]
fn forward_with_bias_and_relu_and_input_gradient_match_direct_loops() {
    #[cfg(target_arch = "x86_64")]
    let winograd = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let winograd = false;
    if !winograd {
        eprintln!("no AVX-512 on this CPU: these shapes take im2col, not Winograd");
    }
    let mut rng = StdRng::seed_from_u64(3);
    // 8 images of 7x8 give 8 * 4 * 4 = 128 tiles, 6 of 9x11 give 6 * 5 * 6 = 180.
    for (n, c, h, wd, f) in [(8, 16, 7, 8, 24), (6, 17, 9, 11, 16)] {
        let x = Tensor::randn(&[n, c, h, wd], &mut rng);
        let w = Tensor::randn(&[f, c, 3, 3], &mut rng);
        let b = Tensor::randn(&[f], &mut rng);
        let want = direct(&x.to_vec(), &w.to_vec(), (n, c, h, wd, f));
        let bias = b.to_vec();
        let want_relu: Vec<f64> =
            want.iter().enumerate().map(|(i, v)| (v + bias[i / (h * wd) % f] as f64).max(0.0)).collect();
        assert_close(&x.conv2d_relu(&w, Some(&b), 1, 1).unwrap().to_vec(), &want_relu);

        // The input gradient is the convolution of dout by the rotated, transposed kernel.
        let dout = Tensor::randn(&[n, f, h, wd], &mut rng);
        let wv = w.to_vec();
        let mut rot = vec![0.0; c * f * 9];
        for (i, r) in rot.iter_mut().enumerate() {
            let (ci, fo, ky, kx) = (i / (f * 9), i / 9 % f, i / 3 % 3, i % 3);
            *r = wv[((fo * c + ci) * 3 + 2 - ky) * 3 + 2 - kx];
        }
        let want_dx = direct(&dout.to_vec(), &rot, (n, f, h, wd, c));
        assert_close(&dout.conv2d_input_grad(&w, &[n, c, h, wd], 1, 1).unwrap().to_vec(), &want_dx);
    }
}
