/* Running a host-memory kiln call through the CUDA backend: copies every
 * input to the device, samples, copies every output back. Lets the same
 * test run on either backend (KILN_TEST_BACKEND=cuda switches the samplers
 * that kt_create makes). Without the CUDA runtime in the build, every
 * function reports that no device is there. Every CUDA call's status is
 * checked; a failure returns KILN_ERROR_CUDA and kt_error() names the call. */
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

/* kiln_sample on a CUDA sampler with host-memory batch/params/outputs, on
 * the NULL stream (then cudaDeviceSynchronize). Device outputs are poisoned
 * (0xA5 bytes) before the call, so an unwritten output shows. */
kiln_status kt_sample_device(kt_sampler *s, const kiln_batch *batch,
                             const kiln_sampling_params *params, kt_result *out);

/* The same on `stream` alone: stream-ordered allocation (cudaMallocAsync),
 * copies and frees, then cudaStreamSynchronize(stream); nothing touches
 * the NULL stream or synchronises the device, so two host threads with a
 * non-blocking stream each really run at once. */
kiln_status kt_sample_device_on(kt_sampler *s, const kiln_batch *batch,
                                const kiln_sampling_params *params, kt_result *out,
                                kiln_stream stream);

/* What went wrong in this thread's last failed kt_sample* call: the CUDA
 * call and its error when the harness failed, else kiln_last_error(). */
const char *kt_error(void);
void kt_error_reset(void);

#endif
