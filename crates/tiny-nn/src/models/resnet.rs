//! torchvision's resnets from scratch: `BasicBlock` (resnet18, resnet34), `Bottleneck` (resnet50), and `ResNet`.

use tiny_tensor::Tensor;

use crate::layers::{AdaptivePool, BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential};
use crate::{Hooks, Module, Result};

/// The projection shortcut of a block whose shape changes: a 1x1 stride-`stride` conv and a batchnorm
/// (torchvision's `downsample`), or `None` when the input can be added as it is.
fn downsample(ni: usize, nf: usize, stride: usize) -> Result<Option<Sequential>> {
    if stride == 1 && ni == nf {
        return Ok(None);
    }
    Ok(Some(Sequential::new(vec![Box::new(Conv2d::new(ni, nf, 1, stride, 0, false)?), Box::new(BatchNorm2d::new(nf))])))
}

/// The shortcut's value: `x` itself, or its projection.
fn identity(downsample: &Option<Sequential>, x: &Tensor) -> Result<Tensor> {
    match downsample {
        Some(down) => down.call(x),
        None => Ok(x.clone()),
    }
}

/// A block's children: its layers by torchvision's names, then the shortcut's projection when it has one.
fn block_children<'a>(
    layers: &[(&str, &'a dyn Module)],
    downsample: &'a Option<Sequential>,
) -> Vec<(String, &'a dyn Module)> {
    let mut c: Vec<(String, &dyn Module)> = layers.iter().map(|(n, m)| (n.to_string(), *m)).collect();
    if let Some(d) = downsample {
        c.push(("downsample".into(), d));
    }
    c
}

/// resnet's basic block: two 3x3 conv + batchnorm pairs with a shortcut; the shortcut is a 1x1
/// stride-`stride` conv + batchnorm (`downsample`) when the shape changes. Its children have torchvision's
/// names (`conv1`, `bn1`, `conv2`, `bn2`, `downsample.0`, `downsample.1`).
#[derive(Debug)]
pub struct BasicBlock {
    /// The first convolution (carries the stride).
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    /// The second convolution.
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    /// The projection shortcut, when the block changes resolution or width.
    pub downsample: Option<Sequential>,
    hooks: Hooks,
}

impl BasicBlock {
    /// The output channels per unit of a stage's width: a basic block's output is as wide as the stage.
    pub const EXPANSION: usize = 1;

    /// A block from `ni` to `nf` channels.
    pub fn new(ni: usize, nf: usize, stride: usize) -> Result<Self> {
        Ok(BasicBlock {
            conv1: Conv2d::new(ni, nf, 3, stride, 1, false)?,
            bn1: BatchNorm2d::new(nf),
            conv2: Conv2d::new(nf, nf, 3, 1, 1, false)?,
            bn2: BatchNorm2d::new(nf),
            downsample: downsample(ni, nf, stride)?,
            hooks: Hooks::default(),
        })
    }
}

impl Module for BasicBlock {
    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let identity = identity(&self.downsample, x)?;
        let out = self.bn1.call_relu(&self.conv1.call(x)?)?;
        let out = self.bn2.call(&self.conv2.call(&out)?)?;
        Ok(out.add_relu(&identity)?)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        block_children(
            &[("conv1", &self.conv1), ("bn1", &self.bn1), ("conv2", &self.conv2), ("bn2", &self.bn2)],
            &self.downsample,
        )
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}

/// resnet50's bottleneck block, torchvision's (v1.5: the stride on the 3x3): a 1x1 conv down to the stage's
/// `width`, a 3x3 conv at that width carrying the stride, and a 1x1 conv up to `4 * width`, each followed by a
/// batchnorm, with the shortcut of [`BasicBlock`]. Its children have torchvision's names (`conv1`..`conv3`,
/// `bn1`..`bn3`, `downsample`).
#[derive(Debug)]
pub struct Bottleneck {
    /// The 1x1 reduction to the stage's width.
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    /// The 3x3 convolution (carries the stride).
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    /// The 1x1 expansion to `4 * width`.
    pub conv3: Conv2d,
    pub bn3: BatchNorm2d,
    /// The projection shortcut, when the block changes resolution or width.
    pub downsample: Option<Sequential>,
    hooks: Hooks,
}

impl Bottleneck {
    /// The output channels per unit of a stage's width.
    pub const EXPANSION: usize = 4;

    /// A block from `ni` channels through `width` to `4 * width`.
    pub fn new(ni: usize, width: usize, stride: usize) -> Result<Self> {
        let nf = width * Self::EXPANSION;
        Ok(Bottleneck {
            conv1: Conv2d::new(ni, width, 1, 1, 0, false)?,
            bn1: BatchNorm2d::new(width),
            conv2: Conv2d::new(width, width, 3, stride, 1, false)?,
            bn2: BatchNorm2d::new(width),
            conv3: Conv2d::new(width, nf, 1, 1, 0, false)?,
            bn3: BatchNorm2d::new(nf),
            downsample: downsample(ni, nf, stride)?,
            hooks: Hooks::default(),
        })
    }
}

impl Module for Bottleneck {
    /// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let identity = identity(&self.downsample, x)?;
        let out = self.bn1.call_relu(&self.conv1.call(x)?)?;
        let out = self.bn2.call_relu(&self.conv2.call(&out)?)?;
        let out = self.bn3.call(&self.conv3.call(&out)?)?;
        Ok(out.add_relu(&identity)?)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        let layers: [(&str, &dyn Module); 6] = [
            ("conv1", &self.conv1),
            ("bn1", &self.bn1),
            ("conv2", &self.conv2),
            ("bn2", &self.bn2),
            ("conv3", &self.conv3),
            ("bn3", &self.bn3),
        ];
        block_children(&layers, &self.downsample)
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}

/// torchvision's resnet from scratch: a 7x7 stride-2 stem (`conv1`, `bn1`, ReLU, a 3x3 stride-2 max pool), four
/// stages of blocks (`layer1` to `layer4`: widths 64, 128, 256, 512, the first block of each later stage at
/// stride 2), global average pool and a linear head `fc`. Works at any input size from 32 px (64, 128, 160...).
///
/// Its state_dict is torchvision's, name for name and shape for shape (`conv1.weight`,
/// `layer2.0.downsample.0.weight`, `fc.bias`, ...), so torchvision weights load as they are. Convolutions
/// start kaiming-normal (`fan_out`), batchnorms at weight 1 and bias 0, and `fc` as `nn.Linear` does, as in
/// torchvision.
#[derive(Debug)]
pub struct ResNet {
    /// The stem's 7x7 stride-2 convolution.
    pub conv1: Conv2d,
    /// The stem's batchnorm.
    pub bn1: BatchNorm2d,
    /// The stem's 3x3 stride-2 max pool (after a ReLU).
    pub maxpool: MaxPool2d,
    /// The four stages of blocks.
    pub layers: [Sequential; 4],
    /// Global average pool to `[n, features]`.
    pub avgpool: AdaptivePool,
    /// The classifier head.
    pub fc: Linear,
    hooks: Hooks,
}

/// The widths of the four stages.
const WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// The names of the four stages, torchvision's.
const STAGES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl ResNet {
    /// A resnet of `depths[i]` blocks in stage `i`, each built by `block(ni, width, stride)` and giving
    /// `expansion * width` channels, with a head for `n_out` classes.
    fn new(
        depths: [usize; 4],
        expansion: usize,
        block: fn(usize, usize, usize) -> Result<Box<dyn Module>>,
        n_out: usize,
    ) -> Result<ResNet> {
        let mut ni = 64;
        let mut stage = |i: usize| -> Result<Sequential> {
            let blocks = (0..depths[i])
                .map(|b| {
                    let stride = if i > 0 && b == 0 { 2 } else { 1 };
                    let blk = block(ni, WIDTHS[i], stride);
                    ni = WIDTHS[i] * expansion;
                    blk
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Sequential::new(blocks))
        };
        let layers = [stage(0)?, stage(1)?, stage(2)?, stage(3)?];
        Ok(ResNet {
            conv1: Conv2d::new(3, 64, 7, 2, 3, false)?,
            bn1: BatchNorm2d::new(64),
            maxpool: MaxPool2d::new(3, 2, 1),
            layers,
            avgpool: AdaptivePool::new(),
            fc: Linear::nn(512 * expansion, n_out)?,
            hooks: Hooks::default(),
        })
    }
}

fn basic(ni: usize, width: usize, stride: usize) -> Result<Box<dyn Module>> {
    Ok(Box::new(BasicBlock::new(ni, width, stride)?))
}

fn bottleneck(ni: usize, width: usize, stride: usize) -> Result<Box<dyn Module>> {
    Ok(Box::new(Bottleneck::new(ni, width, stride)?))
}

/// resnet18 for `n_out` classes: two [`BasicBlock`]s a stage. With 10 classes it has 11,181,642 parameters.
pub fn resnet18(n_out: usize) -> Result<ResNet> {
    ResNet::new([2, 2, 2, 2], BasicBlock::EXPANSION, basic, n_out)
}

/// resnet34 for `n_out` classes: 3, 4, 6 and 3 [`BasicBlock`]s. With 10 classes it has 21,289,802 parameters.
pub fn resnet34(n_out: usize) -> Result<ResNet> {
    ResNet::new([3, 4, 6, 3], BasicBlock::EXPANSION, basic, n_out)
}

/// resnet50 for `n_out` classes: 3, 4, 6 and 3 [`Bottleneck`]s, 2048 features into `fc`. With 10 classes it has
/// 23,528,522 parameters.
pub fn resnet50(n_out: usize) -> Result<ResNet> {
    ResNet::new([3, 4, 6, 3], Bottleneck::EXPANSION, bottleneck, n_out)
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.maxpool.call(&self.bn1.call_relu(&self.conv1.call(x)?)?)?;
        for stage in &self.layers {
            x = stage.call(&x)?;
        }
        self.fc.call(&self.avgpool.call(&x)?)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut c: Vec<(String, &dyn Module)> =
            vec![("conv1".into(), &self.conv1), ("bn1".into(), &self.bn1), ("maxpool".into(), &self.maxpool)];
        c.extend(STAGES.iter().zip(&self.layers).map(|(name, s)| (name.to_string(), s as &dyn Module)));
        c.extend([("avgpool".into(), &self.avgpool as &dyn Module), ("fc".into(), &self.fc)]);
        c
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}
