/* The optional per-row outputs that need the kept set or the draws, after
 * the draw kernel: the final distribution's entropy (docs/semantics.md
 * section 15), the raw rank of each draw and the top-N tokens of the raw
 * and final distributions (section 17). One block per row; sums are
 * integers (order-free), and the top-N is an exact radix select on the
 * order keys, the ties taken in id order, and a block sort of at most
 * KILN_TOP_N_MAX (key, id) pairs. Rows are read from L2. */
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "device_call.cuh"
#include "launchers.cuh"
#include "shared/entropy.h"

namespace {

constexpr int kThreads = 256;
constexpr int kSortItems = 4;
constexpr int KILN_TOP_N_MAX = kThreads * kSortItems; /* config.max_top_logprobs <= 1024 */

using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;
using scan_u32 = cub::BlockScan<unsigned int, kThreads>;
using sort_u64 = cub::BlockRadixSort<unsigned long long, kThreads, kSortItems>;

struct top_storage {
    unsigned int hist[256];
    unsigned long long picked[KILN_TOP_N_MAX];
    unsigned int count, prefix, need;
    union {
        scan_u32::TempStorage scan;
        sort_u64::TempStorage sort;
    } cub;
};

/* The first nt (<= KILN_TOP_N_MAX, <= V) tokens of row b's canonical order
 * as (key << 32) | ~id in t.picked, sorted descending: canonical order. */
template <int DTYPE>
__device__ void top_tokens(const kiln_dev_call &c, int64_t b, const kiln_dev_row &row, int nt,
                           top_storage &t)
{
    const int64_t V = c.vocab;
    /* the nt-th key, one 8-bit digit per pass, most significant first */
    if (threadIdx.x == 0) {
        t.prefix = 0;
        t.need = (unsigned)nt;
    }
    for (int level = 0; level < 4; ++level) {
        const int shift = 24 - 8 * level;
        for (int d = threadIdx.x; d < 256; d += kThreads)
            t.hist[d] = 0;
        __syncthreads();
        const unsigned prefix = t.prefix;
        const unsigned high = level == 0 ? 0u : ~((1u << (shift + 8)) - 1u);
        for (int64_t i = threadIdx.x; i < V; i += kThreads) {
            const uint32_t k = kiln_order_key(kiln_load<DTYPE>(c, b, row.penalised, i));
            if ((k & high) == prefix)
                atomicAdd(&t.hist[(k >> shift) & 0xFFu], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned d = 255, above = 0;
            while (above + t.hist[d] < t.need) {
                above += t.hist[d];
                --d; /* need <= the tokens left, so some digit reaches it */
            }
            t.prefix = prefix | (d << shift);
            t.need -= above;
        }
        __syncthreads();
    }
    /* every token above the key, and the first `need` tied with it by id */
    const uint32_t cut = t.prefix;
    const unsigned ties_wanted = t.need;
    if (threadIdx.x == 0)
        t.count = 0;
    __syncthreads();
    unsigned taken = 0;
    for (int64_t base = 0; base < V; base += kThreads) {
        const int64_t i = base + threadIdx.x;
        const uint32_t k = i < V ? kiln_order_key(kiln_load<DTYPE>(c, b, row.penalised, i)) : 0u;
        const unsigned tie = i < V && k == cut;
        unsigned rank, tile_ties;
        scan_u32(t.cub.scan).ExclusiveSum(tie, rank, tile_ties);
        if ((i < V && k > cut) || (tie && taken + rank < ties_wanted)) {
            const unsigned at = atomicAdd(&t.count, 1u);
            t.picked[at] = ((unsigned long long)k << 32) | (uint32_t)~(uint32_t)i;
        }
        taken += tile_ties;
        __syncthreads(); /* the scan storage is reused by the next tile */
    }
    __syncthreads();
    unsigned long long items[kSortItems];
#pragma unroll
    for (int u = 0; u < kSortItems; ++u) {
        const int at = threadIdx.x * kSortItems + u;
        items[u] = at < nt ? t.picked[at] : 0ull;
    }
    sort_u64(t.cub.sort).SortDescending(items);
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kSortItems; ++u)
        t.picked[threadIdx.x * kSortItems + u] = items[u];
    __syncthreads();
}

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

/* 1 + the tokens of row b before token t in canonical order (key, then id). */
template <int DTYPE>
__device__ int32_t rank_in_row(const kiln_dev_call &c, int64_t b, int penalised, int64_t t,
                               reduce_u64::TempStorage &tmp, uint64_t &slot)
{
    const uint32_t kt = kiln_order_key(kiln_load<DTYPE>(c, b, penalised, t));
    uint64_t before = 0;
    for (int64_t i = threadIdx.x; i < c.vocab; i += kThreads) {
        const uint32_t k = kiln_order_key(kiln_load<DTYPE>(c, b, penalised, i));
        before += k > kt || (k == kt && i < t);
    }
    return (int32_t)(1 + block_sum(before, tmp, slot));
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads) extras_kernel(const kiln_dev_call c)
{
    __shared__ reduce_u64::TempStorage tmp;
    __shared__ uint64_t slot;
    __shared__ top_storage top;
    const int64_t b = blockIdx.x;
    const kiln_dev_row row = c.row[b];
    const int64_t V = c.vocab, n = c.num_samples;
    const int N = c.out.num_top_logprobs;
    const float nan = __int_as_float(0x7FC00000), neg_inf = __int_as_float(0xFF800000);
    const int64_t K = c.is_score ? c.num_targets : 0;
    const int32_t *targets = c.is_score ? c.targets + b * K : nullptr;
    bool invalid = row.status == KILN_ROW_INVALID;
    if (c.is_score && !invalid) {
        /* a device-resident target outside [0, V) and not -1 makes the row invalid */
        int bad = 0;
        for (int64_t j = threadIdx.x; j < K; j += kThreads)
            bad |= targets[j] < -1 || targets[j] >= V;
        invalid = __syncthreads_or(bad);
    }
    if (invalid) {
        if (c.is_score) {
            for (int64_t j = threadIdx.x; j < K; j += kThreads) {
                if (c.target_logprobs)
                    c.target_logprobs[b * K + j] = nan;
                if (c.target_ranks)
                    c.target_ranks[b * K + j] = 0;
            }
            if (threadIdx.x == 0) {
                if (c.out.raw_entropy)
                    c.out.raw_entropy[b] = nan;
                if (c.out.valid)
                    c.out.valid[b] = 0;
            }
        }
        if (c.out.entropy && threadIdx.x == 0)
            c.out.entropy[b] = nan;
        if (c.out.raw_ranks)
            for (int64_t j = threadIdx.x; j < n; j += kThreads)
                c.out.raw_ranks[b * n + j] = 0;
        for (int i = threadIdx.x; i < N; i += kThreads) {
            if (c.out.raw_top_ids)
                c.out.raw_top_ids[b * N + i] = -1;
            if (c.out.raw_top_logprobs)
                c.out.raw_top_logprobs[b * N + i] = nan;
            if (c.out.final_top_ids)
                c.out.final_top_ids[b * N + i] = -1;
            if (c.out.final_top_logprobs)
                c.out.final_top_logprobs[b * N + i] = nan;
        }
        return;
    }
    const bool greedy = row.status == KILN_ROW_GREEDY;
    if (N > 0 && (c.out.raw_top_ids || c.out.raw_top_logprobs || c.out.final_top_ids ||
                  c.out.final_top_logprobs)) {
        /* the kept set is a canonical prefix, so the final top-N is the
         * first min(N, kept) of the raw one */
        const int nt = (int64_t)N < V ? N : (int)V;
        top_tokens<DTYPE>(c, b, row, nt, top);
        const int kept = greedy ? 1 : row.kept;
        for (int i = threadIdx.x; i < N; i += kThreads) {
            const bool in_row = i < nt;
            const int32_t id = in_row ? (int32_t)~(uint32_t)(top.picked[i] & 0xFFFFFFFFu) : -1;
            const float x = in_row ? kiln_load<DTYPE>(c, b, row.penalised, id) : 0.0f;
            if (c.out.raw_top_ids)
                c.out.raw_top_ids[b * N + i] = id;
            if (c.out.raw_top_logprobs)
                c.out.raw_top_logprobs[b * N + i] =
                    in_row ? kiln_logprob(x, row.max, 1.0f, row.log_s1) : neg_inf;
            const bool is_kept = in_row && i < kept;
            if (c.out.final_top_ids)
                c.out.final_top_ids[b * N + i] = is_kept ? id : -1;
            if (c.out.final_top_logprobs)
                c.out.final_top_logprobs[b * N + i] =
                    !is_kept ? neg_inf
                    : greedy ? 0.0f
                             : kiln_logprob(x, row.max, row.temperature, row.log_s);
        }
    }
    if (c.is_score) {
        /* each target's raw log-probability and rank (-1: NaN and 0) */
        for (int64_t j = 0; j < K; ++j) {
            const int32_t t = targets[j];
            if (t < 0) {
                if (threadIdx.x == 0) {
                    if (c.target_logprobs)
                        c.target_logprobs[b * K + j] = nan;
                    if (c.target_ranks)
                        c.target_ranks[b * K + j] = 0;
                }
                continue;
            }
            if (c.target_ranks) {
                const int32_t rank = rank_in_row<DTYPE>(c, b, row.penalised, t, tmp, slot);
                if (threadIdx.x == 0)
                    c.target_ranks[b * K + j] = rank;
            }
            if (c.target_logprobs && threadIdx.x == 0)
                c.target_logprobs[b * K + j] = kiln_logprob(
                    kiln_load<DTYPE>(c, b, row.penalised, t), row.max, 1.0f, row.log_s1);
        }
        if (c.out.valid && threadIdx.x == 0)
            c.out.valid[b] = 1;
        return;
    }
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
            const int32_t rank = rank_in_row<DTYPE>(c, b, row.penalised, c.out.tokens[b * n + j],
                                                    tmp, slot);
            if (threadIdx.x == 0)
                c.out.raw_ranks[b * n + j] = rank;
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
