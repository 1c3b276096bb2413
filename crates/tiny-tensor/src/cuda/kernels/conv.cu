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

extern "C" __global__ void im2col_f32(long long total, ConvGeom g, const float* x, float* col) {
    long long K = (long long)g.kh * g.kw * g.c;
    GRID_STRIDE_LOOP(i, total) {
        long long m = i / K;
        int k = (int)(i % K);
        int ci = k % g.c, kk = k / g.c, kx = kk % g.kw, ky = kk / g.kw;
        int ox = (int)(m % g.ow);
        long long t = m / g.ow;
        int oy = (int)(t % g.oh);
        long long b = t / g.oh;
        int iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
        bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        col[i] = inside ? x[((b * g.h + iy) * g.w + ix) * g.c + ci] : 0.0f;
    }
}

// dx[b, iy, ix, ci] = sum of the col entries that im2col copied from it (a gather, so no atomics).
extern "C" __global__ void col2im_f32(long long total, ConvGeom g, const float* col, float* dx) {
    long long K = (long long)g.kh * g.kw * g.c;
    GRID_STRIDE_LOOP(i, total) {
        Pixel p = split_pixel(i, g.h, g.w, g.c);
        float acc = 0.0f;
        FOR_COVERING(g, p, opix, acc += col[opix * K + (ky * g.kw + kx) * g.c + p.ci])
        dx[i] = acc;
    }
}

// y[m, f] = relu?(y[m, f] + bias[f]) over a row-major [rows, f] matrix.
extern "C" __global__ void bias_relu_f32(long long total, float* y, const float* bias, int f, int has_bias, int relu) {
    GRID_STRIDE_LOOP(i, total) {
        float v = y[i];
        if (has_bias) v += bias[i % f];
        if (relu) v = v > 0.0f ? v : 0.0f;
        y[i] = v;
    }
}
