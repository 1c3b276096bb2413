//! Times training steps (forward, backward, plain SGD) on random in-memory data, like the PyTorch
//! reference's `--bench-step`.
//!
//! `cargo run --release -p tiny-nn --example bench_step -- --model simple_cnn --bs 128 --size 64 --threads 1`
//! runs a few warm-up steps, then times `--steps` steps (on the CPU stopping early after `--max-secs`), and ends
//! with one JSON line: model, bs, size, threads, device, precision, tf32, cuda_graph, steps, the median step time
//! (`ms_per_step`), the best and the mean, img_per_s (at the median), how the steps were timed and the process's
//! peak resident memory. On a GPU (`--features cuda`, `--device cuda`, optionally `--tf32`) the steps are queued
//! back to back, as PyTorch's `bench_gpu.py` does, with a CUDA event recorded after each one: each step's time is
//! the GPU time between two events (`"timing":"cuda-events"`), and the host waits once, at the end (`wall_ms`,
//! the host's mean, is what `bench_gpu.py` reports). With `--cuda-graph` the whole step is captured once after the
//! warm-up into a CUDA graph (`tiny_tensor::cuda::Graph`) and each timed step is one replay of it (the JSON line
//! says `"cuda_graph":true`). `--help` lists the flags; an unknown flag or a bad value is refused.

use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tiny_nn::{Module, cross_entropy, resnet18, resnet34, resnet50, simple_cnn};
use tiny_tensor::{Device, Precision, Tensor, UpdateOp, UpdateProgram, autocast, foreach_update_, no_grad};

/// The command line.
#[derive(Debug, Parser)]
#[command(about = "Times training steps (forward, backward, plain SGD) of simple_cnn or a resnet on random data")]
struct Args {
    /// The model.
    #[arg(long, value_enum, default_value_t = Model::SimpleCnn)]
    model: Model,
    /// The batch size.
    #[arg(long, default_value_t = 128, value_parser = positive)]
    bs: usize,
    /// The images' side in pixels.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    size: usize,
    /// CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The steps timed.
    #[arg(long, default_value_t = 30, value_parser = positive)]
    steps: usize,
    /// The steps run before the clock starts.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// On the CPU, stop timing after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    max_secs: f64,
    /// SGD's learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// The precision of the model's products: fp32, or bf16 (autocast: convolutions and linear layers multiply in
    /// bf16 and sum in f32; the loss, the weights and SGD stay f32).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    /// Let matmuls and convolutions round their inputs to TF32 on a GPU.
    #[arg(long)]
    tf32: bool,
    /// Capture the step into a CUDA graph once and replay it for each timed step (needs --device cuda).
    #[arg(long)]
    cuda_graph: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Model {
    /// The chapter's simple_cnn.
    #[value(name = "simple_cnn")]
    SimpleCnn,
    /// torchvision's resnet18.
    #[value(name = "resnet18")]
    Resnet18,
    /// torchvision's resnet34.
    #[value(name = "resnet34")]
    Resnet34,
    /// torchvision's resnet50 (bottleneck blocks).
    #[value(name = "resnet50")]
    Resnet50,
    /// fastai's xresnet18.
    #[value(name = "xresnet18")]
    Xresnet18,
    /// fastai's xresnet34.
    #[value(name = "xresnet34")]
    Xresnet34,
    /// fastai's xresnet50.
    #[value(name = "xresnet50")]
    Xresnet50,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
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
    let args = Args::parse();
    let (device, bs, size, lr) = (args.device, args.bs, args.size, args.lr);
    #[cfg(feature = "cuda")]
    tiny_tensor::cuda::set_allow_tf32(args.tf32);
    #[cfg(not(feature = "cuda"))]
    if args.tf32 || args.cuda_graph || device != Device::Cpu {
        return Err("--tf32, --cuda-graph and --device cuda need a build with `--features cuda`".into());
    }
    if args.cuda_graph && device == Device::Cpu {
        return Err("--cuda-graph records GPU work into a CUDA graph: it needs --device cuda".into());
    }
    tiny_tensor::set_num_threads(args.threads);
    tiny_nn::manual_seed(0);
    let (model_name, model): (&str, Box<dyn Module>) = match args.model {
        Model::SimpleCnn => ("simple_cnn", Box::new(simple_cnn(10)?)),
        Model::Resnet18 => ("resnet18", Box::new(resnet18(10)?)),
        Model::Resnet34 => ("resnet34", Box::new(resnet34(10)?)),
        Model::Resnet50 => ("resnet50", Box::new(resnet50(10)?)),
        Model::Xresnet18 => ("xresnet18", Box::new(tiny_nn::xresnet18(10)?)),
        Model::Xresnet34 => ("xresnet34", Box::new(tiny_nn::xresnet34(10)?)),
        Model::Xresnet50 => ("xresnet50", Box::new(tiny_nn::xresnet50(10)?)),
    };
    model.to_device(device)?;
    model.train(true);
    let mut rng = StdRng::seed_from_u64(0);
    // Channels-last, as tiny's loader delivers a batch (NHWC permuted to NCHW) and as the reference's
    // --channels-last makes it once before timing: the stem then reads it in place instead of copying it each step.
    let x = Tensor::randn(&[bs, 3, size, size], &mut rng).to_device(device)?.to_channels_last()?;
    let y: Vec<u32> = (0..bs as u32).map(|i| i % 10).collect();
    let params = model.parameters();
    let step = || -> Result<Tensor, Box<dyn std::error::Error>> {
        // The forward and the loss under autocast, as fastai's to_bf16() and the reference's --amp bf16 do; the
        // loss is f32 either way (the policy), and the backward keeps the precision its ops recorded.
        let loss = {
            let _precision = autocast(args.precision);
            cross_entropy(&model.forward(&x)?, &y)?
        };
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
    for _ in 0..args.warmup {
        step()?.item()?;
    }
    let start = Instant::now();
    // Each step's seconds: from CUDA events on a GPU, from the host's clock on the CPU.
    let (mut times, timing) = match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => (time_on_gpu(device, args.steps, args.cuda_graph, &step)?, "cuda-events"),
        _ => {
            let mut times = Vec::new();
            for _ in 0..args.steps {
                let t = Instant::now();
                step()?.item()?;
                times.push(t.elapsed().as_secs_f64());
                if start.elapsed().as_secs_f64() > args.max_secs {
                    break;
                }
            }
            (times, "host")
        }
    };
    let wall = start.elapsed().as_secs_f64() / times.len().max(1) as f64;
    let timed = times.len();
    let mean = times.iter().sum::<f64>() / timed.max(1) as f64;
    times.sort_by(f64::total_cmp);
    let (median, best) = (median_of(&times), times.first().copied().unwrap_or(f64::NAN));
    println!(
        "step {model_name} bs {bs} size {size} threads {}: median {:.1} ms ({:.0} img/s), best {:.1} ms, {timed} steps \
         ({timing})",
        tiny_tensor::num_threads(),
        median * 1e3,
        bs as f64 / median,
        best * 1e3,
    );
    println!(
        "{{\"model\":\"{model_name}\",\"bs\":{bs},\"size\":{size},\"threads\":{},\"device\":\"{device}\",\
         \"precision\":\"{}\",\"tf32\":{},\"cuda_graph\":{},\"steps\":{timed},\"ms_per_step\":{:.3},\"best_ms\":{:.3},\
         \"mean_ms\":{:.3},\"wall_ms\":{:.3},\"img_per_s\":{:.1},\"timing\":\"{timing}\",\"peak_rss_mib\":{:.0}}}",
        tiny_tensor::num_threads(),
        args.precision,
        args.tf32,
        args.cuda_graph,
        median * 1e3,
        best * 1e3,
        mean * 1e3,
        wall * 1e3,
        bs as f64 / median,
        peak_rss_mib()
    );
    Ok(())
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
fn median_of(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs `steps` steps on the GPU, queued back to back with a CUDA event after each, and returns each step's GPU
/// time in seconds. With `graph` the step is captured once and each timed step is a replay; one replay before
/// the first event uploads the graph to the GPU.
#[cfg(feature = "cuda")]
fn time_on_gpu(
    device: Device,
    steps: usize,
    graph: bool,
    step: &dyn Fn() -> Result<Tensor, Box<dyn std::error::Error>>,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    use tiny_tensor::cuda::{EventTimer, Graph};
    let graph = if graph {
        // The whole step (forward, backward, SGD, zero_grad) recorded once on the fixed input, then replayed; the
        // loss is the graph's static output.
        let (graph, loss) = Graph::capture(device, step)?;
        graph.replay()?;
        loss.item()?;
        Some((graph, loss))
    } else {
        None
    };
    let mut timer = EventTimer::new(device)?;
    timer.mark()?;
    let mut last = None;
    for _ in 0..steps {
        last = Some(match &graph {
            Some((graph, loss)) => {
                graph.replay()?;
                loss.clone()
            }
            None => step()?,
        });
        timer.mark()?;
    }
    if let Some(loss) = last {
        loss.item()?;
    }
    Ok(timer.intervals_ms()?.into_iter().map(|ms| ms / 1e3).collect())
}
