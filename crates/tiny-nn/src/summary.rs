//! fastai's `layer_info` and `module_summary`: each leaf layer's type, output shape and parameters, from one forward.

use std::sync::{Arc, Mutex};

use tiny_tensor::{Tensor, no_grad};

use crate::{Module, Parameter, Result};

/// One leaf layer of a model as one forward pass saw it (fastai's `layer_info` row).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// The layer's dotted path in the model (`layer1.0.conv1`).
    pub path: String,
    /// Its type (`Conv2d`).
    pub kind: String,
    /// The shape of its output on the last call, `None` when the forward pass never called it.
    pub output: Option<Vec<usize>>,
    /// Whether its output has its input's shape.
    pub same_shape: bool,
    /// How many parameter values it owns.
    pub params: usize,
    /// Whether its parameters train (fastai looks at the first one), `None` for a layer without parameters.
    pub trainable: Option<bool>,
}

/// What a hook saw of one layer's last call: its output shape, and whether that was its input's shape.
type Seen = Arc<Mutex<Option<(Vec<usize>, bool)>>>;

/// The leaf layers (modules without children) under `module`, with their dotted paths, in definition order.
fn leaves<'a>(module: &'a dyn Module, path: String, out: &mut Vec<(String, &'a dyn Module)>) {
    let children = module.children();
    if children.is_empty() {
        out.push((path, module));
        return;
    }
    for (name, child) in children {
        let sub = if path.is_empty() { name } else { format!("{path}.{name}") };
        leaves(child, sub, out);
    }
}

/// Runs `model` on `x` in evaluation mode without gradients, with a hook on every leaf layer, and returns one
/// [`LayerInfo`] per leaf in definition order; `trainable` says whether a parameter trains. The model's
/// training mode is restored afterwards.
///
/// # Errors
/// The forward pass's error (a shape the model refuses, say).
pub fn layer_info(model: &dyn Module, x: &Tensor, trainable: &dyn Fn(&Parameter) -> bool) -> Result<Vec<LayerInfo>> {
    let mut found = Vec::new();
    leaves(model, String::new(), &mut found);
    let seen: Vec<Seen> = found.iter().map(|_| Arc::default()).collect();
    let handles: Vec<_> = found
        .iter()
        .zip(&seen)
        .filter_map(|((_, layer), slot)| {
            let slot = Arc::clone(slot);
            layer.register_forward_hook(Box::new(move |_, input, output| {
                let same = input.shape() == output.shape();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((output.shape().to_vec(), same));
            }))
        })
        .collect();
    let was_training = is_training(model);
    model.train(false);
    let run = {
        let _no_grad = no_grad();
        model.forward(x)
    };
    model.train(was_training);
    for handle in handles {
        model.remove_hook(handle);
    }
    run?;
    Ok(found
        .iter()
        .zip(&seen)
        .map(|((path, layer), slot)| {
            let params = layer.own_parameters();
            let seen = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            LayerInfo {
                path: path.clone(),
                kind: layer.name().to_string(),
                output: seen.as_ref().map(|(shape, _)| shape.clone()),
                same_shape: seen.is_some_and(|(_, same)| same),
                params: params.iter().map(|(_, p)| p.numel()).sum(),
                trainable: params.first().map(|(_, p)| trainable(p)),
            }
        })
        .collect())
}

/// Whether `model` is in training mode, as its first layer with a mode (batchnorm, dropout) says; `true` for a
/// model with none, which behaves the same either way.
fn is_training(model: &dyn Module) -> bool {
    let mut found = Vec::new();
    leaves(model, String::new(), &mut found);
    found.iter().find_map(|(_, m)| m.own_training()).unwrap_or(true)
}

/// A shape as fastai prints it, `64 x 3 x 128 x 128`, with `bs` in place of the first dimension.
fn print_shape(shape: &[usize], bs: usize) -> String {
    std::iter::once(bs).chain(shape.iter().skip(1).copied()).map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
}

/// fastai's `module_summary` table for `model` on `x`: a header with the input shape at batch size `bs`, one row
/// per leaf layer (type, parameters, trainable), the output shape printed above the layers that produce it
/// whenever it changes, and the totals.
///
/// ```
/// use tiny_nn::{Module, module_summary, simple_cnn};
/// use tiny_tensor::Tensor;
/// let model = simple_cnn(10).unwrap();
/// let table = module_summary(&model, &Tensor::zeros(&[1, 3, 64, 64]), 64, &|_| true).unwrap();
/// assert!(table.starts_with("Sequential (Input shape: 64 x 3 x 64 x 64)"));
/// assert!(table.contains("Total params: 98,730"));
/// ```
///
/// # Errors
/// As [`layer_info`].
pub fn module_summary(
    model: &dyn Module,
    x: &Tensor,
    bs: usize,
    trainable: &dyn Fn(&Parameter) -> bool,
) -> Result<String> {
    const WIDTH: usize = 76;
    let infos = layer_info(model, x, trainable)?;
    let mut out = format!("{} (Input shape: {})\n", model.name(), print_shape(x.shape(), bs));
    out += &"=".repeat(WIDTH);
    out += &format!("\n{:<20} {:<20} {:<10} {:<10}\n", "Layer (type)", "Output Shape", "Param #", "Trainable");
    out += &"=".repeat(WIDTH);
    let (mut total, mut trained) = (0, 0);
    let mut previous: Option<&Vec<usize>> = None;
    for (j, info) in infos.iter().enumerate() {
        let Some(shape) = &info.output else { continue };
        let printed: String = print_shape(shape, bs).chars().take(19).collect();
        if j == 0 || previous.is_none() {
            out += &format!("\n{:<20} {printed:<20}", "");
        } else if !info.same_shape && previous != Some(shape) {
            out += &format!("\n{}\n{:<20} {printed:<20}", "_".repeat(WIDTH), "");
        }
        let (params, flag) = match info.trainable {
            Some(t) => (info.params.to_string(), if t { "True" } else { "False" }),
            None => (String::new(), ""),
        };
        out += &format!("\n{:<20} {:<20} {params:<10} {flag:<10}", info.kind, "");
        total += info.params;
        if info.trainable == Some(true) {
            trained += info.params;
        }
        previous = Some(shape);
    }
    out += &format!("\n{}\n", "_".repeat(WIDTH));
    out += &format!("\nTotal params: {}\n", thousands(total));
    out += &format!("Total trainable params: {}\n", thousands(trained));
    out += &format!("Total non-trainable params: {}\n", thousands(total - trained));
    Ok(out)
}

/// `n` with commas between thousands, as Python's `f"{n:,}"`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
