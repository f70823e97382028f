/* Goodness-of-fit statistics for the frequency tests. */
#ifndef KILN_TEST_STATS_H
#define KILN_TEST_STATS_H

#include <stdint.h>

/* Upper tail P(X >= x) of a chi-square distribution with df degrees of
 * freedom (regularised upper incomplete gamma Q(df/2, x/2)). */
double kt_chi2_sf(double x, double df);

typedef struct kt_gtest {
    double g;       /* the G statistic, 2 sum O ln(O / E) */
    double df;      /* categories after pooling, minus one */
    double p_value; /* 0 when a draw fell where the expected probability is 0 */
    uint64_t impossible; /* draws in zero-probability categories */
} kt_gtest;

/* G-test of `observed` counts (over k categories, total draws `total`)
 * against probabilities `expected` (summing to 1). Categories whose expected
 * count is below 5 are pooled into one, as the chi-square approximation
 * needs. */
kt_gtest kt_gtest_run(const uint64_t *observed, const double *expected, int64_t k,
                      uint64_t total);

#endif
