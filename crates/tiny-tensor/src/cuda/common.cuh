// Shared by every kernel file: the strided-index helpers. Prepended to each .cu source before NVRTC.
#define MAX_DIMS 8
// NVRTC has no math.h; the float infinity as a bit pattern.
#define NEG_INF __int_as_float(0xff800000)

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

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)
