//! Central finite-difference gradient checks for every differentiable op, on the CPU and, where a GPU opens, on
//! CUDA (`test_device!`): the inputs are leaves on the device, and so are the perturbed copies.

mod common;

use common::{away_from_zero, gradcheck, gradcheck_direction, gradcheck_with, leaf, on, param, test_device, tol};
use tiny_tensor::{Device, RunningStats, Tensor};

/// `param(shape, lo, hi, seed)` as a leaf on `device`.
fn p(device: Device, shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    leaf(&param(shape, lo, hi, seed), device)
}

fn broadcasting_arithmetic(device: Device) {
    let a = p(device, &[2, 3, 4], -1.0, 1.0, 1);
    let b = p(device, &[3, 1], 0.5, 2.0, 2);
    gradcheck(&[a.clone(), b.clone()], |x| x[0].add(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].sub(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].mul(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].div(&x[1]));
    // The broadcast operand on the left, too.
    gradcheck(&[b, a], |x| x[0].div(&x[1].add_scalar(3.0)?));
}
test_device!(broadcasting_arithmetic, broadcasting_arithmetic_cpu, broadcasting_arithmetic_cuda);

fn unary_functions(device: Device) {
    let x = p(device, &[3, 4], -1.0, 1.0, 3);
    let pos = p(device, &[3, 4], 0.5, 2.0, 4);
    gradcheck(std::slice::from_ref(&x), |t| t[0].neg());
    gradcheck(std::slice::from_ref(&x), |t| t[0].exp());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].log());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].sqrt());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].powf(3.0));
    gradcheck(std::slice::from_ref(&pos), |t| t[0].powf(-0.5));
    gradcheck(std::slice::from_ref(&x), |t| t[0].affine(2.5, -1.0));
    gradcheck(&[leaf(&away_from_zero(&[3, 4], 0.05, 5), device)], |t| t[0].relu());
}
test_device!(unary_functions, unary_functions_cpu, unary_functions_cuda);

fn reductions(device: Device) {
    let x = p(device, &[2, 3, 4], -1.0, 1.0, 6);
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum(&[1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum(&[0, 2], true));
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum_all());
    gradcheck(std::slice::from_ref(&x), |t| t[0].mean(&[-1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].mean_all());
    gradcheck(std::slice::from_ref(&x), |t| t[0].logsumexp(&[-1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].logsumexp(&[0, 1], true));
    // Distinct values keep max away from its kink (ties).
    let distinct: Vec<f32> = (0..24).map(|i| ((i * 7) % 24) as f32 * 0.1).collect();
    let d = leaf(&Tensor::from_vec(distinct, &[2, 3, 4]).unwrap(), device);
    gradcheck(std::slice::from_ref(&d), |t| t[0].max(&[1], false));
    gradcheck(&[d], |t| t[0].max(&[], true));
}
test_device!(reductions, reductions_cpu, reductions_cuda);

fn views_and_copies(device: Device) {
    let x = p(device, &[2, 3, 4], -1.0, 1.0, 8);
    gradcheck(std::slice::from_ref(&x), |t| t[0].reshape(&[6, 4]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].permute(&[2, 0, 1])?.reshape(&[4, 6]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].transpose(0, 2)?.contiguous());
    gradcheck(std::slice::from_ref(&x), |t| t[0].narrow(1, 1, 2));
    gradcheck(std::slice::from_ref(&x), |t| t[0].flatten(1, 2));
    gradcheck(std::slice::from_ref(&x), |t| t[0].unsqueeze(1)?.squeeze(1));
    let row = p(device, &[1, 4], -1.0, 1.0, 9);
    gradcheck(&[row], |t| t[0].expand(&[3, 4]));
}
test_device!(views_and_copies, views_and_copies_cpu, views_and_copies_cuda);

fn cat_and_stack(device: Device) {
    let a = p(device, &[2, 3], -1.0, 1.0, 10);
    let b = p(device, &[2, 2], -1.0, 1.0, 11);
    gradcheck(&[a.clone(), b], |t| Tensor::cat(&[&t[0], &t[1]], 1));
    let c = p(device, &[2, 3], -1.0, 1.0, 12);
    gradcheck(&[a, c], |t| Tensor::stack(&[&t[0], &t[1]], 1));
}
test_device!(cat_and_stack, cat_and_stack_cpu, cat_and_stack_cuda);

fn indexing(device: Device) {
    let x = p(device, &[4, 5], -1.0, 1.0, 13);
    gradcheck(std::slice::from_ref(&x), |t| t[0].pick(&[4, 0, 2, 2]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].index_select(0, &[3, 1, 1]));
    gradcheck(&[x], |t| t[0].index_select(1, &[0, 4]));
}
test_device!(indexing, indexing_cpu, indexing_cuda);

fn matmul_plain_batched_and_transposed(device: Device) {
    let a = p(device, &[3, 4], -1.0, 1.0, 14);
    let b = p(device, &[4, 2], -1.0, 1.0, 15);
    gradcheck(&[a.clone(), b.clone()], |t| t[0].matmul(&t[1]));
    // Transposed views go straight to GEMM as strides.
    let bt = p(device, &[2, 4], -1.0, 1.0, 16);
    gradcheck(&[a.clone(), bt], |t| t[0].matmul(&t[1].t()?));
    let ba = p(device, &[2, 3, 4], -1.0, 1.0, 17);
    let bb = p(device, &[2, 4, 5], -1.0, 1.0, 18);
    gradcheck(&[ba.clone(), bb], |t| t[0].matmul(&t[1]));
    // A batch against one shared matrix: its gradient sums over the batch.
    gradcheck(&[ba, b], |t| t[0].matmul(&t[1]));
}
test_device!(
    matmul_plain_batched_and_transposed,
    matmul_plain_batched_and_transposed_cpu,
    matmul_plain_batched_and_transposed_cuda
);

fn conv2d_every_input(device: Device) {
    for (stride, pad, k) in [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 0, 2)] {
        let x = p(device, &[2, 3, 5, 5], -1.0, 1.0, 19);
        let w = p(device, &[4, 3, k, k], -1.0, 1.0, 20);
        let b = p(device, &[4], -1.0, 1.0, 21);
        gradcheck_with(&[x, w, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}
test_device!(conv2d_every_input, conv2d_every_input_cpu, conv2d_every_input_cuda);

fn conv2d_with_channels_last_weights(device: Device) {
    // Weights stored channels-last (as tiny-nn's layers store them) are read without a copy, and their
    // gradient comes back in the same memory order; the numbers are those of row-major weights. 3 -> 16
    // takes the direct RGB kernel, 4 -> 6 the im2col path, 1x1 the degenerate layout.
    for (c, f, k, stride, pad) in [(3, 16, 3, 2, 1), (4, 6, 3, 1, 1), (4, 6, 1, 2, 0)] {
        let x = p(device, &[2, c, 7, 7], -1.0, 1.0, 35);
        let w = p(device, &[f, c, k, k], -0.5, 0.5, 36);
        let b = p(device, &[f], -0.5, 0.5, 37);
        let wcl = w.to_channels_last().unwrap().detach().set_requires_grad(true);
        let run = |w: &Tensor| {
            let y = x.conv2d(w, Some(&b), stride, pad).unwrap();
            y.powf(2.0).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = w.grad().unwrap();
            x.zero_grad();
            b.zero_grad();
            (y.to_vec(), gw)
        };
        let ((y0, g0), (y1, g1)) = (run(&w), run(&wcl));
        // A GPU may sum the two weight layouts' products in different orders (cuBLAS picks per layout): 1e-5
        // there, still far below the error of a misread weight.
        common::assert_all_close(&y1, &y0, tol(device, 1e-6, 1e-5));
        common::assert_all_close(&g1.to_vec(), &g0.to_vec(), 1e-5);
        assert!(g1.layout().same_memory_order(wcl.layout()), "the weight gradient keeps the weight's memory order");
        gradcheck_with(&[x, wcl, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}
test_device!(
    conv2d_with_channels_last_weights,
    conv2d_with_channels_last_weights_cpu,
    conv2d_with_channels_last_weights_cuda
);

fn fused_conv2d_relu_equals_conv_then_relu(device: Device) {
    let x = leaf(&away_from_zero(&[2, 3, 6, 6], 0.05, 29), device);
    let w = p(device, &[4, 3, 3, 3], -1.0, 1.0, 30);
    let b = p(device, &[4], -0.2, 0.2, 31);
    let fused = x.conv2d_relu(&w, Some(&b), 2, 1).unwrap();
    let plain = x.conv2d(&w, Some(&b), 2, 1).unwrap().relu().unwrap();
    // 1e-5 on a GPU, where the fused epilogue and the separate relu may see sums made in different orders.
    common::assert_all_close(&fused.to_vec(), &plain.to_vec(), tol(device, 1e-6, 1e-5));
    // Pre-activations close to zero would put the finite difference across relu's kink; these
    // inputs and weights keep them away from it, as the element check below confirms.
    gradcheck_with(&[x, w, b], |t| t[0].conv2d_relu(&t[1], Some(&t[2]), 2, 1), 1e-3, 3e-2, 3e-3);
}
test_device!(
    fused_conv2d_relu_equals_conv_then_relu,
    fused_conv2d_relu_equals_conv_then_relu_cpu,
    fused_conv2d_relu_equals_conv_then_relu_cuda
);

fn rgb_stem_conv_gradients(device: Device) {
    // 3x3 over 3 channels with 16 filters: the direct kernel's forward, input and weight gradients.
    for (stride, pad) in [(2, 1), (1, 1), (2, 0)] {
        let x = p(device, &[2, 3, 7, 7], -1.0, 1.0, 32);
        let w = p(device, &[16, 3, 3, 3], -0.5, 0.5, 33);
        let b = p(device, &[16], -0.5, 0.5, 34);
        gradcheck_direction(
            &[x.clone(), w.clone(), b.clone()],
            |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad)?.powf(2.0),
            1e-2,
            2e-2,
        );
        gradcheck_with(&[x, w, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}
test_device!(rgb_stem_conv_gradients, rgb_stem_conv_gradients_cpu, rgb_stem_conv_gradients_cuda);

fn conv2d_on_channels_last_input_one_direction(device: Device) {
    // The chapter's NHWC batch permuted to NCHW: a strided view, not a copy.
    let nhwc = p(device, &[4, 16, 16, 3], -1.0, 1.0, 22);
    let w = p(device, &[8, 3, 3, 3], -0.5, 0.5, 23);
    // Squared rather than relu'd: a random direction of this size would cross relu's kink.
    gradcheck_direction(&[nhwc, w], |t| t[0].permute(&[0, 3, 1, 2])?.conv2d(&t[1], None, 2, 1)?.powf(2.0), 1e-2, 2e-2);
}
test_device!(
    conv2d_on_channels_last_input_one_direction,
    conv2d_on_channels_last_input_one_direction_cpu,
    conv2d_on_channels_last_input_one_direction_cuda
);

fn pooling(device: Device) {
    let distinct: Vec<f32> = (0..2 * 3 * 6 * 6).map(|i| ((i * 37) % 216) as f32 * 0.01).collect();
    let x = leaf(&Tensor::from_vec(distinct, &[2, 3, 6, 6]).unwrap(), device);
    gradcheck(std::slice::from_ref(&x), |t| t[0].max_pool2d(3, 2, 1));
    gradcheck(std::slice::from_ref(&x), |t| t[0].max_pool2d(2, 2, 0));
    gradcheck(std::slice::from_ref(&x), |t| t[0].avg_pool2d(3, 2, 1));
    gradcheck(&[x], |t| t[0].avg_pool2d(2, 2, 0));
}
test_device!(pooling, pooling_cpu, pooling_cuda);

fn composite_log_softmax_and_nll(device: Device) {
    // The chapter's cross entropy: nll(x - x.logsumexp(-1)), written from primitives.
    let x = p(device, &[4, 5], -2.0, 2.0, 24);
    gradcheck(&[x], |t| {
        let lsm = t[0].sub(&t[0].logsumexp(&[-1], true)?)?;
        lsm.pick(&[0, 3, 4, 1])?.mean_all()?.neg()
    });
}
test_device!(composite_log_softmax_and_nll, composite_log_softmax_and_nll_cpu, composite_log_softmax_and_nll_cuda);

fn fused_log_softmax_nll(device: Device) {
    let x = p(device, &[4, 5], -2.0, 2.0, 24);
    gradcheck(std::slice::from_ref(&x), |t| t[0].log_softmax_nll(&[0, 3, 4, 1]));
    // On a transposed view, and reduced to the chapter's mean, as the learner uses it.
    let xt = p(device, &[5, 4], -2.0, 2.0, 28);
    gradcheck(&[xt], |t| t[0].t()?.log_softmax_nll(&[2, 2, 0, 4])?.mean_all());
    // The first rows of a larger tensor: a contiguous view with more storage after it.
    let big = p(device, &[4, 3], -2.0, 2.0, 29);
    gradcheck(std::slice::from_ref(&big), |t| t[0].narrow(0, 0, 2)?.log_softmax_nll(&[0, 2]));
    gradcheck(&[big], |t| t[0].narrow(0, 0, 0)?.log_softmax_nll(&[])?.sum_all());
}
test_device!(fused_log_softmax_nll, fused_log_softmax_nll_cpu, fused_log_softmax_nll_cuda);

fn fused_log_softmax_nll_with_label_smoothing(device: Device) {
    // d loss / dx = softmax - q with q = (1 - eps) one_hot + eps / c, for no, fastai's, heavy and full smoothing.
    let x = p(device, &[4, 5], -2.0, 2.0, 30);
    for eps in [0.0, 0.1, 0.5, 1.0] {
        gradcheck(std::slice::from_ref(&x), |t| t[0].log_softmax_nll_smooth(&[0, 3, 4, 1], eps));
    }
    // On a transposed view, reduced to the mean as `cross_entropy` does, and with logits of range 40.
    let xt = p(device, &[5, 4], -20.0, 20.0, 31);
    gradcheck(&[xt], |t| t[0].t()?.log_softmax_nll_smooth(&[2, 2, 0, 4], 0.1)?.mean_all());
}
test_device!(
    fused_log_softmax_nll_with_label_smoothing,
    fused_log_softmax_nll_with_label_smoothing_cpu,
    fused_log_softmax_nll_with_label_smoothing_cuda
);

fn fused_binary_cross_entropy_with_logits(device: Device) {
    // d loss / dx = sigmoid(x) - t and d loss / dt = -x, for hard targets, soft (mixed) ones, and logits of range 20.
    let x = p(device, &[4, 5], -3.0, 3.0, 32);
    let hard = leaf(&Tensor::from_vec((0..20).map(|i| f32::from(i % 3 == 0)).collect(), &[4, 5]).unwrap(), device);
    gradcheck(&[x.clone(), hard], |t| t[0].bce_with_logits(&t[1]));
    let soft = p(device, &[4, 5], 0.0, 1.0, 33);
    gradcheck(&[x, soft], |t| t[0].bce_with_logits(&t[1])?.mean_all());
    // On a transposed view, against targets that take no gradient.
    let wide = p(device, &[5, 4], -10.0, 10.0, 34);
    let t =
        Tensor::from_vec((0..20).map(|i| f32::from(i % 2 == 0)).collect(), &[4, 5]).unwrap().to_device(device).unwrap();
    gradcheck(&[wide], |x| x[0].t()?.bce_with_logits(&t)?.sum_all());
}
test_device!(
    fused_binary_cross_entropy_with_logits,
    fused_binary_cross_entropy_with_logits_cpu,
    fused_binary_cross_entropy_with_logits_cuda
);

fn fused_batch_norm_matches_its_definition_and_gradients(device: Device) {
    let x = p(device, &[3, 2, 3, 3], -1.0, 2.0, 25);
    let w = p(device, &[2], 0.5, 1.5, 26);
    let b = p(device, &[2], -0.5, 0.5, 27);
    gradcheck_with(
        &[x.clone(), w.clone(), b.clone()],
        |t| Ok(t[0].batch_norm(&t[1], &t[2], 1e-5)?.0),
        1e-2,
        2e-2,
        2e-3,
    );
    // Channels-last input takes the other kernel path.
    let nhwc = p(device, &[3, 3, 3, 2], -1.0, 2.0, 28);
    gradcheck_with(
        &[nhwc, w.clone(), b.clone()],
        |t| Ok(t[0].permute(&[0, 3, 1, 2])?.batch_norm(&t[1], &t[2], 1e-5)?.0),
        1e-2,
        2e-2,
        2e-3,
    );
    // The same numbers as the composite definition.
    let (y, mean, var) = x.batch_norm(&w, &b, 1e-5).unwrap();
    let m = x.mean(&[0, 2, 3], true).unwrap();
    let v = x.sub(&m).unwrap().powf(2.0).unwrap().mean(&[0, 2, 3], true).unwrap();
    let want = x.sub(&m).unwrap().div(&v.add_scalar(1e-5).unwrap().sqrt().unwrap()).unwrap();
    let want = want.mul(&w.reshape(&[1, 2, 1, 1]).unwrap()).unwrap().add(&b.reshape(&[1, 2, 1, 1]).unwrap()).unwrap();
    // On a GPU the fused kernel and `mean` reduce the 27 values of a channel in different orders: 1e-5 there,
    // ten times the expected rounding and far below the error of a wrong statistic.
    common::assert_all_close(&y.to_vec(), &want.to_vec(), 1e-5);
    common::assert_all_close(&mean.to_vec(), &m.to_vec(), tol(device, 1e-6, 1e-5));
    common::assert_all_close(&var.to_vec(), &v.to_vec(), tol(device, 1e-6, 1e-5));
    // Running statistics must be separate, contiguous [c] tensors; a refused update writes nothing.
    let (rm, rv, wrong) =
        (on(&Tensor::zeros(&[2]), device), on(&Tensor::ones(&[2]), device), on(&Tensor::zeros(&[3]), device));
    let running = |mean, var| RunningStats { mean, var, momentum: 0.1, num_batches_tracked: None };
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&wrong, &rv)).is_err());
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&rm, &rm)).is_err());
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&w, &rv)).is_err());
    let expanded = on(&Tensor::ones(&[1]), device).expand(&[2]).unwrap();
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&rm, &expanded)).is_err());
    // The batch counter must be one element of its own; an accepted update counts the batch.
    let count = on(&Tensor::scalar(3.0), device);
    let counted = |n| RunningStats { num_batches_tracked: Some(n), ..running(&rm, &rv) };
    assert!(x.batch_norm_running(&w, &b, 1e-5, counted(&rm)).is_err());
    let two = on(&Tensor::zeros(&[2]), device);
    assert!(x.batch_norm_running(&w, &b, 1e-5, counted(&two)).is_err());
    assert_eq!((rm.to_vec(), rv.to_vec()), (vec![0.0; 2], vec![1.0; 2]));
    x.batch_norm_running(&w, &b, 1e-5, counted(&count)).unwrap();
    assert_eq!(count.item().unwrap(), 4.0);
}
test_device!(
    fused_batch_norm_matches_its_definition_and_gradients,
    fused_batch_norm_matches_its_definition_and_gradients_cpu,
    fused_batch_norm_matches_its_definition_and_gradients_cuda
);

/// The values and the input gradients (through `sum(y * cot)`) of `f` on fresh leaves made from `inputs`.
fn values_and_grads(device: Device, inputs: &[Tensor], cot: &Tensor, f: impl Fn(&[Tensor]) -> Tensor) -> Vec<Vec<f32>> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| leaf(t, device)).collect();
    let y = f(&leaves);
    y.mul(cot).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y.to_vec()];
    out.extend(leaves.iter().map(common::grad));
    out
}

/// The same bits on the CPU (zeros' signs included); on a GPU within 8 ulps, where the two run different kernels.
fn assert_same(device: Device, fused: &[Vec<f32>], pair: &[Vec<f32>]) {
    for (f, p) in fused.iter().zip(pair) {
        if device == Device::Cpu {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(f), bits(p));
        } else {
            common::assert_all_close(f, p, 1e-6);
        }
    }
}

fn fused_relus_are_the_pairs_they_fuse(device: Device) {
    let (w, b) = (param(&[3], 0.5, 1.5, 40), param(&[3], -0.5, 0.5, 41));
    let cot = on(&param(&[4, 3, 4, 4], -1.0, 1.0, 42), device);
    let nchw = |t: &Tensor| t.clone();
    let channels_last = |t: &Tensor| t.permute(&[0, 3, 1, 2]).unwrap();
    for (shape, view) in [([4, 3, 4, 4], &nchw as &dyn Fn(&Tensor) -> Tensor), ([4, 4, 4, 3], &channels_last)] {
        let x = param(&shape, -1.0, 2.0, 43);
        let inputs = [x, w.clone(), b.clone()];
        // The same values, and the same gradients to every input, as batchnorm then ReLU: to the bit on the CPU.
        let fused =
            values_and_grads(device, &inputs, &cot, |t| view(&t[0]).batch_norm_relu(&t[1], &t[2], 1e-5).unwrap().0);
        let pair = values_and_grads(device, &inputs, &cot, |t| {
            view(&t[0]).batch_norm(&t[1], &t[2], 1e-5).unwrap().0.relu().unwrap()
        });
        assert_same(device, &fused, &pair);
        assert!(fused[0].iter().filter(|&&v| v == 0.0).count() > 10, "the ReLU masks some outputs");
    }
    // Against central differences, on inputs whose normalised values stay 0.08 or more from the ReLU's kink (the
    // check below confirms it), so that no finite difference crosses it.
    let x = param(&[3, 2, 3, 3], -1.0, 2.0, 80);
    let (w, b) = (param(&[2], 0.5, 1.5, 45), param(&[2], -0.3, 0.3, 50));
    let pre = x.batch_norm(&w, &b, 1e-5).unwrap().0.to_vec();
    assert!(pre.iter().all(|v| v.abs() > 0.08), "a normalised value near the kink: {pre:?}");
    let t = [leaf(&x, device), leaf(&w, device), leaf(&b, device)];
    gradcheck_with(&t, |t| Ok(t[0].batch_norm_relu(&t[1], &t[2], 1e-5)?.0), 1e-3, 2e-2, 2e-3);
    // relu(a + b), broadcasting b; |a + b| stays at least 0.2 from the kink.
    let a = leaf(&away_from_zero(&[2, 3, 4], 0.3, 47), device);
    let c = p(device, &[3, 1], -0.1, 0.1, 48);
    gradcheck(&[a.clone(), c.clone()], |t| t[0].add_relu(&t[1]));
    let cot = on(&param(&[2, 3, 4], -1.0, 1.0, 49), device);
    let fused = values_and_grads(device, &[a.clone(), c.clone()], &cot, |t| t[0].add_relu(&t[1]).unwrap());
    let pair = values_and_grads(device, &[a, c], &cot, |t| t[0].add(&t[1]).unwrap().relu().unwrap());
    assert_same(device, &fused, &pair);
}
test_device!(
    fused_relus_are_the_pairs_they_fuse,
    fused_relus_are_the_pairs_they_fuse_cpu,
    fused_relus_are_the_pairs_they_fuse_cuda
);
