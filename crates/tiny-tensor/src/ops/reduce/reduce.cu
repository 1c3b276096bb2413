// Reductions: one block per output element, the kept dimensions first in `shape`, the reduced ones last.

// op 0 sums, op 1 takes the maximum (fmax: a NaN loses to any number, as with f32::max on the CPU). Sums
// accumulate in double, like the CPU's, so long sums keep their precision.
extern "C" __global__ void reduce_f32(long long out_n, long long red_n, Shape shape, Strides xs, const float* x,
                                      float* out, int op) {
    __shared__ double buf[256];
    for (long long o = blockIdx.x; o < out_n; o += gridDim.x) {
        double acc = op == 0 ? 0.0 : (double)NEG_INF;
        for (long long r = threadIdx.x; r < red_n; r += blockDim.x) {
            double v = x[offset_of(shape, xs, o * red_n + r)];
            acc = op == 0 ? acc + v : fmax(acc, v);
        }
        buf[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) {
                double y = buf[threadIdx.x + s];
                buf[threadIdx.x] = op == 0 ? buf[threadIdx.x] + y : fmax(buf[threadIdx.x], y);
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) out[o] = (float)buf[0];
        __syncthreads();
    }
}
