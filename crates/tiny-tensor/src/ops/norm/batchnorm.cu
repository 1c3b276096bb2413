// Training-mode batchnorm over data arranged [outer, c, inner]: statistics, the affine map and the backward pass.
// Per-channel sums accumulate in double, like the CPU kernels.

// Per-channel sums run in two passes: a 2-D partial pass, whose blocks each add up a share of the rows of a tile of
// channels into double partial sums, and a finishing pass with one block per channel that adds the partial sums in
// a fixed order. Channels-last data ([outer, c, 1]) puts threadIdx.x along the channels, so that a warp reads
// consecutive addresses; NCHW data (inner > 1) gives each block one channel, threadIdx.x along inner. Either way
// threadIdx.y and blockIdx.y go along outer. Launched by cuda::columns; partial sums are [gridDim.y, c] arrays.

// The tiles of channels that blockIdx.x walks: blockDim.x channels each for channels-last data, one for NCHW.
__device__ __forceinline__ long long bn_tiles(int c, long long inner) {
    return inner == 1 ? ((long long)c + blockDim.x - 1) / blockDim.x : (long long)c;
}

// This thread's channel in a tile (c or more for the idle threads of the last channels-last tile).
__device__ __forceinline__ int bn_channel(long long tile, long long inner) {
    return inner == 1 ? (int)(tile * blockDim.x + threadIdx.x) : (int)tile;
}

// The elements of channel ch that this thread adds up: rows o (along outer) from BN_ROW0 by BN_ROW_STEP, and in
// each the positions q (along inner) from BN_Q0(inner) by BN_Q_STEP(inner). Element (o, ch, q) is at
// (o * c + ch) * inner + q.
#define BN_ROW0 (blockIdx.y * (long long)blockDim.y + threadIdx.y)
#define BN_ROW_STEP ((long long)blockDim.y * gridDim.y)
#define BN_Q0(inner) (inner == 1 ? 0LL : (long long)threadIdx.x)
#define BN_Q_STEP(inner) (inner == 1 ? 1LL : (long long)blockDim.x)

// Adds up v over the threads of channel ch (a column of the block, or the whole block for NCHW data) and stores it
// in sums[blockIdx.y * c + ch]. Every thread of the block must call it.
__device__ __forceinline__ void bn_store_partial(double v, double* buf, long long inner, int c, int ch, double* sums) {
    double total = block_reduce(v, buf, 0, inner != 1);
    bool owner = inner == 1 ? threadIdx.y == 0 : threadIdx.x == 0 && threadIdx.y == 0;
    if (owner && ch < c) sums[blockIdx.y * (long long)c + ch] = total;
}

// The shift that channel ch's sums are taken about: its first element, so that the variance comes from small
// numbers (sum (x - k)^2 - (sum (x - k))^2 / n, in double, loses nothing unless the mean is far out of the spread).
__device__ __forceinline__ float bn_shift_of(const float* x, long long outer, int c, long long inner, int ch) {
    return outer * inner > 0 ? x[(long long)ch * inner] : 0.0f;
}

// Partial sums of x - k and (x - k)^2 per channel, k = bn_shift_of: into s1 and s2, [gridDim.y, c] each.
extern "C" __global__ void bn_stats_partial_f32(const float* x, long long outer, int c, long long inner, double* s1,
                                                double* s2) {
    __shared__ double buf[256];
    for (long long tile = blockIdx.x; tile < bn_tiles(c, inner); tile += gridDim.x) {
        int ch = bn_channel(tile, inner);
        double a = 0.0, a2 = 0.0;
        if (ch < c) {
            double k = bn_shift_of(x, outer, c, inner, ch);
            for (long long o = BN_ROW0; o < outer; o += BN_ROW_STEP) {
                const float* row = x + (o * c + ch) * inner;
                for (long long q = BN_Q0(inner); q < inner; q += BN_Q_STEP(inner)) {
                    double d = (double)row[q] - k;
                    a += d;
                    a2 += d * d;
                }
            }
        }
        bn_store_partial(a, buf, inner, c, ch, s1);
        bn_store_partial(a2, buf, inner, c, ch, s2);
    }
}

// Adds up the parts partial sums of channel ch (sums[p * c + ch]) over a block's threads, in a fixed order.
__device__ __forceinline__ double bn_total(const double* sums, long long parts, int c, int ch, double* buf) {
    double v = 0.0;
    for (long long p = threadIdx.x; p < parts; p += blockDim.x) v += sums[p * c + ch];
    return block_reduce(v, buf, 0, true);
}

// From the partial sums of bn_stats_partial_f32 (parts rows of them), the batch statistics of each channel and what
// follows from them: mean and biased variance; invstd, the affine map's scale and shift; and, when rmean is not
// null, the running statistics updated in place (and the batch count nbt, when it is not null, by channel 0's
// block). One block per channel at a time, its threads along the parts (blockDim.x a power of two). The
// per-channel expressions are those of cpu/batchnorm.rs (finalize, update_running), which NVRTC may fuse into
// multiply-adds, so the GPU can differ from the CPU in the last bit.
extern "C" __global__ void bn_stats_finish_f32(long long parts, const double* s1, const double* s2, const float* x,
                                               long long outer, int c, long long inner, float* mean, float* var,
                                               const float* w, const float* b, float eps, float* invstd, float* scale,
                                               float* shift, float* rmean, float* rvar, float momentum, float unbias,
                                               float* nbt) {
    __shared__ double buf[256];
    double cnt = (double)(outer * inner > 0 ? outer * inner : 1);
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double a = bn_total(s1, parts, c, ch, buf) / cnt;
        double q = bn_total(s2, parts, c, ch, buf) / cnt;
        if (threadIdx.x == 0) {
            double m = (double)bn_shift_of(x, outer, c, inner, ch) + a;
            double v = q - a * a;
            float mf = (float)m, vf = (float)(v < 0.0 ? 0.0 : v);  // rounding can leave a constant channel below 0
            mean[ch] = mf;
            var[ch] = vf;
            float is = 1.0f / sqrtf(vf + eps);
            float sc = w[ch] * is;
            invstd[ch] = is;
            scale[ch] = sc;
            shift[ch] = b[ch] - mf * sc;
            if (rmean) {
                rmean[ch] = rmean[ch] * (1.0f - momentum) + mf * 1.0f * momentum;
                rvar[ch] = rvar[ch] * (1.0f - momentum) + vf * unbias * momentum;
            }
            if (nbt && ch == 0) nbt[0] += 1.0f;
        }
    }
}

// The channel of element i is (i / inner) % c. For channels-last data (inner 1) each thread finds it once and
// advances it by the grid stride, so the loop divides nothing; NCHW data divides per element.
#define CHANNEL_LOOP(i, ch, total, c, inner, body)                                             \
    {                                                                                        \
        if (c <= 0) return; /* nothing to write, and the channel step divides by c */        \
        long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;                      \
        long long step = (long long)blockDim.x * gridDim.x;                                  \
        if (inner == 1) {                                                                    \
            int ch = (int)(i % c), dch = (int)(step % c);                                    \
            for (; i < (total); i += step, ch = ch + dch >= c ? ch + dch - c : ch + dch) body \
        } else {                                                                             \
            for (; i < (total); i += step) {                                                 \
                int ch = (int)((i / inner) % c);                                             \
                body                                                                         \
            }                                                                                \
        }                                                                                    \
    }

// relu(v) as the elementwise table's Relu computes it.
__device__ __forceinline__ float bn_relu(float v) { return v > 0.0f ? v : 0.0f; }

// x * scale + shift as one fused multiply-add, spelled out so that the forward and the recomputed mask below round
// it alike whatever the compiler's contraction flags.
__device__ __forceinline__ float bn_affine_of(float x, float scale, float shift) { return fmaf(x, scale, shift); }

// g where the fused ReLU's output relu(x * scale + shift) is positive, else 0 (the elementwise table's ReluGrad on
// the recomputed output); g itself when scale is null (no ReLU followed).
__device__ __forceinline__ float bn_masked(float g, float x, const float* scale, const float* shift, int ch) {
    return scale == nullptr || bn_affine_of(x, scale[ch], shift[ch]) > 0.0f ? g : 0.0f;
}

// y = x * scale + shift, then relu(y) when relu is not 0.
extern "C" __global__ void bn_affine_f32(long long total, const float* x, float* y, const float* scale,
                                         const float* shift, int c, long long inner, int relu) {
    CHANNEL_LOOP(i, ch, total, c, inner, {
        float v = bn_affine_of(x[i], scale[ch], shift[ch]);
        y[i] = relu ? bn_relu(v) : v;
    })
}

// Partial sums per channel of dy (into sg) and dy * xhat (into sgx), [gridDim.y, c] each; dy masked by the fused
// ReLU when rscale (the forward's scale, with rshift its shift) is not null.
extern "C" __global__ void bn_backward_partial_f32(const float* dy, const float* x, const float* mean,
                                                   const float* invstd, long long outer, int c, long long inner,
                                                   double* sg, double* sgx, const float* rscale,
                                                   const float* rshift) {
    __shared__ double buf[256];
    for (long long tile = blockIdx.x; tile < bn_tiles(c, inner); tile += gridDim.x) {
        int ch = bn_channel(tile, inner);
        double a = 0.0, t = 0.0;
        if (ch < c) {
            float m = mean[ch], is = invstd[ch];
            for (long long o = BN_ROW0; o < outer; o += BN_ROW_STEP) {
                long long row = (o * c + ch) * inner;
                for (long long q = BN_Q0(inner); q < inner; q += BN_Q_STEP(inner)) {
                    float g = bn_masked(dy[row + q], x[row + q], rscale, rshift, ch);
                    a += g;
                    t += g * (x[row + q] - m) * is;
                }
            }
        }
        bn_store_partial(a, buf, inner, c, ch, sg);
        bn_store_partial(t, buf, inner, c, ch, sgx);
    }
}

// db[ch] = sum dy, dw[ch] = sum dy * xhat, from the parts rows of partial sums; one block per channel at a time.
extern "C" __global__ void bn_backward_finish_f32(long long parts, const double* sg, const double* sgx, int c,
                                                  float* dw, float* db) {
    __shared__ double buf[256];
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double tg = bn_total(sg, parts, c, ch, buf);
        double tgx = bn_total(sgx, parts, c, ch, buf);
        if (threadIdx.x == 0) {
            db[ch] = (float)tg;
            dw[ch] = (float)tgx;
        }
    }
}

// dx from dy (masked as in bn_backward_partial_f32 when rscale is not null) and the per-channel sums.
extern "C" __global__ void bn_backward_dx_f32(long long total, const float* dy, const float* x, const float* mean,
                                              const float* invstd, const float* w, const float* dw, const float* db,
                                              float* dx, int c, long long inner, float n, const float* rscale,
                                              const float* rshift) {
    CHANNEL_LOOP(i, ch, total, c, inner, {
        float is = invstd[ch];
        float xhat = (x[i] - mean[ch]) * is;
        float g = bn_masked(dy[i], x[i], rscale, rshift, ch);
        dx[i] = w[ch] * is * (g - db[ch] / n - xhat * dw[ch] / n);
    })
}
