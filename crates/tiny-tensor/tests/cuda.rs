//! Device parity: every op, forward and backward, on the CPU and on a CUDA GPU, on strided inputs.
//!
//! Built only with `--features cuda`. Without a GPU each test prints that it was skipped and passes, so CI
//! (which has none) stays green; the kernel-compilation test runs wherever the NVRTC library is found.
#![cfg(feature = "cuda")]

mod common;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use common::rng;
use tiny_tensor::{Device, Precision, Result, RunningStats, Tensor, autocast, cuda};

/// TF32 is a process-wide setting: the TF32 test holds this lock for writing, every other device test for
/// reading, so that no exact comparison runs while TF32 is on.
static TF32: RwLock<()> = RwLock::new(());

/// The GPU for a device test and a guard that keeps TF32 off during it, or `None` where there is no GPU.
fn gpu(test: &str) -> Option<(Device, RwLockReadGuard<'static, ()>)> {
    let device = tiny_fixtures::gpu_or_skip(test, Device::new_cuda(0))?;
    Some((device, TF32.read().unwrap_or_else(|e| e.into_inner())))
}

/// Turns TF32 on until dropped, even when the test panics.
struct Tf32On {
    _lock: RwLockWriteGuard<'static, ()>,
}

impl Tf32On {
    fn new() -> Tf32On {
        let guard = TF32.write().unwrap_or_else(|e| e.into_inner());
        cuda::set_allow_tf32(true);
        Tf32On { _lock: guard }
    }
}

impl Drop for Tf32On {
    fn drop(&mut self) {
        cuda::set_allow_tf32(false);
    }
}

/// Leaves on `device` holding the same values as `inputs`.
fn leaves(inputs: &[Tensor], device: Device) -> Vec<Tensor> {
    inputs.iter().map(|t| t.detach().to_device(device).unwrap().detach().set_requires_grad(true)).collect()
}

/// `f`'s output and the gradients of `sum(f(x) * r)` for a fixed random `r`, read back to the host.
fn run(inputs: &[Tensor], device: Device, f: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> (Vec<f32>, Vec<Vec<f32>>) {
    let xs = leaves(inputs, device);
    let out = f(&xs).unwrap();
    assert_eq!(out.device(), device, "the op's output left the device");
    let r = Tensor::uniform(out.shape(), -1.0, 1.0, &mut rng(99)).unwrap().to_device(device).unwrap();
    out.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = xs.iter().map(|x| x.grad().map(|g| g.to_vec()).unwrap_or_default()).collect();
    (out.to_vec(), grads)
}

fn close(what: &str, cpu: &[f32], gpu: &[f32], rtol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths differ");
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        let tol = rtol * (1.0 + a.abs());
        assert!((a - b).abs() <= tol || (a.is_nan() && b.is_nan()), "{what}[{i}]: cpu {a} vs cuda {b}");
    }
}

/// Runs `f` on both devices and compares the outputs and every input's gradient.
fn parity(name: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let Some((device, _tf32_off)) = gpu(name) else { return };
    let (out_c, grads_c) = run(&inputs, Device::Cpu, &f);
    let (out_g, grads_g) = run(&inputs, device, &f);
    close(&format!("{name} forward"), &out_c, &out_g, 1e-4);
    for (i, (a, b)) in grads_c.iter().zip(&grads_g).enumerate() {
        close(&format!("{name} grad {i}"), a, b, 1e-4);
    }
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, &mut rng(seed))
}

/// A non-contiguous view: `shape` produced by permuting a tensor of the permuted shape. Only the CPU reads it
/// strided: its upload is a row-major copy (see [`offset_permuted`] for views made on the device).
fn strided(shape: &[usize], seed: u64) -> Tensor {
    let rev: Vec<usize> = shape.iter().rev().copied().collect();
    let perm: Vec<usize> = (0..shape.len()).rev().collect();
    randn(&rev, seed).permute(&perm).unwrap()
}

/// The permuted `[4, 3, 5]` view, at offset 2, of a flat 62-element tensor: strides `[1, 4, 12]`, dense but
/// not contiguous. `to_device` uploads a row-major copy of whatever it is given, so a layout reaches the GPU
/// kernels only when the view is made on the device, as the test closures do with this.
fn offset_permuted(flat: &Tensor) -> Result<Tensor> {
    flat.narrow(0, 2, 60)?.reshape(&[5, 3, 4])?.permute(&[2, 1, 0])
}

#[test]
fn kernels_compile_with_nvrtc() {
    match cuda::compile_kernels(Some("compute_90")).and_then(|_| cuda::compile_cubin(9, 0)) {
        // The fake driver's NVRTC (`cargo xtask fake-cuda`) hands the source back and compiles nothing.
        Ok(cubin) if cubin.starts_with(b"// tiny fake PTX") => {
            eprintln!("kernels_compile_with_nvrtc: skipped, this NVRTC is the fake one");
        }
        Ok(cubin) => assert!(cubin.starts_with(b"\x7fELF"), "a CUBIN is an ELF file"),
        Err(tiny_tensor::TensorError::DeviceUnavailable { reason, .. }) => {
            eprintln!("kernels_compile_with_nvrtc: skipped, {reason}");
        }
        Err(e) => panic!("the CUDA kernels do not compile: {e}"),
    }
}

#[test]
fn no_gpu_is_an_error_not_a_panic() {
    if cuda::is_available(0) {
        // With a GPU, an ordinal past the last one is the error instead.
        let err = Tensor::zeros(&[2]).to_device(Device::Cuda(4096)).unwrap_err();
        assert!(err.to_string().contains("cuda:4096"), "{err}");
    } else {
        let err = Tensor::zeros(&[2]).to_device(Device::Cuda(0)).unwrap_err();
        assert!(err.to_string().contains("cuda:0"), "{err}");
    }
}

#[test]
fn round_trip_keeps_values() {
    let Some((device, _tf32_off)) = gpu("round_trip_keeps_values") else { return };
    let x = strided(&[3, 4, 5], 1);
    let back = x.to_device(device).unwrap().to_device(Device::Cpu).unwrap();
    assert_eq!(back.to_vec(), x.to_vec());
}

#[test]
fn elementwise_with_broadcasting() {
    let (a, b) = (strided(&[4, 3, 5], 1), randn(&[3, 1], 2));
    parity("add", vec![a.clone(), b.clone()], |x| x[0].add(&x[1]));
    parity("sub", vec![a.clone(), b.clone()], |x| x[0].sub(&x[1]));
    parity("mul", vec![a.clone(), b.clone()], |x| x[0].mul(&x[1]));
    let pos = randn(&[3, 1], 3).mul(&randn(&[3, 1], 3)).unwrap().add_scalar(0.5).unwrap();
    parity("div", vec![a.clone(), pos.clone()], |x| x[0].div(&x[1]));
    parity("affine", vec![a.clone()], |x| x[0].affine(2.5, -1.0));
}

#[test]
fn unary_ops() {
    let a = strided(&[4, 3, 5], 4);
    let pos = a.mul(&a).unwrap().add_scalar(0.1).unwrap();
    parity("neg", vec![a.clone()], |x| x[0].neg());
    parity("exp", vec![a.clone()], |x| x[0].exp());
    parity("relu", vec![a.clone()], |x| x[0].relu());
    parity("log", vec![pos.clone()], |x| x[0].log());
    parity("sqrt", vec![pos.clone()], |x| x[0].sqrt());
    parity("powf", vec![pos.clone()], |x| x[0].powf(1.7));
    parity("square", vec![a.clone()], |x| x[0].powf(2.0));
    parity("reciprocal", vec![pos.clone()], |x| x[0].powf(-1.0));
}

#[test]
fn views_made_on_the_device() {
    // Each op reads the offset, permuted view through the strides the launcher plans; the gradients go back
    // through the permute, reshape and narrow (a write into a view at an offset) on the device too.
    let flat = randn(&[62], 7);
    let positive = Tensor::uniform(&[62], 0.5, 2.0, &mut rng(8)).unwrap();
    let view = offset_permuted(&flat).unwrap();
    assert_eq!((view.layout().strides.as_slice(), view.layout().offset), ([1, 4, 12].as_slice(), 2));
    parity("exp of a view", vec![flat.clone()], |x| offset_permuted(&x[0])?.exp());
    parity("square of a view", vec![flat.clone()], |x| offset_permuted(&x[0])?.powf(2.0));
    parity("reciprocal of a view", vec![positive], |x| offset_permuted(&x[0])?.powf(-1.0));
    parity("affine of a view", vec![flat.clone()], |x| offset_permuted(&x[0])?.affine(2.0, -1.0));
    let col = randn(&[3, 1], 9);
    parity("view + column", vec![flat.clone(), col], |x| offset_permuted(&x[0])?.add(&x[1]));
    // Over the outer and inner dimensions, keeping the middle one.
    parity("sum of a view over dims 0, 2", vec![flat.clone()], |x| offset_permuted(&x[0])?.sum(&[0, 2], false));
    parity("max of a view over dims 0, 2", vec![flat], |x| offset_permuted(&x[0])?.max(&[0, 2], false));
}

#[test]
fn reductions() {
    let a = strided(&[6, 5, 7], 5);
    parity("sum keepdim", vec![a.clone()], |x| x[0].sum(&[1], true));
    parity("sum two dims", vec![a.clone()], |x| x[0].sum(&[0, 2], false));
    parity("max two dims", vec![a.clone()], |x| x[0].max(&[0, 2], false));
    parity("sum all", vec![a.clone()], |x| x[0].sum_all());
    parity("mean", vec![a.clone()], |x| x[0].mean(&[-1], false));
    parity("max", vec![a.clone()], |x| x[0].max(&[1], true));
    parity("logsumexp", vec![a.clone()], |x| x[0].logsumexp(&[-1], true));
    let big = randn(&[3, 70_000], 6);
    parity("long sum", vec![big], |x| x[0].sum(&[1], false));
}

#[test]
fn matmul_2d_batched_and_transposed() {
    parity("matmul", vec![randn(&[7, 5], 7), randn(&[5, 9], 8)], |x| x[0].matmul(&x[1]));
    parity("matmul transposed", vec![randn(&[5, 7], 9), randn(&[9, 5], 10)], |x| x[0].t()?.matmul(&x[1].t()?));
    parity("batched", vec![randn(&[3, 4, 6], 11), randn(&[3, 6, 2], 12)], |x| x[0].matmul(&x[1]));
    parity("broadcast batch", vec![randn(&[3, 4, 6], 13), randn(&[6, 2], 14)], |x| x[0].matmul(&x[1]));
    parity("strided batch", vec![strided(&[2, 4, 6], 15), randn(&[2, 6, 3], 16)], |x| x[0].matmul(&x[1]));
}

#[test]
fn convolutions() {
    let x = randn(&[2, 3, 9, 9], 20);
    let w = randn(&[8, 3, 3, 3], 21).mul_scalar(0.3).unwrap();
    let b = randn(&[8], 22);
    parity("conv 3x3 s2 p1", vec![x.clone(), w.clone(), b.clone()], |t| t[0].conv2d(&t[1], Some(&t[2]), 2, 1));
    parity("conv relu", vec![x.clone(), w.clone(), b.clone()], |t| t[0].conv2d_relu(&t[1], Some(&t[2]), 1, 1));
    let w1 = randn(&[5, 3, 1, 1], 23);
    parity("conv 1x1", vec![x.clone(), w1.clone()], |t| t[0].conv2d(&t[1], None, 1, 0));
    parity("conv 1x1 s2", vec![x.clone(), w1], |t| t[0].conv2d(&t[1], None, 2, 0));
    let w7 = randn(&[4, 3, 7, 7], 24).mul_scalar(0.1).unwrap();
    parity("conv 7x7 s2 p3", vec![randn(&[2, 3, 16, 16], 25), w7], |t| t[0].conv2d(&t[1], None, 2, 3));
    // A channels-last input, as the layers after the first one see.
    let xc = randn(&[2, 8, 5, 5], 26).to_channels_last().unwrap();
    let w2 = randn(&[6, 8, 3, 3], 27).mul_scalar(0.2).unwrap();
    parity("conv channels-last", vec![xc, w2], |t| t[0].conv2d(&t[1], None, 1, 1));
    // A non-square image with an odd height, and a 7x7 kernel nearly as large as its 9x9 image.
    let w4 = randn(&[4, 3, 3, 3], 28).mul_scalar(0.3).unwrap();
    parity("conv 3x3 s2 p1 on 7x6", vec![randn(&[2, 3, 7, 6], 29), w4], |t| t[0].conv2d(&t[1], None, 2, 1));
    let w7 = randn(&[3, 2, 7, 7], 30).mul_scalar(0.1).unwrap();
    parity("conv 7x7 s2 p3 on 9x9", vec![randn(&[1, 2, 9, 9], 31), w7], |t| t[0].conv2d(&t[1], None, 2, 3));
}

#[test]
fn pooling() {
    let x = randn(&[2, 3, 9, 9], 30);
    parity("max_pool 3 s2 p1", vec![x.clone()], |t| t[0].max_pool2d(3, 2, 1));
    parity("max_pool 2 s2", vec![x.clone()], |t| t[0].max_pool2d(2, 2, 0));
    parity("avg_pool 3 s2 p1", vec![x.clone()], |t| t[0].avg_pool2d(3, 2, 1));
    parity("avg_pool global", vec![x], |t| t[0].avg_pool2d(9, 9, 0));
    // The geometries of the convolutions above: a non-square image, and a window nearly as large as the image.
    let (odd, small) = (randn(&[2, 3, 7, 6], 31), randn(&[1, 2, 9, 9], 32));
    parity("max_pool 3 s2 p1 on 7x6", vec![odd.clone()], |t| t[0].max_pool2d(3, 2, 1));
    parity("avg_pool 3 s2 p1 on 7x6", vec![odd], |t| t[0].avg_pool2d(3, 2, 1));
    parity("max_pool 7 s2 p3 on 9x9", vec![small.clone()], |t| t[0].max_pool2d(7, 2, 3));
    parity("avg_pool 7 s2 p3 on 9x9", vec![small], |t| t[0].avg_pool2d(7, 2, 3));
}

#[test]
fn batchnorm_both_memory_formats() {
    let w = randn(&[4], 40);
    let b = randn(&[4], 41);
    let f = |t: &[Tensor]| t[0].batch_norm(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    parity("batch_norm nchw", vec![randn(&[3, 4, 5, 5], 42), w.clone(), b.clone()], f);
    // Made channels-last on the device (an upload is row-major), so that the kernels see `[n*h*w, c, 1]`.
    let cl = |t: &[Tensor]| t[0].to_channels_last()?.batch_norm(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    parity("batch_norm channels-last", vec![randn(&[3, 4, 5, 5], 43), w.clone(), b.clone()], cl);
    // With the fused ReLU, whose backward recomputes its mask from the input.
    let f = |t: &[Tensor]| t[0].batch_norm_relu(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    parity("batch_norm_relu nchw", vec![randn(&[3, 4, 5, 5], 47), w.clone(), b.clone()], f);
    let cl = |t: &[Tensor]| t[0].to_channels_last()?.batch_norm_relu(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    parity("batch_norm_relu channels-last", vec![randn(&[3, 4, 5, 5], 48), w.clone(), b.clone()], cl);
    parity("add_relu", vec![randn(&[3, 4, 5, 5], 49), randn(&[4, 1, 1], 50)], |t| t[0].add_relu(&t[1]));
    // The running statistics, updated in place by the fused per-channel kernel, twice, in both memory formats.
    let Some((device, _tf32_off)) = gpu("batch_norm running statistics") else { return };
    for channels_last in [false, true] {
        let run = |dev: Device| {
            let (rm, rv) = (randn(&[4], 44).to_device(dev).unwrap(), Tensor::ones(&[4]).to_device(dev).unwrap());
            let count = Tensor::scalar(0.0).to_device(dev).unwrap();
            let (w, b) = (w.to_device(dev).unwrap(), b.to_device(dev).unwrap());
            for seed in [45, 46] {
                let x = randn(&[3, 4, 5, 5], seed).to_device(dev).unwrap();
                let x = if channels_last { x.to_channels_last().unwrap() } else { x };
                let running = RunningStats { mean: &rm, var: &rv, momentum: 0.1, num_batches_tracked: Some(&count) };
                x.batch_norm_running(&w, &b, 1e-5, running).unwrap();
            }
            (rm.to_vec(), rv.to_vec(), count.to_vec())
        };
        let ((cm, cv, cn), (gm, gv, gn)) = (run(Device::Cpu), run(device));
        close(&format!("running mean, channels-last {channels_last}"), &cm, &gm, 1e-5);
        close(&format!("running var, channels-last {channels_last}"), &cv, &gv, 1e-5);
        assert_eq!((cn, gn), (vec![2.0], vec![2.0]), "num_batches_tracked");
    }
}

#[test]
fn indexing_and_joins() {
    let x = strided(&[6, 10], 50);
    parity("pick", vec![x.clone()], |t| t[0].pick(&[3, 0, 9, 9, 1, 5]));
    parity("index_select", vec![x.clone()], |t| t[0].index_select(1, &[2, 2, 7]));
    // Along a middle dimension, so that each index moves a row of 3; the gradient adds repeated rows twice.
    let x3 = randn(&[2, 5, 3], 55);
    parity("index_select middle dim", vec![x3], |t| t[0].index_select(1, &[4, 0, 4, 2]));
    parity("log_softmax_nll", vec![x.clone()], |t| t[0].log_softmax_nll(&[3, 0, 9, 9, 1, 5]));
    let wide = randn(&[3, 1000], 54).mul_scalar(30.0).unwrap();
    parity("log_softmax_nll 1000 classes", vec![wide.clone()], |t| t[0].log_softmax_nll(&[999, 0, 500]));
    let smooth = |t: &[Tensor]| t[0].log_softmax_nll_smooth(&[3, 0, 9, 9, 1, 5], 0.1);
    parity("log_softmax_nll_smooth", vec![x.clone()], smooth);
    parity("log_softmax_nll_smooth 1000 classes", vec![wide], |t| t[0].log_softmax_nll_smooth(&[999, 0, 500], 0.3));
    let big = randn(&[5, 7], 56).mul_scalar(20.0).unwrap();
    parity("log_softmax_nll_smooth everything", vec![big], |t| t[0].log_softmax_nll_smooth(&[6, 0, 3, 3, 1], 1.0));
    let hot = Tensor::from_vec((0..60).map(|i| f32::from(i % 4 == 1)).collect(), &[6, 10]).unwrap();
    parity("bce_with_logits", vec![randn(&[6, 10], 57).mul_scalar(8.0).unwrap(), hot], |t| t[0].bce_with_logits(&t[1]));
    parity("narrow", vec![x.clone()], |t| t[0].narrow(1, 2, 5));
    parity("cat", vec![x.clone(), randn(&[6, 3], 51)], |t| Tensor::cat(&[&t[0], &t[1]], 1));
    parity("stack", vec![x.clone(), randn(&[6, 10], 52)], |t| Tensor::stack(&[&t[0], &t[1]], 0));
    parity("contiguous", vec![x], |t| t[0].contiguous());
    let Some((device, _tf32_off)) = gpu("argmax") else { return };
    let y = strided(&[6, 10], 53);
    assert_eq!(y.argmax(1).unwrap(), y.to_device(device).unwrap().argmax(1).unwrap());
}

#[test]
fn in_place_updates() {
    let Some((device, _tf32_off)) = gpu("in_place_updates") else { return };
    let (a, b) = (randn(&[4, 5], 60), strided(&[4, 5], 61));
    let (ga, gb) = (a.to_device(device).unwrap(), b.to_device(device).unwrap());
    a.add_scaled_(&b, -0.5).unwrap();
    ga.add_scaled_(&gb, -0.5).unwrap();
    a.scale_(3.0).unwrap();
    ga.scale_(3.0).unwrap();
    close("add_scaled_ then scale_", &a.to_vec(), &ga.to_vec(), 1e-6);
    let row = randn(&[5], 62);
    a.assign(&row).unwrap();
    ga.assign(&row.to_device(device).unwrap()).unwrap();
    close("assign broadcast", &a.to_vec(), &ga.to_vec(), 0.0);
    // Into columns 1..4 of a matrix (offset 1, row stride 5) from a transposed view, then the whole matrix.
    let (c, s) = (randn(&[4, 5], 63), randn(&[3, 4], 64));
    let (gc, gs) = (c.to_device(device).unwrap(), s.to_device(device).unwrap());
    for (dst, src) in [(&c, &s), (&gc, &gs)] {
        dst.narrow(1, 1, 3).unwrap().add_scaled_(&src.t().unwrap(), 0.5).unwrap();
        dst.scale_(-2.0).unwrap();
    }
    close("add_scaled_ into a narrowed view", &c.to_vec(), &gc.to_vec(), 1e-6);
}

#[test]
fn tf32_stays_close() {
    let Some(device) = tiny_fixtures::gpu_or_skip("tf32_stays_close", Device::new_cuda(0)) else { return };
    let (a, b) = (randn(&[64, 256], 70), randn(&[256, 32], 71));
    let exact = a.matmul(&b).unwrap().to_vec();
    let tf32 = Tf32On::new();
    let fast = a.to_device(device).unwrap().matmul(&b.to_device(device).unwrap()).unwrap().to_vec();
    drop(tf32);
    // TF32 keeps 10 mantissa bits: about 1e-3 relative per product, over a sum of 256 terms.
    close("tf32 matmul", &exact, &fast, 3e-2);
}

#[test]
fn bf16_autocast_matches_the_cpu_and_rounds() {
    // Both devices multiply the same bf16 operands exactly and sum in f32, in different orders.
    let bf16 = |f: fn(&[Tensor]) -> Result<Tensor>| {
        move |x: &[Tensor]| {
            let _bf16 = autocast(Precision::Bf16);
            f(x)
        }
    };
    let mm = bf16(|x| x[0].matmul(&x[1]));
    parity("bf16 matmul", vec![randn(&[7, 300], 80), randn(&[300, 9], 81)], mm);
    parity("bf16 batched", vec![randn(&[3, 4, 66], 82), randn(&[66, 5], 83)], bf16(|x| x[0].matmul(&x[1])));
    let conv = bf16(|t| t[0].conv2d(&t[1], Some(&t[2]), 1, 1));
    let (x, w) = (randn(&[2, 16, 6, 6], 84), randn(&[8, 16, 3, 3], 85).mul_scalar(0.2).unwrap());
    parity("bf16 conv", vec![x, w, randn(&[8], 86)], conv);
    let rgb = bf16(|t| t[0].conv2d_relu(&t[1], None, 2, 1));
    parity("bf16 conv rgb", vec![randn(&[2, 3, 9, 9], 87), randn(&[16, 3, 3, 3], 88)], rgb);
    // And the GPU really rounded: its bf16 product is off the f32 one by bf16's precision, not f32's.
    let Some((device, _tf32_off)) = gpu("bf16_autocast_matches_the_cpu_and_rounds") else { return };
    let (a, b) = (randn(&[16, 256], 89), randn(&[256, 8], 90));
    let exact = a.matmul(&b).unwrap().to_vec();
    let fast = {
        let _bf16 = autocast(Precision::Bf16);
        a.to_device(device).unwrap().matmul(&b.to_device(device).unwrap()).unwrap().to_vec()
    };
    let worst = exact.iter().zip(&fast).map(|(e, f)| (e - f).abs() / (1.0 + e.abs())).fold(0.0, f32::max);
    // 256 products, each off by up to 2^-8 of itself: about 16 * 2^-8 * |a||b| in all.
    assert!(worst > 1e-3 && worst < 0.2, "bf16 on the GPU is off the f32 product by {worst}");
}

#[test]
fn out_of_memory_is_an_error_not_a_crash() {
    let Some((device, _tf32_off)) = gpu("out_of_memory_is_an_error_not_a_crash") else { return };
    // 4 TiB of floats: more than any GPU has, so the pool is emptied, the allocation retried, then refused.
    let one = Tensor::ones(&[1]).to_device(device).unwrap();
    let err = one.expand(&[1 << 40]).unwrap().contiguous().unwrap_err();
    assert!(err.to_string().contains("MiB on cuda:0"), "{err}");
    // The GPU still works afterwards.
    assert_eq!(one.add_scalar(1.0).unwrap().to_vec(), vec![2.0]);
}

#[test]
fn batch_uploads_in_a_row_keep_their_values() {
    let Some((device, _tf32_off)) = gpu("batch_uploads_in_a_row_keep_their_values") else { return };
    // Batch-sized uploads, more than the staging ring holds, queued with nothing read in between: each goes
    // up on the copy stream through a reused pinned buffer and device landing buffer.
    let n = 40_000;
    let on_gpu: Vec<Tensor> =
        (0..8).map(|i| Tensor::from_vec(vec![i as f32; n], &[n]).unwrap().to_device(device).unwrap()).collect();
    let doubled: Vec<Tensor> = on_gpu.iter().map(|t| t.mul_scalar(2.0).unwrap()).collect();
    for (i, t) in doubled.iter().enumerate() {
        assert!(t.to_vec().iter().all(|&v| v == 2.0 * i as f32), "upload {i} holds another upload's values");
    }
}

#[test]
fn zero_channel_ops_give_empty_results() {
    let Some((device, _tf32_off)) = gpu("zero_channel_ops_give_empty_results") else { return };
    for dev in [Device::Cpu, device] {
        let on = |t: Tensor| t.to_device(dev).unwrap();
        let x = on(randn(&[2, 3, 5, 5], 100));
        let (w, b) = (on(Tensor::zeros(&[0, 3, 3, 3])), on(Tensor::zeros(&[0])));
        assert_eq!(x.conv2d_relu(&w, Some(&b), 2, 1).unwrap().shape(), [2, 0, 3, 3]);
        let empty = on(Tensor::zeros(&[2, 0, 4, 4]));
        assert_eq!(empty.batch_norm(&b, &b, 1e-5).unwrap().0.numel(), 0);
        assert_eq!(empty.max_pool2d(2, 2, 0).unwrap().shape(), [2, 0, 2, 2]);
    }
}

#[test]
fn warp_perspective_matches_the_cpu() {
    let Some((device, _tf32_off)) = gpu("warp_perspective_matches_the_cpu") else { return };
    use rand::Rng;
    use tiny_tensor::WarpPad;
    let mut r = rng(110);
    // Rotations, zooms, shifts, shears and perspective terms; some read far outside the image, one has s = 0
    // everywhere and one is the identity.
    let mut mats: Vec<[f32; 9]> = (0..4)
        .map(|_| {
            let mut m = [0.0f32; 9];
            m.iter_mut().for_each(|v| *v = r.random_range(-1.5..1.5));
            m[6] *= 0.3;
            m[7] *= 0.3;
            m[8] = 1.0;
            m
        })
        .collect();
    mats.push([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    mats.push([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    // Row-major, channels-last (tiny's normalised batches) and a permuted view that is neither, made on each
    // device from the same values.
    let x = randn(&[6, 3, 11, 13], 111);
    let reversed = randn(&[13, 11, 3, 6], 112);
    let input = |k: usize, dev: Device| {
        let t = if k == 2 { reversed.to_device(dev).unwrap() } else { x.to_device(dev).unwrap() };
        match k {
            0 => t,
            1 => t.to_channels_last().unwrap(),
            _ => t.permute(&[3, 2, 1, 0]).unwrap(),
        }
    };
    for k in 0..3 {
        for pad in [WarpPad::Reflection, WarpPad::Zeros] {
            let want = input(k, Device::Cpu).warp_perspective(&mats, pad).unwrap().to_vec();
            let got = input(k, device).warp_perspective(&mats, pad).unwrap();
            assert_eq!(got.device(), device);
            close(&format!("warp_perspective input {k} {pad:?}"), &want, &got.to_vec(), 1e-5);
        }
    }
    // A small channels-last batch (made on the device) under fixed matrices: a rotation with perspective, a zoom
    // that reads far outside the image, and a third coordinate of zero.
    let fixed = [
        [0.3, -0.9, 0.1, 0.8, 0.4, -0.2, 0.15, -0.1, 1.0],
        [3.5, 0.2, 2.0, -0.1, 2.5, -1.5, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    ];
    let small = randn(&[3, 3, 4, 5], 113);
    for pad in [WarpPad::Reflection, WarpPad::Zeros] {
        let on = |dev: Device| small.to_device(dev).unwrap().to_channels_last().unwrap();
        let want = on(Device::Cpu).warp_perspective(&fixed, pad).unwrap().to_vec();
        let got = on(device).warp_perspective(&fixed, pad).unwrap().to_vec();
        close(&format!("warp_perspective fixed matrices {pad:?}"), &want, &got, 1e-5);
    }
    // The PyTorch cases of tests/warp.rs, on the GPU.
    assert_eq!(common::torch::replay_warp(device), 16);
}

#[test]
fn dense_operands_take_the_one_dimensional_kernels() {
    // Dense in one memory order (row-major, channels-last, at an offset) takes the 1-D kernels; a broadcast
    // operand, a transposed copy or a permuted view that is not dense takes the strided ones. Both against the CPU.
    let (a, b) = (randn(&[2, 3, 4, 5], 120), randn(&[2, 3, 4, 5], 121));
    parity("dense add", vec![a.clone(), b.clone()], |x| x[0].add(&x[1]));
    parity("dense exp", vec![a.clone()], |x| x[0].exp());
    let cl = |x: &[Tensor]| Ok((x[0].to_channels_last()?, x[1].to_channels_last()?));
    parity("channels-last mul", vec![a.clone(), b.clone()], |x| cl(x).and_then(|(p, q)| p.mul(&q)));
    parity("channels-last relu", vec![a.clone(), b.clone()], |x| cl(x).and_then(|(p, _)| p.relu()));
    // Channels-last with row-major: not one memory order, so strided.
    parity("channels-last + row-major", vec![a.clone(), b.clone()], |x| x[0].to_channels_last()?.add(&x[1]));
    let flat = randn(&[70], 122);
    parity("dense at an offset", vec![flat.clone()], |x| x[0].narrow(0, 5, 60)?.powf(2.0));
    parity("dense view at an offset + view", vec![flat.clone(), randn(&[60], 123)], |x| {
        x[0].narrow(0, 9, 60)?.reshape(&[3, 4, 5])?.sub(&x[1].reshape(&[3, 4, 5])?)
    });
    parity("dense + broadcast column", vec![randn(&[4, 5], 124), randn(&[4, 1], 125)], |x| x[0].add(&x[1]));
    parity("transposed copy", vec![randn(&[5, 4], 126)], |x| x[0].t()?.contiguous());
    parity("strided view", vec![flat], |x| offset_permuted(&x[0])?.exp());
    // In place: dense destination and source (at offsets), a scale with no source, and a strided source.
    let Some((device, _tf32_off)) = gpu("dense in-place updates") else { return };
    let (d, s) = (randn(&[3, 8], 127), randn(&[3, 8], 128));
    let (gd, gs) = (d.to_device(device).unwrap(), s.to_device(device).unwrap());
    for (dst, src) in [(&d, &s), (&gd, &gs)] {
        dst.narrow(0, 1, 2).unwrap().add_scaled_(&src.narrow(0, 0, 2).unwrap(), 0.5).unwrap();
        dst.narrow(0, 2, 1).unwrap().scale_(-3.0).unwrap();
        dst.narrow(0, 0, 1).unwrap().assign(&src.narrow(0, 2, 1).unwrap()).unwrap();
        dst.narrow(1, 0, 3).unwrap().add_scaled_(&src.t().unwrap().narrow(0, 0, 3).unwrap().t().unwrap(), 2.0).unwrap();
    }
    close("dense in-place updates", &d.to_vec(), &gd.to_vec(), 1e-6);
}

#[test]
fn elementwise_loops_cover_more_elements_than_the_grid_has_threads() {
    let Some((device, _tf32_off)) = gpu("elementwise_loops_cover_more_elements_than_the_grid_has_threads") else {
        return;
    };
    // 16,384 blocks of 256 threads is the largest grid; a few more elements than that, written by the strided copy
    // of a broadcast scalar and the dense affine map, each element once.
    let n = 16_384 * 256 + 1_000;
    let one = Tensor::from_vec(vec![1.5], &[1]).unwrap().to_device(device).unwrap();
    let filled = one.expand(&[n]).unwrap().contiguous().unwrap();
    let out = filled.affine(2.0, 1.0).unwrap().to_vec();
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|&v| v == 4.0), "an element past the grid was not written");
}

#[test]
fn reductions_over_many_blocks() {
    // A full reduction of 1e5 elements (dense, and strided), spread over many blocks of partial results.
    let big = randn(&[100_000], 130);
    parity("sum_all of 1e5", vec![big.clone()], |x| x[0].sum_all());
    parity("max of 1e5", vec![big.clone()], |x| x[0].max(&[0], false));
    let tall = strided(&[400, 250], 131);
    parity("sum_all of a transposed 400x250", vec![tall.clone()], |x| x[0].t()?.sum_all());
    parity("max of a transposed 400x250", vec![tall], |x| x[0].t()?.max(&[0, 1], false));
    // Conv bias gradients: a sum over n, h and w of channels-last data, the channel kept innermost; c = 3 (fewer
    // channels than a warp), 64 and 100 (not a multiple of 32), with rows not a multiple of a block's.
    for (shape, seed) in [([8, 3, 32, 32], 132), ([8, 64, 16, 16], 133), ([4, 100, 12, 11], 134)] {
        let x = randn(&shape, seed);
        let c = shape[1];
        parity(&format!("bias gradient c={c}"), vec![x.clone()], |x| x[0].to_channels_last()?.sum(&[0, 2, 3], false));
        parity(&format!("max over n, h, w c={c}"), vec![x.clone()], |x| x[0].to_channels_last()?.max(&[0, 2, 3], true));
    }
    // Rows of a row-major matrix summed: the kept dimension innermost too.
    parity("sum over rows", vec![randn(&[3000, 40], 135)], |x| x[0].sum(&[0], false));
    // Kept dimensions that are one unit-stride run only in another order than theirs stay on the other kernel.
    let cube = randn(&[6, 5, 4], 136);
    parity("sum of a transposed cube over its last dim", vec![cube], |x| x[0].permute(&[2, 1, 0])?.sum(&[2], false));
}

#[test]
fn batchnorm_with_many_rows_and_odd_sizes() {
    let f = |t: &[Tensor]| t[0].batch_norm(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    let cl = |t: &[Tensor]| t[0].to_channels_last()?.batch_norm(&t[1], &t[2], 1e-5).map(|(y, _, _)| y);
    // 2,048 rows of 64 channels; 3 channels over 315 rows (neither a multiple of a block's); a channel count past
    // a warp and not a multiple of it; and 64 images of 3 channels, which NCHW spreads over several blocks of rows
    // per channel too.
    let shapes = [([8, 64, 16, 16], 140), ([5, 3, 7, 9], 141), ([3, 40, 5, 3], 142), ([64, 3, 16, 16], 146)];
    for (shape, seed) in shapes {
        let c = shape[1];
        let (w, b) = (randn(&[c], seed + 10), randn(&[c], seed + 20));
        parity(&format!("batch_norm nchw {shape:?}"), vec![randn(&shape, seed), w.clone(), b.clone()], f);
        parity(&format!("batch_norm channels-last {shape:?}"), vec![randn(&shape, seed), w, b], cl);
    }
    // Values far from zero (mean 50, spread 0.1): the variance of shifted sums keeps its digits. (Only forward: in
    // f32, x - mean has a relative error of 1e-4 here on either device, which the backward amplifies.)
    let far = randn(&[4, 6, 8, 8], 143).affine(0.1, 50.0).unwrap();
    let (w, b) = (randn(&[6], 144), randn(&[6], 145));
    let Some((device, _tf32_off)) = gpu("batch_norm statistics far from zero") else { return };
    for channels_last in [false, true] {
        let stats = |dev: Device| {
            let x = far.to_device(dev).unwrap();
            let x = if channels_last { x.to_channels_last().unwrap() } else { x };
            let (rm, rv) = (Tensor::zeros(&[6]).to_device(dev).unwrap(), Tensor::ones(&[6]).to_device(dev).unwrap());
            let running = RunningStats { mean: &rm, var: &rv, momentum: 1.0, num_batches_tracked: None };
            let (y, mean, _) =
                x.batch_norm_running(&w.to_device(dev).unwrap(), &b.to_device(dev).unwrap(), 1e-5, running).unwrap();
            (y.to_vec(), mean.to_vec(), rm.to_vec(), rv.to_vec())
        };
        let ((cy, cm, crm, crv), (gy, gm, grm, grv)) = (stats(Device::Cpu), stats(device));
        close(&format!("batch_norm far from zero, channels-last {channels_last}"), &cy, &gy, 1e-3);
        close(&format!("batch mean far from zero, channels-last {channels_last}"), &cm, &gm, 1e-6);
        close(&format!("running mean far from zero, channels-last {channels_last}"), &crm, &grm, 1e-6);
        // The unbiased variance, about 0.01: relative to it, within 1e-3.
        let rel: Vec<f32> = crv.iter().zip(&grv).map(|(c, g)| (c - g) / c).collect();
        close(&format!("running var far from zero, channels-last {channels_last}"), &[0.0; 6], &rel, 1e-3);
    }
}
