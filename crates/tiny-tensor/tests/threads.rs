//! The CPU kernels that share work among threads give the same bits on one thread and on two.
//!
//! This file is its own test binary, so its single test sets the thread count without racing others.

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::{Tensor, set_num_threads};

/// The forward output and every input gradient of `f` on fresh copies of `inputs`, with `threads` threads;
/// the loss is the output weighted by `r`, so each gradient path carries distinct values.
fn run(
    threads: usize,
    inputs: &[Vec<f32>],
    shapes: &[&[usize]],
    r: &Tensor,
    f: &dyn Fn(&[Tensor]) -> Tensor,
) -> Vec<Vec<f32>> {
    set_num_threads(threads);
    let ts: Vec<Tensor> = inputs
        .iter()
        .zip(shapes)
        .map(|(v, s)| Tensor::from_vec(v.clone(), s).unwrap().set_requires_grad(true))
        .collect();
    let y = f(&ts);
    y.mul(r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y.try_to_vec().unwrap()];
    out.extend(ts.iter().map(|t| t.grad().unwrap().try_to_vec().unwrap()));
    set_num_threads(0);
    out
}

/// One kernel under test: its name, the op, its inputs with their shapes, and the output's shape.
struct Case<'a> {
    name: &'a str,
    op: &'a dyn Fn(&[Tensor]) -> Tensor,
    inputs: Vec<Vec<f32>>,
    shapes: Vec<&'a [usize]>,
    out_shape: Vec<usize>,
}

#[test]
fn cpu_kernels_are_thread_count_invariant() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut randn = |shape: &[usize]| Tensor::randn(shape, &mut rng).try_to_vec().unwrap();
    // Large enough that each kernel splits its work: [8, 32, 20, 20] channels-last and NCHW.
    let (x, w, b) = (randn(&[8, 20, 20, 32]), randn(&[32]), randn(&[32]));
    // Convolution weights as constants, so that only the input gradient runs (a weight gradient adds one
    // partial sum per thread, by design).
    let (w3, w3s2) = (Tensor::randn(&[48, 32, 3, 3], &mut rng), Tensor::randn(&[16, 32, 3, 3], &mut rng));
    let mut randn = |shape: &[usize]| Tensor::randn(shape, &mut rng).try_to_vec().unwrap();
    let cases = [
        Case {
            name: "elementwise",
            op: &|t| t[0].relu().unwrap().add(&t[1].mul(&t[0]).unwrap()).unwrap(),
            inputs: vec![x.clone(), randn(&[8, 32, 20, 20])],
            shapes: vec![&[8, 32, 20, 20], &[8, 32, 20, 20]],
            out_shape: vec![8, 32, 20, 20],
        },
        Case {
            // 3x3 stride 1 takes Winograd on AVX-512 CPUs, stride 2 im2col.
            name: "conv2d",
            op: &|t| {
                let x = t[0].permute(&[0, 3, 1, 2]).unwrap();
                let y = x.conv2d_relu(&w3, None, 1, 1).unwrap();
                y.add(&x.conv2d(&w3s2, None, 2, 1).unwrap().mean_all().unwrap()).unwrap()
            },
            inputs: vec![x.clone()],
            shapes: vec![&[8, 20, 20, 32]],
            out_shape: vec![8, 48, 20, 20],
        },
        Case {
            name: "max_pool2d channels-last",
            op: &|t| t[0].permute(&[0, 3, 1, 2]).unwrap().max_pool2d(3, 2, 1).unwrap(),
            inputs: vec![x.clone()],
            shapes: vec![&[8, 20, 20, 32]],
            out_shape: vec![8, 32, 10, 10],
        },
        Case {
            name: "batch_norm channels-last",
            op: &|t| t[0].permute(&[0, 3, 1, 2]).unwrap().batch_norm(&t[1], &t[2], 1e-5).unwrap().0,
            inputs: vec![x.clone(), w.clone(), b.clone()],
            shapes: vec![&[8, 20, 20, 32], &[32], &[32]],
            out_shape: vec![8, 32, 20, 20],
        },
        Case {
            name: "batch_norm_relu channels-last",
            op: &|t| t[0].permute(&[0, 3, 1, 2]).unwrap().batch_norm_relu(&t[1], &t[2], 1e-5).unwrap().0,
            inputs: vec![x.clone(), w.clone(), b.clone()],
            shapes: vec![&[8, 20, 20, 32], &[32], &[32]],
            out_shape: vec![8, 32, 20, 20],
        },
        Case {
            // Cut by rows (m > n), then by columns (n > m): each thread runs whole dot products.
            name: "matmul",
            op: &|t| t[0].matmul(&t[1]).unwrap().matmul(&t[2]).unwrap(),
            inputs: vec![randn(&[300, 200]), randn(&[200, 100]), randn(&[100, 700])],
            shapes: vec![&[300, 200], &[200, 100], &[100, 700]],
            out_shape: vec![300, 700],
        },
        Case {
            // k > 512 with sides near 64: halves of 120 rows would fall into the gemm crate's small-size blocking
            // of k, so this one must stay whole.
            name: "matmul near the gemm crate's small sizes",
            op: &|t| t[0].matmul(&t[1]).unwrap(),
            inputs: vec![randn(&[120, 1200]), randn(&[1200, 60])],
            shapes: vec![&[120, 1200], &[1200, 60]],
            out_shape: vec![120, 60],
        },
        Case {
            name: "batch_norm NCHW",
            op: &|t| t[0].batch_norm(&t[1], &t[2], 1e-5).unwrap().0,
            inputs: vec![x.clone(), w.clone(), b.clone()],
            shapes: vec![&[8, 32, 20, 20], &[32], &[32]],
            out_shape: vec![8, 32, 20, 20],
        },
        Case {
            name: "batch_norm_relu NCHW",
            op: &|t| t[0].batch_norm_relu(&t[1], &t[2], 1e-5).unwrap().0,
            inputs: vec![x.clone(), w.clone(), b.clone()],
            shapes: vec![&[8, 32, 20, 20], &[32], &[32]],
            out_shape: vec![8, 32, 20, 20],
        },
    ];
    for Case { name, op: f, inputs, shapes, out_shape } in cases {
        let r = Tensor::randn(&out_shape, &mut StdRng::seed_from_u64(4));
        let one = run(1, &inputs, &shapes, &r, f);
        let two = run(2, &inputs, &shapes, &r, f);
        assert!(one[0].iter().any(|&v| v != 0.0), "{name}: the output is all zeros");
        for (k, (a, b)) in one.iter().zip(&two).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name}: result {k} differs between one thread and two");
        }
    }
}
