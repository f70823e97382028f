/* The fused per-row pass: parameter and history checks, penalties, max and
 * argmax, the exact masses and their integer sums, and the sort keys of the
 * rows that top-k or top-p will cut. One block per row. */
#include <cub/block/block_reduce.cuh>

#include "device_call.cuh"
#include "launchers.cuh"
#include "shared/entropy.h"

namespace {

constexpr int kThreads = 512;

/* The first token of the canonical order, compared on order keys: integer
 * compares, so no float flag can change them, and -0 ties +0 as the
 * contract wants. */
struct arg_max {
    uint32_t key;
    int32_t index;
};

/* Larger key wins; equal keys go to the lower index. */
struct arg_max_op {
    __device__ __forceinline__ arg_max operator()(const arg_max &a, const arg_max &b) const
    {
        if (a.key > b.key || (a.key == b.key && a.index < b.index))
            return a;
        return b;
    }
};

using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;
using reduce_arg = cub::BlockReduce<arg_max, kThreads>;

union prepare_storage {
    reduce_u64::TempStorage sum;
    reduce_arg::TempStorage arg;
};

/* Block-wide sum; every thread gets the result. */
__device__ uint64_t block_sum(uint64_t v, prepare_storage &tmp, uint64_t &slot)
{
    uint64_t s = reduce_u64(tmp.sum).Sum((unsigned long long)v);
    if (threadIdx.x == 0)
        slot = s;
    __syncthreads();
    s = slot;
    __syncthreads();
    return s;
}

/* A row's state with every field set: later kernels copy the whole struct,
 * so none may be left unwritten (compute-sanitizer's initcheck). */
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

__device__ void finish_invalid(const kiln_dev_call &c, int64_t b)
{
    if (threadIdx.x == 0) {
        c.row[b] = blank_row(KILN_ROW_INVALID);
        if (c.sort)
            c.seg_begin[b] = c.seg_end[b] = 0;
        if (c.out.temperatures)
            c.out.temperatures[b] = __int_as_float(0x7FC00000);
        if (c.out.raw_entropy)
            c.out.raw_entropy[b] = __int_as_float(0x7FC00000);
    }
}

/* The raw distribution's entropy sums (docs/semantics.md section 15) at
 * T = 1: S1, the tokens with mass, and E = sum w d kept as the sums of the
 * terms' high and low 32 bits (each term is below 2^63, so neither sum can
 * overflow for V < 2^24); integer sums, the same in any order. Returns the
 * entropy in nats (f64) to every thread, and the count in *n1. */
template <int DTYPE>
__device__ double raw_entropy(const kiln_dev_call &c, int64_t b, int penalised, float m,
                              prepare_storage &tmp, uint64_t &slot, int64_t *n1)
{
    uint64_t s1 = 0, count = 0, hi = 0, lo = 0;
    for (int64_t i = threadIdx.x; i < c.vocab; i += kThreads) {
        const float x = kiln_load<DTYPE>(c, b, penalised, i);
        const uint64_t w = kiln_mass(x, m, KILN_LOG2E_F);
        const uint64_t t = w * (uint64_t)kiln_mass_exponent(x, m, KILN_LOG2E_F);
        s1 += w;
        count += w != 0;
        hi += t >> 32;
        lo += t & 0xFFFFFFFFu;
    }
    s1 = block_sum(s1, tmp, slot);
    count = block_sum(count, tmp, slot);
    hi = block_sum(hi, tmp, slot);
    lo = block_sum(lo, tmp, slot);
    const kiln_u128 h = { hi << 32, hi >> 32 }, l = { lo, 0 };
    *n1 = (int64_t)count;
    return kiln_entropy_nats(s1, kiln_u128_add(h, l));
}

/* Applies the history of row b to its f32 copy in xbuf. marks[v] is set to 1
 * for every history token, raised by one per generated occurrence, then
 * claimed (exchanged with 0) by exactly one thread per distinct token, which
 * applies the penalty once. Only marks of history tokens are touched, so the
 * array needs no clearing between calls. */
__device__ void apply_history(const kiln_dev_call &c, int64_t b, const int32_t *ids, int64_t len,
                              int64_t prompt, const kiln_row_params &p, const int32_t *more,
                              int64_t more_len)
{
    float *x = c.xbuf + b * c.vocab;
    if (!c.marks) {
        /* no histories in this sampler: only a verify row's earlier drafts,
         * at most K generated ids, so one thread counts them directly */
        if (threadIdx.x == 0)
            for (int64_t j = 0; j < more_len; ++j) {
                const int32_t v = more[j];
                int first = 1;
                uint32_t count = 0;
                for (int64_t k = 0; k < more_len; ++k) {
                    first &= !(k < j && more[k] == v);
                    count += more[k] == v;
                }
                if (first)
                    x[v] = kiln_penalize(x[v], 1, count, p.repetition, p.presence, p.frequency);
            }
        __syncthreads();
        return;
    }
    uint32_t *marks = c.marks + b * c.vocab;
    for (int64_t i = threadIdx.x; i < len; i += kThreads)
        marks[ids[i]] = 1;
    for (int64_t i = threadIdx.x; i < more_len; i += kThreads)
        marks[more[i]] = 1;
    __syncthreads();
    for (int64_t i = prompt + threadIdx.x; i < len; i += kThreads)
        atomicAdd(&marks[ids[i]], 1u);
    for (int64_t i = threadIdx.x; i < more_len; i += kThreads)
        atomicAdd(&marks[more[i]], 1u); /* drafts count as generated */
    __syncthreads();
    for (int64_t i = threadIdx.x; i < len + more_len; i += kThreads) {
        const int32_t v = i < len ? ids[i] : more[i - len];
        const uint32_t m = atomicExch(&marks[v], 0u);
        if (m)
            x[v] = kiln_penalize(x[v], 1, m - 1, p.repetition, p.presence, p.frequency);
    }
    __syncthreads();
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads) prepare_kernel(const kiln_dev_call c)
{
    __shared__ prepare_storage tmp;
    __shared__ uint64_t slot;
    __shared__ arg_max best_slot;
    const int64_t b = blockIdx.x;
    const int64_t V = c.vocab;
    /* the request whose parameters, history and bias the row uses: itself,
     * or for kiln_verify_drafts the request of target row b, whose history
     * gains the drafts before position b % (K + 1) as generated tokens */
    int64_t q = b, pos = 0;
    const int32_t *drafts = nullptr;
    if (c.is_verify) {
        q = b / (c.max_drafts + 1);
        pos = b % (c.max_drafts + 1);
        drafts = c.draft_ids ? c.draft_ids + q * c.max_drafts : nullptr;
        const int64_t kb = c.num_drafts ? c.num_drafts[q] : c.max_drafts;
        if (kb < 0 || kb > c.max_drafts || pos > kb) {
            /* a position the rule cannot reach (the verify kernel judges
             * a bad K_b); nothing to compute */
            finish_invalid(c, b);
            return;
        }
    }
    const kiln_row_params p = kiln_row_params_at(&c.params, q);

    /* Device-resident parameters and histories are checked here; a bad row
     * becomes invalid (the host could not see these values). */
    bool fault = kiln_row_params_fault(&p) != KILN_FIELD_NONE;
    if (pos > 0) {
        int bad = 0;
        for (int64_t i = threadIdx.x; i < pos; i += kThreads)
            bad |= drafts[i] < 0 || drafts[i] >= V;
        fault = __syncthreads_or(bad) || fault;
    }
    /* per-request arrays end at their offsets[requests] (kiln.h), which
     * bounds a row's slice: a bad device offset makes the row invalid
     * instead of reading past the array */
    const int64_t requests = c.is_verify ? c.rows / (c.max_drafts + 1) : c.rows;
    int64_t h0 = 0, len = 0, prompt = 0;
    if (c.history_offsets) {
        h0 = c.history_offsets[q];
        const int64_t h1 = c.history_offsets[q + 1];
        /* compared before subtracting, so the difference cannot overflow */
        if (h0 < 0 || h1 < h0 || h1 > c.history_offsets[requests] || h1 - h0 > c.max_history) {
            fault = true;
        } else {
            len = h1 - h0;
            if (c.prompt_lengths) {
                prompt = c.prompt_lengths[q];
                if (prompt < 0 || prompt > len)
                    fault = true;
            }
        }
    }
    if (!fault && len > 0) {
        int bad = 0;
        for (int64_t i = threadIdx.x; i < len; i += kThreads) {
            const int32_t v = c.history_ids[h0 + i];
            bad |= v < 0 || v >= V;
        }
        fault = __syncthreads_or(bad);
    }
    /* the logit bias (device memory: a bad entry makes the row invalid) */
    int64_t e0 = 0, e1 = 0;
    if (!fault && c.bias_offsets) {
        e0 = c.bias_offsets[q];
        e1 = c.bias_offsets[q + 1];
        if (e0 < 0 || e1 < e0 || e1 > c.bias_offsets[requests]) {
            fault = true;
        } else {
            int bad = 0;
            for (int64_t e = e0 + threadIdx.x; e < e1; e += kThreads) {
                const int32_t v = c.bias_ids[e];
                bad |= v < 0 || v >= V || !kiln_is_finite(c.bias_values[e]);
            }
            fault = __syncthreads_or(bad);
        }
    }
    if (fault) {
        finish_invalid(c, b);
        return;
    }

    /* Section 1's edits on an f32 copy in xbuf: the mask (kiln_load), the
     * bias in the order given (one thread: an id listed twice gets both
     * f32 additions in order), then the penalties. */
    const int penalties =
        len + pos > 0 && (!kiln_feq(p.repetition, 1.0f) || !kiln_feq(p.presence, 0.0f) ||
                          !kiln_feq(p.frequency, 0.0f));
    const int penalised = penalties || e1 > e0;
    if (penalised) {
        float *x = c.xbuf + b * V;
        for (int64_t i = threadIdx.x; i < V; i += kThreads)
            x[i] = kiln_load<DTYPE>(c, b, 0, i);
        __syncthreads();
        if (threadIdx.x == 0)
            for (int64_t e = e0; e < e1; ++e)
                x[c.bias_ids[e]] = kiln_fadd(x[c.bias_ids[e]], c.bias_values[e]);
        __syncthreads();
        if (penalties)
            apply_history(c, b, c.history_ids + h0, len, prompt, p, drafts, pos);
    }

    /* max and argmax by order key; a NaN's key may win, but the bad flag
     * makes the row invalid then */
    arg_max mine = { 0u, INT32_MAX };
    int bad = 0;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
        const float x = kiln_load<DTYPE>(c, b, penalised, i);
        bad |= kiln_is_bad_logit(x);
        const uint32_t key = kiln_order_key(x);
        if (key > mine.key) {
            mine.key = key;
            mine.index = (int32_t)i;
        }
    }
    const arg_max best = reduce_arg(tmp.arg).Reduce(mine, arg_max_op());
    if (threadIdx.x == 0)
        best_slot = best;
    bad = __syncthreads_or(bad);
    const uint32_t key_neg_inf = 0x007FFFFFu; /* kiln_order_key(-inf) */
    if (bad || best_slot.key <= key_neg_inf) {
        finish_invalid(c, b);
        return;
    }
    const int32_t argmax = best_slot.index;
    const float m = kiln_load<DTYPE>(c, b, penalised, argmax);
    /* log S1 for the raw log-probabilities of the draws and of the top-N */
    const bool need_raw = c.out.raw_logprobs != nullptr || c.out.raw_top_logprobs != nullptr ||
                          (c.is_score && c.target_logprobs != nullptr);
    kiln_dev_row &row = c.row[b];

    /* Section 16: with dynatemp the row is sampled at T' from its raw
     * entropy; the raw entropy output needs the same sums. */
    /* kiln_score reads the raw distribution only: a greedy row to the kernels */
    float temperature = c.is_score ? 0.0f : p.temperature;
    const bool dynatemp = !c.is_score && kiln_dynatemp_on(&p);
    if (dynatemp || c.out.raw_entropy) {
        int64_t n1 = 0;
        const double h = raw_entropy<DTYPE>(c, b, penalised, m, tmp, slot, &n1);
        if (dynatemp)
            temperature = kiln_dynatemp(p.temperature, p.dynatemp_range, p.dynatemp_exponent, h, n1);
        if (c.out.raw_entropy && threadIdx.x == 0)
            c.out.raw_entropy[b] = kiln_f64_to_f32(h);
    }

    if (kiln_feq(temperature, 0.0f)) {
        uint64_t s1 = 0;
        if (need_raw) {
            for (int64_t i = threadIdx.x; i < V; i += kThreads)
                s1 += kiln_mass(kiln_load<DTYPE>(c, b, penalised, i), m, KILN_LOG2E_F);
            s1 = block_sum(s1, tmp, slot);
        }
        if (threadIdx.x == 0) {
            kiln_dev_row g = blank_row(KILN_ROW_GREEDY);
            g.max = m;
            g.argmax = argmax;
            g.penalised = penalised;
            g.kept = 1;
            g.log_s1 = need_raw ? kiln_log_mass(s1) : 0.0;
            row = g;
            if (c.sort)
                c.seg_begin[b] = c.seg_end[b] = 0;
            if (c.out.temperatures)
                c.out.temperatures[b] = temperature;
        }
        return;
    }

    const float cexp = kiln_exp2_factor(temperature);
    const uint64_t min_p_mass =
        kiln_fgt(p.min_p, 0.0f) ? kiln_ceil_scale(p.min_p, KILN_MASS_ONE) : 0;
    const uint64_t lo = min_p_mass > 0 ? min_p_mass : 1;
    const int64_t k = kiln_effective_top_k(p.top_k, V);
    const int need_order = c.order && (k < V || kiln_flt(p.top_p, 1.0f));
    const bool separate_t1 = need_raw && !kiln_feq(cexp, KILN_LOG2E_F);
    const int64_t sort_base = b * V;

    uint64_t total = 0, total_t1 = 0, kept = 0, kept_mass = 0;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
        const float x = kiln_load<DTYPE>(c, b, penalised, i);
        const uint64_t w = kiln_mass(x, m, cexp);
        total += w;
        if (separate_t1)
            total_t1 += kiln_mass(x, m, KILN_LOG2E_F);
        if (need_order) {
            if (c.sort) {
                c.keys[0][sort_base + i] = kiln_order_key(x);
                c.ids[0][sort_base + i] = (int32_t)i;
            }
        } else if (w >= lo) {
            kept += 1;
            kept_mass += w;
        }
    }
    total = block_sum(total, tmp, slot);
    if (separate_t1)
        total_t1 = block_sum(total_t1, tmp, slot);
    if (!need_order) {
        kept = block_sum(kept, tmp, slot);
        kept_mass = block_sum(kept_mass, tmp, slot);
    }
    if (threadIdx.x == 0) {
        if (c.out.temperatures)
            c.out.temperatures[b] = temperature;
        kiln_dev_row r = blank_row(KILN_ROW_SAMPLE);
        r.max = m;
        r.argmax = argmax;
        r.temperature = temperature;
        r.exp2_factor = cexp;
        r.min_mass = lo;
        r.penalised = penalised;
        r.need_order = need_order;
        r.top_k = (int32_t)k;
        r.top_p = p.top_p;
        r.log_s1 = need_raw ? kiln_log_mass(separate_t1 ? total_t1 : total) : 0.0;
        r.total = total; /* every token's mass; the cut kernels replace it */
        if (!need_order) {
            r.total = kept_mass;
            r.kept = (int32_t)kept;
            r.log_s = kiln_log_mass(kept_mass);
            r.inv_s = kiln_ddiv(1.0, kiln_u64_to_f64(kept_mass));
        }
        row = r;
        if (c.sort) {
            /* CUB sorts rows_per_chunk rows per call; offsets are relative to
             * the chunk's first row. Empty segments are skipped. */
            const int64_t rel = (b % c.rows_per_chunk) * V;
            c.seg_begin[b] = (int32_t)rel;
            c.seg_end[b] = (int32_t)(need_order ? rel + V : rel);
        }
    }
}

} // namespace

cudaError_t kiln_launch_prepare(const kiln_dev_call &c, cudaStream_t stream)
{
    switch (c.dtype) {
    case KILN_DTYPE_F32: prepare_kernel<KILN_DTYPE_F32><<<(unsigned)c.rows, kThreads, 0, stream>>>(c); break;
    case KILN_DTYPE_F16: prepare_kernel<KILN_DTYPE_F16><<<(unsigned)c.rows, kThreads, 0, stream>>>(c); break;
    default: prepare_kernel<KILN_DTYPE_BF16><<<(unsigned)c.rows, kThreads, 0, stream>>>(c); break;
    }
    return cudaGetLastError();
}
