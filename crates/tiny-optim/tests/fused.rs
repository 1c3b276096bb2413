//! The optimizers as `foreach_update_` programs give the same bits as the updates they replaced: SGD as the
//! element formula of tiny-tensor's former fused `sgd_update_all_` kernel, Adam and AdamW as the step-by-step
//! tensor ops of tiny's first Adam.
//!
//! Each test runs three or four steps on the same pseudo-random data twice, once through the optimizer and
//! once through the old path, on a contiguous parameter, a vector, a transposed one (with a gradient in
//! another memory order) and a channels-last one, and one parameter that gets its first gradient a step
//! late, so that one group mixes first and later steps.

use tiny_nn::Parameter;
use tiny_optim::{Adam, AdamW, Optimizer, OptimizerState, Sgd};
use tiny_tensor::{Device, Tensor, no_grad};

/// Pseudo-random values in `[-1, 1)` without zeros, the same for the same seed.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if v == 0.0 { 0.5 } else { v }
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64, device: Device) -> Tensor {
    Tensor::from_vec(values(shape.iter().product(), seed), shape).unwrap().to_device(device).unwrap()
}

/// The parameters of every test, made afresh (the same values and layouts) for each of the two paths.
fn params(device: Device) -> Vec<Tensor> {
    vec![
        tensor(&[5, 7], 1, device),
        tensor(&[7], 2, device),
        tensor(&[6, 4], 3, device).t().unwrap(),
        tensor(&[2, 3, 3, 3], 4, device).to_channels_last().unwrap().detach(),
        tensor(&[3, 2], 5, device),
    ]
}

/// The gradient of parameter `k` at `step`, or `None` for the late one's first step. Transposed gradients
/// alternate with row-major ones, so that some items take the strided path.
fn grad(k: usize, p: &Tensor, step: usize) -> Option<Tensor> {
    if k == 4 && step == 0 {
        return None;
    }
    let (seed, shape, device) = (100 * step as u64 + k as u64, p.shape(), p.device());
    Some(if k == 2 && step % 2 == 1 {
        tensor(&[shape[1], shape[0]], seed, device).t().unwrap()
    } else {
        tensor(shape, seed, device)
    })
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

/// The saved buffer `name` of parameter `i` (of the one group), if it has one.
fn saved<'a>(state: &'a OptimizerState, i: usize, name: &str) -> Option<&'a Tensor> {
    state.tensors.iter().find(|(n, _)| n == &format!("0.{i}.{name}")).map(|(_, t)| t)
}

/// The hyper-parameters of one SGD step, as the former `SgdStep` of tiny-tensor held them.
#[derive(Clone, Copy)]
struct SgdStep {
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: bool,
}

/// One element of the removed fused SGD kernel (tiny-tensor's `sgd_element`, in the same f32 operations and
/// order): returns the new parameter and updates the momentum buffer `b` when there is one.
fn sgd_element(p: f32, g: f32, b: Option<&mut f32>, first: bool, s: &SgdStep) -> f32 {
    let mut d = g + s.weight_decay * p;
    if let Some(b) = b {
        *b = if first { d } else { s.momentum * *b + (1.0 - s.dampening) * d };
        d = if s.nesterov { d + s.momentum * *b } else { *b };
    }
    p - s.lr * d
}

/// The removed `sgd_update_`, element by element on the logical values (any layout gives the same bits).
fn old_sgd(p: &Tensor, g: &Tensor, buf: Option<&Tensor>, first: bool, s: &SgdStep) {
    let (mut pv, gv) = (p.to_vec(), g.to_vec());
    let mut bv = buf.map(|b| b.to_vec());
    for i in 0..pv.len() {
        pv[i] = sgd_element(pv[i], gv[i], bv.as_mut().map(|b| &mut b[i]), first, s);
    }
    p.assign(&Tensor::from_vec(pv, p.shape()).unwrap()).unwrap();
    if let (Some(b), Some(bv)) = (buf, bv) {
        b.assign(&Tensor::from_vec(bv, b.shape()).unwrap()).unwrap();
    }
}

#[test]
fn sgd_matches_the_fused_sgd_update_bit_for_bit() {
    let configs = [
        (0.0, 0.0, false, 0.0),
        (0.0, 0.0, false, 0.01),
        (0.9, 0.0, false, 0.0),
        (0.9, 0.3, false, 0.01),
        (0.9, 0.0, true, 0.01),
        (0.8, 0.1, true, 0.0),
    ];
    for (momentum, dampening, nesterov, weight_decay) in configs {
        let what = format!("momentum {momentum}, dampening {dampening}, nesterov {nesterov}, wd {weight_decay}");
        let new: Vec<Parameter> = params(Device::Cpu).into_iter().map(Parameter::new).collect();
        let old = params(Device::Cpu);
        let mut bufs: Vec<Option<Tensor>> = vec![None; old.len()];
        let mut opt = Sgd::new(new.clone(), 0.1)
            .momentum(momentum)
            .dampening(dampening)
            .nesterov(nesterov)
            .weight_decay(weight_decay);
        let step = SgdStep { lr: 0.1, momentum, dampening, weight_decay, nesterov };
        for s in 0..3 {
            let grads: Vec<Option<Tensor>> = old.iter().enumerate().map(|(k, p)| grad(k, p, s)).collect();
            for (p, g) in new.iter().zip(&grads) {
                p.set_grad(g.clone()).unwrap();
            }
            opt.step().unwrap();
            let mut firsts = Vec::new();
            for (k, g) in grads.iter().enumerate() {
                firsts.push(g.is_some() && bufs[k].is_none());
                if g.is_some() && momentum != 0.0 && bufs[k].is_none() {
                    bufs[k] = Some(old[k].zeros_like().unwrap());
                }
            }
            for k in 0..old.len() {
                if let Some(g) = &grads[k] {
                    old_sgd(&old[k], g, bufs[k].as_ref(), firsts[k], &step);
                }
            }
            let state = opt.state_dict().unwrap();
            for k in 0..old.len() {
                assert_eq!(bits(&new[k]), bits(&old[k]), "{what}, step {s}: parameter {k}");
                let buf = saved(&state, k, "momentum_buffer");
                assert_eq!(buf.map(bits), bufs[k].as_ref().map(bits), "{what}, step {s}: buffer {k}");
            }
        }
    }
}

/// One update of the Adam that tiny had before `foreach_update_`, a tensor op at a time.
fn old_adam(p: &Tensor, g: &Tensor, mv: &mut Option<(Tensor, Tensor)>, t: u64, h: (f32, f32, f32, f32, f32, bool)) {
    let (lr, b1, b2, eps, wd, decoupled) = h;
    let _guard = no_grad();
    if decoupled && wd != 0.0 {
        p.scale_(1.0 - lr * wd).unwrap();
    }
    let g = if !decoupled && wd != 0.0 { g.add(&p.mul_scalar(wd).unwrap()).unwrap() } else { g.clone() };
    let (m, v) = mv.get_or_insert_with(|| (p.zeros_like().unwrap(), p.zeros_like().unwrap()));
    m.scale_(b1).unwrap();
    m.add_scaled_(&g, 1.0 - b1).unwrap();
    v.scale_(b2).unwrap();
    v.add_scaled_(&g.mul(&g).unwrap(), 1.0 - b2).unwrap();
    let t = t as f64;
    let bias1 = 1.0 - f64::from(b1).powf(t);
    let bias2 = 1.0 - f64::from(b2).powf(t);
    let denom = v.sqrt().unwrap().affine((1.0 / bias2.sqrt()) as f32, eps).unwrap();
    p.add_scaled_(&m.div(&denom).unwrap(), -(f64::from(lr) / bias1) as f32).unwrap();
}

#[test]
fn adam_and_adamw_match_the_tensor_op_adam_bit_for_bit() {
    // (lr, beta1, beta2, eps, weight decay, decoupled).
    let configs = [
        (0.01, 0.9, 0.999, 1e-8, 0.0, false),
        (0.05, 0.8, 0.99, 1e-6, 0.1, false),
        (0.01, 0.9, 0.999, 1e-8, 0.01, true),
        (0.02, 0.5, 0.9, 1e-8, 0.0, true),
    ];
    for h in configs {
        let (lr, b1, b2, eps, wd, decoupled) = h;
        let new: Vec<Parameter> = params(Device::Cpu).into_iter().map(Parameter::new).collect();
        let old = params(Device::Cpu);
        let mut moments: Vec<Option<(Tensor, Tensor)>> = vec![None; old.len()];
        let mut steps = vec![0u64; old.len()];
        let mut opt: Box<dyn Optimizer> = if decoupled {
            Box::new(AdamW::new(new.clone(), lr).betas(b1, b2).eps(eps).weight_decay(wd))
        } else {
            Box::new(Adam::new(new.clone(), lr).betas(b1, b2).eps(eps).weight_decay(wd))
        };
        for s in 0..4 {
            let grads: Vec<Option<Tensor>> = old.iter().enumerate().map(|(k, p)| grad(k, p, s)).collect();
            for (p, g) in new.iter().zip(&grads) {
                p.set_grad(g.clone()).unwrap();
            }
            opt.step().unwrap();
            for (k, g) in grads.iter().enumerate() {
                if let Some(g) = g {
                    steps[k] += 1;
                    old_adam(&old[k], g, &mut moments[k], steps[k], h);
                }
            }
            let state = opt.state_dict().unwrap();
            for k in 0..old.len() {
                assert_eq!(bits(&new[k]), bits(&old[k]), "{h:?}, step {s}: parameter {k}");
                let (m, v) = (saved(&state, k, "exp_avg"), saved(&state, k, "exp_avg_sq"));
                let want = moments[k].as_ref();
                assert_eq!(m.map(bits), want.map(|(m, _)| bits(m)), "{h:?}, step {s}: exp_avg {k}");
                assert_eq!(v.map(bits), want.map(|(_, v)| bits(v)), "{h:?}, step {s}: exp_avg_sq {k}");
            }
        }
    }
}

/// Builds an optimizer over the given parameters.
#[cfg(feature = "cuda")]
type Maker = dyn Fn(Vec<Parameter>) -> Box<dyn Optimizer>;

/// Three steps of the optimizer that `make` builds on `device`, returning every parameter after each step.
#[cfg(feature = "cuda")]
fn three_steps(device: Device, make: &Maker) -> Vec<Vec<f32>> {
    let params: Vec<Parameter> = params(device).into_iter().map(Parameter::new).collect();
    let mut opt = make(params.clone());
    let mut seen = Vec::new();
    for s in 0..3 {
        for (k, p) in params.iter().enumerate() {
            p.set_grad(grad(k, p, s)).unwrap();
        }
        opt.step().unwrap();
        seen.extend(params.iter().map(|p| p.to_vec()));
    }
    seen
}

/// The fused updates on a GPU (one launch for the dense parameters, one each for the others) give the
/// CPU's values.
#[cfg(feature = "cuda")]
#[test]
fn the_optimizers_on_cuda_match_the_cpu() {
    let Some(device) = tiny_fixtures::gpu_or_skip("the optimizers on cuda", Device::new_cuda(0)) else { return };
    let makers: [(&str, &Maker); 3] = [
        ("sgd", &|p| Box::new(Sgd::new(p, 0.1).momentum(0.9).dampening(0.1).nesterov(true).weight_decay(0.01))),
        ("adam", &|p| Box::new(Adam::new(p, 0.01).weight_decay(0.1))),
        ("adamw", &|p| Box::new(AdamW::new(p, 0.01))),
    ];
    for (name, make) in makers {
        let (cpu, gpu) = (three_steps(Device::Cpu, make), three_steps(device, make));
        for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
            for (a, b) in c.iter().zip(g) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{name}, parameter {i}: cpu {a} vs cuda {b}");
            }
        }
    }
}
