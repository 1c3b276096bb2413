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

// The registers of a block's threads, in shared memory: an instruction names its registers by numbers read at run
// time, which registers of the processor cannot be indexed by (ptxas would keep such an array on each thread's
// stack, in local memory). Thread t's register k is regs[k][t], so that a warp's accesses fall in distinct banks;
// the kernels run at most FE_BLOCK threads a block (#defined by ops/foreach/cuda.rs with the launch's block size).
typedef float ForeachRegs[FE_MAX_REGISTERS][FE_BLOCK];

// Runs the program on this thread's registers. The loop is unrolled to its bound so that the instructions are read
// from the kernel parameters at fixed offsets.
__device__ __forceinline__ void foreach_program(const ForeachProgram& prog, ForeachRegs& regs) {
    const unsigned t = threadIdx.x;
#pragma unroll
    for (int k = 0; k < FE_MAX_OPS; ++k) {
        if (k >= prog.n_ops) break;
        const ForeachOp op = prog.ops[k];
        const float x = regs[op.x][t], y = regs[op.y][t];
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
        regs[op.dst][t] = v;
    }
}

// One item with any strides: n elements over shape, a thread per element at a time.
extern "C" __global__ void foreach_strided_f32(long long n, GRID_CONST Shape shape, GRID_CONST ForeachOperands operands,
                                                GRID_CONST ForeachProgram prog) {
    __shared__ ForeachRegs regs;
    GRID_STRIDE_LOOP(i, n) {
        long long off[FE_MAX_TENSORS];
#pragma unroll
        for (int k = 0; k < FE_MAX_TENSORS; ++k) {
            if (k >= prog.tensors) break;
            off[k] = offset_of(shape, operands.strides[k], i);
            regs[k][threadIdx.x] = ((const float*)operands.ptrs[k])[off[k]];
        }
        foreach_program(prog, regs);
#pragma unroll
        for (int k = 0; k < FE_MAX_TENSORS; ++k) {
            if (k >= prog.tensors) break;
            if ((prog.writes >> k) & 1) ((float*)operands.ptrs[k])[off[k]] = regs[k][threadIdx.x];
        }
    }
}

// Many dense items in one launch (PyTorch's multi-tensor apply). `table` holds, per item, the address of each of
// its tensors' first element and then its length (prog.tensors + 1 64-bit words), then two words per chunk (item
// number, first element). One block per chunk of chunk_len elements at a time.
extern "C" __global__ void foreach_dense_f32(const unsigned long long* table, long long items, long long chunks,
                                             long long chunk_len, GRID_CONST ForeachProgram prog) {
    __shared__ ForeachRegs regs;
    const long long width = prog.tensors + 1;
    const unsigned long long* chunk_table = table + width * items;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const unsigned long long* t = table + width * (long long)chunk_table[2 * c];
        long long n = (long long)t[prog.tensors];
        long long start = (long long)chunk_table[2 * c + 1];
        long long end = start + chunk_len < n ? start + chunk_len : n;
        for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
#pragma unroll
            for (int k = 0; k < FE_MAX_TENSORS; ++k) {
                if (k >= prog.tensors) break;
                regs[k][threadIdx.x] = ((const float*)t[k])[i];
            }
            foreach_program(prog, regs);
#pragma unroll
            for (int k = 0; k < FE_MAX_TENSORS; ++k) {
                if (k >= prog.tensors) break;
                if ((prog.writes >> k) & 1) ((float*)t[k])[i] = regs[k][threadIdx.x];
            }
        }
    }
}
