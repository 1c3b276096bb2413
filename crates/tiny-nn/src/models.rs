//! The chapter's `simple_cnn` and a from-scratch `resnet18` (BasicBlock, batchnorm, downsample).

use tiny_tensor::Tensor;

use crate::layers::{AdaptivePool, BatchNorm2d, Conv2d, ConvLayer, Linear, MaxPool2d, Sequential};
use crate::{Hooks, Module, Result};

/// The chapter's model: four stride-2 `ConvLayer`s (3 -> 16 -> 32 -> 64 -> 128), `AdaptivePool`, and
/// `Linear(128, n_out)`. With 10 classes it has 98,730 parameters in 10 tensors.
pub fn simple_cnn(n_out: usize) -> Result<Sequential> {
    Ok(Sequential::new(vec![
        Box::new(ConvLayer::new(3, 16, 2, true, true)?),  // 32x32 for 64x64 input
        Box::new(ConvLayer::new(16, 32, 2, true, true)?), // 16x16
        Box::new(ConvLayer::new(32, 64, 2, true, true)?), // 8x8
        Box::new(ConvLayer::new(64, 128, 2, true, true)?), // 4x4
        Box::new(AdaptivePool::new()),
        Box::new(Linear::new(128, n_out)?),
    ]))
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
    /// A block from `ni` to `nf` channels.
    pub fn new(ni: usize, nf: usize, stride: usize) -> Result<Self> {
        let downsample = if stride != 1 || ni != nf {
            Some(Sequential::new(vec![
                Box::new(Conv2d::new(ni, nf, 1, stride, 0, false)?),
                Box::new(BatchNorm2d::new(nf)),
            ]))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: Conv2d::new(ni, nf, 3, stride, 1, false)?,
            bn1: BatchNorm2d::new(nf),
            conv2: Conv2d::new(nf, nf, 3, 1, 1, false)?,
            bn2: BatchNorm2d::new(nf),
            downsample,
            hooks: Hooks::default(),
        })
    }
}

impl Module for BasicBlock {
    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some(down) => down.call(x)?,
            None => x.clone(),
        };
        let out = self.bn1.call(&self.conv1.call(x)?)?.relu()?;
        let out = self.bn2.call(&self.conv2.call(&out)?)?;
        Ok(out.add(&identity)?.relu()?)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut c: Vec<(String, &dyn Module)> = vec![
            ("conv1".into(), &self.conv1),
            ("bn1".into(), &self.bn1),
            ("conv2".into(), &self.conv2),
            ("bn2".into(), &self.bn2),
        ];
        if let Some(d) = &self.downsample {
            c.push(("downsample".into(), d));
        }
        c
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}

/// resnet18 from scratch: a 7x7 stride-2 stem (`conv1`, `bn1`, ReLU, a 3x3 stride-2 max pool), four
/// stages of two `BasicBlock`s (`layer1` to `layer4`: 64, 128, 256, 512 channels), global average pool and
/// a linear head `fc`. With 10 classes it has 11,181,642 parameters. Works at any input size from 32 px
/// (64, 128, 160...).
///
/// Its state_dict is torchvision's `resnet18()`'s, name for name and shape for shape (`conv1.weight`,
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
    /// The four stages of two basic blocks each.
    pub layers: [Sequential; 4],
    /// Global average pool to `[n, 512]`.
    pub avgpool: AdaptivePool,
    /// The classifier head.
    pub fc: Linear,
    hooks: Hooks,
}

/// Builds resnet18 for `n_out` classes.
pub fn resnet18(n_out: usize) -> Result<ResNet> {
    let mut ni = 64;
    let mut stage = |nf: usize, stride: usize| -> Result<Sequential> {
        let blocks: Vec<Box<dyn Module>> =
            vec![Box::new(BasicBlock::new(ni, nf, stride)?), Box::new(BasicBlock::new(nf, nf, 1)?)];
        ni = nf;
        Ok(Sequential::new(blocks))
    };
    let layers = [stage(64, 1)?, stage(128, 2)?, stage(256, 2)?, stage(512, 2)?];
    Ok(ResNet {
        conv1: Conv2d::new(3, 64, 7, 2, 3, false)?,
        bn1: BatchNorm2d::new(64),
        maxpool: MaxPool2d::new(3, 2, 1),
        layers,
        avgpool: AdaptivePool::new(),
        fc: Linear::nn(512, n_out)?,
        hooks: Hooks::default(),
    })
}

/// The names of resnet18's four stages, torchvision's.
const STAGES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.maxpool.call(&self.bn1.call(&self.conv1.call(x)?)?.relu()?)?;
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
