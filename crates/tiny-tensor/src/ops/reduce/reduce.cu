// Reductions, op 0 a sum and op 1 a maximum (see reduce_combine in common.cuh). Sums accumulate in double, like the
// CPU's, so long sums keep their precision. Two layouts:
// - reduce_f32, one block per output element, the kept dimensions first in `shape`, the reduced ones last: for
//   reduced dimensions that lie inside the kept ones (a row's sum, logsumexp over classes).
// - reduce_cols_f32 then reduce_finish_f32, for kept elements that form one unit-stride run of k columns (the
//   channels of a channels-last conv bias gradient) over r rows that are reduced, and for a full reduction (one
//   column): threads along the columns, so that a warp reads consecutive addresses, and partial results over
//   blocks of rows, which the finishing pass combines in a fixed order.

extern "C" __global__ void reduce_f32(long long out_n, long long red_n, GRID_CONST Shape shape, GRID_CONST Strides xs,
                                      const float* x, float* out, int op) {
    __shared__ double buf[256];
    for (long long o = blockIdx.x; o < out_n; o += gridDim.x) {
        double acc = reduce_identity(op);
        for (long long r = threadIdx.x; r < red_n; r += blockDim.x) {
            acc = reduce_combine(op, acc, (double)x[offset_of(shape, xs, o * red_n + r)]);
        }
        double total = block_reduce(acc, buf, op, true);
        if (threadIdx.x == 0) out[o] = (float)total;
    }
}

// Row i of the r rows starts at offset_of(rows, rs, i); column j is j elements further. Block (bx, by) combines
// columns bx * blockDim.x + threadIdx.x (and on by gridDim.x * blockDim.x) over rows by * blockDim.y + threadIdx.y,
// on by blockDim.y * gridDim.y. With one block of rows it writes out; else partial[by * k + j], for
// reduce_finish_f32. Launched by cuda::columns (blockDim.x and blockDim.y powers of two, 256 threads).
extern "C" __global__ void reduce_cols_f32(long long r, long long k, GRID_CONST Shape rows, GRID_CONST Strides rs,
                                           const float* x, float* out, double* partial, int op) {
    __shared__ double buf[256];
    for (long long j0 = blockIdx.x * (long long)blockDim.x; j0 < k; j0 += (long long)blockDim.x * gridDim.x) {
        long long j = j0 + threadIdx.x;
        double acc = reduce_identity(op);
        if (j < k) {
            long long step = (long long)blockDim.y * gridDim.y;
            for (long long i = blockIdx.y * (long long)blockDim.y + threadIdx.y; i < r; i += step) {
                acc = reduce_combine(op, acc, (double)x[offset_of(rows, rs, i) + j]);
            }
        }
        double total = block_reduce(acc, buf, op, false);
        if (threadIdx.y == 0 && j < k) {
            if (gridDim.y == 1) {
                out[j] = (float)total;
            } else {
                partial[blockIdx.y * k + j] = total;
            }
        }
    }
}

// out[j] = the parts partial results of column j (partial[p * k + j]) combined; one block per column at a time, its
// threads along the parts (blockDim.x a power of two).
extern "C" __global__ void reduce_finish_f32(long long parts, long long k, const double* partial, float* out, int op) {
    __shared__ double buf[256];
    for (long long j = blockIdx.x; j < k; j += gridDim.x) {
        double acc = reduce_identity(op);
        for (long long p = threadIdx.x; p < parts; p += blockDim.x) acc = reduce_combine(op, acc, partial[p * k + j]);
        double total = block_reduce(acc, buf, op, true);
        if (threadIdx.x == 0) out[j] = (float)total;
    }
}
