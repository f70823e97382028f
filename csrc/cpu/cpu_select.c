/* The sort-free cut: exact radix select over the canonical keys.
 *
 * A cut is the last token of the shortest canonical prefix whose weight
 * reaches a target, where a token weighs 1 (top-k) or its mass (top-p).
 * Each level histograms one digit of the key (most significant first), walks the buckets from the highest key down to the one
 * where the running weight reaches the target, and keeps only that bucket's
 * members for the next level. After the last digit the members share one
 * key and are in ascending id order, which is the canonical tie order, so a
 * final walk finds the cut token. Weights are integers, so this is the same
 * token the sort path finds. */
#include <string.h>

#include "cpu_backend.h"
#include "cpu_row.h"
#include "../shared/numerics.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

/* The first level's members: j < n whose digit (key >> shift) & mask is d,
 * ascending. A compare of sixteen keys and a compress of their indices on
 * AVX-512 (the members fall at random among the keys, one bucket of up to
 * 2048, so a branch per key would mispredict at each); 16 lanes are stored
 * at kept <= j, within out's n entries. */
#ifdef KILN_X86_KERNELS
KILN_T512 static size_t digit_members_512(const uint32_t *key, size_t n, int shift, uint32_t mask,
                                          uint32_t d, uint32_t *out, size_t *done)
{
    const __m512i vmask = _mm512_set1_epi32((int32_t)mask), vd = _mm512_set1_epi32((int32_t)d);
    const __m128i vshift = _mm_cvtsi32_si128(shift);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t kept = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i k = _mm512_loadu_si512((const void *)(key + j));
        const __mmask16 in =
            _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_srl_epi32(k, vshift), vmask), vd);
        _mm512_storeu_si512((void *)(out + kept), _mm512_maskz_compress_epi32(in, idx));
        kept += (size_t)__builtin_popcount((unsigned)in);
        idx = _mm512_add_epi32(idx, step);
    }
    *done = j;
    return kept;
}
#endif

static size_t digit_members(const uint32_t *key, size_t n, int shift, uint32_t mask, uint32_t d,
                            uint32_t *out)
{
    size_t kept = 0, j = 0;
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        kept = digit_members_512(key, n, shift, mask, d, out, &j);
#endif
    for (; j < n; ++j)
        if (((key[j] >> shift) & mask) == d)
            out[kept++] = (uint32_t)j;
    return kept;
}

/* Digits, most significant first: 11/11/10 bits for long lists, 8/8/8/8
 * for short ones, where clearing a 2048-bucket histogram three times costs
 * more than a fourth pass over a few hundred candidates. Any split of the
 * 32 key bits finds the same cut. */
typedef struct digit_plan {
    int levels;
    int shift[4];
    uint32_t mask[4];
} digit_plan;

static const digit_plan long_plan = { 3, { 21, 10, 0, 0 }, { 0x7FFu, 0x7FFu, 0x3FFu, 0 } };
static const digit_plan short_plan = { 4, { 24, 16, 8, 0 }, { 0xFFu, 0xFFu, 0xFFu, 0xFFu } };
enum { SHORT_LIST = 2048 };

/* Few candidates: an insertion sort into canonical order and a walk, which
 * finds the same token without three levels of 2048-bucket histograms. */
enum { SMALL_CUT = 32 };

static kiln_cpu_cut small_cut(const float *x, const uint32_t *ids, const uint64_t *w, size_t n,
                              uint64_t target)
{
    uint32_t key[SMALL_CUT], at[SMALL_CUT];
    for (size_t j = 0; j < n; ++j) {
        const uint32_t k = kiln_order_key(x[ids ? ids[j] : (uint32_t)j]);
        size_t i = j; /* ids ascend, so equal keys stay in id order */
        while (i > 0 && key[i - 1] < k) {
            key[i] = key[i - 1];
            at[i] = at[i - 1];
            --i;
        }
        key[i] = k;
        at[i] = (uint32_t)j;
    }
    kiln_cpu_cut cut = { 0, 0 };
    uint64_t run = 0;
    for (size_t i = 0; i < n; ++i) {
        run += w ? w[at[i]] : 1;
        if (run >= target) {
            cut.key = key[i];
            cut.id = ids ? ids[at[i]] : at[i];
            break;
        }
    }
    return cut;
}

kiln_cpu_cut kiln_cpu_radix_cut(const float *x, const uint32_t *ids, const uint64_t *w, size_t n,
                                uint64_t target, kiln_cpu_list *tmp_a, kiln_cpu_list *tmp_b)
{
    if (n <= SMALL_CUT)
        return small_cut(x, ids, w, n, target);
    uint64_t hist[2048];
    uint64_t above = 0;
    const digit_plan *plan = n <= SHORT_LIST ? &short_plan : &long_plan;
    for (int level = 0; level < plan->levels; ++level) {
        const int shift = plan->shift[level];
        const uint32_t mask = plan->mask[level];
        memset(hist, 0, (mask + 1) * sizeof hist[0]);
        for (size_t j = 0; j < n; ++j) {
            const uint32_t id = ids ? ids[j] : (uint32_t)j;
            hist[(kiln_order_key(x[id]) >> shift) & mask] += w ? w[j] : 1;
        }
        uint32_t d = mask;
        while (above + hist[d] < target) {
            above += hist[d];
            --d; /* target <= the total weight, so some bucket reaches it */
        }
        kiln_cpu_list *next = ids == tmp_a->id ? tmp_b : tmp_a;
        size_t kept = 0;
        for (size_t j = 0; j < n; ++j) {
            const uint32_t id = ids ? ids[j] : (uint32_t)j;
            if (((kiln_order_key(x[id]) >> shift) & mask) == d) {
                next->id[kept] = id;
                if (w)
                    next->w[kept] = w[j];
                ++kept;
            }
        }
        ids = next->id;
        w = w ? next->w : NULL;
        n = kept;
    }
    kiln_cpu_cut cut = { 0, 0 };
    for (size_t j = 0; j < n; ++j) {
        above += w ? w[j] : 1;
        if (above >= target) {
            cut.key = kiln_order_key(x[ids[j]]);
            cut.id = ids[j];
            break;
        }
    }
    return cut;
}

size_t kiln_cpu_packed_cut(const uint32_t *key, const uint64_t *w, size_t n, uint64_t target,
                           uint32_t *idx_a, uint32_t *idx_b)
{
    uint32_t lo = 0xFFFFFFFFu, hi = 0;
    for (size_t j = 0; j < n; ++j) {
        lo = key[j] < lo ? key[j] : lo;
        hi = key[j] > hi ? key[j] : hi;
    }
    /* every key shares the bits above `top`; digits from there down, of 11
     * bits while many members remain and 8 (a smaller histogram to clear)
     * once few do */
    int top = lo == hi ? -1 : 31 - __builtin_clz(lo ^ hi);
    const uint32_t *idx = NULL; /* NULL: every j */
    size_t m = n;
    uint64_t above = 0;
    uint64_t hist[2048];
    while (top >= 0) {
        const int bits = m > SHORT_LIST ? 11 : 8;
        const int shift = top >= bits - 1 ? top - (bits - 1) : 0;
        const uint32_t mask = (2u << (top - shift)) - 1;
        memset(hist, 0, (mask + 1) * sizeof hist[0]);
        for (size_t t = 0; t < m; ++t) {
            const size_t j = idx ? idx[t] : t;
            hist[(key[j] >> shift) & mask] += w ? w[j] : 1;
        }
        uint32_t d = mask;
        while (above + hist[d] < target) {
            above += hist[d];
            --d; /* target <= the members' total, so some bucket reaches it */
        }
        uint32_t *next = idx == idx_a ? idx_b : idx_a;
        size_t kept = 0;
        if (!idx) {
            kept = digit_members(key, m, shift, mask, d, next);
        } else {
            for (size_t t = 0; t < m; ++t) {
                const size_t j = idx[t];
                if (((key[j] >> shift) & mask) == d)
                    next[kept++] = (uint32_t)j;
            }
        }
        idx = next;
        m = kept;
        top = shift - 1;
    }
    /* the members share one key, in ascending id order: the canonical ties */
    for (size_t t = 0; t < m; ++t) {
        const size_t j = idx ? idx[t] : t;
        above += w ? w[j] : 1;
        if (above >= target)
            return j;
    }
    return idx ? idx[m - 1] : m - 1; /* not reached when target <= the total */
}
