// Elementwise kernels: unary maps, broadcast binary maps, and in-place strided updates.

// out = op(x). UNARY_CASES is generated from the UnaryOp table in ops/elementwise/mod.rs, with the CPU's functions.
extern "C" __global__ void unary_f32(long long n, Shape shape, Strides os, Strides xs, const float* x, float* out,
                                     int op, float p0, float p1) {
    GRID_STRIDE_LOOP(i, n) {
        float v = x[offset_of(shape, xs, i)];
        float r;
        switch (op) {
            UNARY_CASES
            default: r = v; break;
        }
        out[offset_of(shape, os, i)] = r;
    }
}

// out = a op b over a common (broadcast) shape. BINARY_CASES is generated from the BinaryOp table in
// ops/elementwise/mod.rs.
extern "C" __global__ void binary_f32(long long n, Shape shape, Strides os, Strides as, Strides bs, const float* a,
                                      const float* b, float* out, int op) {
    GRID_STRIDE_LOOP(i, n) {
        float x = a[offset_of(shape, as, i)];
        float y = b[offset_of(shape, bs, i)];
        float r;
        switch (op) {
            BINARY_CASES
            default: r = 0.0f; break;
        }
        out[offset_of(shape, os, i)] = r;
    }
}

// In place on dst: mode 0 copies src, mode 1 adds alpha * src, mode 2 multiplies by alpha (src unused).
extern "C" __global__ void update_f32(long long n, Shape shape, Strides ds, Strides ss, float* dst, const float* src,
                                      int mode, float alpha) {
    GRID_STRIDE_LOOP(i, n) {
        long long d = offset_of(shape, ds, i);
        if (mode == 0) {
            dst[d] = src[offset_of(shape, ss, i)];
        } else if (mode == 1) {
            dst[d] += alpha * src[offset_of(shape, ss, i)];
        } else {
            dst[d] *= alpha;
        }
    }
}
