// Elementwise kernels: unary maps, broadcast binary maps, and in-place strided updates. Each comes twice: a
// strided kernel that finds every operand's element through its Shape and Strides, and a dense one for operands
// that the launcher merged into one unit-stride run each, which indexes them directly (no division at all).

// r = op(v). UNARY_CASES is generated from the UnaryOp table in ops/elementwise/mod.rs, with the CPU's functions.
__device__ __forceinline__ float unary_apply(int op, float v, float p0, float p1) {
    float r;
    switch (op) {
        UNARY_CASES
        default: r = v; break;
    }
    return r;
}

// r = x op y. BINARY_CASES is generated from the BinaryOp table in ops/elementwise/mod.rs.
__device__ __forceinline__ float binary_apply(int op, float x, float y) {
    float r;
    switch (op) {
        BINARY_CASES
        default: r = 0.0f; break;
    }
    return r;
}

// out = op(x).
extern "C" __global__ void unary_f32(long long n, GRID_CONST Shape shape, GRID_CONST Strides os, GRID_CONST Strides xs,
                                     const float* x, float* out, int op, float p0, float p1) {
    GRID_STRIDE_LOOP(i, n) out[offset_of(shape, os, i)] = unary_apply(op, x[offset_of(shape, xs, i)], p0, p1);
}

// out[i] = op(x[i]) over n elements from the given starts.
extern "C" __global__ void unary_dense_f32(long long n, const float* x, float* out, int op, float p0, float p1) {
    GRID_STRIDE_LOOP(i, n) out[i] = unary_apply(op, x[i], p0, p1);
}

// out = a op b over a common (broadcast) shape.
extern "C" __global__ void binary_f32(long long n, GRID_CONST Shape shape, GRID_CONST Strides os, GRID_CONST Strides as,
                                      GRID_CONST Strides bs, const float* a, const float* b, float* out, int op) {
    GRID_STRIDE_LOOP(i, n) {
        float x = a[offset_of(shape, as, i)];
        float y = b[offset_of(shape, bs, i)];
        out[offset_of(shape, os, i)] = binary_apply(op, x, y);
    }
}

// out[i] = a[i] op b[i] over n elements from the given starts.
extern "C" __global__ void binary_dense_f32(long long n, const float* a, const float* b, float* out, int op) {
    GRID_STRIDE_LOOP(i, n) out[i] = binary_apply(op, a[i], b[i]);
}

// In place on *d: mode 0 copies src[at], mode 1 adds alpha * src[at], mode 2 multiplies by alpha (src unused, and
// null).
__device__ __forceinline__ void update_apply(float* d, const float* src, long long at, int mode, float alpha) {
    if (mode == 0) {
        *d = src[at];
    } else if (mode == 1) {
        *d += alpha * src[at];
    } else {
        *d *= alpha;
    }
}

extern "C" __global__ void update_f32(long long n, GRID_CONST Shape shape, GRID_CONST Strides ds, GRID_CONST Strides ss,
                                      float* dst, const float* src, int mode, float alpha) {
    GRID_STRIDE_LOOP(i, n) {
        // The source's offset is worked out only where it is read.
        long long at = mode == 2 ? 0 : offset_of(shape, ss, i);
        update_apply(dst + offset_of(shape, ds, i), src, at, mode, alpha);
    }
}

// update_f32 over n elements of dst and src from the given starts.
extern "C" __global__ void update_dense_f32(long long n, float* dst, const float* src, int mode, float alpha) {
    GRID_STRIDE_LOOP(i, n) update_apply(dst + i, src, i, mode, alpha);
}
