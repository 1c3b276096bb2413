//! fastai's `create_head` and `create_body`: a resnet body under a head of concat pooling, batchnorm, Dropout, Linear.

use super::resnet::ResNet;
use crate::layers::{AdaptiveConcatPool2d, BatchNorm1d, Dropout, Flatten, Linear, ReLU, Sequential};
use crate::{Module, Parameter, Result, init};

/// fastai's `create_head(nf, n_out, ps=ps)` with its other defaults (`lin_ftrs=[512]`, concat pooling, `first_bn`,
/// no final batchnorm): `AdaptiveConcatPool2d`, `Flatten`, then for `2 * nf -> 512` (ReLU after) and
/// `512 -> n_out` each `BatchNorm1d` (fastai's: bias 1e-3), `Dropout` (`ps / 2`, then `ps`; left out at 0, as
/// fastai does) and a bias-free `Linear`, kaiming-normal as `vision_learner`'s `apply_init` leaves it. With `ps > 0` the layers are numbered
/// `0` to `8` (`2.weight` is the first batchnorm, `8.weight` the last Linear), as fastai's.
pub fn create_head(nf: usize, n_out: usize, ps: f32) -> Result<Sequential> {
    let mut layers: Vec<Box<dyn Module>> = vec![Box::new(AdaptiveConcatPool2d::new()), Box::new(Flatten::new())];
    let sizes = [(2 * nf, 512, ps / 2.0, true), (512, n_out, ps, false)];
    for (ni, no, p, relu) in sizes {
        layers.push(Box::new(BatchNorm1d::fastai(ni)));
        if p != 0.0 {
            layers.push(Box::new(Dropout::new(p)?));
        }
        let mut lin = Linear::nn(ni, no)?.without_bias();
        lin.w = Parameter::new(init::kaiming_normal(&[no, ni])?);
        layers.push(Box::new(lin));
        if relu {
            layers.push(Box::new(ReLU::new()));
        }
    }
    Ok(Sequential::new(layers))
}

impl ResNet {
    /// The features its body gives the head: 512, or 2048 for bottleneck blocks.
    pub fn features(&self) -> usize {
        self.fc.w.shape()[1]
    }

    /// fastai's `create_body` (`cut=-2`): everything but the pool and the head, as a `Sequential` numbered as
    /// fastai's: `0` conv1, `1` bn1, `2` ReLU, `3` maxpool, `4` to `7` layer1 to layer4.
    pub fn into_body(self) -> Sequential {
        let mut layers: Vec<Box<dyn Module>> =
            vec![Box::new(self.conv1), Box::new(self.bn1), Box::new(ReLU::new()), Box::new(self.maxpool)];
        layers.extend(self.layers.into_iter().map(|stage| Box::new(stage) as Box<dyn Module>));
        Sequential::new(layers)
    }
}

/// fastai's `vision_learner` model for a torchvision resnet: `Sequential[body, head]` with `create_body` and
/// `create_head(features, n_out, ps)`, so that `0.4.0.conv1.weight` is layer1's first convolution and `1.8.weight`
/// the last Linear. [`torchvision_to_fastai`] renames a torchvision state_dict for its body.
pub fn vision_resnet(resnet: ResNet, n_out: usize, ps: f32) -> Result<Sequential> {
    let nf = resnet.features();
    Ok(Sequential::new(vec![Box::new(resnet.into_body()), Box::new(create_head(nf, n_out, ps)?)]))
}

/// The name a torchvision resnet tensor has in [`vision_resnet`]'s body (`conv1.weight` -> `0.0.weight`,
/// `layer2.0.downsample.0.weight` -> `0.5.0.downsample.0.weight`), or `None` for the head (`fc.*`).
pub fn torchvision_to_fastai(name: &str) -> Option<String> {
    let (first, rest) = name.split_once('.')?;
    let index = match first {
        "conv1" => 0,
        "bn1" => 1,
        "layer1" => 4,
        "layer2" => 5,
        "layer3" => 6,
        "layer4" => 7,
        _ => return None,
    };
    Some(format!("0.{index}.{rest}"))
}
