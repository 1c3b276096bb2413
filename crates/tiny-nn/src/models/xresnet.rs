//! fastai's xresnet ("Bag of Tricks"): a three-conv stem, ResNet-D shortcuts, and each block's last batchnorm at zero.

use tiny_tensor::Tensor;

use crate::layers::{
    AdaptivePool, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
};
use crate::{Hooks, Module, Parameter, Result, init};

/// fastai's `ConvLayer` with its defaults: a bias-free `ks x ks` convolution (padding `ks / 2`, kaiming-normal
/// fan-in), a batchnorm (weight 1, or 0 for `NormType.BatchZero`; bias 0), then ReLU when `act`. A `Sequential`, so
/// its tensors are named `0.weight` (the convolution) and `1.*` (the batchnorm), as fastai's.
fn conv_layer(ni: usize, nf: usize, ks: usize, stride: usize, zero_bn: bool, act: bool) -> Result<Sequential> {
    let mut bn = BatchNorm2d::new(nf);
    if zero_bn {
        bn.weight = Parameter::new(Tensor::zeros(&[nf]));
    }
    let mut layers: Vec<Box<dyn Module>> =
        vec![Box::new(Conv2d::kaiming_fan_in(ni, nf, ks, stride, ks / 2)?), Box::new(bn)];
    if act {
        layers.push(Box::new(ReLU::new()));
    }
    Ok(Sequential::new(layers))
}

/// fastai's `ResBlock` for xresnet: `relu(convpath(x) + idpath(x))`.
///
/// `convpath` is two 3x3 `ConvLayer`s (expansion 1) or a 1x1, 3x3, 1x1 bottleneck (expansion 4), the stride on
/// the 3x3 and the last batchnorm starting at zero, so each block starts as the identity. `idpath` is empty when
/// the shape stays, else a 2x2 average pool (when strided, ResNet-D: no information is skipped) followed by a 1x1
/// `ConvLayer` (when the width changes). Children `convpath.K.*` and `idpath.K.*`, as fastai's.
#[derive(Debug)]
pub struct ResBlock {
    /// The residual branch.
    pub convpath: Sequential,
    /// The shortcut (empty for the identity).
    pub idpath: Sequential,
    hooks: Hooks,
}

impl ResBlock {
    /// A block from `ni * expansion` to `nf * expansion` channels at `stride`.
    pub fn new(expansion: usize, ni: usize, nf: usize, stride: usize) -> Result<Self> {
        let (ni, nh, nf) = (ni * expansion, nf, nf * expansion);
        let convpath: Vec<Box<dyn Module>> = if expansion == 1 {
            vec![
                Box::new(conv_layer(ni, nh, 3, stride, false, true)?),
                Box::new(conv_layer(nh, nf, 3, 1, true, false)?),
            ]
        } else {
            vec![
                Box::new(conv_layer(ni, nh, 1, 1, false, true)?),
                Box::new(conv_layer(nh, nh, 3, stride, false, true)?),
                Box::new(conv_layer(nh, nf, 1, 1, true, false)?),
            ]
        };
        let mut idpath: Vec<Box<dyn Module>> = Vec::new();
        if stride != 1 {
            idpath.push(Box::new(AvgPool2d::new(stride, stride, 0).ceil_mode()));
        }
        if ni != nf {
            idpath.push(Box::new(conv_layer(ni, nf, 1, 1, false, false)?));
        }
        Ok(ResBlock { convpath: Sequential::new(convpath), idpath: Sequential::new(idpath), hooks: Hooks::default() })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shortcut = self.idpath.call(x)?;
        Ok(self.convpath.call(x)?.add_relu(&shortcut)?)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("convpath".into(), &self.convpath), ("idpath".into(), &self.idpath)]
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}

/// fastai's `XResNet`, an `nn.Sequential` of: a stem of three `ConvLayer`s (3 -> 32 at stride 2, 32 -> 32,
/// 32 -> 64), a 3x3 stride-2 max pool, four stages of [`ResBlock`]s (widths 64, 128, 256, 512 times the expansion,
/// the later stages starting at stride 2), an average pool, a flatten, `Dropout(p)` and a `Linear` head; every
/// convolution and the head kaiming-normal (fan-in), every bias 0. Its tensors have fastai's names (`0.0.weight`,
/// `4.0.convpath.0.0.weight`, `5.0.idpath.1.0.weight`, `11.weight`), so fastai's state_dicts load as they are.
///
/// Its strided shortcuts pool 2x2 with `ceil_mode`, which tiny computes only on even maps: every input size that is
/// a multiple of 32 works (64, 128, 160, 224...), as do a few others whose maps all stay even (such as 95); any other
/// is an error naming the size of the map that cannot be pooled.
#[derive(Debug)]
pub struct XResNet {
    /// The layers, fastai's `nn.Sequential`.
    pub layers: Sequential,
    hooks: Hooks,
}

impl XResNet {
    /// An xresnet of `depths[i]` blocks in stage `i` with this block expansion (1 or 4), head dropout `p` and
    /// `n_out` classes.
    pub fn new(expansion: usize, depths: [usize; 4], p: f32, n_out: usize) -> Result<Self> {
        let mut layers: Vec<Box<dyn Module>> = vec![
            Box::new(conv_layer(3, 32, 3, 2, false, true)?),
            Box::new(conv_layer(32, 32, 3, 1, false, true)?),
            Box::new(conv_layer(32, 64, 3, 1, false, true)?),
            Box::new(MaxPool2d::new(3, 2, 1)),
        ];
        let widths = [64 / expansion, 64, 128, 256, 512];
        for (i, &depth) in depths.iter().enumerate() {
            let blocks = (0..depth)
                .map(|j| {
                    let (ni, stride) =
                        if j == 0 { (widths[i], if i == 0 { 1 } else { 2 }) } else { (widths[i + 1], 1) };
                    Ok(Box::new(ResBlock::new(expansion, ni, widths[i + 1], stride)?) as Box<dyn Module>)
                })
                .collect::<Result<Vec<_>>>()?;
            layers.push(Box::new(Sequential::new(blocks)));
        }
        let nf = widths[4] * expansion;
        let mut fc = Linear::nn(nf, n_out)?;
        fc.w = Parameter::new(init::kaiming_normal(&[n_out, nf])?);
        fc.b = Some(Parameter::new(Tensor::zeros(&[n_out])));
        layers.extend([
            Box::new(AdaptivePool::new()) as Box<dyn Module>,
            Box::new(Flatten::new()),
            Box::new(Dropout::new(p)?),
            Box::new(fc),
        ]);
        Ok(XResNet { layers: Sequential::new(layers), hooks: Hooks::default() })
    }
}

/// fastai's `xresnet18` for `n_out` classes: two basic blocks a stage.
pub fn xresnet18(n_out: usize) -> Result<XResNet> {
    XResNet::new(1, [2, 2, 2, 2], 0.0, n_out)
}

/// fastai's `xresnet34` for `n_out` classes: 3, 4, 6 and 3 basic blocks.
pub fn xresnet34(n_out: usize) -> Result<XResNet> {
    XResNet::new(1, [3, 4, 6, 3], 0.0, n_out)
}

/// fastai's `xresnet50` for `n_out` classes: 3, 4, 6 and 3 bottleneck blocks.
pub fn xresnet50(n_out: usize) -> Result<XResNet> {
    XResNet::new(4, [3, 4, 6, 3], 0.0, n_out)
}

impl Module for XResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.forward(x)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers.children()
    }

    fn hooks(&self) -> Option<&Hooks> {
        Some(&self.hooks)
    }
}
