/* The cluster path: one kernel per kiln_sample call, one thread-block
 * cluster of C CTAs per row (sm_90), each CTA holding a chunk of the row in
 * shared memory (csrc/cluster_plan.h). The logits are read from HBM once,
 * with 16-byte loads; the max, the masses, the top-k and top-p cuts (the
 * radix select of topk_select.cu, its histograms summed across the cluster
 * through distributed shared memory), the kept sums, the probabilities and
 * the draws all read the on-chip copy. Every combination across CTAs is an
 * integer sum or an exact compare, so the bytes are those of the per-row
 * kernels (prepare -> select -> tiles -> draws) and of the CPU, whatever C
 * is. cuda_backend.cu sends here the calls without histories, logit bias,
 * drafts or score targets, on the select algorithm. */
#include <cooperative_groups.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "cluster_plan.h"
#include "curand_draw.cuh"
#include "device_call.cuh"
#include "launchers.cuh"
#include "shared/entropy.h"

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBins = 4096;
constexpr int kMaxCtas = KILN_CLUSTER_MAX_CTAS;
constexpr int kLevels = 5;
constexpr unsigned kFull = 0xFFFFFFFFu;
/* Top-k candidates per CTA (local indices): the tokens whose first key
 * digit reaches the top-k cut's; past this many, the CTA scans its whole
 * chunk instead (same sums, more work). */
constexpr int kListCap = 1024;
/* At most this many candidates in the whole cluster are gathered into CTA 0
 * and ranked there (gathered_cuts); more take the radix levels. */
constexpr int kGatherCap = 512;

struct arg_max {
    uint32_t key;
    int32_t index;
};

/* Larger key wins; equal keys go to the lower index (prepare.cu's rule). */
__device__ __forceinline__ bool wins(const arg_max &a, const arg_max &b)
{
    return a.key > b.key || (a.key == b.key && a.index < b.index);
}

struct arg_max_op {
    __device__ __forceinline__ arg_max operator()(const arg_max &a, const arg_max &b) const
    {
        return wins(a, b) ? a : b;
    }
};

using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;
using reduce_arg = cub::BlockReduce<arg_max, kThreads>;
using scan_u64 = cub::BlockScan<unsigned long long, kThreads>;

/* Each exchange of partial sums has its own slots, so no CTA overwrites a
 * value a peer may still be reading. */
enum exchange_slot {
    kSlotEntropy = 0, /* 4: S1, tokens with mass, the two halves of E */
    kSlotGreedyS1 = 4,
    kSlotTotals = 5,  /* 2: S, S1 */
    kSlotMassK = 7,
    kSlotKept = 8,    /* 4: S, S1, kept, kept mass (rows without a cut) */
    kSlotCutKept = 12, /* 2: kept, kept mass (rows with a cut) */
    kSlotCount = 14,   /* candidates per CTA (gathered_cuts) */
    kSlots = 15
};

struct level_slot {
    unsigned long long slices[kMaxCtas]; /* each CTA's slice total, written by that CTA */
};

struct cut {
    uint32_t key;
    uint32_t id;
};

/* The static part of a CTA's shared memory; the group sums and the chunk
 * follow it (dynamic). Peers read lo/hi, best*, xch, lv, groups and xs. */
struct cluster_storage {
    uint32_t lo[kMaxBins]; /* bin d = (hi[d] << 32) + lo[d] (topk_select.cu's carry) */
    uint32_t hi[kMaxBins];
    union {
        reduce_u64::TempStorage sum;
        reduce_arg::TempStorage arg;
        scan_u64::TempStorage scan;
    } cub;
    arg_max best;
    float best_value;
    int bad;
    unsigned long long xch[kSlots];
    /* two sets, alternating by level: a set is written again two levels
     * later, after every CTA has passed the barrier that ends its reads */
    level_slot lv[2];
    unsigned long long result[4];
    unsigned long long chunk_kept[kMaxCtas];
    int owner;
    unsigned long long owner_base;
    uint32_t found_digit;
    unsigned long long found_above;
    int list_count;
    unsigned long long gather_before, gather_total;
    cut gathered_top, gathered_last;
    int gathered_at;
    arg_max row_best;
    float row_max;
    int row_bad;
};

constexpr size_t kStaticBytes = (sizeof(cluster_storage) + 15) / 16 * 16;

__host__ __device__ constexpr int64_t groups_of(int64_t chunk)
{
    return (chunk + 31) / 32;
}

/* the group sums' bytes, padded so the chunk after them is 16-byte aligned */
__host__ __device__ constexpr int64_t group_bytes(int64_t chunk)
{
    return (groups_of(chunk) * 8 + 15) / 16 * 16;
}

/* The row's values every CTA derives identically from the same exchanges. */
struct row_consts {
    float max;
    float exp2_factor;
    uint64_t min_mass;
    int need_order;
    uint32_t cut_key;
    uint32_t cut_id;
};

__device__ __forceinline__ bool before_or_at(uint32_t key, uint32_t id, cut c)
{
    return key > c.key || (key == c.key && id <= c.id);
}

/* kiln_mass without the exponential where the mass is 0 (kiln_has_mass:
 * exactly t < -40); the branch is taken by whole warps on the far tail. */
__device__ __forceinline__ uint64_t mass_of(float x, float m, float c)
{
    return kiln_has_mass(x, m, c) ? kiln_mass(x, m, c) : 0;
}

__device__ __forceinline__ bool is_kept(const row_consts &r, float x, int64_t i, uint64_t w)
{
    if (w < r.min_mass)
        return false;
    if (!r.need_order)
        return true;
    const uint32_t k = kiln_order_key(x);
    return k > r.cut_key || (k == r.cut_key && (uint32_t)i <= r.cut_id);
}

/* The cluster-wide sums of N per-thread values, to every thread: block
 * sums, then each CTA adds the C partials in rank order. */
template <int N>
__device__ void cluster_sums(const cg::cluster_group &cl, cluster_storage &sm,
                             unsigned long long (&v)[N], int slot)
{
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const unsigned long long s = reduce_u64(sm.cub.sum).Sum(v[k]);
        if (threadIdx.x == 0)
            sm.xch[slot + k] = s;
        __syncthreads();
    }
    cl.sync();
    if (threadIdx.x < N) {
        unsigned long long t = 0;
        const unsigned C = cl.num_blocks();
        for (unsigned r = 0; r < C; ++r)
            t += *cl.map_shared_rank(&sm.xch[slot + threadIdx.x], r);
        sm.result[threadIdx.x] = t;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < N; ++k)
        v[k] = sm.result[k];
    __syncthreads();
}

__device__ __forceinline__ float masked(const int32_t *mask, int64_t i, float x)
{
    return mask && !kiln_allowed(mask, i) ? __int_as_float(0xFF800000) : x;
}

/* Chunk [begin, begin + n) of row b into xs as the floats kiln_load gives,
 * with the thread's argmax (ascending indices, so strict > keeps the first)
 * and bad-logit flag. 16-byte loads when the chunk's address allows (the
 * chunk starts a multiple of 8 tokens into the row), four in flight per
 * thread; streaming hint: each logit is read once. */
template <int DTYPE>
__device__ void load_chunk(const kiln_dev_call &c, int64_t b, int64_t begin, int n, float *xs,
                           arg_max &mine, int &bad)
{
    const int32_t *mask = c.allowed_mask ? c.allowed_mask + b * c.allowed_mask_stride : nullptr;
    auto take = [&](int t, float x) {
        x = masked(mask, begin + t, x);
        bad |= kiln_is_bad_logit(x);
        const uint32_t key = kiln_order_key(x);
        if (key > mine.key) {
            mine.key = key;
            mine.index = (int32_t)(begin + t);
        }
        return x;
    };
    constexpr int kUnroll = 4;
    if (DTYPE == KILN_DTYPE_F32) {
        const float *src = static_cast<const float *>(c.logits) + b * c.row_stride + begin;
        int t0 = 0;
        if (((uintptr_t)src & 15u) == 0) {
            const float4 *v4 = reinterpret_cast<const float4 *>(src);
            float4 *x4 = reinterpret_cast<float4 *>(xs);
            const int nv = n / 4;
            int v = threadIdx.x;
            for (; v + (kUnroll - 1) * kThreads < nv; v += kUnroll * kThreads) {
                float4 q[kUnroll];
#pragma unroll
                for (int u = 0; u < kUnroll; ++u)
                    q[u] = __ldcs(v4 + v + u * kThreads);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int t = 4 * (v + u * kThreads);
                    float4 o;
                    o.x = take(t, q[u].x);
                    o.y = take(t + 1, q[u].y);
                    o.z = take(t + 2, q[u].z);
                    o.w = take(t + 3, q[u].w);
                    x4[v + u * kThreads] = o;
                }
            }
            for (; v < nv; v += kThreads) {
                const float4 q = __ldcs(v4 + v);
                float4 o;
                o.x = take(4 * v, q.x);
                o.y = take(4 * v + 1, q.y);
                o.z = take(4 * v + 2, q.z);
                o.w = take(4 * v + 3, q.w);
                x4[v] = o;
            }
            t0 = nv * 4;
        }
        for (int t = t0 + threadIdx.x; t < n; t += kThreads)
            xs[t] = take(t, __ldcs(src + t));
    } else {
        const uint16_t *src = static_cast<const uint16_t *>(c.logits) + b * c.row_stride + begin;
        auto conv = [](uint32_t h) {
            return DTYPE == KILN_DTYPE_F16 ? kiln_f16_to_f32((uint16_t)h)
                                           : kiln_bf16_to_f32((uint16_t)h);
        };
        int t0 = 0;
        if (((uintptr_t)src & 15u) == 0) {
            const uint4 *v8 = reinterpret_cast<const uint4 *>(src);
            float4 *x4 = reinterpret_cast<float4 *>(xs);
            const int nv = n / 8;
            int v = threadIdx.x;
            for (; v + (kUnroll - 1) * kThreads < nv; v += kUnroll * kThreads) {
                uint4 q[kUnroll];
#pragma unroll
                for (int u = 0; u < kUnroll; ++u)
                    q[u] = __ldcs(v8 + v + u * kThreads);
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int t = 8 * (v + u * kThreads);
                    const uint32_t w[4] = { q[u].x, q[u].y, q[u].z, q[u].w };
                    float4 o[2];
                    float *of = reinterpret_cast<float *>(o);
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                        of[2 * k] = take(t + 2 * k, conv(w[k] & 0xFFFFu));
                        of[2 * k + 1] = take(t + 2 * k + 1, conv(w[k] >> 16));
                    }
                    x4[2 * (v + u * kThreads)] = o[0];
                    x4[2 * (v + u * kThreads) + 1] = o[1];
                }
            }
            for (; v < nv; v += kThreads) {
                const uint4 q = __ldcs(v8 + v);
                const uint32_t w[4] = { q.x, q.y, q.z, q.w };
                float4 o[2];
                float *of = reinterpret_cast<float *>(o);
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    of[2 * k] = take(8 * v + 2 * k, conv(w[k] & 0xFFFFu));
                    of[2 * k + 1] = take(8 * v + 2 * k + 1, conv(w[k] >> 16));
                }
                x4[2 * v] = o[0];
                x4[2 * v + 1] = o[1];
            }
            t0 = nv * 8;
        }
        for (int t = t0 + threadIdx.x; t < n; t += kThreads)
            xs[t] = take(t, conv(__ldcs(src + t)));
    }
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v)
{
#pragma unroll
    for (int d = 16; d > 0; d >>= 1)
        v += __shfl_xor_sync(kFull, v, d);
    return v;
}

__device__ __forceinline__ unsigned long long warp_inclusive_sum(unsigned long long v, int lane)
{
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        const unsigned long long up = __shfl_up_sync(kFull, v, d);
        if (lane >= d)
            v += up;
    }
    return v;
}

/* f(g, t, in, x) for the chunk in groups of 32 tokens, one warp per group
 * step with every lane present (t = 32 g + lane; x = -inf past the chunk),
 * so f may use warp collectives. */
template <typename F>
__device__ __forceinline__ void for_each_group(int n, const float *xs, F f)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    for (int g = warp; g * 32 < n; g += kWarps) {
        const int t = g * 32 + lane;
        const bool in = t < n;
        f(g, t, in, in ? xs[t] : __int_as_float(0xFF800000));
    }
}

struct level {
    int on_id; /* 0: key digit; 1: id digit */
    int shift;
    uint32_t mask;
};

__constant__ level kLevelTable[kLevels] = {
    { 0, 21, 0x7FFu }, { 0, 10, 0x7FFu }, { 0, 0, 0x3FFu }, { 1, 12, 0xFFFu }, { 1, 0, 0xFFFu },
};

/* The tokens a pass must see: this CTA's candidate list when it has one
 * (list_n >= 0), else its whole chunk. */
struct candidates {
    const uint16_t *list;
    int list_n; /* -1: no list */
    int n;
};

template <typename F>
__device__ __forceinline__ void for_each_candidate(const candidates &cs, F f)
{
    if (cs.list_n >= 0)
        for (int j = threadIdx.x; j < cs.list_n; j += kThreads)
            f((int)cs.list[j]);
    else
        for (int t = threadIdx.x; t < cs.n; t += kThreads)
            f(t);
}

/* The local indices of the tokens whose first key digit is at least d0 (a
 * superset of the top-k set, whose last key has that digit), in any order:
 * every later use is an order-free sum or histogram. */
__device__ candidates build_list(cluster_storage &sm, const float *xs, int n, uint16_t *list,
                                 uint32_t d0)
{
    if (threadIdx.x == 0)
        sm.list_count = 0;
    __syncthreads();
    for (int t = threadIdx.x; t < n; t += kThreads)
        if ((kiln_order_key(xs[t]) >> 21) >= d0) {
            const int j = atomicAdd(&sm.list_count, 1);
            if (j < kListCap)
                list[j] = (uint16_t)t;
        }
    __syncthreads();
    candidates cs;
    cs.list = list;
    cs.list_n = sm.list_count <= kListCap ? sm.list_count : -1;
    cs.n = n;
    __syncthreads(); /* list_count is read before anyone resets it */
    return cs;
}

/* topk_select.cu's radix_cut over the cluster: the shortest canonical
 * prefix whose weight reaches `target` (weight 1, or the mass when
 * BY_MASS), among the tokens before_or_at `within` when `restrict`. Per
 * level: every CTA histograms its candidates; CTA r sums, over the C
 * histograms, the bins of walk positions [r P, (r + 1) P) into its comb
 * and sends the slice's total to every CTA; then each CTA finds the owner
 * of the boundary from the slice totals and the bin from the owner's comb,
 * itself, so every CTA derives the same digit: two cluster barriers per
 * level. With make_list, the first level also builds the CTA's candidate
 * list (build_list). The histograms are zero on entry and on return. */
template <bool BY_MASS>
__device__ cut cluster_cut(const cg::cluster_group &cl, cluster_storage &sm, const float *xs,
                           candidates &cs, uint16_t *list, bool make_list,
                           unsigned long long *comb, int64_t begin, const row_consts &rc,
                           bool restrict, cut within, uint64_t target, int slot0,
                           int levels = kLevels)
{
    const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int P = kMaxBins / C;
    const int Q = (P + kThreads - 1) / kThreads;
    uint32_t key_prefix = 0, key_mask = 0, id_prefix = 0, id_mask = 0;
    unsigned long long above = 0;
    for (int lv = 0; lv < levels; ++lv) {
        const level L = kLevelTable[lv];
        const int bins = (int)L.mask + 1;
        for_each_candidate(cs, [&](int t) {
            const float x = xs[t];
            const uint32_t id = (uint32_t)(begin + t);
            const uint32_t key = kiln_order_key(x);
            if ((key & key_mask) != key_prefix || (id & id_mask) != id_prefix)
                return;
            if (restrict && !before_or_at(key, id, within))
                return;
            const uint32_t d = ((L.on_id ? id : key) >> L.shift) & L.mask;
            if (!BY_MASS) {
                atomicAdd(&sm.lo[d], 1u);
                return;
            }
            const uint64_t w = mass_of(x, rc.max, rc.exp2_factor);
            if (w == 0)
                return;
            const uint32_t w_lo = (uint32_t)w;
            const uint32_t old = atomicAdd(&sm.lo[d], w_lo);
            /* the add that wraps lo carries into hi (topk_select.cu) */
            const uint32_t up = (uint32_t)(w >> 32) + ((uint32_t)(old + w_lo) < w_lo ? 1u : 0u);
            if (up != 0)
                atomicAdd(&sm.hi[d], up);
        });
        cl.sync(); /* A: every CTA's histogram is complete */

        /* this CTA's slice of walk positions, summed over the C
         * histograms into comb (C = 1: its own histogram is the sum) */
        auto digit_at = [&](int pos) { return L.on_id ? pos : bins - 1 - pos; };
        unsigned long long own = 0;
        if (C > 1) {
            for (int q = 0; q < Q; ++q) {
                const int local = threadIdx.x * Q + q;
                if (local >= P)
                    break;
                const int pos = rank * P + local;
                unsigned long long v = 0;
                if (pos < bins) {
                    const int d = digit_at(pos);
                    for (int r = 0; r < C; ++r) {
                        const cluster_storage *peer = cl.map_shared_rank(&sm, (unsigned)r);
                        v += ((unsigned long long)peer->hi[d] << 32) | peer->lo[d];
                    }
                }
                comb[local] = v;
                own += v;
            }
            const unsigned long long slice = reduce_u64(sm.cub.sum).Sum(own);
            if (threadIdx.x == 0)
                for (int r = 0; r < C; ++r)
                    cl.map_shared_rank(&sm, (unsigned)r)->lv[(slot0 + lv) & 1].slices[rank] = slice;
        }
        cl.sync(); /* B: the slices and every CTA's comb are out; no peer reads this
                      CTA's histogram again this level */

        /* Every CTA finds the boundary itself: the owner of the slice where
         * the running weight reaches the target (slices in rank order are
         * consecutive walk positions), then the bin inside the owner's comb. */
        if (threadIdx.x == 0) {
            unsigned long long run = above;
            int o = C - 1;
            for (int r = 0; r < C; ++r) {
                const unsigned long long sl = C > 1 ? sm.lv[(slot0 + lv) & 1].slices[r] : 0ull;
                if (C == 1 || run + sl >= target) {
                    o = r;
                    break;
                }
                run += sl;
            }
            sm.owner = o;
            sm.owner_base = run;
            sm.found_digit = 0;
            sm.found_above = run;
        }
        __syncthreads();
        const int o = sm.owner;
        const cluster_storage *own_sm = &sm;
        const unsigned long long *oc = cl.map_shared_rank(comb, (unsigned)o);
        auto bin_of = [&](int local) {
            const int pos = o * P + local;
            if (local >= P || pos >= bins)
                return 0ull;
            if (C == 1) {
                const int d = digit_at(pos);
                return ((unsigned long long)own_sm->hi[d] << 32) | own_sm->lo[d];
            }
            return oc[local];
        };
        unsigned long long mine = 0;
        for (int q = 0; q < Q; ++q)
            mine += bin_of(threadIdx.x * Q + q);
        unsigned long long before;
        scan_u64(sm.cub.scan).ExclusiveSum(mine, before);
        unsigned long long run = sm.owner_base + before;
        if (run < target && run + mine >= target) {
            for (int q = 0; q < Q; ++q) {
                const unsigned long long v = bin_of(threadIdx.x * Q + q);
                if (run < target && run + v >= target) {
                    sm.found_digit = (uint32_t)digit_at(o * P + threadIdx.x * Q + q);
                    sm.found_above = run; /* weight strictly before the boundary digit */
                }
                run += v;
            }
        }
        __syncthreads();
        above = sm.found_above;
        const uint32_t d = sm.found_digit;
        /* zero the histogram for the next level (peers read it only between
         * A and B; C = 1 read it just now) */
        for (int i = threadIdx.x; i < kMaxBins; i += kThreads) {
            sm.lo[i] = 0;
            sm.hi[i] = 0;
        }
        __syncthreads();
        if (L.on_id) {
            id_prefix |= d << L.shift;
            id_mask |= L.mask << L.shift;
        } else {
            key_prefix |= d << L.shift;
            key_mask |= L.mask << L.shift;
        }
        if (lv == 0 && make_list)
            cs = build_list(sm, xs, cs.n, list, d);
    }
    cut out = { key_prefix, id_prefix };
    return out;
}

/* The top-k cut and the top-p cut inside it, without the remaining radix
 * levels: every CTA sends its candidates (after the first level of the
 * top-k cut: a superset of the top-k set, in any order) as (key << 32) |
 * ~id into CTA 0's histogram memory; CTA 0 ranks them (canonical order is
 * descending on that packing, all values distinct), takes the k-th as the
 * top-k cut and the shortest prefix of the first k whose mass reaches
 * ceil(p mass_k) as the top-p cut (the radix select's definitions), and
 * writes both into every CTA. Three cluster barriers instead of 19. False,
 * with nothing changed, when the cluster holds more than kGatherCap
 * candidates (the same answer in every CTA: all read the same counts). */
static_assert(kGatherCap <= 2 * kThreads, "gathered_cuts scans two candidates per thread");
static_assert(2 * kGatherCap * sizeof(unsigned long long) <= sizeof(cluster_storage::lo),
              "the gathered and the ranked candidates share CTA 0's lo[]");
static_assert(kSlotCount < kSlots, "the candidate count has its own exchange slot");

__device__ bool gathered_cuts(const cg::cluster_group &cl, cluster_storage &sm,
                              const candidates &cs, const float *xs, int64_t begin,
                              const row_consts &rc, int64_t k, float top_p, cut *top_out,
                              cut *last_out)
{
    const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    if (threadIdx.x == 0)
        sm.xch[kSlotCount] = cs.list_n >= 0 ? (unsigned long long)cs.list_n : kGatherCap + 1ull;
    cl.sync();
    if (threadIdx.x == 0) {
        unsigned long long before = 0, total = 0;
        for (int r = 0; r < C; ++r) {
            const unsigned long long n_r = *cl.map_shared_rank(&sm.xch[kSlotCount], (unsigned)r);
            before += r < rank ? n_r : 0;
            total += n_r;
        }
        sm.gather_before = before;
        sm.gather_total = total;
    }
    __syncthreads();
    const int N = sm.gather_total <= (unsigned long long)kGatherCap ? (int)sm.gather_total : -1;
    const int off = (int)sm.gather_before;
    __syncthreads();
    if (N < 0)
        return false;
    unsigned long long *dst =
        cl.map_shared_rank(reinterpret_cast<unsigned long long *>(sm.lo), 0u);
    for (int j = threadIdx.x; j < cs.list_n; j += kThreads) {
        const int t = cs.list[j];
        const uint32_t id = (uint32_t)(begin + t);
        dst[off + j] = ((unsigned long long)kiln_order_key(xs[t]) << 32) | (0xFFFFFFFFu - id);
    }
    cl.sync(); /* CTA 0 holds every candidate */
    if (rank == 0) {
        const unsigned long long *in = reinterpret_cast<const unsigned long long *>(sm.lo);
        unsigned long long *sorted = reinterpret_cast<unsigned long long *>(sm.lo) + kGatherCap;
        for (int i = threadIdx.x; i < N; i += kThreads) {
            const unsigned long long v = in[i];
            int r = 0;
            for (int j = 0; j < N; ++j)
                r += in[j] > v;
            sorted[r] = v;
        }
        __syncthreads();
        auto unpack = [](unsigned long long v) {
            cut c = { (uint32_t)(v >> 32), 0xFFFFFFFFu - (uint32_t)v };
            return c;
        };
        const cut top = unpack(sorted[k - 1]);
        cut last = top;
        /* k <= N <= 2 kThreads: two consecutive items per thread */
        const int i0 = 2 * threadIdx.x, i1 = i0 + 1;
        const uint64_t w0 =
            i0 < k ? mass_of(kiln_key_to_float((uint32_t)(sorted[i0] >> 32)), rc.max, rc.exp2_factor) : 0;
        const uint64_t w1 =
            i1 < k ? mass_of(kiln_key_to_float((uint32_t)(sorted[i1] >> 32)), rc.max, rc.exp2_factor) : 0;
        unsigned long long before, mass_k;
        scan_u64(sm.cub.scan).ExclusiveSum((unsigned long long)(w0 + w1), before, mass_k);
        if (kiln_flt(top_p, 1.0f)) {
            const uint64_t target = kiln_ceil_scale(top_p, mass_k);
            if (threadIdx.x == 0)
                sm.gathered_at = (int)k - 1;
            __syncthreads();
            if (i0 < k && before < target && before + w0 >= target)
                sm.gathered_at = i0;
            else if (i1 < k && before + w0 < target && before + w0 + w1 >= target)
                sm.gathered_at = i1;
            __syncthreads();
            last = unpack(sorted[sm.gathered_at]);
        }
        if (threadIdx.x == 0)
            for (int r = 0; r < C; ++r) {
                cluster_storage *peer = cl.map_shared_rank(&sm, (unsigned)r);
                peer->gathered_top = top;
                peer->gathered_last = last;
            }
    }
    cl.sync(); /* every CTA has both cuts */
    *top_out = sm.gathered_top;
    *last_out = sm.gathered_last;
    if (rank == 0) /* the histogram is zero again, as cluster_cut leaves it */
        for (int d = threadIdx.x; d < kMaxBins; d += kThreads) {
            sm.lo[d] = 0;
            sm.hi[d] = 0;
        }
    __syncthreads();
    return true;
}

/* groups[g] (the kept mass of group g) -> the inclusive prefix within the
 * chunk; each thread owns consecutive groups. */
__device__ void groups_to_prefix(cluster_storage &sm, unsigned long long *groups, int G)
{
    const int per = (G + kThreads - 1) / kThreads;
    const int g0 = threadIdx.x * per;
    unsigned long long own = 0;
    for (int g = g0; g < g0 + per && g < G; ++g)
        own += groups[g];
    unsigned long long before;
    scan_u64(sm.cub.scan).ExclusiveSum(own, before);
    for (int g = g0; g < g0 + per && g < G; ++g) {
        before += groups[g];
        groups[g] = before;
    }
    __syncthreads();
}

__device__ __forceinline__ float nan_f()
{
    return __uint_as_float(0x7FC00000u);
}

/* A row's state with every field set (prepare.cu's blank_row). */
__device__ kiln_dev_row blank_row(int32_t status)
{
    kiln_dev_row r;
    r.total = 0;
    r.min_mass = 1;
    r.log_s = 0.0;
    r.log_s1 = 0.0;
    r.inv_s = 0.0;
    r.max = 0.0f;
    r.exp2_factor = 0.0f;
    r.temperature = 0.0f;
    r.argmax = -1;
    r.status = status;
    r.penalised = 0;
    r.need_order = 0;
    r.top_k = 0;
    r.top_p = 1.0f;
    r.cut_key = 0;
    r.cut_id = 0;
    r.kept = 0;
    return r;
}

/* Outputs of a row that draws nothing: invalid (every token -1) or greedy
 * (every token the argmax). probs: each CTA writes its chunk. */
__device__ void finish_fixed(const kiln_dev_call &c, int64_t b, int rank, int64_t begin, int n,
                             const kiln_dev_row &r, float raw_lp, float temperature)
{
    const bool greedy = r.status == KILN_ROW_GREEDY;
    if (c.out.probs) {
        float *probs = c.out.probs + b * c.out.probs_row_stride + begin;
        for (int t = threadIdx.x; t < n; t += kThreads)
            probs[t] = greedy && begin + t == r.argmax ? 1.0f : 0.0f;
    }
    if (rank != 0)
        return;
    const int64_t ns = c.num_samples;
    for (int64_t j = threadIdx.x; j < ns; j += kThreads) {
        const int64_t at = b * ns + j;
        c.out.tokens[at] = greedy ? r.argmax : -1;
        if (c.out.logprobs)
            c.out.logprobs[at] = greedy ? 0.0f : nan_f();
        if (c.out.raw_logprobs)
            c.out.raw_logprobs[at] = greedy ? raw_lp : nan_f();
    }
    if (threadIdx.x == 0) {
        c.row[b] = r;
        if (c.out.kept_counts)
            c.out.kept_counts[b] = greedy ? 1 : 0;
        if (c.out.valid)
            c.out.valid[b] = greedy ? 1 : 0;
        if (c.out.temperatures)
            c.out.temperatures[b] = greedy ? temperature : nan_f();
    }
}

/* Draws j = gw, gw + C * kWarps, ... of row b, one warp each: the CTA whose
 * chunk holds r (prefix of the chunks' kept masses, ascending ids), the
 * group inside it (a 32-way search over its group prefixes, in the owner's
 * shared memory), the token inside the group (a warp scan), exactly the
 * first token whose inclusive prefix of kept masses exceeds r (section 7). */
__device__ void draws(const cg::cluster_group &cl, cluster_storage &sm, const kiln_dev_call &c,
                      int64_t b, const row_consts &rc,
                      const kiln_dev_row &row, unsigned long long *groups, float *xs, int64_t chunk)
{
    const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    const int64_t ns = c.num_samples;
    /* read again here rather than kept in registers through the cuts */
    const uint64_t seed = c.params.seed ? c.params.seed[b] : c.params.seed_all;
    const uint64_t offset = c.params.offset ? c.params.offset[b] : c.params.offset_all;
    for (int64_t j = (int64_t)rank * kWarps + warp; j < ns; j += (int64_t)C * kWarps) {
        const uint64_t u = curand_draw64(seed, (uint64_t)j, offset);
        const unsigned long long r = kiln_scale_draw(u, row.total);
        int o = 0;
        unsigned long long base = 0;
        while (o < C - 1 && base + sm.chunk_kept[o] <= r) {
            base += sm.chunk_kept[o];
            ++o;
        }
        const unsigned long long rr = r - base;
        const int64_t begin_o = (int64_t)o * chunk;
        const int64_t left = c.vocab - begin_o;
        const int n_o = (int)(left < chunk ? (left > 0 ? left : 0) : chunk);
        const unsigned long long *pg = cl.map_shared_rank(groups, (unsigned)o);
        const float *px = cl.map_shared_rank(xs, (unsigned)o);
        int lo = 0, len = (int)groups_of(n_o);
        while (len > 1) {
            const int step = (len + 31) >> 5;
            const int reach = (lane + 1) * step - 1;
            const int pos = lo + (reach < len - 1 ? reach : len - 1);
            const unsigned hit = __ballot_sync(kFull, pg[pos] > rr);
            const int f = hit ? __ffs(hit) - 1 : 31;
            const int end = __shfl_sync(kFull, pos, f);
            const int start = f == 0 ? lo : __shfl_sync(kFull, pos, f > 0 ? f - 1 : 0) + 1;
            lo = start;
            len = end - start + 1;
        }
        const unsigned long long gbase = lo > 0 ? pg[lo - 1] : 0ull;
        const int t = lo * 32 + lane;
        const bool in = t < n_o;
        const float x = in ? px[t] : __int_as_float(0xFF800000);
        const int64_t i = begin_o + t;
        uint64_t w = mass_of(x, rc.max, rc.exp2_factor);
        if (!in || !is_kept(rc, x, i, w))
            w = 0;
        const unsigned long long incl = warp_inclusive_sum(w, lane);
        const unsigned hit = __ballot_sync(kFull, gbase + incl > rr);
        /* unreachable fallback: r < S guarantees a hit */
        const int l = hit ? __ffs(hit) - 1 : -1;
        const float xt = __shfl_sync(kFull, x, l >= 0 ? l : 0);
        if (lane == 0) {
            const int64_t at = b * ns + j;
            const int32_t token = l >= 0 ? (int32_t)(begin_o + lo * 32 + l) : row.argmax;
            const float xv = l >= 0 ? xt : row.max;
            c.out.tokens[at] = token;
            if (c.out.logprobs)
                c.out.logprobs[at] = kiln_logprob(xv, row.max, row.temperature, row.log_s);
            if (c.out.raw_logprobs)
                c.out.raw_logprobs[at] = kiln_logprob(xv, row.max, 1.0f, row.log_s1);
        }
    }
}

template <int DTYPE>
__device__ void cluster_row(const kiln_dev_call &c, cluster_storage &sm,
                            unsigned long long *groups, float *xs, uint16_t *list,
                            unsigned long long *comb)
{
    const cg::cluster_group cl = cg::this_cluster();
    const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int64_t b = blockIdx.x / C;
    const int64_t V = c.vocab, chunk = c.cluster_chunk;
    const int64_t begin = rank * chunk;
    const int64_t left = V - begin;
    const int n = (int)(left < chunk ? (left > 0 ? left : 0) : chunk);
    const int G = (int)groups_of(n);

    for (int d = threadIdx.x; d < kMaxBins; d += kThreads) {
        sm.lo[d] = 0;
        sm.hi[d] = 0;
    }
    const kiln_row_params p = kiln_row_params_at(&c.params, b);
    if (kiln_row_params_fault(&p) != KILN_FIELD_NONE) { /* the same in every CTA */
        if (rank == 0 && threadIdx.x == 0 && c.out.raw_entropy)
            c.out.raw_entropy[b] = nan_f();
        finish_fixed(c, b, rank, begin, n, blank_row(KILN_ROW_INVALID), 0.0f, 0.0f);
        return;
    }

    /* the one read of the logits, then max and argmax by order key */
    arg_max mine = { 0u, INT32_MAX };
    int bad = 0;
    load_chunk<DTYPE>(c, b, begin, n, xs, mine, bad);
    const arg_max best = reduce_arg(sm.cub.arg).Reduce(mine, arg_max_op());
    bad = __syncthreads_or(bad);
    if (threadIdx.x == 0) {
        sm.best = best;
        sm.best_value =
            best.index >= begin && best.index < begin + n ? xs[best.index - begin] : 0.0f;
        sm.bad = bad;
    }
    cl.sync();
    if (threadIdx.x == 0) {
        arg_max acc = { 0u, INT32_MAX };
        float value = 0.0f;
        int any_bad = 0;
        for (int r = 0; r < C; ++r) {
            const cluster_storage *peer = cl.map_shared_rank(&sm, (unsigned)r);
            const arg_max pb = peer->best;
            if (wins(pb, acc)) {
                acc = pb;
                value = peer->best_value;
            }
            any_bad |= peer->bad;
        }
        sm.row_best = acc;
        sm.row_max = value;
        sm.row_bad = any_bad;
    }
    __syncthreads();
    const uint32_t key_neg_inf = 0x007FFFFFu; /* kiln_order_key(-inf) */
    if (sm.row_bad || sm.row_best.key <= key_neg_inf) {
        if (rank == 0 && threadIdx.x == 0 && c.out.raw_entropy)
            c.out.raw_entropy[b] = nan_f();
        finish_fixed(c, b, rank, begin, n, blank_row(KILN_ROW_INVALID), 0.0f, 0.0f);
        return;
    }
    const int32_t argmax = sm.row_best.index;
    const float m = sm.row_max;
    const bool need_raw = c.out.raw_logprobs != nullptr || c.out.raw_top_logprobs != nullptr;

    /* section 16: dynatemp samples at T' from the raw entropy */
    float temperature = p.temperature;
    const bool dynatemp = kiln_dynatemp_on(&p);
    if (dynatemp || c.out.raw_entropy) {
        unsigned long long e[4] = { 0, 0, 0, 0 }; /* S1, count, hi, lo (prepare.cu) */
        for (int t = threadIdx.x; t < n; t += kThreads) {
            const float x = xs[t];
            const uint64_t w = mass_of(x, m, KILN_LOG2E_F);
            const uint64_t tw = w ? w * (uint64_t)kiln_mass_exponent(x, m, KILN_LOG2E_F) : 0;
            e[0] += w;
            e[1] += w != 0;
            e[2] += tw >> 32;
            e[3] += tw & 0xFFFFFFFFu;
        }
        cluster_sums<4>(cl, sm, e, kSlotEntropy);
        const kiln_u128 h = { e[2] << 32, e[2] >> 32 }, l = { e[3], 0 };
        const double ent = kiln_entropy_nats(e[0], kiln_u128_add(h, l));
        if (dynatemp)
            temperature =
                kiln_dynatemp(p.temperature, p.dynatemp_range, p.dynatemp_exponent, ent, (int64_t)e[1]);
        if (c.out.raw_entropy && rank == 0 && threadIdx.x == 0)
            c.out.raw_entropy[b] = kiln_f64_to_f32(ent);
    }

    if (kiln_feq(temperature, 0.0f)) {
        unsigned long long s1[1] = { 0 };
        if (need_raw) {
            for (int t = threadIdx.x; t < n; t += kThreads)
                s1[0] += mass_of(xs[t], m, KILN_LOG2E_F);
            cluster_sums<1>(cl, sm, s1, kSlotGreedyS1);
        }
        kiln_dev_row g = blank_row(KILN_ROW_GREEDY);
        g.max = m;
        g.argmax = argmax;
        g.kept = 1;
        g.log_s1 = need_raw ? kiln_log_mass(s1[0]) : 0.0;
        finish_fixed(c, b, rank, begin, n, g, kiln_logprob(m, m, 1.0f, g.log_s1), temperature);
        return;
    }

    row_consts rc;
    rc.max = m;
    rc.exp2_factor = kiln_exp2_factor(temperature);
    const uint64_t min_p_mass =
        kiln_fgt(p.min_p, 0.0f) ? kiln_ceil_scale(p.min_p, KILN_MASS_ONE) : 0;
    rc.min_mass = min_p_mass > 0 ? min_p_mass : 1;
    const int64_t k = kiln_effective_top_k(p.top_k, V);
    rc.need_order = k < V || kiln_flt(p.top_p, 1.0f);
    rc.cut_key = 0;
    rc.cut_id = 0;
    const bool separate_t1 = need_raw && !kiln_feq(rc.exp2_factor, KILN_LOG2E_F);

    unsigned long long total = 0, total_t1 = 0, kept = 0, kept_mass = 0;
    if (!rc.need_order) {
        /* one pass: S, S1, the kept set (mass >= the min-p floor) and its
         * group sums */
        unsigned long long v[4] = { 0, 0, 0, 0 };
        for_each_group(n, xs, [&](int g, int, bool in, float x) {
            const uint64_t w = mass_of(x, m, rc.exp2_factor);
            v[0] += w;
            if (separate_t1)
                v[1] += mass_of(x, m, KILN_LOG2E_F);
            const bool keep = in && w >= rc.min_mass;
            v[2] += keep;
            const unsigned long long kw = keep ? w : 0;
            v[3] += kw;
            const unsigned long long gs = warp_sum(kw);
            if ((threadIdx.x & 31) == 0)
                groups[g] = gs;
        });
        /* the per-CTA kept masses (chunk_kept) are read from slot + 3 below */
        cluster_sums<4>(cl, sm, v, kSlotKept);
        total = v[0];
        total_t1 = v[1];
        kept = v[2];
        kept_mass = v[3];
        if (threadIdx.x < C)
            sm.chunk_kept[threadIdx.x] =
                *cl.map_shared_rank(&sm.xch[kSlotKept + 3], (unsigned)threadIdx.x);
    } else {
        if (k == V || need_raw) {
            unsigned long long v[2] = { 0, 0 };
            for (int t = threadIdx.x; t < n; t += kThreads) {
                v[0] += mass_of(xs[t], m, rc.exp2_factor);
                if (separate_t1)
                    v[1] += mass_of(xs[t], m, KILN_LOG2E_F);
            }
            cluster_sums<2>(cl, sm, v, kSlotTotals);
            total = v[0];
            total_t1 = v[1];
        }
        const cut all = { 0u, 0xFFFFFFFFu }; /* after every token */
        cut top = all;
        unsigned long long mass_k = total;
        candidates cs = { list, -1, n };
        cut last = top;
        bool gathered = false;
        if (k < V) {
            /* the first level and the candidate lists, then the cuts from the
             * gathered candidates; the radix levels only when too many */
            (void)cluster_cut<false>(cl, sm, xs, cs, list, true, comb, begin, rc, false, all,
                                     (uint64_t)k, 0, 1);
            gathered = gathered_cuts(cl, sm, cs, xs, begin, rc, k, p.top_p, &top, &last);
        }
        if (!gathered) {
            if (k < V) {
                top = cluster_cut<false>(cl, sm, xs, cs, list, false, comb, begin, rc, false, all,
                                         (uint64_t)k, 0);
                unsigned long long s[1] = { 0 };
                for_each_candidate(cs, [&](int t) {
                    const float x = xs[t];
                    if (before_or_at(kiln_order_key(x), (uint32_t)(begin + t), top))
                        s[0] += mass_of(x, m, rc.exp2_factor);
                });
                cluster_sums<1>(cl, sm, s, kSlotMassK);
                mass_k = s[0];
            }
            last = top;
            if (kiln_flt(p.top_p, 1.0f))
                last = cluster_cut<true>(cl, sm, xs, cs, list, k == V, comb, begin, rc, k < V,
                                         top, kiln_ceil_scale(p.top_p, mass_k), kLevels);
        }
        rc.cut_key = last.key;
        rc.cut_id = last.id;
        unsigned long long v[2] = { 0, 0 };
        if (cs.list_n >= 0) {
            /* the kept set lies in the list: group sums by shared atomics
             * (at most k + the first digit's ties per CTA) */
            for (int g = threadIdx.x; g < G; g += kThreads)
                groups[g] = 0;
            __syncthreads();
            for_each_candidate(cs, [&](int t) {
                const float x = xs[t];
                if (!before_or_at(kiln_order_key(x), (uint32_t)(begin + t), last))
                    return;
                const uint64_t w = mass_of(x, m, rc.exp2_factor);
                if (w >= rc.min_mass) {
                    v[0] += 1;
                    v[1] += w;
                    /* the 64-bit sum as two 32-bit halves with the carry
                     * (little-endian: low word first), no CAS loop */
                    uint32_t *half = reinterpret_cast<uint32_t *>(&groups[t / 32]);
                    const uint32_t w_lo = (uint32_t)w;
                    const uint32_t old = atomicAdd(&half[0], w_lo);
                    const uint32_t up =
                        (uint32_t)(w >> 32) + ((uint32_t)(old + w_lo) < w_lo ? 1u : 0u);
                    if (up != 0)
                        atomicAdd(&half[1], up);
                }
            });
        } else {
            for_each_group(n, xs, [&](int g, int t, bool in, float x) {
                unsigned long long kw = 0;
                if (in && before_or_at(kiln_order_key(x), (uint32_t)(begin + t), last)) {
                    const uint64_t w = mass_of(x, m, rc.exp2_factor);
                    if (w >= rc.min_mass) {
                        v[0] += 1;
                        kw = w;
                    }
                }
                v[1] += kw;
                const unsigned long long gs = warp_sum(kw);
                if ((threadIdx.x & 31) == 0)
                    groups[g] = gs;
            });
        }
        cluster_sums<2>(cl, sm, v, kSlotCutKept);
        kept = v[0];
        kept_mass = v[1];
        if (threadIdx.x < C)
            sm.chunk_kept[threadIdx.x] =
                *cl.map_shared_rank(&sm.xch[kSlotCutKept + 1], (unsigned)threadIdx.x);
    }
    groups_to_prefix(sm, groups, G); /* also the barrier for chunk_kept */

    kiln_dev_row r = blank_row(KILN_ROW_SAMPLE);
    r.max = m;
    r.argmax = argmax;
    r.temperature = temperature;
    r.exp2_factor = rc.exp2_factor;
    r.min_mass = rc.min_mass;
    r.need_order = rc.need_order;
    r.top_k = (int32_t)k;
    r.top_p = p.top_p;
    r.cut_key = rc.cut_key;
    r.cut_id = (int32_t)rc.cut_id;
    r.log_s1 = need_raw ? kiln_log_mass(separate_t1 ? total_t1 : total) : 0.0;
    r.total = kept_mass;
    r.kept = (int32_t)kept;
    r.log_s = kiln_log_mass(kept_mass);
    r.inv_s = kiln_ddiv(1.0, kiln_u64_to_f64(kept_mass));

    if (c.out.probs) {
        float *probs = c.out.probs + b * c.out.probs_row_stride + begin;
        for (int t = threadIdx.x; t < n; t += kThreads) {
            const float x = xs[t];
            const uint64_t w = mass_of(x, m, rc.exp2_factor);
            probs[t] = is_kept(rc, x, begin + t, w) ? kiln_prob(w, r.inv_s) : 0.0f;
        }
    }
    if (rank == 0 && threadIdx.x == 0) {
        c.row[b] = r;
        if (c.out.temperatures)
            c.out.temperatures[b] = temperature;
        if (c.out.kept_counts)
            c.out.kept_counts[b] = r.kept;
        if (c.out.valid)
            c.out.valid[b] = 1;
    }
    cl.sync(); /* every CTA's group prefixes are ready for the draws */
    draws(cl, sm, c, b, rc, r, groups, xs, chunk);
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads, 3) cluster_row_kernel(const kiln_dev_call c)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(16) unsigned char raw[];
    cluster_storage &sm = *reinterpret_cast<cluster_storage *>(raw);
    unsigned long long *groups = reinterpret_cast<unsigned long long *>(raw + kStaticBytes);
    float *xs = reinterpret_cast<float *>(raw + kStaticBytes + group_bytes(c.cluster_chunk));
    uint16_t *list = reinterpret_cast<uint16_t *>(xs + c.cluster_chunk);
    unsigned long long *comb = reinterpret_cast<unsigned long long *>(list + kListCap);
    cluster_row<DTYPE>(c, sm, groups, xs, list, comb);
    /* no CTA leaves while a peer may still read its shared memory */
    cg::this_cluster().sync();
#endif
}

/* static part, group sums, the chunk, the candidate list, comb (the
 * summed slice of walk positions; none at C = 1) */
size_t smem_bytes(int64_t chunk, int32_t ctas)
{
    const size_t comb = ctas > 1 ? (size_t)(kMaxBins / ctas) * 8 : 0;
    return kStaticBytes + (size_t)group_bytes(chunk) + (size_t)chunk * 4 + kListCap * 2 + comb;
}

/* The most any V <= max_vocab asks for: per cluster size c, the largest V
 * with that plan (the chunk grows with V at a fixed c). */
size_t max_smem_bytes(int64_t max_vocab)
{
    size_t most = 0;
    for (int32_t c = 1; c <= KILN_CLUSTER_MAX_CTAS; c <<= 1) {
        const int64_t cap = (int64_t)c * KILN_CLUSTER_CHUNK_AIM;
        const int64_t v = c < KILN_CLUSTER_MAX_CTAS && cap < max_vocab ? cap : max_vocab;
        const kiln_cluster_plan p = kiln_cluster_plan_for(v);
        if (p.ctas == c) {
            const size_t b = smem_bytes(p.chunk, c);
            most = b > most ? b : most;
        }
    }
    return most;
}

template <int DTYPE>
cudaError_t set_attributes(size_t smem)
{
    cudaError_t err = cudaFuncSetAttribute(cluster_row_kernel<DTYPE>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err == cudaSuccess)
        err = cudaFuncSetAttribute(cluster_row_kernel<DTYPE>,
                                   cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    return err;
}

template <int DTYPE>
cudaError_t launch(const kiln_dev_call &c, cudaStream_t stream)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(c.rows * c.cluster_ctas), 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem_bytes(c.cluster_chunk, c.cluster_ctas);
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)c.cluster_ctas;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, cluster_row_kernel<DTYPE>, c);
}

} // namespace

size_t kiln_cluster_row_smem_bytes(int64_t chunk, int32_t ctas)
{
    return smem_bytes(chunk, ctas);
}

cudaError_t kiln_cluster_row_configure(int64_t max_vocab, int *usable)
{
    *usable = 0;
    int device = 0, major = 0, optin = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err != cudaSuccess)
        return err;
    const int64_t chunk = kiln_cluster_max_chunk(max_vocab);
    const size_t smem = max_smem_bytes(max_vocab);
    /* candidate lists hold 16-bit local indices */
    if (major < 9 || smem > (size_t)optin || chunk > 65536)
        return cudaSuccess; /* the per-row kernels serve every call */
    err = set_attributes<KILN_DTYPE_F32>(smem);
    if (err == cudaSuccess)
        err = set_attributes<KILN_DTYPE_F16>(smem);
    if (err == cudaSuccess)
        err = set_attributes<KILN_DTYPE_BF16>(smem);
    if (err != cudaSuccess)
        return err;
    /* the largest cluster any V <= max_vocab uses must fit on the device */
    kiln_dev_call probe = {};
    probe.rows = 1;
    probe.cluster_ctas = kiln_cluster_plan_for(max_vocab).ctas;
    probe.cluster_chunk = kiln_cluster_plan_for(max_vocab).chunk;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)probe.cluster_ctas, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem_bytes(probe.cluster_chunk, probe.cluster_ctas);
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)probe.cluster_ctas;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    err = cudaOccupancyMaxActiveClusters(&clusters, cluster_row_kernel<KILN_DTYPE_F32>, &cfg);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* a device that cannot form the cluster: not sticky */
        return cudaSuccess;
    }
    *usable = clusters > 0;
    return cudaSuccess;
}

cudaError_t kiln_launch_cluster_row(const kiln_dev_call &c, cudaStream_t stream)
{
    switch (c.dtype) {
    case KILN_DTYPE_F32: return launch<KILN_DTYPE_F32>(c, stream);
    case KILN_DTYPE_F16: return launch<KILN_DTYPE_F16>(c, stream);
    default: return launch<KILN_DTYPE_BF16>(c, stream);
    }
}
