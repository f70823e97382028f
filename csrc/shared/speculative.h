/* The integer rule of draft verification (docs/semantics.md section 19),
 * written once for both backends. */
#ifndef KILN_SHARED_SPECULATIVE_H
#define KILN_SHARED_SPECULATIVE_H

#include "numerics.h"

/* The Philox subsequence of the accept tests: beyond every draw index
 * (n <= 2^24), so accept bits never coincide with a draw's. */
#define KILN_ACCEPT_SUBSEQUENCE ((uint64_t)1 << 32)

/* A draft's quantised mass against a kept mass s: floor(q * s). */
KILN_HD uint64_t kiln_draft_mass(float q, uint64_t s)
{
    return kiln_floor_scale(q, s);
}

/* Accept test: a * Q < w * 2^64, i.e. floor(a * Q / 2^64) < w; true for
 * min(2^64, ceil(w 2^64 / Q)) of the 2^64 values of a. */
KILN_HD int kiln_draft_accepted(uint64_t a, uint64_t draft_mass, uint64_t w)
{
    return kiln_mulhi64(a, draft_mass) < w;
}

/* The residual weight max(0, w - Q) of a token at the first rejection. */
KILN_HD uint64_t kiln_residual_mass(uint64_t w, uint64_t draft_mass)
{
    return w > draft_mass ? w - draft_mass : 0;
}

/* A draft probability the rule may use: in [0, 1] (NaN fails). */
KILN_HD int kiln_is_probability(float q)
{
    return kiln_fge(q, 0.0f) && kiln_fle(q, 1.0f);
}

#endif
