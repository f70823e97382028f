/* The CUDA backend as the host code sees it: C entry points implemented in
 * cuda/ when kiln is built with CUDA, and plain "unavailable" otherwise. */
#ifndef KILN_CUDA_BACKEND_H
#define KILN_CUDA_BACKEND_H

#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sets sampler->cuda and sampler->workspace_bytes for sampler->config. */
kiln_status kiln_cuda_create(kiln_sampler *sampler);
void kiln_cuda_destroy(kiln_sampler *sampler);
kiln_status kiln_cuda_sample(const kiln_sampler *sampler, const kiln_call *call);
kiln_status kiln_cuda_best_of_n(const kiln_sampler *sampler, const float *scores,
                                int64_t num_groups, int32_t n, int32_t *best, kiln_stream stream);

#ifdef __cplusplus
}
#endif

#endif
