//! The CPU kernel of `foreach_update_`: an update program interpreted on chunks of elements in small buffers.
//!
//! An item's elements are gathered a chunk at a time into registers (one buffer of `CHUNK` floats each),
//! every instruction then runs as one plain loop over the chunk, which the compiler vectorises, and the written
//! registers are scattered back: one read and one write of each element, whatever the program's length.

use super::{ForeachKernels, MAX_REGISTERS, MAX_TENSORS, UpdateOp, UpdateProgram};
use crate::cpu::strided::for_each_run;
use crate::cpu::{Cpu, parallel};
use crate::layout::Layout;
use crate::{Result, Tensor};

/// Elements per chunk: sixteen registers of this many floats stay in the L1 cache.
const CHUNK: usize = 256;

type Register = [f32; CHUNK];

impl ForeachKernels for Cpu {
    /// One item at a time, with a lock on each storage (read-only tensors that share one storage share its read
    /// lock too); the items are shared among the threads in contiguous runs of about equal size (a written
    /// tensor shares memory with nothing else in the call, so no two threads wait on one lock).
    fn foreach_update(&self, items: &[&[&Tensor]], program: &UpdateProgram) -> Result<()> {
        let sizes: Vec<usize> = items.iter().map(|item| item[0].numel() * item.len()).collect();
        let ranges = parallel::ranges_by_weight(&sizes);
        parallel::each_range(&ranges, |range| {
            let mut registers = ForeachRegisters::new();
            items[range].iter().for_each(|item| update_item(item, program, &mut registers));
        });
        Ok(())
    }
}

/// Runs `program` on one item, holding its storages' locks.
fn update_item(item: &[&Tensor], program: &UpdateProgram, registers: &mut ForeachRegisters) {
    if item[0].numel() == 0 {
        return;
    }
    let written: Vec<bool> = (0..item.len()).map(|k| program.writes_slot(k)).collect();
    let mut write_guards = Vec::new();
    let mut read_guards = Vec::new();
    let mut read_of = vec![0; item.len()];
    for (k, t) in item.iter().enumerate() {
        if written[k] {
            write_guards.push(t.storage_mut());
        } else if let Some(j) = (0..k).find(|&j| !written[j] && item[j].shares_storage(t)) {
            read_of[k] = read_of[j];
        } else {
            read_of[k] = read_guards.len();
            read_guards.push(t.storage());
        }
    }
    let mut writes: Vec<&mut [f32]> = write_guards.iter_mut().map(|s| s.host_mut()).collect();
    let reads: Vec<&[f32]> = read_guards.iter().map(|s| s.host()).collect();
    let mut next_write = 0;
    let mut operands = Vec::with_capacity(item.len());
    for k in 0..item.len() {
        operands.push(if written[k] {
            next_write += 1;
            ForeachOperand::Write(std::mem::take(&mut writes[next_write - 1]))
        } else {
            ForeachOperand::Read(reads[read_of[k]])
        });
    }
    let layouts: Vec<_> = item.iter().map(|t| t.layout()).collect();
    foreach_update(&mut operands, &layouts, program, registers);
}

/// The memory of one tensor of an item: read only, or read and written back.
enum ForeachOperand<'a> {
    Read(&'a [f32]),
    Write(&'a mut [f32]),
}

impl ForeachOperand<'_> {
    fn data(&self) -> &[f32] {
        match self {
            ForeachOperand::Read(d) => d,
            ForeachOperand::Write(d) => d,
        }
    }
}

/// The register buffers, allocated once per call and reused for every item.
struct ForeachRegisters(Vec<Register>);

impl ForeachRegisters {
    fn new() -> Self {
        ForeachRegisters(vec![[0.0; CHUNK]; MAX_REGISTERS])
    }
}

/// A piece of a run of elements that sits in one chunk: `len` elements from chunk position `at`, element
/// `j` of operand `k` at `offsets[k] + j * strides[k]` in its memory.
#[derive(Clone, Copy)]
struct Segment {
    at: usize,
    len: usize,
    offsets: [usize; MAX_TENSORS],
    strides: [usize; MAX_TENSORS],
}

/// Runs `program` on every element of one item, the operands laid out by `layouts` (one shape, any strides;
/// the caller checked the program, the shapes and that written operands overlap nothing).
///
/// Elements are visited in the memory order of the first operand, with dimensions merged where every operand
/// allows it, so that dense operands in one memory order form one run copied in and out with `memcpy`.
fn foreach_update(
    operands: &mut [ForeachOperand<'_>],
    layouts: &[&Layout],
    program: &UpdateProgram,
    registers: &mut ForeachRegisters,
) {
    let n = operands.len();
    // The walk takes a fixed number of operands: the slots past `n` repeat the last one and are never used.
    let strides: [&[usize]; MAX_TENSORS] = std::array::from_fn(|k| &layouts[k.min(n - 1)].strides[..]);
    let offsets: [usize; MAX_TENSORS] = std::array::from_fn(|k| layouts[k.min(n - 1)].offset);
    let regs = &mut registers.0;
    let mut pending: Vec<Segment> = Vec::new();
    let mut filled = 0;
    for_each_run(&layouts[0].shape, strides, offsets, |len, offs, steps| {
        let mut done = 0;
        while done < len {
            let take = (CHUNK - filled).min(len - done);
            let seg = Segment {
                at: filled,
                len: take,
                offsets: std::array::from_fn(|k| offs[k] + done * steps[k]),
                strides: steps,
            };
            gather(&seg, operands, regs);
            pending.push(seg);
            (filled, done) = (filled + take, done + take);
            if filled == CHUNK {
                run(program, regs, filled);
                scatter(&pending, operands, regs);
                pending.clear();
                filled = 0;
            }
        }
    });
    if filled > 0 {
        run(program, regs, filled);
        scatter(&pending, operands, regs);
    }
}

/// Copies a segment of every operand into its register.
fn gather(seg: &Segment, operands: &[ForeachOperand<'_>], regs: &mut [Register]) {
    for (k, op) in operands.iter().enumerate() {
        let (src, o, s) = (op.data(), seg.offsets[k], seg.strides[k]);
        let dst = &mut regs[k][seg.at..seg.at + seg.len];
        if s == 1 {
            dst.copy_from_slice(&src[o..o + seg.len]);
        } else {
            dst.iter_mut().enumerate().for_each(|(j, v)| *v = src[o + j * s]);
        }
    }
}

/// Stores the registers of the written operands back into the segments they came from.
fn scatter(segs: &[Segment], operands: &mut [ForeachOperand<'_>], regs: &[Register]) {
    for (k, op) in operands.iter_mut().enumerate() {
        let ForeachOperand::Write(dst) = op else { continue };
        for seg in segs {
            let (src, o, s) = (&regs[k][seg.at..seg.at + seg.len], seg.offsets[k], seg.strides[k]);
            if s == 1 {
                dst[o..o + seg.len].copy_from_slice(src);
            } else {
                src.iter().enumerate().for_each(|(j, &v)| dst[o + j * s] = v);
            }
        }
    }
}

/// Runs the instructions on the first `len` lanes of the registers.
fn run(program: &UpdateProgram, regs: &mut [Register], len: usize) {
    for op in &program.ops {
        match *op {
            UpdateOp::Axpby { dst, a, x, b, y } => binary(regs, len, dst, x, y, |x, y| a * x + b * y),
            UpdateOp::Scale { dst, a, x } => unary(regs, len, dst, x, |x| a * x),
            UpdateOp::AddScalar { dst, x, s } => unary(regs, len, dst, x, |x| x + s),
            UpdateOp::Mul { dst, x, y } => binary(regs, len, dst, x, y, |x, y| x * y),
            UpdateOp::Div { dst, x, y } => binary(regs, len, dst, x, y, |x, y| x / y),
            UpdateOp::Sqrt { dst, x } => unary(regs, len, dst, x, f32::sqrt),
            UpdateOp::Copy { dst, x } => unary(regs, len, dst, x, |x| x),
        }
    }
}

/// Register `dst` mutably and the others readable: `(dst, below, above)` of the split around it.
fn split(regs: &mut [Register], dst: usize) -> (&mut Register, &[Register], &[Register]) {
    let (below, rest) = regs.split_at_mut(dst);
    let (d, above) = rest.split_at_mut(1);
    (&mut d[0], below, above)
}

/// Register `r` of a split around `dst` (`r != dst`).
fn other<'a>(below: &'a [Register], above: &'a [Register], dst: usize, r: usize) -> &'a Register {
    if r < dst { &below[r] } else { &above[r - dst - 1] }
}

/// `regs[dst] = f(regs[x])` on `len` lanes, `dst` and `x` the same register or not.
fn unary(regs: &mut [Register], len: usize, dst: usize, x: usize, f: impl Fn(f32) -> f32) {
    if dst == x {
        regs[dst][..len].iter_mut().for_each(|v| *v = f(*v));
        return;
    }
    let (d, below, above) = split(regs, dst);
    let xs = other(below, above, dst, x);
    d[..len].iter_mut().zip(&xs[..len]).for_each(|(v, &x)| *v = f(x));
}

/// `regs[dst] = f(regs[x], regs[y])` on `len` lanes, whichever of the three registers coincide.
fn binary(regs: &mut [Register], len: usize, dst: usize, x: usize, y: usize, f: impl Fn(f32, f32) -> f32) {
    if dst == x && dst == y {
        regs[dst][..len].iter_mut().for_each(|v| *v = f(*v, *v));
        return;
    }
    let (d, below, above) = split(regs, dst);
    let d = &mut d[..len];
    if dst == x {
        let ys = &other(below, above, dst, y)[..len];
        d.iter_mut().zip(ys).for_each(|(v, &y)| *v = f(*v, y));
    } else if dst == y {
        let xs = &other(below, above, dst, x)[..len];
        d.iter_mut().zip(xs).for_each(|(v, &x)| *v = f(x, *v));
    } else {
        let (xs, ys) = (&other(below, above, dst, x)[..len], &other(below, above, dst, y)[..len]);
        d.iter_mut().zip(xs).zip(ys).for_each(|((v, &x), &y)| *v = f(x, y));
    }
}
