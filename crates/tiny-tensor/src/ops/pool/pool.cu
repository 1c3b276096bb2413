// Max and average pooling on channels-last [n, h, w, c] data, forward and backward (backward as gathers).
// Uses ConvGeom, Pixel and the window macros from conv.cu (f is unused). Like im2col, each runs one block per
// pixel (output pixels forward, input pixels backward) at a time, its threads along the channels.

extern "C" __global__ void max_pool_f32(long long pixels, ConvGeom g, const float* x, float* out, unsigned int* idx) {
    if (g.c <= 0) return;  // nothing to write, and split_pixel divides by c
    for (long long pix = blockIdx.x; pix < pixels; pix += gridDim.x) {
        Pixel p = split_pixel(pix * g.c, g.oh, g.ow, g.c);
        for (p.ci = threadIdx.x; p.ci < g.c; p.ci += blockDim.x) {
            // As in PyTorch: the window's first element starts the search, a later one wins if greater, and a
            // NaN (x != x) always wins.
            float best = NEG_INF;
            unsigned int at = 0;
            bool first = true;
            FOR_WINDOW(g, p, iy, ix, {
                long long j = ((p.b * g.h + iy) * g.w + ix) * g.c + p.ci;
                if (first || x[j] > best || x[j] != x[j]) {
                    best = x[j];
                    at = (unsigned int)j;
                    first = false;
                }
            })
            out[pix * g.c + p.ci] = best;
            idx[pix * g.c + p.ci] = at;
        }
    }
}

extern "C" __global__ void max_pool_backward_f32(long long pixels, ConvGeom g, const float* dout,
                                                 const unsigned int* idx, float* dx) {
    if (g.c <= 0) return;  // nothing to write, and split_pixel divides by c
    for (long long pix = blockIdx.x; pix < pixels; pix += gridDim.x) {
        Pixel p = split_pixel(pix * g.c, g.h, g.w, g.c);
        for (p.ci = threadIdx.x; p.ci < g.c; p.ci += blockDim.x) {
            long long i = pix * g.c + p.ci;
            float acc = 0.0f;
            FOR_COVERING(g, p, opix, {
                long long o = opix * g.c + p.ci;
                if (idx[o] == (unsigned int)i) acc += dout[o];
            })
            dx[i] = acc;
        }
    }
}

extern "C" __global__ void avg_pool_f32(long long pixels, ConvGeom g, const float* x, float* out) {
    float scale = 1.0f / (float)(g.kh * g.kw);
    if (g.c <= 0) return;  // nothing to write, and split_pixel divides by c
    for (long long pix = blockIdx.x; pix < pixels; pix += gridDim.x) {
        Pixel p = split_pixel(pix * g.c, g.oh, g.ow, g.c);
        for (p.ci = threadIdx.x; p.ci < g.c; p.ci += blockDim.x) {
            float acc = 0.0f;
            FOR_WINDOW(g, p, iy, ix, acc += x[((p.b * g.h + iy) * g.w + ix) * g.c + p.ci])
            out[pix * g.c + p.ci] = acc * scale;
        }
    }
}

extern "C" __global__ void avg_pool_backward_f32(long long pixels, ConvGeom g, const float* dout, float* dx) {
    float scale = 1.0f / (float)(g.kh * g.kw);
    if (g.c <= 0) return;  // nothing to write, and split_pixel divides by c
    for (long long pix = blockIdx.x; pix < pixels; pix += gridDim.x) {
        Pixel p = split_pixel(pix * g.c, g.h, g.w, g.c);
        for (p.ci = threadIdx.x; p.ci < g.c; p.ci += blockDim.x) {
            float acc = 0.0f;
            FOR_COVERING(g, p, opix, acc += dout[opix * g.c + p.ci])
            dx[pix * g.c + p.ci] = acc * scale;
        }
    }
}
