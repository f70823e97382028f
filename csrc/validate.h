/* Argument checks for every public entry point. Each returns the status and
 * sets the last-error message naming the field (and row) at fault. */
#ifndef KILN_VALIDATE_H
#define KILN_VALIDATE_H

#include "sampler.h"

/* Checks `in` and writes it to `out` with defaults resolved. */
kiln_status kiln_validate_config(const kiln_config *in, kiln_config *out);

/* Checks one kiln_sample call and fills `call`. Per-row arrays are read only
 * when `arrays_on_host` (CPU backend); otherwise only host scalars and
 * pointers are checked and the device checks the values. */
kiln_status kiln_validate_call(const kiln_sampler *sampler, const kiln_batch *batch,
                               const kiln_sampling_params *params,
                               const kiln_outputs *outputs, void *workspace,
                               size_t workspace_size, kiln_stream stream,
                               int arrays_on_host, kiln_call *call);

/* Checks one kiln_sample_hidden call: writes the full-size head (stride
 * resolved) and the sampling call, whose batch.logits is still NULL and whose
 * batch.dtype is head.logits_dtype. */
kiln_status kiln_validate_hidden(const kiln_sampler *sampler, const kiln_lm_head *head_in,
                                 const kiln_batch *batch, const kiln_sampling_params *params,
                                 const kiln_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream, int arrays_on_host,
                                 kiln_lm_head *head, kiln_call *call);

/* kiln_score's own arguments. */
typedef struct kiln_score_args {
    const int32_t *targets;
    int32_t num_targets;
    const kiln_score_outputs *outputs;
} kiln_score_args;

/* Checks one kiln_score call (params may be NULL: no penalties) and fills
 * `call` with is_score set. */
kiln_status kiln_validate_score(const kiln_sampler *sampler, const kiln_batch *batch,
                                const kiln_sampling_params *params, const kiln_score_args *score,
                                void *workspace, size_t workspace_size, kiln_stream stream,
                                int arrays_on_host, kiln_call *call);

/* Checks one kiln_verify_drafts call and fills `call` with is_verify set. */
kiln_status kiln_validate_verify(const kiln_sampler *sampler, const kiln_batch *batch,
                                 const kiln_sampling_params *params, const kiln_drafts *drafts,
                                 const kiln_verify_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream, int arrays_on_host,
                                 kiln_call *call);

kiln_status kiln_validate_best_of_n(const float *scores, int64_t num_groups, int32_t n,
                                    const int32_t *best);

#endif
