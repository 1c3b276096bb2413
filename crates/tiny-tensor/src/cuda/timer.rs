//! GPU time between points of the compute stream's work, from CUDA events: per-step times that need no host wait.

use cudarc::driver::{CudaEvent, sys};

use super::{err, gpu, graph};
use crate::{Device, Result, TensorError};

/// Marks points in the work queued on a GPU's compute stream and measures, with CUDA timing events, the GPU time
/// between consecutive marks. Marking does not wait for the GPU, so steps stay queued back to back as they would
/// be untimed; only [`EventTimer::intervals_ms`] waits, once, for the last mark.
///
/// ```no_run
/// use tiny_tensor::{Device, Tensor, cuda::EventTimer};
/// let device = Device::new_cuda(0)?;
/// let x = Tensor::zeros(&[1024]).to_device(device)?;
/// let mut timer = EventTimer::new(device)?;
/// timer.mark()?;
/// for _ in 0..10 {
///     x.mul_scalar(2.0)?;
///     timer.mark()?;
/// }
/// let steps: Vec<f64> = timer.intervals_ms()?; // ten times, one per step
/// # Ok::<(), tiny_tensor::TensorError>(())
/// ```
pub struct EventTimer {
    ordinal: usize,
    marks: Vec<CudaEvent>,
}

impl std::fmt::Debug for EventTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventTimer(cuda:{}, {} marks)", self.ordinal, self.marks.len())
    }
}

impl EventTimer {
    /// A timer with no marks for the compute stream of `device`. Errors on the CPU or when the GPU cannot open.
    pub fn new(device: Device) -> Result<EventTimer> {
        let Device::Cuda(ordinal) = device else {
            return Err(TensorError::InvalidArgument {
                op: "EventTimer::new",
                msg: "CUDA events time GPU work; time the CPU with std::time::Instant".into(),
            });
        };
        gpu(ordinal)?;
        Ok(EventTimer { ordinal, marks: Vec::new() })
    }

    /// Records a timing event after all work queued on the compute stream so far. Errors while the GPU captures
    /// a graph: a recorded step has no time until it is replayed, so mark around
    /// [`Graph::replay`](super::Graph::replay) instead.
    pub fn mark(&mut self) -> Result<()> {
        let g = gpu(self.ordinal)?;
        if g.is_capturing() {
            return Err(graph::while_capturing("EventTimer::mark", self.ordinal));
        }
        let event = g.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(err("EventTimer::mark"))?;
        event.record(&g.stream).map_err(err("EventTimer::mark"))?;
        self.marks.push(event);
        Ok(())
    }

    /// Waits for the last mark and returns the GPU time between each mark and the next, in milliseconds: one
    /// value fewer than there are marks.
    pub fn intervals_ms(&self) -> Result<Vec<f64>> {
        self.marks
            .windows(2)
            .map(|pair| pair[0].elapsed_ms(&pair[1]).map(f64::from).map_err(err("EventTimer::intervals_ms")))
            .collect()
    }
}
