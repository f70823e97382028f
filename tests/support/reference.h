/* An independent reference for the final distribution, in double precision,
 * written from the textbook definitions (softmax with libm exp, a sort,
 * cumulative sums): no code shared with kiln. Tests compare kiln's exact
 * integer pipeline against it. */
#ifndef KILN_TEST_REFERENCE_H
#define KILN_TEST_REFERENCE_H

#include <stdint.h>

typedef struct kt_ref_params {
    double temperature; /* 0: greedy */
    int32_t top_k;      /* <= 0 or >= V: off */
    double top_p;       /* 1: off */
    double min_p;       /* 0: off */
} kt_ref_params;

typedef struct kt_ref_result {
    int64_t kept;          /* tokens with probability > 0 */
    double top_p_margin;   /* distance of the top-p threshold from the nearest
                              cumulative sum, relative to the kept mass: a
                              case is unambiguous when this is >> 1e-6 */
    double min_p_margin;   /* smallest |p_i / p_max - min_p| over survivors */
} kt_ref_result;

/* Final probabilities of one row into probs[V] (0 outside the kept set).
 * NaN/+inf rows are not handled (callers test validity separately). */
kt_ref_result kt_reference_distribution(const float *logits, int64_t vocab, kt_ref_params p,
                                        double *probs);

/* Penalties from the textbook definitions, in double: for each distinct
 * history token, repetition (divide positives, multiply negatives), then
 * subtract frequency * generated count and presence if generated. */
void kt_reference_penalize(double *x, int64_t vocab, const int32_t *ids, int64_t len,
                           int64_t prompt_len, double repetition, double presence,
                           double frequency);

#endif
