//! `Storage`: a flat buffer on the CPU or a GPU, of a tensor's floats or of the integer indices an op keeps.

use crate::Device;

/// What a [`Storage`] holds: `f32` behind every tensor, `u32` for the indices an op keeps for its backward.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// Takes a host buffer whose storage is dropped: the float pool keeps it for the next tensor of its size.
    fn recycle(buffer: Vec<Self>) {
        drop(buffer);
    }
}

impl Element for f32 {
    fn recycle(buffer: Vec<f32>) {
        crate::cpu::alloc::give(buffer);
    }
}

impl Element for u32 {}

/// A flat buffer, on the host or a GPU: the one device enum for data and indices alike. Tensor views share
/// one `Storage` (of `f32`) through an `Arc`; each view has its own `Layout`.
#[derive(Debug)]
pub enum Storage<T: Element = f32> {
    /// A host buffer.
    Cpu(Vec<T>),
    /// A device buffer; without the `cuda` feature this type has no values, so these arms never run.
    Cuda(CudaStorage<T>),
}

/// GPU memory: `cuda::CudaStorage`, a device buffer. Without the `cuda` feature the type is uninhabited, so
/// the `Cuda` arms compile and never run.
pub use crate::cuda::CudaStorage;

/// Integer indices that an op's forward pass leaves for its backward, kept on the device of its tensors: the
/// winning input of each max-pool output (flat NHWC), or the target class of each row of a cross entropy.
pub(crate) type Indices = Storage<u32>;

impl<T: Element> Drop for Storage<T> {
    /// Hands a host buffer back for reuse (see [`Element::recycle`]).
    fn drop(&mut self) {
        if let Storage::Cpu(v) = self {
            T::recycle(std::mem::take(v));
        }
    }
}

impl<T: Element> Storage<T> {
    /// The device this storage lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => c.device(),
        }
    }

    /// The number of elements in the buffer.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(c) => c.len(),
        }
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host buffer. The backend is chosen by the tensor's device, so a CPU kernel never sees a GPU
    /// storage; one that did would be a bug in `backend.rs`, not bad input.
    pub(crate) fn host(&self) -> &[T] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(c) => c.not_on_host(),
        }
    }

    /// The host buffer, writable (see [`Storage::host`]).
    pub(crate) fn host_mut(&mut self) -> &mut [T] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(c) => c.not_on_host(),
        }
    }
}

impl Indices {
    /// The host indices, or an error naming `op` when they are in GPU memory.
    pub(crate) fn on_host(&self, op: &'static str) -> crate::Result<&[u32]> {
        match self {
            Indices::Cpu(v) => Ok(v),
            Indices::Cuda(_) => Err(misplaced(op, Device::Cpu)),
        }
    }

    /// The indices in GPU memory, or an error naming `op` when they are on the host.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn on_gpu(&self, op: &'static str) -> crate::Result<&CudaStorage<u32>> {
        match self {
            Indices::Cuda(d) => Ok(d),
            Indices::Cpu(_) => Err(misplaced(op, Device::Cuda(0))),
        }
    }
}

/// The error for indices that an op's backward finds on another device than its gradient.
fn misplaced(op: &'static str, gradient_on: Device) -> crate::TensorError {
    let kept_on = if gradient_on == Device::Cpu { "a GPU" } else { "the host" };
    crate::TensorError::InvalidArgument {
        op,
        msg: format!("the gradient is on {gradient_on} but the indices its forward pass kept are on {kept_on}"),
    }
}
