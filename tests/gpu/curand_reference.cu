#include "curand_reference.h"

#include <curand_kernel.h>

#include "shared/philox.h"

namespace {

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

__global__ void kiln_draws_kernel(const uint64_t *seeds, const uint64_t *subs,
                                  const uint64_t *draws, int count, uint64_t *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        out[i] = kiln_philox_draw64(seeds[i], subs[i], draws[i]);
}

int run(bool curand_api, const uint64_t *a, const uint64_t *b, const uint64_t *c, int count,
        uint64_t *out)
{
    uint64_t *d = nullptr;
    size_t bytes = (size_t)count * 8;
    cudaError_t err = cudaMalloc(&d, 4 * bytes);
    if (err != cudaSuccess)
        return (int)err;
    cudaMemcpy(d, a, bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(d + count, b, bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(d + 2 * count, c, bytes, cudaMemcpyHostToDevice);
    if (curand_api)
        curand_pairs_kernel<<<(count + 127) / 128, 128>>>(d, d + count, d + 2 * count, count,
                                                          d + 3 * count);
    else
        kiln_draws_kernel<<<(count + 127) / 128, 128>>>(d, d + count, d + 2 * count, count,
                                                        d + 3 * count);
    err = cudaGetLastError();
    if (err == cudaSuccess)
        err = cudaMemcpy(out, d + 3 * count, bytes, cudaMemcpyDeviceToHost);
    cudaFree(d);
    return (int)err;
}

} // namespace

extern "C" int kt_curand_pairs(const uint64_t *seeds, const uint64_t *subsequences,
                               const uint64_t *offsets, int count, uint64_t *out)
{
    return run(true, seeds, subsequences, offsets, count, out);
}

extern "C" int kt_kiln_device_draws(const uint64_t *seeds, const uint64_t *subsequences,
                                    const uint64_t *draws, int count, uint64_t *out)
{
    return run(false, seeds, subsequences, draws, count, out);
}
