/* The logit edits that run before the penalties (docs/semantics.md section
 * 1): the allowed-token mask, then the logit bias, on the row's f32 copy. */
#include "cpu_backend.h"
#include "../shared/numerics.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(KILN_NO_CLONES)
#define KILN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KILN_CLONES
#endif

/* A disallowed token becomes -inf whatever it held: a select on the bit.
 * Whole words have a fixed trip count of 32, which vectorises (variable
 * shifts); only the last partial word is scalar. */
static inline void mask_word(float *dst, const float *src, uint32_t bits)
{
    const float neg_inf = -__builtin_inff();
    for (int j = 0; j < 32; ++j)
        dst[j] = (bits >> j) & 1u ? src[j] : neg_inf;
}

KILN_CLONES
void kiln_cpu_copy_masked(float *dst, const float *src, const int32_t *words, int64_t n)
{
    const int64_t full = n / 32;
    for (int64_t w = 0; w < full; ++w)
        mask_word(dst + w * 32, src + w * 32, (uint32_t)words[w]);
    const float neg_inf = -__builtin_inff();
    for (int64_t i = full * 32; i < n; ++i)
        dst[i] = ((uint32_t)words[full] >> (i - full * 32)) & 1u ? src[i] : neg_inf;
}

void kiln_cpu_apply_mask(float *x, const int32_t *words, int64_t n)
{
    kiln_cpu_copy_masked(x, x, words, n);
}

/* In the order given, so an id listed twice gets both additions in that
 * order (f32 addition is not associative). */
void kiln_cpu_apply_logit_bias(float *x, const int32_t *ids, const float *values, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        x[ids[i]] = kiln_fadd(x[ids[i]], values[i]);
}
