/* What every kernel of one kiln_sample call sees: the call's inputs and
 * outputs, the workspace carved into named arrays, and the per-row state
 * the kernels hand to each other. Passed to kernels by value. */
#ifndef KILN_CUDA_DEVICE_CALL_CUH
#define KILN_CUDA_DEVICE_CALL_CUH

#include <stdint.h>

#include "shared/numerics.h"
#include "shared/philox.h"
#include "shared/row_params.h"

enum kiln_row_status { KILN_ROW_SAMPLE = 0, KILN_ROW_GREEDY = 1, KILN_ROW_INVALID = 2 };

/* Written by the prepare kernel (and the cut kernel for rows it filters),
 * read by the tile and draw kernels. */
struct kiln_dev_row {
    uint64_t total;     /* S: mass of the kept set */
    uint64_t min_mass;  /* a kept token has mass >= this (>= 1) */
    double log_s;       /* kiln_log_mass(S) */
    double log_s1;      /* kiln_log_mass(S1), sum of masses at T = 1 */
    double inv_s;       /* 1 / f64(S) */
    float max;          /* m */
    float exp2_factor;  /* c */
    float temperature;
    int32_t argmax;
    int32_t status;     /* kiln_row_status */
    int32_t penalised;  /* the row lives in xbuf as f32 (bias or penalties applied) */
    int32_t need_order; /* top-k or top-p active: kept set ends at the cut */
    int32_t top_k;      /* effective k in [1, V] */
    float top_p;
    uint32_t cut_key;   /* canonical position of the last kept token */
    int32_t cut_id;
    int32_t kept;
};

struct kiln_dev_call {
    /* inputs */
    const void *logits;
    int dtype;
    int64_t rows, vocab, row_stride;
    int32_t num_samples;
    const int64_t *history_offsets;
    const int32_t *history_ids;
    const int32_t *prompt_lengths;
    int64_t max_history;
    const int32_t *allowed_mask; /* [rows, allowed_mask_stride] words, or NULL */
    int64_t allowed_mask_stride;
    const int64_t *bias_offsets; /* logit bias, CSR [rows + 1], or NULL */
    const int32_t *bias_ids;
    const float *bias_values;
    /* kiln_verify_drafts (is_verify): rows are the B * (K + 1) target rows,
     * row r of request r / (K + 1) at position r % (K + 1) */
    int is_verify;
    int32_t max_drafts; /* K */
    const int32_t *draft_ids;   /* [B, K] */
    const int32_t *num_drafts;  /* [B] or NULL */
    const float *draft_probs;   /* [B, K, draft_probs_stride] or NULL */
    int64_t draft_probs_stride;
    kiln_verify_outputs verify;
    /* kiln_score (is_score): rows are read at T = 1 with no draws */
    int is_score;
    const int32_t *targets; /* [rows, num_targets] */
    int32_t num_targets;
    float *target_logprobs;
    int32_t *target_ranks;
    kiln_sampling_params params;
    /* outputs */
    kiln_outputs out;
    /* workspace */
    kiln_dev_row *row;
    uint64_t *tile_sums; /* [rows, tiles] kept mass per tile */
    int64_t tiles;       /* tiles per row */
    float *xbuf;         /* [rows, V] edited rows: logit bias or penalties applied */
    uint32_t *marks;     /* [rows, V] history bookkeeping (NULL without histories) */
    int order;           /* some row may use top-k or top-p: a cut kernel runs */
    int sort;            /* the cut comes from the segmented sort (else from select) */
    uint32_t *keys[2];            /* [rows, V] canonical keys: prepare writes keys[0] */
    int32_t *ids[2];              /* [rows, V] token ids, alongside */
    const uint32_t *keys_sorted;  /* whichever of keys[] the sort left its result in */
    const int32_t *ids_sorted;
    int32_t *seg_begin, *seg_end; /* [rows] offsets within the row's sort chunk */
    int64_t rows_per_chunk;       /* rows per CUB call: rows * V < 2^31 */
    /* the cluster path (cluster_row.cu, csrc/cluster_plan.h) */
    int32_t cluster_ctas;  /* CTAs per row */
    int64_t cluster_chunk; /* tokens per CTA */
};

/* Tokens per tile of the tile and draw kernels. */
#define KILN_TILE 4096

/* Inverse of kiln_order_key (-0 comes back as +0, which has the same mass). */
__device__ __forceinline__ float kiln_key_to_float(uint32_t key)
{
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

/* Whether the token mask (docs/semantics.md section 1) allows token i of
 * row b: bit i % 32 of word i / 32 of the row's words. */
__device__ __forceinline__ bool kiln_allowed(const int32_t *mask_row, int64_t i)
{
    return ((uint32_t)__ldg(mask_row + (i >> 5)) >> (i & 31)) & 1u;
}

/* Logit i of row b as the kernels see it: penalised rows from xbuf (masked
 * when it was filled), others straight from the caller's logits in their
 * own dtype, -inf where the mask clears the token whatever it held. */
template <int DTYPE>
__device__ __forceinline__ float kiln_load(const kiln_dev_call &c, int64_t b, int penalised,
                                           int64_t i)
{
    if (penalised)
        return c.xbuf[b * c.vocab + i];
    if (c.allowed_mask && !kiln_allowed(c.allowed_mask + b * c.allowed_mask_stride, i))
        return __int_as_float(0xFF800000);
    const int64_t at = b * c.row_stride + i;
    if (DTYPE == KILN_DTYPE_F32)
        return static_cast<const float *>(c.logits)[at];
    const uint16_t h = static_cast<const uint16_t *>(c.logits)[at];
    return DTYPE == KILN_DTYPE_F16 ? kiln_f16_to_f32(h) : kiln_bf16_to_f32(h);
}

/* Whether token i (logit x, mass w) is in the row's kept set. */
__device__ __forceinline__ bool kiln_is_kept(const kiln_dev_row &r, float x, int64_t i,
                                             uint64_t w)
{
    if (w < r.min_mass)
        return false;
    if (!r.need_order)
        return true;
    const uint32_t k = kiln_order_key(x);
    return k > r.cut_key || (k == r.cut_key && i <= r.cut_id);
}

#endif
