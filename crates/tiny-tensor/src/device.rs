//! `Device`: where a tensor's storage lives.

use std::fmt;

/// Where a tensor's data lives: the CPU, or a CUDA GPU by ordinal (with the `cuda` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory; every op has a CPU kernel.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal. Without the `cuda` feature, moving a tensor there is an error.
    Cuda(usize),
}

impl Device {
    /// The CUDA GPU with this ordinal, opened now (context, streams, cuBLAS, kernels), or the reason it cannot be
    /// used here: tiny-tensor built without the `cuda` feature, a CUDA library not found, no such device, a
    /// kernel that failed to load.
    pub fn new_cuda(ordinal: usize) -> crate::Result<Device> {
        crate::backend::of(Device::Cuda(ordinal)).map(|_| Device::Cuda(ordinal))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = crate::TensorError;

    /// Parses `cpu`, `cuda` (ordinal 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::TensorError::InvalidArgument {
            op: "Device::from_str",
            msg: format!("unknown device {s:?}; expected cpu, cuda or cuda:N"),
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Device::Cuda).ok_or_else(bad),
        }
    }
}
