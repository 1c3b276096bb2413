//! Mixed precision: the `autocast` guard and its policy, which ops compute in bf16, as PyTorch's `torch.autocast`.
//!
//! # The policy
//!
//! Under `autocast(Precision::Bf16)` the products compute in bf16 and everything else stays f32:
//!
//! | bf16 products, f32 sums | f32 |
//! |---|---|
//! | `conv2d`, `conv2d_relu` (forward, and both backward passes) | batchnorm (statistics, normalisation, running statistics) |
//! | `matmul` (and so `Linear`), forward and backward | pooling, elementwise ops, reductions, `mean` |
//! | | `log_softmax`, `logsumexp`, the losses |
//! | | the optimizer's update, its state, and the master weights |
//!
//! A product in bf16 rounds its two operands to the nearest bf16 (ties to even) as it packs them, multiplies
//! them exactly and sums the products in f32 (on the CPU, the AVX512-BF16 `vdpbf16ps` where the CPU has it,
//! else a portable kernel that gives the same bits; on a GPU, cuBLAS's bf16 tensor cores). Tensors themselves
//! stay f32: weights, their gradients and the optimizer's state, so checkpoints and exports do not change, and
//! activations too (PyTorch stores a bf16 conv's output in bf16; tiny keeps the f32 sum, which is closer to the
//! exact product). An op records the precision it ran in, and its backward runs in that precision whenever
//! `backward()` is called, as PyTorch's autocast graph does.

use std::cell::Cell;

use crate::{Result, TensorError};

/// The precision in which matrix products and convolutions compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// f32 operands and sums: the default.
    #[default]
    Fp32,
    /// bf16 operands (rounded from f32), f32 sums: PyTorch's `torch.autocast(dtype=torch.bfloat16)`.
    Bf16,
}

impl Precision {
    /// Every precision, by the name the command lines take.
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Bf16];

    /// The name the command lines take: `fp32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = TensorError;

    /// `fp32` (or `float32`) and `bf16` (or `bfloat16`); anything else is an error listing what is supported.
    ///
    /// ```
    /// use tiny_tensor::Precision;
    /// assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
    /// let err = "fp16".parse::<Precision>().unwrap_err().to_string();
    /// assert!(err.contains("supported: fp32, bf16"), "{err}");
    /// ```
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => {
                let why = match other {
                    "fp16" | "float16" | "half" => {
                        " (fp16 needs a loss scaler, PyTorch's GradScaler, which tiny does not have; bf16 has \
                         fp32's range and needs none)"
                    }
                    _ => "",
                };
                let supported = Precision::ALL.map(Precision::name).join(", ");
                Err(TensorError::InvalidArgument {
                    op: "precision",
                    msg: format!("unknown precision {other:?}{why}; supported: {supported}"),
                })
            }
        }
    }
}

thread_local! {
    static AUTOCAST: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// The precision in which products on this thread compute now (`Fp32` unless an [`autocast`] guard is alive).
pub fn autocast_precision() -> Precision {
    AUTOCAST.with(Cell::get)
}

/// A scope in which matrix products and convolutions compute in `precision`, like PyTorch's
/// `with torch.autocast(device_type, dtype=torch.bfloat16)` (see the module's policy). The previous
/// precision returns when the guard is dropped.
#[must_use = "autocast is on only while the guard is alive"]
#[derive(Debug)]
pub struct AutocastGuard {
    previous: Precision,
}

/// Makes matrix products and convolutions on this thread compute in `precision` until the guard is dropped.
///
/// ```
/// use tiny_tensor::{Precision, Tensor, autocast};
/// let a = Tensor::from_vec(vec![1.0 + 1.0 / 256.0, 3.0], &[1, 2]).unwrap();
/// let b = Tensor::from_vec(vec![1.0, 1.0], &[2, 1]).unwrap();
/// // In bf16, 1 + 2^-8 rounds to 1 (ties to even) before the product.
/// let y = { let _bf16 = autocast(Precision::Bf16); a.matmul(&b).unwrap() };
/// assert_eq!(y.to_vec(), vec![4.0]);
/// assert_eq!(a.matmul(&b).unwrap().to_vec(), vec![4.00390625]);
/// ```
pub fn autocast(precision: Precision) -> AutocastGuard {
    AutocastGuard { previous: AUTOCAST.with(|a| a.replace(precision)) }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.previous));
    }
}
