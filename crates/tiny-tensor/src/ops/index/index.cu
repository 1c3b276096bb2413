// Gathers and scatter-adds along the middle dimension of a contiguous [outer, size, inner] view.

// Over the elements (o, j, q) of [outer, nidx, inner]: with scatter 0, out[o, j, q] = src[o, idx[j], q]; with
// scatter 1, out[o, idx[j], q] += src[o, j, q] into a zeroed out (repeated indices add up, hence the atomics).
extern "C" __global__ void index_f32(long long total, const float* src, const unsigned int* idx, float* out,
                                     long long size, long long inner, long long nidx, int scatter) {
    GRID_STRIDE_LOOP(i, total) {
        long long q = i % inner;
        long long t = i / inner;
        long long o = t / nidx;
        long long picked = (o * size + idx[t % nidx]) * inner + q;
        if (scatter) {
            atomicAdd(&out[picked], src[i]);
        } else {
            out[i] = src[picked];
        }
    }
}
