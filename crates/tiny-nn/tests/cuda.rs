//! A few SGD steps of simple_cnn and resnet18 on the CPU and on a CUDA GPU give the same losses.
//!
//! Built only with `--features cuda`; without a GPU each test prints that it was skipped and passes.
#![cfg(feature = "cuda")]

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_nn::{Module, cross_entropy, manual_seed, resnet18, simple_cnn};
use tiny_tensor::{Device, Tensor, no_grad};

/// The losses of `steps` plain SGD steps on one fixed batch.
fn losses(model: &dyn Module, x: &Tensor, y: &[u32], device: Device, steps: usize) -> Vec<f32> {
    model.to_device(device).unwrap();
    model.train(true);
    let x = x.to_device(device).unwrap();
    let params = model.parameters();
    (0..steps)
        .map(|_| {
            let loss = cross_entropy(&model.forward(&x).unwrap(), y).unwrap();
            loss.backward().unwrap();
            let _guard = no_grad();
            for p in &params {
                if let Some(g) = p.grad() {
                    p.add_scaled_(&g, -0.05).unwrap();
                }
                p.zero_grad();
            }
            loss.item().unwrap()
        })
        .collect()
}

fn same_losses(name: &str, make: impl Fn() -> Box<dyn Module>, x: Tensor, y: Vec<u32>) {
    let Some(device) = tiny_fixtures::gpu_or_skip(name, Device::new_cuda(0)) else { return };
    manual_seed(7);
    let on_cpu = losses(make().as_ref(), &x, &y, Device::Cpu, 3);
    manual_seed(7);
    let on_gpu = losses(make().as_ref(), &x, &y, device, 3);
    for (step, (a, b)) in on_cpu.iter().zip(&on_gpu).enumerate() {
        assert!((a - b).abs() <= 1e-3 * (1.0 + a.abs()), "{name} step {step}: cpu loss {a} vs cuda {b}");
    }
}

#[test]
fn simple_cnn_steps_match() {
    let x = Tensor::randn(&[8, 3, 32, 32], &mut StdRng::seed_from_u64(1));
    same_losses("simple_cnn", || Box::new(simple_cnn(10).unwrap()), x, (0..8).map(|i| i % 10).collect());
}

/// At 64 px the last stage's batchnorm sees 2x2 pixels of each image. At 32 px it would see one, and with four
/// images a nudge of 1e-6 to the input changes the third loss by several percent on the CPU alone, so no
/// second device could match it.
#[test]
fn resnet18_steps_match() {
    let x = Tensor::randn(&[4, 3, 64, 64], &mut StdRng::seed_from_u64(2));
    same_losses("resnet18", || Box::new(resnet18(10).unwrap()), x, vec![1, 3, 5, 7]);
}
