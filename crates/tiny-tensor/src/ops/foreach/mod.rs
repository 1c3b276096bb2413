//! `foreach_update_`: a short elementwise program run in place over many tuples of tensors at once, fused.
//!
//! This is tiny's version of PyTorch's fused `_foreach` chains: an optimizer step (or any other in-place
//! elementwise update of many tensors) written as a handful of register instructions, run in one pass over
//! memory on the CPU and in one kernel launch on a GPU. Nothing here knows what an optimizer is; tiny-optim
//! writes SGD and Adam as programs for it.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use crate::backend;
use crate::{Device, Result, Storage, Tensor, TensorError};

/// The fused update kernel each backend provides; `foreach_update_` checked the program and the items (one
/// device, one shape per item, written tensors writable and sharing memory with nothing else).
pub(crate) trait ForeachKernels {
    /// Runs `program` over every element of every item.
    fn foreach_update(&self, items: &[&[&Tensor]], program: &UpdateProgram) -> Result<()>;
}

/// The most tensors one item (and so one program) may hold.
pub const MAX_TENSORS: usize = 8;

/// The number of registers a program may use: the item's tensors first, then temporaries.
pub const MAX_REGISTERS: usize = 16;

/// The most instructions one program may hold.
pub const MAX_OPS: usize = 32;

/// The op name in the errors of [`foreach_update_`].
const OP: &str = "foreach_update_";

/// One instruction of an [`UpdateProgram`]: it reads registers (`x`, `y`) and scalars (`a`, `b`, `s`) and
/// writes register `dst`, which may be one of the registers it reads. Each is one IEEE operation per float
/// operator, rounded to f32 in the order written (no fused multiply-add), on every device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateOp {
    /// `dst = a * x + b * y`: both products rounded, then their sum.
    Axpby { dst: usize, a: f32, x: usize, b: f32, y: usize },
    /// `dst = a * x`.
    Scale { dst: usize, a: f32, x: usize },
    /// `dst = x + s`.
    AddScalar { dst: usize, x: usize, s: f32 },
    /// `dst = x * y`.
    Mul { dst: usize, x: usize, y: usize },
    /// `dst = x / y`.
    Div { dst: usize, x: usize, y: usize },
    /// `dst = sqrt(x)`.
    Sqrt { dst: usize, x: usize },
    /// `dst = x`.
    Copy { dst: usize, x: usize },
}

impl UpdateOp {
    /// The register this instruction writes.
    pub fn dst(&self) -> usize {
        match *self {
            UpdateOp::Axpby { dst, .. }
            | UpdateOp::Scale { dst, .. }
            | UpdateOp::AddScalar { dst, .. }
            | UpdateOp::Mul { dst, .. }
            | UpdateOp::Div { dst, .. }
            | UpdateOp::Sqrt { dst, .. }
            | UpdateOp::Copy { dst, .. } => dst,
        }
    }

    /// The registers this instruction reads: `x`, then `y` for the instructions of two registers.
    pub fn sources(&self) -> (usize, Option<usize>) {
        match *self {
            UpdateOp::Axpby { x, y, .. } | UpdateOp::Mul { x, y, .. } | UpdateOp::Div { x, y, .. } => (x, Some(y)),
            UpdateOp::Scale { x, .. }
            | UpdateOp::AddScalar { x, .. }
            | UpdateOp::Sqrt { x, .. }
            | UpdateOp::Copy { x, .. } => (x, None),
        }
    }
}

/// A short elementwise program over registers, for [`foreach_update_`].
///
/// For every element index `i` of an item `(t_0, .., t_{k-1})` (with `k = tensors`): `r_j = t_j[i]` for
/// `j < k`; then the instructions `ops` run in order on the registers `r_0 .. r_15`; then `t_w[i] = r_w`
/// for each slot `w` in `writes`. Registers from `k` on are temporaries; a program reads only registers
/// that hold a tensor's element or that an earlier instruction wrote.
///
/// ```
/// use tiny_tensor::{UpdateOp, UpdateProgram};
/// // x = x + 0.5 * y, on items (x, y).
/// let program = UpdateProgram {
///     tensors: 2,
///     ops: vec![UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: 0.5, y: 1 }],
///     writes: vec![0],
/// };
/// assert!(program.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateProgram {
    /// How many tensors each item holds; their elements start in registers `0..tensors`.
    pub tensors: usize,
    /// The instructions, run in order on every element.
    pub ops: Vec<UpdateOp>,
    /// The tensor slots stored back at the end, each from the register of its own number.
    pub writes: Vec<usize>,
}

impl UpdateProgram {
    /// Checks the program on its own: at most [`MAX_TENSORS`] tensors and [`MAX_OPS`] instructions, every
    /// register below [`MAX_REGISTERS`] and written before it is read, every written slot a tensor slot,
    /// listed once. [`foreach_update_`] calls it first.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(TensorError::InvalidArgument { op: OP, msg });
        if self.tensors == 0 || self.tensors > MAX_TENSORS {
            return bad(format!("a program takes 1 to {MAX_TENSORS} tensors per item, not {}", self.tensors));
        }
        if self.ops.len() > MAX_OPS {
            return bad(format!("a program holds at most {MAX_OPS} instructions, this one {}", self.ops.len()));
        }
        let mut defined = [false; MAX_REGISTERS];
        defined[..self.tensors].fill(true);
        for (k, op) in self.ops.iter().enumerate() {
            let (x, y) = op.sources();
            for r in std::iter::once(x).chain(y).chain([op.dst()]) {
                if r >= MAX_REGISTERS {
                    return bad(format!("instruction {k} ({op:?}) names register {r}; there are {MAX_REGISTERS}"));
                }
            }
            if let Some(r) = std::iter::once(x).chain(y).find(|&r| !defined[r]) {
                return bad(format!("instruction {k} ({op:?}) reads register {r} before anything writes it"));
            }
            defined[op.dst()] = true;
        }
        for (k, &w) in self.writes.iter().enumerate() {
            if w >= self.tensors {
                return bad(format!("written slot {w} is not one of the {} tensor slots", self.tensors));
            }
            if self.writes[..k].contains(&w) {
                return bad(format!("slot {w} is listed twice among the written slots"));
            }
        }
        Ok(())
    }

    /// Whether tensor slot `k` is stored back.
    pub fn writes_slot(&self, k: usize) -> bool {
        self.writes.contains(&k)
    }
}

/// In place, runs `program` on every element of every item of `items`, each item a tuple of
/// `program.tensors` tensors (say a parameter, its gradient and two state buffers): each element of each
/// tensor is read once, and each element of a written tensor written once, recording no graph.
///
/// The math, per element index `i` of item `(t_0, .., t_{k-1})`: `r_j = t_j[i]`, then `program.ops` on the
/// registers `r`, then `t_w[i] = r_w` for every `w` in `program.writes` (see [`UpdateProgram`]).
///
/// The tensors of an item have one shape, any strides (read-only ones may broadcast with stride 0), and
/// every tensor of the call lives on one device. On the CPU the program is interpreted on chunks of a few
/// hundred elements held in small buffers, one item after the other, in one pass over memory. On a GPU one
/// kernel launch updates every item whose tensors are all dense in one memory order (row-major, or a
/// channels-last conv weight); each other item takes a launch of its own.
///
/// # Errors
/// Everything is checked before any tensor changes, so that a failed call changes nothing: the program
/// ([`UpdateProgram::validate`]); an item with another number of tensors than the program's
/// ([`TensorError::InvalidArgument`]), or tensors of different shapes ([`TensorError::ShapeMismatch`]);
/// tensors on more than one device ([`TensorError::DeviceMismatch`]); a written tensor with elements that
/// share one memory location (an `expand`ed view), or that shares its storage with any other tensor of the
/// call, itself in another slot included ([`TensorError::InvalidArgument`]).
///
/// ```
/// use tiny_tensor::{Tensor, UpdateOp, UpdateProgram, foreach_update_};
/// let (p, g) = (Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap(), Tensor::from_vec(vec![0.5, 1.0], &[2]).unwrap());
/// // p = p - 0.1 * g, the chapter's SGD step.
/// let sgd = UpdateProgram {
///     tensors: 2,
///     ops: vec![UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: -0.1, y: 1 }],
///     writes: vec![0],
/// };
/// foreach_update_(&[&[&p, &g]], &sgd).unwrap();
/// assert_eq!(p.to_vec(), vec![0.95, -2.1]);
/// ```
pub fn foreach_update_(items: &[&[&Tensor]], program: &UpdateProgram) -> Result<()> {
    let Some(device) = check(items, program)? else { return Ok(()) };
    backend::of(device)?.foreach_update(items, program)
}

/// Checks every item against the program and the others, and returns the call's device (`None` without
/// items).
fn check(items: &[&[&Tensor]], program: &UpdateProgram) -> Result<Option<Device>> {
    program.validate()?;
    let Some(first) = items.first().and_then(|item| item.first()) else {
        return match items.first() {
            Some(item) => Err(arity(0, item, program)),
            None => Ok(None),
        };
    };
    let device = first.device();
    for (i, item) in items.iter().enumerate() {
        if item.len() != program.tensors {
            return Err(arity(i, item, program));
        }
        let t0 = item[0];
        for (k, t) in item.iter().enumerate() {
            if t.device() != device {
                return Err(TensorError::DeviceMismatch { op: OP, lhs: device, rhs: t.device() });
            }
            if t.shape() != t0.shape() {
                return Err(TensorError::ShapeMismatch { op: OP, lhs: t0.shape().to_vec(), rhs: t.shape().to_vec() });
            }
            if program.writes_slot(k) {
                t.check_writable(OP)?;
            }
        }
    }
    check_memory(items, program)?;
    Ok(Some(device))
}

fn arity(i: usize, item: &[&Tensor], program: &UpdateProgram) -> TensorError {
    let msg = format!("item {i} holds {} tensors; the program takes {}", item.len(), program.tensors);
    TensorError::InvalidArgument { op: OP, msg }
}

/// An error when a written tensor shares its storage with another tensor of the call: the result would
/// then depend on the order in which elements are visited, which differs between the CPU and a GPU.
fn check_memory(items: &[&[&Tensor]], program: &UpdateProgram) -> Result<()> {
    // Each tensor by the address of its storage, so that sorting puts the tensors of one storage together.
    let mut all: Vec<(*const Storage, usize, usize)> = Vec::with_capacity(items.len() * program.tensors);
    for (i, item) in items.iter().enumerate() {
        for (k, t) in item.iter().enumerate() {
            all.push((&*t.storage() as *const Storage, i, k));
        }
    }
    all.sort_unstable();
    for run in all.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        if let Some(&(_, i, k)) = run.iter().find(|&&(_, _, k)| program.writes_slot(k)) {
            let &(_, j, l) = run.iter().find(|&&(_, j, l)| (j, l) != (i, k)).unwrap_or(&run[0]);
            let msg = format!("the written tensor {k} of item {i} shares its memory with tensor {l} of item {j}");
            return Err(TensorError::InvalidArgument { op: OP, msg });
        }
    }
    Ok(())
}
