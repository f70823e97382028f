/* The head of the canonical order and ranks in it (docs/semantics.md
 * section 17). The first N tokens come from the top-k path's machinery: a
 * sampled key histogram proposes a threshold, the tokens at or above it are
 * collected exactly, and a radix cut plus a sort of those few give the
 * order; when the sample misleads, the exact histogram decides. Ranks are
 * counts over the row, so they need no order at all. */
#include <stdlib.h>

#include "cpu_backend.h"
#include "../shared/numerics.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(KILN_NO_CLONES)
#define KILN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KILN_CLONES
#endif

static float key_floor(uint32_t min_key)
{
    if (min_key <= 0x007FFFFFu)
        return -__builtin_inff();
    return kiln_f32_from_bits(min_key & 0x80000000u ? min_key & 0x7FFFFFFFu : ~min_key);
}

/* Canonical order on (key, id): descending key, ascending id. */
static int before(uint32_t ka, uint32_t ia, uint32_t kb, uint32_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

size_t kiln_cpu_first_in_order(const float *x, int64_t V, size_t want, uint32_t *out,
                               uint32_t *cand, kiln_cpu_list *tmp_a, kiln_cpu_list *tmp_b)
{
    if (want > (size_t)V)
        want = (size_t)V;
    if (want == 0)
        return 0;
    size_t n;
    if ((int64_t)want == V) {
        for (int64_t i = 0; i < V; ++i)
            cand[i] = (uint32_t)i;
        n = (size_t)V;
    } else {
        const int64_t stride = V >= 16384 ? 16 : 1;
        uint32_t hist[2048];
        kiln_cpu_key_hist(x, V, stride, hist);
        const uint64_t aim = (uint64_t)((3 * (int64_t)want / 2 + 64 + stride - 1) / stride);
        uint32_t d = 2047;
        for (uint64_t above = 0; d > 0 && above + hist[d] < aim; --d)
            above += hist[d];
        n = kiln_cpu_collect_at_least(x, V, key_floor(d << 21), cand);
        if (n < want) {
            kiln_cpu_key_hist(x, V, 1, hist);
            d = 2047;
            for (uint64_t above = 0; d > 0 && above + hist[d] < want; --d)
                above += hist[d];
            n = kiln_cpu_collect_at_least(x, V, key_floor(d << 21), cand);
        }
    }
    /* The want-th token of the candidates; keep those up to it. */
    const kiln_cpu_cut cut = kiln_cpu_radix_cut(x, cand, NULL, n, want, tmp_a, tmp_b);
    size_t kept = 0;
    for (size_t j = 0; j < n; ++j) {
        const uint32_t k = kiln_order_key(x[cand[j]]);
        if (k > cut.key || (k == cut.key && cand[j] <= cut.id))
            out[kept++] = cand[j];
    }
    /* insertion sort: kept == want, at most the sampler's max_top_logprobs */
    for (size_t a = 1; a < kept; ++a) {
        const uint32_t id = out[a], key = kiln_order_key(x[id]);
        size_t b = a;
        while (b > 0 && before(key, id, kiln_order_key(x[out[b - 1]]), out[b - 1])) {
            out[b] = out[b - 1];
            --b;
        }
        out[b] = id;
    }
    return kept;
}

/* 1 + the tokens before `token` in canonical order: float compares order
 * like the keys on a valid row (no NaN; -0 == +0), and ties count before
 * the token only at lower ids, so two compare loops that vectorise. */
KILN_CLONES
static int32_t rank_of(const float *x, int64_t V, uint32_t token)
{
    const float xt = x[token];
    int64_t count = 0;
    for (int64_t i = 0; i < (int64_t)token; ++i)
        count += x[i] >= xt;
    for (int64_t i = (int64_t)token + 1; i < V; ++i)
        count += x[i] > xt;
    return (int32_t)(1 + count);
}

/* Ranks of n tokens. Few distinct tokens: a counting pass each. Many: one
 * pass that places every token among the distinct ones sorted in canonical
 * order (b_i of them come before token i) and counts; the rank of the j-th
 * distinct token is the number of tokens with b_i <= j. */
void kiln_cpu_ranks(const float *x, int64_t V, const int32_t *tokens, int64_t n, int32_t *ranks,
                    uint32_t *scratch_ids, uint64_t *scratch_counts)
{
    uint32_t *d = scratch_ids;
    size_t u = 0;
    for (int64_t j = 0; j < n; ++j) {
        const uint32_t t = (uint32_t)tokens[j];
        size_t p = 0;
        while (p < u && d[p] != t)
            ++p;
        if (p == u) {
            if (u == 4)
                break;
            d[u++] = t;
        }
    }
    int many = 0;
    for (int64_t j = 0; j < n && !many; ++j) {
        size_t p = 0;
        while (p < u && d[p] != (uint32_t)tokens[j])
            ++p;
        many = p == u;
    }
    if (!many) {
        int32_t r[4];
        for (size_t p = 0; p < u; ++p)
            r[p] = rank_of(x, V, d[p]);
        for (int64_t j = 0; j < n; ++j) {
            size_t p = 0;
            while (d[p] != (uint32_t)tokens[j])
                ++p;
            ranks[j] = r[p];
        }
        return;
    }
    /* distinct tokens, sorted canonically, by binary insertion (u <= V) */
    u = 0;
    for (int64_t j = 0; j < n; ++j) {
        const uint32_t t = (uint32_t)tokens[j], kt = kiln_order_key(x[t]);
        size_t lo = 0, hi = u;
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (before(kiln_order_key(x[d[mid]]), d[mid], kt, t))
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < u && d[lo] == t)
            continue;
        for (size_t q = u; q > lo; --q)
            d[q] = d[q - 1];
        d[lo] = t;
        ++u;
    }
    for (size_t j = 0; j < u; ++j)
        scratch_counts[j] = 0;
    for (int64_t i = 0; i < V; ++i) {
        const uint32_t k = kiln_order_key(x[i]);
        size_t lo = 0, hi = u; /* first distinct token not before i */
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (before(kiln_order_key(x[d[mid]]), d[mid], k, (uint32_t)i))
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < u)
            scratch_counts[lo] += 1;
    }
    uint64_t run = 0;
    for (size_t j = 0; j < u; ++j) {
        run += scratch_counts[j];
        scratch_counts[j] = run; /* tokens before d[j], plus d[j] itself */
    }
    for (int64_t j = 0; j < n; ++j) {
        size_t lo = 0, hi = u - 1;
        const uint32_t t = (uint32_t)tokens[j];
        const uint32_t kt = kiln_order_key(x[t]);
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (before(kiln_order_key(x[d[mid]]), d[mid], kt, t))
                lo = mid + 1;
            else
                hi = mid;
        }
        ranks[j] = (int32_t)scratch_counts[lo];
    }
}
