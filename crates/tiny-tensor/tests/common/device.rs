//! Device parity for test bodies: `test_device!` runs one body on the CPU and, where a GPU opens, on CUDA.

use tiny_tensor::{Device, Tensor};

/// Whether a CUDA GPU can be used in this process.
pub fn gpu_opens() -> bool {
    Device::new_cuda(0).is_ok()
}

/// The GPU for the CUDA variant of `test`, or `None` after printing that `test` is skipped; with
/// `TINY_REQUIRE_CUDA=1` (a GPU runner) a GPU that does not open fails `test` instead, naming the reason
/// (`tiny_fixtures::gpu_or_skip`, the rule every crate's device tests share).
pub fn gpu_for(test: &str) -> Option<Device> {
    tiny_fixtures::gpu_or_skip(test, Device::new_cuda(0))
}

/// `test_device!(body, body_cpu, body_cuda)`: a `#[test]` `body_cpu` that runs `body(Device::Cpu)` and, with the
/// `cuda` feature, a `#[test]` `body_cuda` that runs `body` on the GPU, or prints that it is skipped where none
/// opens (candle's macro of the same name). Attributes written before `body_cuda` (an `#[ignore = "why"]` for a
/// known backend bug) apply to the CUDA variant only.
macro_rules! test_device {
    ($body:ident, $cpu:ident, $(#[$cuda_attr:meta])* $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(tiny_tensor::Device::Cpu);
        }

        #[cfg(feature = "cuda")]
        #[test]
        $(#[$cuda_attr])*
        fn $cuda() {
            if let Some(device) = $crate::common::device::gpu_for(stringify!($cuda)) {
                $body(device);
            }
        }
    };
}

pub(crate) use test_device;

/// A copy of `t` on `device` that is a leaf requiring grad, so that its gradient lands on `device`.
pub fn leaf(t: &Tensor, device: Device) -> Tensor {
    t.detach().to_device(device).unwrap().set_requires_grad(true)
}

/// A copy of `t` on `device` that records nothing.
pub fn on(t: &Tensor, device: Device) -> Tensor {
    t.detach().to_device(device).unwrap()
}

/// The gradient of a leaf, read back to the host, after checking that it lives where the leaf does.
pub fn grad(x: &Tensor) -> Vec<f32> {
    let g = x.grad().expect("the leaf got no gradient");
    assert_eq!(g.device(), x.device(), "the gradient left the leaf's device");
    g.to_vec()
}

/// The relative error allowed on a GPU where the CPU result is exact. CUDA's `expf`, `logf`, `powf` and `sqrtf`
/// are within 1 to 4 ulps rather than correctly rounded, NVRTC contracts `a * b + c` into one FMA and reductions
/// add in another order; 1e-6 is 8 ulps, so a GPU result passes only when it is the same number but for its
/// last bits, and any wrong element, missed broadcast or misplaced value still fails.
pub const GPU_RTOL: f32 = 1e-6;

/// Asserts `got == want`: exactly on the CPU, within [`GPU_RTOL`] on a GPU (equal infinities and NaNs pass).
pub fn assert_values(device: Device, got: &[f32], want: &[f32]) {
    if device == Device::Cpu {
        assert_eq!(got, want);
        return;
    }
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        let close = x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= GPU_RTOL * (1.0 + y.abs());
        assert!(close, "element {i} on {device}: {x} vs {y} (got {got:?}, want {want:?})");
    }
}

/// The tolerance of `assert_all_close` on `device`: `cpu` on the CPU, at least `gpu` on a GPU.
pub fn tol(device: Device, cpu: f32, gpu: f32) -> f32 {
    if device == Device::Cpu { cpu } else { cpu.max(gpu) }
}
