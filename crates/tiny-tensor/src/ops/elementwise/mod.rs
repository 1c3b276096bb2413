//! Elementwise ops: the op tables (written once for both backends), the kernel interface, and the dispatching helpers.
//!
//! `unary.rs` and `binary.rs` hold the public ops with their backward passes; `cpu.rs` and `cuda.rs` the two
//! backends' kernels; `elementwise.cu` the CUDA source, whose `switch` statements are generated from the
//! tables below so that the CPU and CUDA op lists cannot drift apart.

mod binary;
pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod unary;

use crate::backend;
use crate::layout::{Layout, broadcast_shapes};
use crate::{Result, Tensor, TensorError};

/// Writes an op table once: a `#[repr(u32)]` enum whose discriminants are the kernel codes, the CUDA `case`
/// lines that `elementwise.cu` switches on, and the CPU function of each op, handed to a visitor so that
/// every CPU kernel loop is compiled once per op with its arithmetic inlined.
macro_rules! op_table {
    (
        $(#[$meta:meta])* $name:ident, $cases:literal, $visit:ident, ($($arg:ident),*) {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $cpu:expr, $cuda:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub(crate) enum $name {
            $( $(#[$vmeta])* $variant = $code, )*
        }

        /// A CPU kernel written once for every op of the table: `visit` receives the op's function.
        pub(crate) trait $visit {
            /// What the kernel returns.
            type Out;
            /// Runs the kernel with the op's function of its operands.
            fn visit(self, f: impl Fn($(op_table!(@f32 $arg)),*) -> f32 + Sync) -> Self::Out;
        }

        impl $name {
            /// The CUDA `case` lines of this table, as a `#define` that `elementwise.cu` expands inside its
            /// `switch (op)`: each case computes `r` from the kernel's operands.
            #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
            pub(crate) const CUDA_CASES: &'static str =
                concat!("#define ", $cases, " ", $( "case ", $code, ": r = ", $cuda, "; break; ", )* "\n");

            /// Runs the CPU kernel `kernel` with this op's function.
            pub(crate) fn cpu<K: $visit>(self, kernel: K) -> K::Out {
                match self {
                    $( $name::$variant => kernel.visit($cpu), )*
                }
            }
        }
    };
    (@f32 $arg:ident) => { f32 };
}

op_table! {
    /// Elementwise functions of one tensor `v`, with up to two parameters `p0`, `p1`.
    UnaryOp, "UNARY_CASES", UnaryKernel, (v, p0, p1) {
        /// `-v`.
        Neg = 0 => |v, _, _| -v, "-v";
        /// `e^v`.
        Exp = 1 => |v, _, _| v.exp(), "expf(v)";
        /// The natural logarithm.
        Log = 2 => |v, _, _| v.ln(), "logf(v)";
        /// `max(v, 0)`.
        Relu = 3 => |v, _, _| v.max(0.0), "v > 0.0f ? v : 0.0f";
        /// The square root.
        Sqrt = 4 => |v, _, _| v.sqrt(), "sqrtf(v)";
        /// `v^p0`.
        Pow = 5 => |v, p, _| v.powf(p), "powf(v, p0)";
        /// `v * p0 + p1`.
        Affine = 6 => |v, mul, add| v * mul + add, "v * p0 + p1";
        /// `v` (a strided copy).
        Copy = 7 => |v, _, _| v, "v";
        /// `v * v`.
        Square = 8 => |v, _, _| v * v, "v * v";
        /// `1 / v`.
        Recip = 9 => |v, _, _| 1.0 / v, "1.0f / v";
        /// `v` rounded to the nearest bf16 and widened back to f32.
        RoundBf16 = 10 => |v, _, _| crate::cpu::bf16::round_f32(v), "round_bf16(v)";
    }
}

op_table! {
    /// Elementwise functions of two broadcast tensors `x` and `y`.
    BinaryOp, "BINARY_CASES", BinaryKernel, (x, y) {
        /// `x + y`.
        Add = 0 => |x, y| x + y, "x + y";
        /// `x - y`.
        Sub = 1 => |x, y| x - y, "x - y";
        /// `x * y`.
        Mul = 2 => |x, y| x * y, "x * y";
        /// `x / y`.
        Div = 3 => |x, y| x / y, "x / y";
        /// 1.0 where equal, else 0.0.
        Eq = 4 => |x, y| f32::from(x == y), "x == y ? 1.0f : 0.0f";
        /// 1.0 where `x > y`, else 0.0.
        Gt = 5 => |x, y| f32::from(x > y), "x > y ? 1.0f : 0.0f";
        /// `x` where `y > 0`, else 0: the backward of ReLU, with `y` its output (positive exactly where its input is).
        ReluGrad = 6 => |x, y| if y > 0.0 { x } else { 0.0 }, "y > 0.0f ? x : 0.0f";
        /// `max(x, 0) - x * y + ln(1 + e^-|x|)`: the binary cross entropy of logit `x` against target `y`,
        /// PyTorch's `binary_cross_entropy_with_logits` form, finite for any finite logit.
        BceWithLogits = 7 => |x, y| x.max(0.0) - x * y + (-x.abs()).exp().ln_1p(),
            "fmaxf(x, 0.0f) - x * y + log1pf(expf(-fabsf(x)))";
        /// `sigmoid(x) - y`: the backward of [`BinaryOp::BceWithLogits`] with respect to its logit.
        SigmoidSub = 8 => |x, y| 1.0 / (1.0 + (-x).exp()) - y, "1.0f / (1.0f + expf(-x)) - y";
        /// `relu(x + y)`, with [`UnaryOp::Relu`]'s expression: a residual block's sum and activation in one pass.
        AddRelu = 9 => |x, y| (x + y).max(0.0), "x + y > 0.0f ? x + y : 0.0f";
    }
}

impl UnaryOp {
    /// The op and parameters for `v^p`: the exact forms for the exponents 1, 2, -1 and 0.5, else `powf`.
    pub(crate) fn pow(p: f32) -> (UnaryOp, [f32; 2]) {
        let op = match p {
            1.0 => UnaryOp::Copy,
            2.0 => UnaryOp::Square,
            -1.0 => UnaryOp::Recip,
            0.5 => UnaryOp::Sqrt,
            _ => UnaryOp::Pow,
        };
        (op, [p, 0.0])
    }
}

/// What an in-place update does to each element of its destination.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Update {
    /// `dst = src`.
    Copy,
    /// `dst += alpha * src`.
    AddScaled(f32),
    /// `dst *= alpha` (no source).
    Scale(f32),
}

/// The elementwise kernels each backend provides. Outputs follow one memory-order rule on every device: a
/// dense input keeps its strides, anything else comes out row-major.
pub(crate) trait ElementwiseKernels {
    /// `op(x, p0, p1)` of every element.
    fn unary(&self, x: &Tensor, op: UnaryOp, p: [f32; 2]) -> Result<Tensor>;
    /// `a op b` over layouts `al` and `bl` already broadcast to one shape; the output takes the memory order
    /// of whichever operand is dense.
    fn binary(&self, a: &Tensor, al: &Layout, b: &Tensor, bl: &Layout, op: BinaryOp) -> Result<Tensor>;
    /// Updates `dst`'s elements in place from `src` (laid out as `sl`, broadcast to `dst`'s shape).
    fn update(&self, dst: &Tensor, src: Option<(&Tensor, &Layout)>, how: Update) -> Result<()>;
    /// A row-major copy (a new storage).
    fn contiguous(&self, x: &Tensor) -> Result<Tensor>;
    /// The data in row-major order, copied to the host.
    fn to_vec(&self, x: &Tensor) -> Result<Vec<f32>>;
    /// A row-major copy on this device of the host tensor `x`.
    fn copy_from_host(&self, x: &Tensor) -> Result<Tensor>;
}

/// `op` of every element of `x`, on its device.
pub(crate) fn unary(x: &Tensor, op: UnaryOp, p: [f32; 2]) -> Result<Tensor> {
    backend::on(x)?.unary(x, op, p)
}

/// `a op b`, broadcasting, on their common device.
pub(crate) fn binary(name: &'static str, a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let be = backend::on_all(name, a, &[b])?;
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let (al, bl) = (a.layout().broadcast_to(&shape)?, b.layout().broadcast_to(&shape)?);
    be.binary(a, &al, b, &bl, op)
}

/// Updates `dst` in place from `src` broadcast to `dst`'s shape (or from nothing, for a scale).
pub(crate) fn update(op: &'static str, dst: &Tensor, src: Option<&Tensor>, how: Update) -> Result<()> {
    let Some(src) = src else { return backend::on(dst)?.update(dst, None, how) };
    let be = backend::on_all(op, dst, &[src])?;
    let sl = src.layout().broadcast_to(dst.shape()).map_err(|_| TensorError::ShapeMismatch {
        op,
        lhs: dst.shape().to_vec(),
        rhs: src.shape().to_vec(),
    })?;
    be.update(dst, Some((src, &sl)), how)
}

/// The error for a copy or an add that was given no source tensor (only a scale needs none).
fn missing_source() -> TensorError {
    TensorError::InvalidArgument { op: "update", msg: "a copy or an add into a tensor needs a source tensor".into() }
}

/// A row-major copy of `x` on its device.
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    backend::on(x)?.contiguous(x)
}

/// The data of `x` in row-major order, copied to the host.
pub(crate) fn to_vec(x: &Tensor) -> Result<Vec<f32>> {
    backend::on(x)?.to_vec(x)
}

/// A row-major copy of `x` on `device` (through the host between two GPUs: rare, and it needs no peer access).
pub(crate) fn to_device(x: &Tensor, device: crate::Device) -> Result<Tensor> {
    let target = backend::of(device)?;
    if x.device() == crate::Device::Cpu {
        return target.copy_from_host(x);
    }
    let host = Tensor::from_vec(to_vec(x)?, x.shape())?;
    if device == crate::Device::Cpu { Ok(host) } else { target.copy_from_host(&host) }
}
