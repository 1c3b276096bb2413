//! CUDA graphs: a captured training step of a small conv net replays bit for bit what the same steps do
//! eagerly, with new batches fed through static inputs; and what a capture refuses.
//!
//! Built only with `--features cuda`; without a GPU the device tests print that they were skipped and pass.
#![cfg(feature = "cuda")]

mod common;

use std::sync::{Mutex, MutexGuard};

use common::rng;
use tiny_tensor::cuda::{self, Graph, HostInput};
use tiny_tensor::{
    Device, Result, RunningStats, Tensor, TensorError, UpdateOp, UpdateProgram, foreach_update_, no_grad,
};

/// A GPU captures for one thread at a time: the tests of this file take turns.
static TURN: Mutex<()> = Mutex::new(());

fn gpu(test: &str) -> Option<(Device, MutexGuard<'static, ()>)> {
    let device = tiny_fixtures::gpu_or_skip(test, Device::new_cuda(0))?;
    Some((device, TURN.lock().unwrap_or_else(|e| e.into_inner())))
}

/// conv 3x3 (3 -> 8) + relu, batchnorm with running statistics, 2x2 max pool, global mean, linear 8 -> 5,
/// with a momentum buffer per parameter.
struct Net {
    params: Vec<Tensor>,
    momentum: Vec<Tensor>,
    running: [Tensor; 3],
}

impl Net {
    fn new(device: Device) -> Net {
        let shapes: [&[usize]; 5] = [&[8, 3, 3, 3], &[8], &[8], &[8], &[8, 5]];
        let params: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = Tensor::uniform(s, -0.5, 0.5, &mut rng(10 + i as u64)).unwrap();
                // The batchnorm weight starts near one.
                let t = if i == 2 { t.add_scalar(1.0).unwrap() } else { t };
                t.to_device(device).unwrap().detach().set_requires_grad(true)
            })
            .collect();
        let momentum = params.iter().map(|p| p.zeros_like().unwrap()).collect();
        let running =
            [Tensor::zeros(&[8]), Tensor::ones(&[8]), Tensor::scalar(0.0)].map(|t| t.to_device(device).unwrap());
        Net { params, momentum, running }
    }

    /// One training step on `(x, y)`: forward, backward, SGD with momentum 0.9 and weight decay, zero_grad.
    fn step(&self, x: &Tensor, y: &[u32]) -> Result<Tensor> {
        let [w1, b1, g, b, w2] = &self.params[..] else { unreachable!() };
        let running = RunningStats {
            mean: &self.running[0],
            var: &self.running[1],
            momentum: 0.1,
            num_batches_tracked: Some(&self.running[2]),
        };
        let h = x.conv2d_relu(w1, Some(b1), 1, 1)?;
        let h = h.batch_norm_running(g, b, 1e-5, running)?.0;
        let h = h.max_pool2d(2, 2, 0)?.mean(&[2, 3], false)?;
        let loss = h.matmul(w2)?.log_softmax_nll(y)?.mean_all()?;
        loss.backward()?;
        let _no_grad = no_grad();
        let grads: Vec<Tensor> =
            self.params.iter().map(|p| p.grad().expect("every parameter has a gradient")).collect();
        let items: Vec<[&Tensor; 3]> =
            self.params.iter().zip(&grads).zip(&self.momentum).map(|((p, g), m)| [p, g, m]).collect();
        let items: Vec<&[&Tensor]> = items.iter().map(|i| &i[..]).collect();
        use UpdateOp::Axpby;
        let sgd = UpdateProgram {
            tensors: 3,
            ops: vec![
                Axpby { dst: 1, a: 1.0, x: 1, b: 1e-3, y: 0 },
                Axpby { dst: 2, a: 0.9, x: 2, b: 1.0, y: 1 },
                Axpby { dst: 0, a: 1.0, x: 0, b: -0.1, y: 2 },
            ],
            writes: vec![0, 2],
        };
        foreach_update_(&items, &sgd)?;
        self.params.iter().for_each(Tensor::zero_grad);
        Ok(loss.detach())
    }

    /// Every parameter, momentum buffer and running statistic, on the host.
    fn state(&self) -> Vec<Vec<f32>> {
        self.params.iter().chain(&self.momentum).chain(&self.running).map(Tensor::to_vec).collect()
    }
}

/// Four batches of `[4, 3, 8, 8]` images and their targets.
fn batches() -> Vec<(Tensor, Vec<u32>)> {
    (0..4u64)
        .map(|k| {
            let x = Tensor::randn(&[4, 3, 8, 8], &mut rng(100 + k));
            let y = (0..4).map(|i| ((i + k) % 5) as u32).collect();
            (x, y)
        })
        .collect()
}

#[test]
fn a_captured_step_replays_the_eager_steps_bit_for_bit() {
    let Some((device, _turn)) = gpu("a_captured_step_replays_the_eager_steps_bit_for_bit") else { return };
    let Device::Cuda(ordinal) = device else { unreachable!() };
    let data = batches();

    let eager = Net::new(device);
    let mut eager_losses = Vec::new();
    for (x, y) in &data {
        eager_losses.push(eager.step(&x.to_device(device).unwrap(), y).unwrap().item().unwrap());
    }

    let net = Net::new(device);
    // The first step runs eagerly, as the optimizers' first step would create their buffers.
    let mut losses = vec![net.step(&data[0].0.to_device(device).unwrap(), &data[0].1).unwrap().item().unwrap()];
    let before = cuda::memory_allocated(ordinal).unwrap();
    // The static inputs: a device tensor and the targets' pinned memory, made before the capture.
    let x = data[1].0.to_device(device).unwrap();
    let mut y = HostInput::new(device, &data[1].1).unwrap();
    let state = net.state();
    let targets = y.as_slice().unwrap();
    let (graph, loss) = Graph::capture(device, || net.step(&x, targets)).unwrap();
    assert_eq!(net.state(), state, "a capture records the step without running it");
    assert_eq!(graph.device(), device);
    for (k, (xb, yb)) in data.iter().enumerate().skip(1) {
        if k > 1 {
            x.assign(&xb.to_device(device).unwrap()).unwrap();
            y.set(yb).unwrap();
        }
        graph.replay().unwrap();
        losses.push(loss.item().unwrap());
    }
    assert_eq!(losses, eager_losses, "the replayed losses are the eager ones");
    assert_eq!(net.state(), eager.state(), "parameters, momentum and running statistics match to the bit");

    // The graph's memory is its own pool's: dropping the graph and its output leaves the pool as it was.
    drop((graph, loss, x, y));
    assert!(cuda::memory_allocated(ordinal).unwrap() <= before, "the graph left memory behind");
    // And the GPU goes on eagerly.
    let after = net.step(&data[0].0.to_device(device).unwrap(), &data[0].1).unwrap();
    assert!(after.item().unwrap().is_finite());
}

#[test]
fn a_graph_replays_many_times_and_its_outputs_outlive_it() {
    let Some((device, _turn)) = gpu("a_graph_replays_many_times_and_its_outputs_outlive_it") else { return };
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap().to_device(device).unwrap();
    let (graph, y) = Graph::capture(device, || -> Result<Tensor> {
        // A temporary made and dropped inside the capture, and a constant uploaded during it.
        let t = x.mul_scalar(2.0)?;
        let c = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3])?.to_device(device)?;
        t.add(&c)
    })
    .unwrap();
    for k in 0..5 {
        let v = (k as f32) * 1.5;
        x.assign(&Tensor::from_vec(vec![v, v + 1.0, v + 2.0], &[3]).unwrap().to_device(device).unwrap()).unwrap();
        graph.replay().unwrap();
        assert_eq!(y.to_vec(), vec![2.0 * v + 10.0, 2.0 * v + 22.0, 2.0 * v + 34.0], "replay {k}");
    }
    drop(graph);
    assert_eq!(y.to_vec()[0], 2.0 * 6.0 + 10.0, "an output keeps the last replay's values after the graph is gone");
}

#[test]
fn reading_to_the_host_during_a_capture_is_an_error() {
    let Some((device, _turn)) = gpu("reading_to_the_host_during_a_capture_is_an_error") else { return };
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap().to_device(device).unwrap();
    let Device::Cuda(ordinal) = device else { unreachable!() };
    type Read<'a> = Box<dyn Fn() -> Result<()> + 'a>;
    let reads: [(&str, Read); 5] = [
        ("item", Box::new(|| x.sum_all()?.item().map(drop))),
        ("try_to_vec", Box::new(|| x.try_to_vec().map(drop))),
        ("to_device(Cpu)", Box::new(|| x.mul_scalar(3.0)?.to_device(Device::Cpu).map(drop))),
        ("synchronize", Box::new(|| cuda::synchronize(ordinal))),
        ("memory_allocated", Box::new(|| cuda::memory_allocated(ordinal).map(drop))),
    ];
    for (what, read) in reads {
        let e = Graph::capture(device, read).unwrap_err();
        assert!(matches!(e, TensorError::InvalidArgument { .. }), "{what}: {e}");
        assert!(e.to_string().contains("capturing a CUDA graph"), "{what}: {e}");
        // The capture was ended: the GPU works eagerly again.
        assert_eq!(x.mul_scalar(2.0).unwrap().to_vec(), vec![2.0, 4.0], "{what}");
    }
}

#[test]
fn a_capture_refuses_a_batch_uploaded_inside_it_and_ends_after_a_panic() {
    let Some((device, _turn)) = gpu("a_capture_refuses_a_batch_uploaded_inside_it_and_ends_after_a_panic") else {
        return;
    };
    let e = Graph::capture(device, || Tensor::zeros(&[64, 1024]).to_device(device)).unwrap_err();
    assert!(e.to_string().contains("Tensor::assign"), "{e}");
    let panicked = std::panic::catch_unwind(|| Graph::capture(device, || -> Result<()> { panic!("in the step") }));
    assert!(panicked.is_err());
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap().to_device(device).unwrap();
    assert_eq!(x.mul_scalar(2.0).unwrap().to_vec(), vec![2.0, 4.0], "the panic ended the capture");
    // A capture inside a capture is refused, and a graph is not replayed while another is captured.
    let (graph, _) = Graph::capture(device, || x.mul_scalar(2.0)).unwrap();
    let e = Graph::capture(device, || Graph::capture(device, || x.mul_scalar(2.0)).map(drop)).unwrap_err();
    assert!(e.to_string().contains("in progress"), "{e}");
    let e = Graph::capture(device, || graph.replay()).unwrap_err();
    assert!(e.to_string().contains("capturing another graph"), "{e}");
}

#[test]
fn a_capture_needs_a_gpu() {
    let e = Graph::capture(Device::Cpu, || Ok::<_, TensorError>(())).unwrap_err();
    assert!(matches!(e, TensorError::InvalidArgument { op: "Graph::capture", .. }), "{e}");
    assert!(HostInput::new(Device::Cpu, &[1, 2]).is_err());
}

/// The driver rules the design rests on, checked against the driver itself (the fake one models them): the
/// legacy stream cannot be captured; waiting for a capturing stream, or freeing memory from outside the capture
/// on it, invalidates the capture; and a graph holding stream-ordered allocations (graph memory) that it does not
/// free relaunches only with auto-free-on-launch, which is why tiny's captures allocate from a pool of their own.
#[test]
fn the_driver_refuses_what_a_capture_does_not_allow() {
    use cudarc::driver::sys::{CUgraphInstantiate_flags as Flags, CUresult, CUstreamCaptureMode};
    use cudarc::driver::{CudaContext, DevicePtr, result};
    let Some((_, _turn)) = gpu("the_driver_refuses_what_a_capture_does_not_allow") else { return };
    let ctx = CudaContext::new(0).unwrap();
    unsafe { ctx.disable_event_tracking() };
    let mode = CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL;
    assert!(ctx.default_stream().begin_capture(mode).is_err(), "the legacy stream cannot be captured");

    let stream = ctx.new_stream().unwrap();
    stream.begin_capture(mode).unwrap();
    let e = stream.synchronize().unwrap_err();
    assert_eq!(e.0, CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    let ended = stream.end_capture(Flags(0)).map(|g| g.is_some());
    assert_eq!(ended.unwrap_err().0, CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

    let outside = stream.alloc_zeros::<f32>(4).unwrap();
    stream.synchronize().unwrap();
    stream.begin_capture(mode).unwrap();
    let (ptr, _) = outside.device_ptr(&stream);
    assert!(unsafe { result::free_async(ptr, stream.cu_stream()) }.is_err(), "not the capture's memory");
    assert!(stream.end_capture(Flags(0)).is_err(), "the capture was invalidated");
    drop(outside);

    for (flags, relaunches) in [(Flags(0), false), (Flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH, true)] {
        stream.begin_capture(mode).unwrap();
        // Graph memory, still allocated when the graph ends.
        let kept = stream.alloc_zeros::<f32>(4).unwrap();
        let graph = stream.end_capture(flags).unwrap().unwrap();
        graph.launch().unwrap();
        assert_eq!(graph.launch().is_ok(), relaunches, "{flags:?}");
        stream.synchronize().unwrap();
        drop(kept);
        drop(graph);
        stream.synchronize().unwrap();
    }
    ctx.check_err().unwrap();
}

/// A drop that fails while a step is captured stores its error in the context (cudarc's drops cannot return
/// one). The capture must still end: the error is reported then, the graph discarded, and the next op works. The
/// fake driver makes such a failure with `TINY_FAKE_CUDA_FAIL_FREE_IN_CAPTURE=1`, which holds for a whole process,
/// so the case runs in a process of its own: this test's binary again, with only the ignored test below.
#[test]
fn a_drop_that_fails_during_a_capture_ends_it_and_the_next_op_works() {
    let Some((_, _turn)) = gpu("a_drop_that_fails_during_a_capture_ends_it_and_the_next_op_works") else { return };
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "a_drop_failing_during_a_capture_in_this_process", "--ignored", "--nocapture"])
        .env("TINY_FAKE_CUDA_FAIL_FREE_IN_CAPTURE", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}{stderr}");
}

/// The body of the test above, in the process it starts.
#[test]
#[ignore = "run in a process of its own by a_drop_that_fails_during_a_capture_ends_it_and_the_next_op_works"]
fn a_drop_failing_during_a_capture_in_this_process() {
    let Some((device, _turn)) = gpu("a_drop_failing_during_a_capture_in_this_process") else { return };
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap().to_device(device).unwrap();
    // The temporary is the capture's own memory, freed on the capture's side stream when it is dropped.
    let captured = Graph::capture(device, || {
        let temporary = x.mul_scalar(2.0)?;
        temporary.add_scalar(1.0)
    });
    assert_eq!(x.mul_scalar(3.0).unwrap().to_vec(), vec![3.0, 6.0], "the capture ended: the stream works again");
    match captured {
        Err(e) => assert!(e.to_string().contains("could not report its error"), "{e}"),
        // A real GPU ignores the fake's variable: its free worked, and so did the capture.
        Ok((graph, y)) => {
            graph.replay().unwrap();
            assert_eq!(y.to_vec(), vec![3.0, 5.0]);
        }
    }
    assert_eq!(x.sum_all().unwrap().item().unwrap(), 3.0);
}
