/* Kept sets that need no sort: every token with mass (temperature alone),
 * min-p alone as a threshold on the logits, and the draw and outputs of a
 * chunked kept set, which stores a sum per KILN_CPU_CHUNK tokens instead of
 * a mass per token and recomputes the 256 masses of the one chunk a draw
 * lands in. */
#include <string.h>

#include "cpu_kept.h"

static float key_to_float(uint32_t key)
{
    return kiln_f32_from_bits(key & 0x80000000u ? key & 0x7FFFFFFFu : ~key);
}

/* The smallest float above x (finite x; -0 counts as +0, as the keys do). */
static float next_above(float x)
{
    const uint32_t b = kiln_f32_bits(x);
    if (b == 0x80000000u || b == 0)
        return kiln_f32_from_bits(1);
    return kiln_f32_from_bits(b & 0x80000000u ? b - 1 : b + 1);
}

static int in_prefix(float x, uint32_t id, kiln_cpu_cut cut)
{
    const uint32_t k = kiln_order_key(x);
    return k > cut.key || (k == cut.key && id <= cut.id);
}

int32_t kiln_cpu_q_for_mass(uint64_t mass)
{
    /* mass_of_q is non-decreasing in q and mass_of_q(0) = 2^40 >= mass */
    int32_t lo = -(64 << 23), hi = 0;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (kiln_cpu_mass_of_q(mid) >= mass)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

float kiln_cpu_logit_for_q(float m, float c, int32_t q)
{
    /* over the keys of -inf .. m: q(x) is non-decreasing in x, q(m) = 0 >= q */
    uint32_t lo = 0x007FFFFFu, hi = kiln_order_key(m);
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (kiln_cpu_mass_q(key_to_float(mid), m, c) >= q)
            hi = mid;
        else
            lo = mid + 1;
    }
    return key_to_float(lo);
}

static kiln_cpu_kept chunked(const kiln_cpu_mass_ctx *mc, const uint64_t *chunks, uint64_t total)
{
    kiln_cpu_kept k;
    memset(&k, 0, sizeof k);
    k.form = KILN_KEPT_CHUNKED;
    k.chunks = chunks;
    k.mc = *mc;
    k.count = -1;
    k.total = total;
    return k;
}

kiln_cpu_kept kiln_cpu_keep_dense(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                  uint64_t *chunks)
{
    const uint64_t total = kiln_cpu_mass_chunks(row, mc, chunks, NULL);
    return chunked(mc, chunks, total);
}

float kiln_cpu_min_p_threshold(float m, float c, uint64_t min_mass)
{
    return kiln_cpu_logit_for_q(m, c, kiln_cpu_q_for_mass(min_mass));
}

kiln_cpu_kept kiln_cpu_keep_min_p(const kiln_cpu_row *row, float m, float c, uint64_t min_mass,
                                  uint32_t *ids, int64_t pre_n, uint64_t *w, uint64_t *chunks)
{
    kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(m, c);
    mc.qmin = kiln_cpu_q_for_mass(min_mass);
    mc.masked = 1;
    /* mass >= min_mass iff q >= qmin iff x >= x_min */
    const float x_min = kiln_cpu_logit_for_q(m, c, mc.qmin);
    /* more than V / 16 kept: the dense form (found by a collect that stops
     * there, so a sparse row is read once); a superset already collected
     * within that limit is filtered, one past it proves nothing */
    const size_t limit = (size_t)(row->n / 16);
    size_t n = 0;
    if (pre_n >= 0 && (size_t)pre_n <= limit) {
        for (size_t j = 0; j < (size_t)pre_n; ++j) {
            ids[n] = ids[j];
            n += kiln_cpu_row_at(row, ids[j]) >= x_min;
        }
    } else {
        n = kiln_cpu_row_collect_at_most(row, x_min, ids, limit);
    }
    if (n > limit)
        return kiln_cpu_keep_dense(row, &mc, chunks);
    /* the kept logits side by side (in chunks, unused by a sparse set), so
     * the vector mass pass computes their masses, then the prefix; every
     * kept token has q >= qmin, so the unmasked masses are theirs */
    float *kept_x = (float *)chunks;
    for (size_t j = 0; j < n; ++j)
        kept_x[j] = kiln_cpu_row_at(row, ids[j]);
    const kiln_cpu_row kept_row = { kept_x, 0, (int64_t)n };
    const kiln_cpu_mass_ctx plain = kiln_cpu_mass_ctx_init(m, c);
    for (size_t j = 0; j < n; j += KILN_CPU_CHUNK)
        kiln_cpu_mass_span(&kept_row, (int64_t)j,
                           (int64_t)(n - j < KILN_CPU_CHUNK ? n - j : KILN_CPU_CHUNK), &plain, w + j);
    uint64_t run = 0;
    for (size_t j = 0; j < n; ++j) {
        run += w[j];
        w[j] = run;
    }
    kiln_cpu_kept k;
    memset(&k, 0, sizeof k);
    k.form = KILN_KEPT_SPARSE;
    k.ids = ids;
    k.prefix = w;
    k.n = (int64_t)n;
    k.count = (int64_t)n;
    k.total = run;
    return k;
}

/* First entry whose inclusive prefix exceeds r (prefix[n-1] > r holds). */
static int64_t upper_bound(const uint64_t *prefix, int64_t n, uint64_t r)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The kept masses of one chunk (0 for tokens not kept). */
static void chunk_masses(const kiln_cpu_kept *k, const kiln_cpu_row *row, int64_t chunk,
                         uint64_t w[KILN_CPU_CHUNK], int64_t *len)
{
    const int64_t start = chunk * KILN_CPU_CHUNK;
    const int64_t n = row->n - start < KILN_CPU_CHUNK ? row->n - start : KILN_CPU_CHUNK;
    kiln_cpu_mass_span(row, start, n, &k->mc, w);
    if (k->has_cut)
        for (int64_t i = 0; i < n; ++i)
            if (w[i] && !in_prefix(kiln_cpu_row_at(row, start + i), (uint32_t)(start + i), k->cut))
                w[i] = 0;
    *len = n;
}

int64_t kiln_cpu_kept_token(const kiln_cpu_kept *k, const kiln_cpu_row *row, uint64_t r)
{
    if (k->form == KILN_KEPT_SPARSE)
        return k->ids[upper_bound(k->prefix, k->n, r)];
    if (k->form == KILN_KEPT_PREFIX)
        return upper_bound(k->prefix, k->n, r);
    int64_t c = 0;
    while (r >= k->chunks[c]) /* r < total, so some chunk holds it */
        r -= k->chunks[c++];
    uint64_t w[KILN_CPU_CHUNK];
    int64_t len;
    chunk_masses(k, row, c, w, &len);
    int64_t i = 0;
    while (r >= w[i])
        r -= w[i++];
    return c * KILN_CPU_CHUNK + i;
}

void kiln_cpu_kept_probs(const kiln_cpu_kept *k, const kiln_cpu_row *row, float *pr)
{
    const int64_t V = row->n;
    const double inv = 1.0 / kiln_u64_to_f64(k->total);
    if (k->form != KILN_KEPT_CHUNKED) {
        if (k->ids)
            memset(pr, 0, (size_t)V * sizeof(float));
        uint64_t prev = 0;
        for (int64_t j = 0; j < k->n; ++j) {
            pr[k->ids ? k->ids[j] : j] = kiln_prob(k->prefix[j] - prev, inv);
            prev = k->prefix[j];
        }
        return;
    }
    uint64_t w[KILN_CPU_CHUNK];
    for (int64_t c = 0; c * KILN_CPU_CHUNK < V; ++c) {
        int64_t len;
        chunk_masses(k, row, c, w, &len);
        for (int64_t i = 0; i < len; ++i)
            pr[c * KILN_CPU_CHUNK + i] = w[i] ? kiln_prob(w[i], inv) : 0.0f;
    }
}

int64_t kiln_cpu_kept_count(kiln_cpu_kept *k, const kiln_cpu_row *row)
{
    if (k->count >= 0)
        return k->count;
    /* kept iff mass > 0 (q >= -40 * 2^23) and q >= qmin, i.e. x >= a threshold */
    const int32_t q = k->mc.qmin > -(40 << 23) ? k->mc.qmin : -(40 << 23);
    if (!k->has_cut) {
        k->count = kiln_cpu_row_count_at_least(row, kiln_cpu_logit_for_q(k->mc.m, k->mc.c, q));
        return k->count;
    }
    /* with a cut, kept iff x >= xq and (x > xc, or x == xc at an id <= the
     * cut's): both thresholds on x, so counts of x >= a value do it, the
     * ties over the ids up to the cut's only */
    const float xq = kiln_cpu_logit_for_q(k->mc.m, k->mc.c, q);
    const uint32_t kc = k->cut.key;
    const float xc = kiln_f32_from_bits(kc & 0x80000000u ? kc & 0x7FFFFFFFu : ~kc);
    const float above = next_above(xc);
    if (xq >= above) {
        k->count = kiln_cpu_row_count_at_least(row, xq);
        return k->count;
    }
    /* here xq <= xc: every tie at xc reaches xq */
    const kiln_cpu_row head = { row->data, row->bf16, (int64_t)k->cut.id + 1 };
    k->count = kiln_cpu_row_count_at_least(row, above) +
               (kiln_cpu_row_count_at_least(&head, xc) - kiln_cpu_row_count_at_least(&head, above));
    return k->count;
}

uint64_t kiln_cpu_kept_mass_at(const kiln_cpu_kept *k, const kiln_cpu_row *row, int64_t v)
{
    if (k->form == KILN_KEPT_PREFIX)
        return k->prefix[v] - (v ? k->prefix[v - 1] : 0);
    if (k->form == KILN_KEPT_SPARSE) {
        int64_t lo = 0, hi = k->n;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (k->ids[mid] < (uint32_t)v)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == k->n || k->ids[lo] != (uint32_t)v)
            return 0;
        return k->prefix[lo] - (lo ? k->prefix[lo - 1] : 0);
    }
    uint64_t w;
    kiln_cpu_mass_span(row, v, 1, &k->mc, &w);
    if (w && k->has_cut && !in_prefix(kiln_cpu_row_at(row, v), (uint32_t)v, k->cut))
        w = 0;
    return w;
}

void kiln_cpu_kept_prefix(const kiln_cpu_kept *k, const kiln_cpu_row *row, uint64_t *prefix)
{
    uint64_t w[KILN_CPU_CHUNK], run = 0;
    for (int64_t c = 0; c * KILN_CPU_CHUNK < row->n; ++c) {
        int64_t len;
        chunk_masses(k, row, c, w, &len);
        for (int64_t i = 0; i < len; ++i) {
            run += w[i];
            prefix[c * KILN_CPU_CHUNK + i] = run;
        }
    }
}
