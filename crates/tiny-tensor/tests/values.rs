//! Closed-form values: broadcasting, views, keepdim reductions, logsumexp stability, conv and pooling
//! against direct loops, autograd bookkeeping, and errors that name the op; each on the CPU and, where a GPU
//! opens, on CUDA (`test_device!`). Random fills and the CPU buffer pool are CPU only.

mod common;

use common::{assert_all_close, assert_values, grad, leaf, on, param, rng, test_device};
use tiny_tensor::{Device, Tensor, TensorError, UpdateOp, UpdateProgram, foreach_update_};

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

/// `t(data, shape)` moved to `device`.
fn t_on(device: Device, data: &[f32], shape: &[usize]) -> Tensor {
    on(&t(data, shape), device)
}

fn derivative_of_a_polynomial(device: Device) {
    // y = x^2 + 5x, so dy/dx = 2x + 5.
    let x = leaf(&t(&[-2.0, 0.0, 3.0], &[3]), device);
    let y = x.powf(2.0).unwrap().add(&x.mul_scalar(5.0).unwrap()).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    // powf's backward is a powf on the GPU too, within a few ulps there.
    assert_values(device, &grad(&x), &[1.0, 5.0, 11.0]);
}
test_device!(derivative_of_a_polynomial, derivative_of_a_polynomial_cpu, derivative_of_a_polynomial_cuda);

fn closed_form_values_of_elementwise_ops(device: Device) {
    let x = t_on(device, &[1.0, 4.0], &[2]);
    // sqrt and division are correctly rounded on both devices; exp and log only on the CPU.
    assert_eq!(x.sqrt().unwrap().to_vec(), vec![1.0, 2.0]);
    assert_values(device, &x.log().unwrap().exp().unwrap().to_vec(), &[1.0, 4.0]);
    assert_eq!(t_on(device, &[-1.0, 2.0], &[2]).relu().unwrap().to_vec(), vec![0.0, 2.0]);
    assert_eq!(x.div(&t_on(device, &[2.0], &[1])).unwrap().to_vec(), vec![0.5, 2.0]);
    assert_eq!(x.neg().unwrap().to_vec(), vec![-1.0, -4.0]);
    assert_eq!(x.eq(&t_on(device, &[1.0, 3.0], &[2])).unwrap().to_vec(), vec![1.0, 0.0]);
}
test_device!(
    closed_form_values_of_elementwise_ops,
    closed_form_values_of_elementwise_ops_cpu,
    closed_form_values_of_elementwise_ops_cuda
);

fn broadcasting_expands_both_sides(device: Device) {
    let col = t_on(device, &[1.0, 2.0], &[2, 1]);
    let row = t_on(device, &[10.0, 20.0, 30.0], &[3]);
    let s = col.add(&row).unwrap();
    assert_eq!(s.shape(), &[2, 3]);
    assert_eq!(s.device(), device);
    assert_eq!(s.to_vec(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    let err = row.add(&t_on(device, &[1.0, 2.0, 3.0, 4.0], &[4])).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "add", .. }), "{err}");
    // Gradients of broadcast inputs are summed back to their shapes.
    let (c, r) = (col.set_requires_grad(true), row.set_requires_grad(true));
    c.add(&r).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&c), vec![3.0, 3.0]);
    assert_eq!(grad(&r), vec![2.0, 2.0, 2.0]);
}
test_device!(
    broadcasting_expands_both_sides,
    broadcasting_expands_both_sides_cpu,
    broadcasting_expands_both_sides_cuda
);

fn permute_then_reshape_reads_in_logical_order(device: Device) {
    // NHWC [1, 2, 2, 3] -> NCHW, then flatten: channel planes come out one after the other.
    let nhwc = t_on(device, &(0..12).map(|i| i as f32).collect::<Vec<_>>(), &[1, 2, 2, 3]);
    let nchw = nhwc.permute(&[0, 3, 1, 2]).unwrap();
    assert_eq!(nchw.shape(), &[1, 3, 2, 2]);
    assert!(!nchw.layout().is_contiguous());
    assert_eq!(nchw.reshape(&[12]).unwrap().to_vec(), vec![0., 3., 6., 9., 1., 4., 7., 10., 2., 5., 8., 11.]);
    // Elementwise results keep the channels-last memory order.
    assert_eq!(nchw.relu().unwrap().layout().strides, nchw.layout().strides);
    assert_eq!(nchw.narrow(1, 1, 1).unwrap().to_vec(), vec![1., 4., 7., 10.]);
}
test_device!(
    permute_then_reshape_reads_in_logical_order,
    permute_then_reshape_reads_in_logical_order_cpu,
    permute_then_reshape_reads_in_logical_order_cuda
);

fn to_channels_last_moves_nchw_into_nhwc_memory(device: Device) {
    // [2, 3, 5, 70]: 350 pixels per channel, more than one block of the CPU's transpose and a partial last one.
    let (n, c, h, w) = (2, 3, 5, 70);
    let data: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
    let x = t_on(device, &data, &[n, c, h, w]);
    let y = x.to_channels_last().unwrap();
    assert_eq!(y.to_vec(), data, "the same values behind the same indices");
    let memory = y.permute(&[0, 2, 3, 1]).unwrap();
    assert!(memory.layout().is_contiguous());
    let want: Vec<f32> = (0..n * h * w * c)
        .map(|i| {
            let (b, p, ch) = (i / (h * w * c), i / c % (h * w), i % c);
            data[(b * c + ch) * h * w + p]
        })
        .collect();
    assert_eq!(memory.to_vec(), want, "NHWC order in memory");
}
test_device!(
    to_channels_last_moves_nchw_into_nhwc_memory,
    to_channels_last_moves_nchw_into_nhwc_memory_cpu,
    to_channels_last_moves_nchw_into_nhwc_memory_cuda
);

fn keepdim_reductions(device: Device) {
    // Sums of small integers are exact in any order, so these hold exactly on a GPU too.
    let x = t_on(device, &[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]);
    assert_eq!(x.sum(&[1], true).unwrap().shape(), &[2, 1]);
    assert_eq!(x.sum(&[1], true).unwrap().to_vec(), vec![9.0, 12.0]);
    assert_eq!(x.mean(&[0], false).unwrap().to_vec(), vec![2.5, 3.5, 4.5]);
    assert_eq!(x.max(&[-1], true).unwrap().to_vec(), vec![5.0, 6.0]);
    assert_eq!(x.max(&[], false).unwrap().shape(), &[] as &[usize]);
    assert_eq!(x.argmax(1).unwrap(), vec![1, 2]);
    assert_eq!(x.argmax(0).unwrap(), vec![1, 0, 1]);
    // A keepdim result broadcasts straight back against its input.
    let centred = x.sub(&x.mean(&[1], true).unwrap()).unwrap();
    assert_all_close(&centred.sum(&[1], false).unwrap().to_vec(), &[0.0, 0.0], 1e-6);
}
test_device!(keepdim_reductions, keepdim_reductions_cpu, keepdim_reductions_cuda);

fn logsumexp_is_stable_and_matches_the_naive_form(device: Device) {
    // 1e-6 relative is already a few ulps: it holds for CUDA's expf and logf too.
    let x = t_on(device, &[1.0, 2.0, 3.0, -1.0, 0.0, 1.0], &[2, 3]);
    let naive = x.exp().unwrap().sum(&[-1], false).unwrap().log().unwrap();
    assert_all_close(&x.logsumexp(&[-1], false).unwrap().to_vec(), &naive.to_vec(), 1e-6);
    let big = t_on(device, &[1e4, -1e4, 1e4, -1e4], &[2, 2]);
    let lse = big.logsumexp(&[-1], false).unwrap().to_vec();
    assert!(lse.iter().all(|v| v.is_finite()), "{lse:?}");
    assert_all_close(&lse, &[1e4, 1e4], 1e-6);
    assert!(big.exp().unwrap().sum(&[-1], false).unwrap().log().unwrap().to_vec()[0].is_infinite());
}
test_device!(
    logsumexp_is_stable_and_matches_the_naive_form,
    logsumexp_is_stable_and_matches_the_naive_form_cpu,
    logsumexp_is_stable_and_matches_the_naive_form_cuda
);

fn fused_log_softmax_nll_matches_the_composed_form_and_stays_finite(device: Device) {
    let x = leaf(&param(&[6, 10], -3.0, 3.0, 29), device);
    let targets = [0, 9, 3, 3, 7, 1];
    let composed = x.sub(&x.logsumexp(&[-1], true).unwrap()).unwrap().pick(&targets).unwrap().neg().unwrap();
    assert_all_close(&x.log_softmax_nll(&targets).unwrap().to_vec(), &composed.to_vec(), 1e-5);
    // Logits of +-1e4: the target at the maximum costs nothing, one far below it costs the gap. exp(-2e4) is 0
    // and log(1) is 0 on every device, so this is exact on a GPU too.
    let big = t_on(device, &[1e4, -1e4, 0.0, 1e4], &[2, 2]);
    assert_eq!(big.log_softmax_nll(&[0, 0]).unwrap().to_vec(), vec![0.0, 1e4]);
    let err = big.log_softmax_nll(&[0, 2]).unwrap_err();
    assert_eq!(err.to_string(), "log_softmax_nll: index 2 is out of range for a dimension of size 2");
    assert!(big.log_softmax_nll(&[0]).is_err());
}
test_device!(
    fused_log_softmax_nll_matches_the_composed_form_and_stays_finite,
    fused_log_softmax_nll_matches_the_composed_form_and_stays_finite_cpu,
    fused_log_softmax_nll_matches_the_composed_form_and_stays_finite_cuda
);

fn label_smoothing_blends_the_nll_with_the_mean_over_classes(device: Device) {
    let x = leaf(&param(&[6, 10], -3.0, 3.0, 30), device);
    let targets = [0, 9, 3, 3, 7, 1];
    // eps 0 is the plain fused op, bit for bit, values and gradients (one kernel on either device).
    let plain = x.log_softmax_nll(&targets).unwrap();
    let smooth0 = x.log_softmax_nll_smooth(&targets, 0.0).unwrap();
    assert_eq!(plain.to_vec(), smooth0.to_vec());
    let grad_of = |loss: Tensor| {
        x.zero_grad();
        loss.mean_all().unwrap().backward().unwrap();
        grad(&x)
    };
    assert_eq!(grad_of(plain), grad_of(smooth0));
    // Otherwise (1 - eps) * nll + eps * mean_c(-log_softmax), as PyTorch's label_smoothing and fastai's
    // LabelSmoothingCrossEntropy compute it.
    let lsm = x.sub(&x.logsumexp(&[-1], true).unwrap()).unwrap();
    let nll = lsm.pick(&targets).unwrap().neg().unwrap().to_vec();
    let uniform = lsm.mean(&[-1], false).unwrap().neg().unwrap().to_vec();
    for eps in [0.1f32, 0.5, 1.0] {
        let want: Vec<f32> = nll.iter().zip(&uniform).map(|(n, u)| (1.0 - eps) * n + eps * u).collect();
        assert_all_close(&x.log_softmax_nll_smooth(&targets, eps).unwrap().to_vec(), &want, 1e-5);
    }
    // Logits of +-1e4 stay finite: the mean of -log p over [1e4, -1e4] is 1e4, whatever the target. Only
    // exp(-2e4) = 0, log(1) = 0 and exact sums are involved, so this is exact on a GPU too.
    let big = t_on(device, &[1e4, -1e4, 0.0, 1e4], &[2, 2]);
    assert_eq!(big.log_softmax_nll_smooth(&[0, 0], 1.0).unwrap().to_vec(), vec![1e4, 5e3]);
    assert_eq!(big.log_softmax_nll_smooth(&[0, 0], 0.5).unwrap().to_vec(), vec![5e3, 7.5e3]);
    // eps outside [0, 1] (NaN included) is an error that names the op.
    for eps in [-0.1, 1.5, f32::NAN, f32::INFINITY] {
        let err = big.log_softmax_nll_smooth(&[0, 0], eps).unwrap_err();
        assert!(matches!(&err, TensorError::InvalidArgument { op: "log_softmax_nll", .. }), "eps {eps}: {err}");
    }
    assert_eq!(
        big.log_softmax_nll_smooth(&[0, 0], 2.0).unwrap_err().to_string(),
        "log_softmax_nll: label smoothing eps must lie in [0, 1], got 2"
    );
}
test_device!(
    label_smoothing_blends_the_nll_with_the_mean_over_classes,
    label_smoothing_blends_the_nll_with_the_mean_over_classes_cpu,
    label_smoothing_blends_the_nll_with_the_mean_over_classes_cuda
);

/// A convolution's definition as loops: calls `visit(out, x, w)` with the flat NCHW indices of every output
/// element, input element and weight that multiply together, in the order output by output, then `(c, ky,
/// kx)`; windows in the padding are skipped.
fn conv_taps(xs: &[usize], ws: &[usize], stride: usize, pad: usize, mut visit: impl FnMut(usize, usize, usize)) {
    let (n, c, h, wd, f, kh, kw) = (xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3]);
    let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (wd + 2 * pad - kw) / stride + 1);
    for ni in 0..n {
        for fi in 0..f {
            for oy in 0..oh {
                for ox in 0..ow {
                    let out = ((ni * f + fi) * oh + oy) * ow + ox;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let x = ((ni * c + ci) * h + iy as usize) * wd + ix as usize;
                                    visit(out, x, ((fi * c + ci) * kh + ky) * kw + kx);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The convolution straight from its definition, the reference the GEMM path must reproduce.
fn conv_reference(x: &Tensor, w: &Tensor, b: &[f32], stride: usize, pad: usize) -> Vec<f32> {
    let (xs, ws) = (x.shape(), w.shape());
    let (xv, wv) = (x.to_vec(), w.to_vec());
    let (oh, ow) = ((xs[2] + 2 * pad - ws[2]) / stride + 1, (xs[3] + 2 * pad - ws[3]) / stride + 1);
    let plane = oh * ow;
    let mut out: Vec<f32> = (0..xs[0] * ws[0] * plane).map(|i| b[i / plane % ws[0]]).collect();
    conv_taps(xs, ws, stride, pad, |o, xi, wi| out[o] += xv[xi] * wv[wi]);
    out
}

fn conv2d_matches_the_definition(device: Device) {
    // The RGB 3x3 cases with 16 or 32 filters take the direct AVX-512 kernel where the CPU has it.
    for (n, c, h, f, k, stride, pad) in [
        (2, 3, 7, 4, 3, 1, 1),
        (3, 5, 9, 6, 3, 2, 1),
        (1, 3, 11, 8, 7, 2, 3),
        (4, 8, 6, 5, 1, 2, 0),
        (2, 4, 5, 3, 1, 1, 0),
        (3, 3, 9, 16, 3, 2, 1),
        (2, 3, 7, 32, 3, 1, 1),
        (2, 3, 6, 16, 3, 2, 0),
    ] {
        let x = on(&param(&[n, c, h, h], -1.0, 1.0, 30), device);
        let w = on(&param(&[f, c, k, k], -1.0, 1.0, 31), device);
        let b: Vec<f32> = (0..f).map(|i| i as f32 * 0.1).collect();
        let got = x.conv2d(&w, Some(&t_on(device, &b, &[f])), stride, pad).unwrap();
        assert_eq!(got.device(), device);
        assert_all_close(&got.to_vec(), &conv_reference(&x, &w, &b, stride, pad), 1e-4);
    }
    // Big enough that the batch is split into several im2col chunks.
    let x = on(&param(&[64, 16, 32, 32], -1.0, 1.0, 32), device);
    let w = on(&param(&[8, 16, 3, 3], -1.0, 1.0, 33), device);
    let got = x.conv2d(&w, None, 2, 1).unwrap();
    assert_all_close(&got.to_vec(), &conv_reference(&x, &w, &[0.0; 8], 2, 1), 1e-4);
}
test_device!(conv2d_matches_the_definition, conv2d_matches_the_definition_cpu, conv2d_matches_the_definition_cuda);

/// The input gradient straight from its definition: every output gradient spread back over its window.
fn conv_input_grad_reference(dout: &Tensor, w: &Tensor, x_shape: &[usize], stride: usize, pad: usize) -> Vec<f32> {
    let (dv, wv) = (dout.to_vec(), w.to_vec());
    let mut dx = vec![0.0; x_shape.iter().product()];
    conv_taps(x_shape, w.shape(), stride, pad, |o, xi, wi| dx[xi] += dv[o] * wv[wi]);
    dx
}

fn conv2d_input_grad_matches_the_definition(device: Device) {
    // The RGB cases are wide enough for one full group of 16 output columns in the direct kernel's
    // vector lanes plus a partial one, at strides 1 and 2 and an odd width. Channel counts that are a
    // multiple of 16 take the vector col2im, including a strided 1x1 that leaves rows untouched.
    for (n, c, h, f, k, stride, pad) in [
        (2, 3, 40, 16, 3, 2, 1),
        (1, 3, 37, 32, 3, 2, 1),
        (2, 3, 36, 16, 3, 2, 0),
        (1, 3, 20, 16, 3, 1, 1),
        (2, 16, 12, 8, 3, 2, 1),
        (1, 16, 9, 4, 3, 1, 1),
        (2, 32, 10, 8, 3, 2, 0),
        (2, 16, 8, 4, 1, 2, 0),
        (2, 5, 9, 4, 1, 2, 0),
    ] {
        let oh = (h + 2 * pad - k) / stride + 1;
        let dout = on(&param(&[n, f, oh, oh], -1.0, 1.0, 35), device);
        let w = on(&param(&[f, c, k, k], -1.0, 1.0, 36), device);
        let x_shape = [n, c, h, h];
        let got = dout.conv2d_input_grad(&w, &x_shape, stride, pad).unwrap();
        assert_eq!(got.device(), device);
        assert_all_close(&got.to_vec(), &conv_input_grad_reference(&dout, &w, &x_shape, stride, pad), 1e-4);
    }
}
test_device!(
    conv2d_input_grad_matches_the_definition,
    conv2d_input_grad_matches_the_definition_cpu,
    conv2d_input_grad_matches_the_definition_cuda
);

#[test]
fn conv2d_input_grad_overwrites_a_recycled_buffer() {
    // The output buffer comes from the pool of freed buffers, so it holds the previous call's values: every
    // element must be written, including the rows a strided 1x1 kernel never reaches.
    // A 3x3 call first fills every row, then a 1x1 call of the same input size gets that buffer back.
    // CPU only: the pool is the CPU allocator's (`cpu/alloc.rs`).
    let x_shape = [2, 16, 32, 32];
    for (k, pad) in [(3, 1), (1, 0), (3, 1), (1, 0)] {
        let w = param(&[8, 16, k, k], -1.0, 1.0, 37);
        let o = (32 + 2 * pad - k) / 2 + 1;
        let dout = param(&[2, 8, o, o], -1.0, 1.0, 38);
        let got = dout.conv2d_input_grad(&w, &x_shape, 2, pad).unwrap().to_vec();
        assert_all_close(&got, &conv_input_grad_reference(&dout, &w, &x_shape, 2, pad), 1e-4);
    }
}

fn conv2d_on_empty_inputs_is_not_a_panic(device: Device) {
    // A zero-sized image with enough padding still has outputs (all from the padding), and no channels or
    // no images give empty results; the backward passes return gradients of the right (empty) shapes.
    for (x_shape, w_shape, pad) in
        [([1, 16, 0, 0], [4, 16, 1, 1], 1), ([2, 0, 5, 5], [4, 0, 3, 3], 1), ([0, 3, 8, 8], [16, 3, 3, 3], 1)]
    {
        let x = leaf(&Tensor::zeros(&x_shape), device);
        let w = leaf(&Tensor::zeros(&w_shape), device);
        let y = x.conv2d(&w, None, 1, pad).unwrap();
        y.sum_all().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), x_shape);
        assert_eq!(w.grad().unwrap().shape(), w_shape);
        assert_eq!((x.grad().unwrap().device(), w.grad().unwrap().device()), (device, device));
    }
}
test_device!(
    conv2d_on_empty_inputs_is_not_a_panic,
    conv2d_on_empty_inputs_is_not_a_panic_cpu,
    conv2d_on_empty_inputs_is_not_a_panic_cuda
);

fn conv2d_rejects_mismatched_channels(device: Device) {
    let (x, w) = (on(&Tensor::zeros(&[1, 3, 8, 8]), device), on(&Tensor::zeros(&[4, 2, 3, 3]), device));
    let err = x.conv2d(&w, None, 1, 1).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: shape mismatch between [1, 3, 8, 8] and [4, 2, 3, 3]");
}
test_device!(
    conv2d_rejects_mismatched_channels,
    conv2d_rejects_mismatched_channels_cpu,
    conv2d_rejects_mismatched_channels_cuda
);

fn pooling_values(device: Device) {
    // Means of four small integers are exact on any device.
    let x = t_on(device, &(0..16).map(|i| i as f32).collect::<Vec<_>>(), &[1, 1, 4, 4]);
    assert_eq!(x.max_pool2d(2, 2, 0).unwrap().to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
    assert_eq!(x.avg_pool2d(2, 2, 0).unwrap().to_vec(), vec![2.5, 4.5, 10.5, 12.5]);
    // resnet18's stem pool: 3x3, stride 2, padding 1; padding never wins the max.
    let neg = x.neg().unwrap();
    assert_eq!(neg.max_pool2d(3, 2, 1).unwrap().to_vec(), vec![0.0, -1.0, -4.0, -5.0]);
    // As in PyTorch: a tie goes to the window's first element, a NaN wins, and a window of -inf picks its first.
    let inf = f32::NEG_INFINITY;
    let data = [1.0, 1.0, 2.0, f32::NAN, inf, inf, 3.0, 3.0, inf, inf, inf, inf];
    let x = t_on(device, &data, &[1, 1, 3, 4]).set_requires_grad(true);
    let y = x.max_pool2d(2, 2, 0).unwrap();
    let out = y.to_vec();
    assert_eq!(out[0], 1.0);
    assert!(out[1].is_nan(), "a NaN wins its window: {out:?}");
    y.sum_all().unwrap().backward().unwrap();
    let winners = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(x.grad().unwrap().to_vec(), winners);
    let all_inf = t_on(device, &[inf; 4], &[1, 1, 2, 2]).set_requires_grad(true);
    all_inf.max_pool2d(2, 2, 0).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(all_inf.grad().unwrap().to_vec(), vec![1.0, 0.0, 0.0, 0.0]);
}
test_device!(pooling_values, pooling_values_cpu, pooling_values_cuda);

fn autograd_bookkeeping(device: Device) {
    let w = leaf(&param(&[3], -1.0, 1.0, 40), device);
    let loss = || w.mul_scalar(2.0).unwrap().sum_all().unwrap();
    loss().backward().unwrap();
    loss().backward().unwrap();
    assert_eq!(grad(&w), vec![4.0; 3], "gradients accumulate");
    w.zero_grad();
    assert!(w.grad().is_none());
    {
        let _guard = tiny_tensor::no_grad();
        assert!(!w.mul_scalar(2.0).unwrap().requires_grad());
    }
    assert!(w.mul_scalar(2.0).unwrap().requires_grad());
    assert!(!w.detach().requires_grad());
    assert!(matches!(w.mul_scalar(1.0).unwrap().backward(), Err(TensorError::NotScalar { .. })));
    assert!(matches!(on(&Tensor::ones(&[1]), device).backward(), Err(TensorError::NoGrad)));
    // A tensor used twice gets both contributions: d(x*x)/dx = 2x.
    let x = leaf(&t(&[3.0], &[1]), device);
    x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&x), vec![6.0]);
}
test_device!(autograd_bookkeeping, autograd_bookkeeping_cpu, autograd_bookkeeping_cuda);

fn zero_channel_batchnorm_is_empty_not_a_panic(device: Device) {
    let wb = on(&Tensor::zeros(&[0]), device);
    let x = on(&Tensor::zeros(&[2, 0, 4, 4]), device);
    for x in [x.clone(), x.to_channels_last().unwrap()] {
        let x = x.detach().set_requires_grad(true);
        let (y, mean, var) = x.batch_norm(&wb, &wb, 1e-5).unwrap();
        assert_eq!((y.shape(), mean.numel(), var.numel()), (&[2, 0, 4, 4][..], 0, 0));
        y.sum_all().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().numel(), 0);
    }
}
test_device!(
    zero_channel_batchnorm_is_empty_not_a_panic,
    zero_channel_batchnorm_is_empty_not_a_panic_cpu,
    zero_channel_batchnorm_is_empty_not_a_panic_cuda
);

fn leaves_never_share_a_gradient(device: Device) {
    // add's backward passes one gradient to both inputs; each leaf must still own its own.
    let (p, q) = (leaf(&t(&[1.0, 2.0], &[2]), device), leaf(&t(&[3.0, 4.0], &[2]), device));
    // d/dp sum((p + q)^2) = 2 (p + q) = [8, 12], the same dense tensor for q. powf's backward is a powf, within
    // a few ulps on a GPU.
    p.add(&q).unwrap().powf(2.0).unwrap().sum_all().unwrap().backward().unwrap();
    p.grad().unwrap().scale_(0.5).unwrap();
    assert_values(device, &grad(&p), &[4.0, 6.0]);
    assert_values(device, &grad(&q), &[8.0, 12.0]);
}
test_device!(leaves_never_share_a_gradient, leaves_never_share_a_gradient_cpu, leaves_never_share_a_gradient_cuda);

fn zeros_like_keeps_a_dense_memory_format(device: Device) {
    let cl = on(&Tensor::ones(&[2, 3, 4, 5]), device).to_channels_last().unwrap();
    let z = cl.zeros_like().unwrap();
    assert_eq!(z.device(), device);
    assert_eq!(z.layout().strides, cl.layout().strides);
    assert_eq!(z.to_vec(), vec![0.0; 120]);
    // A view that is not dense gets row-major zeros.
    let narrow = on(&Tensor::ones(&[4, 6]), device).narrow(1, 1, 3).unwrap();
    assert!(narrow.zeros_like().unwrap().layout().is_contiguous());
}
test_device!(
    zeros_like_keeps_a_dense_memory_format,
    zeros_like_keeps_a_dense_memory_format_cpu,
    zeros_like_keeps_a_dense_memory_format_cuda
);

fn in_place_updates_record_nothing(device: Device) {
    let p = leaf(&t(&[1.0, 2.0], &[2]), device);
    p.add_scaled_(&t_on(device, &[1.0, 1.0], &[2]), -0.5).unwrap();
    assert_eq!(p.to_vec(), vec![0.5, 1.5]);
    p.scale_(2.0).unwrap();
    assert_eq!(p.to_vec(), vec![1.0, 3.0]);
    assert!(p.is_leaf());
    // A view writes through to its storage.
    let m = on(&Tensor::zeros(&[2, 2]), device);
    m.narrow(1, 1, 1).unwrap().assign(&on(&Tensor::ones(&[2, 1]), device)).unwrap();
    assert_eq!(m.to_vec(), vec![0.0, 1.0, 0.0, 1.0]);
    // An expanded view has several elements in one memory location: writing to it is refused, untouched.
    let one = t_on(device, &[5.0], &[1]);
    let wide = one.expand(&[3]).unwrap();
    let err = wide.add_scaled_(&t_on(device, &[1.0, 2.0, 3.0], &[3]), 1.0).unwrap_err();
    assert!(err.to_string().contains("add_scaled_") && err.to_string().contains("one memory location"), "{err}");
    assert!(wide.scale_(2.0).is_err() && wide.assign(&t_on(device, &[1.0, 2.0, 3.0], &[3])).is_err());
    let sgd = UpdateProgram {
        tensors: 2,
        ops: vec![UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: -0.1, y: 1 }],
        writes: vec![0],
    };
    assert!(foreach_update_(&[&[&wide, &on(&Tensor::ones(&[3]), device)]], &sgd).is_err());
    assert_eq!(one.to_vec(), vec![5.0]);
}
test_device!(
    in_place_updates_record_nothing,
    in_place_updates_record_nothing_cpu,
    in_place_updates_record_nothing_cuda
);

#[test]
fn seeded_random_fills_repeat() {
    // CPU only: random fills are drawn on the host.
    let a = Tensor::randn(&[100], &mut rng(5)).to_vec();
    let b = Tensor::randn(&[100], &mut rng(5)).to_vec();
    assert_eq!(a, b);
    let mean = a.iter().sum::<f32>() / 100.0;
    assert!(mean.abs() < 0.3);
    let u = Tensor::uniform(&[1000], 2.0, 3.0, &mut rng(6)).unwrap().to_vec();
    assert!(u.iter().all(|&v| (2.0..3.0).contains(&v)));
}

fn errors_name_the_op_and_shapes(device: Device) {
    let a = on(&Tensor::zeros(&[2, 3]), device);
    let err = a.matmul(&on(&Tensor::zeros(&[2, 3]), device)).unwrap_err();
    assert_eq!(err.to_string(), "matmul: shape mismatch between [2, 3] and [2, 3]");
    assert!(matches!(a.sum(&[2], false), Err(TensorError::DimOutOfRange { op: "sum", dim: 2, rank: 2 })));
    assert!(matches!(a.pick(&[0, 7]), Err(TensorError::IndexOutOfRange { op: "pick", index: 7, size: 3 })));
    assert!(a.reshape(&[4]).is_err());
    assert!(a.permute(&[0, 0]).is_err());
}
test_device!(errors_name_the_op_and_shapes, errors_name_the_op_and_shapes_cpu, errors_name_the_op_and_shapes_cuda);

#[test]
fn construction_and_device_errors() {
    assert!(matches!(Tensor::from_vec(vec![1.0; 5], &[2, 3]), Err(TensorError::ElementCount { len: 5, .. })));
    // Without a usable GPU (no `cuda` feature, or no driver), asking for one is an error that names the
    // device, not a panic.
    if !common::device::gpu_opens() {
        let err = Tensor::zeros(&[2, 3]).to_device(Device::Cuda(0)).unwrap_err();
        assert!(matches!(err, TensorError::DeviceUnavailable { device: Device::Cuda(0), .. }), "{err}");
    }
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert!("tpu".parse::<Device>().is_err());
}

fn a_leaf_frozen_in_place_gets_no_gradient_through_any_handle(device: Device) {
    let w = leaf(&t(&[1.0, 2.0], &[2]), device);
    let b = leaf(&t(&[0.5, 0.5], &[2]), device);
    let handle = w.clone();
    handle.set_requires_grad_(false).unwrap();
    assert!(!w.requires_grad(), "every handle of the leaf sees it frozen");
    let frozen_only = w.mul_scalar(3.0).unwrap();
    assert!(!frozen_only.requires_grad(), "an op on frozen leaves alone records nothing");
    w.mul(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(w.grad().is_none(), "backward skips the frozen leaf");
    assert_eq!(grad(&b), [1.0, 2.0]);
    w.set_requires_grad_(true).unwrap();
    w.mul(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grad(&w), [0.5, 0.5], "unfrozen, it gets its gradient again");
    let computed = w.mul_scalar(2.0).unwrap();
    assert!(matches!(computed.set_requires_grad_(false), Err(TensorError::InvalidArgument { .. })));
}
test_device!(
    a_leaf_frozen_in_place_gets_no_gradient_through_any_handle,
    a_leaf_frozen_in_place_gets_no_gradient_through_any_handle_cpu,
    a_leaf_frozen_in_place_gets_no_gradient_through_any_handle_cuda
);
