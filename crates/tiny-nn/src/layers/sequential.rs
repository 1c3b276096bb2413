//! `Sequential`: runs child modules one after another; children are named `0`, `1`, ...

use tiny_tensor::Tensor;

use super::with_hooks;
use crate::{Hooks, Module, Result};

/// Applies its layers in order, like `nn.Sequential`.
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
    hooks: Hooks,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.layers.iter().map(|l| l.name())).finish()
    }
}

impl Sequential {
    /// A sequence of layers.
    pub fn new(layers: Vec<Box<dyn Module>>) -> Self {
        Sequential { layers, hooks: Hooks::default() }
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    /// Runs the layers in order. A layer followed by a [`ReLU`](super::ReLU) that no hook watches runs the pair
    /// through [`Module::call_relu`], as one op where the layer has one of the same bits (fastai's `ConvLayer`, a
    /// convolution, a batchnorm and a ReLU, fuses the last two).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            x = match layers.next_if(|next| next.is_unwatched_relu()) {
                Some(_) => layer.call_relu(&x)?,
                None => layer.call(&x)?,
            };
        }
        Ok(x)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers.iter().enumerate().map(|(i, l)| (i.to_string(), l.as_ref())).collect()
    }

    with_hooks!();
}
