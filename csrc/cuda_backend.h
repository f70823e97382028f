/* The CUDA backend as the host code sees it: C entry points implemented in
 * cuda/ when kiln is built with CUDA, and plain "unavailable" otherwise. */
#ifndef KILN_CUDA_BACKEND_H
#define KILN_CUDA_BACKEND_H

#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sets sampler->cuda, sampler->workspace_bytes and sampler->lm_head_bytes
 * for sampler->config (with a cuBLAS handle when max_hidden > 0). */
kiln_status kiln_cuda_create(kiln_sampler *sampler);
/* The host-only part of kiln_cuda_create: the backend state and workspace
 * size for sampler->config, without checking for a device (tests drive the
 * host path of the CUDA calls with it on machines without one). */
kiln_status kiln_cuda_configure(kiln_sampler *sampler);
void kiln_cuda_destroy(kiln_sampler *sampler);
kiln_status kiln_cuda_sample(const kiln_sampler *sampler, const kiln_call *call);
/* The LM head of a validated kiln_sample_hidden call into `logits` (f32;
 * then bf16 into `logits_bf16` when head->logits_dtype asks), then
 * kiln_cuda_sample on `call`, whose batch already points at them. */
kiln_status kiln_cuda_sample_hidden(const kiln_sampler *sampler, const kiln_lm_head *head,
                                    const kiln_call *call, float *logits, uint16_t *logits_bf16);
kiln_status kiln_cuda_best_of_n(const kiln_sampler *sampler, const float *scores,
                                int64_t num_groups, int32_t n, int32_t *best, kiln_stream stream);

#ifdef __cplusplus
}
#endif

#endif
