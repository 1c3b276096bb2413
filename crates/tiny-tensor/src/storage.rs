//! `Storage`: the flat buffer behind one or more tensor views, on the CPU or (with `cuda`) a GPU.

use crate::Device;

/// The memory behind tensors. Views share one `Storage` through an `Arc`; each view has its own `Layout`.
#[derive(Debug)]
pub enum Storage {
    /// A host buffer.
    Cpu(Vec<f32>),
    /// A device buffer; without the `cuda` feature this type has no values, so these arms never run.
    Cuda(CudaStorage),
}

/// GPU memory. Without the `cuda` feature the type is uninhabited: the `Cuda` arms of the dispatch compile
/// and never run. With it, this is `cuda::CudaStorage`, a device buffer.
#[cfg(not(feature = "cuda"))]
#[derive(Debug)]
pub enum CudaStorage {}

#[cfg(feature = "cuda")]
pub use crate::cuda::CudaStorage;

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
}

#[cfg(not(feature = "cuda"))]
impl CudaStorage {
    fn device(&self) -> Device {
        match *self {}
    }

    fn len(&self) -> usize {
        match *self {}
    }
}
