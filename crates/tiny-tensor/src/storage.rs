//! `Storage` and `Indices`: the flat buffers behind tensors and the integer indices an op keeps, on the CPU or a GPU.

use crate::Device;

/// The memory behind tensors. Views share one `Storage` through an `Arc`; each view has its own `Layout`.
#[derive(Debug)]
pub enum Storage {
    /// A host buffer.
    Cpu(Vec<f32>),
    /// A device buffer; without the `cuda` feature this type has no values, so these arms never run.
    Cuda(CudaStorage),
}

/// GPU memory: `cuda::CudaStorage`, a device buffer. Without the `cuda` feature the type is uninhabited, so
/// the `Cuda` arms compile and never run.
pub use crate::cuda::CudaStorage;

/// Integer indices that an op's forward pass leaves for its backward, kept on the device of its tensors: the
/// winning input of each max-pool output (flat NHWC), or the target class of each row of a cross entropy.
#[derive(Debug)]
pub(crate) enum Indices {
    /// Host indices.
    Cpu(Vec<u32>),
    /// Indices in GPU memory.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Cuda(crate::cuda::DeviceIndices),
}

impl Drop for Storage {
    /// Hands a host buffer back to the pool for the next tensor of the same size.
    fn drop(&mut self) {
        if let Storage::Cpu(v) = self {
            crate::cpu::alloc::give(std::mem::take(v));
        }
    }
}

impl Storage {
    /// The device this storage lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => c.device(),
        }
    }

    /// The number of `f32` elements in the buffer.
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
    pub(crate) fn host(&self) -> &[f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(c) => c.not_on_host(),
        }
    }

    /// The host buffer, writable (see [`Storage::host`]).
    pub(crate) fn host_mut(&mut self) -> &mut [f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(c) => c.not_on_host(),
        }
    }
}

impl Indices {
    /// The host indices, or an error naming `op` when they are in GPU memory.
    pub(crate) fn host(&self, op: &'static str) -> crate::Result<&[u32]> {
        match self {
            Indices::Cpu(v) => Ok(v),
            Indices::Cuda(_) => Err(misplaced(op, Device::Cpu)),
        }
    }

    /// The indices in GPU memory, or an error naming `op` when they are on the host.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn gpu(&self, op: &'static str) -> crate::Result<&crate::cuda::DeviceIndices> {
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
