//! The CUDA backend: per GPU one context, a compute and a copy stream, one cuBLAS handle, kernels built once.
//!
//! Every kernel runs in order on the compute stream, so kernels never need events between them; the host
//! only waits when it reads data back or reuses a pinned buffer whose copy is still queued. The compute stream
//! is a created, non-blocking stream, not the legacy NULL stream: nothing is ordered implicitly, and the
//! stream can be captured into a CUDA graph (`graph.rs`). Allocations go through CUDA's stream-ordered pool,
//! kept warm between steps, and are freed on the compute stream after the kernels that use them. Uploads go
//! through pinned staging buffers, and a whole batch goes up on the copy stream while the compute stream is
//! still busy with the previous step (`upload.rs`); events order the two.

mod cache;
mod graph;
pub(crate) mod strided;
mod timer;
mod upload;

pub use cache::{KernelOrigin, kernel_origin};
pub use graph::{Graph, HostInput};
pub use timer::EventTimer;

use upload::{Staging, Streams};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr, DeviceRepr, LaunchConfig};

use crate::layout::Layout;
use crate::{Device, Result, Storage, Tensor, TensorError};

/// The kernel sources, embedded at build time from each op's folder; `common.cuh` and the elementwise op
/// tables' `case` lines are prepended to them. Pooling uses `ConvGeom` and the window helpers of `conv.cu`, so
/// that file comes first.
const COMMON: &str = include_str!("common.cuh");
const SOURCES: [&str; 9] = [
    include_str!("../ops/elementwise/elementwise.cu"),
    include_str!("../ops/reduce/reduce.cu"),
    include_str!("../ops/conv/conv.cu"),
    include_str!("../ops/pool/pool.cu"),
    include_str!("../ops/norm/batchnorm.cu"),
    include_str!("../ops/index/index.cu"),
    include_str!("../ops/loss/loss.cu"),
    include_str!("../ops/warp/warp.cu"),
    include_str!("../ops/foreach/foreach.cu"),
];

/// Every kernel the backend launches.
const KERNELS: [&str; 28] = [
    "unary_f32",
    "unary_dense_f32",
    "binary_f32",
    "binary_dense_f32",
    "update_f32",
    "update_dense_f32",
    "reduce_f32",
    "reduce_cols_f32",
    "reduce_finish_f32",
    "im2col_f32",
    "col2im_f32",
    "bias_relu_f32",
    "max_pool_f32",
    "max_pool_backward_f32",
    "avg_pool_f32",
    "avg_pool_backward_f32",
    "bn_stats_partial_f32",
    "bn_stats_finish_f32",
    "bn_affine_f32",
    "bn_backward_partial_f32",
    "bn_backward_finish_f32",
    "bn_backward_dx_f32",
    "index_f32",
    "log_softmax_nll_f32",
    "log_softmax_nll_backward_f32",
    "warp_perspective_f32",
    "foreach_dense_f32",
    "foreach_strided_f32",
];

/// GPU memory: a device buffer of `T` (the floats behind a tensor, or an op's `u32` indices) and the ordinal of
/// its GPU.
#[derive(Debug)]
pub struct CudaStorage<T = f32> {
    pub(crate) slice: CudaSlice<T>,
    pub(crate) ordinal: usize,
}

impl<T> Drop for CudaStorage<T> {
    /// Makes the buffer's context current before cudarc frees it on the stream it was allocated on (the
    /// compute stream, or for a graph's memory the graph's side stream), so that a tensor dropped on another
    /// thread, or while another GPU is current, is freed on its own GPU. While the GPU captures a graph, memory
    /// from before the capture is kept for the graph instead (`Gpu::keep_dropped`); a graph's memory dropped
    /// later is freed only after the compute stream's queued work, which may still use it.
    fn drop(&mut self) {
        make_current(self.slice.context());
        let Some(g) = GPUS.get(self.ordinal).and_then(OnceLock::get) else { return };
        if g.is_capturing() {
            g.keep_dropped(&mut self.slice);
        } else if !Arc::ptr_eq(self.slice.stream(), &g.stream) {
            let _ = self.slice.stream().join(&g.stream);
        }
    }
}

/// Makes `ctx` current on this thread. Not through `bind_to_thread`: that first returns (and clears) an error
/// cudarc recorded in an earlier drop, and would then leave the context unbound, so that the free that
/// follows acted on whatever context this thread has.
fn make_current(ctx: &CudaContext) {
    let _ = unsafe { cudarc::driver::result::ctx::set_current(ctx.cu_ctx()) };
}

impl<T> CudaStorage<T> {
    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    pub(crate) fn len(&self) -> usize {
        self.slice.len()
    }

    /// Stops a CPU kernel that was handed GPU memory: the backend follows the tensor's device, so this is a
    /// bug in the dispatch, never bad input.
    pub(crate) fn not_on_host(&self) -> ! {
        unreachable!("a CPU kernel was given the GPU storage of cuda:{}", self.ordinal)
    }
}

/// Whether cuBLAS may use TF32 tensor cores for f32 matmuls and convolutions (PyTorch's `allow_tf32`).
static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets matmuls and convolutions on the GPU round their inputs to TF32 (faster, about 3 decimal digits), like
/// PyTorch's `torch.backends.cuda.matmul.allow_tf32`. Off by default.
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, Ordering::Relaxed);
}

/// Whether TF32 is allowed (see [`set_allow_tf32`]).
pub fn allow_tf32() -> bool {
    ALLOW_TF32.load(Ordering::Relaxed)
}

/// The bytes of the workspace given to cuBLAS: NVIDIA's recommendation for Hopper (32 MiB), enough for the
/// others. Set once when the GPU opens, so that eager and captured matmuls use the same one and cuBLAS never
/// allocates a workspace of its own inside a graph capture.
const CUBLAS_WORKSPACE: usize = 32 << 20;

/// One GPU, ready to run kernels.
pub(crate) struct Gpu {
    pub(crate) ordinal: usize,
    pub(crate) ctx: Arc<CudaContext>,
    /// The compute stream: a created non-blocking stream, so that it can be captured into a graph.
    pub(crate) stream: Arc<CudaStream>,
    /// The cuBLAS handle and whether it is set to TF32 math now.
    pub(crate) blas: Mutex<(CudaBlas, bool)>,
    /// cuBLAS's workspace, kept for the process.
    _blas_workspace: CudaSlice<u8>,
    functions: HashMap<&'static str, CudaFunction>,
    /// A second stream, for uploads of whole batches while the compute stream runs (see `upload.rs`).
    copy_stream: Arc<CudaStream>,
    staging_f32: Mutex<Staging<f32>>,
    staging_u32: Mutex<Staging<u32>>,
    /// Whether the compute stream is capturing a graph, and what that capture gathers (`graph.rs`).
    capturing: AtomicBool,
    capture: Mutex<Option<graph::Owned>>,
    /// The host inputs made for graphs on this GPU, found by address when a capture uploads from one.
    host_inputs: Mutex<Vec<Weak<graph::InputMem>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{})", self.ordinal)
    }
}

/// The error for a failed CUDA call in `op`.
pub(crate) fn err(op: &'static str) -> impl Fn(cudarc::driver::DriverError) -> TensorError {
    move |e| TensorError::Cuda { op, msg: e.to_string() }
}

fn unavailable(ordinal: usize, reason: impl Into<String>) -> TensorError {
    TensorError::DeviceUnavailable { device: Device::Cuda(ordinal), reason: reason.into() }
}

/// The kernel sources as NVRTC compiles them: the common header, the elementwise op tables and the foreach
/// program's limits and codes, then each file.
fn kernel_source() -> String {
    use crate::ops::elementwise::{BinaryOp, UnaryOp};
    let mut src = String::from(COMMON);
    src.push_str(UnaryOp::CUDA_CASES);
    src.push_str(BinaryOp::CUDA_CASES);
    src.push_str(&crate::ops::foreach::cuda::cuda_defines());
    for s in SOURCES {
        src.push('\n');
        src.push_str(s);
    }
    src
}

/// Compiles the kernels with NVRTC for `arch` (for example `compute_90`), or NVRTC's default architecture.
/// Needs only the NVRTC library, no GPU: the tests use it to check the kernels wherever NVRTC is installed.
pub fn compile_kernels(arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx> {
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(unavailable(0, "the NVRTC library (libnvrtc) was not found"));
    }
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("tiny_kernels.cu".into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(kernel_source(), opts)
        .map_err(|e| TensorError::Cuda { op: "compile_kernels", msg: format!("{e:?}") })
}

/// Compiles the kernels with NVRTC into a CUBIN, machine code for GPUs of compute capability
/// `major.minor`. Unlike PTX, which the driver compiles when it loads it and refuses when NVRTC is newer than
/// the driver, a CUBIN loads on any driver of NVRTC's major version. Needs only the NVRTC library.
pub fn compile_cubin(major: i32, minor: i32) -> Result<Vec<u8>> {
    compile_cubin_with(major, minor, &[]).map(|(cubin, _)| cubin)
}

/// [`compile_cubin`] with extra NVRTC `options` (such as `--ptxas-options=-v`); also returns NVRTC's program log.
pub(crate) fn compile_cubin_with(major: i32, minor: i32, options: &[&str]) -> Result<(Vec<u8>, String)> {
    use cudarc::nvrtc::{result, sys};
    if !unsafe { sys::is_culib_present() } {
        return Err(unavailable(0, "the NVRTC library (libnvrtc) was not found"));
    }
    let fail = |msg: String| TensorError::Cuda { op: "compile_cubin", msg };
    let src = std::ffi::CString::new(kernel_source()).map_err(|e| fail(e.to_string()))?;
    let prog = result::create_program(&src, None).map_err(|e| fail(format!("{e:?}")))?;
    let built = (|| {
        let mut opts = vec![format!("--gpu-architecture=sm_{major}{minor}")];
        opts.extend(options.iter().map(|o| o.to_string()));
        let compiled = unsafe { result::compile_program(prog, &opts) };
        let log = unsafe { result::get_program_log(prog) }.unwrap_or_default();
        let log: String = log.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect();
        if let Err(e) = compiled {
            return Err(fail(format!("{e:?}: {log}")));
        }
        let mut len = 0usize;
        unsafe { sys::nvrtcGetCUBINSize(prog, &mut len) }.result().map_err(|e| fail(format!("{e:?}")))?;
        let mut cubin = vec![0u8; len];
        unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) }.result().map_err(|e| fail(format!("{e:?}")))?;
        Ok((cubin, log))
    })();
    let _ = unsafe { result::destroy_program(prog) };
    built
}

/// The kernels loaded on `ctx`'s GPU: a cached CUBIN when an earlier process built one for this source, GPU and
/// NVRTC (`cache.rs`), else a CUBIN that NVRTC builds now (and the cache keeps), else PTX.
fn load_kernels(ctx: &Arc<CudaContext>, major: i32, minor: i32) -> Result<Arc<cudarc::driver::CudaModule>> {
    use cudarc::nvrtc::Ptx;
    let ordinal = ctx.ordinal();
    let nvrtc = nvrtc_version();
    let cached = cache::dir().map(|d| cache::path(&d, &kernel_source(), (major, minor), nvrtc));
    if let Some(path) = &cached
        && let Some(cubin) = cache::read(path)
        && let Ok(module) = ctx.load_module(Ptx::from_binary(cubin))
    {
        cache::record(ordinal, KernelOrigin::Cache(path.clone()));
        return Ok(module);
    }
    // A missing, stale or damaged file: compile, and write the file anew.
    let start = std::time::Instant::now();
    let cubin_failed = match compile_cubin(major, minor) {
        Ok(cubin) => match ctx.load_module(Ptx::from_binary(cubin.clone())) {
            Ok(module) => {
                if let Some(path) = &cached {
                    cache::write(path, &cubin);
                }
                cache::record(ordinal, KernelOrigin::Compiled(start.elapsed().as_secs_f64()));
                return Ok(module);
            }
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let ptx = compile_kernels(arch_for(major, minor))?;
    let module = ctx.load_module(ptx).map_err(|e| {
        use cudarc::driver::sys::CUresult;
        let msg = if e.0 == CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION {
            let (d, n) = (driver_version(), nvrtc);
            format!(
                "this driver supports CUDA {}.{}, older than NVRTC {}.{}, so it cannot load NVRTC's PTX, and no CUBIN \
                 could be built or loaded ({cubin_failed}); install a driver for CUDA {}.{} or newer, or put an NVRTC \
                 no newer than CUDA {}.{} first on the library path",
                d / 1000,
                d % 1000 / 10,
                n.0,
                n.1,
                n.0,
                n.1,
                d / 1000,
                d % 1000 / 10
            )
        } else {
            format!("{e} (as a CUBIN: {cubin_failed})")
        };
        TensorError::Cuda { op: "load_module", msg }
    })?;
    cache::record(ordinal, KernelOrigin::Ptx);
    Ok(module)
}

/// NVRTC's version as (major, minor), or (0, 0) when it cannot say.
fn nvrtc_version() -> (i32, i32) {
    let (mut major, mut minor) = (0, 0);
    let _ = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (major, minor)
}

/// The CUDA version the driver supports, as CUDA writes it (13000 for 13.0), or 0 when it cannot say.
fn driver_version() -> i32 {
    let mut v = 0;
    let _ = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    v
}

/// The NVRTC architecture name for a compute capability, where NVRTC knows it.
fn arch_for(major: i32, minor: i32) -> Option<&'static str> {
    Some(match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => return None,
    })
}

impl Gpu {
    fn open(ordinal: usize) -> Result<Gpu> {
        // cudarc panics when a library is missing, so look for each one first.
        let missing = [
            ("the CUDA driver (libcuda)", unsafe { cudarc::driver::sys::is_culib_present() }),
            ("NVRTC (libnvrtc)", unsafe { cudarc::nvrtc::sys::is_culib_present() }),
            ("cuBLAS (libcublas)", unsafe { cudarc::cublas::sys::is_culib_present() }),
        ];
        if let Some((lib, _)) = missing.iter().find(|(_, present)| !present) {
            return Err(unavailable(ordinal, format!("{lib} was not found on this machine")));
        }
        let count = CudaContext::device_count().map_err(|e| unavailable(ordinal, e.to_string()))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(ordinal, format!("this machine has {count} CUDA device(s)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(ordinal, e.to_string()))?;
        // The compute stream does all the work but uploads, which `upload.rs` orders with events of its own,
        // so cudarc's per-buffer events would only cost time.
        unsafe { ctx.disable_event_tracking() };
        // Only a matter of speed: without it the pool returns memory to the driver at each synchronisation.
        let _ = keep_pool_warm(&ctx);
        // Both streams are created non-blocking: neither waits for the legacy default stream (which tiny leaves
        // unused) nor for each other; `upload.rs` orders them with events.
        let stream = ctx.new_stream().map_err(err("new_stream"))?;
        let copy_stream = ctx.new_stream().map_err(err("new_stream"))?;
        let (major, minor) = ctx.compute_capability().map_err(err("compute_capability"))?;
        let module = load_kernels(&ctx, major, minor)?;
        let mut functions = HashMap::new();
        for name in KERNELS {
            functions.insert(name, module.load_function(name).map_err(err("load_function"))?);
        }
        let blas_err = |e: cudarc::cublas::result::CublasError| TensorError::Cuda { op: "cublas", msg: e.to_string() };
        let blas = CudaBlas::new(stream.clone()).map_err(blas_err)?;
        // cuBLAS's stream is the compute stream from here on (setting a stream would reset the workspace).
        let workspace = unsafe { stream.alloc::<u8>(CUBLAS_WORKSPACE) }.map_err(err("cublas workspace"))?;
        let (ws, _) = workspace.device_ptr(&stream);
        unsafe { cudarc::cublas::sys::cublasSetWorkspace_v2(*blas.handle(), ws as *mut _, CUBLAS_WORKSPACE) }
            .result()
            .map_err(blas_err)?;
        Ok(Gpu {
            ordinal,
            ctx,
            stream,
            copy_stream,
            blas: Mutex::new((blas, false)),
            _blas_workspace: workspace,
            functions,
            staging_f32: Mutex::new(Staging::default()),
            staging_u32: Mutex::new(Staging::default()),
            capturing: AtomicBool::new(false),
            capture: Mutex::new(None),
            host_inputs: Mutex::new(Vec::new()),
        })
    }

    /// A compiled kernel by name.
    pub(crate) fn func(&self, name: &'static str) -> &CudaFunction {
        &self.functions[name]
    }

    /// An uninitialised device buffer of `len` floats (every kernel that gets one writes all of it). During a
    /// graph capture it comes from the capture's own pool (`graph.rs`).
    pub(crate) fn alloc<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>> {
        if self.is_capturing() {
            return self.capture_alloc(len.max(1));
        }
        self.retry_out_of_memory::<T, _>("alloc", len, || unsafe { self.stream.alloc::<T>(len.max(1)) })
    }

    /// A zero-filled device buffer of `len` floats.
    pub(crate) fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        if self.is_capturing() {
            let mut zeros = self.capture_alloc::<f32>(len.max(1))?;
            self.stream.memset_zeros(&mut zeros).map_err(err("alloc_zeros"))?;
            return Ok(zeros);
        }
        self.retry_out_of_memory::<f32, _>("alloc_zeros", len, || self.stream.alloc_zeros::<f32>(len.max(1)))
    }

    /// Runs an allocation of `len` elements. When the GPU is out of memory, the pool hands the free memory it
    /// keeps back to the driver (as PyTorch's caching allocator empties its cache) and the allocation is
    /// tried once more; a second failure is an error that says how much was asked for.
    fn retry_out_of_memory<T, R>(
        &self,
        op: &'static str,
        len: usize,
        f: impl Fn() -> std::result::Result<R, cudarc::driver::DriverError>,
    ) -> Result<R> {
        use cudarc::driver::sys::CUresult;
        let result = match f() {
            Err(e) if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                let _ = self.stream.synchronize();
                if let Ok(pool) = default_pool(&self.ctx) {
                    unsafe { cudarc::driver::sys::cuMemPoolTrimTo(pool, 0) };
                }
                f()
            }
            r => r,
        };
        result.map_err(|e| {
            let mib = (len * std::mem::size_of::<T>()) as f64 / (1 << 20) as f64;
            TensorError::Cuda { op, msg: format!("{e} (asking for {mib:.1} MiB on cuda:{})", self.ordinal) }
        })
    }

    /// Copies host floats to a new device buffer through a pinned staging buffer, without waiting for the stream.
    pub(crate) fn upload(&self, data: &[f32]) -> Result<CudaSlice<f32>> {
        self.upload_through(&self.staging_f32, data)
    }

    /// Copies host indices to a new device buffer, like [`Gpu::upload`].
    pub(crate) fn upload_u32(&self, data: &[u32]) -> Result<CudaSlice<u32>> {
        self.upload_through(&self.staging_u32, data)
    }

    fn upload_through<T>(&self, staging: &Mutex<Staging<T>>, data: &[T]) -> Result<CudaSlice<T>>
    where
        T: DeviceRepr + Copy + cudarc::driver::ValidAsZeroBits,
    {
        // A capture records the copy from memory that stays as it is (`graph.rs`); the staging ring is reused.
        if self.is_capturing() {
            return self.capture_upload(data);
        }
        let mut dst = self.alloc::<T>(data.len())?;
        if !data.is_empty() {
            let mut staging = staging.lock().unwrap_or_else(|e| e.into_inner());
            staging.upload(Streams { compute: &self.stream, copy: &self.copy_stream }, data, &mut dst)?;
        }
        Ok(dst)
    }

    /// A device buffer of this GPU as a storage (of a tensor's floats, or of an op's indices).
    pub(crate) fn storage<T: crate::Element>(&self, slice: CudaSlice<T>) -> Storage<T> {
        Storage::Cuda(CudaStorage { slice, ordinal: self.ordinal })
    }

    /// Reads `len` floats from `offset` of a device buffer (waits for the stream). An error during a graph
    /// capture, when nothing has run yet.
    pub(crate) fn download(&self, slice: &CudaSlice<f32>, offset: usize, len: usize) -> Result<Vec<f32>> {
        if self.is_capturing() {
            return Err(graph::while_capturing("to_vec", self.ordinal));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        self.stream.clone_dtoh(&slice.slice(offset..offset + len)).map_err(err("download"))
    }
}

/// Tells CUDA's stream-ordered pool to keep freed memory for reuse instead of returning it to the driver at
/// each synchronisation, so that memory stays flat and allocations stay cheap from step to step.
fn keep_pool_warm(ctx: &Arc<CudaContext>) -> Result<()> {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let pool = default_pool(ctx)?;
    let mut threshold: u64 = u64::MAX;
    let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    unsafe { sys::cuMemPoolSetAttribute(pool, attr, (&mut threshold as *mut u64).cast()) }
        .result()
        .map_err(err("cuMemPoolSetAttribute"))
}

/// The stream-ordered memory pool that `cuMemAllocAsync` draws from on this context's GPU.
fn default_pool(ctx: &CudaContext) -> Result<cudarc::driver::sys::CUmemoryPool> {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }
        .result()
        .map_err(err("cuDeviceGetDefaultMemPool"))?;
    Ok(pool)
}

/// The most GPUs a process addresses.
pub(crate) const MAX_GPUS: usize = 64;

/// The opened GPUs by ordinal; each is opened on first use and kept for the process. Ops look their GPU up
/// here without a lock; only opening one takes `OPENING`.
static GPUS: [OnceLock<Gpu>; MAX_GPUS] = [const { OnceLock::new() }; MAX_GPUS];
static OPENING: Mutex<()> = Mutex::new(());

/// The GPU with this ordinal, opened (and its kernels compiled) on first use.
pub(crate) fn gpu(ordinal: usize) -> Result<&'static Gpu> {
    let slot =
        GPUS.get(ordinal).ok_or_else(|| unavailable(ordinal, format!("tiny addresses at most {MAX_GPUS} GPUs")))?;
    if let Some(g) = slot.get() {
        return Ok(g);
    }
    let _opening = OPENING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = slot.get() {
        return Ok(g);
    }
    let g = Gpu::open(ordinal)?;
    Ok(slot.get_or_init(|| g))
}

/// Whether a CUDA GPU with this ordinal can be used here (its libraries load and the device exists).
pub fn is_available(ordinal: usize) -> bool {
    gpu(ordinal).is_ok()
}

/// Waits until every kernel queued on the GPU's compute stream has finished (for timing); the copy stream's
/// uploads are waited for through the compute stream, which waits for each before it reads it. An error while
/// the GPU captures a graph.
pub fn synchronize(ordinal: usize) -> Result<()> {
    let g = gpu(ordinal)?;
    if g.is_capturing() {
        return Err(graph::while_capturing("synchronize", ordinal));
    }
    g.stream.synchronize().map_err(err("synchronize"))
}

/// The bytes of this GPU's memory that tensors hold once its queued work has finished: what CUDA's pool has
/// handed out and not been given back, PyTorch's `torch.cuda.memory_allocated`. It stays flat from epoch to
/// epoch of a fit unless something leaks. A [`Graph`]'s memory comes from a pool of its own and is not counted.
pub fn memory_allocated(ordinal: usize) -> Result<usize> {
    pool_attribute(ordinal, cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
}

/// The bytes of this GPU's memory that CUDA's pool keeps, in use or ready for reuse, once the queued work has
/// finished: PyTorch's `torch.cuda.memory_reserved`.
pub fn memory_reserved(ordinal: usize) -> Result<usize> {
    pool_attribute(ordinal, cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)
}

fn pool_attribute(ordinal: usize, attr: cudarc::driver::sys::CUmemPool_attribute) -> Result<usize> {
    let g = gpu(ordinal)?;
    if g.is_capturing() {
        return Err(graph::while_capturing("memory_allocated", ordinal));
    }
    g.stream.synchronize().map_err(err("memory"))?;
    g.copy_stream.synchronize().map_err(err("memory"))?;
    let pool = default_pool(&g.ctx)?;
    let mut value: u64 = 0;
    unsafe { cudarc::driver::sys::cuMemPoolGetAttribute(pool, attr, (&mut value as *mut u64).cast()) }
        .result()
        .map_err(err("cuMemPoolGetAttribute"))?;
    Ok(value as usize)
}

/// The device buffer behind a CUDA storage (an internal invariant: the caller checked the device).
pub(crate) fn slice(s: &Storage) -> &CudaSlice<f32> {
    match s {
        Storage::Cuda(c) => &c.slice,
        Storage::Cpu(_) => unreachable!("a CUDA kernel was given a host storage"),
    }
}

/// The device memory of tensor `t` (whose storage `s` is), from its offset.
pub(crate) fn view<'a>(s: &'a Storage, t: &Tensor) -> CudaView<'a, f32> {
    slice(s).slice(t.layout().offset..)
}

pub(crate) fn slice_mut(s: &mut Storage) -> &mut CudaSlice<f32> {
    match s {
        Storage::Cuda(c) => &mut c.slice,
        Storage::Cpu(_) => unreachable!("a CUDA kernel was given a host storage"),
    }
}

/// Wraps a device buffer as a tensor with `layout`.
pub(crate) fn wrap(gpu: &Gpu, slice: CudaSlice<f32>, layout: Layout) -> Tensor {
    Tensor::from_storage(gpu.storage(slice), layout)
}

/// The most blocks [`grid`] launches: 4.2M threads, a dozen waves of the largest GPUs (an H200 holds 270,336
/// threads at once); past that each thread of the kernels' grid-stride loops takes several elements.
pub(crate) const MAX_GRID_BLOCKS: usize = 16_384;

/// A launch over `n` elements with a grid-stride loop: 256 threads a block, a block per 256 elements up to
/// [`MAX_GRID_BLOCKS`].
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, MAX_GRID_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// A launch over `rows` rows of `width` elements: one block per row at a time (a block-stride loop over at most
/// 2^20 blocks), its threads along the row, as many warps as the row fills up to 256 threads.
pub(crate) fn rows(rows: usize, width: usize) -> LaunchConfig {
    let blocks = rows.clamp(1, 1 << 20) as u32;
    let threads = width.div_ceil(32).clamp(1, 8) as u32 * 32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// A 2-D launch for kernels that combine `rows` rows of `width` consecutive elements along the rows (the channels
/// of channels-last data, the kept run of a reduction): blocks of 256 threads, `threadIdx.x` along a row (up to 32
/// elements, a warp's worth of consecutive addresses) and `threadIdx.y` along the rows. Across, `tiles` blocks: with
/// `None`, one per 32 elements of a row (each thread keeps to one element of every row); with `Some(t)`, `t` blocks
/// that each take whole rows (one per batchnorm channel of NCHW data). Both at most 65,535, then the kernel loops.
/// Down, blocks of rows, each thread combining at least 16 elements, as many as bring the launch to about 2,048
/// blocks (and no more than there are rows for); with more than one, each writes a partial result for a finishing
/// pass.
pub(crate) fn columns(rows: usize, width: usize, tiles: Option<usize>) -> LaunchConfig {
    let tx = width.clamp(1, 32).next_power_of_two();
    let ty = 256 / tx;
    let (across, per_row) = match tiles {
        None => (width.div_ceil(tx), 1),
        Some(t) => (t, width.div_ceil(tx)),
    };
    let across = across.clamp(1, 65_535);
    let by_work = rows.saturating_mul(per_row).div_ceil(ty * 16);
    let down = by_work.min(2048usize.div_ceil(across)).min(rows.div_ceil(ty)).clamp(1, 65_535);
    LaunchConfig {
        grid_dim: (across as u32, down as u32, 1),
        block_dim: (tx as u32, ty as u32, 1),
        shared_mem_bytes: 0,
    }
}
