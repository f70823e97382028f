/* The sampler handle and one validated call, shared by the API entry points,
 * the validation and the backends. */
#ifndef KILN_SAMPLER_H
#define KILN_SAMPLER_H

#include <stdint.h>

#include "kiln/kiln.h"

struct kiln_sampler {
    kiln_config config;     /* every field resolved (num_threads >= 1 for CPU) */
    size_t workspace_bytes; /* fixed at creation */
    size_t lm_head_bytes;   /* kiln_sample_hidden's part, at the front of the aligned
                               workspace (the sampling part follows it); 0 when
                               max_hidden == 0 */
    void *cuda;             /* CUDA backend state, NULL for CPU */
    /* Tests only (tests/test_gpu.c): caps the rows per CUB segmented-sort
     * call below what fits in 2^31 items, so the chunked path runs at sizes
     * a test can afford. 0: no cap. */
    int64_t sort_chunk_rows_cap;
    /* Tests only (tests/test_gpu.c): nonzero sends every call through the
     * per-row kernels, never the cluster path, so both stay covered. */
    int cuda_cluster_off;
};

/* A kiln_sample call after validation: full-size structs (defaults filled in
 * for fields past the caller's struct_size), strides resolved. */
typedef struct kiln_call {
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs outputs;
    void *workspace;
    size_t workspace_size;
    kiln_stream stream;
    /* kiln_score only (is_score): the targets [rows, num_targets] and their
     * outputs; its top-N, entropy and valid outputs sit in `outputs`
     * (raw_top_*, raw_entropy, valid), its tokens output is NULL. */
    int is_score;
    const int32_t *targets;
    int32_t num_targets;
    float *target_logprobs;
    int32_t *target_ranks;
    /* kiln_verify_drafts only (is_verify): full-size copies, strides
     * resolved; `outputs` is unused */
    int is_verify;
    kiln_drafts drafts;
    kiln_verify_outputs verify;
} kiln_call;

/* Every workspace is carved from an address rounded up to this, so callers
 * may pass any pointer; the size query adds the slack. */
#define KILN_WORKSPACE_ALIGN 256

static inline size_t kiln_round_up_align(size_t v)
{
    return (v + KILN_WORKSPACE_ALIGN - 1) / KILN_WORKSPACE_ALIGN * KILN_WORKSPACE_ALIGN;
}

/* kiln_sample_hidden's logits in the workspace: f32 [max_batch, max_vocab]
 * (the GEMM's output), then bf16 [max_batch, max_vocab] (written when bf16
 * logits are asked for). A separate bf16 buffer keeps the f32 -> bf16 pass
 * free of in-place hazards. */
static inline size_t kiln_lm_head_logits_bytes(const kiln_config *cfg)
{
    const size_t cells = (size_t)cfg->max_batch * (size_t)cfg->max_vocab;
    return kiln_round_up_align(cells * 4) + kiln_round_up_align(cells * 2);
}

/* The aligned start of a caller's workspace. */
static inline char *kiln_workspace_base(void *workspace)
{
    return (char *)(((uintptr_t)workspace + KILN_WORKSPACE_ALIGN - 1) &
                    ~(uintptr_t)(KILN_WORKSPACE_ALIGN - 1));
}

#endif
