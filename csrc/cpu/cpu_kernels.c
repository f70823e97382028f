/* The CPU backend's passes over a whole row, written so gcc vectorises them:
 * on x86-64 each has clones for AVX-512 and AVX2 picked at load time. The
 * vector code performs the same IEEE operations as the scalar contract in
 * csrc/shared/numerics.h (no FMA: -ffp-contract=off), so every clone returns
 * the same bits; tests/test_cpu_kernels.c checks them against kiln_mass. */
#include <string.h>

#include "cpu_backend.h"
#include "../shared/numerics.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(KILN_NO_CLONES)
#define KILN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KILN_CLONES
#endif

KILN_CLONES
uint64_t kiln_cpu_masses(const float *x, int64_t n, float m, float c, uint64_t *w)
{
    uint64_t sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t wi = kiln_mass(x[i], m, c);
        w[i] = wi;
        sum += wi;
    }
    return sum;
}

KILN_CLONES
void kiln_cpu_key_range(const float *x, int64_t n, uint32_t *min_key, uint32_t *max_key)
{
    uint32_t lo = 0xFFFFFFFFu, hi = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t k = kiln_order_key(x[i]);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    *min_key = lo;
    *max_key = hi;
}

/* A histogram of the top 11 bits of the keys of x[0], x[stride], ...: the
 * first level of the top-k radix select. Two histograms alternate so
 * consecutive equal digits do not wait on each other's store. */
void kiln_cpu_key_hist(const float *x, int64_t n, int64_t stride, uint32_t hist[2048])
{
    uint32_t h2[2048];
    memset(hist, 0, 2048 * sizeof hist[0]);
    memset(h2, 0, sizeof h2);
    int64_t i = 0;
    for (; i + stride < n; i += 2 * stride) {
        hist[kiln_order_key(x[i]) >> 21]++;
        h2[kiln_order_key(x[i + stride]) >> 21]++;
    }
    if (i < n)
        hist[kiln_order_key(x[i]) >> 21]++;
    for (int d = 0; d < 2048; ++d)
        hist[d] += h2[d];
}

/* Blocks of 64 tokens: a branch-free test of the whole block first (which
 * vectorises), the scalar work only in blocks that have a hit. Most blocks
 * have none: the max occurs once, and top-k candidates are few. */
#define KILN_BLOCK 64

KILN_CLONES
int64_t kiln_cpu_find_first(const float *x, int64_t n, float value)
{
    for (int64_t base = 0; base < n; base += KILN_BLOCK) {
        const int64_t end = base + KILN_BLOCK < n ? base + KILN_BLOCK : n;
        int hit = 0;
        for (int64_t i = base; i < end; ++i)
            hit |= x[i] == value;
        if (hit)
            for (int64_t i = base; i < end; ++i)
                if (x[i] == value)
                    return i;
    }
    return -1;
}

