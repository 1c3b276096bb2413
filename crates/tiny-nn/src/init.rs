//! Weight initialisation (kaiming and xavier normal) from a seeded per-thread generator, like `torch.manual_seed`.

use std::cell::RefCell;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::Tensor;

use crate::Result;

thread_local! {
    static RNG: RefCell<StdRng> = RefCell::new(StdRng::seed_from_u64(0));
}

/// Reseeds the generator that layer constructors draw their initial weights from, so that the same seed
/// builds the same model (PyTorch's `torch.manual_seed`). Each thread has its own generator, seeded 0
/// until this is called, so models built on different threads never interleave their draws.
pub fn manual_seed(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(seed));
}

/// Normal samples with mean 0 and standard deviation `std` from this thread's generator.
pub fn normal(shape: &[usize], std: f32) -> Result<Tensor> {
    RNG.with(|r| Ok(Tensor::normal(shape, 0.0, std, &mut *r.borrow_mut())?))
}

/// Uniform samples in `[-bound, bound)` from this thread's generator.
pub fn uniform(shape: &[usize], bound: f32) -> Result<Tensor> {
    RNG.with(|r| Ok(Tensor::uniform(shape, -bound, bound, &mut *r.borrow_mut())?))
}

/// The fan-in and fan-out of a weight of shape `[out, in, k...]`: `in * k...` and `out * k...`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    let (out, inp) = (shape.first().copied().unwrap_or(1), shape.get(1).copied().unwrap_or(1));
    (inp * receptive, out * receptive)
}

/// Kaiming (He) normal init for layers followed by ReLU: std `sqrt(2 / fan_in)`, PyTorch's
/// `kaiming_normal_` default.
pub fn kaiming_normal(shape: &[usize]) -> Result<Tensor> {
    normal(shape, (2.0 / fans(shape).0 as f32).sqrt())
}

/// Kaiming normal with `mode="fan_out"`: std `sqrt(2 / fan_out)`, as torchvision's resnet uses.
pub fn kaiming_normal_fan_out(shape: &[usize]) -> Result<Tensor> {
    normal(shape, (2.0 / fans(shape).1 as f32).sqrt())
}

/// Xavier (Glorot) normal init: std `sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal(shape: &[usize]) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape);
    normal(shape, (2.0 / (fan_in + fan_out) as f32).sqrt())
}

/// A seed drawn from this thread's generator, for a layer that keeps a generator of its own (`Dropout`), so
/// that `manual_seed` before building a model also fixes its masks.
pub(crate) fn next_seed() -> u64 {
    RNG.with(|r| rand::Rng::random(&mut *r.borrow_mut()))
}
