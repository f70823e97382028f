#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "../shared/numerics.h"
#include "../shared/philox.h"

/* One thread's scratch, carved from the caller's workspace. */
typedef struct scratch {
    float *x;        /* [V] the row as f32 after penalties, when it differs from the input */
    uint64_t *w;     /* [V] masses, then the inclusive prefix over kept tokens in id order */
    uint32_t *marks; /* [V] all zero between rows; history bookkeeping */
    uint32_t *key[2];
    uint32_t *id[2]; /* [V] each: candidates for the canonical sort */
} scratch;

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

static size_t scratch_bytes(const kiln_config *cfg)
{
    size_t v = (size_t)cfg->max_vocab;
    size_t marks = cfg->max_history > 0 ? round_up(v * 4) : 0;
    return round_up(v * 4) + round_up(v * 8) + marks + 4 * round_up(v * 4);
}

size_t kiln_cpu_workspace_size(const kiln_config *cfg)
{
    return KILN_WORKSPACE_ALIGN + (size_t)cfg->num_threads * scratch_bytes(cfg);
}

static scratch scratch_for(const kiln_sampler *s, const kiln_call *call, int thread)
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
    sc.marks = NULL;
    if (cfg->max_history > 0) {
        sc.marks = (uint32_t *)p;
        p += round_up(v * 4);
    }
    for (int i = 0; i < 2; ++i) {
        sc.key[i] = (uint32_t *)p;
        p += round_up(v * 4);
        sc.id[i] = (uint32_t *)p;
        p += round_up(v * 4);
    }
    return sc;
}

/* ------------------------------------------------------------------- rows */

static float quiet_nan(void)
{
    return kiln_f32_from_bits(0x7FC00000u);
}

static void write_invalid_row(const kiln_call *c, int64_t b)
{
    const kiln_outputs *o = &c->outputs;
    const int64_t n = c->batch.num_samples;
    for (int64_t j = 0; j < n; ++j) {
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
}

/* The row as f32 with penalties applied; returns the input itself when it is
 * already f32 and no penalty changes it. */
static const float *load_row(const kiln_call *c, int64_t b, const kiln_row_params *r,
                             scratch *sc)
{
    const kiln_batch *bt = &c->batch;
    const int64_t V = bt->vocab_size;
    const int64_t hist_len =
        bt->history_offsets ? bt->history_offsets[b + 1] - bt->history_offsets[b] : 0;
    const int penalised =
        hist_len > 0 && (r->repetition != 1.0f || r->presence != 0.0f || r->frequency != 0.0f);
    float *x = sc->x;
    if (bt->dtype == KILN_DTYPE_F32) {
        const float *in = (const float *)bt->logits + b * bt->row_stride;
        if (!penalised)
            return in;
        memcpy(x, in, (size_t)V * sizeof(float));
    } else {
        const uint16_t *in = (const uint16_t *)bt->logits + b * bt->row_stride;
        if (bt->dtype == KILN_DTYPE_F16)
            for (int64_t i = 0; i < V; ++i)
                x[i] = kiln_f16_to_f32(in[i]);
        else
            for (int64_t i = 0; i < V; ++i)
                x[i] = kiln_bf16_to_f32(in[i]);
    }
    if (penalised) {
        int64_t prompt = bt->prompt_lengths ? bt->prompt_lengths[b] : 0;
        kiln_cpu_apply_history(x, sc->marks, bt->history_ids + bt->history_offsets[b], hist_len,
                               prompt, r);
    }
    return x;
}

/* Sum of the masses of every token at T = 1: the normaliser of the raw
 * log-probabilities. */
static uint64_t mass_sum_at_t1(const float *x, int64_t V, float m)
{
    uint64_t s = 0;
    for (int64_t i = 0; i < V; ++i)
        s += kiln_mass(x[i], m, KILN_LOG2E_F);
    return s;
}

/* Marks the kept set in w (masses of dropped tokens set to 0) and returns how
 * many tokens are kept. w holds the masses; m the row max. */
static int64_t apply_filters(const float *x, int64_t V, const kiln_row_params *r, uint64_t *w,
                             int64_t nonzero, scratch *sc)
{
    const uint64_t min_mass = r->min_p > 0.0f ? kiln_ceil_scale(r->min_p, KILN_MASS_ONE) : 0;
    const uint64_t lo = min_mass > 0 ? min_mass : 1;
    const int64_t k = kiln_effective_top_k(r->top_k, V);
    int64_t kept = 0;

    if (k >= nonzero && r->top_p >= 1.0f) {
        /* Without top-k or top-p the kept set needs no order: masses are
         * monotone in the logit, so w >= lo is already a canonical prefix. */
        for (int64_t i = 0; i < V; ++i) {
            if (w[i] >= lo)
                ++kept;
            else
                w[i] = 0;
        }
        return kept;
    }

    /* Canonical order of the tokens that have mass (zero-mass tokens come
     * after all of them, by monotonicity, and can never be kept). */
    uint32_t *key = sc->key[0], *id = sc->id[0], *key_tmp = sc->key[1], *id_tmp = sc->id[1];
    size_t cand = 0;
    for (int64_t i = 0; i < V; ++i)
        if (w[i]) {
            key[cand] = kiln_order_key(x[i]);
            id[cand] = (uint32_t)i;
            ++cand;
        }
    kiln_cpu_sort_desc(&key, &id, &key_tmp, &id_tmp, cand);

    int64_t len = k < (int64_t)cand ? k : (int64_t)cand; /* top-k */
    if (r->top_p < 1.0f) {
        uint64_t mass_k = 0;
        for (int64_t i = 0; i < len; ++i)
            mass_k += w[id[i]];
        const uint64_t need = kiln_ceil_scale(r->top_p, mass_k);
        uint64_t cum = 0;
        int64_t i = 0;
        while (cum < need)
            cum += w[id[i++]];
        len = i; /* shortest prefix holding >= need */
    }
    /* Cut = last canonical token of the prefix; a token is inside iff it is
     * canonically at or before the cut. */
    const uint32_t cut_key = key[len - 1], cut_id = id[len - 1];
    for (int64_t i = 0; i < V; ++i) {
        uint32_t ki = kiln_order_key(x[i]);
        int inside = ki > cut_key || (ki == cut_key && (uint32_t)i <= cut_id);
        if (inside && w[i] >= lo)
            ++kept;
        else
            w[i] = 0;
    }
    return kept;
}

/* First index whose inclusive prefix exceeds r (prefix[V-1] > r holds). */
static int64_t upper_bound(const uint64_t *prefix, int64_t V, uint64_t r)
{
    int64_t lo = 0, hi = V - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void sample_row(const kiln_call *c, int64_t b, scratch *sc)
{
    const kiln_batch *bt = &c->batch;
    const kiln_outputs *o = &c->outputs;
    const int64_t V = bt->vocab_size, n = bt->num_samples;
    const kiln_row_params r = kiln_row_params_at(&c->params, b);
    const float *x = load_row(c, b, &r, sc);

    float m = -__builtin_inff();
    int bad = 0;
    int64_t argmax = 0;
    for (int64_t i = 0; i < V; ++i) {
        bad |= kiln_is_bad_logit(x[i]);
        if (x[i] > m) {
            m = x[i];
            argmax = i;
        }
    }
    if (bad || m == -__builtin_inff()) {
        write_invalid_row(c, b);
        return;
    }
    const int need_raw = o->raw_logprobs != NULL;

    if (r.temperature == 0.0f) {
        /* Greedy: the first maximum (x > m keeps the lowest index; -0 and
         * +0 compare equal, so they tie as the canonical order says). */
        const double log_s1 = need_raw ? kiln_log_mass(mass_sum_at_t1(x, V, m)) : 0.0;
        for (int64_t j = 0; j < n; ++j) {
            o->tokens[b * n + j] = (int32_t)argmax;
            if (o->logprobs)
                o->logprobs[b * n + j] = 0.0f;
            if (need_raw)
                o->raw_logprobs[b * n + j] = kiln_logprob(x[argmax], m, 1.0f, log_s1);
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
        return;
    }

    const float cexp = kiln_exp2_factor(r.temperature);
    uint64_t *w = sc->w;
    uint64_t total_all = 0;
    int64_t nonzero = 0;
    for (int64_t i = 0; i < V; ++i) {
        w[i] = kiln_mass(x[i], m, cexp);
        total_all += w[i];
        nonzero += w[i] != 0;
    }
    double log_s1 = 0.0;
    if (need_raw)
        log_s1 = kiln_log_mass(cexp == KILN_LOG2E_F ? total_all : mass_sum_at_t1(x, V, m));

    const int64_t kept = apply_filters(x, V, &r, w, nonzero, sc);

    /* Draws are inverse-CDF over the kept tokens in ascending id order. */
    uint64_t total = 0;
    for (int64_t i = 0; i < V; ++i) {
        total += w[i];
        w[i] = total;
    }
    const double log_s = kiln_log_mass(total);
    for (int64_t j = 0; j < n; ++j) {
        uint64_t u = kiln_philox_draw64(r.seed, (uint64_t)j, r.offset);
        int64_t t = upper_bound(w, V, kiln_scale_draw(u, total));
        o->tokens[b * n + j] = (int32_t)t;
        if (o->logprobs)
            o->logprobs[b * n + j] = kiln_logprob(x[t], m, r.temperature, log_s);
        if (need_raw)
            o->raw_logprobs[b * n + j] = kiln_logprob(x[t], m, 1.0f, log_s1);
    }
    if (o->probs) {
        float *pr = o->probs + b * o->probs_row_stride;
        const double inv = 1.0 / kiln_u64_to_f64(total);
        uint64_t prev = 0;
        for (int64_t i = 0; i < V; ++i) {
            pr[i] = kiln_prob(w[i] - prev, inv);
            prev = w[i];
        }
    }
    if (o->kept_counts)
        o->kept_counts[b] = (int32_t)kept;
    if (o->valid)
        o->valid[b] = 1;
}

void kiln_cpu_sample(const kiln_sampler *s, const kiln_call *c)
{
    const int64_t rows = c->batch.num_rows;
    const int has_history = c->batch.history_offsets != NULL;
#ifdef _OPENMP
#pragma omp parallel num_threads(s->config.num_threads)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        scratch sc = scratch_for(s, c, t);
        if (has_history)
            memset(sc.marks, 0, (size_t)c->batch.vocab_size * sizeof(uint32_t));
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t b = 0; b < rows; ++b)
            sample_row(c, b, &sc);
    }
}

void kiln_cpu_best_of_n(const float *scores, int64_t num_groups, int32_t n, int32_t *best)
{
    for (int64_t g = 0; g < num_groups; ++g) {
        const float *sg = scores + g * n;
        int32_t pick = -1;
        for (int32_t i = 0; i < n; ++i)
            if (sg[i] == sg[i] && (pick < 0 || sg[i] > sg[pick]))
                pick = i;
        best[g] = pick;
    }
}
