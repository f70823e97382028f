/* The select path of top-k / top-p / min-p on the GPU: no sort. One block
 * per row finds each cut by radix select: shared-memory histograms over the
 * canonical key's digits (11, 11, 10 bits, highest first), then over the
 * token id's digits (12, 12 bits, lowest first, since equal keys rank by
 * ascending id). Weights are exact integers (1 for top-k, the mass for
 * top-p) accumulated with atomics, so the histograms, and the cut, do not
 * depend on the order threads add them in: the same cut the sort finds.
 *
 * Every histogram update is a native 32-bit shared atomic. sm_90 has no
 * 64-bit shared atomic add: a 64-bit atomicAdd on shared memory compiles to
 * an ATOMS.CAST.SPIN.64 compare-and-swap retry loop, and the first digits
 * put most of a row in a few hot bins, so warps spun on them. Counts (top-k)
 * fit 32 bits (V <= 2^24 - 1). Masses (top-p, up to 2^40 each, a bin's sum
 * below 2^64) are kept as two 32-bit halves with an explicit carry: the
 * low add returns the old value, which says exactly whether this add
 * wrapped, and the carry joins the high add. Why not the alternatives:
 * per-warp sub-histograms need 16 x 4096 x 8 bytes of shared memory; a
 * warp-aggregated update (__match_any_sync, then a 64-bit shuffle
 * reduction per distinct bin) costs a match and five shuffle rounds per
 * element where the carry costs one more atomic. Integer sums are exact
 * and order-free, so the bins hold the same values as before, bit for bit. */
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "device_call.cuh"
#include "launchers.cuh"

namespace {

constexpr int kThreads = 512;
constexpr int kMaxBins = 4096;
constexpr int kBinsPerThread = kMaxBins / kThreads;

using scan_u64 = cub::BlockScan<unsigned long long, kThreads>;
using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;

struct select_storage {
    /* bin d = (hi[d] << 32) + lo[d]; counts leave hi at 0. The same 32 KiB
     * the 64-bit bins took, so the launch's dynamic size does not change. */
    uint32_t lo[kMaxBins];
    uint32_t hi[kMaxBins];
    union {
        scan_u64::TempStorage scan;
        reduce_u64::TempStorage sum;
    } cub;
    unsigned long long above;
    unsigned long long total;
    uint32_t digit;
};

struct level {
    int on_id; /* 0: key digit; 1: id digit */
    int shift;
    uint32_t mask;
};

__constant__ level kLevels[5] = {
    { 0, 21, 0x7FFu }, { 0, 10, 0x7FFu }, { 0, 0, 0x3FFu }, { 1, 12, 0xFFFu }, { 1, 0, 0xFFFu },
};

/* Row b's logits with the penalised branch and the row offset hoisted out
 * of the loops. Nothing this kernel runs writes them (prepare wrote xbuf in
 * an earlier launch), so const __restrict__ and __ldg are sound: the
 * loads take the read-only (non-coherent) path. The same
 * conversions as kiln_load, so the same floats. */
template <int DTYPE>
struct row_reader {
    const float *__restrict__ f32;    /* xbuf row, or the logits when DTYPE is F32 */
    const uint16_t *__restrict__ h16; /* the logits when 16-bit and not penalised */
    const int32_t *__restrict__ mask; /* the mask row when not penalised (xbuf is masked) */

    __device__ __forceinline__ row_reader(const kiln_dev_call &c, int64_t b, int penalised)
    {
        f32 = nullptr;
        h16 = nullptr;
        mask = nullptr;
        if (penalised)
            f32 = c.xbuf + b * c.vocab;
        else if (DTYPE == KILN_DTYPE_F32)
            f32 = static_cast<const float *>(c.logits) + b * c.row_stride;
        else
            h16 = static_cast<const uint16_t *>(c.logits) + b * c.row_stride;
        if (!penalised && c.allowed_mask)
            mask = c.allowed_mask + b * c.allowed_mask_stride;
    }

    __device__ __forceinline__ float operator()(int64_t i) const
    {
        if (mask && !kiln_allowed(mask, i))
            return __int_as_float(0xFF800000);
        if (DTYPE == KILN_DTYPE_F32 || f32)
            return __ldg(f32 + i);
        const uint16_t h = __ldg(h16 + i);
        return DTYPE == KILN_DTYPE_F16 ? kiln_f16_to_f32(h) : kiln_bf16_to_f32(h);
    }
};

/* f(x, i) for every token i of the row this thread strides over, four
 * loads issued before the first is used so that several are in flight.
 * Every caller folds f's results with integer adds or atomics, which do
 * not depend on the order, so the unrolling changes no value. */
template <int DTYPE, typename F>
__device__ __forceinline__ void for_each_token(const row_reader<DTYPE> &rd, int64_t vocab, F f)
{
    constexpr int kUnroll = 4;
    int64_t i = threadIdx.x;
    for (; i + (kUnroll - 1) * kThreads < vocab; i += kUnroll * kThreads) {
        float x[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
            x[u] = rd(i + u * kThreads);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
            f(x[u], i + u * kThreads);
    }
    for (; i < vocab; i += kThreads)
        f(rd(i), i);
}

struct cut {
    uint32_t key;
    uint32_t id;
};

__device__ __forceinline__ bool before_or_at(uint32_t key, uint32_t id, cut c)
{
    return key > c.key || (key == c.key && id <= c.id);
}

/* The cut of the shortest canonical prefix whose weight reaches `target`,
 * among the tokens inside `within` (when `restrict`). Weight: 1, or the
 * token's mass when `by_mass`. */
template <int DTYPE, bool BY_MASS>
__device__ cut radix_cut(const kiln_dev_call &c, const row_reader<DTYPE> &rd,
                         const kiln_dev_row &row, bool restrict, cut within, uint64_t target,
                         select_storage &sm)
{
    uint32_t key_prefix = 0, key_mask = 0, id_prefix = 0, id_mask = 0;
    uint64_t above = 0;
    for (int lv = 0; lv < 5; ++lv) {
        const level L = kLevels[lv];
        const int bins = (int)L.mask + 1;
        for (int d = threadIdx.x; d < kMaxBins; d += kThreads) {
            sm.lo[d] = 0;
            sm.hi[d] = 0;
        }
        __syncthreads();
        for_each_token(rd, c.vocab, [&](float x, int64_t i) {
            const uint32_t key = kiln_order_key(x);
            if ((key & key_mask) != key_prefix || ((uint32_t)i & id_mask) != id_prefix)
                return;
            if (restrict && !before_or_at(key, (uint32_t)i, within))
                return;
            const uint32_t d = ((L.on_id ? (uint32_t)i : key) >> L.shift) & L.mask;
            if (!BY_MASS) {
                atomicAdd(&sm.lo[d], 1u);
                return;
            }
            const uint64_t w = kiln_mass(x, row.max, row.exp2_factor);
            if (w == 0)
                return;
            const uint32_t w_lo = (uint32_t)w;
            const uint32_t old = atomicAdd(&sm.lo[d], w_lo);
            /* this add wrapped lo past 2^32 exactly when the new value is
             * below what was added; every wrap is seen by the one add that
             * caused it, so hi gains each carry once */
            const uint32_t up = (uint32_t)(w >> 32) + ((uint32_t)(old + w_lo) < w_lo ? 1u : 0u);
            if (up != 0)
                atomicAdd(&sm.hi[d], up);
        });
        __syncthreads();
        /* Walk order: keys from the highest digit down, ids from the lowest
         * up. Each thread owns kBinsPerThread consecutive walk positions. */
        unsigned long long mine[kBinsPerThread];
        unsigned long long own = 0;
#pragma unroll
        for (int j = 0; j < kBinsPerThread; ++j) {
            const int pos = threadIdx.x * kBinsPerThread + j;
            const int d = L.on_id ? pos : bins - 1 - pos;
            mine[j] = pos < bins ? ((unsigned long long)sm.hi[d] << 32) | sm.lo[d] : 0;
            own += mine[j];
        }
        unsigned long long before;
        scan_u64(sm.cub.scan).ExclusiveSum(own, before);
        unsigned long long run = above + before;
#pragma unroll
        for (int j = 0; j < kBinsPerThread; ++j) {
            const int pos = threadIdx.x * kBinsPerThread + j;
            if (pos < bins && run < target && run + mine[j] >= target) {
                sm.digit = (uint32_t)(L.on_id ? pos : bins - 1 - pos);
                sm.above = run; /* weight strictly before the boundary digit */
            }
            run += mine[j];
        }
        __syncthreads();
        above = sm.above;
        const uint32_t d = sm.digit;
        if (L.on_id) {
            id_prefix |= d << L.shift;
            id_mask |= L.mask << L.shift;
        } else {
            key_prefix |= d << L.shift;
            key_mask |= L.mask << L.shift;
        }
        __syncthreads();
    }
    cut out = { key_prefix, id_prefix };
    return out;
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads) select_cut_kernel(const kiln_dev_call c)
{
    extern __shared__ __align__(16) unsigned char raw[];
    select_storage &sm = *reinterpret_cast<select_storage *>(raw);
    const int64_t b = blockIdx.x;
    kiln_dev_row &row_ref = c.row[b];
    if (row_ref.status != KILN_ROW_SAMPLE || !row_ref.need_order)
        return;
    const kiln_dev_row row = row_ref;
    const row_reader<DTYPE> rd(c, b, row.penalised);
    const cut all = { 0u, 0xFFFFFFFFu }; /* after every token */

    cut top = all;
    uint64_t mass_k = row.total; /* the prepare kernel's sum of every mass */
    if (row.top_k < c.vocab) {
        top = radix_cut<DTYPE, false>(c, rd, row, false, all, (uint64_t)row.top_k, sm);
        uint64_t s = 0;
        for_each_token(rd, c.vocab, [&](float x, int64_t i) {
            if (before_or_at(kiln_order_key(x), (uint32_t)i, top))
                s += kiln_mass(x, row.max, row.exp2_factor);
        });
        s = reduce_u64(sm.cub.sum).Sum((unsigned long long)s);
        if (threadIdx.x == 0)
            sm.total = s;
        __syncthreads();
        mass_k = sm.total;
        __syncthreads();
    }
    cut last = top;
    if (kiln_flt(row.top_p, 1.0f))
        last = radix_cut<DTYPE, true>(c, rd, row, row.top_k < c.vocab, top,
                                      kiln_ceil_scale(row.top_p, mass_k), sm);

    uint64_t kept = 0, kept_mass = 0;
    for_each_token(rd, c.vocab, [&](float x, int64_t i) {
        if (!before_or_at(kiln_order_key(x), (uint32_t)i, last))
            return;
        const uint64_t w = kiln_mass(x, row.max, row.exp2_factor);
        if (w >= row.min_mass) {
            kept += 1;
            kept_mass += w;
        }
    });
    kept = reduce_u64(sm.cub.sum).Sum((unsigned long long)kept);
    __syncthreads();
    kept_mass = reduce_u64(sm.cub.sum).Sum((unsigned long long)kept_mass);
    if (threadIdx.x == 0) {
        row_ref.cut_key = last.key;
        row_ref.cut_id = (int32_t)last.id;
        row_ref.total = kept_mass;
        row_ref.kept = (int32_t)kept;
        row_ref.log_s = kiln_log_mass(kept_mass);
        row_ref.inv_s = kiln_ddiv(1.0, kiln_u64_to_f64(kept_mass));
    }
}

template <int DTYPE>
cudaError_t launch(const kiln_dev_call &c, cudaStream_t stream)
{
    select_cut_kernel<DTYPE><<<(unsigned)c.rows, kThreads, sizeof(select_storage), stream>>>(c);
    return cudaGetLastError();
}

template <int DTYPE>
cudaError_t allow_smem()
{
    return cudaFuncSetAttribute(select_cut_kernel<DTYPE>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)sizeof(select_storage));
}

} // namespace

cudaError_t kiln_select_cut_configure(void)
{
    cudaError_t err = allow_smem<KILN_DTYPE_F32>();
    if (err == cudaSuccess)
        err = allow_smem<KILN_DTYPE_F16>();
    if (err == cudaSuccess)
        err = allow_smem<KILN_DTYPE_BF16>();
    return err;
}

cudaError_t kiln_launch_select_cut(const kiln_dev_call &c, cudaStream_t stream)
{
    switch (c.dtype) {
    case KILN_DTYPE_F32: return launch<KILN_DTYPE_F32>(c, stream);
    case KILN_DTYPE_F16: return launch<KILN_DTYPE_F16>(c, stream);
    default: return launch<KILN_DTYPE_BF16>(c, stream);
    }
}
