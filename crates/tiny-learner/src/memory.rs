//! A batch's memory, estimated before the work: the activations one item's forward pass makes, scaled to the batch.

use tiny_nn::Module;
use tiny_tensor::Tensor;

use crate::{LearnerError, Result};

/// The side of the item the estimate runs the model on: large enough for every architecture's body, small enough to
/// cost little, scaled up by area to the real size.
const PROBE_SIZE: u32 = 64;

/// About how many times the leaf layers' outputs a training step holds at its peak: each output a backward reads
/// (the graph frees the rest), the ReLU outputs that are not layers of their own, the gradients flowing back, the
/// kernels' scratch and the buffer pool's idle buffers. Measured (`bench_step` at 64 px in fp32, peak resident memory
/// at the batch size less at batch size 1, against the sum of the leaf layers' outputs): simple_cnn at batch 128 4.1,
/// resnet18 at 64 2.4, resnet50 at 64 2.0. Since the graph keeps only what a backward reads (b39fe4b) those peak
/// differences fell from 62, 239 and 871 MiB to 61, 171 and 516 MiB (measured on a Zen 3), so the factors scaled by
/// the same ratios are about 4.0, 1.7 and 1.2. The estimate is for refusing what cannot fit (`--size 4096`), not for
/// fine margins, so it stays on the safe side.
pub const TRAINING_FACTOR: f64 = 3.0;

/// How many f32 copies of a batch's input are alive at once: the loader's batch, the next one it prepares, and the
/// normalised copy the model reads.
const INPUT_COPIES: f64 = 3.0;

/// The bytes a training step of `bs` images of `size` x `size` pixels needs with `model`: its activations
/// ([`TRAINING_FACTOR`] times the leaf layers' outputs, from one item's forward pass at `PROBE_SIZE` pixels, or
/// `size` when smaller, scaled by area) and the input batches (`INPUT_COPIES` of them, f32).
///
/// # Errors
/// The probe's forward pass failing (a model that refuses the probe's shape).
pub fn training_bytes(model: &dyn Module, size: u32, bs: usize) -> Result<f64> {
    estimate(model, size, bs, TRAINING_FACTOR, INPUT_COPIES)
}

/// The bytes predicting on `bs` images of `size` pixels needs: without gradients each output lives only until the
/// next layer has read it, so twice the largest activations at most, counted here as the sum of the leaf layers'
/// outputs (an overestimate for deep models), and the input batch twice.
///
/// # Errors
/// As [`training_bytes`].
pub fn inference_bytes(model: &dyn Module, size: u32, bs: usize) -> Result<f64> {
    estimate(model, size, bs, 1.0, 2.0)
}

/// `factor` times the leaf layers' outputs and `copies` f32 input batches, for `bs` images of `size` pixels.
fn estimate(model: &dyn Module, size: u32, bs: usize, factor: f64, copies: f64) -> Result<f64> {
    let probe = size.clamp(1, PROBE_SIZE) as usize;
    let x = Tensor::zeros(&[1, 3, probe, probe]);
    let per_item: usize = tiny_nn::layer_info(model, &x, &|_| true)?
        .iter()
        .filter_map(|l| l.output.as_ref())
        .map(|shape| shape.iter().product::<usize>())
        .sum();
    let area = (f64::from(size) / probe as f64).powi(2);
    let input = 3.0 * f64::from(size).powi(2) * 4.0 * bs as f64 * copies;
    Ok(per_item as f64 * 4.0 * area * bs as f64 * factor + input)
}

/// The memory this machine has available, from `/proc/meminfo`'s `MemAvailable` (Linux); `None` elsewhere.
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Checks that a training step of `bs` images of `size` pixels fits in the memory available, before any work: call
/// it with the model (a fresh one does) before the first batch is loaded, which already takes `bs * 3 * size^2`
/// floats.
///
/// # Errors
/// [`LearnerError::InvalidArgument`] naming the batch size, the image size, the estimate and what is available,
/// when the estimate is larger; the probe's error.
pub fn check_training_memory(model: &dyn Module, size: u32, bs: usize) -> Result<()> {
    let need = training_bytes(model, size, bs)?;
    fits(need, &|need, available| {
        format!(
            "a training step of {bs} images at {size} px needs about {need:.1} GiB for its batches and activations, \
             more than the {available:.1} GiB available: lower the batch size (--bs) or the image size (--size)"
        )
    })
}

/// Checks that predicting on `bs` images of `size` pixels fits in the memory available.
///
/// # Errors
/// [`LearnerError::InvalidArgument`] naming the image size, the estimate and what is available; the probe's error.
pub fn check_inference_memory(model: &dyn Module, size: u32, bs: usize) -> Result<()> {
    let need = inference_bytes(model, size, bs)?;
    fits(need, &|need, available| {
        format!(
            "predicting on {bs} images at {size} px needs about {need:.1} GiB, more than the {available:.1} GiB \
             available"
        )
    })
}

/// `Ok` when `need` bytes are available (or nothing says what is), else the error `why(need GiB, available GiB)`.
fn fits(need: f64, why: &dyn Fn(f64, f64) -> String) -> Result<()> {
    match available_bytes() {
        Some(available) if need > available => {
            let gib = |b: f64| b / f64::from(1u32 << 30);
            Err(LearnerError::InvalidArgument { what: "memory", msg: why(gib(need), gib(available)) })
        }
        _ => Ok(()),
    }
}
