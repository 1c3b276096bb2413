// Training-mode batchnorm over data arranged [outer, c, inner]: statistics, the affine map and the backward pass.
// Per-channel sums run one block per channel, accumulating in double like the CPU kernels.

__device__ double block_sum(double v, double* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    double r = buf[0];
    __syncthreads();
    return r;
}

// The offset of the j-th element of channel ch.
__device__ __forceinline__ long long channel_at(long long j, int c, long long inner, int ch) {
    return ((j / inner) * c + ch) * inner + j % inner;
}

// The batch statistics of channel ch and what follows from them: mean and biased variance; invstd, the affine
// map's scale and shift; and, when rmean is not null, the running statistics updated in place (and the batch count
// nbt, when it is not null, by channel 0's block). Launched with
// 256 threads and one block per channel. The per-channel expressions are those of cpu/batchnorm.rs (finalize,
// update_running), which NVRTC may fuse into multiply-adds, so the GPU can differ from the CPU in the last bit.
extern "C" __global__ void bn_stats_f32(const float* x, long long outer, int c, long long inner, float* mean,
                                        float* var, const float* w, const float* b, float eps, float* invstd,
                                        float* scale, float* shift, float* rmean, float* rvar, float momentum,
                                        float unbias, float* nbt) {
    __shared__ double buf[256];
    int ch = blockIdx.x;
    long long cnt = outer * inner;
    double s = 0.0;
    for (long long j = threadIdx.x; j < cnt; j += blockDim.x) s += x[channel_at(j, c, inner, ch)];
    double m = block_sum(s, buf) / (double)(cnt > 0 ? cnt : 1);
    double q = 0.0;
    for (long long j = threadIdx.x; j < cnt; j += blockDim.x) {
        double d = x[channel_at(j, c, inner, ch)] - m;
        q += d * d;
    }
    double v = block_sum(q, buf) / (double)(cnt > 0 ? cnt : 1);
    if (threadIdx.x == 0) {
        float mf = (float)m, vf = (float)v;
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

extern "C" __global__ void bn_affine_f32(long long total, const float* x, float* y, const float* scale,
                                         const float* shift, int c, long long inner) {
    CHANNEL_LOOP(i, ch, total, c, inner, { y[i] = x[i] * scale[ch] + shift[ch]; })
}

// db[ch] = sum dy, dw[ch] = sum dy * xhat; one block per channel.
extern "C" __global__ void bn_backward_sums_f32(const float* dy, const float* x, const float* mean, const float* invstd,
                                                float* dw, float* db, long long outer, int c, long long inner) {
    __shared__ double buf[256];
    int ch = blockIdx.x;
    long long cnt = outer * inner;
    float m = mean[ch], is = invstd[ch];
    double sg = 0.0, sgx = 0.0;
    for (long long j = threadIdx.x; j < cnt; j += blockDim.x) {
        long long at = channel_at(j, c, inner, ch);
        float g = dy[at];
        sg += g;
        sgx += g * (x[at] - m) * is;
    }
    double tg = block_sum(sg, buf);
    double tgx = block_sum(sgx, buf);
    if (threadIdx.x == 0) {
        db[ch] = (float)tg;
        dw[ch] = (float)tgx;
    }
}

extern "C" __global__ void bn_backward_dx_f32(long long total, const float* dy, const float* x, const float* mean,
                                              const float* invstd, const float* w, const float* dw, const float* db,
                                              float* dx, int c, long long inner, float n) {
    CHANNEL_LOOP(i, ch, total, c, inner, {
        float is = invstd[ch];
        float xhat = (x[i] - mean[ch]) * is;
        dx[i] = w[ch] * is * (dy[i] - db[ch] / n - xhat * dw[ch] / n);
    })
}
