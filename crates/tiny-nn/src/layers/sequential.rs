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
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.call(&x)?;
        }
        Ok(x)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers.iter().enumerate().map(|(i, l)| (i.to_string(), l.as_ref())).collect()
    }

    with_hooks!();
}
