//! tiny-nn against PyTorch, from `tests/fixtures/nn.safetensors` (written by `parity/make_fixtures.py`): the
//! chapter's losses, `BatchNorm2d` in training and evaluation mode, and whole models from the same weights on
//! one fixed batch: simple_cnn and torchvision's resnet18, eval logits and three SGD-momentum steps.

use tiny_fixtures::{Case, Fixtures, Stored, assert_close, fixture_path};
use tiny_nn::{
    BatchNorm2d, LabelSmoothingCrossEntropy, Module, bce_with_logits_flat, bce_with_logits_items, cross_entropy,
    cross_entropy_smooth, load_state_dict, log_softmax, nll, resnet18, simple_cnn,
};
use tiny_tensor::{Tensor, no_grad};

fn fixtures() -> Fixtures {
    Fixtures::load(fixture_path!("nn.safetensors"))
}

fn tensor(s: &Stored) -> Tensor {
    Tensor::from_vec(s.data.clone(), &s.shape).unwrap()
}

fn labels(s: &Stored) -> Vec<u32> {
    s.data.iter().map(|&v| v as u32).collect()
}

/// Runs a case through `f`, then checks its first output and, through `sum(out * cot)`, its input gradients.
fn replay(fx: &Fixtures, case: &Case, f: impl Fn(&[Tensor]) -> tiny_nn::Result<Tensor>) {
    let inputs: Vec<Tensor> = (0..case.grads.len())
        .map(|i| tensor(fx.get(&format!("{}.in{i}", case.name))).set_requires_grad(case.grads[i]))
        .collect();
    let out = f(&inputs).unwrap();
    assert_close(&case.name, out.shape(), &out.to_vec(), fx.get(&format!("{}.out0", case.name)), case.rtol);
    let cot = tensor(fx.get(&format!("{}.cot", case.name)));
    out.mul(&cot).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, x) in inputs.iter().enumerate().filter(|(i, _)| case.grads[*i]) {
        let g = x.grad().unwrap();
        let what = format!("{}: gradient of input {i}", case.name);
        assert_close(&what, g.shape(), &g.to_vec(), fx.get(&format!("{}.grad{i}", case.name)), case.rtol);
    }
}

#[test]
fn the_chapters_losses_match_pytorch_even_for_extreme_logits() {
    let fx = fixtures();
    for case in fx.cases.iter().filter(|c| ["log_softmax", "nll", "cross_entropy"].contains(&c.op.as_str())) {
        let y: Vec<u32> =
            if case.op == "log_softmax" { vec![] } else { case.ints("targets").iter().map(|&t| t as u32).collect() };
        replay(&fx, case, |x| match case.op.as_str() {
            "log_softmax" => log_softmax(&x[0]),
            "nll" => nll(&x[0], &y),
            _ => cross_entropy(&x[0], &y),
        });
    }
}

#[test]
fn label_smoothing_matches_pytorch_and_fastai() {
    // `F.cross_entropy(x, y, label_smoothing=eps)`, which make_fixtures.py checks equals fastai's
    // LabelSmoothingCrossEntropy(eps), for eps 0, 0.1, 0.3, 1 and logits of +-1e4.
    let fx = Fixtures::load(fixture_path!("label_smoothing.safetensors"));
    assert_eq!(fx.cases.len(), 5);
    for case in &fx.cases {
        let (y, eps): (Vec<u32>, f32) = (case.ints("targets").iter().map(|&t| t as u32).collect(), case.f32("eps"));
        replay(&fx, case, |x| cross_entropy_smooth(&x[0], &y, eps));
        replay(&fx, case, |x| LabelSmoothingCrossEntropy::new(eps)?.loss(&x[0], &y));
    }
}

#[test]
fn multi_label_bce_matches_pytorch_and_fastai() {
    // `F.binary_cross_entropy_with_logits(x, t)`, fastai's BCEWithLogitsLossFlat(), from flags, for 10, 1 and 20
    // classes and logits of +-1e4; the items' losses average to it.
    let fx = Fixtures::load(fixture_path!("bce.safetensors"));
    assert_eq!(fx.cases.len(), 4);
    for case in &fx.cases {
        let flags: Vec<u32> = case.ints("flags").iter().map(|&t| t as u32).collect();
        replay(&fx, case, |x| bce_with_logits_flat(&x[0], &flags));
        replay(&fx, case, |x| Ok(bce_with_logits_items(&x[0], &flags)?.mean_all()?));
    }
}

#[test]
fn batchnorm_updates_running_statistics_and_evaluates_as_pytorch() {
    let fx = fixtures();
    let bn = BatchNorm2d::new(3);
    bn.weight.assign(&tensor(fx.get("batchnorm_module.weight"))).unwrap();
    bn.bias.assign(&tensor(fx.get("batchnorm_module.bias"))).unwrap();
    // Two training batches: batch statistics, then running ones (momentum 0.1, unbiased variance).
    for i in 0..2 {
        let y = bn.forward(&tensor(fx.get(&format!("batchnorm_module.x{i}")))).unwrap();
        assert_close(
            &format!("train batch {i}"),
            y.shape(),
            &y.to_vec(),
            fx.get(&format!("batchnorm_module.train_out{i}")),
            3e-5,
        );
    }
    for (name, t) in [("running_mean", &bn.running_mean), ("running_var", &bn.running_var)] {
        assert_close(name, t.shape(), &t.to_vec(), fx.get(&format!("batchnorm_module.{name}")), 1e-5);
    }
    assert_eq!(bn.num_batches_tracked.to_vec(), fx.get("batchnorm_module.num_batches_tracked").data);
    // Evaluation mode uses the running statistics; gradients flow to the input and the affine parameters.
    let case = fx.case("batchnorm_eval");
    let input = |i: usize| tensor(fx.get(&format!("batchnorm_eval.in{i}")));
    let m = BatchNorm2d::new(3);
    m.train(false);
    for (t, i) in [(&*m.weight, 1), (&*m.bias, 2), (&m.running_mean, 3), (&m.running_var, 4)] {
        t.assign(&input(i)).unwrap();
    }
    let x = input(0).set_requires_grad(true);
    let y = m.forward(&x).unwrap();
    assert_close("eval output", y.shape(), &y.to_vec(), fx.get("batchnorm_eval.out0"), case.rtol);
    y.mul(&tensor(fx.get("batchnorm_eval.cot"))).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, t) in [(0, &x), (1, &*m.weight), (2, &*m.bias)] {
        let g = t.grad().unwrap();
        assert_close(
            &format!("eval gradient {i}"),
            g.shape(),
            &g.to_vec(),
            fx.get(&format!("batchnorm_eval.grad{i}")),
            case.rtol,
        );
    }
    // The module that trained on two batches evaluates the third batch with its running statistics.
    bn.train(false);
    let y = bn.forward(&tensor(fx.get("batchnorm_module.x2"))).unwrap();
    assert_close("eval after training", y.shape(), &y.to_vec(), fx.get("batchnorm_eval.out0"), case.rtol);
}

/// Trains `model` for the case's steps of SGD with momentum (tiny-optim is not a dependency of tiny-nn, so the
/// update is PyTorch's formula written out: `b = momentum * b + g` (`b = g` at first), `p -= lr * b`), calling
/// `after_backward(step)` once each step's gradients are in; returns the loss of each step.
fn sgd_momentum_steps(
    model: &dyn Module,
    x: &Tensor,
    y: &[u32],
    case: &Case,
    mut after_backward: impl FnMut(usize),
) -> Vec<f32> {
    let (lr, momentum) = (case.f32("lr"), case.f32("momentum"));
    let params = model.parameters();
    let mut buffers: Vec<Option<Tensor>> = vec![None; params.len()];
    let mut losses = Vec::new();
    for step in 0..case.usize("steps") {
        model.zero_grad();
        let loss = cross_entropy(&model.forward(x).unwrap(), y).unwrap();
        loss.backward().unwrap();
        after_backward(step);
        losses.push(loss.item().unwrap());
        let _g = no_grad();
        for (p, b) in params.iter().zip(buffers.iter_mut()) {
            let g = p.grad().unwrap();
            let buf = match b.take() {
                Some(buf) => {
                    buf.scale_(momentum).unwrap();
                    buf.add_scaled_(&g, 1.0).unwrap();
                    buf
                }
                None => g.contiguous().unwrap().mul_scalar(1.0).unwrap(),
            };
            p.add_scaled_(&buf, -lr).unwrap();
            *b = Some(buf);
        }
    }
    losses
}

/// simple_cnn with the fixture's initial weights (`simple_cnn.init.*`).
fn fixture_simple_cnn(fx: &Fixtures) -> tiny_nn::Sequential {
    let model = simple_cnn(10).unwrap();
    let init: Vec<(String, Tensor)> = fx
        .names_with_prefix("simple_cnn.init.")
        .into_iter()
        .map(|n| (n.trim_start_matches("simple_cnn.init.").to_string(), tensor(fx.get(n))))
        .collect();
    load_state_dict(&model, init, true).unwrap();
    model
}

#[test]
fn simple_cnn_from_the_same_weights_matches_pytorch_in_eval_and_over_three_training_steps() {
    let fx = fixtures();
    let case = fx.case("simple_cnn");
    let model = fixture_simple_cnn(&fx);
    let (x, y) = (tensor(fx.get("simple_cnn.x")), labels(fx.get("simple_cnn.y")));
    model.train(false);
    let logits = model.forward(&x).unwrap();
    assert_close("simple_cnn eval logits", logits.shape(), &logits.to_vec(), fx.get("simple_cnn.eval_logits"), 1e-5);
    model.train(true);
    let losses = sgd_momentum_steps(&model, &x, &y, case, |_| {});
    assert_close("simple_cnn losses", &[losses.len()], &losses, fx.get("simple_cnn.losses"), 1e-6);
    // Every parameter after the steps. Compared as the change from the start, which is what the steps computed.
    for (name, p) in model.state_dict() {
        let want = fx.get(&format!("simple_cnn.after.{name}"));
        let start = &fx.get(&format!("simple_cnn.init.{name}")).data;
        let got: Vec<f32> = p.to_vec().iter().zip(start).map(|(a, b)| a - b).collect();
        let moved =
            Stored { shape: want.shape.clone(), data: want.data.iter().zip(start).map(|(a, b)| a - b).collect() };
        assert_close(&format!("simple_cnn {name} after 3 steps"), p.shape(), &got, &moved, 1e-4);
    }
}

/// `parity/make_fixtures.py`'s `hashed_uniform`: element `i` of `name` is `(splitmix64(fnv1a(name) + i) >> 40)
/// / 2^23 - 1`, exact in f32, so that both sides build resnet18's 11M weights without storing them.
fn hashed_uniform(name: &str, n: usize) -> Vec<f32> {
    let h = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3));
    (0..n as u64)
        .map(|i| {
            let mut z = h.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f64 / f64::from(1u32 << 23) - 1.0) as f32
        })
        .collect()
}

/// The script's `hashed_state`: each tensor of a torchvision-named resnet18 from `hashed_uniform`, scaled as an
/// initialisation would be.
fn hashed_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let u = hashed_uniform(name, shape.iter().product());
    let leaf = name.rsplit('.').next().unwrap();
    let scale = |s: f32, add: f32| u.iter().map(|&v| v * s + add).collect();
    match (leaf, shape.len()) {
        ("num_batches_tracked", _) => vec![0.0],
        ("running_var", _) => scale(0.25, 1.0),
        ("running_mean" | "bias", _) => scale(0.1, 0.0),
        ("weight", 1) => scale(0.2, 1.0),
        ("weight", 4) => scale((6.0 / (shape[0] * shape[2] * shape[3]) as f64).sqrt() as f32, 0.0),
        _ => scale((1.0 / (shape[1] as f64).sqrt()) as f32, 0.0),
    }
}

/// Checks a tensor `v` (flat) against its stored summary `[sum, sum of squares, probe product, largest magnitude]`
/// (`make_fixtures.py`'s `summarise`): each within `rtol` of its Cauchy-Schwarz scale, where no relative bound
/// fits the sums, which cancel.
fn check_summaries(what: &str, name: &str, v: &[f64], want: &[f32], rtol: f64) {
    let probe: Vec<f64> = hashed_uniform(&format!("probe.{name}"), v.len()).into_iter().map(f64::from).collect();
    let sum_sq: f64 = v.iter().map(|x| x * x).sum();
    let got = [
        v.iter().sum::<f64>(),
        sum_sq,
        v.iter().zip(&probe).map(|(a, b)| a * b).sum(),
        v.iter().fold(0.0f64, |m, x| m.max(x.abs())),
    ];
    let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    let scales = [
        (v.len() as f64 * want[1]).sqrt(),
        want[1],
        (want[1] * probe.iter().map(|p| p * p).sum::<f64>()).sqrt(),
        want[3],
    ];
    for (k, stat) in ["sum", "sum of squares", "probe product", "largest magnitude"].iter().enumerate() {
        let limit = rtol * scales[k] + 1e-12;
        assert!(
            (got[k] - want[k]).abs() <= limit,
            "{what}: {stat} {} where PyTorch has {} (bound {limit:e})",
            got[k],
            want[k]
        );
    }
}

/// Checks the first values of `v` against the stored ones, within `rtol` of `v`'s largest magnitude.
fn check_head(what: &str, v: &[f64], want: &Stored, rtol: f64) {
    let largest = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (i, (g, w)) in v.iter().zip(&want.data).enumerate() {
        let limit = rtol * largest + 1e-12;
        assert!(
            (g - f64::from(*w)).abs() <= limit,
            "{what}: element {i} is {g} where PyTorch has {w} (bound {limit:e})"
        );
    }
}

#[test]
fn resnet18_has_torchvisions_state_dict_and_trains_as_pytorch_from_the_same_weights() {
    let fx = fixtures();
    let case = fx.case("resnet18");
    let model = resnet18(10).unwrap();
    // The state_dict is torchvision's, key for key and shape for shape, in its order.
    let ours: Vec<(String, Vec<usize>)> =
        model.state_dict().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    let keys = case.params["keys"].as_array().unwrap();
    let theirs: Vec<(String, Vec<usize>)> = keys
        .iter()
        .map(|k| {
            let shape = k[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (k[0].as_str().unwrap().to_string(), shape)
        })
        .collect();
    let mut sorted = (ours.clone(), theirs.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "tiny's resnet18 state_dict is torchvision's");
    let state: Vec<(String, Tensor)> =
        theirs.iter().map(|(n, s)| (n.clone(), Tensor::from_vec(hashed_value(n, s), s).unwrap())).collect();
    let start: std::collections::HashMap<String, Vec<f32>> =
        state.iter().map(|(n, t)| (n.clone(), t.to_vec())).collect();
    load_state_dict(&model, state, true).unwrap();
    // The batch the script chose: a hashed one whose run stays `kink_margin` (>= 5e-7) from every ReLU kink and
    // max pool tie, several times the ~1e-7 by which two implementations' activations differ, and which is stable
    // under float32-sized noise (below).
    let input = case.params["input"].as_str().unwrap();
    let x = Tensor::from_vec(hashed_uniform(input, 4 * 3 * 64 * 64), &[4, 3, 64, 64]).unwrap();
    let y = labels(fx.get("resnet18.y"));
    model.train(false);
    let logits = model.forward(&x).unwrap();
    assert_close("resnet18 eval logits", logits.shape(), &logits.to_vec(), fx.get("resnet18.eval_logits"), 2e-5);
    model.train(true);
    // The first step's gradients, from the same weights: each parameter's sum, sum of squares, probe product and
    // largest magnitude within 3e-5 of their scales, its first 8 values within 3e-5 of its largest gradient
    // (PyTorch's own float32 gradients are 3e-6 to 7e-6 from float64 here).
    let first_step = |step: usize| {
        if step > 0 {
            return;
        }
        for (name, p) in model.named_parameters() {
            let g: Vec<f64> = p.grad().unwrap().to_vec().into_iter().map(f64::from).collect();
            let want = fx.get(&format!("resnet18.grad.{name}"));
            check_summaries(&format!("resnet18 {name}: first gradient"), &name, &g, &want.data, 3e-5);
            check_head(
                &format!("resnet18 {name}: first gradient"),
                &g,
                fx.get(&format!("resnet18.grad_head.{name}")),
                3e-5,
            );
        }
    };
    let losses = sgd_momentum_steps(&model, &x, &y, case, first_step);
    assert_close("resnet18 losses", &[losses.len()], &losses, fx.get("resnet18.losses"), 1e-5);
    // Every tensor's change over the steps (parameters and running statistics), summarised as the gradients were.
    // Over three steps two float32 implementations part, although each step computes what PyTorch computes (the
    // first step's gradients above; later steps' gradients from PyTorch's weights at that step agree as closely):
    // where one ReLU or max pool input sits within float32 noise of its kink, tiny and PyTorch can take different
    // sides, and batchnorm spreads that over whole layers. The script chose a batch that keeps 5e-7 from every
    // kink and on which PyTorch itself, with 1e-5 noise on every gradient element, moves no change by more than
    // 2e-4; tiny's changes still differ by up to 1.6e-3 of their scales (bn1, layer1, layer3's shortcut), so the
    // bound is 5e-3. A wrong step is caught before that: a momentum of 0.891 for 0.9 already moves the third loss
    // 4.6 times its 1e-5 bound.
    for (name, t) in model.state_dict() {
        let d: Vec<f64> = t.to_vec().iter().zip(&start[&name]).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect();
        let what = format!("resnet18 {name}: change over the steps");
        check_summaries(&what, &name, &d, &fx.get(&format!("resnet18.delta.{name}")).data, 5e-3);
    }
    model.train(false);
    let after = model.forward(&x).unwrap();
    // The trained model's logits, within 5e-3 of the largest, for the same reason.
    let want = fx.get("resnet18.eval_logits_after");
    let got: Vec<f64> = after.to_vec().into_iter().map(f64::from).collect();
    check_head("resnet18 trained eval logits", &got, want, 5e-3);
}

/// A summary (`make_fixtures.py`'s `summarise`: sum, sum of squares, probe product, largest magnitude) of `v`.
fn summary(name: &str, v: &[f64]) -> [f64; 4] {
    let probe: Vec<f64> = hashed_uniform(&format!("probe.{name}"), v.len()).into_iter().map(f64::from).collect();
    [
        v.iter().sum(),
        v.iter().map(|x| x * x).sum(),
        v.iter().zip(&probe).map(|(a, b)| a * b).sum(),
        v.iter().fold(0.0f64, |m, x| m.max(x.abs())),
    ]
}

/// The distance of summary `a` from `b` over the Cauchy-Schwarz scales of `reference` (a summary of a tensor of
/// `n` elements whose probe has `probe_sq` as its sum of squares): the largest of the four.
fn summary_distance(a: &[f64], b: &[f64], reference: &[f64], n: usize, probe_sq: f64) -> f64 {
    let scales = [(n as f64 * reference[1]).sqrt(), reference[1], (reference[1] * probe_sq).sqrt(), reference[3]];
    (0..4).map(|k| (a[k] - b[k]).abs() / scales[k].max(1e-30)).fold(0.0, f64::max)
}

/// Eval logits and the first training step's gradients of `model` in bf16 against PyTorch's under
/// `torch.autocast(bfloat16)` (`tests/fixtures/autocast_bf16.safetensors`, `make_fixtures.py autocast_models`):
/// each within `factor` times the distance of PyTorch's own bf16 run from its float32 run (both stored), and
/// further from PyTorch's float32 run than a tenth of that (tiny's products really were bf16).
fn bf16_within_pytorchs_bf16_noise(name: &str, model: &dyn Module, x: &Tensor, y: &[u32]) {
    use tiny_tensor::{Precision, autocast};
    let fx = Fixtures::load(fixture_path!("autocast_bf16.safetensors"));
    let factor = fx.case(&format!("{name}_bf16")).params["factor"].as_f64().unwrap();
    let widen = |s: &Stored| -> Vec<f64> { s.data.iter().map(|&v| f64::from(v)).collect() };
    let largest_gap = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    model.train(false);
    let logits: Vec<f64> = {
        let _bf16 = autocast(Precision::Bf16);
        model.forward(x).unwrap().to_vec().into_iter().map(f64::from).collect()
    };
    let (t16, t32) =
        (widen(fx.get(&format!("{name}.bf16.eval_logits"))), widen(fx.get(&format!("{name}.fp32.eval_logits"))));
    let (ours, noise) = (largest_gap(&logits, &t16), largest_gap(&t16, &t32));
    assert!(
        ours <= factor * noise,
        "{name} bf16 eval logits: {ours:e} from PyTorch's bf16, whose own bf16 noise is {noise:e}"
    );
    assert!(largest_gap(&logits, &t32) > 0.1 * noise, "{name}: bf16 logits equal to float32 ones");
    model.train(true);
    let loss = {
        let _bf16 = autocast(Precision::Bf16);
        cross_entropy(&model.forward(x).unwrap(), y).unwrap()
    };
    loss.backward().unwrap();
    let (mut ours, mut noise) = (0.0f64, 0.0f64);
    for (pname, p) in model.named_parameters() {
        let g: Vec<f64> = p.grad().unwrap().to_vec().into_iter().map(f64::from).collect();
        let probe_sq: f64 =
            hashed_uniform(&format!("probe.{pname}"), g.len()).iter().map(|&v| f64::from(v).powi(2)).sum();
        let (s16, s32) =
            (widen(fx.get(&format!("{name}.bf16.grad.{pname}"))), widen(fx.get(&format!("{name}.fp32.grad.{pname}"))));
        ours = ours.max(summary_distance(&summary(&pname, &g), &s16, &s32, g.len(), probe_sq));
        noise = noise.max(summary_distance(&s16, &s32, &s32, g.len(), probe_sq));
    }
    eprintln!("{name} bf16: first-step gradients {ours:.2e} from PyTorch's bf16 (its own bf16 noise {noise:.2e})");
    assert!(
        ours <= factor * noise,
        "{name} bf16 first-step gradients: {ours:e} from PyTorch's, its bf16 noise {noise:e}"
    );
}

#[test]
fn simple_cnn_in_bf16_stays_within_pytorchs_own_bf16_noise() {
    let fx = fixtures();
    let model = fixture_simple_cnn(&fx);
    let (x, y) = (tensor(fx.get("simple_cnn.x")), labels(fx.get("simple_cnn.y")));
    bf16_within_pytorchs_bf16_noise("simple_cnn", &model, &x, &y);
}

#[test]
fn resnet18_in_bf16_stays_within_pytorchs_own_bf16_noise() {
    let fx = fixtures();
    let model = resnet18(10).unwrap();
    let state: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n.clone(), Tensor::from_vec(hashed_value(&n, t.shape()), t.shape()).unwrap()))
        .collect();
    load_state_dict(&model, state, true).unwrap();
    let input = fx.case("resnet18").params["input"].as_str().unwrap();
    let x = Tensor::from_vec(hashed_uniform(input, 4 * 3 * 64 * 64), &[4, 3, 64, 64]).unwrap();
    bf16_within_pytorchs_bf16_noise("resnet18", &model, &x, &labels(fx.get("resnet18.y")));
}

/// The zoo's fixtures (`tests/fixtures/zoo.safetensors`, `make_fixtures.py zoo`).
fn zoo() -> Fixtures {
    Fixtures::load(fixture_path!("zoo.safetensors"))
}

/// `model`'s state_dict is torchvision's (`case.params["keys"]`), name for name and shape for shape (tiny lists
/// parameters before buffers, so the orders differ); returns the hashed state the script loaded.
fn torchvision_state(model: &dyn Module, case: &Case) -> Vec<(String, Tensor)> {
    let ours: Vec<(String, Vec<usize>)> =
        model.state_dict().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    let theirs: Vec<(String, Vec<usize>)> = case.params["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let shape = k[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (k[0].as_str().unwrap().to_string(), shape)
        })
        .collect();
    let (mut a, mut b) = (ours, theirs.clone());
    a.sort();
    b.sort();
    assert_eq!(a.len(), b.len(), "{}: tiny's state_dict has {} entries, torchvision's {}", case.name, a.len(), b.len());
    if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
        panic!("{}: tiny's state_dict has {x:?} where torchvision's has {y:?}", case.name);
    }
    theirs.iter().map(|(n, s)| (n.clone(), Tensor::from_vec(hashed_value(n, s), s).unwrap())).collect()
}

#[test]
fn the_zoos_models_load_torchvision_and_fastai_state_dicts_and_give_their_eval_logits() {
    let fx = zoo();
    let models: [(&str, Box<dyn Module>); 5] = [
        ("resnet34", Box::new(tiny_nn::resnet34(10).unwrap())),
        ("resnet50", Box::new(tiny_nn::resnet50(10).unwrap())),
        ("xresnet18", Box::new(tiny_nn::xresnet18(10).unwrap())),
        ("xresnet34", Box::new(tiny_nn::xresnet34(10).unwrap())),
        ("xresnet50", Box::new(tiny_nn::xresnet50(10).unwrap())),
    ];
    for (name, model) in models {
        let model = model.as_ref();
        let case = fx.case(name);
        load_state_dict(model, torchvision_state(model, case), true).unwrap();
        let input = case.params["input"].as_str().unwrap();
        let x = Tensor::from_vec(hashed_uniform(input, 2 * 3 * 64 * 64), &[2, 3, 64, 64]).unwrap();
        model.train(false);
        let logits = {
            let _no_grad = no_grad();
            model.forward(&x).unwrap()
        };
        // Within 2e-5 of the largest logit; PyTorch's own float32 logits are ~5e-7 from float64.
        let what = format!("{name} eval logits");
        assert_close(&what, logits.shape(), &logits.to_vec(), fx.get(&format!("{name}.eval_logits")), case.rtol);
    }
}

#[test]
fn dropout_keeps_pytorchs_semantics_zero_or_scaled_by_one_over_one_minus_p_and_the_identity_in_eval() {
    let fx = zoo();
    let p = fx.case("dropout").f32("p");
    let x = tensor(fx.get("dropout.x")).set_requires_grad(true);
    let (theirs, cot, their_grad) = (fx.get("dropout.y"), fx.get("dropout.cot"), fx.get("dropout.grad"));
    // PyTorch's scale, read off its kept elements.
    let their_scale = theirs.data.iter().zip(&x.to_vec()).find(|(y, _)| **y != 0.0).map(|(y, x)| y / x).unwrap();
    let drop = tiny_nn::Dropout::new(p).unwrap();
    assert!((drop.scale() - their_scale).abs() <= 1e-6 * their_scale, "scale {} vs {their_scale}", drop.scale());
    let y = drop.forward(&x).unwrap();
    y.mul(&tensor(cot)).unwrap().sum_all().unwrap().backward().unwrap();
    let (xs, ys, gs) = (x.to_vec(), y.to_vec(), x.grad().unwrap().to_vec());
    let mut dropped = 0;
    for i in 0..xs.len() {
        if ys[i] == 0.0 {
            dropped += 1;
            assert_eq!(gs[i], 0.0, "element {i}: dropped, yet a gradient");
        } else {
            // Kept: the value PyTorch gives a kept element, and the gradient it gives one.
            let (want_y, want_g) = (xs[i] * their_scale, cot.data[i] * their_scale);
            assert!((ys[i] - want_y).abs() <= 1e-6 * want_y.abs(), "element {i}: {} vs {want_y}", ys[i]);
            assert!((gs[i] - want_g).abs() <= 1e-6 * want_g.abs().max(1e-6), "gradient {i}: {} vs {want_g}", gs[i]);
        }
    }
    // Both drop about p of the 3072 elements (a binomial's standard deviation is 25 here).
    let theirs_dropped = theirs.data.iter().filter(|&&v| v == 0.0).count();
    for (who, n) in [("tiny", dropped), ("PyTorch", theirs_dropped)] {
        assert!((n as f32 - p * 3072.0).abs() < 100.0, "{who} dropped {n} of 3072 at p = {p}");
    }
    // PyTorch's stored gradient is the same rule on its own mask.
    for ((g, c), y) in their_grad.data.iter().zip(&cot.data).zip(&theirs.data) {
        assert_eq!(*g, if *y == 0.0 { 0.0 } else { c * their_scale }, "PyTorch's rule");
    }
    drop.train(false);
    assert_close("dropout in eval", x.shape(), &drop.forward(&x).unwrap().to_vec(), fx.get("dropout.eval"), 0.0);
}

#[test]
fn fastais_vision_model_renames_torchvision_weights_and_gives_its_eval_logits() {
    // Issue 30: vision_learner's model for resnet18, Sequential[create_body, create_head(512, 10)].
    let fx = zoo();
    let case = fx.case("vision_resnet18");
    let model = tiny_nn::vision_resnet(resnet18(10).unwrap(), 10, 0.5).unwrap();
    load_state_dict(&model, torchvision_state(&model, case), true).unwrap();
    let x = Tensor::from_vec(hashed_uniform(case.params["input"].as_str().unwrap(), 2 * 3 * 64 * 64), &[2, 3, 64, 64]);
    model.train(false);
    let logits = model.forward(&x.unwrap()).unwrap();
    assert_close(
        "vision_resnet18 eval logits",
        logits.shape(),
        &logits.to_vec(),
        fx.get("vision_resnet18.eval_logits"),
        2e-5,
    );
    // A torchvision state_dict renamed for the body covers it exactly, less the head.
    let body: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).filter(|n| n.starts_with("0.")).collect();
    let mut renamed: Vec<String> = resnet18(1000)
        .unwrap()
        .state_dict()
        .into_iter()
        .filter_map(|(n, _)| tiny_nn::torchvision_to_fastai(&n))
        .collect();
    let mut body_sorted = body.clone();
    body_sorted.sort();
    renamed.sort();
    assert_eq!(renamed, body_sorted);
    assert_eq!(
        tiny_nn::torchvision_to_fastai("layer2.0.downsample.0.weight").as_deref(),
        Some("0.5.0.downsample.0.weight")
    );
    assert_eq!(tiny_nn::torchvision_to_fastai("fc.weight"), None);
}

#[test]
fn create_head_trains_as_fastais_batchnorm1d_concat_pooling_and_bias_free_linears() {
    let fx = zoo();
    let case = fx.case("head");
    let head = tiny_nn::create_head(8, 5, 0.0).unwrap();
    let init: Vec<(String, Tensor)> = fx
        .names_with_prefix("head.init.")
        .into_iter()
        .map(|n| (n.trim_start_matches("head.init.").to_string(), tensor(fx.get(n))))
        .collect();
    load_state_dict(&head, init, true).unwrap();
    let x = tensor(fx.get("head.x")).set_requires_grad(true);
    let out = head.forward(&x).unwrap();
    assert_close("head output", out.shape(), &out.to_vec(), fx.get("head.out"), case.rtol);
    out.mul(&tensor(fx.get("head.cot"))).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = x.grad().unwrap();
    assert_close("head: gradient of x", gx.shape(), &gx.to_vec(), fx.get("head.grad_x"), case.rtol);
    for (name, p) in head.named_parameters() {
        let g = p.grad().unwrap();
        assert_close(
            &format!("head: gradient of {name}"),
            g.shape(),
            &g.to_vec(),
            fx.get(&format!("head.grad.{name}")),
            case.rtol,
        );
    }
    for (name, t) in head.state_dict().into_iter().filter(|(n, _)| n.contains("running")) {
        assert_close(
            &format!("head: {name}"),
            t.shape(),
            &t.to_vec(),
            fx.get(&format!("head.after.{name}")),
            case.rtol,
        );
    }
}
