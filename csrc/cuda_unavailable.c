/* Built instead of cuda/ when kiln is configured without CUDA. */
#include "cuda_backend.h"
#include "error.h"

kiln_status kiln_cuda_create(kiln_sampler *sampler)
{
    (void)sampler;
    return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE,
                     "this kiln was built without CUDA (configure with KILN_CUDA=ON)");
}

kiln_status kiln_cuda_configure(kiln_sampler *sampler)
{
    (void)sampler;
    return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE,
                     "this kiln was built without CUDA (configure with KILN_CUDA=ON)");
}

void kiln_cuda_destroy(kiln_sampler *sampler)
{
    (void)sampler;
}

kiln_status kiln_cuda_sample(const kiln_sampler *sampler, const kiln_call *call)
{
    (void)sampler;
    (void)call;
    return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE, "this kiln was built without CUDA");
}

kiln_status kiln_cuda_best_of_n(const kiln_sampler *sampler, const float *scores,
                                int64_t num_groups, int32_t n, int32_t *best, kiln_stream stream)
{
    (void)sampler;
    (void)scores;
    (void)num_groups;
    (void)n;
    (void)best;
    (void)stream;
    return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE, "this kiln was built without CUDA");
}

kiln_status kiln_cuda_sample_hidden(const kiln_sampler *sampler, const kiln_lm_head *head,
                                    const kiln_call *call, float *logits, uint16_t *logits_bf16)
{
    (void)sampler;
    (void)head;
    (void)call;
    (void)logits;
    (void)logits_bf16;
    return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE, "this kiln was built without CUDA");
}
