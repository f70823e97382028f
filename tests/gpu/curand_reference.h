/* cuRAND's own device API, run on the GPU, as the reference for kiln's
 * draws (tests/test_gpu.c). */
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

/* The 64-bit u of docs/semantics.md section 7 for draw `draws[i]` of a row
 * with seed `seeds[i]` and offset `offsets[i]`, computed the way the
 * section words it, through cuRAND's device API in this file's own kernel:
 * curand_init(seed, draw, 2 * offset) (for offset >= 2^63, where 2 * offset
 * does not fit in 64 bits: curand_init(seed, draw, 0), then
 * skipahead(offset) twice), then u = (curand() << 32) | curand(). Host
 * arrays; 0 on success, else the cudaError_t. */
int kt_curand_draw_u64(const uint64_t *seeds, const uint64_t *offsets, const uint64_t *draws,
                       int count, uint64_t *out);

/* kiln_philox_draw64 (csrc/shared/philox.h) compiled for and run on the
 * device, same arguments as kt_curand_pairs but draws instead of offsets. */
int kt_kiln_device_draws(const uint64_t *seeds, const uint64_t *subsequences,
                         const uint64_t *draws, int count, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif
