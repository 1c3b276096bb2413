//! The architecture registry, fastai's `model_meta`: how to build each model, where its head is, how to split it.

use tiny_data::Normalize;
use tiny_nn::Module;

use crate::{LearnerError, Result, Splitter, head_split, resnet_split};

/// ImageNet's channel statistics, fastai's `imagenet_stats`: what pretrained weights expect their inputs
/// normalised with.
pub const IMAGENET_STATS: Normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// A splitter as a plain function, so that the registry can be a constant.
pub type SplitFn = fn(&dyn Module) -> Vec<Vec<String>>;

/// One architecture the learner knows by name, fastai's `model_meta[arch]` with the constructor beside it.
///
/// ```
/// use tiny_learner::Arch;
/// let arch = Arch::named("resnet18").unwrap();
/// let model = (arch.build)(10).unwrap();
/// assert_eq!(arch.splitter()(model.as_ref()).len(), 3);
/// assert!(Arch::named("vgg16").unwrap_err().to_string().contains("simple_cnn, resnet18, resnet34, resnet50"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Arch {
    /// The name an export records and `--model` takes.
    pub name: &'static str,
    /// Builds a freshly initialised model with this many classes.
    pub build: fn(usize) -> tiny_nn::Result<Box<dyn Module>>,
    /// The module path of the classifier head, which a pretrained body gets afresh for other classes (`fc` is
    /// torchvision's name in its resnets; simple_cnn's Linear is its sixth layer, `5`).
    pub head: &'static str,
    /// fastai's `split`: the parameter groups for discriminative learning rates and `freeze`; `None` splits into
    /// the body and the head.
    pub split: Option<SplitFn>,
    /// The statistics to normalise with when starting from saved weights (fastai's `stats`).
    pub stats: Normalize,
    /// The file of published ImageNet weights that `cargo xtask fetch-weights NAME` puts in `data/weights/`
    /// (torchvision's, from timm's `tv_in1k`), if there are any.
    pub pretrained: Option<&'static str>,
    /// The total stride of the body: inputs smaller than this leave less than one pixel for the head.
    pub stride: usize,
}

/// Every architecture the learner knows, in the order errors list them.
pub const ARCHS: &[Arch] = &[
    Arch {
        name: "simple_cnn",
        build: |n| Ok(Box::new(tiny_nn::simple_cnn(n)?)),
        head: "5",
        split: None,
        stats: IMAGENET_STATS,
        pretrained: None,
        stride: 16,
    },
    Arch {
        name: "resnet18",
        build: |n| Ok(Box::new(tiny_nn::resnet18(n)?)),
        head: "fc",
        split: Some(resnet_split),
        stats: IMAGENET_STATS,
        pretrained: Some("resnet18.safetensors"),
        stride: 32,
    },
    Arch {
        name: "resnet34",
        build: |n| Ok(Box::new(tiny_nn::resnet34(n)?)),
        head: "fc",
        split: Some(resnet_split),
        stats: IMAGENET_STATS,
        pretrained: Some("resnet34.safetensors"),
        stride: 32,
    },
    Arch {
        name: "resnet50",
        build: |n| Ok(Box::new(tiny_nn::resnet50(n)?)),
        head: "fc",
        split: Some(resnet_split),
        stats: IMAGENET_STATS,
        pretrained: Some("resnet50.safetensors"),
        stride: 32,
    },
];

impl Arch {
    /// The architecture called `name`.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming the architectures there are when none is called `name`.
    pub fn named(name: &str) -> Result<&'static Arch> {
        ARCHS.iter().find(|a| a.name == name).ok_or_else(|| LearnerError::InvalidArgument {
            what: "architecture",
            msg: format!("unknown architecture {name:?}; tiny knows {}", Arch::names().join(", ")),
        })
    }

    /// The names of every architecture.
    pub fn names() -> Vec<&'static str> {
        ARCHS.iter().map(|a| a.name).collect()
    }

    /// The splitter for [`Learner::with_splitter`](crate::Learner::with_splitter).
    pub fn splitter(&self) -> Splitter {
        match self.split {
            Some(split) => Box::new(split),
            None => head_split(self.head),
        }
    }
}
