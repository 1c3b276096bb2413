//! Every differentiable op against PyTorch: values and input gradients recorded by `parity/make_fixtures.py`
//! (torch 2.15, float32, on strided, broadcast and channels-last inputs), replayed here with no Python, on the CPU
//! and, where a GPU opens, on CUDA (`test_device!`), each case against its own PyTorch tolerance.

mod common;

use common::test_device;
use tiny_tensor::Device;

fn every_op_matches_pytorch(device: Device) {
    let n = common::torch::replay_all(device);
    assert!(n >= 100, "only {n} cases");
}
test_device!(every_op_matches_pytorch, every_op_matches_pytorch_cpu, every_op_matches_pytorch_cuda);

#[test]
fn every_bf16_tolerance_is_tight_enough_that_a_hundredth_of_it_fails() {
    // A tolerance that a result met a hundred times over would say nothing about it (exact cases have none).
    let f = common::torch::autocast_fixtures();
    assert!(f.cases.len() >= 9);
    for case in f.cases.iter().filter(|c| c.rtol > 0.0) {
        let strict = tiny_fixtures::Case { rtol: case.rtol / 100.0, ..case.clone() };
        let caught = std::panic::catch_unwind(|| common::torch::replay(&f, &strict, Device::Cpu));
        assert!(caught.is_err(), "{} still matches PyTorch at rtol {:e}", case.name, strict.rtol);
    }
}

#[test]
fn the_fixtures_cover_every_differentiable_op() {
    // Each public differentiable op of tiny-tensor has at least one PyTorch case.
    let files = common::torch::all_fixtures();
    let ops: std::collections::BTreeSet<&str> = files.iter().flat_map(|f| &f.cases).map(|c| c.op.as_str()).collect();
    for op in [
        "neg",
        "exp",
        "log",
        "sqrt",
        "relu",
        "powf",
        "add",
        "sub",
        "mul",
        "div",
        "add_scalar",
        "mul_scalar",
        "affine",
        "sum",
        "mean",
        "max",
        "logsumexp",
        "sum_all",
        "mean_all",
        "reshape",
        "flatten",
        "permute",
        "transpose",
        "narrow",
        "expand",
        "unsqueeze",
        "squeeze",
        "contiguous",
        "cat",
        "stack",
        "index_select",
        "pick",
        "matmul",
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "batch_norm",
        "log_softmax_nll",
        "log_softmax_nll_smooth",
        "bce_with_logits",
        "add_relu",
        "round_bf16",
    ] {
        assert!(ops.contains(op), "no PyTorch fixture for {op}");
    }
    // The fused batchnorm-ReLU is a flag of the batchnorm cases, NCHW and channels-last.
    let bn_relu = files.iter().flat_map(|f| &f.cases).filter(|c| c.op == "batch_norm" && c.flag("relu")).count();
    assert!(bn_relu >= 2, "{bn_relu} PyTorch cases of batch_norm_relu");
}
