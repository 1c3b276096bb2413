//! Every optimizer trains a tiny two-layer MLP, built from raw tensor ops, to near-perfect accuracy
//! on a small linearly separable two-class problem.

use tiny_nn::Parameter;
use tiny_optim::{Adam, AdamW, Optimizer, Sgd};
use tiny_tensor::Tensor;

/// A deterministic stream of numbers in `[-1, 1)`, so that the test needs no random crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let data = (0..shape.iter().product()).map(|_| self.next() * scale).collect();
        Tensor::from_vec(data, shape).unwrap()
    }
}

/// 200 points in the square with class `x0 + 0.5 * x1 - 0.2 > 0`, keeping a margin around the line.
fn dataset() -> (Tensor, Vec<u32>) {
    let mut rng = Lcg(7);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    while ys.len() < 200 {
        let (a, b) = (rng.next(), rng.next());
        let side = a + 0.5 * b - 0.2;
        if side.abs() > 0.1 {
            xs.extend([a, b]);
            ys.push(u32::from(side > 0.0));
        }
    }
    (Tensor::from_vec(xs, &[200, 2]).unwrap(), ys)
}

/// Trains `relu(x @ w1 + b1) @ w2 + b2` with cross-entropy for `steps` full-batch steps and returns
/// the final training accuracy.
fn train(make: impl FnOnce(Vec<Parameter>) -> Box<dyn Optimizer>, steps: usize) -> f32 {
    let (x, y) = dataset();
    let mut rng = Lcg(42);
    let w1 = Parameter::new(rng.tensor(&[2, 16], 0.7));
    let b1 = Parameter::new(Tensor::zeros(&[16]));
    let w2 = Parameter::new(rng.tensor(&[16, 2], 0.25));
    let b2 = Parameter::new(Tensor::zeros(&[2]));
    let mut opt = make(vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()]);
    let forward = || x.matmul(&w1).unwrap().add(&b1).unwrap().relu().unwrap().matmul(&w2).unwrap().add(&b2).unwrap();
    for _ in 0..steps {
        let logits = forward();
        let log_probs = logits.sub(&logits.logsumexp(&[-1], true).unwrap()).unwrap();
        let loss = log_probs.pick(&y).unwrap().mean_all().unwrap().neg().unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        opt.zero_grad();
    }
    let _guard = tiny_tensor::no_grad();
    let predicted = forward().argmax(-1).unwrap();
    predicted.iter().zip(&y).filter(|(p, t)| p == t).count() as f32 / y.len() as f32
}

fn assert_learns(name: &str, make: impl FnOnce(Vec<Parameter>) -> Box<dyn Optimizer>) {
    let accuracy = train(make, 300);
    eprintln!("{name}: {accuracy}");
    assert!(accuracy >= 0.95, "{name} reached only {accuracy} accuracy");
}

#[test]
fn plain_sgd_learns() {
    assert_learns("sgd", |ps| Box::new(Sgd::new(ps, 0.5)));
}

#[test]
fn sgd_with_momentum_and_weight_decay_learns() {
    assert_learns("sgd momentum", |ps| Box::new(Sgd::new(ps, 0.1).momentum(0.9).weight_decay(1e-4)));
}

#[test]
fn nesterov_sgd_learns() {
    assert_learns("nesterov", |ps| Box::new(Sgd::new(ps, 0.1).momentum(0.9).nesterov(true)));
}

#[test]
fn adam_learns() {
    assert_learns("adam", |ps| Box::new(Adam::new(ps, 0.02)));
}

#[test]
fn adamw_learns() {
    assert_learns("adamw", |ps| Box::new(AdamW::new(ps, 0.02)));
}

#[test]
fn the_untrained_model_is_far_from_the_target() {
    let accuracy = train(|ps| Box::new(Sgd::new(ps, 0.0)), 1);
    assert!(accuracy < 0.8, "the problem is too easy to test learning: {accuracy} before training");
}
