//! The CUDA kernels run on the CPU: compiled by g++ against a small shim, checked against the CPU backend.
//!
//! With one thread per block and one block per grid, every grid-stride loop visits all elements and every
//! block reduction is a plain sum, so each kernel becomes an ordinary function. That checks the kernels'
//! index arithmetic and the arguments the launchers build (`strided::plan`, `conv::kgeom`) on any machine
//! with g++; the GPU-only parts (launch shapes, shared memory across threads, atomics) need a GPU.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use libloading::{Library, Symbol};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::conv::{KGeom, kgeom};
use super::strided::{KShape, KStrides, plan};
use crate::backend::Conv2dGeom;
use crate::layout::Layout;
use crate::{Tensor, cpu};

/// Stands in for the CUDA built-ins the kernels use.
const SHIM: &str = r#"
#include <math.h>
#include <string.h>
struct EmuDim { unsigned x, y, z; };
static EmuDim threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
static inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
extern "C" void emu_set_block(unsigned b) { blockIdx.x = b; }
"#;

/// The kernels as a host library, built once per process (the tests run in parallel and would otherwise
/// rewrite one file under each other), with a guard that lets one test at a time use the shim's global
/// block index; or `None` (with a message) where g++ is missing.
fn kernels() -> Option<(MutexGuard<'static, ()>, &'static Library)> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static LIB: OnceLock<Option<Library>> = OnceLock::new();
    LIB.get_or_init(|| {
        if Command::new("g++").arg("--version").output().is_err() {
            eprintln!("cuda::emulate: skipped, g++ not found");
            return None;
        }
        let dir: PathBuf = std::env::temp_dir().join(format!("tiny-cuda-emu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, lib) = (dir.join("kernels.cpp"), dir.join("libkernels.so"));
        std::fs::write(&src, format!("{SHIM}\n{}", super::kernel_source())).unwrap();
        let out =
            Command::new("g++").args(["-O1", "-shared", "-fPIC", "-w", "-o"]).arg(&lib).arg(&src).output().unwrap();
        assert!(out.status.success(), "g++ failed on the kernels:\n{}", String::from_utf8_lossy(&out.stderr));
        Some(unsafe { Library::new(&lib) }.unwrap())
    })
    .as_ref()
    .map(|lib| (guard, lib))
}

fn randv(n: usize, seed: u64) -> Vec<f32> {
    Tensor::randn(&[n], &mut StdRng::seed_from_u64(seed)).to_vec()
}

/// The logical (row-major) values of `layout` over `data`.
fn logical(data: &[f32], layout: &Layout) -> Vec<f32> {
    cpu::copy_contiguous(data, layout)
}

fn close(what: &str, want: &[f32], got: &[f32]) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{what}[{i}]: cpu {a} vs kernel {b}");
    }
}

type Unary = unsafe extern "C" fn(i64, KShape, KStrides, KStrides, *const f32, *mut f32, i32, f32, f32);
type Binary = unsafe extern "C" fn(i64, KShape, KStrides, KStrides, KStrides, *const f32, *const f32, *mut f32, i32);
type Update = unsafe extern "C" fn(i64, KShape, KStrides, KStrides, *mut f32, *const f32, i32, f32);
type Reduce = unsafe extern "C" fn(i64, i64, KShape, KStrides, *const f32, *mut f32, i32);
type Geom1 = unsafe extern "C" fn(i64, KGeom, *const f32, *mut f32);
type MaxPool = unsafe extern "C" fn(i64, KGeom, *const f32, *mut f32, *mut u32);
type MaxPoolBack = unsafe extern "C" fn(i64, KGeom, *const f32, *const u32, *mut f32);
type Index = unsafe extern "C" fn(i64, *const f32, *const u32, *mut f32, i64, i64, i64, i32);
type SgdUpdate = unsafe extern "C" fn(
    i64,
    KShape,
    KStrides,
    KStrides,
    KStrides,
    *mut f32,
    *const f32,
    *mut f32,
    f32,
    f32,
    f32,
    f32,
    i32,
);
type Warp = unsafe extern "C" fn(i64, i64, i64, i64, *const f32, i32, *const f32, *mut f32);
type SgdMany = unsafe extern "C" fn(*const u64, i64, i64, i64, f32, f32, f32, f32);
type LossForward = unsafe extern "C" fn(i64, i64, *const f32, *const u32, *mut f32, *mut f32, f32);
type LossBackward = unsafe extern "C" fn(i64, i64, *const f32, *const f32, *const f32, *const u32, *mut f32, f32);
type BnStats = unsafe extern "C" fn(
    *const f32,
    i64,
    i32,
    i64,
    *mut f32,
    *mut f32,
    *const f32,
    *const f32,
    f32,
    *mut f32,
    *mut f32,
    *mut f32,
    *mut f32,
    *mut f32,
    f32,
    f32,
    *mut f32,
);
type BnAffine = unsafe extern "C" fn(i64, *const f32, *mut f32, *const f32, *const f32, i32, i64);
type BnSums = unsafe extern "C" fn(*const f32, *const f32, *const f32, *const f32, *mut f32, *mut f32, i64, i32, i64);
type BnDx = unsafe extern "C" fn(
    i64,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *mut f32,
    i32,
    i64,
    f32,
);

fn sym<'a, T>(lib: &'a Library, name: &str) -> Symbol<'a, T> {
    unsafe { lib.get(name.as_bytes()) }.unwrap_or_else(|e| panic!("kernel {name}: {e}"))
}

#[test]
fn elementwise_and_reduce_kernels_match_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    // A permuted (dense, not contiguous) [4, 3, 5] view of a [5, 3, 4] buffer with an offset of 2.
    let base = randv(2 + 60, 1);
    let xl = Layout { shape: vec![4, 3, 5], strides: vec![1, 4, 12], offset: 2 };
    let ol = Layout { offset: 0, ..xl.clone() };
    let (shape, [os, xs]) = plan(&xl.shape, [&xl.strides, &xl.strides], [0, xl.offset], true).unwrap();
    use crate::backend::UnaryOp;
    type Reference = fn(f32) -> f32;
    let ops: [(UnaryOp, Reference); 4] = [
        (UnaryOp::Exp, f32::exp),
        (UnaryOp::Powf(2.0), |v| v * v),
        (UnaryOp::Powf(-1.0), |v| 1.0 / v),
        (UnaryOp::Affine { mul: 2.0, add: -1.0 }, |v| v * 2.0 - 1.0),
    ];
    for (op, f) in ops {
        let want: Vec<f32> = logical(&base, &xl).iter().map(|&v| f(v)).collect();
        let (code, p0, p1) = super::elementwise::unary_code(op);
        let mut out = vec![0.0; 60];
        unsafe { sym::<Unary>(lib, "unary_f32")(60, shape, os, xs, base.as_ptr(), out.as_mut_ptr(), code, p0, p1) };
        close(&format!("unary {op:?}"), &want, &logical(&out, &ol));
    }

    // Broadcast add: [4, 3, 5] (the view above) + a [3, 1] column.
    let col = randv(3, 2);
    let bl = Layout { shape: vec![4, 3, 5], strides: vec![0, 1, 0], offset: 0 };
    let (a_vals, b_vals) = (logical(&base, &xl), logical(&col, &bl));
    let want: Vec<f32> = a_vals.iter().zip(&b_vals).map(|(a, b)| a + b).collect();
    let ostr = xl.dense_strides_like();
    let (shape, [os, sa, sb]) = plan(&xl.shape, [&ostr, &xl.strides, &bl.strides], [0, 2, 0], true).unwrap();
    let mut out = vec![0.0; 60];
    unsafe {
        sym::<Binary>(lib, "binary_f32")(60, shape, os, sa, sb, base.as_ptr(), col.as_ptr(), out.as_mut_ptr(), 0)
    };
    close("binary add", &want, &logical(&out, &Layout { shape: xl.shape.clone(), strides: ostr, offset: 0 }));

    // dst[:, 1:4] += 0.5 * src (a transposed view), then the whole of dst *= -2.
    let mut dst = randv(20, 3);
    let mut expect = dst.clone();
    let src = randv(12, 4);
    let dl = Layout { shape: vec![4, 3], strides: vec![5, 1], offset: 1 };
    let sl = Layout { shape: vec![4, 3], strides: vec![1, 4], offset: 0 };
    let s_vals = logical(&src, &sl);
    for r in 0..4 {
        for c in 0..3 {
            expect[1 + r * 5 + c] += 0.5 * s_vals[r * 3 + c];
        }
    }
    expect.iter_mut().for_each(|v| *v *= -2.0);
    let (shape, [ds, ss]) = plan(&dl.shape, [&dl.strides, &sl.strides], [1, 0], true).unwrap();
    let update = sym::<Update>(lib, "update_f32");
    unsafe { update(12, shape, ds, ss, dst.as_mut_ptr(), src.as_ptr(), 1, 0.5) };
    let (shape, [ds]) = plan(&[20], [&[1]], [0], true).unwrap();
    unsafe { update(20, shape, ds, ds, dst.as_mut_ptr(), std::ptr::null(), 2, -2.0) };
    close("update", &expect, &dst);

    // Sum and max over dims 0 and 2 of the permuted view, as `cuda::reduce` arranges them.
    for (op, code) in [(crate::backend::ReduceOp::Sum, 0), (crate::backend::ReduceOp::Max, 1)] {
        let (want, _) = cpu::reduce(&base, &xl, &[true, false, true], op);
        let (shape, strides) = (vec![3, 4, 5], vec![4, 1, 12]);
        let (ks, [xs]) = plan(&shape, [&strides], [2], false).unwrap();
        let mut out = vec![0.0; 3];
        unsafe { sym::<Reduce>(lib, "reduce_f32")(3, 20, ks, xs, base.as_ptr(), out.as_mut_ptr(), code) };
        close("reduce", &want, &out);
    }
}

#[test]
fn conv_and_pool_kernels_match_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    for g in [
        Conv2dGeom { n: 2, c: 3, h: 7, w: 6, f: 4, kh: 3, kw: 3, stride: 2, pad: 1 },
        Conv2dGeom { n: 1, c: 2, h: 9, w: 9, f: 3, kh: 7, kw: 7, stride: 2, pad: 3 },
    ] {
        let (m, k, pixels) = (g.n * g.oh() * g.ow(), g.kh * g.kw * g.c, g.n * g.h * g.w);
        let x = randv(pixels * g.c, 10);
        let w = randv(g.f * k, 11);
        // Forward: im2col then a host matmul with W^T, against the CPU's im2col + GEMM.
        let mut col = vec![0.0; m * k];
        unsafe { sym::<Geom1>(lib, "im2col_f32")(m as i64, kgeom(&g), x.as_ptr(), col.as_mut_ptr()) };
        let mut y = vec![0.0; m * g.f];
        for r in 0..m {
            for f in 0..g.f {
                y[r * g.f + f] = (0..k).map(|j| col[r * k + j] * w[f * k + j]).sum();
            }
        }
        close("im2col forward", &cpu::conv2d_forward(&x, &w, None, false, &g), &y);
        // Backward input: dcol = dout @ W on the host, col2im by the kernel.
        let dout = randv(m * g.f, 12);
        let mut dcol = vec![0.0; m * k];
        for r in 0..m {
            for j in 0..k {
                dcol[r * k + j] = (0..g.f).map(|f| dout[r * g.f + f] * w[f * k + j]).sum();
            }
        }
        let mut dx = vec![0.0; x.len()];
        unsafe { sym::<Geom1>(lib, "col2im_f32")(pixels as i64, kgeom(&g), dcol.as_ptr(), dx.as_mut_ptr()) };
        close("col2im", &cpu::conv2d_backward_input(&dout, &w, &g), &dx);

        // Pooling over the same input, with the window as the kernel.
        let pg = Conv2dGeom { f: g.c, ..g };
        // The pooling kernels count pixels; each covers the c channels.
        let out_pixels = pg.n * pg.oh() * pg.ow();
        let total = out_pixels * pg.c;
        let (want, want_idx) = cpu::max_pool2d(&x, &pg);
        let (mut out, mut idx) = (vec![0.0; total], vec![0u32; total]);
        let max_pool = sym::<MaxPool>(lib, "max_pool_f32");
        unsafe { max_pool(out_pixels as i64, kgeom(&pg), x.as_ptr(), out.as_mut_ptr(), idx.as_mut_ptr()) };
        close("max_pool", &want, &out);
        assert_eq!(want_idx, idx, "max_pool indices");
        let dpool = randv(total, 13);
        let mut dx = vec![0.0; x.len()];
        let back = sym::<MaxPoolBack>(lib, "max_pool_backward_f32");
        unsafe { back(pixels as i64, kgeom(&pg), dpool.as_ptr(), idx.as_ptr(), dx.as_mut_ptr()) };
        close("max_pool backward", &cpu::max_pool2d_backward(&dpool, &want_idx, &pg), &dx);
        let mut out = vec![0.0; total];
        unsafe { sym::<Geom1>(lib, "avg_pool_f32")(out_pixels as i64, kgeom(&pg), x.as_ptr(), out.as_mut_ptr()) };
        close("avg_pool", &cpu::avg_pool2d(&x, &pg), &out);
        let back = sym::<Geom1>(lib, "avg_pool_backward_f32");
        unsafe { back(pixels as i64, kgeom(&pg), dpool.as_ptr(), dx.as_mut_ptr()) };
        close("avg_pool backward", &cpu::avg_pool2d_backward(&dpool, &pg), &dx);
    }
}

#[test]
fn batchnorm_and_index_kernels_match_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    let set_block = sym::<unsafe extern "C" fn(u32)>(lib, "emu_set_block");
    // Both arrangements the backend uses: NCHW (outer n, inner h*w) and channels-last (outer n*h*w, inner 1).
    for dims in [(3usize, 4usize, 5usize), (15, 4, 1)] {
        let (outer, c, inner) = dims;
        let x = randv(outer * c * inner, 20);
        let dy = randv(x.len(), 21);
        let (want_mean, want_var) = cpu::batchnorm::stats(&x, dims);
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        let (dw_, db_) = (vec![0.0f32; c], vec![0.0f32; c]);
        let (mut dw, mut db) = (dw_, db_);
        let invstd: Vec<f32> = want_var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        let (wt, bias) = (randv(c, 22), randv(c, 24));
        let (want_invstd, want_scale, want_shift) = cpu::batchnorm::finalize(&want_mean, &want_var, &wt, &bias, 1e-5);
        let (mut got_invstd, mut scale, mut shift_out) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        let (mut rmean, mut rvar, mut nbt) = (randv(c, 25), vec![1.0; c], vec![0.0f32]);
        let (mut want_rmean, mut want_rvar) = (rmean.clone(), rvar.clone());
        let unbias = (outer * inner) as f32 / (outer * inner - 1) as f32;
        cpu::batchnorm::update_running(&mut want_rmean, &want_mean, 1.0, 0.1);
        cpu::batchnorm::update_running(&mut want_rvar, &want_var, unbias, 0.1);
        for ch in 0..c {
            unsafe {
                set_block(ch as u32);
                let stats = sym::<BnStats>(lib, "bn_stats_f32");
                let (o, ci, i) = (outer as i64, c as i32, inner as i64);
                stats(
                    x.as_ptr(),
                    o,
                    ci,
                    i,
                    mean.as_mut_ptr(),
                    var.as_mut_ptr(),
                    wt.as_ptr(),
                    bias.as_ptr(),
                    1e-5,
                    got_invstd.as_mut_ptr(),
                    scale.as_mut_ptr(),
                    shift_out.as_mut_ptr(),
                    rmean.as_mut_ptr(),
                    rvar.as_mut_ptr(),
                    0.1,
                    unbias,
                    nbt.as_mut_ptr(),
                );
                let sums = sym::<BnSums>(lib, "bn_backward_sums_f32");
                let (o, ci, i) = (outer as i64, c as i32, inner as i64);
                sums(
                    dy.as_ptr(),
                    x.as_ptr(),
                    want_mean.as_ptr(),
                    invstd.as_ptr(),
                    dw.as_mut_ptr(),
                    db.as_mut_ptr(),
                    o,
                    ci,
                    i,
                );
            }
        }
        unsafe { set_block(0) };
        close("bn mean", &want_mean, &mean);
        close("bn var", &want_var, &var);
        close("bn invstd", &want_invstd, &got_invstd);
        close("bn scale", &want_scale, &scale);
        close("bn shift", &want_shift, &shift_out);
        close("bn running mean", &want_rmean, &rmean);
        close("bn running var", &want_rvar, &rvar);
        close("bn batch count", &[1.0], &nbt);
        let shift = randv(c, 23);
        let mut y = vec![0.0; x.len()];
        let affine = sym::<BnAffine>(lib, "bn_affine_f32");
        unsafe {
            affine(x.len() as i64, x.as_ptr(), y.as_mut_ptr(), wt.as_ptr(), shift.as_ptr(), c as i32, inner as i64)
        };
        close("bn affine", &cpu::batchnorm::affine(&x, dims, &wt, &shift), &y);
        let (want_dx, want_dw, want_db) = cpu::batchnorm::backward(&dy, &x, dims, &want_mean, &invstd, &wt);
        close("bn dw", &want_dw, &dw);
        close("bn db", &want_db, &db);
        let mut dx = vec![0.0; x.len()];
        let n = (outer * inner) as f32;
        let bn_dx = sym::<BnDx>(lib, "bn_backward_dx_f32");
        unsafe {
            let (mp, ip) = (want_mean.as_ptr(), invstd.as_ptr());
            bn_dx(
                x.len() as i64,
                dy.as_ptr(),
                x.as_ptr(),
                mp,
                ip,
                wt.as_ptr(),
                dw.as_ptr(),
                db.as_ptr(),
                dx.as_mut_ptr(),
                c as i32,
                inner as i64,
                n,
            )
        };
        close("bn dx", &want_dx, &dx);
    }
    // Gather and scatter-add with repeated indices over [2, 5, 3].
    let (outer, size, inner) = (2usize, 5usize, 3usize);
    let src = randv(outer * size * inner, 30);
    let idx = [4u32, 0, 4, 2];
    let total = outer * idx.len() * inner;
    let index = sym::<Index>(lib, "index_f32");
    let mut out = vec![0.0; total];
    let (sz, inn, ni) = (size as i64, inner as i64, idx.len() as i64);
    unsafe { index(total as i64, src.as_ptr(), idx.as_ptr(), out.as_mut_ptr(), sz, inn, ni, 0) };
    close("index_select", &cpu::index_select(&src, outer, size, inner, &idx), &out);
    let mut acc = vec![0.0; outer * size * inner];
    unsafe { index(total as i64, out.as_ptr(), idx.as_ptr(), acc.as_mut_ptr(), sz, inn, ni, 1) };
    close("index_add", &cpu::index_add(&out, outer, size, inner, &idx), &acc);
}

#[test]
fn fused_cross_entropy_kernels_match_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    let (n, c) = (5usize, 7usize);
    let x: Vec<f32> = randv(n * c, 31).iter().map(|v| v * 20.0).collect();
    let targets = [6u32, 0, 3, 3, 1];
    let g = randv(n, 32);
    let forward = sym::<LossForward>(lib, "log_softmax_nll_f32");
    let backward = sym::<LossBackward>(lib, "log_softmax_nll_backward_f32");
    // Without label smoothing, with fastai's default and with everything smoothed.
    for eps in [0.0f32, 0.1, 1.0] {
        let (want_loss, want_lse) = cpu::log_softmax_nll(&x, c, &targets, eps);
        let (mut loss, mut lse) = (vec![0.0; n], vec![0.0; n]);
        let (ni, ci) = (n as i64, c as i64);
        unsafe { forward(ni, ci, x.as_ptr(), targets.as_ptr(), loss.as_mut_ptr(), lse.as_mut_ptr(), eps) };
        close(&format!("log_softmax_nll loss, eps {eps}"), &want_loss, &loss);
        close(&format!("log_softmax_nll lse, eps {eps}"), &want_lse, &lse);
        let want_dx = cpu::log_softmax_nll_backward(&g, &x, &lse, c, &targets, eps);
        let mut dx = vec![0.0; n * c];
        let total = (n * c) as i64;
        unsafe { backward(total, ci, g.as_ptr(), x.as_ptr(), lse.as_ptr(), targets.as_ptr(), dx.as_mut_ptr(), eps) };
        close(&format!("log_softmax_nll dx, eps {eps}"), &want_dx, &dx);
    }
}

#[test]
fn sgd_update_kernel_matches_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    // A transposed [4, 3] parameter, a contiguous gradient and a buffer at an offset, two steps.
    let pl = Layout { shape: vec![4, 3], strides: vec![1, 4], offset: 0 };
    let gl = Layout::contiguous(&[4, 3]);
    let bl = Layout { offset: 2, ..Layout::contiguous(&[4, 3]) };
    let (g, b0) = (randv(12, 33), randv(14, 34));
    let sgd = sym::<SgdUpdate>(lib, "sgd_update_f32");
    for (nesterov, first) in [(false, true), (true, false)] {
        let step = crate::SgdStep { lr: 0.1, momentum: 0.9, dampening: 0.25, weight_decay: 0.01, nesterov, first };
        let (mut want_p, mut want_b) = (randv(12, 35), b0.clone());
        let (mut p, mut b) = (want_p.clone(), b0.clone());
        cpu::sgd_update(&mut want_p, &pl, &g, &gl, Some((&mut want_b, &bl)), &step);
        let (shape, [ps, gs, bs]) = plan(&pl.shape, [&pl.strides, &gl.strides, &bl.strides], [0, 0, 2], true).unwrap();
        let flags = super::sgd::sgd_flags(true, first, nesterov);
        let (lr, m, damp, wd) = (step.lr, step.momentum, step.dampening, step.weight_decay);
        unsafe { sgd(12, shape, ps, gs, bs, p.as_mut_ptr(), g.as_ptr(), b.as_mut_ptr(), lr, m, damp, wd, flags) };
        close("sgd p", &want_p, &p);
        close("sgd buffer", &want_b, &b);
    }
    // Without a buffer the kernel is given a null one and must not touch it.
    let step = crate::SgdStep { lr: 0.5, weight_decay: 0.1, ..Default::default() };
    let (mut want_p, mut p) = (randv(12, 36), randv(12, 36));
    cpu::sgd_update(&mut want_p, &pl, &g, &gl, None, &step);
    let (shape, [ps, gs]) = plan(&pl.shape, [&pl.strides, &gl.strides], [0, 0], true).unwrap();
    unsafe { sgd(12, shape, ps, gs, ps, p.as_mut_ptr(), g.as_ptr(), std::ptr::null_mut(), 0.5, 0.0, 0.0, 0.1, 0) };
    close("sgd without momentum", &want_p, &p);
}

#[test]
fn multi_tensor_sgd_kernel_matches_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    // Three tensors, one longer than a chunk, one without a buffer, one at its first step, in chunks of 5.
    let step =
        crate::SgdStep { lr: 0.1, momentum: 0.9, dampening: 0.2, weight_decay: 0.01, nesterov: true, first: false };
    let lens = [12usize, 3, 7];
    let mut ps: Vec<Vec<f32>> = lens.iter().enumerate().map(|(k, &n)| randv(n, 40 + k as u64)).collect();
    let gs: Vec<Vec<f32>> = lens.iter().enumerate().map(|(k, &n)| randv(n, 50 + k as u64)).collect();
    let mut bs: Vec<Vec<f32>> = lens.iter().enumerate().map(|(k, &n)| randv(n, 60 + k as u64)).collect();
    let kinds = [(true, false), (false, false), (true, true)]; // (has buffer, first)
    let (mut want_p, mut want_b) = (ps.clone(), bs.clone());
    let mut table: Vec<u64> = Vec::new();
    let mut chunks: Vec<u64> = Vec::new();
    for k in 0..3 {
        let (has_buffer, first) = kinds[k];
        let l = Layout::contiguous(&[lens[k]]);
        let buf = has_buffer.then_some((&mut want_b[k][..], &l));
        cpu::sgd_update(&mut want_p[k], &l, &gs[k], &l, buf, &crate::SgdStep { first, ..step });
        let b = if has_buffer { bs[k].as_mut_ptr() as u64 } else { 0 };
        let flags = super::sgd::sgd_flags(has_buffer, first, true) as u64;
        table.extend([ps[k].as_mut_ptr() as u64, gs[k].as_ptr() as u64, b, lens[k] as u64, flags]);
        chunks.extend((0..lens[k]).step_by(5).flat_map(|start| [k as u64, start as u64]));
    }
    let n_chunks = chunks.len() as i64 / 2;
    table.extend(chunks);
    let many = sym::<SgdMany>(lib, "sgd_update_many_f32");
    unsafe { many(table.as_ptr(), 3, n_chunks, 5, step.lr, step.momentum, step.dampening, step.weight_decay) };
    for k in 0..3 {
        close("multi-tensor sgd p", &want_p[k], &ps[k]);
        close("multi-tensor sgd buffer", &want_b[k], &bs[k]);
    }
}

#[test]
fn warp_kernel_matches_the_cpu() {
    let Some((_one_at_a_time, lib)) = kernels() else { return };
    // Three images of [4, 5] pixels and 3 channels, channels-last: a rotation with perspective, a zoom that
    // reads far outside, and a matrix whose third coordinate is zero.
    let dims @ [n, c, h, w] = [3usize, 3, 4, 5];
    let x = randv(n * h * w * c, 70);
    let mats = [
        [0.3, -0.9, 0.1, 0.8, 0.4, -0.2, 0.15, -0.1, 1.0],
        [3.5, 0.2, 2.0, -0.1, 2.5, -1.5, 0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    ];
    let warp = sym::<Warp>(lib, "warp_perspective_f32");
    for pad in [crate::WarpPad::Reflection, crate::WarpPad::Zeros] {
        let mut out = vec![0.0; x.len()];
        let (p, reflection) = ((n * h * w) as i64, i32::from(pad == crate::WarpPad::Reflection));
        let flat: Vec<f32> = mats.iter().flatten().copied().collect();
        unsafe { warp(p, h as i64, w as i64, c as i64, flat.as_ptr(), reflection, x.as_ptr(), out.as_mut_ptr()) };
        close(&format!("warp {pad:?}"), &cpu::warp_perspective(&x, &mats, pad, dims), &out);
    }
}
