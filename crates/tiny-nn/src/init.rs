//! Weight initialisation (kaiming and xavier normal) from one seeded generator, like `torch.manual_seed`.

use std::sync::{LazyLock, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_tensor::Tensor;

use crate::Result;

static RNG: LazyLock<Mutex<StdRng>> = LazyLock::new(|| Mutex::new(StdRng::seed_from_u64(0)));

/// Reseeds the generator that layer constructors draw their initial weights from, so that the same seed
/// builds the same model (PyTorch's `torch.manual_seed`). The default seed is 0.
pub fn manual_seed(seed: u64) {
    *RNG.lock().unwrap_or_else(|e| e.into_inner()) = StdRng::seed_from_u64(seed);
}

/// Normal samples with mean 0 and standard deviation `std` from the shared generator.
pub fn normal(shape: &[usize], std: f32) -> Result<Tensor> {
    let mut rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Tensor::normal(shape, 0.0, std, &mut *rng)?)
}

/// Uniform samples in `[-bound, bound)` from the shared generator.
pub fn uniform(shape: &[usize], bound: f32) -> Result<Tensor> {
    let mut rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Tensor::uniform(shape, -bound, bound, &mut *rng)?)
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
