// Shared by every kernel file: the strided-index helpers and block reductions. Prepended to each .cu source before
// NVRTC.
#define MAX_DIMS 8
// NVRTC has no math.h; the float infinity as a bit pattern.
#define NEG_INF __int_as_float(0xff800000)

// A by-value struct parameter that a kernel indexes at run time (a Shape, Strides, a foreach program): marked
// __grid_constant__, the kernel reads it in place from the parameter space, where ptxas would otherwise copy it to
// each thread's stack (local memory: 216-288 bytes a thread for the strided elementwise kernels). The annotation
// needs sm_70 and CUDA 11.7; elsewhere, and in the g++ build of the fake driver, the parameter is a plain const.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700 && \
    (__CUDACC_VER_MAJOR__ > 11 || (__CUDACC_VER_MAJOR__ == 11 && __CUDACC_VER_MINOR__ >= 7))
#define GRID_CONST const __grid_constant__
#else
#define GRID_CONST const
#endif

// A logical shape (after the host merged what it could).
struct Shape {
    long long rank;
    long long dims[MAX_DIMS];
};

// Where one operand's elements live: a base offset and a stride per dimension of the Shape.
struct Strides {
    long long offset;
    long long s[MAX_DIMS];
};

// The memory offset of logical element i (row-major over shape) in an operand with strides st. GPUs have no
// integer divider, and a 64-bit division costs dozens of instructions, so the outermost dimension, where what
// is left of i is the index itself, takes none: a dense operand (merged to one dimension) divides nothing.
__device__ __forceinline__ long long offset_of(const Shape& shape, const Strides& st, long long i) {
    if (shape.rank == 0) return st.offset;
    long long off = st.offset;
    for (int d = (int)shape.rank - 1; d > 0; --d) {
        long long n = shape.dims[d];
        off += (i % n) * st.s[d];
        i /= n;
    }
    return off + i * st.s[0];
}

// v rounded to the nearest bf16 (ties to even) and widened back, as cpu/bf16.rs's round_f32: a denormal becomes the
// zero of its sign, a NaN stays a quiet NaN.
__device__ __forceinline__ float round_bf16(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return __uint_as_float((u | 0x400000u) & 0xffff0000u);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

// op 0 sums, op 1 takes the maximum (fmax: a NaN loses to any number, as with f32::max on the CPU).
__device__ __forceinline__ double reduce_combine(int op, double a, double b) { return op == 0 ? a + b : fmax(a, b); }
__device__ __forceinline__ double reduce_identity(int op) { return op == 0 ? 0.0 : (double)NEG_INF; }

// Combines v over the threads of a block of at most 256 (blockDim.x and blockDim.y powers of two), in a fixed order:
// over threadIdx.y only, so that each threadIdx.x keeps its own result, or over the whole block with across_x. The
// result is in thread (x, 0), or in thread (0, 0) with across_x. Every thread of the block must call it.
__device__ double block_reduce(double v, double* buf, int op, bool across_x) {
    int t = threadIdx.y * blockDim.x + threadIdx.x;
    buf[t] = v;
    __syncthreads();
    // Halving the flat index keeps the columns apart while the step is a multiple of blockDim.x.
    int stop = across_x ? 1 : (int)blockDim.x;
    for (int s = (int)(blockDim.x * blockDim.y) / 2; s >= stop; s >>= 1) {
        if (t < s) buf[t] = reduce_combine(op, buf[t], buf[t + s]);
        __syncthreads();
    }
    double r = buf[t];
    __syncthreads();
    return r;
}
