/* The mass pass: kiln_mass of every token of a row, summed per chunk.
 *
 * The exponential is what every temperature-only, top-p and min-p row pays
 * per token, so this is the one pass written with intrinsics. Per 16 tokens
 * (AVX-512) it performs exactly the binary32 operations of kiln_mass, in its
 * order, and does the rest in integers:
 *
 *   t * 2^23         one multiply by c * 2^23 when that cannot round
 *                    differently (kiln_cpu_mass_ctx_init), else two;
 *   q = floor(.)     one conversion with round-down (AVX2: floor, convert);
 *   the clamp at -64 an integer max on q (a NaN or an overflow converts to
 *                    INT_MIN, which the max turns into -64 * 2^23 as the
 *                    float clamp would);
 *   f = j * 2^-23    the bits of 1 + f minus 1 (exact, as the conversion is);
 *   2^f              kiln_exp2_fraction's Horner steps without its final
 *                    clamp, which is an identity for every j (its result is
 *                    below 2 for every j: tests/test_cpu_kernels.c);
 *   the mass         AVX-512: floor(F) for the float F = 2^f * 2^(40 + n) (the
 *                    token's fbits), converted to 64-bit integers, eight per
 *                    instruction, and summed in 64-bit lanes; AVX2, which has
 *                    no such conversion: man * 2^(17 + n) as two 32-bit
 *                    parts, the low 20 bits and the rest, each summed in
 *                    32-bit lanes (a chunk's sums fit) and joined per chunk.
 *
 * Sums of masses are exact integers, so the lane order does not matter. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kept.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define KILN_T256 __attribute__((target("avx2")))
#define KILN_INLINE static inline __attribute__((always_inline))
#endif

/* ------------------------------------------------------------ dispatch */

static int isa_cached = -1;

kiln_cpu_isa kiln_cpu_isa_level(void)
{
    int level = __atomic_load_n(&isa_cached, __ATOMIC_RELAXED);
    if (level >= 0)
        return (kiln_cpu_isa)level;
    level = KILN_ISA_SCALAR;
#ifdef KILN_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        level = KILN_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        level = KILN_ISA_AVX512;
#endif
    const char *cap = getenv("KILN_CPU_ISA");
    if (cap) {
        const int want = strcmp(cap, "scalar") == 0 ? KILN_ISA_SCALAR
                         : strcmp(cap, "avx2") == 0 ? KILN_ISA_AVX2
                                                    : KILN_ISA_AVX512;
        level = want < level ? want : level;
    }
    __atomic_store_n(&isa_cached, level, __ATOMIC_RELAXED);
    return (kiln_cpu_isa)level;
}

void kiln_cpu_isa_force(int level)
{
    __atomic_store_n(&isa_cached, -1, __ATOMIC_RELAXED);
    const int best = kiln_cpu_isa_level();
    __atomic_store_n(&isa_cached, level < best ? level : best, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------- context */

kiln_cpu_mass_ctx kiln_cpu_mass_ctx_init(float m, float c)
{
    kiln_cpu_mass_ctx mc;
    mc.m = m;
    mc.c = c;
    /* (x - m) * (c * 2^23) rounds like ((x - m) * c) * 2^23 unless (x - m) * c
     * falls below the normal range (then the first rounding is coarser, and
     * can give -0 where the fused product is a tiny negative: q 0 against
     * -1). A nonzero x - m with x <= m is at least half an ulp of m, so
     * ulp(m) * c >= 2^-100 keeps every nonzero product far above 2^-126;
     * c < 2^100 keeps c * 2^23 exact and finite. */
    const uint32_t e = (kiln_f32_bits(m) >> 23) & 0xFFu;
    const int ulp_exp = (e ? (int)e : 1) - 150;
    double ulp = 1.0;
    for (int i = 0; i < -ulp_exp; ++i) /* 2^ulp_exp, exactly, without libm */
        ulp *= 0.5;
    for (int i = 0; i < ulp_exp; ++i)
        ulp *= 2.0;
    mc.fused = c < 0x1p100f && ulp * (double)c >= 0x1p-100;
    mc.c23 = mc.fused ? c * 8388608.0f : c;
    mc.qmin = -(64 << 23); /* every q: q is clamped there */
    mc.masked = 0;
    return mc;
}

int32_t kiln_cpu_mass_q(float x, float m, float c)
{
    float t = (x - m) * c;
    t = t >= -64.0f ? t : -64.0f;
    return kiln_floor_to_i32(t * 8388608.0f);
}

uint64_t kiln_cpu_mass_of_q(int32_t q)
{
    /* kiln_mass from its q on, step for step */
    const uint32_t neg = (uint32_t)(-q);
    const int32_t n = -(int32_t)((neg + 0x7FFFFFu) >> 23);
    const uint32_t j = (uint32_t)q & 0x7FFFFFu;
    const float p = kiln_exp2_fraction((float)j * 0x1p-23f);
    const uint64_t man = (kiln_f32_bits(p) & 0x7FFFFFu) | 0x800000u;
    const int shift = (KILN_FRACTION_BITS - 23) + n;
    const int left = shift > 0 ? shift : 0;
    const int right = shift < 0 ? -shift : 0;
    return (man << left) >> right;
}

uint32_t kiln_cpu_mass_fbits(float x, float m, float c)
{
    /* kiln_mass up to its 2^f, then F = 2^f * 2^(40 + n) as bits */
    float t = (x - m) * c;
    t = t >= -64.0f ? t : -64.0f;
    const int32_t q = kiln_floor_to_i32(t * 8388608.0f);
    const uint32_t neg = (uint32_t)(-q);
    const int32_t n = -(int32_t)((neg + 0x7FFFFFu) >> 23);
    const uint32_t j = (uint32_t)q & 0x7FFFFFu;
    const float p = kiln_exp2_fraction((float)j * 0x1p-23f);
    return kiln_f32_bits(p) + ((uint32_t)(n + 40) << 23);
}

/* -------------------------------------------------------------- scalar */

static uint64_t chunks_scalar(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                              uint64_t *chunk_sums, uint32_t *fbits)
{
    uint64_t total = 0;
    for (int64_t base = 0; base < row->n; base += KILN_CPU_CHUNK) {
        const int64_t end = base + KILN_CPU_CHUNK < row->n ? base + KILN_CPU_CHUNK : row->n;
        uint64_t sum = 0;
        for (int64_t i = base; i < end; ++i) {
            const float x = kiln_cpu_row_at(row, i);
            if (!mc->masked || kiln_cpu_mass_q(x, mc->m, mc->c) >= mc->qmin)
                sum += kiln_mass(x, mc->m, mc->c);
            if (fbits)
                fbits[i] = kiln_cpu_mass_fbits(x, mc->m, mc->c);
        }
        if (chunk_sums)
            chunk_sums[base / KILN_CPU_CHUNK] = sum;
        total += sum;
    }
    return total;
}

/* -------------------------------------------------------------- AVX-512 */

#ifdef KILN_X86_KERNELS

/* 2^40 * kiln_exp2_fraction(f), bit for bit: every coefficient and the 1
 * scaled by 2^40, which is exact, and so is every rounded step (a product
 * q * f is 0 or above 2^-37, far from the subnormals, and nothing nears
 * overflow), so each intermediate is the unscaled one times 2^40. It saves
 * adding 40 to the exponent of every token's F afterwards. */
KILN_T512 KILN_INLINE __m512 exp2_fraction_2p40_512(__m512 f)
{
    __m512 q = _mm512_set1_ps(0x1.c54174p+27f);
    q = _mm512_add_ps(_mm512_mul_ps(q, f), _mm512_set1_ps(0x1.46d64cp+30f));
    q = _mm512_add_ps(_mm512_mul_ps(q, f), _mm512_set1_ps(0x1.3d0b92p+33f));
    q = _mm512_add_ps(_mm512_mul_ps(q, f), _mm512_set1_ps(0x1.c68912p+35f));
    q = _mm512_add_ps(_mm512_mul_ps(q, f), _mm512_set1_ps(0x1.ebfd58p+37f));
    q = _mm512_add_ps(_mm512_mul_ps(q, f), _mm512_set1_ps(0x1.62e42cp+39f));
    return _mm512_add_ps(_mm512_set1_ps(0x1p40f), _mm512_mul_ps(f, q));
}

/* 16 masses as two vectors of 8 64-bit integers, and their fbits: the mass
 * is floor(F) for the float F with bits fb (2^f * 2^(40 + n), a normal
 * float below 2^41 for every clamped q), and AVX-512DQ converts 8 floats to
 * 64-bit integers by truncation, which is floor for F >= 0: three
 * instructions for what the shifts into low and high parts take eight. */
KILN_T512 KILN_INLINE void mass_w_512(__m512 x, __m512 vm, __m512 vc, const int fused,
                                      const int masked, __m512i qmin, __m512i *w0, __m512i *w1,
                                      __m512i *fb)
{
    const __m512 d = _mm512_sub_ps(x, vm);
    const __m512 tq = fused ? _mm512_mul_ps(d, vc)
                            : _mm512_mul_ps(_mm512_mul_ps(d, vc), _mm512_set1_ps(8388608.0f));
    __m512i q = _mm512_cvt_roundps_epi32(tq, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    q = _mm512_max_epi32(q, _mm512_set1_epi32(-(64 << 23)));
    /* 1 + f as (q & 0x7FFFFF) | 0x3F800000, one ternary-logic instruction */
    const __m512 f = _mm512_sub_ps(
        _mm512_castsi512_ps(_mm512_ternarylogic_epi32(q, _mm512_set1_epi32(0x7FFFFF),
                                                      _mm512_set1_epi32(0x3F800000), 0xEA)),
        _mm512_set1_ps(1.0f));
    const __m512 p40 = exp2_fraction_2p40_512(f);
    *fb = _mm512_add_epi32(_mm512_castps_si512(p40),
                           _mm512_and_si512(q, _mm512_set1_epi32((int)0xFF800000u)));
    const __m512 F = _mm512_castsi512_ps(*fb);
    *w0 = _mm512_cvttps_epu64(_mm512_castps512_ps256(F));
    *w1 = _mm512_cvttps_epu64(_mm512_extractf32x8_ps(F, 1));
    if (masked) {
        const __mmask16 keep = _mm512_cmpge_epi32_mask(q, qmin);
        *w0 = _mm512_maskz_mov_epi64((__mmask8)keep, *w0);
        *w1 = _mm512_maskz_mov_epi64((__mmask8)(keep >> 8), *w1);
    }
}

/* 16 tokens from i on (fewer at the end: the rest read as -inf). */
KILN_T512 KILN_INLINE __m512 load_512(const void *data, const int bf16, int64_t i, int64_t n)
{
    const int64_t left = n - i;
    if (bf16) {
        const uint16_t *h = (const uint16_t *)data + i;
        __m256i v;
        if (left >= 16)
            v = _mm256_loadu_si256((const __m256i *)h);
        else
            v = _mm256_mask_loadu_epi16(_mm256_set1_epi16((short)0xFF80), (__mmask16)((1u << left) - 1), h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    }
    const float *x = (const float *)data + i;
    if (left >= 16)
        return _mm512_loadu_ps(x);
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), (__mmask16)((1u << left) - 1), x);
}

KILN_T512 KILN_INLINE uint64_t chunks_512_body(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                               uint64_t *chunk_sums, uint32_t *fbits, uint32_t *every16,
                                               const int bf16, const int fused, const int masked,
                                               const int with_fb, const int with_every16)
{
    const __m512 vm = _mm512_set1_ps(mc->m), vc = _mm512_set1_ps(mc->c23);
    const __m512i qmin = _mm512_set1_epi32(mc->qmin);
    const int64_t n = row->n;
    uint64_t total = 0;
    for (int64_t base = 0; base < n; base += KILN_CPU_CHUNK) {
        const int64_t end = base + KILN_CPU_CHUNK < n ? base + KILN_CPU_CHUNK : n;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, b0 = a0, b1 = a0;
        int64_t i = base;
        for (; i + 32 <= end; i += 32) {
            __m512i u0, u1, v0, v1, fb0, fb1;
            __m512 x0, x1;
            if (bf16) {
                /* sums do not care which lane holds which token: each bf16
                 * goes on top of a zero half in place (tokens 0-3 and 8-11
                 * of every 16 in one register, 4-7 and 12-15 in the other),
                 * one unpack instead of a widening shuffle and a shift; the
                 * fbits are put back in token order before their store */
                const __m512i h = _mm512_loadu_si512((const void *)((const uint16_t *)row->data + i));
                x0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), h));
                x1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), h));
            } else {
                x0 = load_512(row->data, bf16, i, n);
                x1 = load_512(row->data, bf16, i + 16, n);
            }
            mass_w_512(x0, vm, vc, fused, masked, qmin, &u0, &u1, &fb0);
            mass_w_512(x1, vm, vc, fused, masked, qmin, &v0, &v1, &fb1);
            a0 = _mm512_add_epi64(a0, u0);
            a1 = _mm512_add_epi64(a1, u1);
            b0 = _mm512_add_epi64(b0, v0);
            b1 = _mm512_add_epi64(b1, v1);
            if (with_fb && bf16) {
                /* 128-bit lane k of fb0 holds tokens 8k..8k+3, of fb1 8k+4..8k+7 */
                const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
                const __m512i second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
                const __m512i lo = _mm512_permutex2var_epi64(fb0, first, fb1);
                fb1 = _mm512_permutex2var_epi64(fb0, second, fb1);
                fb0 = lo;
            }
            if (with_fb) {
                _mm512_storeu_si512(fbits + i, fb0);
                _mm512_storeu_si512(fbits + i + 16, fb1);
            }
            if (with_every16) {
                every16[i >> 4] = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(fb0));
                every16[(i >> 4) + 1] = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(fb1));
            }
        }
        for (; i < end; i += 16) {
            __m512i u0, u1, fb0;
            mass_w_512(load_512(row->data, bf16, i, n), vm, vc, fused, masked, qmin, &u0, &u1, &fb0);
            a0 = _mm512_add_epi64(a0, u0);
            a1 = _mm512_add_epi64(a1, u1);
            if (with_fb) {
                const int64_t left = end - i;
                if (left >= 16)
                    _mm512_storeu_si512(fbits + i, fb0);
                else
                    _mm512_mask_storeu_epi32(fbits + i, (__mmask16)((1u << left) - 1), fb0);
            }
            if (with_every16)
                every16[i >> 4] = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(fb0));
        }
        const uint64_t sum = (uint64_t)_mm512_reduce_add_epi64(
            _mm512_add_epi64(_mm512_add_epi64(a0, b0), _mm512_add_epi64(a1, b1)));
        if (chunk_sums)
            chunk_sums[base / KILN_CPU_CHUNK] = sum;
        total += sum;
    }
    return total;
}

KILN_T512 static uint64_t chunks_512(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                     uint64_t *chunk_sums, uint32_t *fbits, uint32_t *every16)
{
    /* one specialised loop per (dtype, fused, masked, fbits wanted, every
     * 16th fbits wanted) */
#define KILN_CHUNKS(b, f, k)                                                                      \
    return every16 ? chunks_512_body(row, mc, chunk_sums, fbits, every16, b, f, k, 1, 1)          \
           : fbits ? chunks_512_body(row, mc, chunk_sums, fbits, NULL, b, f, k, 1, 0)             \
                   : chunks_512_body(row, mc, chunk_sums, NULL, NULL, b, f, k, 0, 0)
    if (row->bf16) {
        if (mc->fused) {
            if (mc->masked) KILN_CHUNKS(1, 1, 1); else KILN_CHUNKS(1, 1, 0);
        } else {
            if (mc->masked) KILN_CHUNKS(1, 0, 1); else KILN_CHUNKS(1, 0, 0);
        }
    }
    if (mc->fused) {
        if (mc->masked) KILN_CHUNKS(0, 1, 1); else KILN_CHUNKS(0, 1, 0);
    }
    if (mc->masked) KILN_CHUNKS(0, 0, 1); else KILN_CHUNKS(0, 0, 0);
#undef KILN_CHUNKS
}

KILN_T512 static void span_512(const kiln_cpu_row *row, int64_t start, int64_t len,
                               const kiln_cpu_mass_ctx *mc, uint64_t *w)
{
    const __m512 vm = _mm512_set1_ps(mc->m), vc = _mm512_set1_ps(mc->c23);
    const __m512i qmin = _mm512_set1_epi32(mc->qmin);
    const int64_t end = start + len;
    for (int64_t i = start; i < end; i += 16) {
        __m512i w0, w1, fb;
        const __m512 x = load_512(row->data, row->bf16, i, end);
        if (mc->fused)
            mass_w_512(x, vm, vc, 1, 1, qmin, &w0, &w1, &fb);
        else
            mass_w_512(x, vm, vc, 0, 1, qmin, &w0, &w1, &fb);
        const int64_t left = end - i;
        uint64_t *out = w + (i - start);
        if (left >= 16) {
            _mm512_storeu_si512(out, w0);
            _mm512_storeu_si512(out + 8, w1);
        } else {
            _mm512_mask_storeu_epi64(out, (__mmask8)(left >= 8 ? 0xFF : (1u << left) - 1), w0);
            if (left > 8)
                _mm512_mask_storeu_epi64(out + 8, (__mmask8)((1u << (left - 8)) - 1), w1);
        }
    }
}

/* ----------------------------------------------------------------- AVX2 */

KILN_T256 KILN_INLINE __m256 exp2_fraction_256(__m256 f)
{
    __m256 q = _mm256_set1_ps(0x1.c54174p-13f);
    q = _mm256_add_ps(_mm256_mul_ps(q, f), _mm256_set1_ps(0x1.46d64cp-10f));
    q = _mm256_add_ps(_mm256_mul_ps(q, f), _mm256_set1_ps(0x1.3d0b92p-7f));
    q = _mm256_add_ps(_mm256_mul_ps(q, f), _mm256_set1_ps(0x1.c68912p-5f));
    q = _mm256_add_ps(_mm256_mul_ps(q, f), _mm256_set1_ps(0x1.ebfd58p-3f));
    q = _mm256_add_ps(_mm256_mul_ps(q, f), _mm256_set1_ps(0x1.62e42cp-1f));
    return _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(f, q));
}

KILN_T256 KILN_INLINE void mass_256(__m256 x, __m256 vm, __m256 vc, const int fused,
                                    const int masked, __m256i qmin, __m256i *lo, __m256i *hi,
                                    __m256i *fb, __m256i *q_out)
{
    const __m256 d = _mm256_sub_ps(x, vm);
    const __m256 tq = fused ? _mm256_mul_ps(d, vc)
                            : _mm256_mul_ps(_mm256_mul_ps(d, vc), _mm256_set1_ps(8388608.0f));
    /* floor is exact, then the conversion is too (|tq| < 2^31 or INT_MIN) */
    __m256i q = _mm256_cvttps_epi32(_mm256_floor_ps(tq));
    q = _mm256_max_epi32(q, _mm256_set1_epi32(-(64 << 23)));
    const __m256i j = _mm256_and_si256(q, _mm256_set1_epi32(0x7FFFFF));
    const __m256 f = _mm256_sub_ps(
        _mm256_castsi256_ps(_mm256_or_si256(j, _mm256_set1_epi32(0x3F800000))), _mm256_set1_ps(1.0f));
    const __m256 p = exp2_fraction_256(f);
    const __m256i n = _mm256_srai_epi32(q, 23);
    const __m256i man = _mm256_sub_epi32(_mm256_castps_si256(p), _mm256_set1_epi32(0x3F000000));
    const __m256i s = _mm256_add_epi32(n, _mm256_set1_epi32(17));
    const __m256i ns = _mm256_sub_epi32(_mm256_set1_epi32(-17), n);
    const __m256i w = _mm256_or_si256(_mm256_sllv_epi32(man, s), _mm256_srlv_epi32(man, ns));
    *lo = _mm256_and_si256(w, _mm256_set1_epi32(0xFFFFF));
    *hi = _mm256_srlv_epi32(man, _mm256_sub_epi32(_mm256_set1_epi32(3), n));
    if (masked) {
        /* q >= qmin as q > qmin - 1 (qmin >= -64 * 2^23, so no wrap) */
        const __m256i keep = _mm256_cmpgt_epi32(q, _mm256_sub_epi32(qmin, _mm256_set1_epi32(1)));
        *lo = _mm256_and_si256(keep, *lo);
        *hi = _mm256_and_si256(keep, *hi);
    }
    if (fb)
        *fb = _mm256_add_epi32(_mm256_castps_si256(p),
                               _mm256_add_epi32(_mm256_and_si256(q, _mm256_set1_epi32((int)0xFF800000u)),
                                                _mm256_set1_epi32(40 << 23)));
    if (q_out)
        *q_out = q;
}

KILN_T256 KILN_INLINE __m256 load_256(const void *data, const int bf16, int64_t i, int64_t n)
{
    const int64_t left = n - i;
    if (left >= 8) {
        if (bf16)
            return _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i))), 16));
        return _mm256_loadu_ps((const float *)data + i);
    }
    float tmp[8];
    for (int k = 0; k < 8; ++k)
        tmp[k] = k < left ? (bf16 ? kiln_bf16_to_f32(((const uint16_t *)data)[i + k])
                                  : ((const float *)data)[i + k])
                          : -__builtin_inff();
    return _mm256_loadu_ps(tmp);
}

KILN_T256 KILN_INLINE uint32_t hsum_256(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

KILN_T256 KILN_INLINE uint64_t chunks_256_body(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                               uint64_t *chunk_sums, uint32_t *fbits, const int bf16,
                                               const int fused, const int masked, const int with_fb)
{
    const __m256 vm = _mm256_set1_ps(mc->m), vc = _mm256_set1_ps(mc->c23);
    const __m256i qmin = _mm256_set1_epi32(mc->qmin);
    const int64_t n = row->n;
    const float *xf = (const float *)row->data;
    const uint16_t *xh = (const uint16_t *)row->data;
    uint64_t total = 0;
    for (int64_t base = 0; base < n; base += KILN_CPU_CHUNK) {
        const int64_t end = base + KILN_CPU_CHUNK < n ? base + KILN_CPU_CHUNK : n;
        __m256i alo = _mm256_setzero_si256(), ahi = alo;
        int64_t i = base;
        /* full vectors without a tail test or a conditional store per step:
         * the loop the mass pass spends its time in */
        for (; i + 8 <= end; i += 8) {
            const __m256 x = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(
                                        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(xh + i))), 16))
                                  : _mm256_loadu_ps(xf + i);
            __m256i lo, hi, fb;
            mass_256(x, vm, vc, fused, masked, qmin, &lo, &hi, with_fb ? &fb : NULL, NULL);
            alo = _mm256_add_epi32(alo, lo);
            ahi = _mm256_add_epi32(ahi, hi);
            if (with_fb)
                _mm256_storeu_si256((__m256i *)(fbits + i), fb);
        }
        if (i < end) {
            __m256i lo, hi, fb;
            mass_256(load_256(row->data, bf16, i, n), vm, vc, fused, masked, qmin, &lo, &hi,
                     with_fb ? &fb : NULL, NULL);
            alo = _mm256_add_epi32(alo, lo);
            ahi = _mm256_add_epi32(ahi, hi);
            if (with_fb) {
                uint32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, fb);
                memcpy(fbits + i, tmp, (size_t)(end - i) * 4);
            }
        }
        const uint64_t sum = ((uint64_t)hsum_256(ahi) << 20) + hsum_256(alo);
        if (chunk_sums)
            chunk_sums[base / KILN_CPU_CHUNK] = sum;
        total += sum;
    }
    return total;
}

KILN_T256 static uint64_t chunks_256(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                     uint64_t *chunk_sums, uint32_t *fbits)
{
    /* one specialised loop per (dtype, fused, masked, fbits wanted) */
#define KILN_CHUNKS(b, f, k)                                                          \
    return fbits ? chunks_256_body(row, mc, chunk_sums, fbits, b, f, k, 1)            \
                 : chunks_256_body(row, mc, chunk_sums, NULL, b, f, k, 0)
    if (row->bf16) {
        if (mc->fused) {
            if (mc->masked) KILN_CHUNKS(1, 1, 1); else KILN_CHUNKS(1, 1, 0);
        } else {
            if (mc->masked) KILN_CHUNKS(1, 0, 1); else KILN_CHUNKS(1, 0, 0);
        }
    }
    if (mc->fused) {
        if (mc->masked) KILN_CHUNKS(0, 1, 1); else KILN_CHUNKS(0, 1, 0);
    }
    if (mc->masked) KILN_CHUNKS(0, 0, 1); else KILN_CHUNKS(0, 0, 0);
#undef KILN_CHUNKS
}

KILN_T256 static void span_256(const kiln_cpu_row *row, int64_t start, int64_t len,
                               const kiln_cpu_mass_ctx *mc, uint64_t *w)
{
    const __m256 vm = _mm256_set1_ps(mc->m), vc = _mm256_set1_ps(mc->c23);
    const __m256i qmin = _mm256_set1_epi32(mc->qmin);
    const int64_t end = start + len;
    for (int64_t i = start; i < end; i += 8) {
        __m256i lo, hi;
        const __m256 x = load_256(row->data, row->bf16, i, end);
        if (mc->fused)
            mass_256(x, vm, vc, 1, 1, qmin, &lo, &hi, NULL, NULL);
        else
            mass_256(x, vm, vc, 0, 1, qmin, &lo, &hi, NULL, NULL);
        uint32_t l[8], h[8];
        _mm256_storeu_si256((__m256i *)l, lo);
        _mm256_storeu_si256((__m256i *)h, hi);
        const int64_t cnt = end - i < 8 ? end - i : 8;
        for (int64_t k = 0; k < cnt; ++k)
            w[i - start + k] = ((uint64_t)h[k] << 20) + l[k];
    }
}

/* The entropy sums: per 8 tokens the masses' two parts times d = -q as
 * 32 x 32 -> 64-bit products (parts < 2^21, d <= 2^29: each below 2^50,
 * a chunk's 256 below 2^58), joined per chunk into 128 bits. Tokens past
 * the cut (canonical order: x below xc, or equal with a larger id) and,
 * masked, below qmin have parts 0, so they add nothing and count as no mass. */
KILN_T256 KILN_INLINE __m256i products_256(__m256i part, __m256i d)
{
    const __m256i even = _mm256_mul_epu32(part, d);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(part, 32), _mm256_srli_epi64(d, 32));
    return _mm256_add_epi64(even, odd);
}

KILN_T256 KILN_INLINE uint64_t hsum64_256(__m256i v)
{
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (uint64_t)_mm_cvtsi128_si64(s);
}

KILN_T256 KILN_INLINE kiln_cpu_entropy_sums entropy_256_body(const kiln_cpu_row *row,
                                                             const kiln_cpu_mass_ctx *mc,
                                                             const int has_cut, float xc,
                                                             uint32_t cut_id, const int bf16,
                                                             const int fused, const int masked)
{
    const __m256 vm = _mm256_set1_ps(mc->m), vc = _mm256_set1_ps(mc->c23), vxc = _mm256_set1_ps(xc);
    const __m256i qmin = _mm256_set1_epi32(mc->qmin), zero = _mm256_setzero_si256();
    const __m256i past_cut = _mm256_set1_epi32((int32_t)cut_id + 1);
    const __m256i step = _mm256_set1_epi32(8);
    const int64_t n = row->n;
    uint64_t total = 0;
    int64_t empty = 0, lanes = 0;
    kiln_u128 e = kiln_u128_zero();
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t base = 0; base < n; base += KILN_CPU_CHUNK) {
        const int64_t end = base + KILN_CPU_CHUNK < n ? base + KILN_CPU_CHUNK : n;
        __m256i alo = zero, ahi = zero, elo = zero, ehi = zero, none = zero;
        for (int64_t i = base; i < end; i += 8) {
            __m256i lo, hi, q;
            const __m256 x = load_256(row->data, bf16, i, n);
            mass_256(x, vm, vc, fused, masked, qmin, &lo, &hi, NULL, &q);
            if (has_cut) {
                const __m256i above = _mm256_castps_si256(_mm256_cmp_ps(x, vxc, _CMP_GT_OQ));
                const __m256i tie = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x, vxc, _CMP_EQ_OQ)),
                                                     _mm256_cmpgt_epi32(past_cut, idx));
                const __m256i in = _mm256_or_si256(above, tie);
                lo = _mm256_and_si256(lo, in);
                hi = _mm256_and_si256(hi, in);
            }
            idx = _mm256_add_epi32(idx, step);
            const __m256i d = _mm256_sub_epi32(zero, q);
            alo = _mm256_add_epi32(alo, lo);
            ahi = _mm256_add_epi32(ahi, hi);
            elo = _mm256_add_epi64(elo, products_256(lo, d));
            ehi = _mm256_add_epi64(ehi, products_256(hi, d));
            none = _mm256_sub_epi32(none, _mm256_cmpeq_epi32(_mm256_or_si256(lo, hi), zero));
        }
        lanes += (end - base + 7) / 8 * 8;
        empty += hsum_256(none);
        total += ((uint64_t)hsum_256(ahi) << 20) + hsum_256(alo);
        const uint64_t h = hsum64_256(ehi);
        const kiln_u128 part = { h << 20, h >> 44 };
        const kiln_u128 low = { hsum64_256(elo), 0 };
        e = kiln_u128_add(e, kiln_u128_add(part, low));
    }
    kiln_cpu_entropy_sums r = { total, lanes - empty, e };
    return r;
}

KILN_T256 static kiln_cpu_entropy_sums entropy_256(const kiln_cpu_row *row,
                                                   const kiln_cpu_mass_ctx *mc, int has_cut,
                                                   float xc, uint32_t cut_id)
{
#define KILN_ENTROPY(b, f, k) return entropy_256_body(row, mc, has_cut, xc, cut_id, b, f, k)
    if (row->bf16) {
        if (mc->fused) {
            if (mc->masked) KILN_ENTROPY(1, 1, 1); else KILN_ENTROPY(1, 1, 0);
        } else {
            if (mc->masked) KILN_ENTROPY(1, 0, 1); else KILN_ENTROPY(1, 0, 0);
        }
    }
    if (mc->fused) {
        if (mc->masked) KILN_ENTROPY(0, 1, 1); else KILN_ENTROPY(0, 1, 0);
    }
    if (mc->masked) KILN_ENTROPY(0, 0, 1); else KILN_ENTROPY(0, 0, 0);
#undef KILN_ENTROPY
}

#endif /* KILN_X86_KERNELS */

/* ----------------------------------------------------------- entry points */

uint64_t kiln_cpu_mass_chunks(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                              uint64_t *chunk_sums, uint32_t *fbits)
{
#ifdef KILN_X86_KERNELS
    const kiln_cpu_isa isa = kiln_cpu_isa_level();
    if (isa == KILN_ISA_AVX512)
        return chunks_512(row, mc, chunk_sums, fbits, NULL);
    if (isa == KILN_ISA_AVX2)
        return chunks_256(row, mc, chunk_sums, fbits);
#endif
    return chunks_scalar(row, mc, chunk_sums, fbits);
}

uint64_t kiln_cpu_mass_fbits_every16(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                     uint32_t *fbits, uint32_t *every16)
{
#ifdef KILN_X86_KERNELS
    /* AVX-512 takes them from its registers; elsewhere they are read back */
    if (kiln_cpu_isa_level() == KILN_ISA_AVX512)
        return chunks_512(row, mc, NULL, fbits, every16);
#endif
    const uint64_t total = kiln_cpu_mass_chunks(row, mc, NULL, fbits);
    for (int64_t t = 0; 16 * t < row->n; ++t)
        every16[t] = fbits[16 * t];
    return total;
}

void kiln_cpu_mass_span(const kiln_cpu_row *row, int64_t start, int64_t len,
                        const kiln_cpu_mass_ctx *mc, uint64_t *w)
{
#ifdef KILN_X86_KERNELS
    const kiln_cpu_isa isa = kiln_cpu_isa_level();
    if (isa == KILN_ISA_AVX512) {
        span_512(row, start, len, mc, w);
        return;
    }
    if (isa == KILN_ISA_AVX2) {
        span_256(row, start, len, mc, w);
        return;
    }
#endif
    for (int64_t i = 0; i < len; ++i) {
        const float x = kiln_cpu_row_at(row, start + i);
        w[i] = kiln_cpu_mass_q(x, mc->m, mc->c) >= mc->qmin ? kiln_mass(x, mc->m, mc->c) : 0;
    }
}

static kiln_cpu_entropy_sums entropy_scalar(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                            int has_cut, float xc, uint32_t cut_id)
{
    uint64_t total = 0;
    int64_t count = 0;
    kiln_u128 e = kiln_u128_zero();
    for (int64_t i = 0; i < row->n; ++i) {
        const float x = kiln_cpu_row_at(row, i);
        if (has_cut && !(x > xc || (x == xc && i <= (int64_t)cut_id)))
            continue;
        const int32_t q = kiln_cpu_mass_q(x, mc->m, mc->c);
        if (mc->masked && q < mc->qmin)
            continue;
        const uint64_t w = kiln_cpu_mass_of_q(q);
        total += w;
        count += w != 0;
        e = kiln_u128_add(e, kiln_entropy_term(w, (uint32_t)-q));
    }
    kiln_cpu_entropy_sums r = { total, count, e };
    return r;
}

kiln_cpu_entropy_sums kiln_cpu_mass_entropy(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                            const kiln_cpu_cut *cut)
{
    /* the cut as a logit: keys order like the floats, -0 with +0 */
    const float xc = cut ? kiln_f32_from_bits(cut->key & 0x80000000u ? cut->key & 0x7FFFFFFFu
                                                                      : ~cut->key)
                         : 0.0f;
    const uint32_t cut_id = cut ? cut->id : 0;
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2)
        return entropy_256(row, mc, cut != NULL, xc, cut_id);
#endif
    return entropy_scalar(row, mc, cut != NULL, xc, cut_id);
}
