#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "cpu_kept.h"
#include "cpu_row.h"
#include "fp_mode.h"
#include "../shared/numerics.h"
#include "../shared/philox.h"
#include "../shared/speculative.h"

typedef kiln_cpu_scratch scratch;

/* The kept set of a row: either dense (prefix over all V tokens, ids NULL)
 * or sparse (ascending ids with the prefix alongside). */
typedef struct kept_set {
    const uint32_t *ids;
    const uint64_t *prefix;
    int64_t n;     /* entries in prefix */
    int64_t count; /* kept tokens */
    uint64_t total;
} kept_set;

int kiln_cpu_thread_count(int requested)
{
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

static size_t round_up(size_t v)
{
    return (v + KILN_WORKSPACE_ALIGN - 1) / KILN_WORKSPACE_ALIGN * KILN_WORKSPACE_ALIGN;
}

/* marks are always there: kiln_verify_drafts' drafts are a history even for
 * a sampler created with max_history = 0. */
static size_t scratch_bytes(const kiln_config *cfg)
{
    size_t v = (size_t)cfg->max_vocab;
    return round_up(v * 4) + round_up(v * 8) + round_up(v * 4) + round_up(v * 4) +
           2 * (round_up(v * 4) + round_up(v * 8));
}

size_t kiln_cpu_workspace_size(const kiln_config *cfg)
{
    return KILN_WORKSPACE_ALIGN + (size_t)cfg->num_threads * scratch_bytes(cfg) +
           kiln_cpu_verify_bytes(cfg);
}

char *kiln_cpu_verify_area(const kiln_sampler *s, const kiln_call *call)
{
    return kiln_workspace_base(call->workspace) +
           (size_t)s->config.num_threads * scratch_bytes(&s->config);
}

kiln_cpu_scratch kiln_cpu_scratch_for(const kiln_sampler *s, const kiln_call *call, int thread)
{
    const kiln_config *cfg = &s->config;
    size_t v = (size_t)cfg->max_vocab;
    uintptr_t base = ((uintptr_t)call->workspace + KILN_WORKSPACE_ALIGN - 1) &
                     ~(uintptr_t)(KILN_WORKSPACE_ALIGN - 1);
    char *p = (char *)base + (size_t)thread * scratch_bytes(cfg);
    scratch sc;
    sc.x = (float *)p;
    p += round_up(v * 4);
    sc.w = (uint64_t *)p;
    p += round_up(v * 8);
    sc.marks = (uint32_t *)p;
    p += round_up(v * 4);
    sc.cand = (uint32_t *)p;
    p += round_up(v * 4);
    for (int i = 0; i < 2; ++i) {
        sc.tmp[i].id = (uint32_t *)p;
        p += round_up(v * 4);
        sc.tmp[i].w = (uint64_t *)p;
        p += round_up(v * 8);
        sc.tmp[i].n = 0;
    }
    return sc;
}

/* ------------------------------------------------------------ row input */

static float quiet_nan(void)
{
    return kiln_f32_from_bits(0x7FC00000u);
}

static void write_invalid_row(const kiln_call *c, int64_t b)
{
    const kiln_outputs *o = &c->outputs;
    const int64_t n = c->batch.num_samples;
    for (int64_t j = 0; j < n; ++j) {
        if (o->tokens) /* NULL for kiln_score */
            o->tokens[b * n + j] = -1;
        if (o->logprobs)
            o->logprobs[b * n + j] = quiet_nan();
        if (o->raw_logprobs)
            o->raw_logprobs[b * n + j] = quiet_nan();
    }
    if (o->probs)
        memset(o->probs + b * o->probs_row_stride, 0, (size_t)c->batch.vocab_size * sizeof(float));
    if (o->kept_counts)
        o->kept_counts[b] = 0;
    if (o->valid)
        o->valid[b] = 0;
    kiln_cpu_write_invalid_extras(c, b);
}

kiln_cpu_row_input kiln_cpu_input_of(const kiln_call *c, int64_t b)
{
    const kiln_batch *bt = &c->batch;
    kiln_cpu_row_input in;
    in.logits = (const char *)bt->logits +
                (size_t)(b * bt->row_stride) * (bt->dtype == KILN_DTYPE_F32 ? 4 : 2);
    in.mask = bt->allowed_mask ? bt->allowed_mask + b * bt->allowed_mask_stride : NULL;
    in.bias_len = 0;
    in.bias_ids = NULL;
    in.bias_values = NULL;
    if (bt->logit_bias_offsets) {
        const int64_t at = bt->logit_bias_offsets[b];
        in.bias_len = bt->logit_bias_offsets[b + 1] - at;
        in.bias_ids = bt->logit_bias_ids + at;
        in.bias_values = bt->logit_bias_values + at;
    }
    in.history = NULL;
    in.history_len = in.prompt_len = 0;
    if (bt->history_offsets) {
        const int64_t at = bt->history_offsets[b];
        in.history = bt->history_ids + at;
        in.history_len = bt->history_offsets[b + 1] - at;
        in.prompt_len = bt->prompt_lengths ? bt->prompt_lengths[b] : 0;
    }
    in.drafts = NULL;
    in.drafts_len = 0;
    return in;
}

/* Stage 1, load: the row as the passes read it, with the logit edits of
 * docs/semantics.md section 1 (mask, bias, penalties). f32 and bf16 rows no
 * edit changes are read in place; an f16 row is converted to f32, and an
 * edited row is an f32 copy in the scratch (the mask applied while
 * copying), then biased and penalised. */
/* Whether any of the n tokens `ids` has a key at an end of [lo, hi], or
 * outside it. */
static int touches_range(const float *x, const int32_t *ids, int64_t n, uint32_t lo, uint32_t hi)
{
    int out = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t k = kiln_order_key(x[ids[i]]);
        out |= k <= lo || k >= hi;
    }
    return out;
}

static int touches_edits(const float *x, const kiln_cpu_row_input *in, int penalised, uint32_t lo,
                         uint32_t hi)
{
    return touches_range(x, in->bias_ids, in->bias_len, lo, hi) ||
           (penalised && (touches_range(x, in->history, in->history_len, lo, hi) ||
                          touches_range(x, in->drafts, in->drafts_len, lo, hi)));
}

/* The row as the passes read it. An edited row is a copy; without a mask
 * (which edits many tokens) the copy takes the key range on the way, and
 * that range stands for the edited row when no edited token held either
 * end of it before its edit or reaches either end after (*range_known). */
static kiln_cpu_row load_row(const kiln_call *c, const kiln_cpu_row_input *in,
                             const kiln_row_params *r, scratch *sc, int *range_known,
                             uint32_t *min_key, uint32_t *max_key)
{
    *range_known = 0;
    const kiln_batch *bt = &c->batch;
    const int64_t V = bt->vocab_size;
    const int penalised = in->history_len + in->drafts_len > 0 &&
                          (r->repetition != 1.0f || r->presence != 0.0f || r->frequency != 0.0f);
    const int edited = penalised || in->bias_len > 0 || in->mask;
    kiln_cpu_row row;
    row.n = V;
    row.bf16 = 0;
    row.data = in->logits;
    if (bt->dtype == KILN_DTYPE_F16) {
        const uint16_t *h = (const uint16_t *)in->logits;
        for (int64_t i = 0; i < V; ++i)
            sc->x[i] = kiln_f16_to_f32(h[i]);
        row.data = sc->x;
        if (in->mask)
            kiln_cpu_apply_mask(sc->x, in->mask, V);
    } else {
        row.bf16 = bt->dtype == KILN_DTYPE_BF16;
        if (!edited)
            return row;
        if (!in->mask) {
            *range_known = kiln_cpu_row_copy_key_range(&row, sc->x, min_key, max_key) &&
                           !touches_edits(sc->x, in, penalised, *min_key, *max_key);
        } else if (row.bf16) {
            kiln_cpu_row_to_f32(&row, sc->x);
            kiln_cpu_apply_mask(sc->x, in->mask, V);
        } else {
            kiln_cpu_copy_masked(sc->x, (const float *)in->logits, in->mask, V);
        }
        row.data = sc->x;
        row.bf16 = 0;
    }
    if (in->bias_len > 0)
        kiln_cpu_apply_logit_bias(sc->x, in->bias_ids, in->bias_values, in->bias_len);
    if (penalised)
        kiln_cpu_apply_history(sc->x, V, sc->marks, in->history, in->history_len, in->prompt_len,
                               in->drafts, in->drafts_len, r);
    if (*range_known)
        *range_known = !touches_edits(sc->x, in, penalised, *min_key, *max_key);
    return row;
}

/* The row as f32 for the paths that index logits directly (the sort path,
 * top-k select, top-p, the optional stages): the row itself, or its bf16
 * widened into the scratch. */
static const float *row_f32(const kiln_cpu_row *row, scratch *sc)
{
    if (!row->bf16)
        return (const float *)row->data;
    kiln_cpu_row_to_f32(row, sc->x);
    return sc->x;
}

/* ------------------------------------------------------------ kept sets */

/* Dense kept set from a cut: inside the prefix and mass >= lo. w holds the
 * masses on entry and the prefix on return. */
static kept_set keep_before_cut(const float *x, int64_t V, uint64_t lo, kiln_cpu_cut cut,
                                uint64_t *w)
{
    uint64_t run = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < V; ++i) {
        const uint32_t k = kiln_order_key(x[i]);
        const uint64_t kept = (uint64_t)((w[i] >= lo) &
                                         ((k > cut.key) | ((k == cut.key) & ((uint32_t)i <= cut.id))));
        count += (int64_t)kept;
        run += w[i] & (0 - kept);
        w[i] = run;
    }
    kept_set k = { NULL, w, V, count, run };
    return k;
}

/* The sort path: canonical order of the tokens with mass by a stable radix
 * sort, then top-k, top-p and the cut read off the sorted prefix. */
static kiln_cpu_cut sort_cut(const float *x, int64_t V, const kiln_row_params *r,
                             const uint64_t *w, scratch *sc)
{
    uint32_t *key = sc->tmp[0].id, *id = sc->tmp[1].id;
    uint32_t *key_tmp = sc->cand, *id_tmp = (uint32_t *)sc->tmp[0].w;
    size_t cand = 0;
    for (int64_t i = 0; i < V; ++i)
        if (w[i]) {
            key[cand] = kiln_order_key(x[i]);
            id[cand] = (uint32_t)i;
            ++cand;
        }
    kiln_cpu_sort_desc(&key, &id, &key_tmp, &id_tmp, cand);
    const int64_t k = kiln_effective_top_k(r->top_k, V);
    int64_t len = k < (int64_t)cand ? k : (int64_t)cand;
    if (r->top_p < 1.0f) {
        uint64_t mass_k = 0;
        for (int64_t i = 0; i < len; ++i)
            mass_k += w[id[i]];
        const uint64_t need = kiln_ceil_scale(r->top_p, mass_k);
        uint64_t cum = 0;
        int64_t i = 0;
        while (cum < need)
            cum += w[id[i++]];
        len = i;
    }
    kiln_cpu_cut cut = { key[len - 1], id[len - 1] };
    return cut;
}

/* The smallest logit whose key is at least `min_key` (keys of valid rows
 * start at -inf's, 0x007FFFFF). */
static float key_floor(uint32_t min_key)
{
    if (min_key <= 0x007FFFFFu)
        return -__builtin_inff();
    return kiln_f32_from_bits(min_key & 0x80000000u ? min_key & 0x7FFFFFFFu : ~min_key);
}

/* The select path for top-k: the k-th canonical token by radix select over
 * the keys alone (no exponentials), masses only for the candidates, then
 * top-p among them and min-p. The kept set comes back sparse.
 *
 * Candidates are the tokens at or above a threshold estimated from a key
 * histogram of every 16th token. Any threshold that at least k tokens reach
 * holds the whole top-k set, and that is checked exactly: when fewer are
 * collected, an exact histogram of every token picks the bucket and the row
 * is collected again. The estimate only decides speed, never the answer. */
/* digits below the sample's top that the first histogram counts: 8 octaves */
enum { TOP_DIGITS = 32 };

static int64_t top_k_stride(int64_t V)
{
    return V >= 65536 ? 32 : V >= 16384 ? 16 : 1;
}

/* about 1.5 k + 64 candidates, counted in sampled tokens (2 k + 128 at
 * stride 32, whose sample counts half as many: the margin over k in
 * standard deviations of that count stays about the same) */
static uint64_t top_k_want(int64_t V, int64_t k)
{
    const int64_t stride = top_k_stride(V);
    const int64_t aim = stride > 16 ? 2 * k + 128 : 3 * k / 2 + 64;
    return (uint64_t)((aim + stride - 1) / stride);
}

/* Whether the candidates come from a threshold (else the row is not much
 * longer than `want`, and every token is one). */
static int top_k_sampled(int64_t V, int64_t k)
{
    return (uint64_t)V > 2 * top_k_want(V, k);
}

/* The candidates' threshold: the floor of the bucket where the sampled
 * count from the top reaches `want`. The candidates' digits are near the
 * top, so those are counted first (a compare per block instead of an
 * increment per sampled token), the whole sample only when they are fewer
 * than wanted; the digit found is the same either way. It needs no max, so
 * the collect can run with the key range (kiln_cpu_row_range_collect). */
static float top_k_threshold(const kiln_cpu_row *row, int64_t k)
{
    const int64_t stride = top_k_stride(row->n);
    const uint64_t want = top_k_want(row->n, k);
    uint32_t hist[2048], dmin;
    if (stride == 1 || kiln_cpu_row_key_hist_top(row, stride, TOP_DIGITS, hist, &dmin) < want)
        kiln_cpu_row_key_hist(row, stride, hist);
    uint32_t d = 2047;
    for (uint64_t above = 0; d > 0 && above + hist[d] < want; --d)
        above += hist[d];
    return key_floor(d << 21);
}

/* pre_n: the candidates at top_k_threshold, already in sc->cand (the key
 * range's pass collected them), or -1 */
static kept_set keep_top_k_select(const kiln_cpu_row *row, int64_t k, const kiln_row_params *r,
                                  float m, float cexp, uint64_t lo, int64_t pre_n, scratch *sc)
{
    const int64_t V = row->n;
    const int64_t stride = top_k_stride(V);
    uint32_t hist[2048];
    uint32_t *ids = sc->cand;
    size_t n;
    uint32_t d = 0;
    if (!top_k_sampled(V, k)) {
        for (int64_t i = 0; i < V; ++i)
            ids[i] = (uint32_t)i;
        n = (size_t)V;
    } else {
        n = pre_n >= 0 ? (size_t)pre_n
                       : kiln_cpu_row_collect_at_least(row, top_k_threshold(row, k), ids);
    }
    if (n < (size_t)k && stride > 1) {
        /* the sample misled (adversarial rows can): the exact histogram
         * names the bucket that holds the k-th key */
        kiln_cpu_row_key_hist(row, 1, hist);
        d = 2047;
        for (uint64_t above = 0; above + hist[d] < (uint64_t)k; --d)
            above += hist[d];
        n = kiln_cpu_row_collect_at_least(row, key_floor(d << 21), ids);
    }
    /* The selects run over the candidates' keys packed in id order (tmp[0].w
     * is free here; x may hold the row itself), so ties break by id. */
    uint32_t *key = (uint32_t *)sc->tmp[0].w;
    for (size_t j = 0; j < n; ++j)
        key[j] = kiln_order_key(kiln_cpu_row_at(row, ids[j]));
    const size_t at_k = kiln_cpu_packed_cut(key, NULL, n, (uint64_t)k, sc->tmp[0].id, sc->tmp[1].id);
    const uint32_t key_k = key[at_k]; /* the loop below moves keys down */
    uint64_t *w = sc->w;
    uint64_t mass_k = 0;
    size_t in_k = 0;
    for (size_t j = 0; j < n; ++j) {
        if (kiln_cpu_in_packed_prefix(key[j], j, key_k, at_k)) {
            const float xj = kiln_cpu_row_at(row, ids[j]);
            ids[in_k] = ids[j];
            key[in_k] = key[j];
            mass_k += w[in_k] = kiln_mass(xj, m, cexp);
            ++in_k;
        }
    }
    n = in_k;

    /* top-p within the top-k set: the prefix up to the token at_p */
    const int cut_p = r->top_p < 1.0f;
    const size_t at_p =
        cut_p ? kiln_cpu_packed_cut(key, w, n, kiln_ceil_scale(r->top_p, mass_k), sc->tmp[0].id,
                                    sc->tmp[1].id)
              : 0;
    const uint32_t key_p = key[at_p];
    uint64_t run = 0;
    size_t kept = 0;
    for (size_t j = 0; j < n; ++j)
        if (w[j] >= lo && (!cut_p || kiln_cpu_in_packed_prefix(key[j], j, key_p, at_p))) {
            run += w[j];
            ids[kept] = ids[j];
            w[kept] = run;
            ++kept;
        }
    kept_set ks = { ids, w, (int64_t)kept, (int64_t)kept, run };
    return ks;
}

/* --------------------------------------------------------------- a row */

/* First entry whose inclusive prefix exceeds r (prefix[n-1] > r holds). */
int64_t kiln_cpu_upper_bound(const uint64_t *prefix, int64_t n, uint64_t r)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static kiln_cpu_work work_for(scratch *sc)
{
    kiln_cpu_work wk = { sc->cand, &sc->tmp[0], &sc->tmp[1], (uint32_t *)sc->w };
    return wk;
}

/* log S1: the log of the sum of every mass at T = 1 (raw log-probabilities). */
static double log_s1_of(const kiln_cpu_dist *d)
{
    if (d->have_raw)
        return kiln_log_mass(d->raw.mass);
    if (d->cexp == KILN_LOG2E_F && d->have_total_all)
        return kiln_log_mass(d->total_all);
    const kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(d->m, KILN_LOG2E_F);
    return kiln_log_mass(kiln_cpu_mass_chunks(&d->row, &mc, NULL, NULL));
}

static kiln_cpu_kept from_kept_set(kept_set ks)
{
    kiln_cpu_kept k;
    memset(&k, 0, sizeof k);
    k.form = ks.ids ? KILN_KEPT_SPARSE : KILN_KEPT_PREFIX;
    k.ids = ks.ids;
    k.prefix = ks.prefix;
    k.n = ks.n;
    k.count = ks.count;
    k.total = ks.total;
    return k;
}

void kiln_cpu_distribution(const kiln_sampler *s, const kiln_call *c, const kiln_cpu_row_input *in,
                           kiln_row_params r, int want_raw, scratch *sc, kiln_cpu_dist *d)
{
    const int64_t V = c->batch.vocab_size;
    memset(d, 0, sizeof *d);
    uint32_t min_key, max_key;
    int range_known;
    d->row = load_row(c, in, &r, sc, &range_known, &min_key, &max_key);
    d->argmax = -1;
    const kiln_cpu_row *row = &d->row;

    /* Stage 2, validity and the max. NaN sorts above +inf or below -inf in
     * key order, so the key range answers validity. */
    /* Candidates that need no max are collected by the pass that finds the
     * range, where they will be used: a top-k row's (top_k_threshold), and a
     * superset of a min-p row's, those at min-p's threshold for the max of a
     * sample (no more than the row's, so no higher a threshold; dynatemp,
     * which changes the temperature after, takes the usual path). */
    int64_t pre_n = -1;
    const int64_t k0 = kiln_effective_top_k(r.top_k, V);
    if (!range_known && s->config.algorithm != KILN_ALGORITHM_SORT && r.temperature != 0.0f) {
        if (k0 < V && top_k_sampled(V, k0)) {
            pre_n = (int64_t)kiln_cpu_row_range_collect(row, top_k_threshold(row, k0), sc->cand,
                                                        (size_t)V, &range_known, &min_key, &max_key);
        } else if (k0 == V && r.top_p >= 1.0f && r.min_p > 0.0f && !kiln_dynatemp_on(&r)) {
            const float m0 = kiln_cpu_row_sample_max(row);
            if (m0 > -__builtin_inff() && m0 < __builtin_inff()) {
                const float x0 = kiln_cpu_min_p_threshold(m0, kiln_exp2_factor(r.temperature),
                                                          kiln_ceil_scale(r.min_p, KILN_MASS_ONE));
                pre_n = (int64_t)kiln_cpu_row_range_collect(row, x0, sc->cand, (size_t)(V / 16),
                                                            &range_known, &min_key, &max_key);
            }
        }
    }
    if (!range_known)
        kiln_cpu_row_key_range(row, &min_key, &max_key);
    const uint32_t key_pos_inf = 0xFF800000u, key_neg_inf = 0x007FFFFFu;
    if (max_key >= key_pos_inf || min_key < key_neg_inf || max_key == key_neg_inf) {
        d->status = KILN_CPU_ROW_INVALID;
        return;
    }
    /* the float whose key is max_key (+0 for the key of zero, which -0
     * equals too). m is the logit of the first token with that key: only
     * greedy rows and a top key of zero (whose sign the log-probabilities
     * can see) need to look for it. */
    const float top = kiln_f32_from_bits(max_key & 0x80000000u ? max_key & 0x7FFFFFFFu : ~max_key);
    float m = top;
    if (max_key == 0x80000000u) {
        d->argmax = kiln_cpu_row_find_first(row, top);
        m = kiln_cpu_row_at(row, d->argmax);
    }
    d->m = m;
    /* The raw distribution's entropy sums, for dynatemp and the raw entropy
     * (docs/semantics.md sections 15 and 16); they give S1 too. */
    if (kiln_dynatemp_on(&r) || want_raw) {
        const kiln_cpu_mass_ctx mc1 = kiln_cpu_mass_ctx_init(m, KILN_LOG2E_F);
        d->raw = kiln_cpu_mass_entropy(row, &mc1, NULL);
        d->have_raw = 1;
        if (kiln_dynatemp_on(&r))
            r.temperature =
                kiln_dynatemp(r.temperature, r.dynatemp_range, r.dynatemp_exponent,
                              kiln_entropy_nats(d->raw.mass, d->raw.exponent), d->raw.count);
    }
    d->r = r;
    if (r.temperature == 0.0f) {
        if (d->argmax < 0)
            d->argmax = kiln_cpu_row_find_first(row, top);
        d->status = KILN_CPU_ROW_GREEDY;
        d->count = 1;
        return;
    }
    d->status = KILN_CPU_ROW_SAMPLE;

    /* Stage 3, the kept set. */
    const int64_t k = k0; /* top_k is not changed by dynatemp */
    const float cexp = kiln_exp2_factor(r.temperature);
    const uint64_t min_mass = r.min_p > 0.0f ? kiln_ceil_scale(r.min_p, KILN_MASS_ONE) : 0;
    const uint64_t lo = min_mass > 0 ? min_mass : 1;
    const int ordered = k < V || r.top_p < 1.0f;
    /* total over every token at cexp, when a path computes it */
    uint64_t total_all = 0;
    int have_total_all = 1;
    kiln_cpu_kept kept;
    if (s->config.algorithm == KILN_ALGORITHM_SORT) {
        const float *x = row_f32(row, sc);
        total_all = kiln_cpu_masses(x, V, m, cexp, sc->w);
        const kiln_cpu_cut cut = ordered ? sort_cut(x, V, &r, sc->w, sc) : (kiln_cpu_cut){ 0, 0 };
        kept = from_kept_set(keep_before_cut(x, V, lo, cut, sc->w));
    } else if (!ordered && min_mass > 0) {
        kept = kiln_cpu_keep_min_p(row, m, cexp, min_mass, sc->cand, pre_n, sc->w, sc->tmp[1].w);
        have_total_all = 0;
    } else if (!ordered) {
        const kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(m, cexp);
        kept = kiln_cpu_keep_dense(row, &mc, sc->tmp[1].w);
        total_all = kept.total;
    } else if (k < V) {
        kept = from_kept_set(keep_top_k_select(row, k, &r, m, cexp, lo, pre_n, sc));
        have_total_all = 0;
    } else if (!kiln_cpu_keep_top_p(row, m, cexp, r.top_p, lo, sc, &kept, &total_all)) {
        const float *x = row_f32(row, sc);
        total_all = kiln_cpu_masses(x, V, m, cexp, sc->w);
        const kiln_cpu_cut cut = kiln_cpu_radix_cut(
            x, NULL, sc->w, (size_t)V, kiln_ceil_scale(r.top_p, total_all), &sc->tmp[0], &sc->tmp[1]);
        kept = from_kept_set(keep_before_cut(x, V, lo, cut, sc->w));
    }
    d->cexp = cexp;
    d->kept = kept;
    d->total = kept.total;
    d->count = kept.count;
    d->log_s = kiln_log_mass(kept.total);
    d->total_all = total_all;
    d->have_total_all = have_total_all;
}

void kiln_cpu_dist_expand(kiln_cpu_dist *d, int want_kept, scratch *sc)
{
    if (!d->x)
        d->x = row_f32(&d->row, sc);
    if (d->status == KILN_CPU_ROW_SAMPLE) {
        if (d->count < 0)
            d->count = kiln_cpu_kept_count(&d->kept, &d->row);
        if (want_kept && !d->prefix) {
            if (d->kept.form == KILN_KEPT_CHUNKED) {
                /* the chunk sums live elsewhere (tmp[1]); w is free */
                kiln_cpu_kept_prefix(&d->kept, &d->row, sc->w);
                d->prefix = sc->w;
                d->ids = NULL;
                d->n = d->row.n;
            } else {
                d->prefix = d->kept.prefix;
                d->ids = d->kept.ids;
                d->n = d->kept.n;
            }
        }
    }
}

int64_t kiln_cpu_draw(const kiln_cpu_dist *d, uint64_t u)
{
    if (d->status == KILN_CPU_ROW_GREEDY)
        return d->argmax;
    return kiln_cpu_kept_token(&d->kept, &d->row, kiln_scale_draw(u, d->total));
}

uint64_t kiln_cpu_kept_mass(const kiln_cpu_dist *d, int64_t v)
{
    if (d->status == KILN_CPU_ROW_GREEDY)
        return v == d->argmax;
    return kiln_cpu_kept_mass_at(&d->kept, &d->row, v);
}

static void write_greedy_row(const kiln_call *c, int64_t b, const kiln_cpu_dist *d)
{
    const kiln_outputs *o = &c->outputs;
    const int64_t V = c->batch.vocab_size, n = c->batch.num_samples;
    const double log_s1 = o->raw_logprobs ? log_s1_of(d) : 0.0;
    const int64_t argmax = d->argmax;
    const float xt = kiln_cpu_row_at(&d->row, argmax);
    for (int64_t j = 0; j < n; ++j) {
        o->tokens[b * n + j] = (int32_t)argmax;
        if (o->logprobs)
            o->logprobs[b * n + j] = 0.0f;
        if (o->raw_logprobs)
            o->raw_logprobs[b * n + j] = kiln_logprob(xt, d->m, 1.0f, log_s1);
    }
    if (o->probs) {
        float *pr = o->probs + b * o->probs_row_stride;
        memset(pr, 0, (size_t)V * sizeof(float));
        pr[argmax] = 1.0f;
    }
    if (o->kept_counts)
        o->kept_counts[b] = 1;
    if (o->valid)
        o->valid[b] = 1;
}

/* Whether any output of sections 15-17 is asked for. */
static int wants_extras(const kiln_outputs *o)
{
    return o->num_top_logprobs > 0 || o->raw_ranks || o->entropy || o->raw_entropy ||
           o->temperatures;
}

static void sample_row(const kiln_sampler *s, const kiln_call *c, int64_t b, scratch *sc)
{
    const kiln_batch *bt = &c->batch;
    const kiln_outputs *o = &c->outputs;
    const int64_t n = bt->num_samples;
    const kiln_cpu_row_input in = kiln_cpu_input_of(c, b);
    kiln_row_params r0 = kiln_row_params_at(&c->params, b);
    if (c->is_score) {
        /* kiln_score reads the penalties only: the raw distribution */
        r0.temperature = 0.0f;
        r0.dynatemp_range = 0.0f;
    }
    kiln_cpu_dist d;
    kiln_cpu_distribution(s, c, &in, r0, !c->is_score && o->raw_entropy != NULL, sc, &d);
    if (d.status == KILN_CPU_ROW_INVALID) {
        write_invalid_row(c, b);
        return;
    }
    if (c->is_score) {
        kiln_cpu_dist_expand(&d, 0, sc);
        kiln_cpu_work wk = work_for(sc);
        kiln_cpu_score_row(c, b, d.x, d.m, &wk);
        return;
    }
    const kiln_cpu_entropy_sums *raw = d.have_raw ? &d.raw : NULL;
    if (d.status == KILN_CPU_ROW_GREEDY) {
        write_greedy_row(c, b, &d);
    } else {
        /* Stage 4, draws and outputs. */
        const kiln_row_params *r = &d.r;
        const double log_s1 = o->raw_logprobs ? log_s1_of(&d) : 0.0;
        for (int64_t j = 0; j < n; ++j) {
            const int64_t t =
                kiln_cpu_draw(&d, kiln_philox_draw64(r->seed, (uint64_t)j, r->offset));
            const float xt = kiln_cpu_row_at(&d.row, t);
            o->tokens[b * n + j] = (int32_t)t;
            if (o->logprobs)
                o->logprobs[b * n + j] = kiln_logprob(xt, d.m, r->temperature, d.log_s);
            if (o->raw_logprobs)
                o->raw_logprobs[b * n + j] = kiln_logprob(xt, d.m, 1.0f, log_s1);
        }
        if (o->probs)
            kiln_cpu_kept_probs(&d.kept, &d.row, o->probs + b * o->probs_row_stride);
        if (o->kept_counts)
            o->kept_counts[b] = (int32_t)kiln_cpu_kept_count(&d.kept, &d.row);
        if (o->valid)
            o->valid[b] = 1;
    }
    if (wants_extras(o)) {
        /* Stage 5, the outputs of sections 15-17 (they read the row as f32).
         * The final entropy of a chunked kept set is one vectorised pass over
         * the row; the other forms are few tokens, read from their prefix. */
        kiln_cpu_entropy_sums final_sums;
        const kiln_cpu_entropy_sums *fin = NULL;
        if (o->entropy && d.status == KILN_CPU_ROW_SAMPLE && d.kept.form == KILN_KEPT_CHUNKED) {
            final_sums = kiln_cpu_mass_entropy(&d.row, &d.kept.mc,
                                               d.kept.has_cut ? &d.kept.cut : NULL);
            fin = &final_sums;
        }
        kiln_cpu_dist_expand(&d, o->entropy != NULL && !fin, sc);
        const double log_s1 = o->raw_top_logprobs ? log_s1_of(&d) : 0.0;
        const kiln_cpu_row_state st = { d.x,      d.m,      d.r.temperature, d.cexp,  d.argmax,
                                        d.ids,    d.prefix, d.n,             d.count, d.log_s,
                                        raw,      fin,      log_s1 };
        kiln_cpu_work wk = work_for(sc);
        kiln_cpu_write_extras(c, b, &st, &wk);
    }
}

void kiln_cpu_sample(const kiln_sampler *s, const kiln_call *c)
{
    const int64_t rows = c->batch.num_rows;
#ifdef _OPENMP
#pragma omp parallel num_threads(s->config.num_threads)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        const kiln_fp_mode fp = kiln_fp_mode_enter();
        scratch sc = kiln_cpu_scratch_for(s, c, t);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t b = 0; b < rows; ++b)
            sample_row(s, c, b, &sc);
        kiln_fp_mode_leave(fp);
    }
}

void kiln_cpu_best_of_n(const float *scores, int64_t num_groups, int32_t n, int32_t *best)
{
    const kiln_fp_mode fp = kiln_fp_mode_enter(); /* DAZ would tie a subnormal with 0 */
    for (int64_t g = 0; g < num_groups; ++g) {
        const float *sg = scores + g * n;
        int32_t pick = -1;
        for (int32_t i = 0; i < n; ++i)
            if (sg[i] == sg[i] && (pick < 0 || sg[i] > sg[pick]))
                pick = i;
        best[g] = pick;
    }
    kiln_fp_mode_leave(fp);
}
