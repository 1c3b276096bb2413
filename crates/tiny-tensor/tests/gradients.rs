//! Central finite-difference gradient checks for every differentiable op.

mod common;

use common::{away_from_zero, gradcheck, gradcheck_direction, gradcheck_with, param};
use tiny_tensor::{RunningStats, Tensor};

#[test]
fn broadcasting_arithmetic() {
    let a = param(&[2, 3, 4], -1.0, 1.0, 1);
    let b = param(&[3, 1], 0.5, 2.0, 2);
    gradcheck(&[a.clone(), b.clone()], |x| x[0].add(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].sub(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].mul(&x[1]));
    gradcheck(&[a.clone(), b.clone()], |x| x[0].div(&x[1]));
    // The broadcast operand on the left, too.
    gradcheck(&[b, a], |x| x[0].div(&x[1].add_scalar(3.0)?));
}

#[test]
fn unary_functions() {
    let x = param(&[3, 4], -1.0, 1.0, 3);
    let pos = param(&[3, 4], 0.5, 2.0, 4);
    gradcheck(std::slice::from_ref(&x), |t| t[0].neg());
    gradcheck(std::slice::from_ref(&x), |t| t[0].exp());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].log());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].sqrt());
    gradcheck(std::slice::from_ref(&pos), |t| t[0].powf(3.0));
    gradcheck(std::slice::from_ref(&pos), |t| t[0].powf(-0.5));
    gradcheck(std::slice::from_ref(&x), |t| t[0].affine(2.5, -1.0));
    gradcheck(&[away_from_zero(&[3, 4], 0.05, 5)], |t| t[0].relu());
}

#[test]
fn reductions() {
    let x = param(&[2, 3, 4], -1.0, 1.0, 6);
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum(&[1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum(&[0, 2], true));
    gradcheck(std::slice::from_ref(&x), |t| t[0].sum_all());
    gradcheck(std::slice::from_ref(&x), |t| t[0].mean(&[-1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].mean_all());
    gradcheck(std::slice::from_ref(&x), |t| t[0].logsumexp(&[-1], false));
    gradcheck(std::slice::from_ref(&x), |t| t[0].logsumexp(&[0, 1], true));
    // Distinct values keep max away from its kink (ties).
    let distinct: Vec<f32> = (0..24).map(|i| ((i * 7) % 24) as f32 * 0.1).collect();
    let d = Tensor::from_vec(distinct, &[2, 3, 4]).unwrap().set_requires_grad(true);
    gradcheck(std::slice::from_ref(&d), |t| t[0].max(&[1], false));
    gradcheck(&[d], |t| t[0].max(&[], true));
}

#[test]
fn views_and_copies() {
    let x = param(&[2, 3, 4], -1.0, 1.0, 8);
    gradcheck(std::slice::from_ref(&x), |t| t[0].reshape(&[6, 4]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].permute(&[2, 0, 1])?.reshape(&[4, 6]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].transpose(0, 2)?.contiguous());
    gradcheck(std::slice::from_ref(&x), |t| t[0].narrow(1, 1, 2));
    gradcheck(std::slice::from_ref(&x), |t| t[0].flatten(1, 2));
    gradcheck(std::slice::from_ref(&x), |t| t[0].unsqueeze(1)?.squeeze(1));
    let row = param(&[1, 4], -1.0, 1.0, 9);
    gradcheck(&[row], |t| t[0].expand(&[3, 4]));
}

#[test]
fn cat_and_stack() {
    let a = param(&[2, 3], -1.0, 1.0, 10);
    let b = param(&[2, 2], -1.0, 1.0, 11);
    gradcheck(&[a.clone(), b], |t| Tensor::cat(&[&t[0], &t[1]], 1));
    let c = param(&[2, 3], -1.0, 1.0, 12);
    gradcheck(&[a, c], |t| Tensor::stack(&[&t[0], &t[1]], 1));
}

#[test]
fn indexing() {
    let x = param(&[4, 5], -1.0, 1.0, 13);
    gradcheck(std::slice::from_ref(&x), |t| t[0].pick(&[4, 0, 2, 2]));
    gradcheck(std::slice::from_ref(&x), |t| t[0].index_select(0, &[3, 1, 1]));
    gradcheck(&[x], |t| t[0].index_select(1, &[0, 4]));
}

#[test]
fn matmul_plain_batched_and_transposed() {
    let a = param(&[3, 4], -1.0, 1.0, 14);
    let b = param(&[4, 2], -1.0, 1.0, 15);
    gradcheck(&[a.clone(), b.clone()], |t| t[0].matmul(&t[1]));
    // Transposed views go straight to GEMM as strides.
    let bt = param(&[2, 4], -1.0, 1.0, 16);
    gradcheck(&[a.clone(), bt], |t| t[0].matmul(&t[1].t()?));
    let ba = param(&[2, 3, 4], -1.0, 1.0, 17);
    let bb = param(&[2, 4, 5], -1.0, 1.0, 18);
    gradcheck(&[ba.clone(), bb], |t| t[0].matmul(&t[1]));
    // A batch against one shared matrix: its gradient sums over the batch.
    gradcheck(&[ba, b], |t| t[0].matmul(&t[1]));
}

#[test]
fn conv2d_every_input() {
    for (stride, pad, k) in [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 0, 2)] {
        let x = param(&[2, 3, 5, 5], -1.0, 1.0, 19);
        let w = param(&[4, 3, k, k], -1.0, 1.0, 20);
        let b = param(&[4], -1.0, 1.0, 21);
        gradcheck_with(&[x, w, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}

#[test]
fn conv2d_with_channels_last_weights() {
    // Weights stored channels-last (as tiny-nn's layers store them) are read without a copy, and their
    // gradient comes back in the same memory order; the numbers are those of row-major weights. 3 -> 16
    // takes the direct RGB kernel, 4 -> 6 the im2col path, 1x1 the degenerate layout.
    for (c, f, k, stride, pad) in [(3, 16, 3, 2, 1), (4, 6, 3, 1, 1), (4, 6, 1, 2, 0)] {
        let x = param(&[2, c, 7, 7], -1.0, 1.0, 35);
        let w = param(&[f, c, k, k], -0.5, 0.5, 36);
        let b = param(&[f], -0.5, 0.5, 37);
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
        common::assert_all_close(&y1, &y0, 1e-6);
        common::assert_all_close(&g1.to_vec(), &g0.to_vec(), 1e-5);
        assert!(g1.layout().same_memory_order(wcl.layout()), "the weight gradient keeps the weight's memory order");
        gradcheck_with(&[x, wcl, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}

#[test]
fn fused_conv2d_relu_equals_conv_then_relu() {
    let x = away_from_zero(&[2, 3, 6, 6], 0.05, 29);
    let w = param(&[4, 3, 3, 3], -1.0, 1.0, 30);
    let b = param(&[4], -0.2, 0.2, 31);
    let fused = x.conv2d_relu(&w, Some(&b), 2, 1).unwrap();
    let plain = x.conv2d(&w, Some(&b), 2, 1).unwrap().relu().unwrap();
    common::assert_all_close(&fused.to_vec(), &plain.to_vec(), 1e-6);
    // Pre-activations close to zero would put the finite difference across relu's kink; these
    // inputs and weights keep them away from it, as the element check below confirms.
    gradcheck_with(&[x, w, b], |t| t[0].conv2d_relu(&t[1], Some(&t[2]), 2, 1), 1e-3, 3e-2, 3e-3);
}

#[test]
fn rgb_stem_conv_gradients() {
    // 3x3 over 3 channels with 16 filters: the direct kernel's forward, input and weight gradients.
    for (stride, pad) in [(2, 1), (1, 1), (2, 0)] {
        let x = param(&[2, 3, 7, 7], -1.0, 1.0, 32);
        let w = param(&[16, 3, 3, 3], -0.5, 0.5, 33);
        let b = param(&[16], -0.5, 0.5, 34);
        gradcheck_direction(
            &[x.clone(), w.clone(), b.clone()],
            |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad)?.powf(2.0),
            1e-2,
            2e-2,
        );
        gradcheck_with(&[x, w, b], |t| t[0].conv2d(&t[1], Some(&t[2]), stride, pad), 1e-2, 2e-2, 2e-3);
    }
}

#[test]
fn conv2d_on_channels_last_input_one_direction() {
    // The chapter's NHWC batch permuted to NCHW: a strided view, not a copy.
    let nhwc = param(&[4, 16, 16, 3], -1.0, 1.0, 22);
    let w = param(&[8, 3, 3, 3], -0.5, 0.5, 23);
    // Squared rather than relu'd: a random direction of this size would cross relu's kink.
    gradcheck_direction(&[nhwc, w], |t| t[0].permute(&[0, 3, 1, 2])?.conv2d(&t[1], None, 2, 1)?.powf(2.0), 1e-2, 2e-2);
}

#[test]
fn pooling() {
    let distinct: Vec<f32> = (0..2 * 3 * 6 * 6).map(|i| ((i * 37) % 216) as f32 * 0.01).collect();
    let x = Tensor::from_vec(distinct, &[2, 3, 6, 6]).unwrap().set_requires_grad(true);
    gradcheck(std::slice::from_ref(&x), |t| t[0].max_pool2d(3, 2, 1));
    gradcheck(std::slice::from_ref(&x), |t| t[0].max_pool2d(2, 2, 0));
    gradcheck(std::slice::from_ref(&x), |t| t[0].avg_pool2d(3, 2, 1));
    gradcheck(&[x], |t| t[0].avg_pool2d(2, 2, 0));
}

#[test]
fn composite_log_softmax_and_nll() {
    // The chapter's cross entropy: nll(x - x.logsumexp(-1)), written from primitives.
    let x = param(&[4, 5], -2.0, 2.0, 24);
    gradcheck(&[x], |t| {
        let lsm = t[0].sub(&t[0].logsumexp(&[-1], true)?)?;
        lsm.pick(&[0, 3, 4, 1])?.mean_all()?.neg()
    });
}

#[test]
fn fused_log_softmax_nll() {
    let x = param(&[4, 5], -2.0, 2.0, 24);
    gradcheck(std::slice::from_ref(&x), |t| t[0].log_softmax_nll(&[0, 3, 4, 1]));
    // On a transposed view, and reduced to the chapter's mean, as the learner uses it.
    let xt = param(&[5, 4], -2.0, 2.0, 28);
    gradcheck(&[xt], |t| t[0].t()?.log_softmax_nll(&[2, 2, 0, 4])?.mean_all());
    // The first rows of a larger tensor: a contiguous view with more storage after it.
    let big = param(&[4, 3], -2.0, 2.0, 29);
    gradcheck(std::slice::from_ref(&big), |t| t[0].narrow(0, 0, 2)?.log_softmax_nll(&[0, 2]));
    gradcheck(&[big], |t| t[0].narrow(0, 0, 0)?.log_softmax_nll(&[])?.sum_all());
}

#[test]
fn fused_log_softmax_nll_with_label_smoothing() {
    // d loss / dx = softmax - q with q = (1 - eps) one_hot + eps / c, for no, fastai's, heavy and full smoothing.
    let x = param(&[4, 5], -2.0, 2.0, 30);
    for eps in [0.0, 0.1, 0.5, 1.0] {
        gradcheck(std::slice::from_ref(&x), |t| t[0].log_softmax_nll_smooth(&[0, 3, 4, 1], eps));
    }
    // On a transposed view, reduced to the mean as `cross_entropy` does, and with logits of range 40.
    let xt = param(&[5, 4], -20.0, 20.0, 31);
    gradcheck(&[xt], |t| t[0].t()?.log_softmax_nll_smooth(&[2, 2, 0, 4], 0.1)?.mean_all());
}

#[test]
fn fused_batch_norm_matches_its_definition_and_gradients() {
    let x = param(&[3, 2, 3, 3], -1.0, 2.0, 25);
    let w = param(&[2], 0.5, 1.5, 26);
    let b = param(&[2], -0.5, 0.5, 27);
    gradcheck_with(
        &[x.clone(), w.clone(), b.clone()],
        |t| Ok(t[0].batch_norm(&t[1], &t[2], 1e-5)?.0),
        1e-2,
        2e-2,
        2e-3,
    );
    // Channels-last input takes the other kernel path.
    let nhwc = param(&[3, 3, 3, 2], -1.0, 2.0, 28);
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
    common::assert_all_close(&y.to_vec(), &want.to_vec(), 1e-5);
    common::assert_all_close(&mean.to_vec(), &m.to_vec(), 1e-6);
    common::assert_all_close(&var.to_vec(), &v.to_vec(), 1e-6);
    // Running statistics must be separate, contiguous [c] tensors; a refused update writes nothing.
    let (rm, rv, wrong) = (Tensor::zeros(&[2]), Tensor::ones(&[2]), Tensor::zeros(&[3]));
    let running = |mean, var| RunningStats { mean, var, momentum: 0.1, num_batches_tracked: None };
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&wrong, &rv)).is_err());
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&rm, &rm)).is_err());
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&w, &rv)).is_err());
    let expanded = Tensor::ones(&[1]).expand(&[2]).unwrap();
    assert!(x.batch_norm_running(&w, &b, 1e-5, running(&rm, &expanded)).is_err());
    // The batch counter must be one element of its own; an accepted update counts the batch.
    let count = Tensor::scalar(3.0);
    let counted = |n| RunningStats { num_batches_tracked: Some(n), ..running(&rm, &rv) };
    assert!(x.batch_norm_running(&w, &b, 1e-5, counted(&rm)).is_err());
    let two = Tensor::zeros(&[2]);
    assert!(x.batch_norm_running(&w, &b, 1e-5, counted(&two)).is_err());
    assert_eq!((rm.to_vec(), rv.to_vec()), (vec![0.0; 2], vec![1.0; 2]));
    x.batch_norm_running(&w, &b, 1e-5, counted(&count)).unwrap();
    assert_eq!(count.item().unwrap(), 4.0);
}
