//! Replays the PyTorch op fixtures (`tests/fixtures/*.safetensors`, written by `parity/make_fixtures.py`) on a
//! device: the same inputs and views, tiny's op, then its outputs and input gradients against PyTorch's.

use tiny_fixtures::{Case, Fixtures, Stored, assert_close};
use tiny_tensor::{Device, Precision, RunningStats, Tensor, WarpPad, autocast};

/// The op fixtures of this crate.
pub fn op_fixtures() -> Fixtures {
    Fixtures::load(tiny_fixtures::fixture_path!("ops.safetensors"))
}

/// The label-smoothing cases of the fused cross entropy (`make_fixtures.py label_smoothing`).
pub fn label_smoothing_fixtures() -> Fixtures {
    Fixtures::load(tiny_fixtures::fixture_path!("label_smoothing.safetensors"))
}

/// The binary cross entropy cases of the fused multi-label loss (`make_fixtures.py multi_label`).
pub fn bce_fixtures() -> Fixtures {
    Fixtures::load(tiny_fixtures::fixture_path!("bce.safetensors"))
}

/// The bf16 autocast cases of conv2d and matmul (`make_fixtures.py autocast`), each with its `autocast` parameter.
pub fn autocast_fixtures() -> Fixtures {
    Fixtures::load(tiny_fixtures::fixture_path!("autocast_bf16.safetensors"))
}

/// The ops with a ReLU fused into them, `batch_norm_relu` and `add_relu` (`make_fixtures.py fused`).
pub fn fused_fixtures() -> Fixtures {
    Fixtures::load(tiny_fixtures::fixture_path!("fused.safetensors"))
}

/// Every op fixture file of this crate.
pub fn all_fixtures() -> Vec<Fixtures> {
    vec![op_fixtures(), label_smoothing_fixtures(), bce_fixtures(), autocast_fixtures(), fused_fixtures()]
}

/// The precision a case ran in: its `autocast` parameter (`"bf16"`), else f32.
fn precision(case: &Case) -> Precision {
    case.params["autocast"]
        .as_str()
        .map_or(Precision::Fp32, |p| p.parse().unwrap_or_else(|e| panic!("{}: {e}", case.name)))
}

/// A stored tensor as a tiny tensor on `device`.
pub fn tensor(s: &Stored, device: Device) -> Tensor {
    Tensor::from_vec(s.data.clone(), &s.shape).unwrap().to_device(device).unwrap()
}

fn dims(v: &[i64]) -> Vec<isize> {
    v.iter().map(|&d| d as isize).collect()
}

fn sizes(v: &[i64]) -> Vec<usize> {
    v.iter().map(|&d| d as usize).collect()
}

/// Applies a case's view list (the same ones torch applied) to an input.
fn apply_views(case: &Case, mut x: Tensor, views: &[serde_json::Value]) -> Tensor {
    for v in views {
        let v = v.as_array().unwrap_or_else(|| panic!("{}: a view is not a list", case.name));
        let int = |i: usize| v[i].as_i64().unwrap_or_else(|| panic!("{}: view {v:?}", case.name));
        let list = |i: usize| sizes(&v[i].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect::<Vec<_>>());
        x = match v[0].as_str().unwrap_or("") {
            "permute" => x.permute(&list(1)),
            "transpose" => x.transpose(int(1) as isize, int(2) as isize),
            "t" => x.t(),
            "narrow" => x.narrow(int(1) as isize, int(2) as usize, int(3) as usize),
            "expand" => x.expand(&list(1)),
            "channels_last" => x.to_channels_last(),
            other => panic!("{}: unknown view {other}", case.name),
        }
        .unwrap_or_else(|e| panic!("{}: view {v:?}: {e}", case.name));
    }
    x
}

/// tiny's version of a case's op, on the viewed inputs; returns every output the fixture recorded.
fn run(f: &Fixtures, case: &Case, x: &[Tensor], device: Device) -> tiny_tensor::Result<Vec<Tensor>> {
    let targets = || case.ints("targets").iter().map(|&t| t as u32).collect::<Vec<u32>>();
    let one = |t: Tensor| Ok(vec![t]);
    match case.op.as_str() {
        "neg" => one(x[0].neg()?),
        "round_bf16" => one(x[0].round_bf16()?),
        "exp" => one(x[0].exp()?),
        "log" => one(x[0].log()?),
        "sqrt" => one(x[0].sqrt()?),
        "relu" => one(x[0].relu()?),
        "powf" => one(x[0].powf(case.f32("p"))?),
        "add" => one(x[0].add(&x[1])?),
        "sub" => one(x[0].sub(&x[1])?),
        "mul" => one(x[0].mul(&x[1])?),
        "div" => one(x[0].div(&x[1])?),
        "add_scalar" => one(x[0].add_scalar(case.f32("value"))?),
        "mul_scalar" => one(x[0].mul_scalar(case.f32("value"))?),
        "affine" => one(x[0].affine(case.f32("mul"), case.f32("add"))?),
        "sum" | "mean" | "max" | "logsumexp" => {
            let (d, k) = (dims(&case.ints("dims")), case.flag("keepdim"));
            one(match case.op.as_str() {
                "sum" => x[0].sum(&d, k)?,
                "mean" => x[0].mean(&d, k)?,
                "max" => x[0].max(&d, k)?,
                _ => x[0].logsumexp(&d, k)?,
            })
        }
        "sum_all" => one(x[0].sum_all()?),
        "mean_all" => one(x[0].mean_all()?),
        "reshape" => one(x[0].reshape(&sizes(&case.ints("shape")))?),
        "flatten" => one(x[0].flatten(case.usize("start") as isize, -1)?),
        "permute" => one(x[0].permute(&sizes(&case.ints("perm")))?),
        "transpose" => one(x[0].transpose(case.usize("d0") as isize, case.usize("d1") as isize)?),
        "narrow" => one(x[0].narrow(case.usize("dim") as isize, case.usize("start"), case.usize("len"))?),
        "expand" => one(x[0].expand(&sizes(&case.ints("shape")))?),
        "unsqueeze" => one(x[0].unsqueeze(case.usize("dim") as isize)?),
        "squeeze" => one(x[0].squeeze(case.usize("dim") as isize)?),
        "contiguous" => one(x[0].contiguous()?),
        "cat" => one(Tensor::cat(&x.iter().collect::<Vec<_>>(), case.usize("dim") as isize)?),
        "stack" => one(Tensor::stack(&x.iter().collect::<Vec<_>>(), case.usize("dim") as isize)?),
        "index_select" => {
            let idx: Vec<u32> = case.ints("idx").iter().map(|&i| i as u32).collect();
            one(x[0].index_select(case.usize("dim") as isize, &idx)?)
        }
        "pick" => one(x[0].pick(&targets())?),
        "matmul" => one(x[0].matmul(&x[1])?),
        "conv2d" => {
            let (stride, padding) = (case.usize("stride"), case.usize("padding"));
            let bias = x.get(2);
            one(if case.flag("relu") {
                x[0].conv2d_relu(&x[1], bias, stride, padding)?
            } else {
                x[0].conv2d(&x[1], bias, stride, padding)?
            })
        }
        "max_pool2d" => one(x[0].max_pool2d(case.usize("kernel"), case.usize("stride"), case.usize("padding"))?),
        "avg_pool2d" => one(x[0].avg_pool2d(case.usize("kernel"), case.usize("stride"), case.usize("padding"))?),
        "batch_norm" => {
            let rm = tensor(f.get(&format!("{}.running_mean0", case.name)), device);
            let rv = tensor(f.get(&format!("{}.running_var0", case.name)), device);
            let running =
                RunningStats { mean: &rm, var: &rv, momentum: case.f32("momentum"), num_batches_tracked: None };
            let (y, mean, var) = if case.flag("relu") {
                x[0].batch_norm_running_relu(&x[1], &x[2], case.f32("eps"), running)?
            } else {
                x[0].batch_norm_running(&x[1], &x[2], case.f32("eps"), running)?
            };
            Ok(vec![y, mean, var, rm, rv])
        }
        "log_softmax_nll" => one(x[0].log_softmax_nll(&targets())?),
        "log_softmax_nll_smooth" => one(x[0].log_softmax_nll_smooth(&targets(), case.f32("eps"))?),
        "bce_with_logits" => one(x[0].bce_with_logits(&x[1])?),
        "add_relu" => one(x[0].add_relu(&x[1])?),
        other => panic!("{}: no tiny op for {other}", case.name),
    }
}

/// Replays one op case on `device`: outputs, then the gradient of `sum(out0 * cot)` for each input that has one.
pub fn replay(f: &Fixtures, case: &Case, device: Device) {
    let what = |part: &str| format!("{} on {device}: {part}", case.name);
    let leaves: Vec<Tensor> = (0..case.grads.len())
        .map(|i| tensor(f.get(&format!("{}.in{i}", case.name)), device).detach().set_requires_grad(case.grads[i]))
        .collect();
    let viewed: Vec<Tensor> = leaves.iter().zip(&case.views).map(|(x, v)| apply_views(case, x.clone(), v)).collect();
    // Under the case's autocast, as PyTorch ran it; the backward keeps the precision its ops recorded.
    let outs = {
        let _precision = autocast(precision(case));
        run(f, case, &viewed, device).unwrap_or_else(|e| panic!("{}: {e}", what("forward")))
    };
    assert_eq!(outs.len(), case.outputs, "{}", what("number of outputs"));
    for (j, out) in outs.iter().enumerate() {
        let want = f.get(&format!("{}.out{j}", case.name));
        assert_close(&what(&format!("output {j}")), out.shape(), &out.to_vec(), want, case.rtol);
    }
    if !case.grads.iter().any(|&g| g) {
        return;
    }
    let cot = tensor(f.get(&format!("{}.cot", case.name)), device);
    let loss = outs[0].mul(&cot).and_then(|t| t.sum_all()).unwrap_or_else(|e| panic!("{}: {e}", what("loss")));
    loss.backward().unwrap_or_else(|e| panic!("{}: {e}", what("backward")));
    for (i, leaf) in leaves.iter().enumerate().filter(|(i, _)| case.grads[*i]) {
        let want = f.get(&format!("{}.grad{i}", case.name));
        let got = leaf.grad().unwrap_or_else(|| panic!("{}", what(&format!("input {i} got no gradient"))));
        assert_close(&what(&format!("gradient of input {i}")), got.shape(), &got.to_vec(), want, case.rtol);
    }
}

/// Replays every op case of every fixture file on `device`, then fails listing every case that did not match
/// (not only the first); returns how many ran.
pub fn replay_all(device: Device) -> usize {
    let files = all_fixtures();
    let mut failures = Vec::new();
    for f in &files {
        failures.extend(f.cases.iter().filter_map(|case| {
            std::panic::catch_unwind(|| replay(f, case, device)).err().map(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            })
        }));
    }
    let total: usize = files.iter().map(|f| f.cases.len()).sum();
    assert!(failures.is_empty(), "{} of {total} cases differ from PyTorch:\n{}", failures.len(), failures.join("\n"));
    total
}

/// Replays the `warp_perspective` cases (`make_fixtures.py warp`, against `F.grid_sample`) on `device`; returns
/// how many there were.
pub fn replay_warp(device: Device) -> usize {
    let f = Fixtures::load(tiny_fixtures::fixture_path!("warp.safetensors"));
    for case in &f.cases {
        assert_eq!(case.op, "warp_perspective", "{}", case.name);
        let input = f.get(&format!("{}.in0", case.name));
        let mut x = Tensor::from_vec(input.data.clone(), &input.shape).unwrap();
        if case.views.first().is_some_and(|v| !v.is_empty()) {
            x = x.to_channels_last().unwrap();
        }
        let x = x.to_device(device).unwrap();
        let stored = f.get(&format!("{}.mats", case.name));
        let mats: Vec<[f32; 9]> = stored.data.chunks(9).map(|m| m.try_into().unwrap()).collect();
        let pad = match case.params["pad"].as_str() {
            Some("reflection") => WarpPad::Reflection,
            Some("zeros") => WarpPad::Zeros,
            other => panic!("{}: pad {other:?}", case.name),
        };
        let y = x.warp_perspective(&mats, pad).unwrap();
        assert_eq!(y.device(), device);
        assert_close(
            &format!("{} on {device}", case.name),
            y.shape(),
            &y.to_vec(),
            f.get(&format!("{}.out0", case.name)),
            case.rtol,
        );
    }
    f.cases.len()
}
