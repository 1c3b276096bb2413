// foreach_update_: a short elementwise program over registers, run in place on many tuples of tensors.

// FE_MAX_TENSORS, FE_MAX_OPS, FE_MAX_REGISTERS and the instruction codes (FE_OP_AXPBY, ...) are #defined by
// ops/foreach/cuda.rs (cuda_defines), from the Rust side's limits and codes.

// Each operation rounded on its own, never contracted into a fused multiply-add, so that a program gives the
// CPU's results bit for bit. The g++ build of the kernels (the fake driver, the emulation tests) has no FMA to
// contract into and no CUDA intrinsics, so it takes the plain operators.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FE_MUL(x, y) __fmul_rn(x, y)
#define FE_ADD(x, y) __fadd_rn(x, y)
#define FE_DIV(x, y) __fdiv_rn(x, y)
#define FE_SQRT(x) __fsqrt_rn(x)
#else
#define FE_MUL(x, y) ((x) * (y))
#define FE_ADD(x, y) ((x) + (y))
#define FE_DIV(x, y) ((x) / (y))
#define FE_SQRT(x) sqrtf(x)
#endif

// One instruction: FE_OP_AXPBY dst = a*x + b*y, FE_OP_SCALE dst = a*x, FE_OP_ADD_SCALAR dst = x + a,
// FE_OP_MUL dst = x*y, FE_OP_DIV dst = x/y, FE_OP_SQRT dst = sqrt(x), FE_OP_COPY dst = x.
struct ForeachOp {
    int code, dst, x, y;
    float a, b;
};

// The program: its instructions, how many tensors an item holds, and a bit per tensor written back.
struct ForeachProgram {
    int n_ops, tensors, writes, unused;
    ForeachOp ops[FE_MAX_OPS];
};

// The tensors of one strided item: the base address of each storage and its strides over the item's Shape.
struct ForeachOperands {
    Strides strides[FE_MAX_TENSORS];
    unsigned long long ptrs[FE_MAX_TENSORS];
};

// Runs the program on the registers r. The loop is unrolled to its bound so that the instructions are read from
// the kernel parameters at fixed offsets.
__device__ __forceinline__ void foreach_program(const ForeachProgram& prog, float* r) {
#pragma unroll
    for (int k = 0; k < FE_MAX_OPS; ++k) {
        if (k >= prog.n_ops) break;
        const ForeachOp op = prog.ops[k];
        const float x = r[op.x], y = r[op.y];
        float v;
        switch (op.code) {
            case FE_OP_AXPBY: v = FE_ADD(FE_MUL(op.a, x), FE_MUL(op.b, y)); break;
            case FE_OP_SCALE: v = FE_MUL(op.a, x); break;
            case FE_OP_ADD_SCALAR: v = FE_ADD(x, op.a); break;
            case FE_OP_MUL: v = FE_MUL(x, y); break;
            case FE_OP_DIV: v = FE_DIV(x, y); break;
            case FE_OP_SQRT: v = FE_SQRT(x); break;
            default: v = x; break;
        }
        r[op.dst] = v;
    }
}

// One item with any strides: n elements over shape, one thread per element.
extern "C" __global__ void foreach_strided_f32(long long n, Shape shape, ForeachOperands operands, ForeachProgram prog) {
    GRID_STRIDE_LOOP(i, n) {
        float r[FE_MAX_REGISTERS];
        long long off[FE_MAX_TENSORS];
#pragma unroll
        for (int k = 0; k < FE_MAX_TENSORS; ++k) {
            if (k >= prog.tensors) break;
            off[k] = offset_of(shape, operands.strides[k], i);
            r[k] = ((const float*)operands.ptrs[k])[off[k]];
        }
        foreach_program(prog, r);
#pragma unroll
        for (int k = 0; k < FE_MAX_TENSORS; ++k) {
            if (k >= prog.tensors) break;
            if ((prog.writes >> k) & 1) ((float*)operands.ptrs[k])[off[k]] = r[k];
        }
    }
}

// Many dense items in one launch (PyTorch's multi-tensor apply). `table` holds, per item, the address of each of
// its tensors' first element and then its length (prog.tensors + 1 64-bit words), then two words per chunk (item
// number, first element). One block per chunk of chunk_len elements.
extern "C" __global__ void foreach_dense_f32(const unsigned long long* table, long long items, long long chunks,
                                             long long chunk_len, ForeachProgram prog) {
    const long long width = prog.tensors + 1;
    const unsigned long long* chunk_table = table + width * items;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const unsigned long long* t = table + width * (long long)chunk_table[2 * c];
        long long n = (long long)t[prog.tensors];
        long long start = (long long)chunk_table[2 * c + 1];
        long long end = start + chunk_len < n ? start + chunk_len : n;
        for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
            float r[FE_MAX_REGISTERS];
#pragma unroll
            for (int k = 0; k < FE_MAX_TENSORS; ++k) {
                if (k >= prog.tensors) break;
                r[k] = ((const float*)t[k])[i];
            }
            foreach_program(prog, r);
#pragma unroll
            for (int k = 0; k < FE_MAX_TENSORS; ++k) {
                if (k >= prog.tensors) break;
                if ((prog.writes >> k) & 1) ((float*)t[k])[i] = r[k];
            }
        }
    }
}
