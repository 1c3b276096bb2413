//! Benchmarks matmul, the conv passes of simple_cnn and of resnet18's stem and 3x3 stride-1 convs against the
//! bare `gemm` crate on the same shapes.
//!
//! `cargo run --release -p tiny-tensor --example bench_ops -- [--threads 1] [--reps 7] [--only NAME]
//! [--precision fp32|bf16]` prints one JSON line per case: tiny's GFLOP/s, the bare f32 GEMM's GFLOP/s on the
//! equivalent im2col GEMM shape, and their ratio (above 1 for the Winograd path, which does fewer multiplies
//! than that GEMM, and for bf16, whose products run twice as many to an instruction). `--precision bf16` runs
//! tiny's side under `autocast(Precision::Bf16)`.
//! Figures are medians of `--reps` timed runs after one warm-up; `--only` keeps the conv cases whose name
//! contains NAME.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::{Precision, Result, Tensor, autocast};

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// The bare GEMM crate on row-major `[m, k] @ [k, n]`, the reference rate for a case.
fn bare_gemm_secs(m: usize, k: usize, n: usize, reps: usize, threads: usize) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    median_secs(reps, || {
        // SAFETY: the three buffers are exactly m*k, k*n and m*n long, row-major, and do not overlap.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    })
}

fn report(case: &str, flops: f64, secs: f64, gemm_secs: f64, shape: (usize, usize, usize), threads: usize) {
    let (ours, bare) = (flops / secs / 1e9, flops / gemm_secs / 1e9);
    println!(
        "{{\"case\":\"{case}\",\"precision\":\"{}\",\"threads\":{threads},\"ms\":{:.3},\"gflops\":{ours:.1},\"gemm_gflops\":{bare:.1},\"ratio\":{:.2},\"gemm_mkn\":[{},{},{}]}}",
        tiny_tensor::autocast_precision(),
        secs * 1e3,
        ours / bare,
        shape.0,
        shape.1,
        shape.2
    );
}

/// One convolution's passes, each reported against the bare GEMM on its im2col shape: the forward and the
/// backward-input pass, and the backward-weight pass when `weight` is set. `grad` is the output gradient.
#[allow(clippy::too_many_arguments)]
fn conv_passes(
    name: &str,
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    (stride, pad): (usize, usize),
    weight: bool,
    reps: usize,
    threads: usize,
) {
    let (xs, ws, os) = (x.shape(), w.shape(), grad.shape());
    let (m, k, n) = (xs[0] * os[2] * os[3], ws[1] * ws[2] * ws[3], ws[0]);
    let flops = 2.0 * (m * k * n) as f64;
    let fwd = median_secs(reps, || {
        x.conv2d(w, None, stride, pad).unwrap();
    });
    report(&format!("{name} forward"), flops, fwd, bare_gemm_secs(m, k, n, reps, threads), (m, k, n), threads);
    let bwd_in = median_secs(reps, || {
        grad.conv2d_input_grad(w, xs, stride, pad).unwrap();
    });
    report(
        &format!("{name} backward-input"),
        flops,
        bwd_in,
        bare_gemm_secs(m, n, k, reps, threads),
        (m, n, k),
        threads,
    );
    if weight {
        let bwd_w = median_secs(reps, || {
            grad.conv2d_weight_grad(x, ws, stride, pad).unwrap();
        });
        let bare = bare_gemm_secs(n, m, k, reps, threads);
        report(&format!("{name} backward-weight"), flops, bwd_w, bare, (n, m, k), threads);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (threads, reps) = (arg("--threads", 1), arg("--reps", 7));
    let precision: Precision = match args.iter().position(|a| a == "--precision").and_then(|i| args.get(i + 1)) {
        Some(p) => p.parse()?,
        None => Precision::Fp32,
    };
    let _precision = autocast(precision);
    tiny_tensor::set_num_threads(threads);
    let mut rng = StdRng::seed_from_u64(0);

    let only: Option<String> = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let (a, b) = (Tensor::randn(&[1024, 1024], &mut rng), Tensor::randn(&[1024, 1024], &mut rng));
    let secs = median_secs(reps, || {
        a.matmul(&b).unwrap();
    });
    report(
        "matmul 1024x1024x1024",
        2.0 * 1024f64.powi(3),
        secs,
        bare_gemm_secs(1024, 1024, 1024, reps, threads),
        (1024, 1024, 1024),
        threads,
    );

    // simple_cnn at batch 128, 64x64 input: four 3x3 stride-2 padding-1 convolutions.
    let (bs, mut size) = (128, 64);
    for (ci, co) in [(3, 16), (16, 32), (32, 64), (64, 128)] {
        // The layer's input arrives channels-last, as it does inside the network.
        let x = Tensor::randn(&[bs, size, size, ci], &mut rng).permute(&[0, 3, 1, 2])?;
        let w = Tensor::randn(&[co, ci, 3, 3], &mut rng);
        let o = size / 2;
        let name = format!("conv {ci}->{co} {size}px");
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            size = o;
            continue;
        }
        let grad = x.conv2d(&w, None, 2, 1)?.relu()?;
        conv_passes(&name, &x, &w, &grad, (2, 1), true, reps, threads);
        size = o;
    }

    // resnet18 at batch 64: its 7x7 stride-2 stem at 128px (whose backward-input a network never runs, as its
    // input needs no gradient), then the 3x3 stride-1 padding-1 convolutions of its four stages, at 64px and 128px.
    let bs = 64;
    let name = "resnet18 stem 3->64 128px";
    if only.as_ref().is_none_or(|o| name.contains(o.as_str())) {
        let x = Tensor::randn(&[bs, 128, 128, 3], &mut rng).permute(&[0, 3, 1, 2])?;
        let w = Tensor::randn(&[64, 3, 7, 7], &mut rng);
        let grad = x.conv2d(&w, None, 2, 3)?;
        conv_passes(name, &x, &w, &grad, (2, 3), true, reps, threads);
    }
    for px in [64, 128] {
        for (stage, ch) in [64, 128, 256, 512].into_iter().enumerate() {
            let side = (px / 4) >> stage;
            let name = format!("resnet18 conv {ch}->{ch} {side}px");
            if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                continue;
            }
            let x = Tensor::randn(&[bs, side, side, ch], &mut rng).permute(&[0, 3, 1, 2])?;
            let w = Tensor::randn(&[ch, ch, 3, 3], &mut rng);
            let grad = x.conv2d(&w, None, 1, 1)?;
            conv_passes(&name, &x, &w, &grad, (1, 1), false, reps, threads);
        }
    }
    Ok(())
}
