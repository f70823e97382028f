/* The tokens at or above a threshold, ids ascending: the candidates of the
 * top-k select, of the top-N outputs and of min-p's dense rows.
 *
 * A candidate set is a few hundred tokens spread over the whole row, so a
 * test per block of 64 tokens hits nearly every other block and a branch
 * per token mispredicts at every candidate. The AVX2 code instead joins the
 * compare masks of 64 tokens into one word and appends its set bits: per
 * token a compare and a movemask, per candidate a count-trailing-zeros
 * (AVX-512: a compare into a mask register per 16 f32 or 32 bf16 tokens).
 * bf16 tokens are compared as signed 16-bit keys (kiln_bf16_signed_key,
 * against kiln_bf16_threshold), 16 or 32 to a register instead of 8 or 16
 * widened floats; on valid rows (no NaN) x >= t holds exactly when
 * kiln_order_key(x) >= kiln_order_key(t) (-0 with +0), the order every
 * caller's threshold is chosen in. */
#include "cpu_backend.h"
#include "cpu_row.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T256 __attribute__((target("avx2,bmi")))
#define KILN_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,bmi")))
#endif

static size_t collect_scalar(const kiln_cpu_row *row, int64_t from, float threshold,
                             uint32_t *ids, size_t count, size_t limit)
{
    for (int64_t i = from; i < row->n && count <= limit; ++i)
        if (kiln_cpu_row_at(row, i) >= threshold)
            ids[count++] = (uint32_t)i;
    return count;
}

#ifdef KILN_X86_KERNELS
KILN_T256 static inline uint64_t mask8_256(const void *data, int bf16, int64_t i, __m256 t)
{
    const __m256 x =
        bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(
                   _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i))),
                   16))
             : _mm256_loadu_ps((const float *)data + i);
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(x, t, _CMP_GE_OQ));
}

/* 16 bf16 tokens as signed keys, and 32 tokens' "below t" compares as the
 * bits of one word (packs interleaves the two registers' 128-bit halves, the
 * permute puts them back in token order) */
KILN_T256 static inline __m256i signed_keys_256(const uint16_t *h)
{
    const __m256i v = _mm256_loadu_si256((const __m256i *)h);
    return _mm256_xor_si256(v, _mm256_and_si256(_mm256_srai_epi16(v, 15), _mm256_set1_epi16(0x7FFF)));
}

KILN_T256 static inline uint32_t below32_256(const uint16_t *h, __m256i t)
{
    const __m256i a = _mm256_cmpgt_epi16(t, signed_keys_256(h));
    const __m256i b = _mm256_cmpgt_epi16(t, signed_keys_256(h + 16));
    return (uint32_t)_mm256_movemask_epi8(_mm256_permute4x64_epi64(_mm256_packs_epi16(a, b), 0xD8));
}

KILN_T256 static size_t collect_256(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                   size_t limit)
{
    const __m256 t = _mm256_set1_ps(threshold);
    const int64_t n = row->n;
    size_t count = 0;
    int64_t base = 0;
    int16_t t16 = 0;
    const int keys16 = row->bf16 && kiln_bf16_threshold(threshold, &t16);
    const __m256i vt16 = _mm256_set1_epi16(t16);
    /* one loop per form, so the f32 one carries no test of the form */
    for (; keys16 && base + 64 <= n && count <= limit; base += 64) {
        const uint16_t *h = (const uint16_t *)row->data + base;
        uint64_t bits = ~((uint64_t)below32_256(h, vt16) | (uint64_t)below32_256(h + 32, vt16) << 32);
        while (bits) {
            ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    for (; !keys16 && base + 64 <= n && count <= limit; base += 64) {
        uint64_t bits = 0;
        for (int v = 0; v < 8; ++v)
            bits |= mask8_256(row->data, row->bf16, base + 8 * v, t) << (8 * v);
        while (bits) {
            ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    return count > limit ? count : collect_scalar(row, base, threshold, ids, count, limit);
}

KILN_T512 static size_t collect_512(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                   size_t limit)
{
    const int64_t n = row->n;
    size_t count = 0;
    int64_t base = 0;
    int16_t t16 = 0;
    const int keys16 = row->bf16 && kiln_bf16_threshold(threshold, &t16);
    if (row->bf16 && !keys16)
        return 0; /* no bf16 reaches the threshold */
    const __m512 t = _mm512_set1_ps(threshold);
    const __m512i vt16 = _mm512_set1_epi16(t16), magnitude = _mm512_set1_epi16(0x7FFF);
    for (; keys16 && base + 64 <= n && count <= limit; base += 64) {
        const uint16_t *h = (const uint16_t *)row->data + base;
        uint64_t bits = 0;
        for (int v = 0; v < 2; ++v) {
            __m512i k = _mm512_loadu_si512((const void *)(h + 32 * v));
            k = _mm512_xor_si512(k, _mm512_and_si512(_mm512_srai_epi16(k, 15), magnitude));
            bits |= (uint64_t)_mm512_cmpge_epi16_mask(k, vt16) << (32 * v);
        }
        while (bits) {
            ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    for (; !keys16 && base + 64 <= n && count <= limit; base += 64) {
        const float *x = (const float *)row->data + base;
        uint64_t bits = 0;
        for (int v = 0; v < 4; ++v)
            bits |= (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16 * v), t, _CMP_GE_OQ) << (16 * v);
        while (bits) {
            ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    return count > limit ? count : collect_scalar(row, base, threshold, ids, count, limit);
}

/* The collect and the key range in one pass (the top-k path's candidates,
 * chosen from a sample before the max is known): per vector the compare of
 * the collect and the min, max and NaN test of key_range_f32_256 (f32) or
 * the signed-key min and max (bf16). A NaN leaves the range to the caller. */
KILN_T512 static inline __attribute__((always_inline)) size_t
range_collect_512_body(const kiln_cpu_row *row, float threshold, int16_t t16, uint32_t *ids,
                       size_t limit, int *range_known, uint32_t *min_key, uint32_t *max_key,
                       const int bf16)
{
    const int64_t n = row->n;
    size_t count = 0;
    int64_t base = 0;
    if (bf16) {
        const __m512i vt16 = _mm512_set1_epi16(t16), magnitude = _mm512_set1_epi16(0x7FFF);
        __m512i lo = _mm512_set1_epi16(INT16_MAX), hi = _mm512_set1_epi16(INT16_MIN);
        for (; base + 64 <= n; base += 64) {
            const uint16_t *h = (const uint16_t *)row->data + base;
            uint64_t bits = 0;
            for (int v = 0; v < 2; ++v) {
                __m512i k = _mm512_loadu_si512((const void *)(h + 32 * v));
                k = _mm512_xor_si512(k, _mm512_and_si512(_mm512_srai_epi16(k, 15), magnitude));
                lo = _mm512_min_epi16(lo, k);
                hi = _mm512_max_epi16(hi, k);
                bits |= (uint64_t)_mm512_cmpge_epi16_mask(k, vt16) << (32 * v);
            }
            if (count > limit)
                continue; /* the range goes on; the list is past its use */
            while (bits) {
                ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
                bits &= bits - 1;
            }
        }
        int16_t l[32], u[32], kl = INT16_MAX, ku = INT16_MIN;
        _mm512_storeu_si512((void *)l, lo);
        _mm512_storeu_si512((void *)u, hi);
        for (int a = 0; a < 32; ++a) {
            kl = l[a] < kl ? l[a] : kl;
            ku = u[a] > ku ? u[a] : ku;
        }
        for (int64_t i = base; i < n; ++i) {
            const int16_t k = kiln_bf16_signed_key(((const uint16_t *)row->data)[i]);
            kl = k < kl ? k : kl;
            ku = k > ku ? k : ku;
        }
        const uint16_t a = kiln_bf16_key_of_signed(kl), b = kiln_bf16_key_of_signed(ku);
        *min_key = ((uint32_t)a << 16) | (a & 0x8000u ? 0u : 0xFFFFu);
        *max_key = ((uint32_t)b << 16) | (b & 0x8000u ? 0u : 0xFFFFu);
        *range_known = 1;
    } else {
        const __m512 t = _mm512_set1_ps(threshold);
        __m512 lo = _mm512_set1_ps(__builtin_inff()), hi = _mm512_set1_ps(-__builtin_inff());
        __mmask16 nan = 0;
        for (; base + 64 <= n; base += 64) {
            const float *x = (const float *)row->data + base;
            uint64_t bits = 0;
            for (int v = 0; v < 4; ++v) {
                const __m512 xv = _mm512_loadu_ps(x + 16 * v);
                lo = _mm512_min_ps(lo, xv);
                hi = _mm512_max_ps(hi, xv);
                nan |= _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
                bits |= (uint64_t)_mm512_cmp_ps_mask(xv, t, _CMP_GE_OQ) << (16 * v);
            }
            if (count > limit)
                continue;
            while (bits) {
                ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
                bits &= bits - 1;
            }
        }
        float l[16], u[16];
        _mm512_storeu_ps(l, lo);
        _mm512_storeu_ps(u, hi);
        *range_known = !nan && kiln_cpu_lanes_key_range(u, l, 16, (const float *)row->data + base,
                                                        n - base, min_key, max_key);
    }
    return count > limit ? count : collect_scalar(row, base, threshold, ids, count, limit);
}

KILN_T512 static size_t range_collect_512(const kiln_cpu_row *row, float threshold, int16_t t16,
                                          uint32_t *ids, size_t limit, int *range_known,
                                          uint32_t *min_key, uint32_t *max_key)
{
    return row->bf16
               ? range_collect_512_body(row, threshold, t16, ids, limit, range_known, min_key, max_key, 1)
               : range_collect_512_body(row, threshold, t16, ids, limit, range_known, min_key, max_key, 0);
}
#endif

size_t kiln_cpu_row_range_collect(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                  size_t limit, int *range_known, uint32_t *min_key,
                                  uint32_t *max_key)
{
    *range_known = 0;
#ifdef KILN_X86_KERNELS
    int16_t t16 = 0;
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512 &&
        (!row->bf16 || kiln_bf16_threshold(threshold, &t16)))
        return range_collect_512(row, threshold, t16, ids, limit, range_known, min_key, max_key);
#endif
    return kiln_cpu_row_collect_at_most(row, threshold, ids, limit);
}

size_t kiln_cpu_row_collect_at_most(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                    size_t limit)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return collect_512(row, threshold, ids, limit);
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2)
        return collect_256(row, threshold, ids, limit);
#endif
    return collect_scalar(row, 0, threshold, ids, 0, limit);
}

size_t kiln_cpu_row_collect_at_least(const kiln_cpu_row *row, float threshold, uint32_t *ids)
{
    return kiln_cpu_row_collect_at_most(row, threshold, ids, (size_t)row->n);
}

size_t kiln_cpu_collect_at_least(const float *x, int64_t n, float threshold, uint32_t *ids)
{
    const kiln_cpu_row row = { x, 0, n };
    return kiln_cpu_row_collect_at_least(&row, threshold, ids);
}
