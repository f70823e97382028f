/* Test harness: a CPU sampler with its workspace, and one-call helpers. */
#ifndef KILN_TEST_HARNESS_H
#define KILN_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln.h"
#include "logit_shapes.h" /* examples/: ks_rng, ks_zipf_like, ... */

typedef struct kt_sampler {
    kiln_sampler *sampler;
    void *workspace; /* host memory for CPU, device memory for CUDA */
    size_t workspace_size;
    kiln_backend backend;
} kt_sampler;

/* Creates a sampler (asserting success) for `backend` with the given limits.
 * num_threads 0 means OpenMP's default. With KILN_TEST_BACKEND=cuda in the
 * environment, a request for the CPU backend gets the CUDA backend instead:
 * that is how scripts/gpu-check runs the backend-agnostic tests on a GPU.
 * kt_sample then moves the host arrays to and from the device. */
kt_sampler kt_create(kiln_backend backend, int64_t max_batch, int64_t max_vocab,
                     int32_t max_samples, int64_t max_history, int num_threads);
void kt_destroy(kt_sampler *s);

/* Every output of a call, in host memory, owned by the struct. */
typedef struct kt_result {
    int64_t rows, vocab;
    int32_t n;
    int32_t *tokens;     /* [rows * n] */
    float *logprobs;     /* [rows * n] */
    float *raw_logprobs; /* [rows * n] */
    float *probs;        /* [rows * vocab] */
    int32_t *kept;       /* [rows] */
    uint8_t *valid;      /* [rows] */
} kt_result;

kt_result kt_result_alloc(int64_t rows, int64_t vocab, int32_t n);
void kt_result_free(kt_result *r);
/* Fills every output with a poison pattern, so unwritten bytes show. */
void kt_result_poison(kt_result *r);
kiln_outputs kt_outputs(kt_result *r);

/* Runs kiln_sample with every output requested; returns the status. Every
 * pointer in batch/params is host memory, whatever the sampler's backend. */
kiln_status kt_sample(kt_sampler *s, const kiln_batch *batch, const kiln_sampling_params *params,
                      kt_result *out);

/* A batch of f32 logits with defaults filled in. */
kiln_batch kt_batch_f32(const float *logits, int64_t rows, int64_t vocab, int32_t n);

/* 1 if the two results are byte-identical in every output. */
int kt_result_equal(const kt_result *a, const kt_result *b);
/* Byte comparison of row `ra` of `a` with row `rb` of `b`. */
int kt_row_equal(const kt_result *a, int64_t ra, const kt_result *b, int64_t rb);

/* 1 if a CUDA device is present and kiln was built with CUDA; otherwise 0
 * and *why (if given) says which is missing (the CUDA runtime's or kiln's
 * own message). */
int kt_have_cuda(const char **why);

/* 1 when KILN_REQUIRE_GPU=1 is in the environment (scripts/gpu-check sets it
 * on the GPU machine): there a test that cannot reach the GPU must fail, not
 * skip, since Criterion counts a skip as a pass. */
int kt_require_gpu(void);

/* Skips the test with the reason, or fails it under KILN_REQUIRE_GPU=1. For
 * every path where a GPU test (or a KILN_TEST_BACKEND=cuda run) would
 * otherwise skip because the device is missing or unusable. The format must
 * be a string literal. Needs <criterion/criterion.h>. */
#define KT_GPU_UNAVAILABLE(...)                                               \
    do {                                                                      \
        if (kt_require_gpu())                                                 \
            cr_assert_fail("KILN_REQUIRE_GPU=1, so this is a failure: " __VA_ARGS__); \
        cr_skip_test(__VA_ARGS__);                                            \
    } while (0)

/* The guard at the top of every GPU test. */
#define KT_REQUIRE_GPU()                                                      \
    do {                                                                      \
        const char *kt_why_ = "";                                             \
        if (!kt_have_cuda(&kt_why_))                                          \
            KT_GPU_UNAVAILABLE("no CUDA device to test: %s", kt_why_);        \
    } while (0)

/* The backend KILN_TEST_BACKEND selects for backend-agnostic tests. */
kiln_backend kt_test_backend(void);

#endif
