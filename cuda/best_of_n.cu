/* Best-of-n on the device: one thread per group, the same rule as the CPU
 * (highest score, ties to the lowest index, NaN never, all-NaN -> -1). */
#include "launchers.cuh"

namespace {

__global__ void best_of_n_kernel(const float *scores, int64_t groups, int32_t n, int32_t *best)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        const float *s = scores + g * n;
        int32_t pick = -1;
        for (int32_t i = 0; i < n; ++i)
            if (kiln_feq(s[i], s[i]) && (pick < 0 || kiln_fgt(s[i], s[pick])))
                pick = i;
        best[g] = pick;
    }
}

} // namespace

cudaError_t kiln_launch_best_of_n(const float *scores, int64_t num_groups, int32_t n,
                                  int32_t *best, cudaStream_t stream)
{
    const int64_t blocks = (num_groups + 255) / 256;
    best_of_n_kernel<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(
        scores, num_groups, n, best);
    return cudaGetLastError();
}
