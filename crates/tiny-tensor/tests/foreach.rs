//! `foreach_update_`: values against the same program run a tensor op at a time, and every validation error.
//!
//! Each test body takes a device and runs on every device found (`test_device!`).

mod common;

use common::device::test_device;
use common::rng;
use tiny_tensor::{Device, Tensor, TensorError, UpdateOp, UpdateProgram, foreach_update_};

/// The program of the value tests, over items `(p, g, m, v)`: every instruction, with a destination that is
/// a new register, the first source, the second or both, and the highest register.
fn program() -> UpdateProgram {
    use UpdateOp::*;
    UpdateProgram {
        tensors: 4,
        ops: vec![
            Copy { dst: 15, x: 0 },
            Axpby { dst: 4, a: 0.5, x: 1, b: 2.0, y: 0 },
            Axpby { dst: 2, a: 0.9, x: 2, b: 0.1, y: 1 },
            Mul { dst: 5, x: 1, y: 1 },
            Axpby { dst: 3, a: 0.99, x: 3, b: 0.01, y: 5 },
            Sqrt { dst: 6, x: 3 },
            AddScalar { dst: 6, x: 6, s: 1e-3 },
            Scale { dst: 6, a: 0.7, x: 6 },
            Div { dst: 7, x: 2, y: 6 },
            Axpby { dst: 4, a: 0.25, x: 7, b: -1.5, y: 4 },
            Mul { dst: 5, x: 5, y: 5 },
            Mul { dst: 4, x: 4, y: 5 },
            Axpby { dst: 0, a: 1.0, x: 15, b: -0.1, y: 7 },
            Axpby { dst: 0, a: 1.0, x: 0, b: 0.01, y: 4 },
        ],
        writes: vec![0, 2, 3],
    }
}

/// `program` run on whole tensors a tensor op at a time: each register is a tensor.
fn step_by_step(item: &[Tensor], program: &UpdateProgram) -> Vec<Tensor> {
    let mut r: Vec<Option<Tensor>> = vec![None; tiny_tensor::MAX_REGISTERS];
    for (k, t) in item.iter().enumerate() {
        r[k] = Some(t.clone());
    }
    let get = |r: &[Option<Tensor>], i: usize| r[i].clone().unwrap();
    for op in &program.ops {
        let v = match *op {
            UpdateOp::Axpby { a, x, b, y, .. } => {
                get(&r, x).mul_scalar(a).unwrap().add(&get(&r, y).mul_scalar(b).unwrap()).unwrap()
            }
            UpdateOp::Scale { a, x, .. } => get(&r, x).mul_scalar(a).unwrap(),
            UpdateOp::AddScalar { x, s, .. } => get(&r, x).affine(1.0, s).unwrap(),
            UpdateOp::Mul { x, y, .. } => get(&r, x).mul(&get(&r, y)).unwrap(),
            UpdateOp::Div { x, y, .. } => get(&r, x).div(&get(&r, y)).unwrap(),
            UpdateOp::Sqrt { x, .. } => get(&r, x).sqrt().unwrap(),
            UpdateOp::Copy { x, .. } => get(&r, x),
        };
        r[op.dst()] = Some(v);
    }
    (0..item.len()).map(|k| get(&r, k)).collect()
}

/// Uniform values in `[lo, hi)` on `device`.
fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64, device: Device) -> Tensor {
    Tensor::uniform(shape, lo, hi, &mut rng(seed)).unwrap().to_device(device).unwrap()
}

/// A fresh copy of `t`'s values (row-major) on its device, sharing nothing with it.
fn copy(t: &Tensor) -> Tensor {
    Tensor::from_vec(t.to_vec(), t.shape()).unwrap().to_device(t.device()).unwrap()
}

/// An item `(p, g, m, v)` of `shape` whose tensors are laid out by `view` (applied to a tensor of shape
/// `base`); `v` is positive, for the square root.
fn item(base: &[usize], seed: u64, device: Device, view: &dyn Fn(Tensor, usize) -> Tensor) -> Vec<Tensor> {
    (0..4)
        .map(|k| {
            let lo = if k == 3 { 0.1 } else { -1.0 };
            view(uniform(base, lo, 1.0, seed + k as u64, device), k)
        })
        .collect()
}

fn same(what: &str, got: &[f32], want: &[f32], device: Device) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // The CPU runs the same float ops in the same order as the tensor ops: the same bits. A GPU rounds each
        // op the same way too, but its reference here is its own tensor ops, so allow for rounding.
        let ok = match device {
            Device::Cpu => g.to_bits() == w.to_bits(),
            Device::Cuda(_) => (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
        };
        assert!(ok, "{what}[{i}] on {device}: {g} where the step-by-step ops give {w}");
    }
}

/// Runs the value test's program on items of every kind of layout and compares them with `step_by_step`.
fn values_match_the_step_by_step_ops(device: Device) {
    let plain = |t: Tensor, _| t;
    let transposed = |t: Tensor, _| t.t().unwrap();
    let channels_last = |t: Tensor, _| t.to_channels_last().unwrap();
    // p row-major, g transposed, m a slice of a wider tensor (not dense, with an offset), v row-major: runs of
    // 41 elements that straddle the CPU's chunks.
    let mixed = |t: Tensor, k| match k {
        1 => t.narrow(1, 0, 41).unwrap().t().unwrap().contiguous().unwrap().t().unwrap(),
        2 => t.narrow(1, 2, 41).unwrap(),
        _ => t.narrow(1, 0, 41).unwrap().contiguous().unwrap(),
    };
    // g a row broadcast down the rows (read only, so it may repeat one memory location).
    let broadcast = |t: Tensor, k| if k == 1 { t.narrow(0, 0, 1).unwrap().expand(&[6, 9]).unwrap() } else { t };
    let mut items = [
        item(&[70, 100], 10, device, &plain),
        item(&[5, 7], 20, device, &transposed),
        item(&[2, 3, 4, 5], 30, device, &channels_last),
        item(&[30, 44], 40, device, &mixed),
        item(&[6, 9], 50, device, &broadcast),
        item(&[], 60, device, &plain),
        item(&[0, 3], 70, device, &plain),
        item(&[70, 100], 80, device, &plain),
    ];
    // The last item reads the first one's gradient: read-only tensors may be shared.
    items[7][1] = items[0][1].clone();
    let program = program();
    let before: Vec<Vec<Tensor>> = items.iter().map(|it| it.iter().map(copy).collect()).collect();
    let want: Vec<Vec<Tensor>> = before.iter().map(|it| step_by_step(it, &program)).collect();
    let refs: Vec<Vec<&Tensor>> = items.iter().map(|it| it.iter().collect()).collect();
    let slices: Vec<&[&Tensor]> = refs.iter().map(|it| &it[..]).collect();
    foreach_update_(&slices, &program).unwrap();
    for (i, (it, want)) in items.iter().zip(&want).enumerate() {
        for k in 0..4 {
            assert_eq!(it[k].device(), device);
            let want = if program.writes_slot(k) { &want[k] } else { &before[i][k] };
            same(&format!("item {i} tensor {k}"), &it[k].to_vec(), &want.to_vec(), device);
        }
    }
    // The same tensor in two read-only slots of one item.
    let (p, g) = (uniform(&[4, 5], -1.0, 1.0, 90, device), uniform(&[4, 5], -1.0, 1.0, 91, device));
    let want = p.add(&g.mul(&g).unwrap()).unwrap();
    let square = UpdateProgram {
        tensors: 3,
        ops: vec![UpdateOp::Mul { dst: 3, x: 1, y: 2 }, UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: 1.0, y: 3 }],
        writes: vec![0],
    };
    foreach_update_(&[&[&p, &g, &g]], &square).unwrap();
    same("p + g * g", &p.to_vec(), &want.to_vec(), device);
}

/// `p = p + 0.5 * g` over items `(p, g)`.
fn axpy() -> UpdateProgram {
    UpdateProgram { tensors: 2, ops: vec![UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: 0.5, y: 1 }], writes: vec![0] }
}

fn invalid(result: tiny_tensor::Result<()>, what: &str, needle: &str) {
    match result {
        Err(TensorError::InvalidArgument { op: "foreach_update_", msg }) => {
            assert!(msg.contains(needle), "{what}: the message {msg:?} does not say {needle:?}")
        }
        other => panic!("{what}: expected an InvalidArgument error, got {other:?}"),
    }
}

/// Every error `foreach_update_` reports, each after a good item that must stay as it was.
fn every_bad_input_is_an_error_that_changes_nothing(device: Device) {
    let t = |shape: &[usize], seed| uniform(shape, -1.0, 1.0, seed, device);
    let (p, g) = (t(&[2, 3], 1), t(&[2, 3], 2));
    let p0 = p.to_vec();
    let unchanged = |what: &str| assert_eq!(p.to_vec(), p0, "{what}: the good item changed");
    let run = |bad: &[&Tensor], program: &UpdateProgram| foreach_update_(&[&[&p, &g], bad], program);
    let (q, h) = (t(&[2, 3], 3), t(&[2, 3], 4));

    let bad_programs: [(&str, UpdateProgram, &str); 7] = [
        ("no tensors", UpdateProgram { tensors: 0, ..axpy() }, "1 to 8 tensors"),
        ("nine tensors", UpdateProgram { tensors: 9, ..axpy() }, "1 to 8 tensors"),
        ("33 instructions", UpdateProgram { ops: vec![UpdateOp::Copy { dst: 1, x: 0 }; 33], ..axpy() }, "at most 32"),
        (
            "register 16",
            UpdateProgram { ops: vec![UpdateOp::Copy { dst: 16, x: 0 }], ..axpy() },
            "register 16; there are 16",
        ),
        (
            "a temporary read before it is written",
            UpdateProgram { ops: vec![UpdateOp::Sqrt { dst: 0, x: 2 }], ..axpy() },
            "reads register 2 before",
        ),
        ("a written slot past the tensors", UpdateProgram { writes: vec![2], ..axpy() }, "slot 2 is not one"),
        ("a slot written twice", UpdateProgram { writes: vec![0, 0], ..axpy() }, "listed twice"),
    ];
    for (what, program, needle) in bad_programs {
        assert!(program.validate().is_err(), "{what}");
        invalid(run(&[&q, &h], &program), what, needle);
        unchanged(what);
    }

    invalid(run(&[&q], &axpy()), "an item of one tensor", "item 1 holds 1 tensors; the program takes 2");
    invalid(foreach_update_(&[&[]], &axpy()), "an empty item", "item 0 holds 0 tensors");
    let wide = t(&[3, 2], 5);
    assert_eq!(
        run(&[&q, &wide], &axpy()),
        Err(TensorError::ShapeMismatch { op: "foreach_update_", lhs: vec![2, 3], rhs: vec![3, 2] })
    );
    unchanged("a shape mismatch");
    let expanded = t(&[1, 3], 6).expand(&[2, 3]).unwrap();
    invalid(run(&[&expanded, &h], &axpy()), "a written broadcast", "is one memory location");
    unchanged("a written broadcast");
    invalid(run(&[&p, &h], &axpy()), "a written tensor twice", "written tensor 0 of item");
    unchanged("a written tensor twice");
    let view = q.reshape(&[2, 3]).unwrap().t().unwrap().t().unwrap();
    invalid(run(&[&q, &view], &axpy()), "a gradient that is a view of its parameter", "shares its memory");
    unchanged("a gradient that is a view of its parameter");
    invalid(run(&[&h, &p.narrow(0, 0, 2).unwrap()], &axpy()), "a read of another item's written tensor", "shares");
    unchanged("a read of another item's written tensor");

    // Nothing to do, and read-only tensors shared between items, are fine.
    foreach_update_(&[], &axpy()).unwrap();
    foreach_update_(&[&[&p, &g], &[&q, &g]], &axpy()).unwrap();
    assert_ne!(p.to_vec(), p0);

    if device != Device::Cpu {
        let host = Tensor::zeros(&[2, 3]);
        let mismatch = |r: tiny_tensor::Result<()>| {
            assert!(matches!(r, Err(TensorError::DeviceMismatch { op: "foreach_update_", .. })), "{r:?}")
        };
        mismatch(foreach_update_(&[&[&q, &host]], &axpy()));
        mismatch(foreach_update_(&[&[&q, &h], &[&host, &Tensor::zeros(&[2, 3])]], &axpy()));
    }
}

test_device!(
    values_match_the_step_by_step_ops,
    values_match_the_step_by_step_ops_cpu,
    values_match_the_step_by_step_ops_cuda
);
test_device!(
    every_bad_input_is_an_error_that_changes_nothing,
    every_bad_input_is_an_error_that_changes_nothing_cpu,
    every_bad_input_is_an_error_that_changes_nothing_cuda
);
