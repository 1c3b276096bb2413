//! The Learner on a CUDA GPU: a fit with OneCycle, Mixup and momentum learns the textures as on the CPU,
//! the LR finder restores the model, and a checkpoint saved from the GPU loads back onto it. The train example's
//! `GraphStep` (`--cuda-graph`) fits exactly as the eager loop does and refuses callbacks that change the step, and
//! `train --cuda-graph` runs end to end.
//!
//! Built only with `--features cuda`; without a GPU each test prints that it was skipped and passes.
#![cfg(feature = "cuda")]

mod common;

#[cfg(feature = "plot")]
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use common::{temp_dir, textures, weights};
use tiny_learner::{
    Callback, DataLoaders, GraphStep, InMemory, Learner, LearnerError, LrFinder, Mixup, OneCycle, SetupLearner,
    TrackResults,
};
use tiny_nn::{cross_entropy, simple_cnn};
use tiny_optim::Sgd;
use tiny_tensor::{Device, Tensor, cuda};

/// The tests of this file take turns on the GPU, so that one can measure its memory while no other runs.
static TURN: Mutex<()> = Mutex::new(());

/// The GPU for a test, held alone until the guard drops, or `None` where there is no GPU.
fn gpu(test: &str) -> Option<(Device, MutexGuard<'static, ()>)> {
    let device = tiny_fixtures::gpu_or_skip(test, Device::new_cuda(0))?;
    Some((device, TURN.lock().unwrap_or_else(|e| e.into_inner())))
}

/// simple_cnn on 16x16 textures (NHWC batches on the host, as the loader gives them) on `device`.
fn learner(device: Device, cbs: Vec<Box<dyn Callback>>) -> Learner {
    let (x, y) = textures(240, 1);
    let (vx, vy) = textures(90, 2);
    let x = Tensor::from_vec(x, &[240, 16, 16, 3]).unwrap();
    let vx = Tensor::from_vec(vx, &[90, 16, 16, 3]).unwrap();
    let dls = DataLoaders::new(InMemory::new(x, y, 32).unwrap().shuffle(3), InMemory::new(vx, vy, 45).unwrap());
    let mut all: Vec<Box<dyn Callback>> = vec![Box::new(SetupLearner::normalize(device, [0.5; 3], [0.3; 3]))];
    all.extend(cbs);
    tiny_nn::manual_seed(0);
    Learner::new(Box::new(simple_cnn(3).unwrap()), dls, cross_entropy, 0.2, all)
        .with_seed(4)
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)))
}

#[test]
fn a_fit_on_the_gpu_matches_the_cpu() {
    let Some((device, _alone)) = gpu("a_fit_on_the_gpu_matches_the_cpu") else { return };
    let run = |device| {
        let cbs: Vec<Box<dyn Callback>> =
            vec![Box::new(TrackResults::quiet()), Box::new(OneCycle::new(0.2)), Box::new(Mixup::new(0.4).unwrap())];
        let mut learn = learner(device, cbs);
        learn.fit(3).unwrap();
        let valid = learn.callback::<TrackResults>().unwrap().last_valid().unwrap().clone();
        (valid.loss, valid.acc)
    };
    let (cpu_loss, cpu_acc) = run(Device::Cpu);
    let (gpu_loss, gpu_acc) = run(device);
    assert!((cpu_loss - gpu_loss).abs() < 1e-2 * (1.0 + cpu_loss.abs()), "loss cpu {cpu_loss} vs gpu {gpu_loss}");
    assert!((cpu_acc - gpu_acc).abs() <= 0.05, "accuracy cpu {cpu_acc} vs gpu {gpu_acc}");
}

#[test]
fn ema_averages_on_the_gpu_as_on_the_cpu_and_its_checkpoint_round_trips() {
    // Issue 30: the average is one foreach launch per step on the GPU.
    let Some((device, _alone)) = gpu("ema_averages_on_the_gpu_as_on_the_cpu_and_its_checkpoint_round_trips") else {
        return;
    };
    let run = |device| {
        let mut learn = learner(device, vec![Box::new(tiny_learner::Ema::new(0.9).unwrap())]);
        learn.fit(2).unwrap();
        let (avg, updates) = tiny_learner::Ema::averaged(learn.state()).unwrap();
        assert_eq!(avg[0].1.device(), device);
        (avg.iter().map(|(_, t)| t.to_vec()).collect::<Vec<_>>(), updates, learn)
    };
    let (cpu, cpu_updates, _) = run(Device::Cpu);
    let (gpu, gpu_updates, learn) = run(device);
    assert_eq!(cpu_updates, gpu_updates);
    for (c, g) in cpu.iter().zip(&gpu) {
        let largest = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let gap = c.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(gap <= 1e-3 * largest.max(1.0), "the GPU's average is {gap} from the CPU's");
    }
    let path = temp_dir("cuda-ema").join("ckpt.safetensors");
    learn.save_checkpoint(&path, 2).unwrap();
    let mut fresh = learner(device, vec![Box::new(tiny_learner::Ema::new(0.9).unwrap())]);
    fresh.load_checkpoint(&path).unwrap();
    let (loaded, updates) = tiny_learner::Ema::averaged(fresh.state()).unwrap();
    assert_eq!(updates, gpu_updates);
    let mut loaded: Vec<(String, Vec<f32>)> = loaded.iter().map(|(n, t)| (n.clone(), t.to_vec())).collect();
    let mut saved: Vec<(String, Vec<f32>)> =
        tiny_learner::Ema::averaged(learn.state()).unwrap().0.iter().map(|(n, t)| (n.clone(), t.to_vec())).collect();
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded, saved);
}

#[test]
fn lr_find_restores_the_model_on_the_gpu() {
    let Some((device, _alone)) = gpu("lr_find_restores_the_model_on_the_gpu") else { return };
    let mut learn = learner(device, vec![]);
    let before = weights(learn.model.as_ref());
    let res = learn.lr_find(LrFinder::new()).unwrap();
    assert!(!res.lrs.is_empty());
    assert_eq!(before, weights(learn.model.as_ref()), "the model is restored after the LR finder");
}

#[test]
fn checkpoints_round_trip_through_the_gpu() {
    let Some((device, _alone)) = gpu("checkpoints_round_trip_through_the_gpu") else { return };
    let path = temp_dir("cuda-ckpt").join("ckpt.safetensors");
    let mut learn = learner(device, vec![]);
    learn.fit(1).unwrap();
    learn.save_checkpoint(&path, 1).unwrap();
    let saved = weights(learn.model.as_ref());
    // A fresh learner whose model is already on the GPU loads the checkpoint onto it.
    let mut fresh = learner(device, vec![]);
    fresh.model.to_device(device).unwrap();
    fresh.load_checkpoint(&path).unwrap();
    assert_eq!(fresh.model.parameters()[0].device(), device);
    assert_eq!(saved, weights(fresh.model.as_ref()));
}

#[test]
fn gpu_memory_stays_flat_from_epoch_to_epoch() {
    let Some((device, _alone)) = gpu("gpu_memory_stays_flat_from_epoch_to_epoch") else { return };
    let Device::Cuda(ordinal) = device else { unreachable!() };
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(TrackResults::quiet()), Box::new(OneCycle::new(0.2))];
    let mut learn = learner(device, cbs);
    // Two epochs warm the pool up (the training and validation batch sizes, the optimizer's buffers).
    learn.fit(2).unwrap();
    let warm = cuda::memory_allocated(ordinal).unwrap();
    learn.fit(6).unwrap();
    let after = cuda::memory_allocated(ordinal).unwrap();
    // The allowance is for the pool's granularity on a GPU; leaking one uploaded batch a step would add
    // 6 epochs x 8 steps x 96 KiB, about 4.5 MiB.
    assert!(after <= warm + (2 << 20), "GPU memory grew from {warm} to {after} bytes in six epochs");
}

#[test]
fn get_preds_metrics_and_an_export_work_from_the_gpu() {
    // Issue 14 on a GPU: metrics and get_preds keep their tensors on the device, and an export written from
    // GPU weights predicts the same classes on the CPU.
    let Some((device, _alone)) = gpu("get_preds_metrics_and_an_export_work_from_the_gpu") else { return };
    let metrics = tiny_learner::metrics_from_names("accuracy,f1,top_k:2").unwrap();
    let info = tiny_learner::ExportInfo::new(
        "simple_cnn",
        &["a".into(), "b".into(), "c".into()],
        tiny_data::Normalize { mean: [0.5; 3], std: [0.3; 3] },
        tiny_data::ItemTransform::squash(16),
    );
    let mut learn = learner(device, vec![Box::new(TrackResults::quiet())]).with_metrics(metrics).with_export_info(info);
    learn.fit(2).unwrap();
    let valid = learn.callback::<TrackResults>().unwrap().last_valid().unwrap().clone();
    let preds = learn.get_preds(true).unwrap();
    assert_eq!(preds.probs.device(), Device::Cpu, "get_preds hands its results back on the CPU");
    assert_eq!(preds.accuracy().unwrap(), valid.acc);
    assert!(valid.metric("top_2_accuracy").unwrap() >= valid.acc);
    let losses = preds.losses.as_ref().unwrap();
    let mean = losses.iter().sum::<f32>() / losses.len() as f32;
    assert!((mean - valid.loss).abs() < 1e-4, "{mean} vs {}", valid.loss);

    let path = temp_dir("cuda-export").join("model.safetensors");
    learn.export(&path).unwrap();
    let mut cpu = tiny_learner::load_learner(&path, Device::Cpu).unwrap();
    let (vx, vy) = textures(90, 2);
    let vx = Tensor::from_vec(vx, &[90, 16, 16, 3]).unwrap();
    let on_cpu = cpu.get_preds_on(Box::new(InMemory::new(vx, vy, 45).unwrap()), false).unwrap();
    assert_eq!(on_cpu.decoded().unwrap(), preds.decoded().unwrap());
    for (a, b) in on_cpu.probs.to_vec().iter().zip(preds.probs.to_vec()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn aug_transforms_give_the_same_batches_on_the_gpu() {
    // fastai's aug_transforms run on the batch tensor, so the GPU sees the CPU's augmented images.
    let Some((device, _alone)) = gpu("aug_transforms_give_the_same_batches_on_the_gpu") else { return };
    let stats = tiny_data::Normalize { mean: [0.5; 3], std: [0.3; 3] };
    let run = |device| {
        let mut learn = learner(device, vec![Box::new(tiny_learner::AugTransforms::new(stats))]);
        let mut first = learn.state().dls.train.batches(0);
        learn.state_mut().batch = first.next().unwrap().unwrap();
        learn.state_mut().training = true;
        learn.event(tiny_learner::Event::BeforeBatch).unwrap();
        learn.state().batch.x.to_device(Device::Cpu).unwrap().to_vec()
    };
    let (cpu, gpu) = (run(Device::Cpu), run(device));
    assert_eq!(cpu.len(), gpu.len());
    for (a, b) in cpu.iter().zip(&gpu) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn a_fit_replayed_from_cuda_graphs_is_the_eager_fit() {
    let Some((device, _alone)) = gpu("a_fit_replayed_from_cuda_graphs_is_the_eager_fit") else { return };
    let run = |graphs: bool| {
        let mut cbs: Vec<Box<dyn Callback>> = vec![Box::new(TrackResults::quiet())];
        if graphs {
            cbs.push(Box::new(GraphStep::new(device)));
        }
        let mut learn = learner(device, cbs);
        learn.fit(2).unwrap();
        let history = learn.callback::<TrackResults>().unwrap().history.clone();
        let losses: Vec<(f32, f32)> = history.iter().map(|r| (r.loss, r.acc)).collect();
        let replayed = learn.callback::<GraphStep>().map_or(0, |g| g.replayed);
        (losses, weights(learn.model.as_ref()), replayed)
    };
    let (eager_losses, eager_weights, _) = run(false);
    let (losses, weights, replayed) = run(true);
    // 240 images in batches of 32: per epoch seven full batches and one of 16, which runs eagerly, as does the
    // fit's first batch.
    assert_eq!(replayed, 13);
    assert_eq!(losses, eager_losses, "training and validation losses and accuracies, to the bit");
    assert_eq!(weights, eager_weights, "the weights after the fit, to the bit");
}

#[test]
fn graph_step_refuses_callbacks_and_optimizers_that_change_the_step() {
    // Refused in before_fit, before any GPU work, so the CPU learner shows it.
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(GraphStep::new(Device::Cpu)), Box::new(OneCycle::new(0.1))];
    let mut learn = learner(Device::Cpu, cbs);
    match learn.fit(1) {
        Err(LearnerError::InvalidArgument { what: "GraphStep", msg }) => {
            assert!(msg.contains("OneCycle changes the learning rate every batch"), "{msg}")
        }
        other => panic!("expected GraphStep to refuse OneCycle, got {other:?}"),
    }
    let mut learn = learner(Device::Cpu, vec![Box::new(GraphStep::new(Device::Cpu))])
        .with_opt_func(|ps, lr| Box::new(tiny_optim::Adam::new(ps, lr)));
    match learn.fit(1) {
        Err(LearnerError::InvalidArgument { what: "GraphStep", msg }) => {
            assert!(msg.contains("the optimizer corrects its moments by a step count"), "{msg}")
        }
        other => panic!("expected GraphStep to refuse Adam, got {other:?}"),
    }
    // A model with a training Dropout: a replay would repeat its captured mask (fastai's head, issue 30).
    let (x, y) = textures(16, 1);
    let x = Tensor::from_vec(x, &[16, 16, 16, 3]).unwrap();
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 8).unwrap(), InMemory::new(x, y, 8).unwrap());
    let head = tiny_nn::vision_resnet(tiny_nn::resnet18(3).unwrap(), 3, 0.5).unwrap();
    let mut learn = Learner::new(head, dls, cross_entropy, 0.1, vec![Box::new(GraphStep::new(Device::Cpu))]);
    match learn.fit(1) {
        Err(LearnerError::InvalidArgument { what: "GraphStep", msg }) => {
            assert!(msg.contains("layer 1.3") && msg.contains("dropout mask"), "{msg}")
        }
        other => panic!("expected GraphStep to refuse a Dropout, got {other:?}"),
    }
    // Multi-label data: its binary loss builds the multi-hot targets on the host each step.
    let (x, _) = textures(16, 1);
    let x = Tensor::from_vec(x, &[16, 16, 16, 3]).unwrap();
    let hot = tiny_data::Targets::multi_hot((0..48).map(|i| u32::from(i % 3 == 0)).collect(), 3).unwrap();
    let source = || InMemory::with_targets(x.clone(), hot.clone(), 8).unwrap();
    let dls = DataLoaders::new(source(), source());
    let model = tiny_nn::simple_cnn(3).unwrap();
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(GraphStep::new(Device::Cpu))];
    let mut learn = Learner::new(model, dls, tiny_nn::bce_with_logits_flat, 0.1, cbs);
    match learn.fit(1) {
        Err(LearnerError::InvalidArgument { what: "GraphStep", msg }) => {
            assert!(msg.contains("multi-label data"), "{msg}")
        }
        other => panic!("expected GraphStep to refuse multi-label data, got {other:?}"),
    }
}

/// The value of `"key":` in a JSON line, as written.
#[cfg(feature = "plot")]
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let at = json.find(&format!("\"{key}\":")).map(|i| i + key.len() + 3).unwrap_or(json.len());
    json[at..].split([',', '}']).next().unwrap_or_default()
}

// The train example needs the `plot` feature.
#[test]
#[cfg(feature = "plot")]
fn train_runs_with_cuda_graphs() {
    let Some((_, _alone)) = gpu("train_runs_with_cuda_graphs") else { return };
    let train = tiny_fixtures::cuda_example("tiny-learner", "train");
    let data = temp_dir("cuda-graph-train").join("data");
    tiny_data::synth::generate_with(&data, 0.02, 7, 2).unwrap();
    let run = |extra: &[&str]| -> Output {
        let base = ["--size", "16", "--bs", "16", "--workers", "1", "--threads", "1", "--epochs", "2"];
        Command::new(&train)
            .arg("--data")
            .arg(&data)
            .args(base)
            .args(["--device", "cuda", "--momentum", "0.9"])
            .args(extra)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run the train example")
    };
    let json = |out: &Output| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default().to_owned()
    };
    let graphed = json(&run(&["--cuda-graph"]));
    let eager = json(&run(&[]));
    assert_eq!(field(&graphed, "cuda_graph"), "true", "{graphed}");
    assert!(field(&graphed, "graph_steps").parse::<usize>().unwrap() > 0, "{graphed}");
    assert_eq!(field(&eager, "graph_steps"), "0", "{eager}");
    for key in ["train_loss", "valid_loss", "valid_acc"] {
        assert_eq!(field(&graphed, key), field(&eager, key), "{key}: {graphed} vs {eager}");
    }

    // A schedule changes the learning rate that a graph would keep: GraphStep refuses it, and the CLI the CPU.
    let out = run(&["--cuda-graph", "--onecycle"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("OneCycle changes the learning rate every batch")
    );
    let out = Command::new(&train).args(["--data"]).arg(&data).args(["--cuda-graph"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--device cuda"));
}
