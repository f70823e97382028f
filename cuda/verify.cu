/* kiln_verify_drafts on the GPU (docs/semantics.md section 19): after the
 * prepare and cut kernels have made every target row's kept set, one block
 * per request walks its positions: the accept test in integers, at the
 * first rejection the residual max(0, w - Q) over the kept tokens, or the
 * bonus token. Token searches are block scans of integer weights in id
 * order, so they find the CPU's token. Device-resident drafts and draft
 * probabilities that are out of range make the request invalid. */
#include <cub/block/block_scan.cuh>

#include "device_call.cuh"
#include "launchers.cuh"
#include "shared/speculative.h"

namespace {

constexpr int kThreads = 256;

using scan_u64 = cub::BlockScan<unsigned long long, kThreads>;

struct verify_storage {
    scan_u64::TempStorage scan;
    int64_t found;
    uint64_t carry;
};

/* A kept token's mass in target row r (0 when not kept). */
template <int DTYPE>
__device__ __forceinline__ uint64_t kept_mass(const kiln_dev_call &c, const kiln_dev_row &row,
                                              int64_t r, int64_t v)
{
    const float x = kiln_load<DTYPE>(c, r, row.penalised, v);
    const uint64_t w = kiln_mass(x, row.max, row.exp2_factor);
    return kiln_is_kept(row, x, v, w) ? w : 0;
}

/* The weight of token v: its kept mass, or (residual) max(0, w - Q). */
template <int DTYPE>
__device__ __forceinline__ uint64_t weight(const kiln_dev_call &c, const kiln_dev_row &row,
                                           int64_t r, int64_t v, bool residual, const float *q,
                                           int64_t draft)
{
    const uint64_t w = kept_mass<DTYPE>(c, row, r, v);
    if (!residual)
        return w;
    const uint64_t qm = q ? kiln_draft_mass(q[v], row.total) : v == draft ? row.total : 0;
    return kiln_residual_mass(w, qm);
}

/* The first token (ascending id) whose inclusive prefix of weights exceeds
 * `target` (< the weights' total), to every thread. */
template <int DTYPE>
__device__ int64_t pick(const kiln_dev_call &c, const kiln_dev_row &row, int64_t r, bool residual,
                        const float *q, int64_t draft, uint64_t target, verify_storage &sm)
{
    if (threadIdx.x == 0) {
        sm.found = -1;
        sm.carry = 0;
    }
    __syncthreads();
    for (int64_t base = 0; base < c.vocab; base += kThreads) {
        const int64_t v = base + threadIdx.x;
        const uint64_t w = v < c.vocab ? weight<DTYPE>(c, row, r, v, residual, q, draft) : 0;
        unsigned long long incl, tile;
        scan_u64(sm.scan).InclusiveSum((unsigned long long)w, incl, tile);
        const uint64_t before = sm.carry;
        if (w > 0 && before + incl > target && before + incl - w <= target)
            sm.found = v;
        __syncthreads();
        if (threadIdx.x == 0)
            sm.carry = before + tile;
        __syncthreads();
        if (sm.found >= 0)
            break;
    }
    return sm.found;
}

/* Sum of the residual weights over the row, to every thread. */
template <int DTYPE>
__device__ uint64_t residual_total(const kiln_dev_call &c, const kiln_dev_row &row, int64_t r,
                                   const float *q, int64_t draft, verify_storage &sm)
{
    uint64_t mine = 0;
    for (int64_t v = threadIdx.x; v < c.vocab; v += kThreads)
        mine += weight<DTYPE>(c, row, r, v, true, q, draft);
    unsigned long long incl, total;
    scan_u64(sm.scan).InclusiveSum((unsigned long long)mine, incl, total);
    __syncthreads();
    return total;
}

/* An invalid request: tokens -1, log-probabilities NaN, nothing accepted,
 * valid 0 (every thread calls it; the caller returns). */
__device__ void invalidate(const kiln_dev_call &c, int64_t b)
{
    const int64_t K = c.max_drafts;
    __syncthreads();
    for (int64_t i = threadIdx.x; i <= K; i += kThreads) {
        c.verify.tokens[b * (K + 1) + i] = -1;
        if (c.verify.logprobs)
            c.verify.logprobs[b * (K + 1) + i] = __int_as_float(0x7FC00000);
    }
    if (threadIdx.x == 0) {
        if (c.verify.num_accepted)
            c.verify.num_accepted[b] = 0;
        if (c.verify.valid)
            c.verify.valid[b] = 0;
    }
}

/* Token t emitted at position i of request b, with its log-probability
 * under that position's distribution (0 at a greedy position); thread 0. */
template <int DTYPE>
__device__ void emit(const kiln_dev_call &c, int64_t b, int64_t i, const kiln_dev_row &row,
                     int64_t t)
{
    if (threadIdx.x != 0)
        return;
    const int64_t K = c.max_drafts, r = b * (K + 1) + i;
    c.verify.tokens[r] = (int32_t)t;
    if (c.verify.logprobs)
        c.verify.logprobs[r] = row.status == KILN_ROW_GREEDY
                                   ? 0.0f
                                   : kiln_logprob(kiln_load<DTYPE>(c, r, row.penalised, t), row.max,
                                                  row.temperature, row.log_s);
}

template <int DTYPE>
__global__ void __launch_bounds__(kThreads) verify_kernel(const kiln_dev_call c)
{
    __shared__ verify_storage sm;
    const int64_t b = blockIdx.x, K = c.max_drafts, V = c.vocab;
    const kiln_verify_outputs &o = c.verify;
    int32_t *tokens = o.tokens + b * (K + 1);
    const float nan = __int_as_float(0x7FC00000);
    for (int64_t i = threadIdx.x; i <= K; i += kThreads) {
        tokens[i] = -1;
        if (o.logprobs)
            o.logprobs[b * (K + 1) + i] = nan;
    }
    if (threadIdx.x == 0) {
        if (o.num_accepted)
            o.num_accepted[b] = 0;
        if (o.valid)
            o.valid[b] = 0;
    }
    __syncthreads();
    const int64_t kb = c.num_drafts ? c.num_drafts[b] : K;
    if (kb < 0 || kb > K)
        return;
    /* the checks the CPU backend makes on the host: drafts in [0, V) and
     * each draft's own probability in (0, 1] */
    const int32_t *drafts = c.draft_ids ? c.draft_ids + b * K : nullptr;
    int bad = 0;
    for (int64_t i = threadIdx.x; i < kb; i += kThreads) {
        const int32_t d = drafts[i];
        bad |= d < 0 || d >= V;
        if (!bad && c.draft_probs) {
            const float qd = c.draft_probs[(b * K + i) * c.draft_probs_stride + d];
            bad |= !kiln_is_probability(qd) || !kiln_fgt(qd, 0.0f);
        }
    }
    if (__syncthreads_or(bad))
        return;
    const kiln_row_params p = kiln_row_params_at(&c.params, b);
    int64_t accepted = 0;
    for (int64_t i = 0; i <= kb; ++i) {
        const int64_t r = b * (K + 1) + i;
        const kiln_dev_row row = c.row[r];
        if (row.status == KILN_ROW_INVALID) {
            invalidate(c, b);
            return;
        }
        const bool greedy = row.status == KILN_ROW_GREEDY;
        const uint64_t e = kiln_philox_draw64(p.seed, 0, p.offset + (uint64_t)i);
        int64_t t;
        if (i == kb) { /* every draft accepted: the bonus token, the ordinary draw */
            t = greedy ? row.argmax
                       : pick<DTYPE>(c, row, r, false, nullptr, -1, kiln_scale_draw(e, row.total), sm);
        } else {
            const int64_t d = drafts[i];
            const float *q = c.draft_probs ? c.draft_probs + (b * K + i) * c.draft_probs_stride
                                           : nullptr;
            bool accept;
            if (greedy) {
                accept = d == row.argmax;
            } else {
                const uint64_t w = kept_mass<DTYPE>(c, row, r, d);
                const uint64_t qm = q ? kiln_draft_mass(q[d], row.total) : row.total;
                const uint64_t u =
                    kiln_philox_draw64(p.seed, KILN_ACCEPT_SUBSEQUENCE, p.offset + (uint64_t)i);
                accept = kiln_draft_accepted(u, qm, w);
            }
            if (accept) {
                emit<DTYPE>(c, b, i, row, d);
                accepted = i + 1;
                continue;
            }
            if (greedy) {
                t = row.argmax;
            } else {
                if (q) { /* the residual reads the whole q row: it must be probabilities */
                    int nonprob = 0;
                    for (int64_t v = threadIdx.x; v < V; v += kThreads)
                        nonprob |= !kiln_is_probability(q[v]);
                    if (__syncthreads_or(nonprob)) {
                        invalidate(c, b);
                        return;
                    }
                }
                const uint64_t R = residual_total<DTYPE>(c, row, r, q, d, sm);
                t = R == 0 ? pick<DTYPE>(c, row, r, false, nullptr, -1,
                                         kiln_scale_draw(e, row.total), sm)
                           : pick<DTYPE>(c, row, r, true, q, d, kiln_scale_draw(e, R), sm);
            }
        }
        emit<DTYPE>(c, b, i, row, t);
        break;
    }
    if (threadIdx.x == 0) {
        if (o.num_accepted)
            o.num_accepted[b] = (int32_t)accepted;
        if (o.valid)
            o.valid[b] = 1;
    }
}

template <int DTYPE>
cudaError_t launch(const kiln_dev_call &c, int64_t requests, cudaStream_t stream)
{
    verify_kernel<DTYPE><<<(unsigned)requests, kThreads, 0, stream>>>(c);
    return cudaGetLastError();
}

} // namespace

cudaError_t kiln_launch_verify(const kiln_dev_call &c, int64_t requests, cudaStream_t stream)
{
    switch (c.dtype) {
    case KILN_DTYPE_F32: return launch<KILN_DTYPE_F32>(c, requests, stream);
    case KILN_DTYPE_F16: return launch<KILN_DTYPE_F16>(c, requests, stream);
    default: return launch<KILN_DTYPE_BF16>(c, requests, stream);
    }
}
