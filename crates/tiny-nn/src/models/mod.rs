//! The models: the chapter's `simple_cnn`, torchvision's resnets and fastai's xresnets, from scratch, and fastai's head.

mod head;
mod resnet;
mod simple_cnn;
mod xresnet;

pub use head::{create_head, torchvision_to_fastai, vision_resnet};
pub use resnet::{BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50};
pub use simple_cnn::simple_cnn;
pub use xresnet::{ResBlock, XResNet, xresnet18, xresnet34, xresnet50};
