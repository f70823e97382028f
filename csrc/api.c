/* Public entry points: clear the error, validate, dispatch to a backend. */
#include <stdlib.h>

#include "cpu/cpu_backend.h"
#include "cpu/fp_mode.h"
#include "cuda_backend.h"
#include "error.h"
#include "sampler.h"
#include "validate.h"

unsigned kiln_version_number(void)
{
    return KILN_VERSION_NUMBER;
}

const char *kiln_version_string(void)
{
    return KILN_VERSION_STRING;
}

kiln_status kiln_sampler_create(const kiln_config *config, kiln_sampler **sampler)
{
    kiln_clear_error();
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler (the output pointer) is NULL");
    *sampler = NULL;
    kiln_config cfg;
    kiln_status st = kiln_validate_config(config, &cfg);
    if (st)
        return st;
    kiln_sampler *s = (kiln_sampler *)calloc(1, sizeof *s);
    if (!s)
        return kiln_fail(KILN_ERROR_OUT_OF_MEMORY, "could not allocate the sampler");
    s->config = cfg;
    if (cfg.backend == KILN_BACKEND_CPU) {
        s->config.num_threads = kiln_cpu_thread_count(cfg.num_threads);
        s->lm_head_bytes = cfg.max_hidden > 0 ? kiln_lm_head_logits_bytes(&cfg) : 0;
        s->workspace_bytes = s->lm_head_bytes + kiln_cpu_workspace_size(&s->config);
    } else {
        st = kiln_cuda_create(s);
        if (st) {
            free(s);
            return st;
        }
    }
    *sampler = s;
    return KILN_SUCCESS;
}

kiln_status kiln_sampler_destroy(kiln_sampler *sampler)
{
    kiln_clear_error();
    if (!sampler)
        return KILN_SUCCESS;
    if (sampler->cuda)
        kiln_cuda_destroy(sampler);
    free(sampler);
    return KILN_SUCCESS;
}

kiln_status kiln_sampler_workspace_size(const kiln_sampler *sampler, size_t *bytes)
{
    kiln_clear_error();
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    if (!bytes)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "bytes is NULL");
    *bytes = sampler->workspace_bytes;
    return KILN_SUCCESS;
}

kiln_status kiln_sampler_backend(const kiln_sampler *sampler, kiln_backend *backend)
{
    kiln_clear_error();
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    if (!backend)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "backend is NULL");
    *backend = sampler->config.backend;
    return KILN_SUCCESS;
}

kiln_status kiln_sample(kiln_sampler *sampler, const kiln_batch *batch,
                        const kiln_sampling_params *params, const kiln_outputs *outputs,
                        void *workspace, size_t workspace_size, kiln_stream stream)
{
    kiln_clear_error();
    const int on_host = sampler && sampler->config.backend == KILN_BACKEND_CPU;
    kiln_call call;
    const kiln_fp_mode fp = kiln_fp_mode_enter(); /* the checks compare floats too */
    kiln_status st = kiln_validate_call(sampler, batch, params, outputs, workspace,
                                        workspace_size, stream, on_host, &call);
    kiln_fp_mode_leave(fp);
    if (st)
        return st;
    if (on_host) {
        kiln_cpu_sample(sampler, &call);
        return KILN_SUCCESS;
    }
    return kiln_cuda_sample(sampler, &call);
}

kiln_status kiln_score(kiln_sampler *sampler, const kiln_batch *batch,
                       const kiln_sampling_params *params, const int32_t *targets,
                       int32_t num_targets, const kiln_score_outputs *outputs, void *workspace,
                       size_t workspace_size, kiln_stream stream)
{
    kiln_clear_error();
    const int on_host = sampler && sampler->config.backend == KILN_BACKEND_CPU;
    const kiln_score_args args = { targets, num_targets, outputs };
    kiln_call call;
    const kiln_fp_mode fp = kiln_fp_mode_enter(); /* the checks compare floats too */
    kiln_status st = kiln_validate_score(sampler, batch, params, &args, workspace, workspace_size,
                                         stream, on_host, &call);
    kiln_fp_mode_leave(fp);
    if (st)
        return st;
    if (on_host) {
        kiln_cpu_sample(sampler, &call);
        return KILN_SUCCESS;
    }
    return kiln_cuda_sample(sampler, &call);
}

kiln_status kiln_verify_drafts(kiln_sampler *sampler, const kiln_batch *batch,
                               const kiln_sampling_params *params, const kiln_drafts *drafts,
                               const kiln_verify_outputs *outputs, void *workspace,
                               size_t workspace_size, kiln_stream stream)
{
    kiln_clear_error();
    const int on_host = sampler && sampler->config.backend == KILN_BACKEND_CPU;
    kiln_call call;
    const kiln_fp_mode fp = kiln_fp_mode_enter(); /* the checks compare floats too */
    kiln_status st = kiln_validate_verify(sampler, batch, params, drafts, outputs, workspace,
                                          workspace_size, stream, on_host, &call);
    kiln_fp_mode_leave(fp);
    if (st)
        return st;
    if (on_host)
        return kiln_cpu_verify(sampler, &call);
    return kiln_cuda_sample(sampler, &call);
}

kiln_status kiln_sample_hidden(kiln_sampler *sampler, const kiln_lm_head *head,
                               const kiln_batch *batch, const kiln_sampling_params *params,
                               const kiln_outputs *outputs, void *workspace, size_t workspace_size,
                               kiln_stream stream)
{
    kiln_clear_error();
    const int on_host = sampler && sampler->config.backend == KILN_BACKEND_CPU;
    kiln_lm_head h;
    kiln_call call;
    const kiln_fp_mode fp = kiln_fp_mode_enter(); /* the checks compare floats too */
    kiln_status st = kiln_validate_hidden(sampler, head, batch, params, outputs, workspace,
                                          workspace_size, stream, on_host, &h, &call);
    kiln_fp_mode_leave(fp);
    if (st)
        return st;
    /* The logits at the front of the aligned workspace, the sampling
     * workspace after the lm-head part (the size query counted both). */
    char *base = kiln_workspace_base(workspace);
    const size_t cells = (size_t)sampler->config.max_batch * (size_t)sampler->config.max_vocab;
    float *logits = (float *)base;
    uint16_t *logits_bf16 = (uint16_t *)(base + kiln_round_up_align(cells * 4));
    call.batch.logits = h.logits_dtype == KILN_DTYPE_BF16 ? (const void *)logits_bf16
                                                          : (const void *)logits;
    call.batch.row_stride = call.batch.vocab_size;
    call.workspace = base + sampler->lm_head_bytes;
    call.workspace_size = workspace_size - (size_t)((char *)call.workspace - (char *)workspace);
    if (on_host) {
        kiln_cpu_lm_head(sampler, &h, call.batch.num_rows, call.batch.vocab_size, logits,
                         h.logits_dtype == KILN_DTYPE_BF16 ? logits_bf16 : NULL);
        kiln_cpu_sample(sampler, &call);
        return KILN_SUCCESS;
    }
    return kiln_cuda_sample_hidden(sampler, &h, &call, logits, logits_bf16);
}

kiln_status kiln_best_of_n(kiln_sampler *sampler, const float *scores, int64_t num_groups,
                           int32_t n, int32_t *best, kiln_stream stream)
{
    kiln_clear_error();
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    kiln_status st = kiln_validate_best_of_n(scores, num_groups, n, best);
    if (st)
        return st;
    if (num_groups == 0)
        return KILN_SUCCESS;
    if (sampler->config.backend == KILN_BACKEND_CPU) {
        kiln_cpu_best_of_n(scores, num_groups, n, best);
        return KILN_SUCCESS;
    }
    return kiln_cuda_best_of_n(sampler, scores, num_groups, n, best, stream);
}
