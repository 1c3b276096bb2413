//! CUDA graphs: a whole training step recorded once on the compute stream, then replayed with one launch.
//!
//! [`Graph::capture`] runs a step (forward, backward, optimizer step) while the compute stream records it
//! instead of running it; [`Graph::replay`] runs the recorded kernels again, with the same arguments and the
//! same buffers, without the host building an autograd graph or launching a kernel. What may happen inside the
//! captured step:
//!
//! - Kernels, cuBLAS calls (on the compute stream, with a workspace of its own set when the GPU was opened) and
//!   device-to-device copies are recorded.
//! - Allocations come from a memory pool of the graph's own, made and freed on a side stream that never
//!   captures: the graph holds no allocation or free nodes, so it can be replayed any number of times, and
//!   the pool keeps every buffer the recorded kernels touch until the graph is dropped, even one freed (by
//!   cudarc, into that pool) during the capture. Tensors created during the capture and kept afterwards (the
//!   loss, the predictions) are the graph's static outputs: each replay writes them again, in place.
//! - A tensor that existed before the capture and is dropped during it is kept until the graph is dropped,
//!   as recorded kernels may read it.
//! - Host data uploaded during the capture (a constant such as backward's seed of ones, an update program's
//!   table of pointers, cross entropy's targets) is copied once into pinned memory that the graph keeps, and
//!   every replay uploads those same bytes again. So data that changes from step to step must reach the graph
//!   another way: images through a static input tensor made before the capture and written with
//!   [`Tensor::assign`](crate::Tensor::assign) before each replay, host arguments such as targets through a
//!   [`HostInput`], whose pinned memory the replay reads where it is. An upload of 64 KiB or more during a
//!   capture (a batch, most likely) is refused.
//! - Reading to the host (`to_vec`, `item`, `to_device(Device::Cpu)`), [`synchronize`](super::synchronize) and
//!   the memory statistics return an error: nothing has run yet.
//!
//! Everything the captured kernels read or write that was made before the capture (parameters, optimizer
//! state, batchnorm statistics, static inputs) must stay alive, and in place, while the graph is replayed: a
//! step that replaces a tensor instead of updating it would be replayed against the old one. Host-side effects
//! of the step (the autograd graph, optimizer counters, gradients set to `None` by `zero_grad`) happen once, at
//! capture. Only one thread may use a GPU while it captures.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};

use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr, result, sys};

use super::{Gpu, err, gpu};
use crate::{Device, Result, TensorError};

/// Host data of at least this many bytes uploaded during a capture is refused: it is most likely a batch,
/// which a replay would upload unchanged.
const CONSTANT_LIMIT: usize = 64 << 10;

/// The pinned memory that constant uploads during a capture are packed into, a buffer at a time.
const HOST_CHUNK: usize = 64 << 10;

/// A recorded step, replayed on its GPU's compute stream by [`Graph::replay`]. See [`Graph::capture`] and the notes
/// at the top of `cuda/graph.rs` for what the captured step may do.
///
/// ```no_run
/// use tiny_tensor::{Device, Tensor, cuda::Graph};
/// let device = Device::new_cuda(0)?;
/// let x = Tensor::zeros(&[4]).to_device(device)?; // a static input, made before the capture
/// let (graph, y) = Graph::capture(device, || x.mul_scalar(2.0))?;
/// for batch in [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]] {
///     x.assign(&Tensor::from_vec(batch.to_vec(), &[4])?.to_device(device)?)?;
///     graph.replay()?;
///     println!("{:?}", y.to_vec()); // the static output, written by this replay
/// }
/// # Ok::<(), tiny_tensor::TensorError>(())
/// ```
pub struct Graph {
    // The executable graph goes first; CUDA frees one still running once it has finished.
    exec: Recorded,
    /// Held for its `Drop`, which frees what the graph kept once the replays are done.
    _owned: Owned,
    ordinal: usize,
    /// A graph is used from one thread at a time (CUDA does not lock graph objects), so it is `Send` only.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: the graph's handles may be used from any thread, one call at a time; `Graph` is not `Sync`, so
// `&Graph` never reaches two threads at once.
unsafe impl Send for Graph {}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph(cuda:{})", self.ordinal)
    }
}

impl Graph {
    /// Records `step` on the compute stream of `device` without running it, and returns the graph with
    /// what `step` returned (its static outputs, written by each replay). Nothing has run when this returns:
    /// call [`Graph::replay`] to run the step. `step` should be the whole step, `zero_grad` included, and
    /// should have run eagerly at least once before (optimizers create their buffers at their first step).
    ///
    /// Errors on the CPU, when `device` is capturing already, when `step` fails (its error, with the capture
    /// discarded; its host-side effects stay, so zero the gradients before going on), and when the driver
    /// invalidated the capture (a call that is not allowed during a capture was made inside `step`).
    pub fn capture<T, E>(
        device: Device,
        step: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<(Graph, T), E>
    where
        E: From<TensorError>,
    {
        let Device::Cuda(ordinal) = device else {
            return Err(TensorError::InvalidArgument {
                op: "Graph::capture",
                msg: "CUDA graphs record GPU work; the CPU has none to record (use a cuda device)".into(),
            }
            .into());
        };
        let g = gpu(ordinal)?;
        g.begin_capture()?;
        // Ends the capture even when `step` panics, so that the stream is usable again.
        let mut ending = EndOnDrop(Some(g));
        let out = step();
        let (graph, owned) = ending.end();
        let out = out?;
        let exec = graph?;
        Ok((Graph { exec, _owned: owned, ordinal, _not_sync: PhantomData }, out))
    }

    /// Runs the recorded step once more on the compute stream, in order with the work queued before it (such
    /// as the copies of a new batch into the static inputs). Returns at once; read the outputs afterwards.
    pub fn replay(&self) -> Result<()> {
        if gpu(self.ordinal)?.is_capturing() {
            return Err(TensorError::InvalidArgument {
                op: "Graph::replay",
                msg: format!("cuda:{} is capturing another graph; replay this one before or after", self.ordinal),
            });
        }
        let stream = &self.exec.stream;
        stream.context().bind_to_thread().map_err(err("Graph::replay"))?;
        unsafe { result::graph::launch(self.exec.exec, stream.cu_stream()) }.map_err(err("Graph::replay"))
    }

    /// The device the graph runs on.
    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }
}

fn capture_error(ordinal: usize, msg: String) -> TensorError {
    TensorError::Cuda { op: "Graph::capture", msg: format!("cuda:{ordinal}: {msg}") }
}

/// The error for something that needs the GPU's results while it captures.
pub(crate) fn while_capturing(op: &'static str, ordinal: usize) -> TensorError {
    TensorError::InvalidArgument {
        op,
        msg: format!(
            "cuda:{ordinal} is capturing a CUDA graph: nothing runs until the graph is replayed, so no result can \
             be read or waited for inside the captured step (read the step's outputs after Graph::replay)"
        ),
    }
}

/// An instantiated graph and the graph it was made from, destroyed when dropped. cudarc's `CudaGraph` would do,
/// but only its own `end_capture` makes one, and that returns early, with the stream still capturing, when an
/// earlier drop stored an error (see [`Gpu::end_capture`]).
struct Recorded {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    stream: Arc<CudaStream>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let ctx = self.stream.context();
        ctx.record_err(unsafe { result::graph::exec_destroy(self.exec) });
        ctx.record_err(unsafe { result::graph::destroy(self.graph) });
    }
}

/// Ends a capture when dropped, also when the captured step panicked.
struct EndOnDrop(Option<&'static Gpu>);

impl EndOnDrop {
    fn end(&mut self) -> (Result<Recorded>, Owned) {
        let g = self.0.take().expect("a capture ends once");
        g.end_capture()
    }
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            drop(g.end_capture());
        }
    }
}

/// The private pool that a capture allocates from, and the side stream its allocations are made and freed on.
struct GraphMemory {
    pool: sys::CUmemoryPool,
    stream: Arc<CudaStream>,
}

// SAFETY: a memory pool handle may be used from any thread.
unsafe impl Send for GraphMemory {}
unsafe impl Sync for GraphMemory {}

impl GraphMemory {
    fn new(g: &Gpu) -> Result<GraphMemory> {
        if !g.ctx.has_async_alloc() {
            return Err(capture_error(g.ordinal, "the GPU has no stream-ordered memory pools".into()));
        }
        // SAFETY: every field CUDA reads is set; the rest are zero, as the driver API documents for them.
        let mut props: sys::CUmemPoolProps = unsafe { std::mem::zeroed() };
        props.allocType = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type_ = sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
        props.location.id = g.ordinal as i32;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        unsafe { sys::cuMemPoolCreate(&mut pool, &props) }.result().map_err(err("cuMemPoolCreate"))?;
        // The pool keeps what is freed into it: replays still write there.
        let mut threshold: u64 = u64::MAX;
        let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
        let kept = unsafe { sys::cuMemPoolSetAttribute(pool, attr, (&mut threshold as *mut u64).cast()) };
        let stream = g.ctx.new_stream();
        match (kept.result(), stream) {
            (Ok(()), Ok(stream)) => Ok(GraphMemory { pool, stream }),
            (kept, stream) => {
                unsafe { sys::cuMemPoolDestroy(pool) };
                Err(err("graph memory")(kept.err().or(stream.err()).expect("one of them failed")))
            }
        }
    }

    /// `len` elements from the pool, on the side stream, as a slice that cudarc frees into the pool again.
    fn alloc<T>(&self, len: usize, bytes: usize) -> std::result::Result<CudaSlice<T>, cudarc::driver::DriverError> {
        let mut ptr: sys::CUdeviceptr = 0;
        relaxed(|| unsafe { sys::cuMemAllocFromPoolAsync(&mut ptr, bytes, self.pool, self.stream.cu_stream()) })
            .result()?;
        // SAFETY: `ptr` holds `bytes >= len * size_of::<T>()` bytes of this context's memory.
        Ok(unsafe { self.stream.upgrade_device_ptr(ptr, len) })
    }
}

impl Drop for GraphMemory {
    /// Destroys the pool; the driver waits with that until the allocations still held (outputs that outlive the
    /// graph) are freed.
    fn drop(&mut self) {
        unsafe { sys::cuMemPoolDestroy(self.pool) };
    }
}

/// Runs `f` with this thread's capture mode relaxed, for the few calls a capture makes that CUDA counts as
/// potentially unsafe during one (allocations), as PyTorch's allocator does.
fn relaxed<R>(f: impl FnOnce() -> R) -> R {
    let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
    unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    let out = f();
    unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    out
}

/// Page-locked host memory, freed when dropped.
struct Pinned {
    ptr: *mut c_void,
    len: usize,
}

// SAFETY: plain host memory; whoever writes it does so through `&mut` or before sharing it.
unsafe impl Send for Pinned {}
unsafe impl Sync for Pinned {}

impl Pinned {
    fn new(len: usize) -> std::result::Result<Pinned, cudarc::driver::DriverError> {
        let ptr = relaxed(|| unsafe { cudarc::driver::result::malloc_host(len.max(16), 0) })?;
        Ok(Pinned { ptr, len })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = unsafe { cudarc::driver::result::free_host(self.ptr) };
    }
}

/// What a capture gathers while its step runs, and what the graph then keeps: the pool, the memory made before
/// the capture and dropped during it, the pinned copies of its constant uploads and the host inputs it reads.
/// Dropping it frees all that once the compute stream is done with it.
pub(crate) struct Owned {
    ordinal: usize,
    mem: Option<GraphMemory>,
    kept: Vec<sys::CUdeviceptr>,
    host: Vec<Pinned>,
    host_used: usize,
    inputs: Vec<Arc<InputMem>>,
    /// What graphs dropped while this one was being captured kept, freed with this.
    retired: Vec<Owned>,
}

impl Owned {
    fn new(ordinal: usize, mem: Option<GraphMemory>) -> Owned {
        Owned {
            ordinal,
            mem,
            kept: Vec::new(),
            host: Vec::new(),
            host_used: 0,
            inputs: Vec::new(),
            retired: Vec::new(),
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.mem.is_none() && self.kept.is_empty() && self.host.is_empty() && self.retired.is_empty() {
            return;
        }
        let Ok(g) = gpu(self.ordinal) else { return };
        // During another capture the compute stream cannot be waited for: that capture takes this over.
        if g.is_capturing()
            && let Some(current) = g.capture_slot().as_mut()
        {
            current.retired.push(std::mem::replace(self, Owned::new(self.ordinal, None)));
            return;
        }
        let _ = g.stream.synchronize();
        for ptr in self.kept.drain(..) {
            let _ = unsafe { cudarc::driver::result::free_async(ptr, g.stream.cu_stream()) };
        }
        self.retired.clear();
        self.host.clear();
        self.inputs.clear();
        self.mem.take();
    }
}

impl Gpu {
    /// Whether this GPU's compute stream is capturing a graph now.
    pub(crate) fn is_capturing(&self) -> bool {
        self.capturing.load(Ordering::Acquire)
    }

    fn capture_slot(&self) -> MutexGuard<'_, Option<Owned>> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin_capture(&self) -> Result<()> {
        let mut slot = self.capture_slot();
        if slot.is_some() || self.is_capturing() {
            return Err(capture_error(self.ordinal, "a capture is in progress already".into()));
        }
        // The step reads its host inputs on the host while it is captured: their pending writes land first.
        for input in self.host_inputs() {
            input.written.synchronize().map_err(err("Graph::capture"))?;
        }
        let mem = GraphMemory::new(self)?;
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL)
            .map_err(err("Graph::capture"))?;
        *slot = Some(Owned::new(self.ordinal, Some(mem)));
        self.capturing.store(true, Ordering::Release);
        Ok(())
    }

    /// Ends the capture, always: `cuStreamEndCapture` runs first, whatever happened during the step, so that the
    /// stream takes work again. Only then come the graph's instantiation and the error that a drop during the
    /// capture may have stored in the context (cudarc's drops cannot return theirs), which discards the graph: a
    /// free or a wait that failed while the step was recorded leaves it incomplete. cudarc's own `end_capture`
    /// checks that stored error first and returns with the stream still capturing, which fails every later call.
    fn end_capture(&self) -> (Result<Recorded>, Owned) {
        let ended = unsafe { result::stream::end_capture(self.stream.cu_stream()) };
        self.capturing.store(false, Ordering::Release);
        let owned = self.capture_slot().take().expect("a capture in progress has its state");
        let graph = match ended {
            Ok(graph) if graph.is_null() => Err("the driver returned no graph".to_owned()),
            Ok(graph) => match unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) } {
                Ok(exec) => Ok(Recorded { graph, exec, stream: self.stream.clone() }),
                Err(e) => {
                    self.ctx.record_err(unsafe { result::graph::destroy(graph) });
                    Err(format!("{e} (instantiating the graph)"))
                }
            },
            Err(e) => Err(format!(
                "{e}: a call that is not allowed while a stream captures (a host synchronisation, a copy from \
                 pageable memory, a wait on an event of another stream) was made inside the step"
            )),
        };
        // A graph made despite a stored error is dropped here, once the capture has ended.
        let graph = match self.ctx.check_err() {
            Ok(()) => graph,
            Err(stored) => Err(format!(
                "a CUDA call that could not report its error at once (a free or an event wait in a drop) failed \
                 while the step was captured: {stored}; the capture was ended and discarded"
            )),
        };
        (graph.map_err(|msg| capture_error(self.ordinal, msg)), owned)
    }

    /// `len` elements of device memory during a capture, from the capture's pool.
    pub(crate) fn capture_alloc<T>(&self, len: usize) -> Result<CudaSlice<T>> {
        let bytes = len * std::mem::size_of::<T>();
        let slot = self.capture_slot();
        let mem = slot.as_ref().and_then(|o| o.mem.as_ref()).ok_or_else(|| while_capturing("alloc", self.ordinal))?;
        mem.alloc(len, bytes.max(1)).map_err(|e| TensorError::Cuda {
            op: "alloc",
            msg: format!("{e} (asking for {bytes} bytes on cuda:{} during a graph capture)", self.ordinal),
        })
    }

    /// Called when a tensor's device memory is dropped during a capture. Memory of this capture goes back to its
    /// pool (the side stream frees it at once, and the pool hands it out again in recording order); any other is
    /// kept until the graph goes, as recorded kernels may read it. Its slice is swapped for a placeholder of
    /// the pool, since freeing it on the capturing stream is not allowed.
    pub(crate) fn keep_dropped<T>(&self, slice: &mut CudaSlice<T>) {
        let mut slot = self.capture_slot();
        let Some(owned) = slot.as_mut() else { return };
        let Some(mem) = owned.mem.as_ref() else { return };
        if Arc::ptr_eq(slice.stream(), &mem.stream) {
            return;
        }
        let Ok(placeholder) = mem.alloc::<T>(0, std::mem::size_of::<T>().max(1)) else { return };
        owned.kept.push(std::mem::replace(slice, placeholder).leak());
    }

    /// An upload during a capture: the graph's copy reads a [`HostInput`] where it is, and any other host data
    /// from a pinned copy made now.
    pub(crate) fn capture_upload<T: cudarc::driver::DeviceRepr + Copy>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        let bytes = std::mem::size_of_val(data);
        let dst = self.capture_alloc::<T>(data.len().max(1))?;
        if bytes == 0 {
            return Ok(dst);
        }
        let input = self.host_inputs().into_iter().find(|i| i.holds(data.as_ptr().cast(), bytes));
        let mut slot = self.capture_slot();
        let owned = slot.as_mut().ok_or_else(|| while_capturing("upload", self.ordinal))?;
        let src: *const c_void = match input {
            Some(input) => {
                owned.inputs.push(input);
                data.as_ptr().cast()
            }
            None if bytes >= CONSTANT_LIMIT => {
                return Err(TensorError::InvalidArgument {
                    op: "upload",
                    msg: format!(
                        "{bytes} bytes of host data were uploaded to cuda:{} inside a graph capture: every replay \
                         would upload the same bytes again. Upload changing data before the capture into a \
                         static tensor and write each new batch into it with Tensor::assign before Graph::replay",
                        self.ordinal
                    ),
                });
            }
            None => {
                // Packed into the capture's pinned buffers, each copy at a 16-byte boundary.
                if owned.host.last().is_none_or(|h| owned.host_used.next_multiple_of(16) + bytes > h.len) {
                    owned.host.push(Pinned::new(bytes.max(HOST_CHUNK)).map_err(err("upload"))?);
                    owned.host_used = 0;
                }
                let at = owned.host_used.next_multiple_of(16);
                let host = owned.host.last().expect("a host buffer was just made");
                // SAFETY: `[at, at + bytes)` lies in the buffer, and nothing else reads or writes it yet.
                let dst_host = unsafe { host.ptr.cast::<u8>().add(at) };
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), dst_host, bytes) };
                owned.host_used = at + bytes;
                dst_host.cast_const().cast()
            }
        };
        let (dptr, _) = dst.device_ptr(&self.stream);
        unsafe { sys::cuMemcpyHtoDAsync_v2(dptr, src, bytes, self.stream.cu_stream()) }
            .result()
            .map_err(err("upload"))?;
        Ok(dst)
    }

    /// The live host inputs of this GPU, forgetting those that are gone.
    fn host_inputs(&self) -> Vec<Arc<InputMem>> {
        let mut inputs = self.host_inputs.lock().unwrap_or_else(|e| e.into_inner());
        inputs.retain(|w| w.strong_count() > 0);
        inputs.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Host arguments that a captured step hands to an op as a slice, cross entropy's targets above all: pinned
/// memory that the graph's copy reads at each replay, so that [`HostInput::set`] before [`Graph::replay`]
/// feeds the replay new values. Pass [`HostInput::as_slice`] to the op inside the captured step.
///
/// ```no_run
/// use tiny_tensor::{Device, Tensor, cuda::{Graph, HostInput}};
/// let device = Device::new_cuda(0)?;
/// let logits = Tensor::zeros(&[2, 3]).to_device(device)?;
/// let mut targets = HostInput::new(device, &[0, 1])?;
/// let y = targets.as_slice()?;
/// let (graph, loss) = Graph::capture(device, || logits.log_softmax_nll(y))?;
/// targets.set(&[2, 2])?; // the next replay's targets
/// graph.replay()?;
/// println!("{:?}", loss.to_vec());
/// # Ok::<(), tiny_tensor::TensorError>(())
/// ```
pub struct HostInput {
    mem: Arc<InputMem>,
}

impl std::fmt::Debug for HostInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostInput(cuda:{}, {} values)", self.mem.ordinal, self.mem.len)
    }
}

/// A host input's pinned memory, shared with the graphs that read it, and an event recorded after the last
/// copy that wrote it.
pub(crate) struct InputMem {
    host: Pinned,
    len: usize,
    ordinal: usize,
    written: CudaEvent,
}

impl InputMem {
    fn holds(&self, ptr: *const c_void, bytes: usize) -> bool {
        let (start, at) = (self.host.ptr as usize, ptr as usize);
        at >= start && at + bytes <= start + self.len * std::mem::size_of::<u32>()
    }
}

impl Drop for InputMem {
    /// Waits until no queued copy reads or writes the memory any more.
    fn drop(&mut self) {
        if let Ok(g) = gpu(self.ordinal)
            && !g.is_capturing()
        {
            let _ = g.stream.synchronize();
        }
    }
}

impl Drop for HostInput {
    /// During a capture the memory may be read by the graph being recorded, which then keeps it.
    fn drop(&mut self) {
        if let Ok(g) = gpu(self.mem.ordinal)
            && g.is_capturing()
            && let Some(owned) = g.capture_slot().as_mut()
        {
            owned.inputs.push(self.mem.clone());
        }
    }
}

impl HostInput {
    /// Pinned memory on the host for `values.len()` values read by graphs on `device`, holding `values`.
    pub fn new(device: Device, values: &[u32]) -> Result<HostInput> {
        let Device::Cuda(ordinal) = device else {
            return Err(TensorError::InvalidArgument {
                op: "HostInput::new",
                msg: "host inputs feed CUDA graphs; the CPU needs none".into(),
            });
        };
        let g = gpu(ordinal)?;
        if g.is_capturing() {
            return Err(while_capturing("HostInput::new", ordinal));
        }
        let host = Pinned::new(std::mem::size_of_val(values)).map_err(err("HostInput::new"))?;
        // SAFETY: the fresh buffer holds at least `values.len()` values and nothing else uses it yet.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), host.ptr.cast::<u32>(), values.len()) };
        let written = g.ctx.new_event(None).map_err(err("HostInput::new"))?;
        let mem = Arc::new(InputMem { host, len: values.len(), ordinal, written });
        g.host_inputs.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&mem));
        Ok(HostInput { mem })
    }

    /// Replaces the values, in order with the GPU's work: after every replay queued so far has read the old
    /// ones, before any queued later. The host does not wait. Errors when the length differs or during a
    /// capture.
    pub fn set(&mut self, values: &[u32]) -> Result<()> {
        let m = &self.mem;
        if values.len() != m.len {
            return Err(TensorError::ShapeMismatch { op: "HostInput::set", lhs: vec![values.len()], rhs: vec![m.len] });
        }
        let g = gpu(m.ordinal)?;
        if g.is_capturing() {
            return Err(while_capturing("HostInput::set", m.ordinal));
        }
        if values.is_empty() {
            return Ok(());
        }
        // Up to the device and back into the pinned memory on the compute stream, so that the write is ordered
        // after the replays that read the old values.
        let dev = g.upload_u32(values)?;
        let (dptr, _) = dev.device_ptr(&g.stream);
        unsafe { sys::cuMemcpyDtoHAsync_v2(m.host.ptr, dptr, std::mem::size_of_val(values), g.stream.cu_stream()) }
            .result()
            .map_err(err("HostInput::set"))?;
        m.written.record(&g.stream).map_err(err("HostInput::set"))
    }

    /// The values, once the last [`HostInput::set`] has landed: hand this slice to the op inside the captured
    /// step, and the replays read the memory behind it.
    pub fn as_slice(&self) -> Result<&[u32]> {
        let m = &self.mem;
        // A capture waited for the pending write when it began.
        if !gpu(m.ordinal)?.is_capturing() {
            m.written.synchronize().map_err(err("HostInput::as_slice"))?;
        }
        // SAFETY: the memory holds `len` values, no copy writes it now, and `set` needs `&mut self`.
        Ok(unsafe { std::slice::from_raw_parts(m.host.ptr.cast::<u32>(), m.len) })
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.mem.len
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.mem.len == 0
    }
}
