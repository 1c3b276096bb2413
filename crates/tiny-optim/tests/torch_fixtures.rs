//! The optimizers against `torch.optim`: five steps from the same parameters and gradients, recorded by
//! `parity/make_fixtures.py` (SGD with momentum, dampening, Nesterov and weight decay; Adam; AdamW), each step's
//! parameters within 1e-6.

use tiny_fixtures::{Case, Fixtures, Stored, fixture_path};
use tiny_nn::Parameter;
use tiny_optim::{Adam, AdamW, Optimizer, Sgd};
use tiny_tensor::Tensor;

fn tensor(s: &Stored) -> Tensor {
    Tensor::from_vec(s.data.clone(), &s.shape).unwrap()
}

/// tiny's optimizer for a case's `torch.optim` class and keyword arguments.
fn optimizer(case: &Case, params: Vec<Parameter>) -> Box<dyn Optimizer> {
    let p = &case.params;
    let num = |k: &str| p[k].as_f64().map(|v| v as f32);
    let lr = num("lr").unwrap();
    let betas = p["betas"].as_array().map(|b| (b[0].as_f64().unwrap() as f32, b[1].as_f64().unwrap() as f32));
    match case.op.as_str() {
        "SGD" => {
            let mut o = Sgd::new(params, lr);
            o = o.momentum(num("momentum").unwrap_or(0.0)).dampening(num("dampening").unwrap_or(0.0));
            o = o.nesterov(p["nesterov"].as_bool().unwrap_or(false)).weight_decay(num("weight_decay").unwrap_or(0.0));
            Box::new(o)
        }
        "Adam" | "AdamW" => {
            // PyTorch's defaults: betas (0.9, 0.999), eps 1e-8; weight decay 0 for Adam and 0.01 for AdamW.
            let (b1, b2) = betas.unwrap_or((0.9, 0.999));
            let eps = num("eps").unwrap_or(1e-8);
            if case.op == "Adam" {
                Box::new(Adam::new(params, lr).betas(b1, b2).eps(eps).weight_decay(num("weight_decay").unwrap_or(0.0)))
            } else {
                Box::new(
                    AdamW::new(params, lr).betas(b1, b2).eps(eps).weight_decay(num("weight_decay").unwrap_or(0.01)),
                )
            }
        }
        other => panic!("{}: no tiny optimizer for torch.optim.{other}", case.name),
    }
}

#[test]
fn five_steps_match_torch_optim_within_1e_6() {
    let fx = Fixtures::load(fixture_path!("optim.safetensors"));
    assert_eq!(fx.cases.len(), 10);
    for case in &fx.cases {
        let n = fx.names_with_prefix(&format!("{}.p", case.name)).iter().filter(|k| k.ends_with(".init")).count();
        let params: Vec<Parameter> =
            (0..n).map(|i| Parameter::new(tensor(fx.get(&format!("{}.p{i}.init", case.name))))).collect();
        let mut opt = optimizer(case, params.clone());
        for step in 0..5 {
            for (i, p) in params.iter().enumerate() {
                p.set_grad(Some(tensor(fx.get(&format!("{}.p{i}.grad{step}", case.name))))).unwrap();
            }
            opt.step().unwrap();
            for (i, p) in params.iter().enumerate() {
                let want = &fx.get(&format!("{}.p{i}.step{step}", case.name)).data;
                for (j, (g, w)) in p.to_vec().iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6,
                        "{} step {}: parameter {i}[{j}] is {g} where torch.optim has {w}",
                        case.name,
                        step + 1
                    );
                }
            }
        }
    }
}
