// Cross-entropy from logits as one op: log_softmax and nll fused, with label smoothing, over contiguous [n, c]
// logits.

// Forward, one block per row: lse[i] = m + log(sum_j exp(x[i, j] - m)) with m the row's maximum (so logits of
// +-1e4 stay finite), and loss[i] = (1 - eps) * (lse[i] - x[i, target[i]]) + eps * mean_j(lse[i] - x[i, j]), the
// cross entropy against q = (1 - eps) * one_hot + eps / c. The mean is log(sum) + mean_j(m - x[i, j]), whose terms
// are all >= 0; with eps == 0 it is not used, so the loss is exactly lse[i] - x[i, target[i]].
// blockDim.x must be a power of two <= 32.
extern "C" __global__ void log_softmax_nll_f32(long long n, long long c, const float* x, const unsigned int* target,
                                               float* loss, float* lse, float eps) {
    __shared__ float buf[32];
    __shared__ float gap[32];
    for (long long row = blockIdx.x; row < n; row += gridDim.x) {
        const float* xr = x + row * c;
        float m = NEG_INF;
        for (long long j = threadIdx.x; j < c; j += blockDim.x) m = fmaxf(m, xr[j]);
        buf[threadIdx.x] = m;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + s]);
            __syncthreads();
        }
        m = buf[0];
        __syncthreads();
        float sum = 0.0f, below = 0.0f;
        for (long long j = threadIdx.x; j < c; j += blockDim.x) {
            sum += expf(xr[j] - m);
            below += m - xr[j];
        }
        buf[threadIdx.x] = sum;
        gap[threadIdx.x] = below;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) {
                buf[threadIdx.x] += buf[threadIdx.x + s];
                gap[threadIdx.x] += gap[threadIdx.x + s];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            float log_sum = logf(buf[0]);
            float l = m + log_sum;
            float nll = l - xr[target[row]];
            lse[row] = l;
            loss[row] = eps == 0.0f ? nll : (1.0f - eps) * nll + eps * (log_sum + gap[0] / (float)c);
        }
        __syncthreads();
    }
}

// Backward: dx[i, j] = g[i] * (softmax(x)[i, j] - q[i, j]), with softmax = exp(x - lse) and q = eps / c off the
// target, 1 - eps + eps / c at it (for eps == 0: exactly the one-hot target).
extern "C" __global__ void log_softmax_nll_backward_f32(long long total, long long c, const float* g, const float* x,
                                                        const float* lse, const unsigned int* target, float* dx,
                                                        float eps) {
    float off = eps / (float)c, hit = (1.0f - eps) + off;
    GRID_STRIDE_LOOP(i, total) {
        long long row = i / c;
        float q = (i % c) == (long long)target[row] ? hit : off;
        dx[i] = g[row] * (expf(x[i] - lse[row]) - q);
    }
}
