/* The optional per-row outputs that need the kept set or the draws, after
 * the draw kernel: the final distribution's entropy (docs/semantics.md
 * section 15) and the raw rank of each draw (section 17). One block per
 * row; both are integer sums over the row (order-free), read from L2. */
#include <cub/block/block_reduce.cuh>

#include "device_call.cuh"
#include "launchers.cuh"
#include "shared/entropy.h"

namespace {

constexpr int kThreads = 256;

using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;

__device__ uint64_t block_sum(uint64_t v, reduce_u64::TempStorage &tmp, uint64_t &slot)
{
    uint64_t s = reduce_u64(tmp).Sum((unsigned long long)v);
    if (threadIdx.x == 0)
        slot = s;
    __syncthreads();
    s = slot;
    __syncthreads();
    return s;
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads) extras_kernel(const kiln_dev_call c)
{
    __shared__ reduce_u64::TempStorage tmp;
    __shared__ uint64_t slot;
    const int64_t b = blockIdx.x;
    const kiln_dev_row row = c.row[b];
    const int64_t V = c.vocab, n = c.num_samples;
    if (row.status == KILN_ROW_INVALID) {
        if (c.out.entropy && threadIdx.x == 0)
            c.out.entropy[b] = __int_as_float(0x7FC00000);
        if (c.out.raw_ranks)
            for (int64_t j = threadIdx.x; j < n; j += kThreads)
                c.out.raw_ranks[b * n + j] = 0;
        return;
    }
    const bool greedy = row.status == KILN_ROW_GREEDY;
    if (c.out.entropy) {
        /* S and E = sum w d over the kept set at the row's temperature, E as
         * its terms' high and low 32-bit halves (each term is below 2^63) */
        float h = 0.0f;
        if (!greedy) {
            uint64_t s = 0, hi = 0, lo = 0;
            for (int64_t i = threadIdx.x; i < V; i += kThreads) {
                const float x = kiln_load<DTYPE>(c, b, row.penalised, i);
                const uint64_t w = kiln_mass(x, row.max, row.exp2_factor);
                if (!kiln_is_kept(row, x, i, w))
                    continue;
                const uint64_t t = w * (uint64_t)kiln_mass_exponent(x, row.max, row.exp2_factor);
                s += w;
                hi += t >> 32;
                lo += t & 0xFFFFFFFFu;
            }
            s = block_sum(s, tmp, slot);
            hi = block_sum(hi, tmp, slot);
            lo = block_sum(lo, tmp, slot);
            const kiln_u128 eh = { hi << 32, hi >> 32 }, el = { lo, 0 };
            h = kiln_f64_to_f32(kiln_entropy_nats(s, kiln_u128_add(eh, el)));
        }
        if (threadIdx.x == 0)
            c.out.entropy[b] = h;
    }
    if (c.out.raw_ranks) {
        /* 1 + the tokens before the draw in canonical order (key, then id) */
        for (int64_t j = 0; j < n; ++j) {
            if (greedy) {
                if (threadIdx.x == 0)
                    c.out.raw_ranks[b * n + j] = 1;
                continue;
            }
            const int64_t t = c.out.tokens[b * n + j];
            const uint32_t kt = kiln_order_key(kiln_load<DTYPE>(c, b, row.penalised, t));
            uint64_t before = 0;
            for (int64_t i = threadIdx.x; i < V; i += kThreads) {
                const uint32_t k = kiln_order_key(kiln_load<DTYPE>(c, b, row.penalised, i));
                before += k > kt || (k == kt && i < t);
            }
            before = block_sum(before, tmp, slot);
            if (threadIdx.x == 0)
                c.out.raw_ranks[b * n + j] = (int32_t)(1 + before);
        }
    }
}

template <int DTYPE>
cudaError_t launch(const kiln_dev_call &c, cudaStream_t stream)
{
    extras_kernel<DTYPE><<<(unsigned)c.rows, kThreads, 0, stream>>>(c);
    return cudaGetLastError();
}

} // namespace

cudaError_t kiln_launch_extras(const kiln_dev_call &c, cudaStream_t stream)
{
    switch (c.dtype) {
    case KILN_DTYPE_F32: return launch<KILN_DTYPE_F32>(c, stream);
    case KILN_DTYPE_F16: return launch<KILN_DTYPE_F16>(c, stream);
    default: return launch<KILN_DTYPE_BF16>(c, stream);
    }
}
