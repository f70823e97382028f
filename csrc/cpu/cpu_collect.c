/* The tokens at or above a threshold, ids ascending: the candidates of the
 * top-k select, of the top-N outputs and of min-p's dense rows.
 *
 * A candidate set is a few hundred tokens spread over the whole row, so a
 * test per block of 64 tokens hits nearly every other block and a branch
 * per token mispredicts at every candidate. The AVX2 code instead joins the
 * compare masks of 64 tokens into one word and appends its set bits: per
 * token a compare and a movemask, per candidate a count-trailing-zeros.
 * A bf16 is the top half of an f32, so it is widened in registers and
 * compared as a float; on valid rows (no NaN) x >= t holds exactly when
 * kiln_order_key(x) >= kiln_order_key(t) (-0 with +0), the order every
 * caller's threshold is chosen in. */
#include "cpu_backend.h"
#include "cpu_row.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T256 __attribute__((target("avx2,bmi")))
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

KILN_T256 static size_t collect_256(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                   size_t limit)
{
    const __m256 t = _mm256_set1_ps(threshold);
    const int64_t n = row->n;
    const int bf16 = row->bf16;
    size_t count = 0;
    int64_t base = 0;
    for (; base + 64 <= n && count <= limit; base += 64) {
        uint64_t bits = 0;
        for (int v = 0; v < 8; ++v)
            bits |= mask8_256(row->data, bf16, base + 8 * v, t) << (8 * v);
        while (bits) {
            ids[count++] = (uint32_t)(base + (int64_t)__builtin_ctzll(bits));
            bits &= bits - 1;
        }
    }
    return count > limit ? count : collect_scalar(row, base, threshold, ids, count, limit);
}
#endif

size_t kiln_cpu_row_collect_at_most(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                    size_t limit)
{
#ifdef KILN_X86_KERNELS
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
