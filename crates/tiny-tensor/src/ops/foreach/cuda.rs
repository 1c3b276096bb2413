//! `foreach_update_` on a GPU (`foreach.cu`): one launch for every dense item, one per other item.

use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::{ForeachKernels, MAX_OPS, MAX_TENSORS, UpdateOp, UpdateProgram};
use crate::cuda::strided::{KShape, KStrides, plan};
use crate::cuda::{Gpu, err, grid, slice};
use crate::{Result, Tensor};

/// The instruction codes of `struct ForeachOp`, handed to `foreach.cu` as `FE_OP_AXPBY`, ... by [`cuda_defines`].
#[derive(Debug, Clone, Copy)]
#[repr(i32)]
enum Code {
    Axpby,
    Scale,
    AddScalar,
    Mul,
    Div,
    Sqrt,
    Copy,
}

/// The `#define`s that `foreach.cu` is compiled with: the limits of [`UpdateProgram`] and the instruction codes,
/// so that the kernel's numbers come from this file alone.
pub(crate) fn cuda_defines() -> String {
    let mut defs = format!(
        "#define FE_MAX_TENSORS {MAX_TENSORS}\n#define FE_MAX_OPS {MAX_OPS}\n#define FE_MAX_REGISTERS {}\n\
         #define FE_BLOCK {BLOCK}\n",
        super::MAX_REGISTERS
    );
    let codes = [
        ("AXPBY", Code::Axpby),
        ("SCALE", Code::Scale),
        ("ADD_SCALAR", Code::AddScalar),
        ("MUL", Code::Mul),
        ("DIV", Code::Div),
        ("SQRT", Code::Sqrt),
        ("COPY", Code::Copy),
    ];
    for (name, code) in codes {
        defs.push_str(&format!("#define FE_OP_{name} {}\n", code as i32));
    }
    defs
}

/// `struct ForeachOp` of `foreach.cu`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct KOp {
    code: i32,
    dst: i32,
    x: i32,
    y: i32,
    a: f32,
    b: f32,
}

/// `struct ForeachProgram` of `foreach.cu`, passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KProgram {
    n_ops: i32,
    tensors: i32,
    writes: i32,
    unused: i32,
    ops: [KOp; MAX_OPS],
}

/// `struct ForeachOperands` of `foreach.cu`, passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KOperands {
    strides: [KStrides; MAX_TENSORS],
    ptrs: [u64; MAX_TENSORS],
}

// SAFETY: plain `#[repr(C)]` structs of integers and floats laid out as their C counterparts.
unsafe impl DeviceRepr for KProgram {}
unsafe impl DeviceRepr for KOperands {}

/// The program as the kernels take it (the caller validated it: registers in range, at most `MAX_OPS`).
fn kprogram(program: &UpdateProgram) -> KProgram {
    let mut ops = [KOp::default(); MAX_OPS];
    for (k, op) in program.ops.iter().enumerate() {
        let r = |i: usize| i as i32;
        ops[k] = match *op {
            UpdateOp::Axpby { dst, a, x, b, y } => {
                KOp { code: Code::Axpby as i32, dst: r(dst), x: r(x), y: r(y), a, b }
            }
            UpdateOp::Scale { dst, a, x } => KOp { code: Code::Scale as i32, dst: r(dst), x: r(x), y: 0, a, b: 0.0 },
            UpdateOp::AddScalar { dst, x, s } => {
                KOp { code: Code::AddScalar as i32, dst: r(dst), x: r(x), y: 0, a: s, b: 0.0 }
            }
            UpdateOp::Mul { dst, x, y } => {
                KOp { code: Code::Mul as i32, dst: r(dst), x: r(x), y: r(y), a: 0.0, b: 0.0 }
            }
            UpdateOp::Div { dst, x, y } => {
                KOp { code: Code::Div as i32, dst: r(dst), x: r(x), y: r(y), a: 0.0, b: 0.0 }
            }
            UpdateOp::Sqrt { dst, x } => KOp { code: Code::Sqrt as i32, dst: r(dst), x: r(x), y: 0, a: 0.0, b: 0.0 },
            UpdateOp::Copy { dst, x } => KOp { code: Code::Copy as i32, dst: r(dst), x: r(x), y: 0, a: 0.0, b: 0.0 },
        };
    }
    let writes = program.writes.iter().fold(0, |bits, &w| bits | 1 << w);
    KProgram { n_ops: program.ops.len() as i32, tensors: program.tensors as i32, writes, unused: 0, ops }
}

/// Elements per block in the launch over dense items.
const CHUNK: usize = 4096;

/// Threads per block of both kernels, which keep their registers in shared memory sized by it (`FE_BLOCK`).
const BLOCK: usize = 256;

/// Runs `program` on `items`, all on one GPU (checked by `ops/foreach.rs`, with everything else the program
/// and the items must satisfy). Every item whose tensors are dense in one memory order is updated by one
/// launch of `foreach_dense_f32`, each other one by a launch of `foreach_strided_f32`. What can fail before
/// a kernel runs (a strided item with too many dimensions, the upload of the table) is done first, so that it
/// changes nothing.
impl ForeachKernels for Gpu {
    fn foreach_update(&self, items: &[&[&Tensor]], program: &UpdateProgram) -> Result<()> {
        let gpu = self;
        let prog = kprogram(program);
        let flat = |item: &&&[&Tensor]| {
            let l0 = item[0].layout();
            l0.is_dense() && item.iter().all(|t| t.layout().is_dense() && t.layout().same_memory_order(l0))
        };
        let (dense, strided): (Vec<&&[&Tensor]>, Vec<_>) =
            items.iter().filter(|item| item[0].numel() > 0).partition(flat);
        let plans = strided.iter().map(|item| operands(gpu, item)).collect::<Result<Vec<_>>>()?;
        if !dense.is_empty() {
            let mut words: Vec<u64> = Vec::with_capacity(dense.len() * (program.tensors + 1));
            let mut chunks: Vec<u64> = Vec::new();
            for (k, item) in dense.iter().enumerate() {
                let n = item[0].numel();
                words.extend(item.iter().map(|t| address(gpu, t)));
                words.push(n as u64);
                for start in (0..n).step_by(CHUNK) {
                    chunks.extend([k as u64, start as u64]);
                }
            }
            let n_chunks = chunks.len() / 2;
            words.extend(chunks);
            // Uploaded as 32-bit halves, low half first: the kernel reads them back as 64-bit words (little-endian).
            let halves: Vec<u32> = words.iter().flat_map(|&w| [w as u32, (w >> 32) as u32]).collect();
            let table = gpu.upload_u32(&halves)?;
            let cfg = LaunchConfig {
                grid_dim: (n_chunks.min(65_535) as u32, 1, 1),
                block_dim: (BLOCK as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let (n_items, n_chunks, chunk) = (dense.len() as i64, n_chunks as i64, CHUNK as i64);
            let mut b = gpu.stream.launch_builder(gpu.func("foreach_dense_f32"));
            b.arg(&table).arg(&n_items).arg(&n_chunks).arg(&chunk).arg(&prog);
            unsafe { b.launch(cfg) }.map_err(err("foreach_update_"))?;
        }
        for (item, (shape, ops)) in strided.iter().zip(&plans) {
            let n = item[0].numel() as i64;
            let mut b = gpu.stream.launch_builder(gpu.func("foreach_strided_f32"));
            b.arg(&n).arg(shape).arg(ops).arg(&prog);
            let cfg = LaunchConfig { block_dim: (BLOCK as u32, 1, 1), ..grid(n as usize) };
            unsafe { b.launch(cfg) }.map_err(err("foreach_update_"))?;
        }
        Ok(())
    }
}

/// The device address of tensor `t`'s first element.
fn address(gpu: &Gpu, t: &Tensor) -> u64 {
    let s = t.storage();
    slice(&s).device_ptr(&gpu.stream).0 + (t.layout().offset * size_of::<f32>()) as u64
}

/// The shape and operands of a strided item: each storage's base address and its strides, with dimensions
/// merged where every tensor of the item allows it. The slots past the item's tensors repeat its last one.
fn operands(gpu: &Gpu, item: &[&Tensor]) -> Result<(KShape, KOperands)> {
    let n = item.len();
    let t = |k: usize| item[k.min(n - 1)];
    let strides: [&[usize]; MAX_TENSORS] = std::array::from_fn(|k| &t(k).layout().strides[..]);
    let offsets: [usize; MAX_TENSORS] = std::array::from_fn(|k| t(k).layout().offset);
    let (shape, strides) = plan(&item[0].layout().shape, strides, offsets, true)?;
    let ptrs = std::array::from_fn(|k| {
        let s = t(k).storage();
        slice(&s).device_ptr(&gpu.stream).0
    });
    Ok((shape, KOperands { strides, ptrs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_REGISTERS;

    #[test]
    fn the_kernel_source_gets_the_limits_and_layouts_of_the_rust_side() {
        let defs = cuda_defines();
        for (name, value) in [("TENSORS", MAX_TENSORS), ("OPS", MAX_OPS), ("REGISTERS", MAX_REGISTERS)] {
            let line = format!("#define FE_MAX_{name} {value}\n");
            assert!(defs.contains(&line), "cuda_defines lacks {line:?}");
        }
        assert!(defs.contains("#define FE_OP_COPY 6\n"), "{defs}");
        assert!(defs.contains(&format!("#define FE_BLOCK {BLOCK}\n")), "{defs}");
        // Four ints, then the instructions of four ints and two floats each; 64-bit strides and addresses.
        assert_eq!(size_of::<KProgram>(), 16 + 24 * MAX_OPS);
        assert_eq!(size_of::<KOperands>(), (9 * 8 + 8) * MAX_TENSORS);
    }
}
