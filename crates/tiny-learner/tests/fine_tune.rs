//! fastai's recipes: splitters and freezing, discriminative learning rates, `fit_one_cycle`'s schedule,
//! `fine_tune`, and gradient accumulation that equals one larger batch.

mod common;

use common::{mlp, point_loaders, points, weights};
use tiny_learner::{
    Callback, DataLoaders, FitOneCycle, GradientAccumulation, InMemory, Learner, LrRange, TrackResults, head_split,
    resnet_split,
};
use tiny_nn::{Module, cross_entropy, resnet18};
use tiny_optim::Sgd;
use tiny_tensor::Tensor;

/// A resnet18 for 3 classes on 12 random 32 px images, in batches of 4, with the resnet splitter.
fn small_resnet(cbs: Vec<Box<dyn Callback>>) -> Learner {
    tiny_nn::manual_seed(2);
    let x: Vec<f32> = (0..12 * 3 * 32 * 32).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let x = Tensor::from_vec(x, &[12, 3, 32, 32]).unwrap();
    let y: Vec<u32> = (0..12).map(|i| i % 3).collect();
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 4).unwrap(), InMemory::new(x, y, 6).unwrap());
    Learner::new(Box::new(resnet18(3).unwrap()), dls, cross_entropy, 0.05, cbs)
        .with_splitter(Box::new(resnet_split))
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)))
}

/// Each parameter's name and values.
fn named(model: &dyn Module) -> Vec<(String, Vec<f32>)> {
    model.named_parameters().into_iter().map(|(n, p)| (n, p.to_vec())).collect()
}

#[test]
fn a_frozen_body_is_unchanged_after_a_fit_but_its_batchnorm_and_the_head_train() {
    let mut learn = small_resnet(vec![]);
    learn.freeze().unwrap();
    let before = named(learn.model.as_ref());
    learn.fit(1).unwrap();
    let after = named(learn.model.as_ref());
    let groups = learn.opt.as_ref().unwrap().param_groups().iter().map(|g| g.params.len()).collect::<Vec<_>>();
    let (mut frozen, mut bn, mut head) = (0, 0, 0);
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        let is_bn = name.contains("bn") || name.contains("downsample.1");
        if name.starts_with("fc.") {
            assert_ne!(a, b, "{name}: the head trains");
            head += 1;
        } else if is_bn {
            assert_ne!(a, b, "{name}: batchnorm in a frozen body keeps training (train_bn)");
            bn += 1;
        } else {
            assert_eq!(a, b, "{name}: frozen");
            frozen += 1;
        }
    }
    assert_eq!((frozen, head), (20, 2), "resnet18's 17 convolutions and 3 downsamples, and its fc");
    assert!(bn > 30, "{bn} batchnorm parameters");
    // The optimizer holds only what trains: the batchnorm parameters of the two frozen groups, and the head.
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[2], 2);
    assert_eq!(groups[0] + groups[1], bn);

    // Backward skipped the frozen weights: they do not require grad and hold no gradient.
    for (name, p) in learn.model.named_parameters() {
        let frozen = !(name.starts_with("fc.") || name.contains("bn") || name.contains("downsample.1"));
        assert_eq!(p.requires_grad(), !frozen, "{name}");
    }
    learn.unfreeze().unwrap();
    learn.fit(1).unwrap();
    assert!(learn.model.parameters().iter().all(|p| p.requires_grad()), "unfrozen, everything requires grad again");
    let unfrozen = named(learn.model.as_ref());
    assert!(after.iter().zip(&unfrozen).all(|((n, a), (_, u))| a != u || n.is_empty()), "everything trains");
    assert!(learn.freeze_to(3).is_err(), "freezing all three groups would leave nothing to train");
}

#[test]
fn fit_one_cycle_gives_each_group_fastai_s_rates() {
    // fastai: combined_cos(0.25, lr_max/25, lr_max, lr_max/1e5) per group, lr_max from slice(1e-5, 1e-3).
    let sched = FitOneCycle::new(LrRange::Slice(1e-5, 1e-3));
    let peaks = LrRange::Slice(1e-5, 1e-3).per_group(3);
    assert!((peaks[0] - 1e-5).abs() < 1e-12 && (peaks[1] - 1e-4).abs() < 1e-10 && peaks[2] == 1e-3);
    for &peak in &peaks {
        assert!((sched.lr_at(peak, 0.0) - peak / 25.0).abs() <= 1e-6 * peak);
        assert!((sched.lr_at(peak, 0.25) - peak).abs() <= 1e-6 * peak);
        assert!((sched.lr_at(peak, 1.0) - peak / 1e5).abs() <= 1e-6 * peak);
        // Half-way down: the mean of the peak and the end, as a cosine passes its middle.
        let mid = sched.lr_at(peak, 0.625);
        assert!((mid - (peak + peak / 1e5) / 2.0).abs() <= 1e-5 * peak, "{mid}");
    }
    // The same rates reach the optimizer's groups during a fit: 3 epochs of 3 batches on the resnet.
    let mut learn = small_resnet(vec![Box::new(FitOneCycle::new(LrRange::Slice(1e-5, 1e-3)))]);
    learn.fit(3).unwrap();
    let lrs = &learn.callback::<FitOneCycle>().unwrap().lrs();
    assert_eq!(lrs.len(), 9);
    for (g, &peak) in peaks.iter().enumerate() {
        assert!((lrs[0][g] - peak / 25.0).abs() <= 1e-6 * peak, "group {g} at the start: {}", lrs[0][g]);
    }
    let groups = learn.opt.as_ref().unwrap().param_groups();
    assert!((groups[0].momentum - FitOneCycle::new(LrRange::One(1.0)).moms.unwrap().0).abs() < 0.02);
}

#[test]
fn accumulating_two_batches_of_64_equals_one_batch_of_128() {
    // No batchnorm and no shuffling: the only difference would be how the gradients are added up.
    let run = |bs: usize, acc: Option<usize>| {
        tiny_nn::manual_seed(9);
        let mut cbs: Vec<Box<dyn Callback>> = vec![];
        if let Some(n) = acc {
            cbs.push(Box::new(GradientAccumulation::new(n).unwrap()));
        }
        cbs.push(Box::new(TrackResults::quiet()));
        let mut learn = Learner::new(mlp(), point_loaders(512, 64, bs, None), cross_entropy, 0.5, cbs)
            .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr).momentum(0.9)));
        learn.fit(2).unwrap();
        let loss = learn.callback::<TrackResults>().unwrap().last_train().unwrap().loss;
        (weights(learn.model.as_ref()), loss)
    };
    let (big, big_loss) = run(128, None);
    let (acc, acc_loss) = run(64, Some(128));
    let (small, _) = run(64, None);
    for (a, b) in acc.iter().flatten().zip(big.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert!((acc_loss - big_loss).abs() < 0.05, "the recorded loss is the batches' own: {acc_loss} vs {big_loss}");
    assert_ne!(small, big, "without accumulation, batches of 64 train differently");
    assert!(GradientAccumulation::new(0).is_err());
}

#[test]
fn fine_tune_trains_the_head_first_then_everything() {
    let (x, y) = points(64, 3);
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 16).unwrap(), InMemory::new(x, y, 32).unwrap());
    tiny_nn::manual_seed(4);
    let mut learn = Learner::new(mlp(), dls, cross_entropy, 0.1, vec![Box::new(TrackResults::quiet())])
        .with_splitter(head_split("2"))
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr)));
    let start = named(learn.model.as_ref());
    learn.freeze().unwrap();
    learn.fit_one_cycle(1, LrRange::UpTo(0.5)).unwrap();
    let frozen = named(learn.model.as_ref());
    assert_eq!(start[..2], frozen[..2], "the body (layer 0) is frozen in the first stage");
    assert_ne!(start[2..], frozen[2..], "the head (layer 2) trains");

    tiny_nn::manual_seed(4);
    let (x, y) = points(64, 3);
    let dls = DataLoaders::new(InMemory::new(x.clone(), y.clone(), 16).unwrap(), InMemory::new(x, y, 32).unwrap());
    let mut learn = Learner::new(mlp(), dls, cross_entropy, 0.1, vec![Box::new(TrackResults::quiet())])
        .with_splitter(head_split("2"))
        .with_opt_func(|ps, lr| Box::new(Sgd::new(ps, lr)));
    learn.fine_tune(2, 0.5, 1).unwrap();
    let history = &learn.callback::<TrackResults>().unwrap().history;
    assert_eq!(history.iter().filter(|r| r.train).count(), 3, "one frozen epoch, then two");
    let tuned = named(learn.model.as_ref());
    assert_ne!(start[..2], tuned[..2], "the body trains once unfrozen");
    let groups = learn.opt.as_ref().unwrap().param_groups();
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|g| g.params.len() == 2), "both groups are whole again");
}

#[test]
fn summary_follows_the_freezing_and_lists_the_callbacks() {
    // Issue 30: fastai's learn.summary(), on one training item at the loader's batch size.
    let mut learn = small_resnet(vec![Box::new(TrackResults::quiet())]);
    let table = learn.summary().unwrap();
    assert!(table.starts_with("ResNet (Input shape: 4 x 3 x 32 x 32)"), "{table}");
    assert!(table.contains("Total trainable params: 11,178,051\nTotal non-trainable params: 0\n"), "{table}");
    assert!(table.ends_with("Model unfrozen\n\nCallbacks:\n  - Recorder\n  - TrackResults\n"), "{table}");
    // Frozen as fine_tune's first stage: the head and the body's batchnorms train (train_bn), the rest not.
    learn.freeze().unwrap();
    let table = learn.summary().unwrap();
    assert!(table.contains("Model frozen up to parameter group #2"), "{table}");
    let trained: usize = learn
        .state()
        .model
        .named_parameters()
        .iter()
        .filter(|(n, _)| n.starts_with("fc.") || n.contains("bn") || n.contains("downsample.1"))
        .map(|(_, p)| p.numel())
        .sum();
    let line = table.lines().find(|l| l.starts_with("Total trainable params:")).unwrap();
    assert_eq!(line.replace(',', ""), format!("Total trainable params: {trained}"));
}

#[test]
fn fastais_vision_model_splits_as_fastais_resnet_split() {
    // Issue 30: `_resnet_split`: the body to layer2, layer3 and layer4, the head.
    let model = tiny_learner::Arch::named("resnet18").unwrap().build_with(10, tiny_learner::Head::Fastai).unwrap();
    let groups = tiny_learner::fastai_resnet_split(model.as_ref());
    assert_eq!(groups.len(), 3);
    assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), model.named_parameters().len());
    assert!(groups[0].contains(&"0.0.weight".to_string()) && groups[0].contains(&"0.5.1.bn2.bias".to_string()));
    assert!(
        groups[1].contains(&"0.6.0.conv1.weight".to_string()) && groups[1].contains(&"0.7.1.bn2.weight".to_string())
    );
    assert_eq!(groups[2], ["1.2.weight", "1.2.bias", "1.4.weight", "1.6.weight", "1.6.bias", "1.8.weight"]);
}
