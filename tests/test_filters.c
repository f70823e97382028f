/* Filter semantics at their edges (docs/semantics.md sections 3-10): the
 * disabled values of each filter, extreme temperatures, -inf masks, ties at
 * the top-k boundary, the order top-k -> top-p -> min-p, log-probabilities,
 * against closed forms and the double-precision reference. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "reference.h"
#include "shared/numerics.h" /* kiln_mass: section 5's mass, the oracle for exact thresholds */

typedef struct cfg {
    float t;
    int32_t k;
    float p, min_p;
} cfg;

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* One row, every output, parameters as scalars (or as length-1 arrays). */
static void sample_row(const float *x, int64_t vocab, int32_t n, cfg c, uint64_t seed,
                       int as_arrays, kt_result *out)
{
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, vocab, n, 0, 1);
    kiln_batch b = kt_batch_f32(x, 1, vocab, n);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = c.t;
    p.top_k_all = c.k;
    p.top_p_all = c.p;
    p.min_p_all = c.min_p;
    p.seed_all = seed;
    p.offset_all = 9;
    if (as_arrays) {
        p.temperature = &c.t;
        p.top_k = &c.k;
        p.top_p = &c.p;
        p.min_p = &c.min_p;
    }
    kt_result_poison(out);
    kiln_status st = kt_sample(&s, &b, &p, out);
    cr_assert_eq(st, KILN_SUCCESS, "%s (T %g k %d p %g min_p %g)", kiln_last_error(),
                 (double)c.t, c.k, (double)c.p, (double)c.min_p);
    kt_destroy(&s);
}

/* The kept set is exactly `ids` (count `len`), each with probability
 * `prob` bit for bit, and every draw is in it. */
static void assert_kept_uniform(const kt_result *r, const int32_t *ids, int64_t len, float prob,
                                const char *what)
{
    cr_assert_eq(r->valid[0], 1, "%s: row invalid", what);
    cr_assert_eq(r->kept[0], len, "%s: kept %d, expected %lld", what, r->kept[0], (long long)len);
    char *in = calloc((size_t)r->vocab, 1);
    for (int64_t i = 0; i < len; ++i)
        in[ids[i]] = 1;
    for (int64_t i = 0; i < r->vocab; ++i) {
        float want = in[i] ? prob : 0.0f;
        cr_assert_eq(f32_bits(r->probs[i]), f32_bits(want), "%s: prob[%lld] = %a, expected %a",
                     what, (long long)i, (double)r->probs[i], (double)want);
    }
    for (int j = 0; j < r->n; ++j)
        cr_assert(r->tokens[j] >= 0 && r->tokens[j] < r->vocab && in[r->tokens[j]],
                  "%s: draw %d is token %d, outside the kept set", what, j, r->tokens[j]);
    free(in);
}

static void assert_only(const kt_result *r, int32_t id, const char *what)
{
    assert_kept_uniform(r, &id, 1, 1.0f, what);
}

/* Probabilities within 2e-6 of `expect` (kept set equal to expect > 0). */
static void assert_probs(const kt_result *r, const double *expect, const char *what)
{
    int64_t kept = 0;
    for (int64_t i = 0; i < r->vocab; ++i) {
        kept += expect[i] > 0.0;
        cr_assert((r->probs[i] > 0.0f) == (expect[i] > 0.0) &&
                      fabs((double)r->probs[i] - expect[i]) < 2e-6,
                  "%s: prob[%lld] = %.9f, expected %.9f", what, (long long)i,
                  (double)r->probs[i], expect[i]);
    }
    cr_assert_eq(r->kept[0], kept, "%s: kept %d, expected %lld", what, r->kept[0],
                 (long long)kept);
    for (int j = 0; j < r->n; ++j)
        cr_assert(expect[r->tokens[j]] > 0.0, "%s: drew token %d of probability 0", what,
                  r->tokens[j]);
}

/* Softmax of x / T over `ids` (the expected distribution of a kept set). */
static void softmax_over(const float *x, int64_t vocab, double t, const int32_t *ids, int len,
                         double *out)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = 0.0;
    for (int i = 0; i < len; ++i)
        m = fmax(m, (double)x[ids[i]] / t);
    for (int i = 0; i < len; ++i)
        s += out[ids[i]] = exp((double)x[ids[i]] / t - m);
    for (int i = 0; i < len; ++i)
        out[ids[i]] /= s;
}

static int64_t first_argmax(const float *x, int64_t vocab)
{
    int64_t a = 0;
    for (int64_t i = 1; i < vocab; ++i)
        if (x[i] > x[a])
            a = i;
    return a;
}

/* ---------------------------------------------------------------- top-k */

/* Max 2.5 at ids 5, 9 and 300 (lowest id 5); -0 vs +0 handled separately. */
static void tied_row(float *x, int64_t vocab, uint64_t seed)
{
    ks_zipf_like(x, vocab, seed);
    for (int64_t i = 0; i < vocab; ++i)
        x[i] = fminf(x[i], 2.0f);
    x[5] = x[9] = x[300] = 2.5f;
}

Test(top_k, k_1_is_greedy_token)
{
    enum { VV = 1000, NN = 32 };
    float rows[3][VV];
    ks_zipf_like(rows[0], VV, 1);
    tied_row(rows[1], VV, 2);
    /* -0 at id 2 and +0 at id 700 tie as the max; the lower id wins even
     * though its bits sort below +0's. */
    ks_zipf_like(rows[2], VV, 3);
    for (int64_t i = 0; i < VV; ++i)
        rows[2][i] = -fabsf(rows[2][i]) - 1.0f;
    rows[2][2] = -0.0f;
    rows[2][700] = 0.0f;
    const int32_t expect[3] = { 0, 5, 2 };
    kt_result r = kt_result_alloc(1, VV, NN), g = kt_result_alloc(1, VV, NN);
    for (int row = 0; row < 3; ++row) {
        sample_row(rows[row], VV, NN, (cfg){ 0.0f, 0, 1.0f, 0.0f }, 5, 0, &g);
        assert_only(&g, expect[row], "greedy");
        cr_assert_eq(first_argmax(rows[row], VV), expect[row]);
        static const float temps[] = { 0.05f, 1.0f, 2.0f, 1e30f };
        for (int ti = 0; ti < 4; ++ti) {
            sample_row(rows[row], VV, NN, (cfg){ temps[ti], 1, 1.0f, 0.0f }, 5, 0, &r);
            assert_only(&r, expect[row], "k = 1");
            for (int j = 0; j < NN; ++j)
                cr_assert(r.tokens[j] == g.tokens[j] && r.logprobs[j] == 0.0f &&
                              f32_bits(r.raw_logprobs[j]) == f32_bits(g.raw_logprobs[j]),
                          "row %d T %g draw %d: token %d logprob %a raw %a; greedy %d raw %a",
                          row, (double)temps[ti], j, r.tokens[j], (double)r.logprobs[j],
                          (double)r.raw_logprobs[j], g.tokens[j], (double)g.raw_logprobs[j]);
        }
    }
    kt_result_free(&r);
    kt_result_free(&g);
}

Test(top_k, disabled_values_equal_no_top_k)
{
    enum { VV = 700, NN = 16 };
    float rows[3][VV];
    ks_zipf_like(rows[0], VV, 4);
    tied_row(rows[1], VV, 5);
    ks_zipf(rows[2], VV, 6);
    for (int64_t i = 0; i < VV; i += 3)
        rows[2][i] = -INFINITY;
    const cfg others[] = { { 0.9f, 0, 1.0f, 0.0f },
                           { 0.9f, 0, 0.9f, 0.0f },
                           { 1.4f, 0, 1.0f, 0.05f },
                           { 0.6f, 0, 0.8f, 0.1f },
                           { 0.0f, 0, 0.5f, 0.0f } };
    const int32_t off_k[] = { VV, VV + 5, VV + 1, -1, INT32_MAX, INT32_MIN };
    kt_result a = kt_result_alloc(1, VV, NN), b = kt_result_alloc(1, VV, NN);
    for (int row = 0; row < 3; ++row)
        for (size_t c = 0; c < sizeof others / sizeof *others; ++c) {
            sample_row(rows[row], VV, NN, others[c], 77, 0, &a);
            for (size_t i = 0; i < sizeof off_k / sizeof *off_k; ++i) {
                cfg cc = others[c];
                cc.k = off_k[i];
                sample_row(rows[row], VV, NN, cc, 77, (int)(i & 1), &b);
                cr_assert(kt_result_equal(&a, &b),
                          "row %d, T %g p %g min_p %g: k = %d differs from k = 0 (kept %d vs %d)",
                          row, (double)cc.t, (double)cc.p, (double)cc.min_p, cc.k, b.kept[0],
                          a.kept[0]);
            }
        }
    kt_result_free(&a);
    kt_result_free(&b);
}

Test(top_k, ties_across_the_boundary_go_to_lower_ids)
{
    /* canonical order: 1 (3), 3 (3), 2 (2), 4 (2), 5 (2), 0 (1), 6 (0) */
    const float x[7] = { 1.0f, 3.0f, 2.0f, 3.0f, 2.0f, 2.0f, 0.0f };
    const int32_t order[7] = { 1, 3, 2, 4, 5, 0, 6 };
    double e[7];
    kt_result r = kt_result_alloc(1, 7, 64);
    for (int k = 1; k <= 6; ++k) {
        softmax_over(x, 7, 1.0, order, k, e);
        sample_row(x, 7, 64, (cfg){ 1.0f, k, 1.0f, 0.0f }, 3, 0, &r);
        char what[32];
        snprintf(what, sizeof what, "k = %d", k);
        assert_probs(&r, e, what);
    }
    kt_result_free(&r);
}

/* ----------------------------------------------------------------- top-p */

Test(top_p, one_equals_no_top_p)
{
    enum { VV = 1000, NN = 16 };
    float x[VV];
    ks_zipf_like(x, VV, 8);
    kt_result a = kt_result_alloc(1, VV, NN), b = kt_result_alloc(1, VV, NN);
    const int32_t ks[] = { 0, 40 };
    const float mps[] = { 0.0f, 0.01f };
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
            /* "No top-p" is the INIT default; p = 1 here comes as an array. */
            kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, VV, NN, 0, 1);
            kiln_batch bt = kt_batch_f32(x, 1, VV, NN);
            kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
            p.temperature_all = 0.8f;
            p.top_k_all = ks[i];
            p.min_p_all = mps[j];
            p.seed_all = 5;
            p.offset_all = 9;
            kt_result_poison(&a);
            cr_assert_eq(kt_sample(&s, &bt, &p, &a), KILN_SUCCESS);
            kt_destroy(&s);
            sample_row(x, VV, NN, (cfg){ 0.8f, ks[i], 1.0f, mps[j] }, 5, 1, &b);
            cr_assert(kt_result_equal(&a, &b), "k %d min_p %g: p = 1 differs from no top-p",
                      ks[i], (double)mps[j]);
        }
    /* p = 1 keeps every top-k survivor. */
    sample_row(x, VV, NN, (cfg){ 1.0f, 40, 1.0f, 0.0f }, 5, 0, &a);
    cr_assert_eq(a.kept[0], 40);
    sample_row(x, VV, NN, (cfg){ 1.0f, 0, 1.0f, 0.0f }, 5, 0, &a);
    cr_assert_eq(a.kept[0], VV);
    kt_result_free(&a);
    kt_result_free(&b);
}

Test(top_p, tiny_p_keeps_only_the_top_token)
{
    enum { VV = 4096, NN = 32 };
    float rows[3][VV];
    ks_zipf_like(rows[0], VV, 9);
    ks_flat(rows[1], VV, 10);
    tied_row(rows[2], VV, 11);
    const float ps[] = { 1e-30f, 1e-7f, 1.4e-45f };
    const float temps[] = { 0.5f, 1.0f, 50.0f };
    kt_result r = kt_result_alloc(1, VV, NN);
    for (int row = 0; row < 3; ++row) {
        int32_t top = (int32_t)first_argmax(rows[row], VV);
        for (int i = 0; i < 3; ++i)
            for (int t = 0; t < 3; ++t) {
                sample_row(rows[row], VV, NN, (cfg){ temps[t], 0, ps[i], 0.0f }, 12, 0, &r);
                assert_only(&r, top, "tiny p");
                for (int j = 0; j < NN; ++j)
                    cr_assert_eq(r.logprobs[j], 0.0f, "logprob %a", (double)r.logprobs[j]);
            }
    }
    kt_result_free(&r);
}

Test(top_p, crossing_token_is_kept)
{
    /* P = 0.4, 0.3, 0.2, 0.1 at ids 2, 0, 3, 1: cumulative 0.4, 0.7, 0.9, 1. */
    const float x[4] = { (float)log(0.3), (float)log(0.1), (float)log(0.4), (float)log(0.2) };
    const int32_t order[4] = { 2, 0, 3, 1 };
    const struct {
        float p;
        int kept;
    } cases[] = { { 0.39f, 1 }, { 0.41f, 2 }, { 0.69f, 2 }, { 0.71f, 3 }, { 0.89f, 3 },
                  { 0.91f, 4 } };
    double e[4];
    kt_result r = kt_result_alloc(1, 4, 64);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
        softmax_over(x, 4, 1.0, order, cases[c].kept, e);
        sample_row(x, 4, 64, (cfg){ 1.0f, 0, cases[c].p, 0.0f }, 4, 0, &r);
        char what[32];
        snprintf(what, sizeof what, "p = %g", (double)cases[c].p);
        assert_probs(&r, e, what);
    }
    kt_result_free(&r);
}

/* ----------------------------------------------------------------- min-p */

Test(min_p, zero_and_sub_unit_thresholds_equal_none)
{
    enum { VV = 1000, NN = 16 };
    float x[VV];
    ks_zipf(x, VV, 13);
    for (int64_t i = 0; i < VV; i += 7)
        x[i] = -INFINITY;
    x[3] = -40.0f; /* far below the max: mass 0 at T = 1 */
    kt_result a = kt_result_alloc(1, VV, NN), b = kt_result_alloc(1, VV, NN);
    /* ceil(min_p * 2^40) is 0 or 1 for these, and every kept token already
     * has mass >= 1. */
    const float mps[] = { 0.0f, 1.4e-45f, 0x1p-40f, 1e-20f };
    const cfg base[] = { { 1.0f, 0, 1.0f, 0.0f }, { 0.7f, 300, 0.95f, 0.0f } };
    for (int c = 0; c < 2; ++c) {
        sample_row(x, VV, NN, base[c], 6, 0, &a);
        for (int i = 0; i < 4; ++i) {
            cfg cc = base[c];
            cc.min_p = mps[i];
            sample_row(x, VV, NN, cc, 6, 1, &b);
            cr_assert(kt_result_equal(&a, &b), "case %d: min_p = %a differs from none (kept %d vs %d)",
                      c, (double)mps[i], b.kept[0], a.kept[0]);
        }
    }
    kt_result_free(&a);
    kt_result_free(&b);
}

Test(min_p, one_keeps_exactly_the_ties_with_the_max)
{
    enum { VV = 500, NN = 32 };
    float x[VV];
    ks_zipf_like(x, VV, 14);
    for (int64_t i = 0; i < VV; ++i)
        x[i] = fminf(x[i], 2.0f);
    x[3] = x[17] = x[200] = 3.0f;
    x[50] = nextafterf(3.0f, 0.0f); /* one ulp below: a smaller mass at any T */
    const int32_t ties[3] = { 3, 17, 200 };
    const float temps[] = { 0.3f, 1.0f, 5.0f, 1e4f, 1e30f };
    kt_result r = kt_result_alloc(1, VV, NN);
    for (int t = 0; t < 5; ++t) {
        sample_row(x, VV, NN, (cfg){ temps[t], 0, 1.0f, 1.0f }, 15, 0, &r);
        /* masses 2^40 each: f32(2^40 * (1 / (3 * 2^40))) = f32(1/3) */
        assert_kept_uniform(&r, ties, 3, (float)(1.0 / 3.0), "min_p = 1");
    }
    kt_result_free(&r);
}

/* ------------------------------------------------------ all-equal logits */

/* ceil(p * s) exactly: p = a * 2^e with a 24-bit integer a. */
static unsigned __int128 ceil_mul(float p, unsigned __int128 s)
{
    int e;
    float mant = frexpf(p, &e); /* p = mant * 2^e, mant in [0.5, 1) */
    unsigned __int128 x = (unsigned __int128)(uint64_t)ldexpf(mant, 24) * s;
    e -= 24;
    return e >= 0 ? x << e : (x + ((unsigned __int128)1 << -e) - 1) >> -e;
}

/* Tokens kept by top-p p over V equal masses 2^40 (no top-k): need =
 * ceil(p * V * 2^40), kept = ceil(need / 2^40). */
static int64_t equal_masses_top_p_kept(float p, int64_t vocab)
{
    unsigned __int128 one = (unsigned __int128)1 << 40;
    unsigned __int128 need = ceil_mul(p, (unsigned __int128)vocab << 40);
    return (int64_t)((need + one - 1) / one);
}

Test(all_equal, top_k_and_top_p_keep_the_lowest_ids)
{
    enum { VV = 1001, NN = 64 };
    float x[VV];
    int32_t ids[VV];
    for (int64_t i = 0; i < VV; ++i) {
        x[i] = 0.25f;
        ids[i] = (int32_t)i;
    }
    kt_result r = kt_result_alloc(1, VV, NN);
    char what[64];
    const int32_t ks[] = { 1, 2, 37, 500, 1000 };
    for (int i = 0; i < 5; ++i) {
        sample_row(x, VV, NN, (cfg){ 0.6f, ks[i], 1.0f, 0.0f }, 16, 0, &r);
        snprintf(what, sizeof what, "all equal, k = %d", ks[i]);
        assert_kept_uniform(&r, ids, ks[i], (float)(1.0 / ks[i]), what);
    }
    const float ps[] = { 0.5f, 0.3f, 0.1f, 0.9f, 0.999f, 0.0001f, 0.0009995f };
    for (int i = 0; i < 7; ++i) {
        int64_t kept = equal_masses_top_p_kept(ps[i], VV);
        sample_row(x, VV, NN, (cfg){ 1.0f, 0, ps[i], 0.0f }, 16, 0, &r);
        snprintf(what, sizeof what, "all equal, p = %.9g", (double)ps[i]);
        assert_kept_uniform(&r, ids, kept, (float)(1.0 / (double)kept), what);
    }
    /* V even: need lands exactly on a prefix sum, which is enough. */
    const float exact_ps[] = { 0.5f, 0.25f, 0.125f, 0.375f, 0.625f };
    kt_result r1000 = kt_result_alloc(1, 1000, NN);
    for (int i = 0; i < 5; ++i) {
        sample_row(x, 1000, NN, (cfg){ 1.0f, 0, exact_ps[i], 0.0f }, 16, 0, &r1000);
        int64_t kept = (int64_t)(exact_ps[i] * 1000.0f);
        snprintf(what, sizeof what, "all equal, V 1000, p = %g", (double)exact_ps[i]);
        cr_assert_eq(equal_masses_top_p_kept(exact_ps[i], 1000), kept);
        assert_kept_uniform(&r1000, ids, kept, (float)(1.0 / (double)kept), what);
    }
    kt_result_free(&r1000);
    cr_assert_eq(equal_masses_top_p_kept(0.5f, VV), 501);
    cr_assert_eq(equal_masses_top_p_kept(0.3f, VV), 301); /* 0.3f is just above 0.3 */
    /* top-p of the top-k mass: 100 equal survivors, p = 0.5 keeps 50. */
    sample_row(x, VV, NN, (cfg){ 1.0f, 100, 0.5f, 0.0f }, 16, 0, &r);
    assert_kept_uniform(&r, ids, 50, (float)(1.0 / 50.0), "all equal, k = 100, p = 0.5");
    /* min-p 1 keeps every tie. */
    sample_row(x, VV, NN, (cfg){ 1.0f, 0, 1.0f, 1.0f }, 16, 0, &r);
    assert_kept_uniform(&r, ids, VV, (float)(1.0 / VV), "all equal, min_p = 1");
    kt_result_free(&r);
}

/* ---------------------------------------------------- exact thresholds */

/* 64 tokens at logits -0.37 * rank, ids shuffled; their masses at T = 1 by
 * section 5, and the ids in canonical order. */
enum { XV = 64 };
static void threshold_row(float *x, uint64_t *w, int32_t *order)
{
    for (int r = 0; r < XV; ++r) {
        int32_t id = (r * 37) % XV;
        x[id] = -0.37f * (float)r;
        order[r] = id;
    }
    for (int i = 0; i < XV; ++i)
        w[i] = kiln_mass(x[i], 0.0f, kiln_exp2_factor(1.0f));
    cr_assert_eq(w[0], (uint64_t)1 << 40);
}

Test(min_p, threshold_is_the_exact_ceiling_inclusive)
{
    float x[XV];
    uint64_t w[XV];
    int32_t order[XV];
    threshold_row(x, w, order);
    kt_result r = kt_result_alloc(1, XV, 16);
    int cases = 0;
    for (int rank = 1; rank < XV; ++rank) {
        uint64_t wi = w[order[rank]];
        if (wi == 0)
            continue;
        /* min_p = w_i / 2^40 exactly (w_i has at most 24 significant bits),
         * then the next float up, which must drop token i. */
        float mp[2];
        mp[0] = ldexpf((float)wi, -40);
        mp[1] = nextafterf(mp[0], 2.0f);
        cr_assert_eq((uint64_t)ldexpf(mp[0], 40), wi);
        for (int k = 0; k < 2; ++k) {
            uint64_t thr = (uint64_t)ceil_mul(mp[k], (unsigned __int128)1 << 40);
            int32_t expect = 0;
            for (int i = 0; i < XV; ++i)
                expect += w[i] >= thr && w[i] > 0;
            sample_row(x, XV, 16, (cfg){ 1.0f, 0, 1.0f, mp[k] }, 33, 0, &r);
            cr_assert_eq(r.kept[0], expect,
                         "min_p = %a (threshold %llu, token mass %llu): kept %d, expected %d",
                         (double)mp[k], (unsigned long long)thr, (unsigned long long)wi,
                         r.kept[0], expect);
            for (int i = 0; i < XV; ++i)
                cr_assert((r.probs[i] > 0.0f) == (w[i] >= thr && w[i] > 0),
                          "min_p = %a: token %d (mass %llu) prob %a", (double)mp[k], i,
                          (unsigned long long)w[i], (double)r.probs[i]);
            ++cases;
        }
    }
    cr_assert(cases > 40, "only %d cases", cases);
    kt_result_free(&r);
}

Test(top_p, threshold_is_the_exact_ceiling_of_p_times_the_top_k_mass)
{
    float x[XV];
    uint64_t w[XV];
    int32_t order[XV];
    threshold_row(x, w, order);
    unsigned __int128 cum[XV + 1];
    cum[0] = 0;
    for (int rank = 0; rank < XV; ++rank)
        cum[rank + 1] = cum[rank] + w[order[rank]];
    kt_result r = kt_result_alloc(1, XV, 16);
    const int32_t ks[] = { 0, 40 };
    for (int ki = 0; ki < 2; ++ki) {
        int len = ks[ki] ? ks[ki] : XV;
        for (int target = 1; target < len; ++target) {
            if (w[order[target]] == 0)
                break;
            /* p near cum[target] / S_k, and one float either side. */
            float p0 = (float)((double)cum[target] / (double)cum[len]);
            float ps[3] = { p0, nextafterf(p0, 0.0f), nextafterf(p0, 2.0f) };
            for (int j = 0; j < 3; ++j) {
                if (!(ps[j] > 0.0f && ps[j] < 1.0f))
                    continue;
                unsigned __int128 need = ceil_mul(ps[j], cum[len]);
                int expect = 1;
                while (cum[expect] < need)
                    ++expect;
                sample_row(x, XV, 16, (cfg){ 1.0f, ks[ki], ps[j], 0.0f }, 34, 0, &r);
                cr_assert_eq(r.kept[0], expect, "k %d p = %a: kept %d, expected %d", ks[ki],
                             (double)ps[j], r.kept[0], expect);
                for (int rank = 0; rank < XV; ++rank)
                    cr_assert((r.probs[order[rank]] > 0.0f) == (rank < expect),
                              "k %d p = %a: rank %d token %d prob %a", ks[ki], (double)ps[j],
                              rank, order[rank], (double)r.probs[order[rank]]);
            }
        }
    }
    kt_result_free(&r);
}

/* ---------------------------------------------------------- temperature */

static void assert_sane(const kt_result *r, const char *what)
{
    cr_assert_eq(r->valid[0], 1, "%s: invalid", what);
    double sum = 0.0;
    for (int64_t i = 0; i < r->vocab; ++i) {
        cr_assert(r->probs[i] >= 0.0f && r->probs[i] <= 1.0f, "%s: prob[%lld] = %a", what,
                  (long long)i, (double)r->probs[i]);
        sum += r->probs[i];
    }
    cr_assert(fabs(sum - 1.0) < 1e-5, "%s: probs sum to %.9f", what, sum);
    for (int j = 0; j < r->n; ++j)
        cr_assert(r->tokens[j] >= 0 && r->tokens[j] < r->vocab && r->probs[r->tokens[j]] > 0.0f &&
                      isfinite(r->logprobs[j]) && r->logprobs[j] <= 1e-6f &&
                      isfinite(r->raw_logprobs[j]) && r->raw_logprobs[j] <= 1e-6f,
                  "%s: draw %d token %d logprob %a raw %a", what, j, r->tokens[j],
                  (double)r->logprobs[j], (double)r->raw_logprobs[j]);
}

Test(temperature, tiny_temperatures_are_valid_and_peaked)
{
    enum { VV = 1000, NN = 32 };
    float rows[3][VV];
    ks_zipf_like(rows[0], VV, 17);                  /* unique top 8 at id 0, next 5 */
    tied_row(rows[1], VV, 18);                      /* 2.5 at ids 5, 9, 300 */
    ks_zipf_like(rows[2], VV, 19);
    rows[2][40] = nextafterf(8.0f, 0.0f);           /* one ulp below the top */
    const float temps[] = { 1e-3f, 1e-20f, 1e-30f, 1.4e-45f };
    const int32_t ties[3] = { 5, 9, 300 };
    kt_result r = kt_result_alloc(1, VV, NN);
    char what[64];
    for (int t = 0; t < 4; ++t) {
        snprintf(what, sizeof what, "T = %a, unique top", (double)temps[t]);
        sample_row(rows[0], VV, NN, (cfg){ temps[t], 0, 1.0f, 0.0f }, 20, 0, &r);
        assert_sane(&r, what);
        assert_only(&r, 0, what);
        for (int j = 0; j < NN; ++j)
            cr_assert_eq(r.logprobs[j], 0.0f, "%s: logprob %a", what, (double)r.logprobs[j]);

        snprintf(what, sizeof what, "T = %a, three ties", (double)temps[t]);
        sample_row(rows[1], VV, NN, (cfg){ temps[t], 0, 1.0f, 0.0f }, 20, 0, &r);
        assert_sane(&r, what);
        assert_kept_uniform(&r, ties, 3, (float)(1.0 / 3.0), what);
        for (int j = 0; j < NN; ++j)
            cr_assert(fabs(r.logprobs[j] + log(3.0)) < 1e-6, "%s: logprob %a", what,
                      (double)r.logprobs[j]);

        /* A near-tie keeps some mass at T = 1e-3 (1.4e-4 below the top in
         * log2 units) and none below; the top token always dominates. */
        snprintf(what, sizeof what, "T = %a, near tie", (double)temps[t]);
        sample_row(rows[2], VV, NN, (cfg){ temps[t], 0, 1.0f, 0.0f }, 20, 0, &r);
        assert_sane(&r, what);
        cr_assert(r.probs[0] >= 0.5f && r.probs[0] >= r.probs[40], "%s: top %a near %a", what,
                  (double)r.probs[0], (double)r.probs[40]);
        cr_assert(r.kept[0] == (t == 0 ? 2 : 1), "%s: kept %d", what, r.kept[0]);
    }
    kt_result_free(&r);
}

Test(temperature, huge_temperatures_are_near_uniform_over_finite_tokens)
{
    enum { VV = 1000, NN = 64 };
    float x[VV];
    ks_zipf_like(x, VV, 21);
    int finite = 0;
    for (int64_t i = 0; i < VV; ++i) {
        if (i % 10 == 7 || i == 0)
            x[i] = -INFINITY;
        finite += isfinite(x[i]) != 0;
    }
    const struct {
        float t;
        double tol;
    } cases[] = { { 1e4f, 3e-3 }, { 1e30f, 1e-6 }, { FLT_MAX, 1e-6 } };
    kt_result r = kt_result_alloc(1, VV, NN);
    char what[64];
    for (int c = 0; c < 3; ++c) {
        snprintf(what, sizeof what, "T = %g", (double)cases[c].t);
        sample_row(x, VV, NN, (cfg){ cases[c].t, 0, 1.0f, 0.0f }, 22, 0, &r);
        assert_sane(&r, what);
        cr_assert_eq(r.kept[0], finite, "%s: kept %d of %d finite", what, r.kept[0], finite);
        for (int64_t i = 0; i < VV; ++i) {
            if (!isfinite(x[i]))
                cr_assert_eq(r.probs[i], 0.0f, "%s: masked token %lld has prob %a", what,
                             (long long)i, (double)r.probs[i]);
            else
                cr_assert(fabs(r.probs[i] * finite - 1.0) < cases[c].tol,
                          "%s: prob[%lld] = %.9g, uniform is %.9g", what, (long long)i,
                          (double)r.probs[i], 1.0 / finite);
        }
        /* With top-p the masks stay out too (they come last in no order). */
        sample_row(x, VV, NN, (cfg){ cases[c].t, 0, 0.5f, 0.0f }, 22, 0, &r);
        assert_sane(&r, what);
        cr_assert(r.kept[0] >= finite / 2 - 2 && r.kept[0] <= finite / 2 + 1, "%s, p 0.5: kept %d",
                  what, r.kept[0]);
        for (int64_t i = 0; i < VV; ++i)
            cr_assert(isfinite(x[i]) || r.probs[i] == 0.0f, "%s p 0.5: masked %lld kept", what,
                      (long long)i);
    }
    kt_result_free(&r);
}

/* ---------------------------------------------------------------- masks */

Test(masks, masked_tokens_are_never_kept_or_drawn)
{
    enum { VV = 1000, NN = 64 };
    float x[VV];
    ks_zipf_like(x, VV, 23);
    int finite = 0;
    for (int64_t i = 0; i < VV; ++i) {
        if (i % 10 != 3)
            x[i] = -INFINITY; /* includes id 0, the 8.0 token */
        finite += isfinite(x[i]) != 0;
    }
    cr_assert_eq(finite, 100);
    const struct {
        cfg c;
        int kept; /* -1: compare with the reference only */
    } cases[] = {
        { { 1.0f, 0, 1.0f, 0.0f }, 100 },  { { 1.0f, 200, 1.0f, 0.0f }, 100 },
        { { 1.0f, 100, 1.0f, 0.0f }, 100 }, { { 1.0f, 50, 1.0f, 0.0f }, 50 },
        { { 0.7f, 0, 0.9f, 0.0f }, -1 },   { { 1.3f, 0, 1.0f, 0.1f }, -1 },
        { { 0.9f, 80, 0.95f, 0.02f }, -1 }, { { 1e30f, 150, 1.0f, 0.0f }, 100 },
    };
    double ref[VV];
    kt_result r = kt_result_alloc(1, VV, NN);
    char what[64];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
        cfg cc = cases[c].c;
        snprintf(what, sizeof what, "masks, T %g k %d p %g min_p %g", (double)cc.t, cc.k,
                 (double)cc.p, (double)cc.min_p);
        sample_row(x, VV, NN, cc, 24, 0, &r);
        kt_ref_result rr = kt_reference_distribution(
            x, VV, (kt_ref_params){ cc.t, cc.k, cc.p, cc.min_p }, ref);
        cr_assert(rr.top_p_margin > 1e-5 && rr.min_p_margin > 1e-5, "%s is ambiguous", what);
        assert_probs(&r, ref, what);
        if (cases[c].kept >= 0)
            cr_assert_eq(r.kept[0], cases[c].kept, "%s: kept %d", what, r.kept[0]);
        for (int64_t i = 0; i < VV; ++i)
            cr_assert(isfinite(x[i]) || r.probs[i] == 0.0f, "%s: masked %lld kept", what,
                      (long long)i);
    }
    kt_result_free(&r);
}

Test(masks, single_finite_token_is_always_sampled)
{
    enum { VV = 1000, NN = 32 };
    float x[VV];
    for (int64_t i = 0; i < VV; ++i)
        x[i] = -INFINITY;
    const float values[] = { -12345.5f, 0.0f, -0.0f, 3e38f, -3e38f };
    const cfg cases[] = { { 0.0f, 0, 1.0f, 0.0f },   { 0.7f, 0, 1.0f, 0.0f },
                          { 1.4e-45f, 0, 1.0f, 0.0f }, { 1e30f, 0, 1.0f, 0.0f },
                          { 1.0f, 1, 1.0f, 0.0f },   { 1.0f, 5, 0.5f, 0.0f },
                          { 1.0f, 0, 1e-7f, 1.0f },  { 2.0f, 999, 0.9f, 0.5f } };
    kt_result r = kt_result_alloc(1, VV, NN);
    char what[64];
    for (int v = 0; v < 5; ++v) {
        x[777] = values[v];
        for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
            snprintf(what, sizeof what, "only %g finite, case %zu", (double)values[v], c);
            sample_row(x, VV, NN, cases[c], 25, 0, &r);
            assert_only(&r, 777, what);
            for (int j = 0; j < NN; ++j)
                cr_assert(r.logprobs[j] == 0.0f && r.raw_logprobs[j] == 0.0f,
                          "%s: logprob %a raw %a", what, (double)r.logprobs[j],
                          (double)r.raw_logprobs[j]);
        }
    }
    kt_result_free(&r);
    /* V = 1: every k is >= V (disabled) and the one token is always kept. */
    const float only = 2.5f;
    kt_result one = kt_result_alloc(1, 1, NN);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
        snprintf(what, sizeof what, "V = 1, case %zu", c);
        sample_row(&only, 1, NN, cases[c], 25, 0, &one);
        assert_only(&one, 0, what);
        cr_assert(one.logprobs[0] == 0.0f && one.raw_logprobs[0] == 0.0f, "%s: %a %a", what,
                  (double)one.logprobs[0], (double)one.raw_logprobs[0]);
    }
    kt_result_free(&one);
}

/* ---------------------------------------------------------------- order */

Test(order, top_p_uses_the_top_k_mass)
{
    /* P = 0.4, 0.3, 0.2, 0.1. k = 2 leaves (4/7, 3/7); p = 0.5 of that mass
     * keeps the top token alone. Top-p over the full mass would need 0.5 of
     * 1 and keep two tokens. */
    const float x[4] = { (float)log(0.4), (float)log(0.3), (float)log(0.2), (float)log(0.1) };
    kt_result r = kt_result_alloc(1, 4, 64);
    sample_row(x, 4, 64, (cfg){ 1.0f, 2, 0.5f, 0.0f }, 26, 0, &r);
    assert_only(&r, 0, "k 2, p 0.5");
    sample_row(x, 4, 64, (cfg){ 1.0f, 0, 0.5f, 0.0f }, 26, 0, &r);
    double e[4] = { 4.0 / 7.0, 3.0 / 7.0, 0, 0 };
    assert_probs(&r, e, "p 0.5 without top-k");
    kt_result_free(&r);
}

Test(order, min_p_applies_after_top_p)
{
    /* P = 0.4, 0.3, 0.2, 0.1; p = 0.42 over the whole mass keeps {0, 1};
     * min_p = 0.45 (threshold 0.18) then keeps both. Min-p first would
     * leave {0, 1, 2} of mass 0.9 and top-p 0.42 of it (0.378) would keep
     * only token 0. */
    const float x[4] = { (float)log(0.4), (float)log(0.3), (float)log(0.2), (float)log(0.1) };
    kt_result r = kt_result_alloc(1, 4, 64);
    double e[4] = { 4.0 / 7.0, 3.0 / 7.0, 0, 0 };
    sample_row(x, 4, 64, (cfg){ 1.0f, 0, 0.42f, 0.45f }, 27, 0, &r);
    assert_probs(&r, e, "p 0.42, min_p 0.45");
    kt_result_free(&r);
}

Test(order, each_of_k_p_min_p_cuts)
{
    /* P = 0.3, 0.25, 0.2, 0.15, 0.1 at shuffled ids. k = 4 leaves mass 0.9;
     * p = 0.7 needs 0.63: 0.3, 0.55, 0.75 keeps three; min_p = 0.75
     * (threshold 0.225) keeps two. */
    const double P[5] = { 0.2, 0.1, 0.3, 0.15, 0.25 };
    float x[5];
    for (int i = 0; i < 5; ++i)
        x[i] = (float)log(P[i]);
    double e[5] = { 0, 0, 0.3 / 0.55, 0, 0.25 / 0.55 };
    kt_result r = kt_result_alloc(1, 5, 64);
    sample_row(x, 5, 64, (cfg){ 1.0f, 4, 0.7f, 0.75f }, 28, 0, &r);
    assert_probs(&r, e, "k 4 p 0.7 min_p 0.75");
    double ref[5];
    kt_ref_result rr = kt_reference_distribution(x, 5, (kt_ref_params){ 1.0, 4, 0.7, 0.75 }, ref);
    cr_assert(rr.kept == 2 && fabs(ref[2] - e[2]) < 1e-6, "reference disagrees: kept %lld",
              (long long)rr.kept);
    kt_result_free(&r);
}

/* ------------------------------------------------------ reference, random */

static void random_row(float *x, int64_t vocab, ks_rng *g)
{
    uint64_t seed = ks_rng_u64(g);
    switch (ks_rng_u64(g) % 5) {
    case 0: ks_zipf_like(x, vocab, seed); break;
    case 1: ks_zipf(x, vocab, seed); break;
    case 2: ks_peaked(x, vocab, seed); break;
    case 3: ks_flat(x, vocab, seed); break;
    default:
        ks_zipf(x, vocab, seed);
        for (int64_t i = 0; i < vocab; ++i)
            if (ks_rng_u64(g) % 4 == 0)
                x[i] = -INFINITY;
        x[ks_rng_u64(g) % (uint64_t)vocab] = 0.5f;
        break;
    }
}

static cfg random_cfg(ks_rng *g, int64_t vocab)
{
    static const float temps[] = { 0.0f, 0.3f, 0.7f, 1.0f, 1.5f };
    static const float ps[] = { 1.0f, 0.5f, 0.8f, 0.9f, 0.95f };
    static const float mps[] = { 0.0f, 0.0f, 0.01f, 0.05f, 0.2f };
    const int32_t ks[] = { 0, 1, 5, 20, 100, (int32_t)vocab };
    cfg c;
    c.t = temps[ks_rng_u64(g) % 5];
    c.k = ks[ks_rng_u64(g) % 6];
    c.p = ps[ks_rng_u64(g) % 5];
    c.min_p = mps[ks_rng_u64(g) % 5];
    return c;
}

Test(reference, random_rows_match_the_reference)
{
    enum { CASES = 300, VMAX = 3000, NN = 16 };
    static const int64_t vocabs[] = { 3, 50, 1000, 3000 };
    float *x = malloc(VMAX * sizeof *x);
    double *ref = malloc(VMAX * sizeof *ref);
    ks_rng g = { 29 };
    int checked = 0;
    char what[96];
    for (int c = 0; c < CASES; ++c) {
        int64_t vocab = vocabs[ks_rng_u64(&g) % 4];
        random_row(x, vocab, &g);
        cfg cc = random_cfg(&g, vocab);
        kt_ref_result rr = kt_reference_distribution(
            x, vocab, (kt_ref_params){ cc.t, cc.k, cc.p, cc.min_p }, ref);
        if (rr.top_p_margin < 1e-5 || rr.min_p_margin < 1e-5)
            continue;
        ++checked;
        kt_result r = kt_result_alloc(1, vocab, NN);
        sample_row(x, vocab, NN, cc, ks_rng_u64(&g), 0, &r);
        snprintf(what, sizeof what, "case %d: V %lld T %g k %d p %g min_p %g", c, (long long)vocab,
                 (double)cc.t, cc.k, (double)cc.p, (double)cc.min_p);
        /* Tokens below 2^-41 of the top have mass 0 in kiln (section 5). */
        for (int64_t i = 0; i < vocab; ++i)
            if (ref[i] > 0.0 && ref[i] < 1e-11 && r.probs[i] == 0.0f)
                ref[i] = 0.0;
        assert_probs(&r, ref, what);
        kt_result_free(&r);
    }
    cr_assert(checked > CASES * 3 / 4, "only %d of %d cases unambiguous", checked, CASES);
    free(x);
    free(ref);
}

/* -------------------------------------------------------- log-probabilities */

Test(logprobs, match_probs_and_log_softmax)
{
    enum { CASES = 120, VMAX = 5000, NN = 32 };
    static const int64_t vocabs[] = { 2, 50, 1000, 5000 };
    float *x = malloc(VMAX * sizeof *x);
    ks_rng g = { 30 };
    int greedy = 0;
    for (int c = 0; c < CASES; ++c) {
        int64_t vocab = vocabs[ks_rng_u64(&g) % 4];
        random_row(x, vocab, &g);
        cfg cc = random_cfg(&g, vocab);
        kt_result r = kt_result_alloc(1, vocab, NN);
        sample_row(x, vocab, NN, cc, ks_rng_u64(&g), 0, &r);
        cr_assert_eq(r.valid[0], 1);
        double m = -INFINITY, s = 0.0;
        for (int64_t i = 0; i < vocab; ++i)
            m = fmax(m, (double)x[i]);
        for (int64_t i = 0; i < vocab; ++i)
            s += exp((double)x[i] - m);
        const double lse = m + log(s);
        greedy += cc.t == 0.0f;
        for (int j = 0; j < NN; ++j) {
            int32_t t = r.tokens[j];
            cr_assert(t >= 0 && t < vocab && r.probs[t] > 0.0f, "case %d: token %d", c, t);
            double want = cc.t == 0.0f ? 0.0 : log((double)r.probs[t]);
            double lp = r.logprobs[j];
            if (cc.t == 0.0f)
                cr_assert_eq(f32_bits(r.logprobs[j]), 0u, "case %d greedy: logprob %a", c, lp);
            else
                cr_assert(fabs(lp - want) <= 1e-5 * fmax(1.0, fabs(want)),
                          "case %d (T %g k %d p %g min_p %g): token %d logprob %.9g, log(prob) "
                          "%.9g",
                          c, (double)cc.t, cc.k, (double)cc.p, (double)cc.min_p, t, lp, want);
            double raw = (double)x[t] - lse;
            cr_assert(fabs(r.raw_logprobs[j] - raw) <= 1e-5 * fmax(1.0, fabs(raw)),
                      "case %d: token %d raw logprob %.9g, log-softmax %.9g", c, t,
                      (double)r.raw_logprobs[j], raw);
        }
        kt_result_free(&r);
    }
    cr_assert(greedy > 5, "only %d greedy cases", greedy);
    free(x);
}

/* ---------------------------------------------------------- large vocab */

Test(large_vocab, qwen_sized_zipf_row_matches_reference)
{
    enum { VV = 151936, NN = 64 };
    float *x = malloc(VV * sizeof *x);
    double *ref = malloc(VV * sizeof *ref);
    ks_zipf(x, VV, 31);
    const cfg cc = { 0.7f, 50, 0.9f, 0.0f };
    kt_ref_result rr =
        kt_reference_distribution(x, VV, (kt_ref_params){ 0.7, 50, 0.9, 0.0 }, ref);
    cr_assert(rr.top_p_margin > 1e-6, "case is ambiguous: margin %g", rr.top_p_margin);
    cr_assert(rr.kept > 1 && rr.kept <= 50, "reference kept %lld", (long long)rr.kept);
    kt_result r = kt_result_alloc(1, VV, NN);
    sample_row(x, VV, NN, cc, 32, 0, &r);
    assert_probs(&r, ref, "V 151936, T 0.7 k 50 p 0.9");
    cr_assert_eq(r.kept[0], rr.kept);
    kt_result_free(&r);
    free(x);
    free(ref);
}
