//! Kernel arguments: strided operands (a shape and per-operand strides, with mergeable dimensions merged), and sizes
//! checked into the 32-bit integers that kernels and cuBLAS take.

use cudarc::driver::DeviceRepr;

use crate::{Result, TensorError};

/// The most dimensions a kernel indexes after merging (see `kernels/common.cuh`).
const MAX_DIMS: usize = 8;

/// `v` as a 32-bit kernel or cuBLAS argument, or an error that names the op, the quantity and its value (a size
/// past `i32::MAX` would otherwise wrap and index the wrong memory).
pub(crate) fn i32_of(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| TensorError::InvalidArgument {
        op,
        msg: format!("{what} = {v} is more than the CUDA kernels take (at most {})", i32::MAX),
    })
}

/// `v` as an unsigned 32-bit index (a max-pool winner), or an error like [`i32_of`]'s.
pub(crate) fn u32_of(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| TensorError::InvalidArgument {
        op,
        msg: format!("{what} = {v} is more than the CUDA kernels take (at most {})", u32::MAX),
    })
}

/// `struct Shape` of `common.cuh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KShape {
    rank: i64,
    dims: [i64; MAX_DIMS],
}

/// `struct Strides` of `common.cuh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KStrides {
    offset: i64,
    s: [i64; MAX_DIMS],
}

impl KShape {
    /// The element count when every operand walks this shape as one unit-stride run (a merged rank of 0, or of 1
    /// with unit strides): the dense case, which the 1-D kernels index directly, without a division.
    pub(crate) fn dense_len(&self, strides: &[KStrides]) -> Option<usize> {
        match self.rank {
            0 => Some(1),
            1 if strides.iter().all(|s| s.s[0] == 1) => Some(self.dims[0] as usize),
            _ => None,
        }
    }
}

impl KStrides {
    /// Where the operand's first element is, in elements from the start of its buffer.
    pub(crate) fn offset(&self) -> usize {
        self.offset as usize
    }
}

// SAFETY: both are plain `#[repr(C)]` structs of integers laid out as their C counterparts.
unsafe impl DeviceRepr for KShape {}
unsafe impl DeviceRepr for KStrides {}

/// Kernel arguments for `K` operands that walk the same logical `shape` with their own strides and offsets.
///
/// With `reorder`, dimensions are first sorted by the first operand's strides (largest first), which is
/// valid for elementwise work where visiting order does not matter; then every pair of neighbouring
/// dimensions that is contiguous in all operands is merged and size-1 dimensions are dropped, so that a
/// dense tensor becomes one dimension and the kernel's index arithmetic stays short.
pub(crate) fn plan<const K: usize>(
    shape: &[usize],
    strides: [&[usize]; K],
    offsets: [usize; K],
    reorder: bool,
) -> Result<(KShape, [KStrides; K])> {
    let mut order: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    if reorder {
        order.sort_by(|&a, &b| strides[0][b].cmp(&strides[0][a]));
    }
    let mut dims: Vec<usize> = Vec::with_capacity(order.len());
    let mut st: [Vec<usize>; K] = std::array::from_fn(|_| Vec::with_capacity(order.len()));
    for d in order {
        let mergeable = !dims.is_empty() && (0..K).all(|k| st[k][st[k].len() - 1] == strides[k][d] * shape[d]);
        if mergeable {
            *dims.last_mut().expect("non-empty") *= shape[d];
            for k in 0..K {
                *st[k].last_mut().expect("non-empty") = strides[k][d];
            }
        } else {
            dims.push(shape[d]);
            for k in 0..K {
                st[k].push(strides[k][d]);
            }
        }
    }
    if dims.len() > MAX_DIMS {
        return Err(TensorError::InvalidArgument {
            op: "cuda",
            msg: format!(
                "shape {shape:?} needs {} strided dimensions; CUDA kernels take at most {MAX_DIMS}",
                dims.len()
            ),
        });
    }
    let mut kshape = KShape { rank: dims.len() as i64, dims: [1; MAX_DIMS] };
    for (i, &d) in dims.iter().enumerate() {
        kshape.dims[i] = d as i64;
    }
    let kstrides = std::array::from_fn(|k| {
        let mut s = KStrides { offset: offsets[k] as i64, s: [0; MAX_DIMS] };
        for (i, &v) in st[k].iter().enumerate() {
            s.s[i] = v as i64;
        }
        s
    });
    Ok((kshape, kstrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack frame that ptxas reports for each function in NVRTC's log of a `--ptxas-options=-v` build.
    fn stack_frames(log: &str) -> std::collections::HashMap<String, usize> {
        let mut frames = std::collections::HashMap::new();
        let mut function = None;
        for line in log.lines() {
            if let Some(name) = line.split("Function properties for ").nth(1) {
                function = Some(name.trim().to_string());
            } else if let Some(at) = line.find(" bytes stack frame")
                && let Some(name) = &function
            {
                let bytes = line[..at].rsplit(' ').next().unwrap_or_default();
                frames.insert(name.clone(), bytes.parse().unwrap_or(usize::MAX));
            }
        }
        frames
    }

    #[test]
    fn launch_shapes_stay_bounded() {
        use crate::cuda::{MAX_GRID_BLOCKS, columns, grid};
        // tests/cuda.rs sizes a tensor past the largest grid to check that the grid-stride loops cover it.
        assert_eq!(MAX_GRID_BLOCKS, 16_384);
        assert_eq!(grid(usize::MAX).grid_dim.0 as usize, MAX_GRID_BLOCKS);
        assert_eq!(grid(0).grid_dim.0, 1);
        let shape = |rows, width, tiles| {
            let cfg = columns(rows, width, tiles);
            (cfg.block_dim.0, cfg.block_dim.1, cfg.grid_dim.0, cfg.grid_dim.1)
        };
        // Channels-last batchnorm of resnet18's stem at batch 128 and 128 px: 524,288 rows of 64 channels, in two
        // tiles of 32 channels and 1,024 blocks of rows.
        assert_eq!(shape(1 << 19, 64, None), (32, 8, 2, 1024));
        // Three channels: 4 threads across, 64 down; few rows give one block of rows, which writes the result.
        assert_eq!(shape(8192, 3, None), (4, 64, 1, 8));
        assert_eq!(shape(100, 3, None), (4, 64, 1, 1));
        assert_eq!(shape(0, 3, None), (4, 64, 1, 1));
        // A full reduction is one column; NCHW batchnorm takes a block per channel, threads along h * w.
        assert_eq!(shape(100_000, 1, None), (1, 256, 1, 25));
        assert_eq!(shape(128, 4096, Some(64)), (32, 8, 64, 16));
        assert_eq!(shape(2, 1 << 20, Some(3)), (32, 8, 3, 1));
        // Huge inputs stay within the grid's limits.
        let (.., across, down) = shape(usize::MAX, usize::MAX, None);
        assert!(across <= 65_535 && down <= 65_535);
    }

    #[test]
    fn sizes_past_32_bits_are_errors() {
        assert_eq!(i32_of("conv2d", "channels", 64).unwrap(), 64);
        let err = i32_of("conv2d", "channels", 1 << 31).unwrap_err().to_string();
        assert!(err.contains("conv2d") && err.contains("channels = 2147483648"), "{err}");
        assert_eq!(u32_of("max_pool2d", "input elements", u32::MAX as usize).unwrap(), u32::MAX);
        let err = u32_of("max_pool2d", "input elements", 1 << 32).unwrap_err().to_string();
        assert!(err.contains("max_pool2d") && err.contains("4294967296"), "{err}");
    }

    #[test]
    fn ptxas_log_lines_are_read() {
        let log = "ptxas info    : Compiling entry function 'a' for 'sm_90'\nptxas info    : Function properties for a\n\
                   ptxas         .     72 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                   ptxas info    : Function properties for b\n    0 bytes stack frame, 0 bytes spill stores\n";
        let frames = stack_frames(log);
        assert_eq!((frames["a"], frames["b"]), (72, 0));
    }

    /// Shapes, strides and the other by-value structs are `const __grid_constant__` kernel parameters, read in
    /// place: a kernel that indexes a by-value struct at run time otherwise gets a copy of it on its stack (local
    /// memory, 216-288 bytes a thread). Needs a real NVRTC (it compiles for sm_90 and sm_80 without a GPU); the
    /// fake driver's NVRTC runs no ptxas, so the test says that it skipped.
    #[test]
    fn no_kernel_has_a_stack_frame() {
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!("no_kernel_has_a_stack_frame: skipped, the NVRTC library (libnvrtc) was not found");
            return;
        }
        for (major, minor) in [(9, 0), (8, 0)] {
            let (_, log) = crate::cuda::compile_cubin_with(major, minor, &["--ptxas-options=-v"]).unwrap();
            if !log.contains("ptxas") {
                eprintln!("no_kernel_has_a_stack_frame: skipped, this NVRTC's log has no ptxas lines (the fake one)");
                return;
            }
            let frames = stack_frames(&log);
            let spilled: Vec<String> = crate::cuda::KERNELS
                .iter()
                .filter(|&&k| frames.get(k) != Some(&0))
                .map(|k| format!("{k}: {:?}", frames.get(*k)))
                .collect();
            assert!(spilled.is_empty(), "sm_{major}{minor}: kernels with a stack frame (bytes): {spilled:?}");
        }
    }

    #[test]
    fn dense_operands_merge_into_one_dimension() {
        // NCHW shape with channels-last strides, in both operands: one run of 2*3*4*5 elements.
        let (shape, [a, b]) = plan(&[2, 3, 4, 5], [&[60, 1, 15, 3], &[60, 1, 15, 3]], [0, 7], true).unwrap();
        assert_eq!(shape.rank, 1);
        assert_eq!(shape.dims[0], 120);
        assert_eq!((a.s[0], b.s[0], b.offset), (1, 1, 7));
    }

    #[test]
    fn broadcast_dimensions_stay_apart() {
        // [4, 3] + a row broadcast along dim 0.
        let (shape, [a, b]) = plan(&[4, 3], [&[3, 1], &[0, 1]], [0, 0], true).unwrap();
        assert_eq!(shape.rank, 2);
        assert_eq!(&b.s[..2], &[0, 1]);
        assert_eq!(shape.dense_len(&[a, b]), None);
    }

    #[test]
    fn dense_runs_are_found() {
        // Channels-last in both operands, the second at an offset: one run of 120.
        let (shape, st) = plan(&[2, 3, 4, 5], [&[60, 1, 15, 3], &[60, 1, 15, 3]], [0, 7], true).unwrap();
        assert_eq!((shape.dense_len(&st), st[1].offset()), (Some(120), 7));
        // A single element (every dimension 1) is dense; a transposed copy is not, nor a strided row.
        let (shape, st) = plan(&[1, 1], [&[1, 1], &[5, 1]], [3, 0], true).unwrap();
        assert_eq!(shape.dense_len(&st), Some(1));
        let (shape, st) = plan(&[3, 2], [&[2, 1], &[1, 3]], [0, 0], true).unwrap();
        assert_eq!(shape.dense_len(&st), None);
        let (shape, st) = plan(&[4], [&[2]], [0], true).unwrap();
        assert_eq!(shape.dense_len(&st), None);
    }

    #[test]
    fn without_reordering_the_order_is_kept() {
        let (shape, [x]) = plan(&[3, 2], [&[1, 3]], [0], false).unwrap();
        assert_eq!(&shape.dims[..2], &[3, 2]);
        assert_eq!(&x.s[..2], &[1, 3]);
    }
}
