#include "logit_shapes.h"

#include <math.h>
#include <stdlib.h>

uint64_t ks_rng_u64(ks_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ks_rng_unit(ks_rng *rng)
{
    return (double)(ks_rng_u64(rng) >> 11) * 0x1p-53;
}

double ks_rng_normal(ks_rng *rng)
{
    double u1 = ks_rng_unit(rng), u2 = ks_rng_unit(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

void ks_zipf_like(float *out, int64_t vocab, uint64_t seed)
{
    ks_rng rng = { seed };
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = (float)(2.0 * ks_rng_normal(&rng));
    static const float strong[5] = { 8.0f, 5.0f, 4.5f, 4.0f, 3.5f };
    for (int64_t i = 0; i < 5 && i < vocab; ++i)
        out[i] = strong[i];
    for (int64_t i = 5; i < 20 && i < vocab; ++i)
        out[i] = (float)(1.0 + 2.0 * ks_rng_unit(&rng));
}

void ks_zipf(float *out, int64_t vocab, uint64_t seed)
{
    ks_rng rng = { seed };
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = (float)(-1.1 * log((double)(i + 1)) + 0.05 * ks_rng_normal(&rng));
    for (int64_t i = vocab - 1; i > 0; --i) { /* Fisher-Yates */
        int64_t j = (int64_t)(ks_rng_u64(&rng) % (uint64_t)(i + 1));
        float t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

void ks_peaked(float *out, int64_t vocab, uint64_t seed)
{
    ks_rng rng = { seed };
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = (float)ks_rng_normal(&rng);
    /* p_top >= 0.9 needs exp(top) >= 9 * sum of the rest; the rest sums to
     * about V * e^0.5 (lognormal mean). */
    int64_t top = (int64_t)(ks_rng_u64(&rng) % (uint64_t)vocab);
    out[top] = (float)(log(9.0 * (double)vocab * 1.6487) + 1.0);
}

void ks_flat(float *out, int64_t vocab, uint64_t seed)
{
    ks_rng rng = { seed };
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = (float)(0.1 * ks_rng_normal(&rng));
}
