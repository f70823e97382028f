/* Every piece of arithmetic whose bits the CPU and CUDA backends must agree
 * on, written once. Rules that make gcc and nvcc agree:
 *  - only IEEE-754 operations that are correctly rounded (+, -, *, /,
 *    conversions) on binary32/binary64, in a fixed order, each written as
 *    one of the kiln_f* / kiln_d* helpers below;
 *  - no fused multiply-add, no flush-to-zero, no approximate division,
 *    whatever flags the including project compiles with (see the helpers);
 *  - no libm but floor, which is exact: exp and log are kiln's own below;
 *  - integer arithmetic wherever a result must be exact (masses, sums,
 *    thresholds). */
#ifndef KILN_SHARED_NUMERICS_H
#define KILN_SHARED_NUMERICS_H

#include "hd.h"

#include <string.h>

#define KILN_FRACTION_BITS 40
#define KILN_MASS_ONE ((uint64_t)1 << KILN_FRACTION_BITS)
#define KILN_FLT_MAX 3.40282346638528859812e+38f
#define KILN_LOG2E_F 1.44269502162933349609375f /* log2(e) rounded to binary32 */
#define KILN_LN2_D 0.6931471805599452862267639829951804131269454956054688

/* ------------------------------------------------------------ bit access */

KILN_HD uint32_t kiln_f32_bits(float x)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

KILN_HD float kiln_f32_from_bits(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

/* ------------------------------------------------- pinned float operations */

/* On the device, nvcc's --ftz=true and -use_fast_math rewrite plain
 * operators and even the __f*_rn intrinsics into flushing instructions
 * (mul.rn.ftz.f32, setp.lt.ftz.f32, cvt.ftz.f64.f32), --prec-div=false makes
 * division approximate, --fmad=true contracts a*b+c, and nvcc 13 defines no
 * macro this header could refuse them by. So each binary32 operation is the
 * exact PTX instruction, written out (no .ftz, .rn), and each binary64 one
 * the __d*_rn intrinsic, which is never contracted (PTX has no f64 flush
 * mode). tests/ptx_pinned checks the PTX of every kernel under
 * -use_fast_math. On the host these are the plain operators: the build has
 * -ffp-contract=off and csrc/cpu/fp_mode.h pins MXCSR during every call. */
#if defined(__CUDA_ARCH__)
#define KILN_PTX_F32_BINARY(name, op)                                            \
    KILN_HD float name(float a, float b)                                         \
    {                                                                            \
        float r;                                                                 \
        asm(op " %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));                       \
        return r;                                                                \
    }
#define KILN_PTX_F32_COMPARE(name, cmp)                                          \
    KILN_HD int name(float a, float b)                                           \
    {                                                                            \
        int r;                                                                   \
        asm("{ .reg .pred p; setp." cmp ".f32 p, %1, %2; selp.s32 %0, 1, 0, p; }" \
            : "=r"(r)                                                            \
            : "f"(a), "f"(b));                                                   \
        return r;                                                                \
    }
KILN_PTX_F32_BINARY(kiln_fadd, "add.rn.f32")
KILN_PTX_F32_BINARY(kiln_fsub, "sub.rn.f32")
KILN_PTX_F32_BINARY(kiln_fmul, "mul.rn.f32")
KILN_PTX_F32_BINARY(kiln_fdiv, "div.rn.f32")
KILN_PTX_F32_COMPARE(kiln_flt, "lt")
KILN_PTX_F32_COMPARE(kiln_fle, "le")
KILN_PTX_F32_COMPARE(kiln_fgt, "gt")
KILN_PTX_F32_COMPARE(kiln_fge, "ge")
KILN_PTX_F32_COMPARE(kiln_feq, "eq")
#undef KILN_PTX_F32_BINARY
#undef KILN_PTX_F32_COMPARE

KILN_HD double kiln_f32_to_f64(float a)
{
    double r;
    asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(a));
    return r;
}

KILN_HD float kiln_f64_to_f32(double a)
{
    float r;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(a));
    return r;
}

/* floor(v) as an int32, for |v| < 2^31 */
KILN_HD int32_t kiln_floor_to_i32(float v)
{
    int32_t r;
    asm("{ .reg .f32 f; cvt.rmi.f32.f32 f, %1; cvt.rzi.s32.f32 %0, f; }" : "=r"(r) : "f"(v));
    return r;
}

KILN_HD double kiln_dadd(double a, double b) { return __dadd_rn(a, b); }
KILN_HD double kiln_dsub(double a, double b) { return __dsub_rn(a, b); }
KILN_HD double kiln_dmul(double a, double b) { return __dmul_rn(a, b); }
KILN_HD double kiln_ddiv(double a, double b) { return __ddiv_rn(a, b); }
#else
KILN_HD float kiln_fadd(float a, float b) { return a + b; }
KILN_HD float kiln_fsub(float a, float b) { return a - b; }
KILN_HD float kiln_fmul(float a, float b) { return a * b; }
KILN_HD float kiln_fdiv(float a, float b) { return a / b; }
KILN_HD int kiln_flt(float a, float b) { return a < b; }
KILN_HD int kiln_fle(float a, float b) { return a <= b; }
KILN_HD int kiln_fgt(float a, float b) { return a > b; }
KILN_HD int kiln_fge(float a, float b) { return a >= b; }
KILN_HD int kiln_feq(float a, float b) { return a == b; }
KILN_HD double kiln_f32_to_f64(float a) { return (double)a; }
KILN_HD float kiln_f64_to_f32(double a) { return (float)a; }
/* The builtin lets gcc vectorise floor (roundps) where a compare-and-adjust
 * would not be; floor is exact, so every implementation agrees. */
KILN_HD int32_t kiln_floor_to_i32(float v) { return (int32_t)__builtin_floorf(v); }
KILN_HD double kiln_dadd(double a, double b) { return a + b; }
KILN_HD double kiln_dsub(double a, double b) { return a - b; }
KILN_HD double kiln_dmul(double a, double b) { return a * b; }
KILN_HD double kiln_ddiv(double a, double b) { return a / b; }
#endif

/* binary16 -> binary32 is exact; done on the bits so no compiler half type
 * is needed. */
KILN_HD float kiln_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1Fu) /* inf / NaN, payload kept */
        return kiln_f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0)
        return kiln_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0)
        return kiln_f32_from_bits(sign);
    /* subnormal half: normalise; value = man * 2^-24 */
    int e = -1;
    do {
        man <<= 1;
        ++e;
    } while ((man & 0x400u) == 0);
    man &= 0x3FFu;
    return kiln_f32_from_bits(sign | ((uint32_t)(112 - e) << 23) | (man << 13));
}

KILN_HD float kiln_bf16_to_f32(uint16_t h)
{
    return kiln_f32_from_bits((uint32_t)h << 16);
}

/* binary32 -> bfloat16, round to nearest even; NaN stays NaN (quietened),
 * overflow rounds to inf as IEEE says. */
KILN_HD uint16_t kiln_f32_to_bf16(float x)
{
    uint32_t u = kiln_f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* NaN or +inf: the values that make a row invalid. -inf is a mask. */
KILN_HD int kiln_is_bad_logit(float x)
{
    return (kiln_f32_bits(x) & 0x7FFFFFFFu) > 0x7F800000u || kiln_f32_bits(x) == 0x7F800000u;
}

/* ------------------------------------------------------- canonical order */

/* Unsigned key that increases with x, -0 mapped to +0 so the two tie.
 * Canonical order is descending key, ties to the lower token id. */
KILN_HD uint32_t kiln_order_key(float x)
{
    uint32_t u = kiln_f32_bits(x);
    u = (u << 1) ? u : 0u;                          /* -0 -> +0 */
    const uint32_t flip = (0u - (u >> 31)) | 0x80000000u; /* all bits if negative */
    return u ^ flip;
}

/* -------------------------------------------------------------- penalties */

/* The penalised logit of one token. `seen`: the token occurs anywhere in the
 * row's history; `generated`: how often it occurs after the prompt.
 * Repetition first (HF/CTRL), then frequency, then presence (vLLM's order).
 * A disabled penalty (1, 0, 0) is an exact identity: x/1, x*1 and x-0 are x. */
KILN_HD float kiln_penalize(float x, int seen, uint32_t generated, float repetition,
                            float presence, float frequency)
{
    if (seen)
        x = kiln_fgt(x, 0.0f) ? kiln_fdiv(x, repetition) : kiln_fmul(x, repetition);
    if (generated) {
        x = kiln_fsub(x, kiln_fmul(frequency, (float)generated));
        x = kiln_fsub(x, presence);
    }
    return x;
}

/* -------------------------------------------------------- 128-bit helpers */

KILN_HD uint64_t kiln_mulhi64(uint64_t a, uint64_t b)
{
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
#else
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* p * s for finite 0 <= p <= 1 as floor(p * s) and whether a fraction was
 * dropped. p = man * 2^e with a 24-bit integer man, so the product is an
 * 88-bit integer shifted right. */
KILN_HD uint64_t kiln_scale_parts(float p, uint64_t s, int *inexact)
{
    uint32_t bits = kiln_f32_bits(p) & 0x7FFFFFFFu;
    uint32_t bexp = bits >> 23;
    uint64_t man = bexp ? ((bits & 0x7FFFFFu) | 0x800000u) : (bits & 0x7FFFFFu);
    int shift = bexp ? 150 - (int)bexp : 149; /* >= 23 because p <= 1 */
    uint64_t lo = man * s;
    uint64_t hi = kiln_mulhi64(man, s);
    uint64_t quot, rem;
    if (shift < 64) {
        quot = (lo >> shift) | (hi << (64 - shift));
        rem = lo & (((uint64_t)1 << shift) - 1);
    } else if (shift < 128) {
        int hs = shift - 64;
        quot = hs ? hi >> hs : hi;
        rem = lo | (hs ? hi & (((uint64_t)1 << hs) - 1) : 0);
    } else {
        quot = 0;
        rem = lo | hi;
    }
    *inexact = rem != 0;
    return quot;
}

/* ceil(p * s) exactly, for finite 0 <= p <= 1 (top-p's need, min-p's bound). */
KILN_HD uint64_t kiln_ceil_scale(float p, uint64_t s)
{
    int inexact;
    const uint64_t q = kiln_scale_parts(p, s, &inexact);
    return q + (uint64_t)inexact;
}

/* floor(p * s) exactly, for finite 0 <= p <= 1 (quantised draft masses). */
KILN_HD uint64_t kiln_floor_scale(float p, uint64_t s)
{
    int inexact;
    return kiln_scale_parts(p, s, &inexact);
}

/* r in [0, total) from 64 uniform bits: floor(u * total / 2^64). Every value
 * of r is hit by floor(2^64 / total) or that plus one values of u. */
KILN_HD uint64_t kiln_scale_draw(uint64_t u, uint64_t total)
{
    return kiln_mulhi64(u, total);
}

/* ------------------------------------------------------------------ masses */

/* log2(e) / T, the factor that turns x - max into a base-2 exponent, clamped
 * so a subnormal T gives a huge finite factor instead of inf (inf would make
 * 0 * inf = NaN for the tokens tied with the max). T > 0. */
KILN_HD float kiln_exp2_factor(float temperature)
{
    float c = kiln_fdiv(KILN_LOG2E_F, temperature);
    return kiln_fle(c, KILN_FLT_MAX) ? c : KILN_FLT_MAX;
}

/* 2^f for f = j * 2^-23 in [0, 1), result in [1, 2). Horner form with
 * positive coefficients and f >= 0: every rounded step is monotone in f, so
 * the result is non-decreasing in j. Max relative error 8.85e-8 (binary32
 * evaluation, checked over every j by tests/test_numerics.c). */
KILN_HD float kiln_exp2_fraction(float f)
{
    float q = 0x1.c54174p-13f;
    q = kiln_fadd(kiln_fmul(q, f), 0x1.46d64cp-10f);
    q = kiln_fadd(kiln_fmul(q, f), 0x1.3d0b92p-7f);
    q = kiln_fadd(kiln_fmul(q, f), 0x1.c68912p-5f);
    q = kiln_fadd(kiln_fmul(q, f), 0x1.ebfd58p-3f);
    q = kiln_fadd(kiln_fmul(q, f), 0x1.62e42cp-1f);
    float p = kiln_fadd(1.0f, kiln_fmul(f, q));
    /* With these coefficients p stays below 2 for every j (the largest is
     * 0x1.fffffep0, tests/test_numerics.c); the clamp makes that a property
     * of the code rather than of the coefficients, since kiln_mass reads p's
     * mantissa assuming p < 2 and monotonicity needs p(max j) < 2 p(0). */
    return kiln_flt(p, 0x1.fffffep0f) ? p : 0x1.fffffep0f;
}

/* The fixed-point mass floor(2^40 * 2^t) of a token with logit x in a row
 * with max logit m and exp2 factor c, where t = (x - m) * c <= 0.
 * t is quantised to q = floor(t * 2^23) (exact: scaling by 2^23 is exact),
 * split into an
 * integer part n and a 23-bit fraction j, and 2^(j/2^23) comes from
 * kiln_exp2_fraction. Every step is monotone, so x_a >= x_b implies
 * mass_a >= mass_b, and the max token gets exactly 2^40. t below -64 (also
 * -inf, and NaN, which valid rows never hold) gives 0. */
KILN_HD uint64_t kiln_mass(float x, float m, float c)
{
    float t = kiln_fmul(kiln_fsub(x, m), c);
    t = kiln_fge(t, -64.0f) ? t : -64.0f; /* NaN too */
    const float tq = kiln_fmul(t, 8388608.0f);
    const int32_t q = kiln_floor_to_i32(tq); /* exact: |tq| <= 2^29 */
    uint32_t neg = (uint32_t)(-q);
    int32_t n = -(int32_t)((neg + 0x7FFFFFu) >> 23); /* floor(q / 2^23) */
    uint32_t j = (uint32_t)q & 0x7FFFFFu;
    float p = kiln_exp2_fraction(kiln_fmul((float)j, 0x1p-23f));
    uint64_t man = (kiln_f32_bits(p) & 0x7FFFFFu) | 0x800000u; /* p = man * 2^-23 */
    /* w = man * 2^(17 + n), n in [-64, 0]: a left shift of at most 17 and a
     * right shift of at most 47 (man < 2^24, so >= 24 gives 0). Written
     * without branches so compilers can vectorise it. */
    const int shift = (KILN_FRACTION_BITS - 23) + n;
    const int left = shift > 0 ? shift : 0;
    const int right = shift < 0 ? -shift : 0;
    return (man << left) >> right;
}

/* kiln_mass(x, m, c) > 0, without the exponential: the mass is zero exactly
 * when floor(t * 2^23) < -40 * 2^23, i.e. when t < -40 (t * 2^23 is exact). */
KILN_HD int kiln_has_mass(float x, float m, float c)
{
    return kiln_fge(kiln_fmul(kiln_fsub(x, m), c), -40.0f);
}

/* ------------------------------------------------------- log-probabilities */

/* u64 -> binary64 rounded once to nearest: the two 32-bit halves convert
 * exactly and the sum rounds once, the same on every compiler. */
KILN_HD double kiln_u64_to_f64(uint64_t v)
{
    return kiln_dadd(kiln_dmul((double)(uint32_t)(v >> 32), 4294967296.0), (double)(uint32_t)v);
}

KILN_HD int kiln_clz64(uint64_t v)
{
#if defined(__CUDA_ARCH__)
    return __clzll((long long)v);
#else
    return __builtin_clzll(v);
#endif
}

/* ln(s / 2^40) for a sum of masses s >= 1. s = 2^e * a with a in [1, 2)
 * taken from its top 53 bits (truncated); ln a = 2 atanh((a-1)/(a+1)) after
 * folding a into [sqrt(1/2), sqrt(2)), |z| <= 0.172, so nine odd terms leave
 * an error below 1e-16. */
KILN_HD double kiln_log_mass(uint64_t s)
{
    int e = 63 - kiln_clz64(s);
    uint64_t top = e >= 52 ? s >> (e - 52) : s << (52 - e);
    double a = kiln_dmul((double)(int64_t)top, 0x1p-52);
    if (a > 1.4142135623730951) {
        a = kiln_dmul(a, 0.5);
        e += 1;
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
    return kiln_dadd(kiln_dmul((double)(e - KILN_FRACTION_BITS), KILN_LN2_D),
                     kiln_dmul(kiln_dmul(2.0, z), sum));
}

/* log p of a token under a distribution whose masses sum to s (as
 * log_s = kiln_log_mass(s)): its exact-float exponent (x - m) / T minus
 * log_s. Computed from x rather than from the rounded mass so it keeps
 * binary32 accuracy even for tokens whose mass has few significant bits. */
KILN_HD float kiln_logprob(float x, float m, float temperature, double log_s)
{
    const float d = kiln_fdiv(kiln_fsub(x, m), temperature);
    return kiln_f64_to_f32(kiln_dsub(kiln_f32_to_f64(d), log_s));
}

/* A token's probability w / s as binary32; inv_s = 1 / (double)s. */
KILN_HD float kiln_prob(uint64_t w, double inv_s)
{
    return kiln_f64_to_f32(kiln_dmul(kiln_u64_to_f64(w), inv_s));
}

#endif
