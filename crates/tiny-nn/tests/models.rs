//! Parameter counts and names, initialisation statistics, gradient checks through layers, batchnorm
//! modes, hooks, and the chapter's loss identities.

use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_nn::layers::Sequential;
use tiny_nn::{
    BasicBlock, BatchNorm2d, Conv2d, ConvLayer, Linear, Module, ReLU, cross_entropy, cross_entropy_items, init,
    log_softmax, nll, nll_items, resnet18, resnet34, resnet50, simple_cnn, xresnet18, xresnet34, xresnet50,
};
use tiny_tensor::gradcheck::{Tolerance, check_direction, check_elements};
use tiny_tensor::{Device, Tensor, TensorError};

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn std_of(t: &Tensor) -> f32 {
    let v = t.to_vec();
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
}

#[test]
fn simple_cnn_has_the_chapters_parameters() {
    let m = simple_cnn(10).unwrap();
    assert_eq!(m.num_parameters(), 98_730);
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.w", "0.b", "1.w", "1.b", "2.w", "2.b", "3.w", "3.b", "5.w", "5.b"]);
    let y = m.forward(&input(&[2, 3, 64, 64], 1)).unwrap();
    assert_eq!(y.shape(), &[2, 10]);
}

#[test]
fn resnet18_has_torchvisions_parameter_count_and_names() {
    let m = resnet18(10).unwrap();
    assert_eq!(m.num_parameters(), 11_181_642);
    let names: Vec<String> = m.state_dict().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "conv1.weight",
        "bn1.running_mean",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    assert_eq!(m.named_buffers().len(), 60, "20 batchnorms: two running statistics and a batch counter each");
    for size in [64, 128, 160] {
        let y = m.forward(&input(&[1, 3, size, size], 2)).unwrap();
        assert_eq!(y.shape(), &[1, 10], "at {size} px");
    }
}

#[test]
fn resnet34_and_resnet50_have_torchvisions_parameter_counts_and_run_at_64_px() {
    // torchvision's counts for 1000 classes less their fc (513,000 and 2,049,000), plus a 10-class fc.
    let (r34, r50) = (resnet34(10).unwrap(), resnet50(10).unwrap());
    assert_eq!(r34.num_parameters(), 21_289_802);
    assert_eq!(r50.num_parameters(), 23_528_522);
    assert_eq!(r34.named_buffers().len(), 3 * 36, "36 batchnorms");
    assert_eq!(r50.named_buffers().len(), 3 * 53, "53 batchnorms");
    assert_eq!(r50.fc.w.shape(), &[10, 2048]);
    let names: Vec<String> = r50.state_dict().into_iter().map(|(n, _)| n).collect();
    for expected in ["layer1.0.downsample.0.weight", "layer3.5.conv3.weight", "layer4.2.bn3.running_var"] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    r50.train(false);
    assert_eq!(r50.forward(&input(&[1, 3, 64, 64], 3)).unwrap().shape(), &[1, 10]);
}

#[test]
fn xresnets_have_fastais_counts_init_and_refuse_sizes_their_shortcuts_cannot_pool() {
    // fastai's counts with 10 classes (parity/make_fixtures.py's fastai_xresnet, which follows fastai's source).
    let (x18, x34, x50) = (xresnet18(10).unwrap(), xresnet34(10).unwrap(), xresnet50(10).unwrap());
    assert_eq!(
        [x18.num_parameters(), x34.num_parameters(), x50.num_parameters()],
        [11_200_874, 21_309_034, 23_547_754]
    );
    assert_eq!(x50.named_buffers().len(), 3 * 55);
    // Bag of tricks: each block's last batchnorm starts at zero, the others at one, every bias at zero; the
    // convolutions are kaiming-normal fan-in (a 3x3 from 64 channels: std sqrt(2 / 576) = 0.0589).
    let params = x18.named_parameters();
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, p)| p.to_vec()).unwrap();
    assert!(get("4.0.convpath.1.1.weight").iter().all(|&v| v == 0.0));
    assert!(get("4.0.convpath.0.1.weight").iter().all(|&v| v == 1.0));
    assert!(get("5.0.idpath.1.1.weight").iter().all(|&v| v == 1.0), "the shortcut's batchnorm is not zeroed");
    assert!(get("5.0.convpath.0.1.bias").iter().chain(&get("11.bias")).all(|&v| v == 0.0));
    let w = get("4.1.convpath.0.0.weight");
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    assert!((std - (2.0f32 / 576.0).sqrt()).abs() < 0.003, "std {std}");
    x18.train(false);
    for size in [64, 96, 128] {
        assert_eq!(x18.forward(&input(&[1, 3, size, size], 4)).unwrap().shape(), &[1, 10], "at {size} px");
    }
    // 80 px leaves a 5x5 map for the last stage's 2x2 ceil-mode pool.
    let err = x18.forward(&input(&[1, 3, 80, 80], 4)).unwrap_err().to_string();
    assert!(err.contains("AvgPool2d") && err.contains("5x5") && err.contains("multiple of 32"), "{err}");
}

#[test]
fn init_standard_deviations() {
    // Kaiming: sqrt(2 / fan_in) with fan_in = 64 * 3 * 3.
    let conv = ConvLayer::new(64, 128, 1, true, true).unwrap();
    let want = (2.0f32 / 576.0).sqrt();
    assert!((std_of(&conv.w) / want - 1.0).abs() < 0.03, "{} vs {want}", std_of(&conv.w));
    // Xavier: sqrt(2 / (fan_in + fan_out)).
    let lin = Linear::new(512, 256).unwrap();
    let want = (2.0f32 / 768.0).sqrt();
    assert!((std_of(&lin.w) / want - 1.0).abs() < 0.03, "{} vs {want}", std_of(&lin.w));
    assert!(lin.b.as_ref().unwrap().to_vec().iter().all(|&b| b == 0.0));
    // Without an activation the chapter's ConvLayer uses xavier.
    let plain = ConvLayer::new(64, 128, 1, false, false).unwrap();
    let want = (2.0f32 / (576.0 + 1152.0)).sqrt();
    assert!((std_of(&plain.w) / want - 1.0).abs() < 0.03);
    assert!(plain.b.is_none());
}

/// Checks that `values` look drawn with mean 0 and standard deviation `std`: the sample mean within 5 standard
/// errors (`std / sqrt(n)`) of 0 and the sample deviation within 5 of its own (`std / sqrt(2n)` for a normal,
/// less for a uniform), so a wrong fan or gain (a factor of sqrt(2) or more) fails while sampling never does.
fn assert_drawn_with(what: &str, values: &[f32], std: f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let sd = (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() <= 5.0 * std / n.sqrt(), "{what}: mean {mean} for std {std} over {n} values");
    assert!((sd - std).abs() <= 5.0 * std / (2.0 * n).sqrt(), "{what}: std {sd}, expected {std} over {n} values");
}

#[test]
fn every_layer_starts_with_the_chapters_and_torchvisions_initialisation() {
    // simple_cnn: the chapter's ConvLayer is kaiming-normal with its fan-in, sqrt(2 / (ni * 9)), and zero bias;
    // its Linear is xavier-normal, sqrt(2 / (128 + 10)), and zero bias.
    init::manual_seed(11);
    let cnn = simple_cnn(10).unwrap();
    for (name, p) in cnn.named_parameters() {
        let (v, s) = (p.to_vec(), p.shape().to_vec());
        match (name.ends_with(".w"), s.len()) {
            (true, 4) => assert_drawn_with(&name, &v, (2.0 / (s[1] * 9) as f64).sqrt()),
            (true, _) => assert_drawn_with(&name, &v, (2.0 / (s[0] + s[1]) as f64).sqrt()),
            (false, _) => assert!(v.iter().all(|&b| b == 0.0), "{name} starts at zero"),
        }
    }
    // resnet18: torchvision's kaiming-normal with fan-out, sqrt(2 / (f * k * k)); batchnorm weight 1 and bias 0;
    // fc as nn.Linear, uniform in +-1/sqrt(512), whose standard deviation is that bound over sqrt(3).
    let rn = resnet18(10).unwrap();
    for (name, p) in rn.named_parameters() {
        let (v, s) = (p.to_vec(), p.shape().to_vec());
        if s.len() == 4 {
            assert_drawn_with(&name, &v, (2.0 / (s[0] * s[2] * s[3]) as f64).sqrt());
        } else if name.starts_with("fc.") {
            let bound = 1.0 / 512f64.sqrt();
            assert!(v.iter().all(|&x| f64::from(x).abs() <= bound), "{name} within +-{bound}");
            assert_drawn_with(&name, &v, bound / 3f64.sqrt());
        } else {
            let want = if name.ends_with("weight") { 1.0 } else { 0.0 };
            assert!(v.iter().all(|&x| x == want), "{name} starts at {want}");
        }
    }
}

#[test]
fn the_same_seed_builds_the_same_model() {
    init::manual_seed(3);
    let a = simple_cnn(10).unwrap().parameters()[0].to_vec();
    init::manual_seed(3);
    let b = simple_cnn(10).unwrap().parameters()[0].to_vec();
    assert_eq!(a, b);
}

/// Checks the gradient of `sum(module(x)^2 * r)` with respect to `x` along a random direction: the
/// direction flows through every layer's backward.
fn check_module(m: &dyn Module, x: Tensor) {
    let tol = Tolerance { eps: 1e-2, rtol: 2e-2, atol: 1e-3 };
    let f = |xs: &[Tensor]| {
        let y = m
            .forward(&xs[0])
            .map_err(|e| tiny_tensor::TensorError::InvalidArgument { op: "module", msg: e.to_string() })?;
        y.powf(2.0)
    };
    check_direction(&[x.set_requires_grad(true)], f, tol).unwrap();
}

#[test]
fn conv_weights_and_their_gradients_are_stored_channels_last() {
    // The convolution kernels read weights in [f, kh, kw, c] order, so the layers keep them that way.
    let model = resnet18(10).unwrap();
    let x = input(&[2, 3, 32, 32], 7);
    cross_entropy(&model.forward(&x).unwrap(), &[1, 2]).unwrap().backward().unwrap();
    for (name, p) in model.named_parameters().into_iter().filter(|(_, p)| p.shape().len() == 4) {
        let cl = p.permute(&[0, 2, 3, 1]).unwrap();
        assert!(cl.layout().is_contiguous(), "{name} is not channels-last");
        assert!(p.grad().unwrap().layout().same_memory_order(p.layout()), "{name}'s gradient has another order");
    }
}

#[test]
fn gradients_through_a_conv_layer_batchnorm_and_basic_block() {
    let conv = ConvLayer::new(3, 8, 2, true, false).unwrap();
    check_module(&conv, input(&[2, 3, 8, 8], 4));
    let bn = BatchNorm2d::new(3);
    check_module(&bn, input(&[4, 3, 5, 5], 5));
    let block = BasicBlock::new(4, 8, 2).unwrap();
    block.train(false); // Running statistics keep the block smooth and deterministic between evaluations.
    check_module(&block, input(&[2, 4, 8, 8], 6));
}

#[test]
fn batchnorm_weight_gradients_in_training_mode() {
    let bn = BatchNorm2d::new(3);
    let x = input(&[4, 3, 5, 5], 7).affine(2.0, 1.0).unwrap();
    let w = bn.weight.tensor().clone();
    let b = bn.bias.tensor().clone();
    let tol = Tolerance { eps: 1e-2, rtol: 2e-2, atol: 1e-3 };
    check_direction(
        &[x.set_requires_grad(true), w, b],
        |t| {
            let mean = t[0].mean(&[0, 2, 3], true)?;
            let var = t[0].sub(&mean)?.powf(2.0)?.mean(&[0, 2, 3], true)?;
            let y = t[0].sub(&mean)?.div(&var.add_scalar(1e-5)?.sqrt()?)?;
            y.mul(&t[1].reshape(&[1, 3, 1, 1])?)?.add(&t[2].reshape(&[1, 3, 1, 1])?)?.powf(2.0)
        },
        tol,
    )
    .unwrap();
    // The layer computes the same function as the expression checked above.
    let y = bn.forward(&input(&[4, 3, 5, 5], 7).affine(2.0, 1.0).unwrap()).unwrap();
    let per_channel = y.mean(&[0, 2, 3], false).unwrap().to_vec();
    assert!(per_channel.iter().all(|m| m.abs() < 1e-5), "{per_channel:?}");
}

#[test]
fn batchnorm_training_and_evaluation() {
    let bn = BatchNorm2d::new(2);
    let x = input(&[8, 2, 4, 4], 8).affine(3.0, 5.0).unwrap();
    let y = bn.forward(&x).unwrap();
    // Training: each channel of the output has mean 0 and (biased) std 1.
    let mean = y.mean(&[0, 2, 3], false).unwrap().to_vec();
    let var = y.powf(2.0).unwrap().mean(&[0, 2, 3], false).unwrap().to_vec();
    assert!(mean.iter().all(|m| m.abs() < 1e-4) && var.iter().all(|v| (v - 1.0).abs() < 1e-3), "{mean:?} {var:?}");
    // Running statistics moved 10% of the way to the batch's (unbiased variance).
    let bmean = x.mean(&[0, 2, 3], false).unwrap().to_vec();
    let n = 8.0 * 16.0;
    let bvar =
        x.sub(&x.mean(&[0, 2, 3], true).unwrap()).unwrap().powf(2.0).unwrap().sum(&[0, 2, 3], false).unwrap().to_vec();
    for c in 0..2 {
        assert!((bn.running_mean.to_vec()[c] - 0.1 * bmean[c]).abs() < 1e-4);
        assert!((bn.running_var.to_vec()[c] - (0.9 + 0.1 * bvar[c] / (n - 1.0))).abs() < 1e-3);
    }
    // Evaluation uses the running statistics and leaves them alone.
    bn.train(false);
    let before = bn.running_mean.to_vec();
    let y = bn.forward(&x).unwrap().to_vec();
    assert_eq!(bn.running_mean.to_vec(), before);
    let (rm, rv) = (bn.running_mean.to_vec(), bn.running_var.to_vec());
    let xv = x.to_vec();
    let expect = (xv[0] - rm[0]) / (rv[0] + 1e-5).sqrt();
    assert!((y[0] - expect).abs() < 1e-4);
}

#[test]
fn train_and_eval_propagate_to_children() {
    let m = resnet18(10).unwrap();
    m.train(false);
    let probe = Tensor::ones(&[1, 3, 32, 32]);
    let a = m.forward(&probe).unwrap().to_vec();
    let b = m.forward(&probe).unwrap().to_vec();
    assert_eq!(a, b, "evaluation mode is deterministic and does not update running statistics");
    m.to_device(Device::Cpu).unwrap();
    assert!(m.to_device(Device::Cuda(0)).is_err(), "this build has no CUDA backend");
}

#[test]
fn hooks_see_every_layers_activations() {
    // The chapter's exercise: a hook that reports each layer's output shape, mean and std.
    let m = simple_cnn(10).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (_, layer) in m.children() {
        let seen = seen.clone();
        handles.push(
            layer
                .register_forward_hook(Box::new(move |name, _input, out| {
                    let v = out.to_vec();
                    let mean = v.iter().sum::<f32>() / v.len() as f32;
                    seen.lock().unwrap().push((name.to_string(), out.shape().to_vec(), mean));
                }))
                .unwrap(),
        );
    }
    m.forward(&input(&[2, 3, 64, 64], 9)).unwrap();
    let shapes: Vec<Vec<usize>> = seen.lock().unwrap().iter().map(|(_, s, _)| s.clone()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![2, 16, 32, 32],
            vec![2, 32, 16, 16],
            vec![2, 64, 8, 8],
            vec![2, 128, 4, 4],
            vec![2, 128],
            vec![2, 10]
        ]
    );
    assert_eq!(seen.lock().unwrap()[0].0, "ConvLayer");
    assert!(m.remove_hook(handles[0]));
    seen.lock().unwrap().clear();
    m.forward(&input(&[1, 3, 64, 64], 9)).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 5, "the removed hook no longer runs");
}

#[test]
fn a_hook_on_a_batchnorm_sees_its_output_before_the_fused_relu() {
    // A block's batchnorm-ReLU pairs run as one op, unless a hook watches the batchnorm: then the two run apart and
    // the hook sees the layer's own output, negatives included. Either way the block computes the same numbers.
    let x = input(&[2, 8, 6, 6], 11);
    let run = |hooked: bool| {
        init::manual_seed(12);
        let block = BasicBlock::new(8, 8, 1).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        if hooked {
            let seen = seen.clone();
            let hook = Box::new(move |_: &str, _: &Tensor, out: &Tensor| *seen.lock().unwrap() = out.to_vec());
            block.bn1.register_forward_hook(hook).unwrap();
        }
        let y = block.call(&x).unwrap();
        y.sum_all().unwrap().backward().unwrap();
        let grad = block.conv1.weight.grad().unwrap().to_vec();
        let running = block.bn1.running_mean.to_vec();
        let seen = seen.lock().unwrap().clone();
        (y.to_vec(), grad, running, seen)
    };
    let (fused, hooked) = (run(false), run(true));
    assert_eq!((&fused.0, &fused.1, &fused.2), (&hooked.0, &hooked.1, &hooked.2));
    assert!(hooked.3.iter().any(|&v| v < 0.0), "the hook saw the batchnorm's output, before the ReLU");
    assert!(fused.3.is_empty());
}

#[test]
fn a_sequential_fuses_a_batchnorm_and_the_relu_after_it_only_where_nothing_watches() {
    // fastai's ConvLayer: a convolution, a batchnorm and a ReLU in a Sequential. The last two run as one op unless a
    // hook watches either of them, or in evaluation mode; the numbers (outputs, gradients, running statistics) are
    // the same to the bit every way, and each hook sees what it would see unfused.
    let x = input(&[2, 4, 6, 6], 13);
    let run = |watch: Option<usize>, training: bool| {
        init::manual_seed(14);
        let layer = Sequential::new(vec![
            Box::new(Conv2d::kaiming_fan_in(4, 8, 3, 1, 1).unwrap()),
            Box::new(BatchNorm2d::new(8)),
            Box::new(ReLU::new()),
        ]);
        layer.train(training);
        let seen = Arc::new(Mutex::new(Vec::new()));
        if let Some(child) = watch {
            let seen = seen.clone();
            let hook = Box::new(move |_: &str, _: &Tensor, out: &Tensor| *seen.lock().unwrap() = out.to_vec());
            layer.layers()[child].register_forward_hook(hook).unwrap();
        }
        let y = layer.call(&x).unwrap();
        y.sum_all().unwrap().backward().unwrap();
        let grads: Vec<Vec<f32>> = layer.parameters().iter().map(|p| p.grad().unwrap().to_vec()).collect();
        let buffers: Vec<Vec<f32>> = layer.named_buffers().into_iter().map(|(_, b)| b.to_vec()).collect();
        let seen = seen.lock().unwrap().clone();
        (y.op_name(), y.to_vec(), grads, buffers, seen)
    };
    let fused = run(None, true);
    assert_eq!(fused.0, Some("batch_norm_relu"), "an unwatched batchnorm-ReLU pair runs as one op");
    for (watch, what) in [(Some(1), "batchnorm"), (Some(2), "ReLU")] {
        let apart = run(watch, true);
        assert_eq!(apart.0, Some("relu"), "a hook on the {what} keeps the pair apart");
        assert_eq!((&apart.1, &apart.2, &apart.3), (&fused.1, &fused.2, &fused.3), "hook on the {what}");
        let negatives = apart.4.iter().any(|&v| v < 0.0);
        assert_eq!(negatives, watch == Some(1), "the {what}'s hook sees its own output");
    }
    let eval = run(None, false);
    assert_eq!(eval.0, Some("relu"), "in evaluation mode the batchnorm is not the fused op");
}

#[test]
fn log_softmax_identities_from_the_chapter() {
    let x = input(&[4, 10], 10).mul_scalar(3.0).unwrap();
    let naive = x.exp().unwrap().div(&x.exp().unwrap().sum(&[-1], true).unwrap()).unwrap().log().unwrap();
    let ours = log_softmax(&x).unwrap();
    for (a, b) in ours.to_vec().iter().zip(naive.to_vec()) {
        assert!((a - b).abs() < 1e-5);
    }
    let big = Tensor::from_vec(vec![1e4, -1e4, 0.0, 1e4], &[2, 2]).unwrap();
    assert!(log_softmax(&big).unwrap().to_vec().iter().all(|v| v.is_finite()));
    // Equal logits: the loss is ln(classes) and argmax picks the first index.
    let flat = Tensor::zeros(&[3, 10]);
    assert!((cross_entropy(&flat, &[0, 4, 9]).unwrap().item().unwrap() - 10f32.ln()).abs() < 1e-6);
    assert_eq!(flat.argmax(-1).unwrap(), [0, 0, 0]);
    // The fused cross entropy gives the chapter's nll(log_softmax(x)), per item and averaged.
    let target = [3, 0, 9, 9];
    let per_item = nll_items(&log_softmax(&x).unwrap(), &target).unwrap().to_vec();
    for (a, b) in cross_entropy_items(&x, &target).unwrap().to_vec().iter().zip(&per_item) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let chapter = nll(&log_softmax(&x).unwrap(), &target).unwrap().item().unwrap();
    assert!((cross_entropy(&x, &target).unwrap().item().unwrap() - chapter).abs() < 1e-5);
    // nll picks -input[i, target[i]] and averages.
    let lp = Tensor::from_vec(vec![-0.1, -2.0, -3.0, -0.5], &[2, 2]).unwrap();
    assert!((nll(&lp, &[0, 1]).unwrap().item().unwrap() - 0.3).abs() < 1e-6);
}

#[test]
fn sequential_reports_bad_input_as_an_error() {
    let m = Sequential::new(vec![Box::new(Linear::new(4, 2).unwrap())]);
    let err = m.forward(&Tensor::zeros(&[3, 5])).unwrap_err();
    assert_eq!(err.to_string(), "Linear: expects [batch, 4] input, got [3, 5]");
}

#[test]
fn dropout_is_seeded_keeps_about_one_minus_p_and_passes_a_finite_difference_check() {
    // The same seed draws the same mask; a drawn mask is a constant of the product, so the gradient flows through
    // the kept elements scaled by 1 / (1 - p), which the central differences confirm element by element.
    let drop = tiny_nn::Dropout::new(0.4).unwrap();
    let x = input(&[4, 6], 5).set_requires_grad(true);
    let masked = |t: &[Tensor]| {
        drop.seed(7);
        drop.forward(&t[0]).map_err(|e| TensorError::InvalidArgument { op: "dropout", msg: e.to_string() })
    };
    check_elements(std::slice::from_ref(&x), masked, Tolerance::default()).unwrap();
    drop.seed(7);
    let a = drop.forward(&x).unwrap().to_vec();
    drop.seed(7);
    assert_eq!(a, drop.forward(&x).unwrap().to_vec(), "one seed, one mask");
    assert_ne!(a, drop.forward(&x).unwrap().to_vec(), "the next draw is another mask");
    let kept = drop.mask(&[10_000]).unwrap().to_vec();
    let share = kept.iter().filter(|&&v| v != 0.0).count() as f32 / 10_000.0;
    assert!((share - 0.6).abs() < 0.02, "kept {share}");
    assert!(kept.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.6).abs() < 1e-6));
    // Built after the same manual_seed, two layers draw the same masks.
    tiny_nn::manual_seed(11);
    let first = tiny_nn::Dropout::new(0.5).unwrap().mask(&[64]).unwrap().to_vec();
    tiny_nn::manual_seed(11);
    assert_eq!(first, tiny_nn::Dropout::new(0.5).unwrap().mask(&[64]).unwrap().to_vec());
    assert!(tiny_nn::Dropout::new(1.0).is_err() && tiny_nn::Dropout::new(-0.1).is_err());
    // What a replayed CUDA graph would repeat: a training Dropout with p > 0, found by its path.
    let head = tiny_nn::vision_resnet(resnet18(3).unwrap(), 3, 0.5).unwrap();
    head.train(true);
    assert_eq!(head.first_random_draw().map(|(path, _)| path).as_deref(), Some("1.3"));
    head.train(false);
    assert!(head.first_random_draw().is_none());
    let x18 = xresnet18(3).unwrap();
    x18.train(true);
    assert!(x18.first_random_draw().is_none(), "xresnet's Dropout(0.0) draws nothing");
    // fastai's head: its BatchNorm1d layers start at weight 1 and bias 1e-3 (fastai's `_get_norm`).
    let params = tiny_nn::create_head(8, 5, 0.5).unwrap().named_parameters();
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, p)| p.to_vec()).unwrap();
    assert!(get("2.bias").iter().chain(&get("6.bias")).all(|&b| b == 1e-3));
    assert!(get("2.weight").iter().all(|&w| w == 1.0) && get("2.bias").len() == 16);
}
