/* Entropy from the exact masses (docs/semantics.md section 15) and the
 * entropy-adaptive temperature built on it (section 16), written once for
 * both backends. Sums are exact integers, so a row's entropy is the same
 * bytes whatever order a backend adds its tokens in; the few float steps
 * are the pinned operations of numerics.h in a fixed order. */
#ifndef KILN_SHARED_ENTROPY_H
#define KILN_SHARED_ENTROPY_H

#include "numerics.h"

/* An unsigned 128-bit integer as two halves: __int128 is not available to
 * every compiler kiln's shared code meets. */
typedef struct kiln_u128 {
    uint64_t lo, hi;
} kiln_u128;

KILN_HD kiln_u128 kiln_u128_zero(void)
{
    kiln_u128 r = { 0, 0 };
    return r;
}

KILN_HD kiln_u128 kiln_u128_add(kiln_u128 a, kiln_u128 b)
{
    kiln_u128 r;
    r.lo = a.lo + b.lo;
    r.hi = a.hi + b.hi + (r.lo < a.lo);
    return r;
}

/* a * b for a 64-bit a and a 32-bit b. */
KILN_HD kiln_u128 kiln_u128_mul_u32(uint64_t a, uint32_t b)
{
    kiln_u128 r;
    r.lo = a * b;
    r.hi = kiln_mulhi64(a, b);
    return r;
}

/* The quantised base-2 exponent of kiln_mass(x, m, c), negated: d >= 0 with
 * kiln_mass(x, m, c) ~ 2^40 * 2^(-d / 2^23). The same f32 steps as
 * kiln_mass, so the two always describe the same token. */
KILN_HD uint32_t kiln_mass_exponent(float x, float m, float c)
{
    float t = kiln_fmul(kiln_fsub(x, m), c);
    t = kiln_fge(t, -64.0f) ? t : -64.0f;
    const int32_t q = kiln_floor_to_i32(kiln_fmul(t, 8388608.0f));
    return (uint32_t)(-q);
}

/* One token's term of E = sum w_i d_i. */
KILN_HD kiln_u128 kiln_entropy_term(uint64_t w, uint32_t d)
{
    return kiln_u128_mul_u32(w, d);
}

/* v rounded to binary64: shifted right (truncating) until it fits 64 bits,
 * converted once to nearest, scaled back by the exact power of two. */
KILN_HD double kiln_u128_to_f64(kiln_u128 v)
{
    if (v.hi == 0)
        return kiln_u64_to_f64(v.lo);
    const int s = 64 - kiln_clz64(v.hi); /* 1..64 */
    const uint64_t top = s == 64 ? v.hi : (v.hi << (64 - s)) | (v.lo >> s);
    double scale = 1.0;
    for (int i = 0; i < s; ++i)
        scale = kiln_dmul(scale, 2.0);
    return kiln_dmul(kiln_u64_to_f64(top), scale);
}

/* Entropy in nats of the distribution with mass sum s >= 1 and exponent sum
 * e = sum w_i d_i: ln(s / 2^40) + ln 2 * (e / s) / 2^23. */
KILN_HD double kiln_entropy_nats(uint64_t s, kiln_u128 e)
{
    const double ratio = kiln_ddiv(kiln_u128_to_f64(e), kiln_u64_to_f64(s));
    return kiln_dadd(kiln_log_mass(s), kiln_dmul(kiln_dmul(KILN_LN2_D, ratio), 0x1p-23));
}

/* ln(x) for a finite x > 0, binary64: x = a * 2^k with a in [sqrt(1/2),
 * sqrt(2)), then kiln_log_mass's series. Exactly 0 for x = 1. */
KILN_HD double kiln_log_f64(double x)
{
    uint64_t bits;
#if defined(__CUDA_ARCH__)
    bits = (uint64_t)__double_as_longlong(x);
#else
    memcpy(&bits, &x, sizeof bits);
#endif
    int k = (int)((bits >> 52) & 0x7FF);
    uint64_t man = bits & 0xFFFFFFFFFFFFFull;
    if (k == 0) { /* subnormal: normalise */
        const int shift = kiln_clz64(man) - 11;
        man = (man << shift) & 0xFFFFFFFFFFFFFull;
        k = 1 - shift;
    }
    k -= 1023;
    const uint64_t abits = man | ((uint64_t)1023 << 52);
    double a;
#if defined(__CUDA_ARCH__)
    a = __longlong_as_double((long long)abits);
#else
    memcpy(&a, &abits, sizeof a);
#endif
    if (a > 1.4142135623730951) {
        a = kiln_dmul(a, 0.5);
        k += 1;
    }
    const double z = kiln_ddiv(kiln_dsub(a, 1.0), kiln_dadd(a, 1.0));
    const double z2 = kiln_dmul(z, z);
    double sum = kiln_ddiv(1.0, 19.0);
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 17.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 15.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 13.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 11.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 9.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 7.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 5.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), kiln_ddiv(1.0, 3.0));
    sum = kiln_dadd(kiln_dmul(sum, z2), 1.0);
    return kiln_dadd(kiln_dmul((double)k, KILN_LN2_D), kiln_dmul(kiln_dmul(2.0, z), sum));
}

/* exp(y) for y <= 0, binary64 (0 below the subnormal range; NaN gives 0):
 * y / ln 2 = n + f with f in [0, 1), 2^f from its Taylor series in f ln 2
 * (17 terms: error below 1e-16), times 2^n built from the bits. */
KILN_HD double kiln_exp_f64(double y)
{
    if (!(y > -745.2))
        return 0.0;
    const double y2 = kiln_dmul(y, 1.4426950408889634); /* log2(e) */
    double n = (double)(int64_t)y2;                      /* toward zero */
    if (n > y2)
        n = kiln_dsub(n, 1.0);
    const double g = kiln_dmul(kiln_dsub(y2, n), KILN_LN2_D); /* in [0, ln 2) */
    double p = 1.0;
    for (int i = 17; i >= 1; --i)
        p = kiln_dadd(1.0, kiln_ddiv(kiln_dmul(p, g), (double)i));
    int e = (int)n; /* >= -1076 */
    while (e < -1000) {
        p = kiln_dmul(p, 0x1p-1000);
        e += 1000;
    }
    const uint64_t sbits = (uint64_t)(e + 1023) << 52;
    double scale;
#if defined(__CUDA_ARCH__)
    scale = __longlong_as_double((long long)sbits);
#else
    memcpy(&scale, &sbits, sizeof scale);
#endif
    return kiln_dmul(p, scale);
}

/* The dynatemp temperature T' of section 16 from the row's temperature t,
 * range d > 0, exponent e > 0, raw entropy h (f64) and the number n1 of
 * tokens with mass at T = 1. */
KILN_HD float kiln_dynatemp(float t, float d, float e, double h, int64_t n1)
{
    const double h_max = n1 > 1 ? kiln_log_mass((uint64_t)n1 << KILN_FRACTION_BITS) : 0.0;
    double ratio = h_max > 0.0 ? kiln_ddiv(h, h_max) : 0.0;
    ratio = ratio < 1.0 ? ratio : 1.0;
    const double power =
        ratio > 0.0 ? kiln_exp_f64(kiln_dmul(kiln_f32_to_f64(e), kiln_log_f64(ratio))) : 0.0;
    const double td = kiln_f32_to_f64(t), dd = kiln_f32_to_f64(d);
    double t_min = kiln_dsub(td, dd);
    t_min = t_min > 0.0 ? t_min : 0.0;
    const double t_max = kiln_dadd(td, dd);
    const double tp = kiln_dadd(t_min, kiln_dmul(kiln_dsub(t_max, t_min), power));
    return tp < (double)KILN_FLT_MAX ? kiln_f64_to_f32(tp) : KILN_FLT_MAX;
}

#endif
