// Reductions: one block per output element, the kept dimensions first in `shape`, the reduced ones last.

// op 0 sums, op 1 takes the maximum (fmaxf: a NaN loses to any number, as with f32::max on the CPU).
extern "C" __global__ void reduce_f32(long long out_n, long long red_n, Shape shape, Strides xs, const float* x,
                                      float* out, int op) {
    __shared__ float buf[256];
    for (long long o = blockIdx.x; o < out_n; o += gridDim.x) {
        float acc = op == 0 ? 0.0f : NEG_INF;
        for (long long r = threadIdx.x; r < red_n; r += blockDim.x) {
            float v = x[offset_of(shape, xs, o * red_n + r)];
            acc = op == 0 ? acc + v : fmaxf(acc, v);
        }
        buf[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) {
                float y = buf[threadIdx.x + s];
                buf[threadIdx.x] = op == 0 ? buf[threadIdx.x] + y : fmaxf(buf[threadIdx.x], y);
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) out[o] = buf[0];
        __syncthreads();
    }
}
