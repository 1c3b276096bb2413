// Perspective warps with bilinear sampling on channels-last [n, h, w, c] data (Tensor::warp_perspective): one
// thread per output pixel, through all its channels. The coordinates are doubles, the same steps as cpu/warp.rs.

// How close (in pixels) a source point must be to a pixel centre to be taken as that centre.
#define WARP_SNAP 1e-6
#define WARP_DBL_MAX 1.7976931348623157e308

__device__ __forceinline__ bool warp_finite(double v) { return fabs(v) <= WARP_DBL_MAX; }

// The normalised coordinate of pixel k along a side of size pixels (align_corners=True).
__device__ __forceinline__ double warp_normalise(long long k, long long size) {
    return size <= 1 ? 0.0 : -1.0 + 2.0 * (double)k / (double)(size - 1);
}

// A normalised coordinate back in pixels, snapped to a pixel centre when within WARP_SNAP of one.
__device__ __forceinline__ double warp_to_pixels(double g, long long size) {
    double p = (g + 1.0) * 0.5 * (double)(size > 0 ? size - 1 : 0);
    double r = round(p);
    return fabs(p - r) <= WARP_SNAP ? r : p;
}

// p reflected about the centres of pixels 0 and size - 1 until it lies between them, then clipped.
__device__ __forceinline__ double warp_reflect(double p, long long size) {
    if (size <= 1) return 0.0;
    double span = (double)(size - 1);
    double a = fabs(p);
    double extra = fmod(a, span);
    double flips = floor(a / span);
    double r = fmod(flips, 2.0) == 0.0 ? extra : span - extra;
    return r < 0.0 ? 0.0 : (r > span ? span : r);
}

// mats holds one row-major 3x3 matrix per image; reflection is 1 for WarpPad::Reflection, 0 for zeros.
extern "C" __global__ void warp_perspective_f32(long long pixels, long long h, long long w, long long c,
                                                const float* mats, int reflection, const float* x, float* out) {
    GRID_STRIDE_LOOP(pix, pixels) {
        long long b = pix / (h * w), rem = pix % (h * w), i = rem / w, j = rem % w;
        const float* m = mats + 9 * b;
        float* o = out + pix * c;
        double gx = warp_normalise(j, w), gy = warp_normalise(i, h);
        double s = (double)m[6] * gx + (double)m[7] * gy + (double)m[8];
        // The four bilinear taps at fixed places (so that the arrays stay in registers), `valid` a bit per tap.
        long long at[4] = {0, 0, 0, 0};
        float wt[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        unsigned valid = 0;
        if (warp_finite(s) && s != 0.0) {
            double px = warp_to_pixels(((double)m[0] * gx + (double)m[1] * gy + (double)m[2]) / s, w);
            double py = warp_to_pixels(((double)m[3] * gx + (double)m[4] * gy + (double)m[5]) / s, h);
            if (warp_finite(px) && warp_finite(py)) {
                if (reflection) {
                    px = warp_reflect(px, w);
                    py = warp_reflect(py, h);
                }
                double x0 = floor(px), y0 = floor(py), tx = px - x0, ty = py - y0;
                double cx[4] = {x0, x0 + 1.0, x0, x0 + 1.0};
                double cy[4] = {y0, y0, y0 + 1.0, y0 + 1.0};
                double cw[4] = {(1.0 - tx) * (1.0 - ty), tx * (1.0 - ty), (1.0 - tx) * ty, tx * ty};
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    if (cw[t] != 0.0 && cx[t] >= 0.0 && cx[t] < (double)w && cy[t] >= 0.0 && cy[t] < (double)h) {
                        at[t] = (long long)cy[t] * w + (long long)cx[t];
                        wt[t] = (float)cw[t];
                        valid |= 1u << t;
                    }
                }
            }
        }
        const float* img = x + b * h * w * c;
        for (long long k = 0; k < c; ++k) {
            float acc = 0.0f;
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                if ((valid >> t) & 1) acc += wt[t] * img[at[t] * c + k];
            }
            o[k] = acc;
        }
    }
}
