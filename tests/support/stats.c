#include "stats.h"

#include <math.h>

/* Series for P(a, x), x < a + 1. */
static double gamma_p_series(double a, double x)
{
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 100000; ++n) {
        term *= x / (a + n);
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-16)
            break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Continued fraction (modified Lentz) for Q(a, x), x >= a + 1. */
static double gamma_q_fraction(double a, double x)
{
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; ++i) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-16)
            break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

double kt_chi2_sf(double x, double df)
{
    if (x <= 0.0)
        return 1.0;
    double a = df / 2.0, z = x / 2.0;
    return z < a + 1.0 ? 1.0 - gamma_p_series(a, z) : gamma_q_fraction(a, z);
}

kt_gtest kt_gtest_run(const uint64_t *observed, const double *expected, int64_t k,
                      uint64_t total)
{
    kt_gtest r = { 0.0, 0.0, 1.0, 0 };
    double pooled_obs = 0.0, pooled_exp = 0.0;
    int64_t cats = 0;
    for (int64_t i = 0; i < k; ++i) {
        double e = expected[i] * (double)total;
        double o = (double)observed[i];
        if (expected[i] <= 0.0) {
            r.impossible += observed[i];
            continue;
        }
        if (e < 5.0) {
            pooled_obs += o;
            pooled_exp += e;
            continue;
        }
        if (o > 0.0)
            r.g += 2.0 * o * log(o / e);
        cats++;
    }
    if (pooled_exp > 0.0) {
        if (pooled_obs > 0.0)
            r.g += 2.0 * pooled_obs * log(pooled_obs / pooled_exp);
        cats++;
    }
    /* sum O ln(O/E) over categories is the G statistic only when sum O =
     * sum E; it is, up to the impossible draws, which fail the test anyway. */
    r.df = (double)(cats > 1 ? cats - 1 : 1);
    r.p_value = r.impossible ? 0.0 : kt_chi2_sf(r.g, r.df);
    return r;
}
