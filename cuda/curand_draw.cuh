/* The 64 random bits of one draw, from cuRAND's own Philox4x32-10: shared
 * by the draw kernels of cuda/draw.cu and cuda/cluster_row.cu. */
#ifndef KILN_CUDA_CURAND_DRAW_CUH
#define KILN_CUDA_CURAND_DRAW_CUH

#include <stdint.h>

#include <curand_kernel.h>

/* Draw j's 64 random bits from cuRAND's own Philox4x32-10 (docs/semantics.md
 * section 7): subsequence j, outputs 2 * offset (high half) and
 * 2 * offset + 1 (low half). That position needs 65 bits when offset >=
 * 2^63, so the top bit of offset (2^64 outputs) is skipped as two skips of
 * 2^63. tests/test_philox.c holds csrc/shared/philox.h, which the CPU uses,
 * to cuRAND's host generator; tests/test_gpu.c holds this to both. */
static __device__ __forceinline__ uint64_t curand_draw64(uint64_t seed, uint64_t subsequence,
                                                         uint64_t offset)
{
    const uint64_t top = (uint64_t)1 << 63;
    curandStatePhilox4_32_10_t state;
    curand_init(seed, subsequence, (offset & ~top) << 1, &state);
    if (offset & top) {
        skipahead(top, &state);
        skipahead(top, &state);
    }
    const uint32_t hi = curand(&state);
    const uint32_t lo = curand(&state);
    return ((uint64_t)hi << 32) | lo;
}

#endif
