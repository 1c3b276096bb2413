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
    pub build: Build,
    /// The module path of the classifier head, which a pretrained body gets afresh for other classes (`fc` is
    /// torchvision's name in its resnets, `11` fastai's in its xresnets; simple_cnn's Linear is its sixth layer, `5`).
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
    /// Whether input sizes must be multiples of `stride` (fastai's xresnets: their shortcuts pool only even maps).
    pub whole_strides: bool,
}

/// A model builder of the registry.
type Build = fn(usize) -> tiny_nn::Result<Box<dyn Module>>;

/// A torchvision resnet: head `fc`, the resnet splitter, published ImageNet weights in `file`.
const fn torchvision(name: &'static str, build: Build, file: &'static str) -> Arch {
    let split: Option<SplitFn> = Some(resnet_split);
    Arch {
        name,
        build,
        head: "fc",
        split,
        stats: IMAGENET_STATS,
        pretrained: Some(file),
        stride: 32,
        whole_strides: false,
    }
}

/// A fastai xresnet: head `11` (the last layer of its `nn.Sequential`), no published weights, sizes multiples of 32.
const fn fastai(name: &'static str, build: Build) -> Arch {
    Arch {
        name,
        build,
        head: "11",
        split: None,
        stats: IMAGENET_STATS,
        pretrained: None,
        stride: 32,
        whole_strides: true,
    }
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
        whole_strides: false,
    },
    torchvision("resnet18", |n| Ok(Box::new(tiny_nn::resnet18(n)?)), "resnet18.safetensors"),
    torchvision("resnet34", |n| Ok(Box::new(tiny_nn::resnet34(n)?)), "resnet34.safetensors"),
    torchvision("resnet50", |n| Ok(Box::new(tiny_nn::resnet50(n)?)), "resnet50.safetensors"),
    fastai("xresnet18", |n| Ok(Box::new(tiny_nn::xresnet18(n)?))),
    fastai("xresnet34", |n| Ok(Box::new(tiny_nn::xresnet34(n)?))),
    fastai("xresnet50", |n| Ok(Box::new(tiny_nn::xresnet50(n)?))),
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
