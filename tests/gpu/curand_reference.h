/* cuRAND's own device API, run on the GPU, as the reference for kiln's
 * Philox draws (tests/test_gpu.c). */
#ifndef KILN_TEST_CURAND_REFERENCE_H
#define KILN_TEST_CURAND_REFERENCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* For each i < count: curand_init(seeds[i], subsequences[i], offsets[i]),
 * then two curand() calls -> out[i] = (first << 32) | second. Host arrays.
 * Returns 0 on success, else the cudaError_t. */
int kt_curand_pairs(const uint64_t *seeds, const uint64_t *subsequences,
                    const uint64_t *offsets, int count, uint64_t *out);

/* kiln_philox_draw64 compiled for and run on the device, same arguments. */
int kt_kiln_device_draws(const uint64_t *seeds, const uint64_t *subsequences,
                         const uint64_t *draws, int count, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif
