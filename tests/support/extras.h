/* Every output of kiln_sample, the top-N, rank, entropy and temperature ones
 * included, in host memory; and a CPU sampler sized for them. For the tests
 * of docs/semantics.md sections 1 and 15-18 (mask, logit bias, entropy,
 * dynatemp, top-N, ranks, scoring). */
#ifndef KILN_TEST_EXTRAS_H
#define KILN_TEST_EXTRAS_H

#include <stdint.h>

#include "harness.h"

typedef struct kt_full {
    int64_t rows, vocab;
    int32_t n, top; /* draws per row, num_top_logprobs */
    int32_t *tokens;
    float *logprobs, *raw_logprobs, *probs;
    int32_t *kept;
    uint8_t *valid;
    int32_t *raw_top_ids;
    float *raw_top_logprobs;
    int32_t *final_top_ids;
    float *final_top_logprobs;
    int32_t *raw_ranks;
    float *entropy, *raw_entropy, *temperatures;
} kt_full;

kt_full kt_full_alloc(int64_t rows, int64_t vocab, int32_t n, int32_t top);
void kt_full_free(kt_full *r);
void kt_full_poison(kt_full *r); /* 0xA5 in every byte */
/* 1 if every byte still holds the poison. */
int kt_full_untouched(const kt_full *r);
kiln_outputs kt_full_outputs(kt_full *r);
int kt_full_equal(const kt_full *a, const kt_full *b);
int kt_full_row_equal(const kt_full *a, int64_t ra, const kt_full *b, int64_t rb);

/* A CPU sampler (whatever KILN_TEST_BACKEND says: these tests pass host
 * pointers) with max_top_logprobs and an algorithm. */
kt_sampler kt_cpu_sampler(int64_t max_batch, int64_t max_vocab, int32_t max_samples,
                          int64_t max_history, int num_threads, int32_t max_top,
                          kiln_algorithm algorithm);

kiln_status kt_full_sample(kt_sampler *s, const kiln_batch *batch,
                           const kiln_sampling_params *params, kt_full *out);

/* Float64 log-softmax of x[0..V) (entries -inf allowed, at least one finite). */
void kt_log_softmax64(const double *x, int64_t vocab, double *out);
/* Canonical order of f32 logits: descending value (-0 == +0), ties to the
 * lower id; -inf last. order[V]. */
void kt_canonical_order(const float *x, int64_t vocab, int32_t *order);

#endif
