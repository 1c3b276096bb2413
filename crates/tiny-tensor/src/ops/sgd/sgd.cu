// SGD steps in place with PyTorch's formula: one strided tensor, or many contiguous ones in a single launch.

// One element: d = g + wd * p; with a momentum buffer (flags bit 0), *b = first (bit 1) ? d : m * *b + (1 - damp) * d,
// then d = nesterov (bit 2) ? d + m * *b : *b. Returns p - lr * d.
__device__ __forceinline__ float sgd_element(float p, float g, float* b, float lr, float m, float damp, float wd,
                                             int flags) {
    float d = g + wd * p;
    if (flags & 1) {
        float buf = (flags & 2) ? d : m * *b + (1.0f - damp) * d;
        *b = buf;
        d = (flags & 4) ? d + m * buf : buf;
    }
    return p - lr * d;
}

extern "C" __global__ void sgd_update_f32(long long n, Shape shape, Strides ps, Strides gs, Strides bs, float* p,
                                          const float* g, float* b, float lr, float m, float damp, float wd, int flags) {
    GRID_STRIDE_LOOP(i, n) {
        long long pi = offset_of(shape, ps, i);
        float* bi = (flags & 1) ? b + offset_of(shape, bs, i) : b;
        p[pi] = sgd_element(p[pi], g[offset_of(shape, gs, i)], bi, lr, m, damp, wd, flags);
    }
}

// Many contiguous tensors in one launch (PyTorch's multi-tensor apply). `table` holds five 64-bit words per tensor
// (the addresses of p, g and b, the length, the flags above), then two per chunk (tensor number, first element).
// One block per chunk of chunk_len elements.
extern "C" __global__ void sgd_update_many_f32(const unsigned long long* table, long long tensors, long long chunks,
                                               long long chunk_len, float lr, float m, float damp, float wd) {
    const unsigned long long* chunk_table = table + 5 * tensors;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const unsigned long long* t = table + 5 * chunk_table[2 * c];
        float* p = (float*)t[0];
        const float* g = (const float*)t[1];
        float* b = (float*)t[2];
        long long n = (long long)t[3];
        int flags = (int)t[4];
        long long start = (long long)chunk_table[2 * c + 1];
        long long end = start + chunk_len < n ? start + chunk_len : n;
        for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
            p[i] = sgd_element(p[i], g[i], (flags & 1) ? b + i : b, lr, m, damp, wd, flags);
        }
    }
}
