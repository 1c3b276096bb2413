// Convolution helpers around cuBLAS, on channels-last data: im2col, its adjoint col2im, and the bias+ReLU epilogue.
// x is [n, h, w, c]; col is [n*oh*ow, kh*kw*c] with columns in (ky, kx, c) order.

struct ConvGeom {
    int n, c, h, w, f, kh, kw, stride, pad, oh, ow;
};

// A flat index into [n, rows, cols, c] data, split into image b, row y, column x and channel ci.
struct Pixel {
    long long b;
    int y, x, ci;
};

__device__ __forceinline__ Pixel split_pixel(long long i, int rows, int cols, int c) {
    Pixel p;
    p.ci = (int)(i % c);
    long long t = i / c;
    p.x = (int)(t % cols);
    t /= cols;
    p.y = (int)(t % rows);
    p.b = t / rows;
    return p;
}

// Visits every input pixel (iy, ix) inside the image under the window of output pixel p; ky, kx name the tap.
#define FOR_WINDOW(g, p, iy, ix, body)                                \
    for (int ky = 0; ky < g.kh; ++ky) {                               \
        int iy = p.y * g.stride - g.pad + ky;                         \
        if (iy < 0 || iy >= g.h) continue;                            \
        for (int kx = 0; kx < g.kw; ++kx) {                           \
            int ix = p.x * g.stride - g.pad + kx;                     \
            if (ix < 0 || ix >= g.w) continue;                        \
            body;                                                     \
        }                                                             \
    }

// Visits every output pixel whose window covers input pixel p; opix is its flat (b, oy, ox) index and
// ky, kx the tap that reads p.
#define FOR_COVERING(g, p, opix, body)                                           \
    for (int ky = 0; ky < g.kh; ++ky) {                                         \
        int ty = p.y + g.pad - ky;                                              \
        if (ty < 0 || ty % g.stride != 0 || ty / g.stride >= g.oh) continue;    \
        for (int kx = 0; kx < g.kw; ++kx) {                                     \
            int tx = p.x + g.pad - kx;                                          \
            if (tx < 0 || tx % g.stride != 0 || tx / g.stride >= g.ow) continue; \
            long long opix = (p.b * g.oh + ty / g.stride) * g.ow + tx / g.stride; \
            body;                                                               \
        }                                                                       \
    }

// The kernels below run one block per row (an output pixel for im2col, an input pixel for col2im) at a time,
// its threads along the row: the row's position in the image is worked out once, and the elements need only
// small 32-bit divisions (GPUs have no integer divider; a 64-bit division costs dozens of instructions).

// col[m, (ky, kx, ci)] = x[b, oy*stride - pad + ky, ox*stride - pad + kx, ci], or 0 outside the image.
extern "C" __global__ void im2col_f32(long long rows, ConvGeom g, const float* x, float* col) {
    int K = g.kh * g.kw * g.c;
    if (K <= 0) return;  // no columns (and no channel to divide by)
    for (long long m = blockIdx.x; m < rows; m += gridDim.x) {
        int ox = (int)(m % g.ow);
        long long t = m / g.ow;
        int oy = (int)(t % g.oh);
        long long b = t / g.oh;
        float* row = col + m * K;
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            int tap = k / g.c, ci = k - tap * g.c;
            int ky = tap / g.kw, kx = tap - ky * g.kw;
            int iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
            bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            row[k] = inside ? x[((b * g.h + iy) * g.w + ix) * g.c + ci] : 0.0f;
        }
    }
}

// dx[b, iy, ix, ci] = sum of the col entries that im2col copied from it (a gather, so no atomics).
extern "C" __global__ void col2im_f32(long long pixels, ConvGeom g, const float* col, float* dx) {
    long long K = (long long)g.kh * g.kw * g.c;
    if (g.c <= 0) return;  // nothing to write, and split_pixel divides by c
    for (long long pix = blockIdx.x; pix < pixels; pix += gridDim.x) {
        Pixel p = split_pixel(pix * g.c, g.h, g.w, g.c);
        for (p.ci = threadIdx.x; p.ci < g.c; p.ci += blockDim.x) {
            float acc = 0.0f;
            FOR_COVERING(g, p, opix, acc += col[opix * K + (ky * g.kw + kx) * g.c + p.ci])
            dx[pix * g.c + p.ci] = acc;
        }
    }
}

// y[m, f] = relu?(y[m, f] + bias[f]) over a row-major [rows, f] matrix.
// The column (channel) of each element is found once per thread and then advanced by the grid stride, so the
// loop divides nothing.
extern "C" __global__ void bias_relu_f32(long long total, float* y, const float* bias, int f, int has_bias, int relu) {
    if (f <= 0) return;  // no columns, and the channel step divides by f
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x, step = (long long)blockDim.x * gridDim.x;
    int ch = (int)(i % f), dch = (int)(step % f);
    for (; i < total; i += step) {
        float v = y[i];
        if (has_bias) v += bias[ch];
        if (relu) v = v > 0.0f ? v : 0.0f;
        y[i] = v;
        ch += dch;
        if (ch >= f) ch -= f;
    }
}
