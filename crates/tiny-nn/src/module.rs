//! `Module`: forward, recursive parameters with dotted names, buffers, train/eval, devices and hooks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tiny_tensor::{Device, Tensor};

use crate::{Parameter, Result};

/// A forward hook: called with the module's name (its type), its input and its output.
pub type ForwardHook = Box<dyn Fn(&str, &Tensor, &Tensor) + Send + Sync>;

/// Identifies a registered hook so that it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookHandle(usize);

static NEXT_HOOK: AtomicUsize = AtomicUsize::new(0);

/// The forward hooks of one module: a list, not the chapter's single slot.
#[derive(Default)]
pub struct Hooks(Mutex<Vec<(HookHandle, ForwardHook)>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({})", self.0.lock().map(|h| h.len()).unwrap_or(0))
    }
}

impl Hooks {
    /// Whether no hook is registered, so that nothing sees a module's output but its parent.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    fn run(&self, name: &str, input: &Tensor, output: &Tensor) {
        let hooks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (_, hook) in hooks.iter() {
            hook(name, input, output);
        }
    }
}

/// A building block of a network, the chapter's `Module`: it computes `forward` and owns parameters,
/// buffers (such as batchnorm's running statistics) and child modules.
///
/// Implementors write `forward` and list what they own; `parameters`, `named_parameters`, `train`,
/// `to_device` and hooks then work recursively, the Rust side of the chapter's
/// `register_parameters` / `register_modules`.
pub trait Module: Send + Sync {
    /// Computes the output for `x`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The parameters this module owns directly, with their local names.
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        Vec::new()
    }

    /// The buffers (state that is saved but not trained) this module owns directly.
    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The child modules with their local names.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    /// The module's forward hooks, for modules that support them (all of tiny-nn's do).
    fn hooks(&self) -> Option<&Hooks> {
        None
    }

    /// Switches this module alone between training and evaluation behaviour; `train` recurses.
    fn set_own_training(&self, _training: bool) {}

    /// Whether this module alone is in training mode, for a module that has a mode (batchnorm, dropout).
    fn own_training(&self) -> Option<bool> {
        None
    }

    /// What this module alone draws afresh at random on every forward pass in its current mode (a training
    /// `Dropout`'s mask), which a replayed CUDA graph would repeat; `None` by default.
    fn draws_per_forward(&self) -> Option<&'static str> {
        None
    }

    /// The first [`Module::draws_per_forward`] of this module or a descendant, with its dotted path.
    fn first_random_draw(&self) -> Option<(String, &'static str)> {
        if let Some(why) = self.draws_per_forward() {
            return Some((String::new(), why));
        }
        self.children().into_iter().find_map(|(name, child)| {
            child
                .first_random_draw()
                .map(|(path, why)| (if path.is_empty() { name } else { format!("{name}.{path}") }, why))
        })
    }

    /// A short name for hooks and printing; the type name by default.
    fn name(&self) -> &str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// `self.call(x)` followed by ReLU, for a parent whose next step is a ReLU that nothing watches. A layer that
    /// can run the pair as one op of the same bits overrides it ([`BatchNorm2d`](crate::layers::BatchNorm2d)).
    fn call_relu(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.call(x)?.relu()?)
    }

    /// Whether this module is a [`ReLU`](crate::layers::ReLU) with no forward hook, which a
    /// [`Sequential`](crate::layers::Sequential) may fuse into the layer before it with [`Module::call_relu`].
    fn is_unwatched_relu(&self) -> bool {
        false
    }

    /// Runs `forward`, then every forward hook: call this rather than `forward` from a parent module.
    fn call(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        if let Some(hooks) = self.hooks() {
            hooks.run(self.name(), x, &y);
        }
        Ok(y)
    }

    /// Registers a hook that runs after every forward of this module; returns a handle to remove it.
    fn register_forward_hook(&self, hook: ForwardHook) -> Option<HookHandle> {
        let hooks = self.hooks()?;
        let handle = HookHandle(NEXT_HOOK.fetch_add(1, Ordering::Relaxed));
        hooks.0.lock().unwrap_or_else(|e| e.into_inner()).push((handle, hook));
        Some(handle)
    }

    /// Removes a hook registered on this module or any descendant; returns whether it was found.
    fn remove_hook(&self, handle: HookHandle) -> bool {
        let mut found = false;
        if let Some(hooks) = self.hooks() {
            let mut list = hooks.0.lock().unwrap_or_else(|e| e.into_inner());
            let before = list.len();
            list.retain(|(h, _)| *h != handle);
            found = list.len() != before;
        }
        found || self.children().iter().any(|(_, c)| c.remove_hook(handle))
    }

    /// All parameters of this module and its descendants, with dotted names in the style of PyTorch's
    /// `state_dict` (`0.w`, `layer2.0.bn1.weight`).
    fn named_parameters(&self) -> Vec<(String, Parameter)> {
        let mut out = self.own_parameters();
        for (prefix, child) in self.children() {
            out.extend(child.named_parameters().into_iter().map(|(n, p)| (format!("{prefix}.{n}"), p)));
        }
        out
    }

    /// All parameters, in the order of `named_parameters`.
    fn parameters(&self) -> Vec<Parameter> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// All buffers of this module and its descendants, with dotted names.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = self.own_buffers();
        for (prefix, child) in self.children() {
            out.extend(child.named_buffers().into_iter().map(|(n, b)| (format!("{prefix}.{n}"), b)));
        }
        out
    }

    /// Parameters and buffers together: what a checkpoint saves.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            self.named_parameters().into_iter().map(|(n, p)| (n, p.tensor().clone())).collect();
        out.extend(self.named_buffers());
        out
    }

    /// The number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Sets training (`true`) or evaluation mode here and in every descendant, like PyTorch's
    /// `train()` / `eval()`.
    fn train(&self, training: bool) {
        self.set_own_training(training);
        for (_, child) in self.children() {
            child.train(training);
        }
    }

    /// Moves every parameter and buffer to `device` in place (the chapter's `model.cuda()`).
    fn to_device(&self, device: Device) -> Result<()> {
        for (_, p) in self.named_parameters() {
            p.move_to(device)?;
        }
        for (_, b) in self.named_buffers() {
            b.move_to(device)?;
        }
        Ok(())
    }

    /// Forgets the gradients of every parameter.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
}

/// A boxed module is a module, so `Box<dyn Module>` goes wherever a `Module` is expected.
impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }

    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        (**self).own_parameters()
    }

    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        (**self).own_buffers()
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        (**self).children()
    }

    fn hooks(&self) -> Option<&Hooks> {
        (**self).hooks()
    }

    fn set_own_training(&self, training: bool) {
        (**self).set_own_training(training)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn call_relu(&self, x: &Tensor) -> Result<Tensor> {
        (**self).call_relu(x)
    }

    fn is_unwatched_relu(&self) -> bool {
        (**self).is_unwatched_relu()
    }
}
