/* The logit edits that run before the penalties (docs/semantics.md section
 * 1): the allowed-token mask, then the logit bias, on the row's f32 copy. */
#include "cpu_backend.h"
#include "../shared/numerics.h"

/* A disallowed token becomes -inf whatever it held: a select on the bit,
 * 32 tokens per word, which vectorises. */
void kiln_cpu_apply_mask(float *x, const int32_t *words, int64_t n)
{
    const float neg_inf = -__builtin_inff();
    for (int64_t w = 0; w * 32 < n; ++w) {
        const uint32_t bits = (uint32_t)words[w];
        const int64_t base = w * 32, end = base + 32 < n ? base + 32 : n;
        for (int64_t i = base; i < end; ++i)
            x[i] = (bits >> (i - base)) & 1u ? x[i] : neg_inf;
    }
}

/* In the order given, so an id listed twice gets both additions in that
 * order (f32 addition is not associative). */
void kiln_cpu_apply_logit_bias(float *x, const int32_t *ids, const float *values, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        x[ids[i]] = kiln_fadd(x[ids[i]], values[i]);
}
