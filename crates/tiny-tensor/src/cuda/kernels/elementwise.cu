// Elementwise kernels: unary maps, broadcast binary maps, and in-place strided updates.

// out = op(x); the ops are numbered as in cuda/elementwise.rs (UnaryOp): 7 copies, 8 squares, 9 inverts.
extern "C" __global__ void unary_f32(long long n, Shape shape, Strides os, Strides xs, const float* x, float* out,
                                     int op, float p0, float p1) {
    GRID_STRIDE_LOOP(i, n) {
        float v = x[offset_of(shape, xs, i)];
        float r;
        switch (op) {
            case 0: r = -v; break;
            case 1: r = expf(v); break;
            case 2: r = logf(v); break;
            case 3: r = v > 0.0f ? v : 0.0f; break;
            case 4: r = sqrtf(v); break;
            case 5: r = powf(v, p0); break;
            case 6: r = v * p0 + p1; break;
            case 8: r = v * v; break;
            case 9: r = 1.0f / v; break;
            default: r = v; break;
        }
        out[offset_of(shape, os, i)] = r;
    }
}

// out = a op b over a common (broadcast) shape; the ops are numbered as BinaryOp in cuda/elementwise.rs.
extern "C" __global__ void binary_f32(long long n, Shape shape, Strides os, Strides as, Strides bs, const float* a,
                                      const float* b, float* out, int op) {
    GRID_STRIDE_LOOP(i, n) {
        float x = a[offset_of(shape, as, i)];
        float y = b[offset_of(shape, bs, i)];
        float r;
        switch (op) {
            case 0: r = x + y; break;
            case 1: r = x - y; break;
            case 2: r = x * y; break;
            case 3: r = x / y; break;
            case 4: r = x == y ? 1.0f : 0.0f; break;
            case 5: r = x > y ? 1.0f : 0.0f; break;
            default: r = y > 0.0f ? x : 0.0f; break;
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
