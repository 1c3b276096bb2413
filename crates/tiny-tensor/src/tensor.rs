//! `Tensor`: a cheap handle to a strided view of shared storage, with its place in the autograd graph.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::autograd::{BackwardFn, GradFn, Reads, is_grad_enabled};
use crate::ops::elementwise::{self, Update};
use crate::{Device, Layout, Result, Storage, TensorError};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The empty storage behind every released handle (see [`Tensor::released`]).
static RELEASED: LazyLock<Arc<RwLock<Storage>>> = LazyLock::new(|| Arc::new(RwLock::new(Storage::Cpu(Vec::new()))));

/// An n-dimensional array of `f32` that can take part in reverse-mode autodiff.
///
/// Cloning a `Tensor` clones a handle: both see the same data and the same graph node. Views
/// (`reshape`, `permute`, `narrow`, ...) share storage with their source. Tensors are `Send + Sync`.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: usize,
    storage: Arc<RwLock<Storage>>,
    layout: Layout,
    /// Atomic so that a leaf can be frozen and unfrozen in place, through every handle (`set_requires_grad_`).
    requires_grad: AtomicBool,
    /// Shared by a node's handles, so that the graph can keep a node without its values (see [`Tensor::released`]).
    grad_fn: Option<Arc<GradFn>>,
    grad: Mutex<Option<Tensor>>,
    /// The device of a handle whose values were released, whose storage is [`RELEASED`]; `None` for every
    /// tensor a user can hold.
    released: Option<Device>,
}

impl Tensor {
    /// Wraps raw storage and a layout into a tensor that records no graph.
    pub(crate) fn from_storage(storage: Storage, layout: Layout) -> Tensor {
        Tensor::from_shared(Arc::new(RwLock::new(storage)), layout)
    }

    fn from_shared(storage: Arc<RwLock<Storage>>, layout: Layout) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            requires_grad: AtomicBool::new(false),
            grad_fn: None,
            grad: Mutex::new(None),
            released: None,
        }))
    }

    /// A new view of this tensor's storage with another layout and no graph record.
    pub(crate) fn view_with(&self, layout: Layout) -> Tensor {
        let view = Tensor::from_shared(self.0.storage.clone(), layout);
        match self.0.released {
            None => view,
            released => Tensor(Arc::new(Inner { released, ..view.into_inner() })),
        }
    }

    /// Attaches a graph record to a freshly computed `out` when grad mode is on and an input needs it. The
    /// graph keeps the output and every input whole: use [`Tensor::record_reading`] for an op whose backward
    /// reads less.
    pub(crate) fn record(
        out: Tensor,
        name: &'static str,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor, &Tensor, &[Tensor]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        Tensor::record_reading(out, name, inputs, Reads::All, backward)
    }

    /// [`Tensor::record`] for an op whose backward reads only the values `reads` names (besides the output
    /// gradient, and the shape, device and `requires_grad` of every tensor). The graph holds an input it
    /// need not read, and whose own backward does not read it either, by a handle without its memory, so
    /// that an intermediate such as a batchnorm's output before its ReLU is freed as soon as the forward
    /// pass drops it, as PyTorch keeps only the tensors an op saves.
    pub(crate) fn record_reading(
        out: Tensor,
        name: &'static str,
        inputs: &[&Tensor],
        reads: Reads,
        backward: impl Fn(&Tensor, &Tensor, &[Tensor]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return out;
        }
        let Inner { id, storage, layout, .. } = out.into_inner();
        let keep = |t: &Tensor| reads.inputs() || t.grad_fn().is_none_or(|f| f.reads_output);
        let inputs = inputs.iter().map(|&t| if keep(t) { t.clone() } else { t.released() }).collect();
        let backward: BackwardFn = Box::new(backward);
        Tensor(Arc::new(Inner {
            id,
            storage,
            layout,
            requires_grad: AtomicBool::new(true),
            grad_fn: Some(Arc::new(GradFn { name, inputs, backward, reads_output: reads.output() })),
            grad: Mutex::new(None),
            released: None,
        }))
    }

    /// This handle's node as a value: moved out when no other handle shares it, else a copy of its id, storage
    /// and layout (without graph record or gradient).
    fn into_inner(self) -> Inner {
        Arc::try_unwrap(self.0).unwrap_or_else(|a| Inner {
            id: a.id,
            storage: a.storage.clone(),
            layout: a.layout.clone(),
            requires_grad: AtomicBool::new(false),
            grad_fn: None,
            grad: Mutex::new(None),
            released: a.released,
        })
    }

    /// A handle to the same graph node (id, layout, device, graph record) without the values: what the graph
    /// keeps of an input that no backward reads. Its storage is [`RELEASED`], empty; the kernels' entry
    /// (`backend::on`) refuses it.
    fn released(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: self.0.id,
            storage: RELEASED.clone(),
            layout: self.0.layout.clone(),
            requires_grad: AtomicBool::new(self.requires_grad()),
            grad_fn: self.0.grad_fn.clone(),
            grad: Mutex::new(None),
            released: Some(self.device()),
        }))
    }

    /// Whether this is a graph handle without values (see [`Tensor::released`]).
    pub(crate) fn is_released(&self) -> bool {
        self.0.released.is_some()
    }

    /// A weak handle to this tensor's memory, to see in tests whether anything still holds it.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> std::sync::Weak<RwLock<Storage>> {
        Arc::downgrade(&self.0.storage)
    }

    /// The graph's handle of each input of the op that made this tensor, for tests.
    #[cfg(test)]
    pub(crate) fn graph_inputs(&self) -> Vec<Tensor> {
        self.grad_fn().map(|f| f.inputs.clone()).unwrap_or_default()
    }

    /// A tensor holding `data` in row-major order with the given shape.
    ///
    /// ```
    /// let t = tiny_tensor::Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(tiny_tensor::Tensor::from_vec(vec![1.0], &[2]).is_err());
    /// ```
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(TensorError::ElementCount { op: "from_vec", len: data.len(), shape: shape.to_vec() });
        }
        Ok(Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(shape)))
    }

    /// A one-element tensor of shape `[]`.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_storage(Storage::Cpu(vec![value]), Layout::contiguous(&[]))
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let data = crate::cpu::alloc::take_filled(shape.iter().product(), value);
        Tensor::from_storage(Storage::Cpu(data), Layout::contiguous(shape))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Zeros with this tensor's shape on this tensor's device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        let zeros = Tensor::zeros(self.shape()).to_device(self.device())?;
        // In this tensor's memory format when it is dense (PyTorch's `preserve_format`), so that a momentum
        // buffer has its parameter's strides.
        let l = self.layout();
        if l.is_dense() && !l.is_contiguous() {
            // All zeros, so the same memory read in this tensor's order.
            return Ok(zeros.view_with(Layout { shape: l.shape.clone(), strides: l.strides.clone(), offset: 0 }));
        }
        Ok(zeros)
    }

    /// Samples from a normal distribution with the given mean and standard deviation. The same seeded
    /// `rng` gives the same tensor.
    pub fn normal(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Result<Tensor> {
        let dist = Normal::new(mean, std)
            .map_err(|e| TensorError::InvalidArgument { op: "normal", msg: format!("mean {mean}, std {std}: {e}") })?;
        Tensor::from_vec(dist.sample_iter(rng).take(shape.iter().product()).collect(), shape)
    }

    /// Samples from the standard normal distribution.
    pub fn randn(shape: &[usize], rng: &mut impl Rng) -> Tensor {
        let data = Normal::new(0.0f32, 1.0).map(|d| d.sample_iter(rng).take(shape.iter().product()).collect());
        Tensor::from_storage(Storage::Cpu(data.unwrap_or_default()), Layout::contiguous(shape))
    }

    /// Samples uniformly from `[low, high)`.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Result<Tensor> {
        let dist = Uniform::new(low, high)
            .map_err(|e| TensorError::InvalidArgument { op: "uniform", msg: format!("range [{low}, {high}): {e}") })?;
        Tensor::from_vec(dist.sample_iter(rng).take(shape.iter().product()).collect(), shape)
    }

    /// A process-unique identifier of this graph node (shared by clones, not by views).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }

    /// The layout (shape, strides, offset) of this view.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// The device that holds the data.
    pub fn device(&self) -> Device {
        self.0.released.unwrap_or_else(|| self.storage().device())
    }

    /// Whether this tensor takes part in autograd: a leaf marked with `set_requires_grad(true)`, or the
    /// result of an op recorded in grad mode from such a tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Whether this tensor was made directly rather than computed by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }

    pub(crate) fn grad_fn(&self) -> Option<&GradFn> {
        self.0.grad_fn.as_deref()
    }

    /// The name of the op that produced this tensor, if it was recorded.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.grad_fn.as_ref().map(|g| g.name)
    }

    /// Freezes (`false`) or unfreezes (`true`) this leaf in place, for every handle that shares it, like PyTorch's
    /// `p.requires_grad_(False)` on a parameter: ops on a frozen leaf record no graph for it, and backward computes
    /// no gradient for it.
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] for a tensor computed by a recorded op, which is not a leaf.
    pub fn set_requires_grad_(&self, on: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(TensorError::InvalidArgument {
                op: "set_requires_grad_",
                msg: "only a leaf can be frozen or unfrozen in place".into(),
            });
        }
        self.0.requires_grad.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// A leaf handle to the same data that records (or stops recording) gradients, like PyTorch's
    /// `requires_grad_()`. A computed tensor becomes a new leaf cut from its graph.
    pub fn set_requires_grad(self, on: bool) -> Tensor {
        match Arc::try_unwrap(self.0) {
            Ok(inner) if inner.grad_fn.is_none() => {
                inner.requires_grad.store(on, Ordering::Relaxed);
                Tensor(Arc::new(inner))
            }
            Ok(inner) => Tensor(Arc::new(Inner { requires_grad: AtomicBool::new(on), grad_fn: None, ..inner })),
            Err(shared) => {
                let t = Tensor(shared).detach();
                Tensor::set_requires_grad(t, on)
            }
        }
    }

    /// A new leaf sharing this tensor's data but cut from the graph, like PyTorch's `detach()`.
    pub fn detach(&self) -> Tensor {
        self.view_with(self.0.layout.clone())
    }

    /// The gradient accumulated by `backward`, for leaves that require grad.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient, for optimizers and gradient clipping.
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad
            && g.shape() != self.shape()
        {
            return Err(TensorError::ShapeMismatch {
                op: "set_grad",
                lhs: g.shape().to_vec(),
                rhs: self.shape().to_vec(),
            });
        }
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
        Ok(())
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        // The first gradient is kept as it is when it owns its memory densely (row-major, or in this tensor's
        // own memory format: a channels-last conv weight's gradient) and nothing else can see that memory.
        // Otherwise it is copied: `add`'s backward hands one tensor to both inputs, and two leaves sharing a
        // gradient would both change under an in-place update of either (GradientClip's `scale_`).
        let (gl, own) = (g.layout(), self.layout());
        let alone = Arc::strong_count(&g.0) == 1 && Arc::strong_count(&g.0.storage) == 1;
        let keep = alone && gl.offset == 0 && (gl.is_contiguous() || (gl.is_dense() && gl.same_memory_order(own)));
        *slot = Some(match slot.take() {
            Some(old) => old.add(&g)?,
            None if keep => g.detach(),
            None => g.contiguous_copy()?,
        });
        Ok(())
    }

    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        debug_assert!(!self.is_released(), "a backward read a tensor whose op said it would not (Reads)");
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        debug_assert!(!self.is_released(), "a backward wrote a tensor whose values were released");
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        // Released handles all point at the one empty `RELEASED`, which is nobody's memory.
        !self.is_released() && Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// The elements in row-major order, copied to the host.
    ///
    /// # Panics
    /// Only when reading a GPU tensor back fails (the device was lost); [`Tensor::try_to_vec`] returns
    /// that error instead.
    pub fn to_vec(&self) -> Vec<f32> {
        self.try_to_vec().unwrap_or_else(|e| panic!("to_vec: {e}"))
    }

    /// The elements in row-major order, copied to the host, or the device's error.
    pub fn try_to_vec(&self) -> Result<Vec<f32>> {
        elementwise::to_vec(self)
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(TensorError::InvalidArgument {
                op: "item",
                msg: format!("needs a one-element tensor, got shape {:?}", self.shape()),
            });
        }
        Ok(self.try_to_vec()?[0])
    }

    /// This tensor on `device`: the same handle when it is already there, else a copy that keeps its
    /// place in the graph (gradients flow back to the source device).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let out = elementwise::to_device(self, device)?;
        let from = self.device();
        Ok(Tensor::record_reading(out, "to_device", &[self], Reads::Nothing, move |g, _, _| {
            Ok(vec![Some(g.to_device(from)?)])
        }))
    }

    /// Moves this tensor's storage to `device` in place, so that every handle and view sharing it (a
    /// module's parameters held by an optimizer, say) follows: the chapter's `model.cuda()`. Only for
    /// leaves; a computed tensor is moved with `to_device`, which records the copy.
    pub fn move_to(&self, device: Device) -> Result<()> {
        if device == self.device() {
            return Ok(());
        }
        // Read the length first: the guard must be gone before `to_device` locks the storage again.
        let len = self.storage().len();
        let moved = elementwise::to_device(&self.view_with(Layout::contiguous(&[len])), device)?;
        let storage = Arc::try_unwrap(moved.0).ok().map(|inner| inner.storage).and_then(|s| Arc::try_unwrap(s).ok());
        match storage {
            Some(lock) => {
                *self.storage_mut() = lock.into_inner().unwrap_or_else(|e| e.into_inner());
                Ok(())
            }
            None => Err(TensorError::InvalidArgument { op: "move_to", msg: "the moved storage is shared".into() }),
        }
    }

    /// Copies `src` (broadcast to this shape) into this tensor's memory without recording a graph: the
    /// in-place update that optimizers use on parameters. Views write through to their storage.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        self.check_writable("assign")?;
        let src = if self.shares_storage(src) { src.contiguous_copy()? } else { src.clone() };
        elementwise::update("assign", self, Some(&src), Update::Copy)
    }

    /// In place, `self += alpha * other` (broadcasting `other`), recording no graph.
    pub fn add_scaled_(&self, other: &Tensor, alpha: f32) -> Result<()> {
        self.check_writable("add_scaled_")?;
        let other = if self.shares_storage(other) { other.contiguous_copy()? } else { other.clone() };
        elementwise::update("add_scaled_", self, Some(&other), Update::AddScaled(alpha))
    }

    /// In place, `self *= alpha`, recording no graph.
    pub fn scale_(&self, alpha: f32) -> Result<()> {
        self.check_writable("scale_")?;
        elementwise::update("scale_", self, None, Update::Scale(alpha))
    }

    /// An error when several elements of this tensor share one memory location (an `expand`ed view), as
    /// PyTorch refuses in-place writes to them: their result would depend on the order of the writes, which
    /// differs between the CPU and the threads of a GPU.
    pub(crate) fn check_writable(&self, op: &'static str) -> Result<()> {
        let l = self.layout();
        if l.shape.iter().zip(&l.strides).any(|(&n, &s)| n > 1 && s == 0) {
            return Err(TensorError::InvalidArgument {
                op,
                msg: format!(
                    "more than one element of the written tensor (shape {:?}) is one memory location",
                    l.shape
                ),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.to_vec();
        let shown: Vec<f32> = values.iter().take(8).copied().collect();
        write!(f, "Tensor(shape={:?}, device={}, values={shown:?}", self.shape(), self.device())?;
        if values.len() > shown.len() {
            write!(f, "..")?;
        }
        if let Some(op) = self.op_name() {
            write!(f, ", grad_fn={op}")?;
        } else if self.requires_grad() {
            write!(f, ", requires_grad=true")?;
        }
        write!(f, ")")
    }
}
