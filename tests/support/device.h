/* Running a host-memory kiln call through the CUDA backend: copies every
 * input to the device, samples, copies every output back. Lets the same
 * test run on either backend (KILN_TEST_BACKEND=cuda switches the samplers
 * that kt_create makes). Without the CUDA runtime in the build, every
 * function reports that no device is there. */
#ifndef KILN_TEST_DEVICE_H
#define KILN_TEST_DEVICE_H

#include <stddef.h>

#include "harness.h"

/* Number of CUDA devices (0 when none, or without the CUDA runtime); `why`
 * gets a reason when 0. */
int kt_cuda_device_count(const char **why);

/* Device workspace for a CUDA sampler; NULL on failure. */
void *kt_device_alloc(size_t bytes);
void kt_device_free(void *p);

/* kiln_sample on a CUDA sampler with host-memory batch/params/outputs. */
kiln_status kt_sample_device(kt_sampler *s, const kiln_batch *batch,
                             const kiln_sampling_params *params, kt_result *out);

#endif
