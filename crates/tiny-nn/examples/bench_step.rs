//! Times training steps (forward, backward, plain SGD) on random in-memory data, like the PyTorch
//! reference's `--bench-step`.
//!
//! `cargo run --release -p tiny-nn --example bench_step -- --model simple_cnn --bs 128 --size 64 --threads 1`
//! runs a few warm-up steps, then times `--steps` steps (stopping early after `--max-secs`), and ends
//! with one JSON line: model, bs, size, threads, device, tf32, median and best step time, img_per_s (median)
//! and the process's peak resident memory. On a GPU (`--features cuda`, `--device cuda`, optionally `--tf32`)
//! the steps are queued back to back and the host waits once at the end, as PyTorch's `bench_gpu.py` does;
//! `ms_per_step` is then the mean. With `--cuda-graph` the whole step is captured once after the warm-up into a
//! CUDA graph (`tiny_tensor::cuda::Graph`) and each timed step is one replay of it (the JSON line says
//! `"cuda_graph":true`).

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_nn::{Module, cross_entropy, resnet18, simple_cnn};
use tiny_tensor::{Device, Tensor, UpdateOp, UpdateProgram, foreach_update_, no_grad};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The peak resident set size of this process in MiB, from /proc (0 where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_name: String = arg(&args, "--model", "simple_cnn".to_string());
    let (bs, size) = (arg(&args, "--bs", 128usize), arg(&args, "--size", 64usize));
    let threads = arg(&args, "--threads", 0usize);
    let (steps, warmup, max_secs) =
        (arg(&args, "--steps", 30usize), arg(&args, "--warmup", 3usize), arg(&args, "--max-secs", 120.0f64));
    let lr = arg(&args, "--lr", 0.01f32);
    let device: Device = arg(&args, "--device", "cpu".to_string()).parse()?;
    let tf32 = args.iter().any(|a| a == "--tf32");
    let cuda_graph = args.iter().any(|a| a == "--cuda-graph");
    #[cfg(feature = "cuda")]
    tiny_tensor::cuda::set_allow_tf32(tf32);
    #[cfg(not(feature = "cuda"))]
    if tf32 || cuda_graph || device != Device::Cpu {
        return Err("--tf32, --cuda-graph and --device cuda need a build with `--features cuda`".into());
    }
    if cuda_graph && device == Device::Cpu {
        return Err("--cuda-graph records GPU work into a CUDA graph: it needs --device cuda".into());
    }
    tiny_tensor::set_num_threads(threads);
    tiny_nn::manual_seed(0);
    let model: Box<dyn Module> = match model_name.as_str() {
        "simple_cnn" => Box::new(simple_cnn(10)?),
        "resnet18" => Box::new(resnet18(10)?),
        other => return Err(format!("unknown model {other}; expected simple_cnn or resnet18").into()),
    };
    model.to_device(device)?;
    model.train(true);
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::randn(&[bs, 3, size, size], &mut rng).to_device(device)?;
    let y: Vec<u32> = (0..bs as u32).map(|i| i % 10).collect();
    let params = model.parameters();
    let step = || -> Result<Tensor, Box<dyn std::error::Error>> {
        let loss = cross_entropy(&model.forward(&x)?, &y)?;
        loss.backward()?;
        let _guard = no_grad();
        // Plain SGD, p -= lr * g, for all parameters in one fused update (one kernel launch on a GPU).
        let grads: Vec<_> = params.iter().filter_map(|p| Some((p, p.grad()?))).collect();
        let items: Vec<[&Tensor; 2]> = grads.iter().map(|(p, g)| [p.tensor(), g]).collect();
        let items: Vec<&[&Tensor]> = items.iter().map(|i| &i[..]).collect();
        let sgd = UpdateProgram {
            tensors: 2,
            ops: vec![UpdateOp::Axpby { dst: 0, a: 1.0, x: 0, b: -lr, y: 1 }],
            writes: vec![0],
        };
        foreach_update_(&items, &sgd)?;
        params.iter().for_each(|p| p.zero_grad());
        Ok(loss)
    };
    for _ in 0..warmup {
        step()?.item()?;
    }
    let mut times = Vec::new();
    #[cfg(feature = "cuda")]
    let graph = if cuda_graph {
        // The whole step (forward, backward, SGD, zero_grad) recorded once on the fixed input, then replayed; the
        // loss is the graph's static output. One replay before the clock starts uploads the graph to the GPU.
        let (graph, loss) = tiny_tensor::cuda::Graph::capture(device, step)?;
        graph.replay()?;
        loss.item()?;
        Some((graph, loss))
    } else {
        None
    };
    let start = Instant::now();
    // The steps timed: each one on the CPU, all of them together (one mean) on a GPU.
    let mut timed = 0;
    if let Device::Cuda(_) = device {
        // Like the PyTorch reference: queue the steps, wait once at the end, report the mean.
        let mut last = None;
        for _ in 0..steps {
            #[cfg(feature = "cuda")]
            if let Some((graph, loss)) = &graph {
                graph.replay()?;
                last = Some(loss.clone());
                continue;
            }
            last = Some(step()?);
        }
        if let Some(loss) = last {
            loss.item()?;
        }
        times = vec![start.elapsed().as_secs_f64() / steps.max(1) as f64];
        timed = steps;
    } else {
        for _ in 0..steps {
            let t = Instant::now();
            step()?.item()?;
            times.push(t.elapsed().as_secs_f64());
            timed += 1;
            if start.elapsed().as_secs_f64() > max_secs {
                break;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let (median, best) = (times[times.len() / 2], times[0]);
    println!(
        "step {model_name} bs {bs} size {size} threads {}: median {:.1} ms ({:.0} img/s), best {:.1} ms, {} steps",
        tiny_tensor::num_threads(),
        median * 1e3,
        bs as f64 / median,
        best * 1e3,
        timed
    );
    println!(
        "{{\"model\":\"{model_name}\",\"bs\":{bs},\"size\":{size},\"threads\":{},\"device\":\"{device}\",\"tf32\":{tf32},\"cuda_graph\":{cuda_graph},\"steps\":{},\"ms_per_step\":{:.3},\"best_ms\":{:.3},\"img_per_s\":{:.1},\"peak_rss_mib\":{:.0}}}",
        tiny_tensor::num_threads(),
        timed,
        median * 1e3,
        best * 1e3,
        bs as f64 / median,
        peak_rss_mib()
    );
    Ok(())
}
