/* Top-N log-probabilities, ranks (docs/semantics.md section 17) and
 * kiln_score (section 18): ids against an independent canonical order (a
 * qsort of the f32 logits, ties to the lower id), log-probabilities against
 * float64 log-softmax, the final top-N against the kept prefix, ranks
 * against positions in that order; kiln_score against kiln_sample's own
 * bytes for the same rows; every new bad input; invariance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "extras.h"
#include "reference.h"

#define MAXN 24

/* Section 9's raw log-probability against float64: the relative mass
 * error (< 2e-7 in ln S) plus one f32 rounding of the result. */
static double logprob_tol(double lp)
{
    return 4e-7 + 1.2e-7 * fabs(lp);
}

/* Logits with many exact ties: a few distinct values, some -0 and +0. */
static void tied_row(float *x, int64_t V, uint64_t seed)
{
    ks_rng rng = { seed };
    for (int64_t i = 0; i < V; ++i) {
        const int level = (int)(ks_rng_u64(&rng) % 6);
        x[i] = level == 0 ? -0.0f : level == 1 ? 0.0f : 0.5f * (float)(level - 1);
    }
}

typedef struct row_set {
    int64_t V;
    int rows;
    float *x;
} row_set;

static row_set make_rows(int64_t V, uint64_t seed)
{
    row_set r = { V, 4, malloc((size_t)(4 * V) * sizeof(float)) };
    ks_zipf_like(r.x, V, seed);
    ks_peaked(r.x + V, V, seed + 1);
    tied_row(r.x + 2 * V, V, seed + 2);
    ks_flat(r.x + 3 * V, V, seed + 3);
    return r;
}

static void check_raw_top(const float *x, int64_t V, const kt_full *r, int64_t b, int32_t N)
{
    int32_t *order = malloc((size_t)V * sizeof *order);
    double *x64 = malloc((size_t)V * sizeof *x64), *lsm = malloc((size_t)V * sizeof *lsm);
    kt_canonical_order(x, V, order);
    for (int64_t i = 0; i < V; ++i)
        x64[i] = x[i];
    kt_log_softmax64(x64, V, lsm);
    for (int32_t i = 0; i < N; ++i) {
        const int32_t id = r->raw_top_ids[b * N + i];
        const float lp = r->raw_top_logprobs[b * N + i];
        if (i >= V) {
            cr_assert_eq(id, -1, "row %lld top %d: id %d past V", (long long)b, i, id);
            cr_assert(lp == -INFINITY);
            continue;
        }
        cr_assert_eq(id, order[i], "row %lld top %d: id %d, canonical order has %d", (long long)b,
                     i, id, order[i]);
        if (isinf(lsm[id])) {
            cr_assert(lp == -INFINITY, "row %lld top %d: masked token with %.9g", (long long)b, i,
                      (double)lp);
            continue;
        }
        cr_assert(fabs(lp - lsm[id]) <= logprob_tol(lsm[id]),
                  "row %lld top %d (token %d): %.9g, float64 %.12g", (long long)b, i, id,
                  (double)lp, lsm[id]);
    }
    /* Ranks: 1 + the draw's position in the canonical order. */
    for (int32_t j = 0; j < r->n; ++j) {
        const int32_t t = r->tokens[b * r->n + j];
        int64_t pos = 0;
        while (order[pos] != t)
            ++pos;
        cr_assert_eq(r->raw_ranks[b * r->n + j], (int32_t)(pos + 1), "row %lld draw %d: rank %d, want %lld",
                     (long long)b, j, r->raw_ranks[b * r->n + j], (long long)(pos + 1));
        /* A drawn token in the top-N has its raw log-probability byte for byte. */
        if (pos < N)
            cr_assert_eq(memcmp(&r->raw_top_logprobs[b * N + pos], &r->raw_logprobs[b * r->n + j], 4),
                         0, "row %lld draw %d: top-N and raw_logprobs disagree", (long long)b, j);
    }
    free(order);
    free(x64);
    free(lsm);
}

/* The final top-N is the kept prefix of the canonical order, with the
 * renormalised log-probabilities at the row's temperature. */
static void check_final_top(const float *x, int64_t V, const kt_full *r, int64_t b, int32_t N,
                            double T)
{
    int32_t *order = malloc((size_t)V * sizeof *order);
    kt_canonical_order(x, V, order);
    const int32_t kept = r->kept[b];
    double m = x[order[0]], s = 0.0;
    for (int32_t i = 0; i < kept; ++i)
        s += T > 0 ? exp(((double)x[order[i]] - m) / T) : 1.0;
    for (int32_t i = 0; i < N; ++i) {
        const int32_t id = r->final_top_ids[b * N + i];
        const float lp = r->final_top_logprobs[b * N + i];
        if (i >= kept) {
            cr_assert_eq(id, -1, "row %lld final %d: id %d past the kept count %d", (long long)b, i,
                         id, kept);
            cr_assert(lp == -INFINITY);
            continue;
        }
        cr_assert_eq(id, order[i], "row %lld final %d: id %d, want %d", (long long)b, i, id,
                     order[i]);
        cr_assert_gt(r->probs[b * V + id], 0.0f, "row %lld: final top id %d has no probability",
                     (long long)b, id);
        if (T == 0) {
            cr_assert_eq(lp, 0.0f);
            continue;
        }
        const double want = ((double)x[id] - m) / T - log(s);
        cr_assert(fabs(lp - want) <= logprob_tol(want) * (1.0 + 1.0 / T),
                  "row %lld final %d: %.9g, float64 %.12g", (long long)b, i, (double)lp, want);
        for (int32_t j = 0; j < r->n; ++j)
            if (r->tokens[b * r->n + j] == id)
                cr_assert_eq(memcmp(&lp, &r->logprobs[b * r->n + j], 4), 0,
                             "row %lld: final top-N and logprobs disagree on token %d", (long long)b,
                             id);
    }
    free(order);
}

Test(top_logprobs, raw_and_final_top_n_and_ranks_against_references)
{
    const int64_t vocabs[] = { 1, 5, 37, 1000, 32000 };
    const int32_t Ns[] = { 1, 7, MAXN };
    typedef struct { float T; int32_t k; float p, min_p; } filt;
    const filt filters[] = { { 1.0f, 0, 1.0f, 0.0f }, { 0.7f, 10, 1.0f, 0.0f },
                             { 1.3f, 0, 0.8f, 0.0f }, { 0.5f, 0, 1.0f, 0.1f },
                             { 0.0f, 0, 1.0f, 0.0f } };
    enum { NDRAW = 5 };
    for (size_t vi = 0; vi < sizeof vocabs / sizeof vocabs[0]; ++vi) {
        row_set rs = make_rows(vocabs[vi], 1000 + vi);
        kt_sampler s = kt_cpu_sampler(rs.rows, rs.V, NDRAW, 0, 1, MAXN, KILN_ALGORITHM_AUTO);
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ++ni)
            for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; ++fi) {
                kt_full r = kt_full_alloc(rs.rows, rs.V, NDRAW, Ns[ni]);
                kiln_batch bt = kt_batch_f32(rs.x, rs.rows, rs.V, NDRAW);
                kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
                p.temperature_all = filters[fi].T;
                p.top_k_all = filters[fi].k;
                p.top_p_all = filters[fi].p;
                p.min_p_all = filters[fi].min_p;
                p.seed_all = 3 + fi;
                cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
                for (int b = 0; b < rs.rows; ++b) {
                    check_raw_top(rs.x + b * rs.V, rs.V, &r, b, Ns[ni]);
                    check_final_top(rs.x + b * rs.V, rs.V, &r, b, Ns[ni], filters[fi].T);
                    if (filters[fi].T == 0)
                        for (int j = 0; j < NDRAW; ++j)
                            cr_assert_eq(r.raw_ranks[b * NDRAW + j], 1);
                }
                kt_full_free(&r);
            }
        kt_destroy(&s);
        free(rs.x);
    }
}

/* Masked tokens come last with -inf, ties among them by id. */
Test(top_logprobs, masked_tokens_come_last)
{
    const float x[6] = { 1.0f, 5.0f, 2.0f, 2.0f, -1.0f, 3.0f };
    const int32_t mask = 0x3F & ~((1 << 1) | (1 << 5));
    kt_sampler s = kt_cpu_sampler(1, 6, 1, 0, 1, 8, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(1, 6, 1, 8);
    kiln_batch bt = kt_batch_f32(x, 1, 6, 1);
    bt.allowed_mask = &mask;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
    const int32_t want[8] = { 2, 3, 0, 4, 1, 5, -1, -1 };
    for (int i = 0; i < 8; ++i)
        cr_assert_eq(r.raw_top_ids[i], want[i], "top %d: %d, want %d", i, r.raw_top_ids[i], want[i]);
    for (int i = 4; i < 8; ++i)
        cr_assert(r.raw_top_logprobs[i] == -INFINITY);
    /* log-softmax over {2, 2, 1, -1}: 2 - ln(2e^2 + e + e^-1) */
    const double z = log(2.0 * exp(2.0) + exp(1.0) + exp(-1.0));
    cr_assert(fabs(r.raw_top_logprobs[0] - (2.0 - z)) <= logprob_tol(2.0 - z));
    cr_assert(fabs(r.raw_top_logprobs[3] - (-1.0 - z)) <= logprob_tol(-1.0 - z));
    cr_assert_eq(r.kept[0], 4);
    cr_assert_eq(r.final_top_ids[4], -1);
    kt_full_free(&r);
    kt_destroy(&s);
}

/* --------------------------------------------------------------- score */

typedef struct score_full {
    int64_t rows;
    int32_t K, N;
    float *logprobs;
    int32_t *ranks;
    int32_t *top_ids;
    float *top_logprobs;
    float *entropy;
    uint8_t *valid;
} score_full;

static score_full score_alloc(int64_t rows, int32_t K, int32_t N)
{
    score_full f = { rows, K, N, malloc((size_t)(rows * K) * 4 + 1),
                     malloc((size_t)(rows * K) * 4 + 1), malloc((size_t)(rows * N) * 4 + 1),
                     malloc((size_t)(rows * N) * 4 + 1), malloc((size_t)rows * 4), malloc((size_t)rows) };
    memset(f.logprobs, 0xA5, (size_t)(rows * K) * 4);
    memset(f.ranks, 0xA5, (size_t)(rows * K) * 4);
    memset(f.top_ids, 0xA5, (size_t)(rows * N) * 4);
    memset(f.top_logprobs, 0xA5, (size_t)(rows * N) * 4);
    memset(f.entropy, 0xA5, (size_t)rows * 4);
    memset(f.valid, 0xA5, (size_t)rows);
    return f;
}

static int score_untouched(const score_full *f)
{
    const struct { const void *p; size_t n; } parts[] = {
        { f->logprobs, (size_t)(f->rows * f->K) * 4 }, { f->ranks, (size_t)(f->rows * f->K) * 4 },
        { f->top_ids, (size_t)(f->rows * f->N) * 4 }, { f->top_logprobs, (size_t)(f->rows * f->N) * 4 },
        { f->entropy, (size_t)f->rows * 4 }, { f->valid, (size_t)f->rows } };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; ++i)
        for (size_t j = 0; j < parts[i].n; ++j)
            if (((const unsigned char *)parts[i].p)[j] != 0xA5)
                return 0;
    return 1;
}

static void score_free(score_full *f)
{
    free(f->logprobs);
    free(f->ranks);
    free(f->top_ids);
    free(f->top_logprobs);
    free(f->entropy);
    free(f->valid);
}

static kiln_status score_call(kt_sampler *s, const kiln_batch *bt, const kiln_sampling_params *p,
                              const int32_t *targets, score_full *f)
{
    kiln_score_outputs o = KILN_SCORE_OUTPUTS_INIT;
    o.logprobs = f->logprobs;
    o.ranks = f->ranks;
    o.num_top_logprobs = f->N;
    o.top_ids = f->N ? f->top_ids : NULL;
    o.top_logprobs = f->N ? f->top_logprobs : NULL;
    o.entropy = f->entropy;
    o.valid = f->valid;
    return kiln_score(s->sampler, bt, p, targets, f->K, &o, s->workspace, s->workspace_size, NULL);
}

/* kiln_score gives kiln_sample's own raw bytes for the same rows (mask,
 * bias and penalties included), -1 targets get NaN and rank 0, and every
 * target's log-probability matches float64. */
Test(score, equals_sample_raw_outputs_and_float64)
{
    enum { R = 5, V = 300, NDRAW = 4, K = 9, N = 6, H = 6 };
    float x[R * V];
    for (int b = 0; b < R; ++b)
        (b % 2 ? ks_zipf_like : ks_peaked)(x + b * V, V, 50 + (uint64_t)b);
    x[3 * V + 17] = NAN; /* row 3 is invalid */
    int32_t mask[R * ((V + 31) / 32)];
    for (size_t i = 0; i < sizeof mask / sizeof mask[0]; ++i)
        mask[i] = (int32_t)0xFFFF7FFF;
    const int64_t hoff[R + 1] = { 0, 2, 2, 5, 6, 6 };
    const int32_t hids[H] = { 4, 9, 4, 4, 250, 1 };
    const int64_t boff[R + 1] = { 0, 1, 3, 3, 3, 4 };
    const int32_t bids[4] = { 12, 7, 7, 299 };
    const float bvals[4] = { 2.5f, -1.0f, 4.0f, 1.25f };
    kiln_batch bt = kt_batch_f32(x, R, V, NDRAW);
    bt.history_offsets = hoff;
    bt.history_ids = hids;
    bt.allowed_mask = mask;
    bt.logit_bias_offsets = boff;
    bt.logit_bias_ids = bids;
    bt.logit_bias_values = bvals;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.repetition_penalty_all = 1.3f;
    p.frequency_penalty_all = 0.2f;
    p.presence_penalty_all = 0.1f;
    p.temperature_all = 0.9f;
    p.top_p_all = 0.9f;
    p.seed_all = 8;
    kt_sampler s = kt_cpu_sampler(R, V, NDRAW, H, 2, N, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(R, V, NDRAW, N);
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());

    /* Targets: the draws, then -1, then arbitrary ids. */
    int32_t targets[R * K];
    ks_rng rng = { 4242 };
    for (int b = 0; b < R; ++b)
        for (int j = 0; j < K; ++j)
            targets[b * K + j] = j < NDRAW ? (r.tokens[b * NDRAW + j] >= 0 ? r.tokens[b * NDRAW + j] : 0)
                                 : j == NDRAW ? -1
                                              : (int32_t)(ks_rng_u64(&rng) % V);
    kiln_batch sb = bt;
    sb.num_samples = 1;
    score_full f = score_alloc(R, K, N);
    cr_assert_eq(score_call(&s, &sb, &p, targets, &f), KILN_SUCCESS, "%s", kiln_last_error());

    for (int b = 0; b < R; ++b) {
        cr_assert_eq(f.valid[b], r.valid[b], "row %d", b);
        if (!r.valid[b]) {
            cr_assert(isnan(f.entropy[b]));
            for (int j = 0; j < K; ++j) {
                cr_assert(isnan(f.logprobs[b * K + j]));
                cr_assert_eq(f.ranks[b * K + j], 0);
            }
            for (int j = 0; j < N; ++j)
                cr_assert_eq(f.top_ids[b * N + j], -1);
            continue;
        }
        cr_assert_eq(memcmp(&f.entropy[b], &r.raw_entropy[b], 4), 0, "row %d entropy", b);
        cr_assert_eq(memcmp(f.top_ids + b * N, r.raw_top_ids + b * N, N * 4), 0, "row %d top ids", b);
        cr_assert_eq(memcmp(f.top_logprobs + b * N, r.raw_top_logprobs + b * N, N * 4), 0,
                     "row %d top logprobs", b);
        for (int j = 0; j < NDRAW; ++j) {
            cr_assert_eq(memcmp(&f.logprobs[b * K + j], &r.raw_logprobs[b * NDRAW + j], 4), 0,
                         "row %d draw %d: score %.9g, sample %.9g", b, j,
                         (double)f.logprobs[b * K + j], (double)r.raw_logprobs[b * NDRAW + j]);
            cr_assert_eq(f.ranks[b * K + j], r.raw_ranks[b * NDRAW + j]);
        }
        cr_assert(isnan(f.logprobs[b * K + NDRAW]));
        cr_assert_eq(f.ranks[b * K + NDRAW], 0);

        /* float64: mask, bias in order, then the textbook penalties. */
        double x64[V], lsm[V];
        float xf[V];
        for (int i = 0; i < V; ++i) {
            float v = x[b * V + i];
            for (int64_t e = boff[b]; e < boff[b + 1]; ++e)
                if (bids[e] == i)
                    v += bvals[e];
            if (!(((uint32_t)mask[b * ((V + 31) / 32) + i / 32] >> (i % 32)) & 1u))
                v = -INFINITY;
            xf[i] = v;
            x64[i] = v;
        }
        kt_reference_penalize(x64, V, hids + hoff[b], hoff[b + 1] - hoff[b], 0, 1.3, 0.1, 0.2);
        kt_log_softmax64(x64, V, lsm);
        /* The ranks follow the f32 penalised logits of section 1. */
        for (int i = 0; i < V; ++i) {
            int c = 0;
            for (int64_t e = hoff[b]; e < hoff[b + 1]; ++e)
                c += hids[e] == i;
            if (!c)
                continue;
            volatile float v = xf[i] > 0 ? xf[i] / 1.3f : xf[i] * 1.3f;
            v = v - 0.2f * (float)c;
            v = v - 0.1f;
            xf[i] = v;
        }
        for (int j = NDRAW + 1; j < K; ++j) {
            const int32_t t = targets[b * K + j];
            const float lp = f.logprobs[b * K + j];
            if (isinf(lsm[t]))
                cr_assert(lp == -INFINITY, "row %d masked target %d: %.9g", b, t, (double)lp);
            else
                cr_assert(fabs(lp - lsm[t]) <= logprob_tol(lsm[t]) + 1e-6 * fabs(lsm[t]),
                          "row %d target %d: %.9g, float64 %.12g", b, t, (double)lp, lsm[t]);
            int rank = 1;
            for (int i = 0; i < V; ++i)
                if (xf[i] > xf[t] || (xf[i] == xf[t] && i < t))
                    ++rank;
            cr_assert_eq(f.ranks[b * K + j], rank, "row %d target %d: rank %d, want %d", b, t,
                         f.ranks[b * K + j], rank);
        }
    }
    /* A row's score does not depend on the batch around it. */
    for (int b = 0; b < R; ++b) {
        kiln_batch one = kt_batch_f32(x + b * V, 1, V, 1);
        const int64_t ho[2] = { 0, hoff[b + 1] - hoff[b] }, bo[2] = { 0, boff[b + 1] - boff[b] };
        one.history_offsets = ho;
        one.history_ids = hids + hoff[b];
        one.allowed_mask = mask + b * ((V + 31) / 32);
        one.logit_bias_offsets = bo;
        one.logit_bias_ids = bids + boff[b];
        one.logit_bias_values = bvals + boff[b];
        score_full g = score_alloc(1, K, N);
        cr_assert_eq(score_call(&s, &one, &p, targets + b * K, &g), KILN_SUCCESS);
        cr_assert_eq(memcmp(g.logprobs, f.logprobs + b * K, K * 4), 0, "row %d alone", b);
        cr_assert_eq(memcmp(g.ranks, f.ranks + b * K, K * 4), 0);
        cr_assert_eq(memcmp(g.top_ids, f.top_ids + b * N, N * 4), 0);
        cr_assert_eq(memcmp(g.top_logprobs, f.top_logprobs + b * N, N * 4), 0);
        cr_assert_eq(memcmp(g.entropy, f.entropy + b, 4), 0);
        score_free(&g);
    }
    score_free(&f);
    kt_full_free(&r);
    kt_destroy(&s);
}

Test(top_logprobs, bad_input_is_rejected_and_writes_nothing)
{
    enum { R = 2, V = 30, N = 5 };
    float x[R * V];
    for (int b = 0; b < R; ++b)
        ks_zipf_like(x + b * V, V, 9 + (uint64_t)b);
    kt_sampler s = kt_cpu_sampler(R, V, 2, 0, 1, N, KILN_ALGORITHM_AUTO);
    kiln_batch bt = kt_batch_f32(x, R, V, 1);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;

    kt_full r = kt_full_alloc(R, V, 1, N + 1);
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_ERROR_INVALID_SHAPE);
    cr_assert(strstr(kiln_last_error(),
                     "outputs.num_top_logprobs = 6 is outside [0, 5] (the sampler's max_top_logprobs)"),
              "%s", kiln_last_error());
    cr_assert(kt_full_untouched(&r));
    kt_full_free(&r);

    r = kt_full_alloc(R, V, 1, 2);
    kiln_outputs o = kt_full_outputs(&r);
    o.num_top_logprobs = 0;
    cr_assert_eq(kiln_sample(s.sampler, &bt, &p, &o, s.workspace, s.workspace_size, NULL),
                 KILN_ERROR_INVALID_SHAPE);
    cr_assert(strstr(kiln_last_error(), "a top-N output is set but outputs.num_top_logprobs = 0"),
              "%s", kiln_last_error());
    cr_assert(kt_full_untouched(&r));
    kt_full_free(&r);

    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_vocab = V;
    cfg.max_top_logprobs = 1025;
    kiln_sampler *bad = (kiln_sampler *)&cfg;
    cr_assert_eq(kiln_sampler_create(&cfg, &bad), KILN_ERROR_INVALID_CONFIG);
    cr_assert_null(bad);
    cr_assert(strstr(kiln_last_error(), "config.max_top_logprobs = 1025 is outside [0, 1024]"), "%s",
              kiln_last_error());

    /* kiln_score */
    int32_t targets[R * 3] = { 0, 1, 2, 3, -1, 29 };
    score_full f = score_alloc(R, 3, N);
    targets[4] = -2;
    cr_assert_eq(score_call(&s, &bt, &p, targets, &f), KILN_ERROR_INVALID_PARAMETER);
    cr_assert(strstr(kiln_last_error(), "targets[4] = -2 (row 1) is outside [0, 30) and not -1"), "%s",
              kiln_last_error());
    cr_assert(score_untouched(&f));
    targets[4] = V;
    cr_assert_eq(score_call(&s, &bt, &p, targets, &f), KILN_ERROR_INVALID_PARAMETER);
    cr_assert(strstr(kiln_last_error(), "targets[4] = 30 (row 1)"), "%s", kiln_last_error());
    cr_assert(score_untouched(&f));
    targets[4] = -1;
    cr_assert_eq(score_call(&s, &bt, &p, NULL, &f), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "targets is NULL but num_targets = 3"), "%s",
              kiln_last_error());
    cr_assert(score_untouched(&f));
    kiln_batch two = bt;
    two.num_samples = 2;
    cr_assert_eq(score_call(&s, &two, &p, targets, &f), KILN_ERROR_INVALID_SHAPE);
    cr_assert(strstr(kiln_last_error(), "batch.num_samples = 2 must be 1 for kiln_score"), "%s",
              kiln_last_error());
    cr_assert(score_untouched(&f));
    score_free(&f);
    f = score_alloc(R, 3, N + 1);
    cr_assert_eq(score_call(&s, &bt, &p, targets, &f), KILN_ERROR_INVALID_SHAPE);
    cr_assert(strstr(kiln_last_error(), "num_top_logprobs = 6 is outside [0, 5]"), "%s",
              kiln_last_error());
    cr_assert(score_untouched(&f));
    score_free(&f);
    /* and the good call works */
    f = score_alloc(R, 3, N);
    cr_assert_eq(score_call(&s, &bt, &p, targets, &f), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert(isnan(f.logprobs[4]) && f.ranks[4] == 0);
    score_free(&f);
    kt_destroy(&s);
}

Test(top_logprobs, invariant_to_threads_and_algorithm)
{
    row_set rs = make_rows(5000, 77);
    enum { NDRAW = 3, N = 10 };
    kt_full ref;
    memset(&ref, 0, sizeof ref);
    const kiln_algorithm algs[] = { KILN_ALGORITHM_SORT, KILN_ALGORITHM_SELECT, KILN_ALGORITHM_AUTO };
    for (int threads = 1; threads <= 2; ++threads)
        for (int a = 0; a < 3; ++a) {
            kt_sampler s = kt_cpu_sampler(rs.rows, rs.V, NDRAW, 0, threads, N, algs[a]);
            kt_full r = kt_full_alloc(rs.rows, rs.V, NDRAW, N);
            kiln_batch bt = kt_batch_f32(rs.x, rs.rows, rs.V, NDRAW);
            kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
            p.temperature_all = 0.8f;
            p.top_k_all = 40;
            p.top_p_all = 0.9f;
            p.seed_all = 12;
            cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS);
            if (threads == 1 && a == 0)
                memcpy(&ref, &r, sizeof r), memset(&r, 0, sizeof r);
            else {
                cr_assert(kt_full_equal(&ref, &r), "threads %d algorithm %d", threads, (int)algs[a]);
                kt_full_free(&r);
            }
            kt_destroy(&s);
        }
    kt_full_free(&ref);
    free(rs.x);
}
