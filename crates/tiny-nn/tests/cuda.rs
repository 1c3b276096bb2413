//! A few SGD steps of simple_cnn and resnet18 on the CPU and on a CUDA GPU give the same losses; simple_cnn's
//! step captured into a CUDA graph replays the eager steps bit for bit, and `bench_step --cuda-graph` runs.
//!
//! Built only with `--features cuda`; without a GPU each test prints that it was skipped and passes.
#![cfg(feature = "cuda")]

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_nn::{Module, cross_entropy, manual_seed, resnet18, simple_cnn};
use tiny_tensor::cuda::{Graph, HostInput};
use tiny_tensor::{Device, Tensor, UpdateOp, UpdateProgram, foreach_update_, no_grad};

/// The tests of this file take turns on the GPU: a graph capture records whatever the GPU is given meanwhile.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _turn = turn();
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

/// One step of `model` on `(x, y)`: forward, cross entropy, backward, SGD with momentum 0.9 (buffers `bufs`, one
/// fused update), zero_grad. Returns the loss, detached.
fn momentum_step(model: &dyn Module, bufs: &[Tensor], x: &Tensor, y: &[u32]) -> tiny_tensor::Result<Tensor> {
    let loss = cross_entropy(&model.forward(x).unwrap(), y).unwrap();
    loss.backward()?;
    let _guard = no_grad();
    let params = model.parameters();
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad().expect("a gradient")).collect();
    let items: Vec<[&Tensor; 3]> = params.iter().zip(&grads).zip(bufs).map(|((p, g), b)| [p.tensor(), g, b]).collect();
    let items: Vec<&[&Tensor]> = items.iter().map(|i| &i[..]).collect();
    let program = UpdateProgram {
        tensors: 3,
        ops: vec![
            UpdateOp::Axpby { dst: 2, a: 0.9, x: 2, b: 1.0, y: 1 },
            UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: -0.05, y: 2 },
        ],
        writes: vec![0, 2],
    };
    foreach_update_(&items, &program)?;
    params.iter().for_each(|p| p.zero_grad());
    Ok(loss.detach())
}

/// Every parameter, buffer (batchnorm statistics) and momentum buffer, on the host.
fn state(model: &dyn Module, bufs: &[Tensor]) -> Vec<Vec<f32>> {
    let params = model.parameters().iter().map(|p| p.to_vec()).collect::<Vec<_>>();
    let buffers = model.named_buffers().into_iter().map(|(_, b)| b.to_vec());
    params.into_iter().chain(buffers).chain(bufs.iter().map(Tensor::to_vec)).collect()
}

#[test]
fn a_cuda_graph_of_simple_cnn_replays_its_eager_steps() {
    let Some(device) =
        tiny_fixtures::gpu_or_skip("a_cuda_graph_of_simple_cnn_replays_its_eager_steps", Device::new_cuda(0))
    else {
        return;
    };
    let _turn = turn();
    let batches: Vec<(Tensor, Vec<u32>)> = (0..4u64)
        .map(|k| {
            let x = Tensor::randn(&[8, 3, 32, 32], &mut StdRng::seed_from_u64(20 + k)).to_device(device).unwrap();
            (x, (0..8).map(|i| ((i as u64 * 3 + k) % 10) as u32).collect())
        })
        .collect();
    let model = || {
        manual_seed(3);
        let m = simple_cnn(10).unwrap();
        m.to_device(device).unwrap();
        m.train(true);
        let bufs: Vec<Tensor> = m.parameters().iter().map(|p| p.zeros_like().unwrap()).collect();
        (m, bufs)
    };

    let (eager, eager_bufs) = model();
    let eager_losses: Vec<f32> =
        batches.iter().map(|(x, y)| momentum_step(&eager, &eager_bufs, x, y).unwrap().item().unwrap()).collect();

    let (net, bufs) = model();
    let mut losses = vec![momentum_step(&net, &bufs, &batches[0].0, &batches[0].1).unwrap().item().unwrap()];
    // Static inputs: images in a tensor made before the capture, targets in pinned memory the graph reads.
    let x = batches[1].0.zeros_like().unwrap();
    x.assign(&batches[1].0).unwrap();
    let mut y = HostInput::new(device, &batches[1].1).unwrap();
    let targets = y.as_slice().unwrap();
    let (graph, loss) = Graph::capture(device, || momentum_step(&net, &bufs, &x, targets)).unwrap();
    for (k, (xb, yb)) in batches.iter().enumerate().skip(1) {
        x.assign(xb).unwrap();
        y.set(yb).unwrap();
        graph.replay().unwrap();
        losses.push(loss.item().unwrap());
        assert_eq!(losses[k], eager_losses[k], "step {k}");
    }
    assert_eq!(state(&net, &bufs), state(&eager, &eager_bufs), "weights, statistics and momentum match to the bit");
}

#[test]
fn bench_step_runs_with_a_cuda_graph() {
    if tiny_fixtures::gpu_or_skip("bench_step_runs_with_a_cuda_graph", Device::new_cuda(0)).is_none() {
        return;
    }
    let bench = tiny_fixtures::cuda_example("tiny-nn", "bench_step");
    let run = |extra: &[&str]| {
        let base = ["--device", "cuda", "--bs", "4", "--size", "16", "--steps", "3", "--warmup", "1", "--threads", "1"];
        // On the fake driver, its count of queued work says how often the graph was launched.
        Command::new(&bench).args(base).args(extra).env("TINY_FAKE_CUDA_STATS", "1").output().expect("run bench_step")
    };
    let out = run(&["--cuda-graph"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let json = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_default();
    assert!(json.contains("\"cuda_graph\":true"), "{json}");
    if let Some(launches) = stderr.lines().find(|l| l.trim_start().starts_with("graph launch")) {
        // One replay before the clock starts, then one per timed step.
        assert_eq!(launches.split_whitespace().nth(2), Some("4"), "{stderr}");
    }
    // bf16 autocast inside a graph: every product is a bf16 GemmEx, captured once and replayed.
    let out = run(&["--cuda-graph", "--precision", "bf16"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("\"precision\":\"bf16\"") && stdout.contains("\"cuda_graph\":true"), "{stdout}");
    if stderr.contains("graph launch") {
        let count = |what: &str| stderr.lines().find(|l| l.trim_start().starts_with(what)).map(str::to_owned);
        assert!(count("gemm ex (bf16)").is_some() && count("sgemm").is_none(), "{stderr}");
    }
    let out = Command::new(&bench).args(["--device", "cpu", "--cuda-graph"]).output().expect("run bench_step");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device cuda"), "{}", String::from_utf8_lossy(&out.stderr));
}
