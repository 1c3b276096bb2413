//! tiny-nn: `Parameter`, `Module` and the chapter's layers, losses and models, plus torchvision's resnets and fastai's summary.
//!
//! ```
//! use tiny_nn::{Module, cross_entropy, simple_cnn};
//! use tiny_tensor::Tensor;
//! let model = simple_cnn(10).unwrap();
//! assert_eq!(model.num_parameters(), 98_730);
//! let x = Tensor::zeros(&[2, 3, 64, 64]);
//! let loss = cross_entropy(&model.forward(&x).unwrap(), &[3, 7]).unwrap();
//! loss.backward().unwrap();
//! assert!(model.parameters()[0].grad().is_some());
//! ```

mod bce;
mod error;
pub mod init;
pub mod layers;
mod loss;
mod models;
mod module;
mod parameter;
mod safetensors;
mod state_dict;
mod summary;

pub use bce::{bce_with_logits_flat, bce_with_logits_items, binary_cross_entropy_with_logits, multi_hot};
pub use error::{NnError, Result};
pub use init::manual_seed;
pub use layers::{
    AdaptiveConcatPool2d, AdaptivePool, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, ConvLayer, Dropout, Flatten,
    Lambda, Linear, MaxPool2d, ReLU, Sequential,
};
pub use loss::{
    LabelSmoothingCrossEntropy, cross_entropy, cross_entropy_items, cross_entropy_smooth, cross_entropy_smooth_items,
    log_softmax, nll, nll_items,
};
pub use models::{
    BasicBlock, Bottleneck, ResBlock, ResNet, XResNet, create_head, resnet18, resnet34, resnet50, simple_cnn,
    torchvision_to_fastai, vision_resnet, xresnet18, xresnet34, xresnet50,
};
pub use module::{ForwardHook, HookHandle, Hooks, Module};
pub use parameter::Parameter;
pub use summary::{LayerInfo, layer_info, module_summary};

/// The chapter's layers, models and losses, and tiny-tensor's prelude, in one import: `use tiny_nn::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AdaptivePool, BatchNorm2d, ConvLayer, Flatten, Linear, Module, NnError, Parameter, ReLU, Sequential,
        cross_entropy, log_softmax, resnet18, simple_cnn,
    };
    pub use tiny_tensor::prelude::*;
}
pub use safetensors::{TensorFile, load_tensors, save_tensors};
pub use state_dict::{
    LoadReport, ShapeMismatch, StateDictMismatch, load_pretrained, load_pretrained_renamed, load_state_dict,
    load_state_dict_file, save_state_dict,
};

/// The crate README's example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
