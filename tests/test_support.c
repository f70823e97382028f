/* Exact support: a token outside the kept set (filtered, masked with -inf,
 * or with a mass that underflows 2^-40 of the top) is never drawn, the kept
 * set is the reference's whenever the case is unambiguous, and greedy rows
 * return the first maximum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "reference.h"

/* Closer than this to a top-p or min-p boundary, kiln's f32/fixed-point
 * arithmetic and the double reference may legitimately disagree. */
#define MARGIN 1e-5

/* The kept set kiln must produce, from the reference: its kept tokens whose
 * mass is representable. kiln's mass is 0 exactly when t = (x - m) log2(e) / T
 * < -40 (docs/semantics.md section 5: w = floor(P 2^(40 + n)) is 0 for
 * n <= -41), i.e. a probability ratio to the top below 2^-40. Returns 0
 * (ambiguous, no comparison) near a top-p or min-p boundary, or when a token
 * sits within 1e-3 of that underflow edge (kiln's f32 t is within ~1e-5). */
static int expected_kept(const double *ref, int64_t V, kt_ref_result rr, char *keep,
                         int64_t *count)
{
    if (!(rr.top_p_margin > MARGIN && rr.min_p_margin > MARGIN))
        return 0;
    double pmax = 0.0;
    for (int64_t i = 0; i < V; ++i)
        pmax = fmax(pmax, ref[i]);
    *count = 0;
    for (int64_t i = 0; i < V; ++i) {
        keep[i] = 0;
        if (ref[i] <= 0.0)
            continue;
        double l = log2(ref[i] / pmax);
        if (fabs(l + 40.0) < 1e-3)
            return 0;
        keep[i] = l >= -40.0;
        *count += keep[i];
    }
    return 1;
}

/* ------------------------------------------------------------ random rows */

#define RV 3000
#define RROWS 32
#define RCALLS 120
#define RDRAWS 2000

static const float temps[] = { 0.0f, 1e-30f, 1e-3f, 0.05f, 0.3f, 0.7f, 1.0f, 1.5f, 3.0f, 1e4f };
static const int32_t top_ks[] = { 0, -5, 1, 2, 5, 50, 500, RV - 1, RV, RV + 7, 2147483647 };
static const float top_ps[] = { 1.0f, 0.999f, 0.95f, 0.9f, 0.7f, 0.5f, 0.2f, 1e-6f };
static const float min_ps[] = { 0.0f, 1e-3f, 0.01f, 0.05f, 0.2f, 0.5f, 1.0f };

#define PICK(rng, a) (a[ks_rng_u64(rng) % (sizeof a / sizeof a[0])])

/* One random row: a shape, sometimes quantised (ties), sometimes with the
 * max duplicated, -inf on random tokens (sometimes the top, rarely all). */
static void random_row(ks_rng *rng, float *x, char *masked)
{
    uint64_t seed = ks_rng_u64(rng);
    switch (ks_rng_u64(rng) % 4) {
    case 0: ks_zipf_like(x, RV, seed); break;
    case 1: ks_zipf(x, RV, seed); break;
    case 2: ks_flat(x, RV, seed); break;
    default: ks_peaked(x, RV, seed); break;
    }
    if (ks_rng_unit(rng) < 0.25)
        for (int64_t i = 0; i < RV; ++i)
            x[i] = roundf(x[i] * 8.0f) / 8.0f;
    int64_t top = 0;
    for (int64_t i = 1; i < RV; ++i)
        if (x[i] > x[top])
            top = i;
    if (ks_rng_unit(rng) < 0.2)
        for (int d = 0; d < 3; ++d)
            x[ks_rng_u64(rng) % RV] = x[top];
    memset(masked, 0, RV);
    double u = ks_rng_unit(rng);
    if (u < 0.02) {
        memset(masked, 1, RV);
    } else if (u < 0.7) {
        static const double fractions[] = { 0.01, 0.1, 0.5, 0.9, 0.999 };
        double f = PICK(rng, fractions);
        for (int64_t i = 0; i < RV; ++i)
            masked[i] = ks_rng_unit(rng) < f;
        if (ks_rng_unit(rng) < 0.3)
            masked[top] = 1;
    }
    for (int64_t i = 0; i < RV; ++i)
        if (masked[i])
            x[i] = -INFINITY;
}

Test(support, random_rows_and_parameters)
{
    kt_sampler s = kt_create(KILN_BACKEND_CPU, RROWS, RV, RDRAWS, 0, 1);
    float *x = malloc((size_t)RROWS * RV * sizeof *x);
    char *masked = malloc((size_t)RROWS * RV);
    double *ref = malloc(RV * sizeof *ref);
    char *keep = malloc(RV);
    float t[RROWS], p[RROWS], mp[RROWS];
    int32_t k[RROWS];
    uint64_t seed[RROWS], offset[RROWS];
    kt_result r = kt_result_alloc(RROWS, RV, RDRAWS);
    ks_rng rng = { 0x5EED5EEDull };
    int64_t rows = 0, compared = 0, invalid = 0, underflowed = 0;
    for (int call = 0; call < RCALLS; ++call) {
        for (int b = 0; b < RROWS; ++b) {
            random_row(&rng, x + (int64_t)b * RV, masked + (int64_t)b * RV);
            t[b] = PICK(&rng, temps);
            k[b] = PICK(&rng, top_ks);
            p[b] = PICK(&rng, top_ps);
            mp[b] = PICK(&rng, min_ps);
            seed[b] = ks_rng_u64(&rng);
            offset[b] = ks_rng_u64(&rng) % 1000;
        }
        kiln_batch batch = kt_batch_f32(x, RROWS, RV, RDRAWS);
        kiln_sampling_params prm = KILN_SAMPLING_PARAMS_INIT;
        prm.temperature = t;
        prm.top_k = k;
        prm.top_p = p;
        prm.min_p = mp;
        prm.seed = seed;
        prm.offset = offset;
        kt_result_poison(&r);
        cr_assert_eq(kt_sample(&s, &batch, &prm, &r), KILN_SUCCESS, "%s", kiln_last_error());
        for (int b = 0; b < RROWS; ++b, ++rows) {
            const float *xb = x + (int64_t)b * RV, *pb = r.probs + (int64_t)b * RV;
            const char *mb = masked + (int64_t)b * RV;
            const int32_t *tok = r.tokens + (int64_t)b * RDRAWS;
            int all_masked = 1;
            for (int64_t i = 0; i < RV; ++i)
                all_masked &= mb[i];
            char what[160];
            snprintf(what, sizeof what, "call %d row %d (T %g, k %d, p %g, min_p %g)", call, b,
                     (double)t[b], k[b], (double)p[b], (double)mp[b]);
            if (all_masked) {
                ++invalid;
                cr_assert(r.valid[b] == 0 && r.kept[b] == 0, "%s: all -inf but valid", what);
                for (int j = 0; j < RDRAWS; ++j)
                    cr_assert_eq(tok[j], -1, "%s: all -inf row drew %d", what, tok[j]);
                for (int64_t i = 0; i < RV; ++i)
                    cr_assert(pb[i] == 0.0f, "%s: all -inf row has prob %g", what,
                              (double)pb[i]);
                continue;
            }
            cr_assert_eq(r.valid[b], 1, "%s: invalid", what);
            int64_t positive = 0;
            double sum = 0.0;
            for (int64_t i = 0; i < RV; ++i) {
                cr_assert(pb[i] >= 0.0f && pb[i] <= 1.0f, "%s: prob[%lld] = %g", what,
                          (long long)i, (double)pb[i]);
                cr_assert(!(mb[i] && pb[i] > 0.0f), "%s: masked token %lld kept, prob %g",
                          what, (long long)i, (double)pb[i]);
                positive += pb[i] > 0.0f;
                sum += pb[i];
            }
            cr_assert_eq(r.kept[b], positive, "%s: kept count %d, %lld tokens with prob > 0",
                         what, r.kept[b], (long long)positive);
            cr_assert(fabs(sum - 1.0) <= 1e-5, "%s: probs sum to %.9f", what, sum);
            for (int j = 0; j < RDRAWS; ++j) {
                int32_t tk = tok[j];
                cr_assert(tk >= 0 && tk < RV, "%s: draw %d is token %d", what, j, tk);
                cr_assert(pb[tk] > 0.0f, "%s: draw %d is token %d with prob %g (masked %d)",
                          what, j, tk, (double)pb[tk], mb[tk]);
            }
            kt_ref_params rp = { (double)t[b], k[b], (double)p[b], (double)mp[b] };
            kt_ref_result rr = kt_reference_distribution(xb, RV, rp, ref);
            int64_t want = 0;
            if (!expected_kept(ref, RV, rr, keep, &want))
                continue;
            ++compared;
            underflowed += want < rr.kept;
            cr_assert_eq(r.kept[b], want, "%s: kiln keeps %d, the reference %lld", what,
                         r.kept[b], (long long)want);
            for (int64_t i = 0; i < RV; ++i)
                cr_assert((pb[i] > 0.0f) == keep[i],
                          "%s: token %lld kiln prob %g, reference %g (keep %d)", what,
                          (long long)i, (double)pb[i], ref[i], keep[i]);
        }
    }
    cr_log_info("%lld rows: %lld invalid, %lld kept sets compared (%lld with underflowed "
                "tokens)", (long long)rows, (long long)invalid, (long long)compared,
                (long long)underflowed);
    /* Most rows must be unambiguous, or the comparison above tests little. */
    cr_assert(compared >= (rows - invalid) * 2 / 3, "only %lld of %lld rows compared",
              (long long)compared, (long long)(rows - invalid));
    cr_assert(invalid > 0 && underflowed > 0, "the random mix lost its edge cases");
    kt_result_free(&r);
    free(x);
    free(masked);
    free(ref);
    free(keep);
    kt_destroy(&s);
}

/* ---------------------------------------------------- one-hot, 150k vocab */

#define BIG_V 150000
#define BIG_N 1000000
#define BIG_CALLS 10

typedef struct big {
    kt_sampler s;
    float *x;
    kt_result r;
} big;

static big big_setup(void)
{
    big g;
    g.s = kt_create(KILN_BACKEND_CPU, 1, BIG_V, BIG_N, 0, 1);
    g.x = malloc(BIG_V * sizeof *g.x);
    cr_assert_not_null(g.x);
    g.r = kt_result_alloc(1, BIG_V, BIG_N);
    return g;
}

static void big_teardown(big *g)
{
    kt_result_free(&g->r);
    free(g->x);
    kt_destroy(&g->s);
}

static void big_sample(big *g, float t, int32_t k, float p, float min_p, uint64_t seed)
{
    kiln_batch b = kt_batch_f32(g->x, 1, BIG_V, BIG_N);
    kiln_sampling_params prm = KILN_SAMPLING_PARAMS_INIT;
    prm.temperature_all = t;
    prm.top_k_all = k;
    prm.top_p_all = p;
    prm.min_p_all = min_p;
    prm.seed_all = seed;
    cr_assert_eq(kt_sample(&g->s, &b, &prm, &g->r), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(g->r.valid[0], 1);
}

/* Every draw is `top`, which holds all the probability. */
static void assert_only(big *g, int32_t top, const char *what)
{
    cr_assert_eq(g->r.kept[0], 1, "%s: kept %d", what, g->r.kept[0]);
    for (int64_t i = 0; i < BIG_V; ++i)
        cr_assert(g->r.probs[i] == (i == top ? 1.0f : 0.0f), "%s: prob[%lld] = %g", what,
                  (long long)i, (double)g->r.probs[i]);
    for (int j = 0; j < BIG_N; ++j)
        cr_assert(g->r.tokens[j] == top && g->r.logprobs[j] == 0.0f,
                  "%s: draw %d is token %d (logprob %g), expected %d", what, j,
                  g->r.tokens[j], (double)g->r.logprobs[j], top);
}

/* (a) One token at 0, all others -inf, at the edges and in the middle. */
Test(one_hot, single_finite_token)
{
    static const float ts[BIG_CALLS] = { 1.0f, 0.5f, 2.0f, 1e-3f, 1e4f,
                                         1e-30f, 0.7f, 1.5f, 3.0f, 1.0f };
    static const int32_t tops[BIG_CALLS] = { 0, BIG_V - 1, 75000, 1, BIG_V - 2,
                                             12345, 99999, 0, BIG_V - 1, 31337 };
    big g = big_setup();
    for (int c = 0; c < BIG_CALLS; ++c) {
        for (int64_t i = 0; i < BIG_V; ++i)
            g.x[i] = -INFINITY;
        g.x[tops[c]] = 0.0f;
        big_sample(&g, ts[c], 0, 1.0f, 0.0f, 1000 + (uint64_t)c);
        char what[64];
        snprintf(what, sizeof what, "call %d (T %g, token %d)", c, (double)ts[c], tops[c]);
        assert_only(&g, tops[c], what);
    }
    big_teardown(&g);
}

/* The near-one-hot row: the top at 0, a handful at -20 (probability ratio
 * e^(-20 / T): 2e-9 at T = 1, 0.37 at T = 20, always above 2^-40), every
 * other token at -1000 (ratio e^(-1000 / T) <= e^-50 < 2^-72 for T <= 20:
 * mass 0). The -20 tokens sit at both ends of the id range and right next
 * to the top, with -1000 tokens beside them, where an off-by-one in the
 * inverse CDF would land. */
#define HANDFUL 7
static const int32_t near_top = 70001;
static const int32_t handful[HANDFUL] = { 0, 70000, 70002, 12, 4242, 140000, BIG_V - 1 };

static void near_one_hot(float *x)
{
    for (int64_t i = 0; i < BIG_V; ++i)
        x[i] = -1000.0f;
    x[near_top] = 0.0f;
    for (int h = 0; h < HANDFUL; ++h)
        x[handful[h]] = -20.0f;
}

/* (b) Every draw is the top or one of the handful; never a -1000 token. */
Test(one_hot, near_one_hot_support)
{
    static const float ts[BIG_CALLS] = { 1, 2, 4, 8, 20, 1, 2, 4, 8, 20 };
    big g = big_setup();
    near_one_hot(g.x);
    char *nonzero = calloc(BIG_V, 1);
    nonzero[near_top] = 1;
    for (int h = 0; h < HANDFUL; ++h)
        nonzero[handful[h]] = 1;
    uint64_t handful_draws = 0;
    for (int c = 0; c < BIG_CALLS; ++c) {
        big_sample(&g, ts[c], 0, 1.0f, 0.0f, 2000 + (uint64_t)c);
        cr_assert_eq(g.r.kept[0], HANDFUL + 1, "T %g: kept %d", (double)ts[c], g.r.kept[0]);
        for (int64_t i = 0; i < BIG_V; ++i)
            cr_assert((g.r.probs[i] > 0.0f) == nonzero[i], "T %g: prob[%lld] = %g",
                      (double)ts[c], (long long)i, (double)g.r.probs[i]);
        uint32_t hits[HANDFUL] = { 0 };
        for (int j = 0; j < BIG_N; ++j) {
            int32_t tk = g.r.tokens[j];
            cr_assert(tk >= 0 && tk < BIG_V && nonzero[tk],
                      "T %g seed %d: draw %d is token %d, logit %g", (double)ts[c], 2000 + c,
                      j, tk, tk >= 0 && tk < BIG_V ? (double)g.x[tk] : NAN);
            for (int h = 0; h < HANDFUL; ++h)
                hits[h] += tk == handful[h];
        }
        /* At T >= 2 each -20 token has probability >= 4.5e-5: ~45 or more
         * expected hits in 1e6 draws, so a token never drawn means the draw
         * cannot reach it (P(0 hits) < e^-40). */
        for (int h = 0; h < HANDFUL && ts[c] >= 2.0f; ++h) {
            cr_assert(hits[h] > 0, "T %g: token %d (p %g) never drawn in %d draws",
                      (double)ts[c], handful[h], (double)g.r.probs[handful[h]], BIG_N);
            handful_draws += hits[h];
        }
    }
    cr_log_info("near one-hot: %llu draws of -20 tokens in %d", (unsigned long long)handful_draws,
                BIG_CALLS * BIG_N);
    free(nonzero);
    big_teardown(&g);
}

/* (c) The same row with top-k, top-p or min-p removing the handful: only the
 * top is ever drawn. Each filter is set just tight enough: at T = 8 the
 * handful holds 7 e^-2.5 / (1 + 7 e^-2.5) = 0.36 of the mass, so p = 0.5
 * keeps the top alone, and with k = 3 the top holds 1 / (1 + 2 e^-2.5) =
 * 0.86 >= p = 0.8 of the top-3 mass; at T = 20 each -20 token's ratio is
 * e^-1 = 0.37 < min_p 0.5. */
Test(one_hot, near_one_hot_filtered)
{
    static const struct {
        float t;
        int32_t k;
        float p, min_p;
    } f[BIG_CALLS] = {
        { 1.0f, 1, 1.0f, 0.0f },  { 4.0f, 1, 1.0f, 0.0f },    { 20.0f, 1, 1.0f, 0.0f },
        { 1.0f, 0, 0.999f, 0.0f }, { 2.0f, 0, 0.99f, 0.0f },  { 8.0f, 0, 0.5f, 0.0f },
        { 1.0f, 0, 1.0f, 1e-3f },  { 4.0f, 0, 1.0f, 0.01f },  { 20.0f, 0, 1.0f, 0.5f },
        { 8.0f, 3, 0.8f, 0.0f },
    };
    big g = big_setup();
    near_one_hot(g.x);
    for (int c = 0; c < BIG_CALLS; ++c) {
        big_sample(&g, f[c].t, f[c].k, f[c].p, f[c].min_p, 3000 + (uint64_t)c);
        char what[96];
        snprintf(what, sizeof what, "T %g k %d p %g min_p %g", (double)f[c].t, f[c].k,
                 (double)f[c].p, (double)f[c].min_p);
        assert_only(&g, near_top, what);
    }
    big_teardown(&g);
}

/* ----------------------------------------------------------------- greedy */

#define GV 5000
#define GROWS 64
#define GDRAWS 256

/* Greedy rows, with the max repeated at random ids (ties to the lowest id),
 * -0 and +0 as the max, -inf masks, and filters that must not matter. */
Test(support, greedy_first_argmax)
{
    kt_sampler s = kt_create(KILN_BACKEND_CPU, GROWS, GV, GDRAWS, 0, 2);
    float *x = malloc((size_t)GROWS * GV * sizeof *x);
    float t[GROWS], p[GROWS], mp[GROWS];
    int32_t k[GROWS], want[GROWS];
    kt_result r = kt_result_alloc(GROWS, GV, GDRAWS);
    ks_rng rng = { 0x6EEEDull };
    for (int round = 0; round < 8; ++round) {
        for (int b = 0; b < GROWS; ++b) {
            float *xb = x + (int64_t)b * GV;
            switch (b % 4) {
            case 0: ks_zipf(xb, GV, ks_rng_u64(&rng)); break;
            case 1: ks_flat(xb, GV, ks_rng_u64(&rng)); break;
            case 2: ks_zipf_like(xb, GV, ks_rng_u64(&rng)); break;
            default:
                /* all at or below zero, the max a mix of -0 and +0 */
                for (int64_t i = 0; i < GV; ++i)
                    xb[i] = -(float)ks_rng_unit(&rng) - 0.5f;
                for (int d = 0; d < 4; ++d)
                    xb[ks_rng_u64(&rng) % GV] = (d & 1) ? 0.0f : -0.0f;
                break;
            }
            float m = -INFINITY;
            for (int64_t i = 0; i < GV; ++i)
                m = fmaxf(m, xb[i]);
            int ties = (int)(ks_rng_u64(&rng) % 5);
            for (int d = 0; d < ties; ++d)
                xb[ks_rng_u64(&rng) % GV] = m;
            for (int d = 0; d < 50; ++d)
                xb[ks_rng_u64(&rng) % GV] = -INFINITY;
            float mm = -INFINITY;
            for (int64_t i = 0; i < GV; ++i)
                mm = fmaxf(mm, xb[i]);
            want[b] = 0;
            while (xb[want[b]] != mm) /* -0 == +0: the first of either */
                ++want[b];
            t[b] = 0.0f;
            k[b] = PICK(&rng, top_ks);
            p[b] = PICK(&rng, top_ps);
            mp[b] = PICK(&rng, min_ps);
        }
        kiln_batch batch = kt_batch_f32(x, GROWS, GV, GDRAWS);
        kiln_sampling_params prm = KILN_SAMPLING_PARAMS_INIT;
        prm.temperature = t;
        prm.top_k = k;
        prm.top_p = p;
        prm.min_p = mp;
        prm.seed_all = (uint64_t)round;
        cr_assert_eq(kt_sample(&s, &batch, &prm, &r), KILN_SUCCESS, "%s", kiln_last_error());
        for (int b = 0; b < GROWS; ++b) {
            cr_assert(r.valid[b] == 1 && r.kept[b] == 1, "round %d row %d: valid %d kept %d",
                      round, b, r.valid[b], r.kept[b]);
            for (int64_t i = 0; i < GV; ++i)
                cr_assert(r.probs[(int64_t)b * GV + i] == (i == want[b] ? 1.0f : 0.0f),
                          "round %d row %d: prob[%lld] = %g, argmax %d", round, b,
                          (long long)i, (double)r.probs[(int64_t)b * GV + i], want[b]);
            for (int j = 0; j < GDRAWS; ++j) {
                int32_t tk = r.tokens[(int64_t)b * GDRAWS + j];
                cr_assert(tk >= 0 && tk < GV, "round %d row %d draw %d: token %d", round, b, j,
                          tk);
                cr_assert(tk == want[b] && r.logprobs[(int64_t)b * GDRAWS + j] == 0.0f,
                          "round %d row %d draw %d: token %d, first argmax %d (logits %g, %g)",
                          round, b, j, tk, want[b], (double)x[(int64_t)b * GV + tk],
                          (double)x[(int64_t)b * GV + want[b]]);
            }
        }
    }
    kt_result_free(&r);
    free(x);
    kt_destroy(&s);
}
