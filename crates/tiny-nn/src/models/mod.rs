//! The models: the chapter's `simple_cnn`, and torchvision's resnets from scratch.

mod resnet;
mod simple_cnn;

pub use resnet::{BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50};
pub use simple_cnn::simple_cnn;
