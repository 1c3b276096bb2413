//! The layers of the chapter, of the resnets and of fastai's head, one small file each.

mod basic;
mod batchnorm;
mod conv;
mod dropout;
mod linear;
mod sequential;

pub use basic::{AdaptiveConcatPool2d, AdaptivePool, AvgPool2d, Flatten, Lambda, MaxPool2d, ReLU};
pub use batchnorm::{BatchNorm1d, BatchNorm2d};
pub use conv::{Conv2d, ConvLayer};
pub use dropout::Dropout;
pub use linear::Linear;
pub use sequential::Sequential;

/// Implements the hook accessor for a layer struct with a `hooks: Hooks` field.
macro_rules! with_hooks {
    () => {
        fn hooks(&self) -> Option<&crate::Hooks> {
            Some(&self.hooks)
        }
    };
}
pub(crate) use with_hooks;
