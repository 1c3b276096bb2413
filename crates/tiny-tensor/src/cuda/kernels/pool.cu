// Max and average pooling on channels-last [n, h, w, c] data, forward and backward (backward as gathers).
// Uses ConvGeom, Pixel and the window macros from conv.cu (f is unused).

extern "C" __global__ void max_pool_f32(long long total, ConvGeom g, const float* x, float* out, unsigned int* idx) {
    GRID_STRIDE_LOOP(i, total) {
        Pixel p = split_pixel(i, g.oh, g.ow, g.c);
        float best = NEG_INF;
        unsigned int at = 0;
        FOR_WINDOW(g, p, iy, ix, {
            long long j = ((p.b * g.h + iy) * g.w + ix) * g.c + p.ci;
            if (x[j] > best) {
                best = x[j];
                at = (unsigned int)j;
            }
        })
        out[i] = best;
        idx[i] = at;
    }
}

extern "C" __global__ void max_pool_backward_f32(long long total, ConvGeom g, const float* dout, const unsigned int* idx,
                                                 float* dx) {
    GRID_STRIDE_LOOP(i, total) {
        Pixel p = split_pixel(i, g.h, g.w, g.c);
        float acc = 0.0f;
        FOR_COVERING(g, p, opix, {
            long long o = opix * g.c + p.ci;
            if (idx[o] == (unsigned int)i) acc += dout[o];
        })
        dx[i] = acc;
    }
}

extern "C" __global__ void avg_pool_f32(long long total, ConvGeom g, const float* x, float* out) {
    float scale = 1.0f / (float)(g.kh * g.kw);
    GRID_STRIDE_LOOP(i, total) {
        Pixel p = split_pixel(i, g.oh, g.ow, g.c);
        float acc = 0.0f;
        FOR_WINDOW(g, p, iy, ix, acc += x[((p.b * g.h + iy) * g.w + ix) * g.c + p.ci])
        out[i] = acc * scale;
    }
}

extern "C" __global__ void avg_pool_backward_f32(long long total, ConvGeom g, const float* dout, float* dx) {
    float scale = 1.0f / (float)(g.kh * g.kw);
    GRID_STRIDE_LOOP(i, total) {
        Pixel p = split_pixel(i, g.h, g.w, g.c);
        float acc = 0.0f;
        FOR_COVERING(g, p, opix, acc += dout[opix * g.c + p.ci])
        dx[i] = acc * scale;
    }
}
