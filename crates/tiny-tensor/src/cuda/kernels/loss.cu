// Cross-entropy from logits as one op: log_softmax and nll fused, over contiguous [n, c] logits.

// Forward, one block per row: lse[i] = m + log(sum_j exp(x[i, j] - m)) with m the row's maximum (so logits of
// +-1e4 stay finite), and loss[i] = lse[i] - x[i, target[i]]. blockDim.x must be a power of two <= 32.
extern "C" __global__ void log_softmax_nll_f32(long long n, long long c, const float* x, const unsigned int* target,
                                               float* loss, float* lse) {
    __shared__ float buf[32];
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
        float sum = 0.0f;
        for (long long j = threadIdx.x; j < c; j += blockDim.x) sum += expf(xr[j] - m);
        buf[threadIdx.x] = sum;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            float l = m + logf(buf[0]);
            lse[row] = l;
            loss[row] = l - xr[target[row]];
        }
        __syncthreads();
    }
}

// Backward: dx[i, j] = g[i] * (softmax(x)[i, j] - (j == target[i])), with softmax = exp(x - lse).
extern "C" __global__ void log_softmax_nll_backward_f32(long long total, long long c, const float* g, const float* x,
                                                        const float* lse, const unsigned int* target, float* dx) {
    GRID_STRIDE_LOOP(i, total) {
        long long row = i / c;
        float hit = (i % c) == (long long)target[row] ? 1.0f : 0.0f;
        dx[i] = g[row] * (expf(x[i] - lse[row]) - hit);
    }
}
