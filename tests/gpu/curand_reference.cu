#include "curand_reference.h"

#include <curand_kernel.h>

#include "shared/philox.h"

namespace {

enum which { CURAND_PAIRS, CURAND_DRAWS, KILN_HEADER };

__global__ void curand_pairs_kernel(const uint64_t *seeds, const uint64_t *subs,
                                    const uint64_t *offsets, int count, uint64_t *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    curandStatePhilox4_32_10_t st;
    curand_init(seeds[i], subs[i], offsets[i], &st);
    uint64_t hi = curand(&st);
    uint64_t lo = curand(&st);
    out[i] = (hi << 32) | lo;
}

/* Section 7 read literally: outputs 2 * offset and 2 * offset + 1 of
 * subsequence `draw`. */
__global__ void curand_draws_kernel(const uint64_t *seeds, const uint64_t *offsets,
                                    const uint64_t *draws, int count, uint64_t *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    const uint64_t offset = offsets[i];
    curandStatePhilox4_32_10_t st;
    if (offset >> 63 == 0) {
        curand_init(seeds[i], draws[i], offset << 1, &st);
    } else {
        /* 2 * offset does not fit in 64 bits: start at output 0 and skip
         * `offset` outputs twice (not libkiln's split into 2 * offset mod
         * 2^64 and two skips of 2^63, so the two agree only if both are
         * right; odd offsets also exercise skipahead's lane carry) */
        curand_init(seeds[i], draws[i], 0, &st);
        skipahead(offset, &st);
        skipahead(offset, &st);
    }
    uint64_t hi = curand(&st);
    uint64_t lo = curand(&st);
    out[i] = (hi << 32) | lo;
}

__global__ void kiln_draws_kernel(const uint64_t *seeds, const uint64_t *subs,
                                  const uint64_t *draws, int count, uint64_t *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        out[i] = kiln_philox_draw64(seeds[i], subs[i], draws[i]);
}

int run(which w, const uint64_t *a, const uint64_t *b, const uint64_t *c, int count,
        uint64_t *out)
{
    if (count <= 0)
        return 0;
    uint64_t *d = nullptr;
    size_t bytes = (size_t)count * 8;
    cudaError_t err = cudaMalloc(&d, 4 * bytes);
    if (err != cudaSuccess)
        return (int)err;
    err = cudaMemcpy(d, a, bytes, cudaMemcpyHostToDevice);
    if (err == cudaSuccess)
        err = cudaMemcpy(d + count, b, bytes, cudaMemcpyHostToDevice);
    if (err == cudaSuccess)
        err = cudaMemcpy(d + 2 * count, c, bytes, cudaMemcpyHostToDevice);
    if (err == cudaSuccess)
        err = cudaMemset(d + 3 * count, 0xA5, bytes);
    if (err == cudaSuccess) {
        const int blocks = (count + 127) / 128;
        if (w == CURAND_PAIRS)
            curand_pairs_kernel<<<blocks, 128>>>(d, d + count, d + 2 * count, count, d + 3 * count);
        else if (w == CURAND_DRAWS)
            curand_draws_kernel<<<blocks, 128>>>(d, d + count, d + 2 * count, count, d + 3 * count);
        else
            kiln_draws_kernel<<<blocks, 128>>>(d, d + count, d + 2 * count, count, d + 3 * count);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaDeviceSynchronize();
    if (err == cudaSuccess)
        err = cudaMemcpy(out, d + 3 * count, bytes, cudaMemcpyDeviceToHost);
    cudaError_t freed = cudaFree(d);
    return (int)(err != cudaSuccess ? err : freed);
}

} // namespace

extern "C" int kt_curand_pairs(const uint64_t *seeds, const uint64_t *subsequences,
                               const uint64_t *offsets, int count, uint64_t *out)
{
    return run(CURAND_PAIRS, seeds, subsequences, offsets, count, out);
}

extern "C" int kt_curand_draw_u64(const uint64_t *seeds, const uint64_t *offsets,
                                  const uint64_t *draws, int count, uint64_t *out)
{
    return run(CURAND_DRAWS, seeds, offsets, draws, count, out);
}

extern "C" int kt_kiln_device_draws(const uint64_t *seeds, const uint64_t *subsequences,
                                    const uint64_t *draws, int count, uint64_t *out)
{
    return run(KILN_HEADER, seeds, subsequences, draws, count, out);
}
