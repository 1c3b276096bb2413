//! The architecture registry, fastai's `model_meta`: how to build each model, where its head is, how to split it.

use tiny_data::Normalize;
use tiny_nn::Module;

use crate::{LearnerError, Result, Splitter, fastai_resnet_split, head_split, resnet_split};

/// ImageNet's channel statistics, fastai's `imagenet_stats`: what pretrained weights expect their inputs
/// normalised with.
pub const IMAGENET_STATS: Normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// A splitter as a plain function, so that the registry can be a constant.
pub type SplitFn = fn(&dyn Module) -> Vec<Vec<String>>;

/// Which head ends a model: the architecture's own, or fastai's `create_head` on its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Head {
    /// The architecture's own head: torchvision's `fc`, simple_cnn's `Linear`, an xresnet's last `Linear`.
    #[default]
    Own,
    /// fastai's `vision_learner` model: `create_head` (concat pooling, batchnorm, Dropout 0.25 and 0.5, two
    /// bias-free Linear layers) on the body of a torchvision resnet, the body's tensors under `0.` and the head's
    /// under `1.`.
    Fastai,
}

impl Head {
    /// The name the command line takes and an export records: `own` or `fastai`.
    pub fn name(self) -> &'static str {
        match self {
            Head::Own => "own",
            Head::Fastai => "fastai",
        }
    }
}

impl std::str::FromStr for Head {
    type Err = LearnerError;

    /// `own` or `fastai`.
    fn from_str(s: &str) -> Result<Head> {
        match s {
            "own" => Ok(Head::Own),
            "fastai" => Ok(Head::Fastai),
            other => Err(LearnerError::InvalidArgument {
                what: "head",
                msg: format!("unknown head {other:?}; the heads are own (the architecture's) and fastai (create_head)"),
            }),
        }
    }
}

/// One architecture the learner knows by name, fastai's `model_meta[arch]` with the constructor beside it.
///
/// ```
/// use tiny_learner::{Arch, Head};
/// let arch = Arch::named("resnet18").unwrap();
/// let model = (arch.build)(10).unwrap();
/// assert_eq!(arch.splitter()(model.as_ref()).len(), 3);
/// assert!(Arch::named("vgg16").unwrap_err().to_string().contains("simple_cnn, resnet18, resnet34, resnet50"));
/// // fastai's vision_learner model: the resnet's body under create_head.
/// let model = arch.build_with(10, Head::Fastai).unwrap();
/// assert!(model.named_parameters().iter().any(|(n, _)| n == "1.8.weight"));
/// assert!(Arch::named("xresnet18").unwrap().build_with(10, Head::Fastai).is_err());
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
    /// Builds fastai's `vision_learner` model on this architecture's body ([`Head::Fastai`]), where it has one.
    pub vision: Option<Build>,
}

/// A model builder of the registry.
type Build = fn(usize) -> tiny_nn::Result<Box<dyn Module>>;

/// A torchvision resnet: head `fc`, the resnet splitter, published ImageNet weights in `file`, and fastai's
/// `vision_learner` model built by `vision`.
const fn torchvision(name: &'static str, build: Build, vision: Build, file: &'static str) -> Arch {
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
        vision: Some(vision),
    }
}

/// fastai's head on a resnet's body, with fastai's Dropout (`ps = 0.5`).
fn vision(resnet: tiny_nn::ResNet, n: usize) -> tiny_nn::Result<Box<dyn Module>> {
    Ok(Box::new(tiny_nn::vision_resnet(resnet, n, 0.5)?))
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
        vision: None,
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
        vision: None,
    },
    torchvision(
        "resnet18",
        |n| Ok(Box::new(tiny_nn::resnet18(n)?)),
        |n| vision(tiny_nn::resnet18(n)?, n),
        "resnet18.safetensors",
    ),
    torchvision(
        "resnet34",
        |n| Ok(Box::new(tiny_nn::resnet34(n)?)),
        |n| vision(tiny_nn::resnet34(n)?, n),
        "resnet34.safetensors",
    ),
    torchvision(
        "resnet50",
        |n| Ok(Box::new(tiny_nn::resnet50(n)?)),
        |n| vision(tiny_nn::resnet50(n)?, n),
        "resnet50.safetensors",
    ),
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

    /// Checks that the file at `path` is ImageNet weights for this architecture: its own head's weight ends in
    /// ImageNet's 1000 classes, as torchvision's published weights do (`--pretrained`). Another head, such as a
    /// fine-tuned export put in their place, would otherwise be loaded as it is whenever it fits the data's classes.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] naming the file and the head it holds; the file's own read errors.
    pub fn check_imagenet_weights(&self, path: &std::path::Path) -> Result<()> {
        let (tensors, _) = tiny_nn::load_tensors(path)?;
        let name = format!("{}.weight", self.head);
        let found = match tensors.iter().find(|(n, _)| *n == name).map(|(_, t)| t.shape().first().copied()) {
            Some(Some(1000)) => return Ok(()),
            Some(Some(n)) => format!("a {n}-class head"),
            _ => format!("no {name}"),
        };
        Err(LearnerError::InvalidArgument {
            what: "pretrained weights",
            msg: format!(
                "{} has {found}, not ImageNet's 1000 classes, so it is not {}'s published ImageNet weights; start \
                 from it with --init {0} instead",
                path.display(),
                self.name
            ),
        })
    }

    /// A freshly initialised model with `n_classes` outputs and this head.
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] for fastai's head on an architecture without a torchvision body.
    pub fn build_with(&self, n_classes: usize, head: Head) -> Result<Box<dyn Module>> {
        match (head, self.vision) {
            (Head::Own, _) => Ok((self.build)(n_classes)?),
            (Head::Fastai, Some(vision)) => Ok(vision(n_classes)?),
            (Head::Fastai, None) => {
                let with: Vec<&str> = ARCHS.iter().filter(|a| a.vision.is_some()).map(|a| a.name).collect();
                Err(LearnerError::InvalidArgument {
                    what: "head",
                    msg: format!(
                        "fastai's head goes on a torchvision resnet body ({}), not {}",
                        with.join(", "),
                        self.name
                    ),
                })
            }
        }
    }

    /// The module path of the head with `head`: the architecture's own, or `1` for fastai's.
    pub fn head_path(&self, head: Head) -> &'static str {
        match head {
            Head::Own => self.head,
            Head::Fastai => "1",
        }
    }

    /// The splitter with `head`: fastai's `_resnet_split` for its vision model.
    pub fn splitter_with(&self, head: Head) -> Splitter {
        match head {
            Head::Own => self.splitter(),
            Head::Fastai => Box::new(fastai_resnet_split),
        }
    }

    /// The name a tensor of a pretrained file gets in a model with `head`: as it is, or for fastai's model a
    /// torchvision name moved into the body (`conv1.weight` -> `0.0.weight`) and torchvision's `fc` dropped; a
    /// name that already is fastai's stays.
    pub fn pretrained_name(head: Head, name: &str) -> Option<String> {
        match head {
            Head::Own => Some(name.to_string()),
            Head::Fastai => tiny_nn::torchvision_to_fastai(name)
                .or_else(|| (name.starts_with("0.") || name.starts_with("1.")).then(|| name.to_string())),
        }
    }
}
