/* The entropy sums of a kept set given as prefix sums of its masses (the
 * sparse and prefix forms; chunked sets and the raw distribution take the
 * vectorised pass in cpu_mass.c): S = sum w_i and E = sum w_i d_i
 * (docs/semantics.md section 15). Each term w_i d_i is below 2^63 (w_i <
 * 2^(41 + n) and d_i <= -n * 2^23 for the integer part n <= -1 of the
 * exponent; n = 0 only with d_i = 0), so E is kept as two 64-bit sums of
 * the terms' high and low 32 bits, which cannot overflow for V < 2^24. */
#include "cpu_backend.h"
#include "../shared/entropy.h"

static kiln_u128 combine(uint64_t hi32, uint64_t lo32)
{
    kiln_u128 h = { hi32 << 32, hi32 >> 32 };
    kiln_u128 l = { lo32, 0 };
    return kiln_u128_add(h, l);
}

kiln_cpu_entropy_sums kiln_cpu_entropy_prefix(const float *x, const uint32_t *ids,
                                              const uint64_t *prefix, int64_t n, float m, float c)
{
    uint64_t prev = 0, count = 0, hi = 0, lo = 0;
    for (int64_t j = 0; j < n; ++j) {
        const uint64_t w = prefix[j] - prev;
        prev = prefix[j];
        /* w = 0 (not kept) adds nothing; no branch, kept patterns can be random */
        const float xi = x[ids ? ids[j] : (uint32_t)j];
        const uint64_t t = w * (uint64_t)kiln_mass_exponent(xi, m, c);
        count += w != 0;
        hi += t >> 32;
        lo += t & 0xFFFFFFFFu;
    }
    kiln_cpu_entropy_sums r = { prev, (int64_t)count, combine(hi, lo) };
    return r;
}
