/* Frequencies: G-tests of kiln's draws against the final distribution that
 * tests/support/reference.c computes independently in double precision, the
 * power of those G-tests shown on deliberately wrong expectations, and
 * G-tests that draws are independent across draw index, offset and seed.
 *
 * Every test is deterministic (fixed seeds); "false alarm" means a choice of
 * seeds for which a correct kiln fails. kiln's own distribution differs from
 * the reference by at most ~2e-5 relative per token (f32 exponent and 2^-40
 * fixed point, checked below on the probs output); at N = 4e6 draws that
 * bias adds N * sum p d^2 <= 4e6 * 4e-10 = 2e-3 to the G statistic, nothing
 * next to the critical values (~20 and up). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "reference.h"
#include "stats.h"

enum shape { TEXTBOOK, EFFORT, ZIPF_LIKE, ZIPF, FLAT, PEAKED };

typedef struct mix {
    const char *name;
    enum shape shape;
    int64_t vocab;
    uint64_t shape_seed;
    float t;
    int32_t k;
    float p, min_p;
    float rep, pres, freq;
    const int32_t *hist; /* history for the penalties, or NULL */
    int32_t hist_len, prompt_len;
    int32_t calls;    /* the draws come from this many calls, each its own seed */
    int32_t per_call; /* draws per call (one row, num_samples = per_call) */
    uint64_t seed;
} mix;

static const int32_t hist_zipf_like[] = { 0, 3, 17, 200, 0, 0, 1, 12, 12, 12, 500, 999 };
static const int32_t hist_effort[] = { 3, 7, 3, 0, 3, 8 };
static const int32_t hist_zipf[] = { 5, 9, 77, 1024, 4000, 5, 5, 9, 31, 31, 31, 31, 2048, 77 };

#define M1 1000000
#define PEN(r, pr, f, h, pl) r, pr, f, h, (int32_t)(sizeof h / sizeof h[0]), pl
#define NOPEN 1.0f, 0.0f, 0.0f, NULL, 0, 0

enum {
    TEXTBOOK_T1,
    TEXTBOOK_T03,
    TEXTBOOK_T5,
    EFFORT_T07,
    EFFORT_T15,
    ZIPF_LIKE_T1,
    ZIPF_LIKE_TOP_K,
    ZIPF_LIKE_TOP_P,
    ZIPF_LIKE_MIN_P,
    ZIPF_LIKE_COMBINED,
    ZIPF_COMBINED,
    ZIPF_T1,
    ZIPF_T07_MIN_P,
    FLAT_TOP_P,
    FLAT_T07_TOP_K,
    PEAKED_T15_TOP_P,
    PEAKED_T1,
    PENALTIES_ZIPF_LIKE,
    PENALTIES_EFFORT_TOP_K,
    PENALTIES_ZIPF_TOP_P,
};

static const mix mixes[] = {
    [TEXTBOOK_T1] = { "textbook T=1", TEXTBOOK, 4, 0, 1.0f, 0, 1.0f, 0.0f, NOPEN, 4, M1, 11 },
    [TEXTBOOK_T03] = { "textbook T=0.3", TEXTBOOK, 4, 0, 0.3f, 0, 1.0f, 0.0f, NOPEN, 1, M1, 12 },
    [TEXTBOOK_T5] = { "textbook T=5", TEXTBOOK, 4, 0, 5.0f, 0, 1.0f, 0.0f, NOPEN, 1, M1, 13 },
    [EFFORT_T07] = { "effort T=0.7", EFFORT, 9, 0, 0.7f, 0, 1.0f, 0.0f, NOPEN, 1, M1, 14 },
    [EFFORT_T15] = { "effort T=1.5", EFFORT, 9, 0, 1.5f, 0, 1.0f, 0.0f, NOPEN, 2, M1 / 2, 15 },
    [ZIPF_LIKE_T1] = { "zipf_like T=1", ZIPF_LIKE, 1000, 1, 1.0f, 0, 1.0f, 0.0f, NOPEN, 1, M1,
                       16 },
    [ZIPF_LIKE_TOP_K] = { "zipf_like k=50", ZIPF_LIKE, 1000, 2, 1.0f, 50, 1.0f, 0.0f, NOPEN, 1,
                          M1, 17 },
    [ZIPF_LIKE_TOP_P] = { "zipf_like p=0.9", ZIPF_LIKE, 1000, 3, 1.0f, 0, 0.9f, 0.0f, NOPEN, 1,
                          M1, 18 },
    [ZIPF_LIKE_MIN_P] = { "zipf_like min_p=0.05", ZIPF_LIKE, 1000, 4, 1.0f, 0, 1.0f, 0.05f,
                          NOPEN, 1, M1, 19 },
    [ZIPF_LIKE_COMBINED] = { "zipf_like T=0.7 k=50 p=0.9", ZIPF_LIKE, 1000, 5, 0.7f, 50, 0.9f,
                             0.0f, NOPEN, 1, M1, 20 },
    [ZIPF_COMBINED] = { "zipf T=1 k=10 p=0.8 min_p=0.05", ZIPF, 4096, 6, 1.0f, 10, 0.8f, 0.05f,
                        NOPEN, 1, M1, 21 },
    [ZIPF_T1] = { "zipf T=1", ZIPF, 4096, 7, 1.0f, 0, 1.0f, 0.0f, NOPEN, 10, M1 / 10, 22 },
    [ZIPF_T07_MIN_P] = { "zipf T=0.7 min_p=0.02", ZIPF, 4096, 8, 0.7f, 0, 1.0f, 0.02f, NOPEN, 1,
                         M1, 23 },
    [FLAT_TOP_P] = { "flat p=0.5", FLAT, 2000, 9, 1.0f, 0, 0.5f, 0.0f, NOPEN, 1, M1, 24 },
    [FLAT_T07_TOP_K] = { "flat T=0.7 k=200", FLAT, 2000, 10, 0.7f, 200, 1.0f, 0.0f, NOPEN, 1, M1,
                         25 },
    [PEAKED_T15_TOP_P] = { "peaked T=1.5 p=0.95", PEAKED, 3000, 11, 1.5f, 0, 0.95f, 0.0f, NOPEN,
                           1, M1, 26 },
    [PEAKED_T1] = { "peaked T=1", PEAKED, 3000, 12, 1.0f, 0, 1.0f, 0.0f, NOPEN, 10, M1 / 10, 27 },
    [PENALTIES_ZIPF_LIKE] = { "zipf_like T=0.8 rep=1.3 pres=0.5 freq=0.3", ZIPF_LIKE, 1000, 13,
                              0.8f, 0, 1.0f, 0.0f, PEN(1.3f, 0.5f, 0.3f, hist_zipf_like, 4), 1,
                              M1, 28 },
    [PENALTIES_EFFORT_TOP_K] = { "effort k=6 rep=1.2 pres=0.3 freq=0.2", EFFORT, 9, 0, 1.0f, 6,
                                 1.0f, 0.0f, PEN(1.2f, 0.3f, 0.2f, hist_effort, 2), 1, M1, 29 },
    [PENALTIES_ZIPF_TOP_P] = { "zipf p=0.9 rep=0.8 pres=-0.2 freq=0.4", ZIPF, 4096, 14, 1.0f, 0,
                               0.9f, 0.0f, PEN(0.8f, -0.2f, 0.4f, hist_zipf, 5), 1, M1, 30 },
};

#define NUM_MIXES ((int)(sizeof mixes / sizeof mixes[0]))
#define NUM_INDEPENDENCE 3
/* Bonferroni: 20 mixes + 3 independence G-tests = 23 tests whose null is
 * true; a family-wise false-alarm rate of 1e-3 gives each one
 * alpha = 1e-3 / 23 = 4.35e-5. */
#define FAMILY_ALPHA 1e-3
#define NUM_GTESTS (NUM_MIXES + NUM_INDEPENDENCE)
static const double ALPHA = FAMILY_ALPHA / NUM_GTESTS;
_Static_assert(sizeof mixes / sizeof mixes[0] == 20, "update the Bonferroni comment");

/* A case within 1e-5 of a top-p or min-p boundary would test rounding, not
 * sampling: the reference and kiln may legitimately disagree there. */
#define MARGIN 1e-5

static const float effort_logits[9] = { 4.51f, 0.89f, -1.90f, 6.75f, 1.63f,
                                        -1.62f, -1.89f, 6.28f, 1.79f };

static void make_logits(const mix *m, float *x)
{
    switch (m->shape) {
    case TEXTBOOK: {
        static const double P[4] = { 0.5, 0.3, 0.15, 0.05 };
        for (int i = 0; i < 4; ++i)
            x[i] = (float)log(P[i]);
        break;
    }
    case EFFORT: memcpy(x, effort_logits, sizeof effort_logits); break;
    case ZIPF_LIKE: ks_zipf_like(x, m->vocab, m->shape_seed); break;
    case ZIPF: ks_zipf(x, m->vocab, m->shape_seed); break;
    case FLAT: ks_flat(x, m->vocab, m->shape_seed); break;
    case PEAKED: ks_peaked(x, m->vocab, m->shape_seed); break;
    }
}

/* The contract's f32 penalty (docs/semantics.md section 1), written here
 * only to bound how far kiln's f32 values can be from the double ones. */
static void penalize_f32(float *x, int64_t V, const mix *m)
{
    int32_t *gen = calloc((size_t)V, sizeof *gen);
    char *seen = calloc((size_t)V, 1);
    for (int32_t i = 0; i < m->hist_len; ++i) {
        seen[m->hist[i]] = 1;
        gen[m->hist[i]] += i >= m->prompt_len;
    }
    for (int64_t v = 0; v < V; ++v) {
        if (seen[v])
            x[v] = x[v] > 0.0f ? x[v] / m->rep : x[v] * m->rep;
        if (gen[v]) {
            x[v] = x[v] - m->freq * (float)gen[v];
            x[v] = x[v] - m->pres;
        }
    }
    free(gen);
    free(seen);
}

typedef struct prepared {
    int64_t V;
    float *logits;     /* kiln's input, before penalties */
    float *ref_logits; /* penalised in double, rounded to f32: the reference's input */
    double *expect;    /* the reference's final distribution */
    kt_ref_result ref;
} prepared;

static kt_ref_params ref_params(const mix *m)
{
    /* The reference gets kiln's f32 parameters widened, not the decimals. */
    kt_ref_params rp = { (double)m->t, m->k, (double)m->p, (double)m->min_p };
    return rp;
}

static prepared prepare(const mix *m)
{
    prepared c;
    int64_t V = c.V = m->vocab;
    c.logits = malloc((size_t)V * sizeof *c.logits);
    c.ref_logits = malloc((size_t)V * sizeof *c.ref_logits);
    c.expect = malloc((size_t)V * sizeof *c.expect);
    cr_assert(c.logits && c.ref_logits && c.expect);
    make_logits(m, c.logits);
    memcpy(c.ref_logits, c.logits, (size_t)V * sizeof *c.logits);
    if (m->hist) {
        /* Penalties in double (the reference's textbook rule), compared
         * with the contract's f32 evaluation: a division, a product and two
         * subtractions, each within half an ulp of its result, so 4 ulps of
         * the largest magnitude involved bounds the gap. A gap of 4 ulps of
         * a logit of size ~10 is ~5e-6, i.e. ~5e-6 / T relative in a
         * probability: far inside the 2e-5 probs tolerance below and
         * invisible to a G-test (N * p * d^2 ~ 1e-5). */
        double *xd = malloc((size_t)V * sizeof *xd);
        float *xf = malloc((size_t)V * sizeof *xf);
        for (int64_t i = 0; i < V; ++i)
            xd[i] = (double)c.logits[i];
        memcpy(xf, c.logits, (size_t)V * sizeof *xf);
        kt_reference_penalize(xd, V, m->hist, m->hist_len, m->prompt_len, (double)m->rep,
                              (double)m->pres, (double)m->freq);
        penalize_f32(xf, V, m);
        int changed = 0;
        for (int64_t i = 0; i < V; ++i) {
            double big = fabs((double)c.logits[i]) * fmax(m->rep, 1.0 / m->rep) +
                         fabs((double)m->freq) * m->hist_len + fabs((double)m->pres) +
                         fabs(xd[i]);
            cr_assert(fabs((double)xf[i] - xd[i]) <= 4.0 * FLT_EPSILON * big,
                      "%s: token %lld penalised f32 %.9g vs double %.17g", m->name,
                      (long long)i, (double)xf[i], xd[i]);
            c.ref_logits[i] = (float)xd[i];
            changed += c.ref_logits[i] != c.logits[i];
        }
        cr_assert(changed > 0, "%s: the history penalised nothing", m->name);
        free(xd);
        free(xf);
    }
    c.ref = kt_reference_distribution(c.ref_logits, V, ref_params(m), c.expect);
    cr_assert(c.ref.top_p_margin > MARGIN && c.ref.min_p_margin > MARGIN,
              "%s is ambiguous: top_p_margin %.3g, min_p_margin %.3g (need > %.0e)", m->name,
              c.ref.top_p_margin, c.ref.min_p_margin, MARGIN);
    /* Every kept token must have a representable mass (ratio to the top
     * >= 2^-40, section 5), or kiln's kept set is legitimately smaller. */
    double pmax = 0.0;
    for (int64_t i = 0; i < V; ++i)
        pmax = fmax(pmax, c.expect[i]);
    for (int64_t i = 0; i < V; ++i)
        cr_assert(c.expect[i] == 0.0 || c.expect[i] / pmax > 0x1p-39,
                  "%s: token %lld is kept at ratio %.3g, too close to mass underflow", m->name,
                  (long long)i, c.expect[i] / pmax);
    return c;
}

static void release(prepared *c)
{
    free(c->logits);
    free(c->ref_logits);
    free(c->expect);
}

typedef struct drawn {
    uint64_t n;       /* total draws */
    uint64_t *counts; /* [V] */
} drawn;

/* All of a mix's draws, after checking kiln's probs against the reference:
 * positive on exactly the reference's kept set, and within 2e-5 relative
 * (mass error: f32 exponent over |t| <= 40 bits is <= 6e-6 per token, at
 * most doubled by the normalisation; plus 1e-12 absolute for the 2^-40
 * fixed-point truncation of the rarest tokens). */
static drawn draw_mix(const mix *m, const prepared *c)
{
    const int64_t V = c->V;
    int64_t off[2] = { 0, m->hist_len };
    int32_t prompt = m->prompt_len;
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, V, m->per_call, m->hist ? m->hist_len : 0, 1);
    kiln_batch b = kt_batch_f32(c->logits, 1, V, m->per_call);
    if (m->hist) {
        b.history_offsets = off;
        b.history_ids = m->hist;
        b.prompt_lengths = &prompt;
    }
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = m->t;
    p.top_k_all = m->k;
    p.top_p_all = m->p;
    p.min_p_all = m->min_p;
    p.repetition_penalty_all = m->rep;
    p.presence_penalty_all = m->pres;
    p.frequency_penalty_all = m->freq;
    kt_result r = kt_result_alloc(1, V, m->per_call);
    float *first_probs = malloc((size_t)V * sizeof *first_probs);
    drawn d = { 0, calloc((size_t)V, sizeof(uint64_t)) };
    cr_assert(first_probs && d.counts);
    for (int32_t call = 0; call < m->calls; ++call) {
        p.seed_all = m->seed * 0x9E3779B97F4A7C15ull + (uint64_t)call;
        p.offset_all = (uint64_t)call * 3;
        cr_assert_eq(kt_sample(&s, &b, &p, &r), KILN_SUCCESS, "%s: %s", m->name,
                     kiln_last_error());
        cr_assert_eq(r.valid[0], 1, "%s: row invalid", m->name);
        cr_assert_eq(r.kept[0], c->ref.kept, "%s: kiln keeps %d tokens, the reference %lld",
                     m->name, r.kept[0], (long long)c->ref.kept);
        if (call == 0) {
            for (int64_t i = 0; i < V; ++i) {
                double kp = r.probs[i], rp = c->expect[i];
                cr_assert((kp > 0.0) == (rp > 0.0),
                          "%s: token %lld kiln prob %.9g, reference %.9g (kept sets differ)",
                          m->name, (long long)i, kp, rp);
                cr_assert(fabs(kp - rp) <= 2e-5 * rp + 1e-12,
                          "%s: token %lld kiln prob %.9g, reference %.9g", m->name,
                          (long long)i, kp, rp);
            }
            memcpy(first_probs, r.probs, (size_t)V * sizeof *first_probs);
        } else {
            cr_assert(memcmp(first_probs, r.probs, (size_t)V * sizeof *first_probs) == 0,
                      "%s: probs depend on the seed", m->name);
        }
        for (int32_t j = 0; j < m->per_call; ++j) {
            int32_t t = r.tokens[j];
            cr_assert(t >= 0 && t < V, "%s: token %d out of range", m->name, t);
            d.counts[t]++;
        }
        d.n += (uint64_t)m->per_call;
    }
    free(first_probs);
    kt_result_free(&r);
    kt_destroy(&s);
    return d;
}

static void run_mix(int index)
{
    const mix *m = &mixes[index];
    prepared c = prepare(m);
    drawn d = draw_mix(m, &c);
    kt_gtest g = kt_gtest_run(d.counts, c.expect, c.V, d.n);
    cr_log_info("%s: kept %lld, N = %llu, G = %.2f, df = %.0f, p = %.4f", m->name,
                (long long)c.ref.kept, (unsigned long long)d.n, g.g, g.df, g.p_value);
    cr_assert_eq(g.impossible, 0, "%s: %llu draws of zero-probability tokens", m->name,
                 (unsigned long long)g.impossible);
    cr_assert(g.p_value >= ALPHA,
              "%s: G = %.2f, df = %.0f, p = %.3g < alpha = 1e-3 / %d G-tests = %.3g (N = %llu)",
              m->name, g.g, g.df, g.p_value, NUM_GTESTS, ALPHA, (unsigned long long)d.n);
    free(d.counts);
    release(&c);
}

#define MIX_TEST(test_name, index) \
    Test(frequency, test_name) { run_mix(index); }

MIX_TEST(textbook_t1, TEXTBOOK_T1)
MIX_TEST(textbook_t03, TEXTBOOK_T03)
MIX_TEST(textbook_t5, TEXTBOOK_T5)
MIX_TEST(effort_t07, EFFORT_T07)
MIX_TEST(effort_t15, EFFORT_T15)
MIX_TEST(zipf_like_t1, ZIPF_LIKE_T1)
MIX_TEST(zipf_like_top_k, ZIPF_LIKE_TOP_K)
MIX_TEST(zipf_like_top_p, ZIPF_LIKE_TOP_P)
MIX_TEST(zipf_like_min_p, ZIPF_LIKE_MIN_P)
MIX_TEST(zipf_like_combined, ZIPF_LIKE_COMBINED)
MIX_TEST(zipf_combined, ZIPF_COMBINED)
MIX_TEST(zipf_t1, ZIPF_T1)
MIX_TEST(zipf_t07_min_p, ZIPF_T07_MIN_P)
MIX_TEST(flat_top_p, FLAT_TOP_P)
MIX_TEST(flat_t07_top_k, FLAT_T07_TOP_K)
MIX_TEST(peaked_t15_top_p, PEAKED_T15_TOP_P)
MIX_TEST(peaked_t1, PEAKED_T1)
MIX_TEST(penalties_zipf_like, PENALTIES_ZIPF_LIKE)
MIX_TEST(penalties_effort_top_k, PENALTIES_EFFORT_TOP_K)
MIX_TEST(penalties_zipf_top_p, PENALTIES_ZIPF_TOP_P)

/* ------------------------------------------------------------------ power */

/* x with P(chi2_df > x) = alpha, by bisection. */
static double chi2_critical(double alpha, double df)
{
    double lo = 0.0, hi = 1.0;
    while (kt_chi2_sf(hi, df) > alpha)
        hi *= 2.0;
    for (int i = 0; i < 200; ++i) {
        double mid = 0.5 * (lo + hi);
        if (kt_chi2_sf(mid, df) > alpha)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* P(X > x) for X noncentral chi-square(df, lambda): a Poisson(lambda / 2)
 * mixture of central chi-squares with df + 2j degrees of freedom. */
static double ncx2_sf(double x, double df, double lambda)
{
    double h = lambda / 2.0;
    if (h <= 0.0)
        return kt_chi2_sf(x, df);
    double spread = 15.0 * sqrt(h) + 40.0;
    long j0 = h - spread > 0.0 ? (long)(h - spread) : 0, j1 = (long)(h + spread);
    double s = 0.0;
    for (long j = j0; j <= j1; ++j)
        s += exp(-h + (double)j * log(h) - lgamma((double)j + 1.0)) *
             kt_chi2_sf(x, df + 2.0 * (double)j);
    return s;
}

/* lambda = N sum (p_true - p_hyp)^2 / p_hyp over the categories the G-test
 * uses (those with N p_hyp < 5 pooled into one). */
static double noncentrality(const double *truth, const double *hyp, int64_t V, uint64_t N)
{
    double lambda = 0.0, pt = 0.0, ph = 0.0;
    for (int64_t i = 0; i < V; ++i) {
        if (hyp[i] <= 0.0)
            continue;
        if (hyp[i] * (double)N < 5.0) {
            pt += truth[i];
            ph += hyp[i];
            continue;
        }
        lambda += (truth[i] - hyp[i]) * (truth[i] - hyp[i]) / hyp[i];
    }
    if (ph > 0.0)
        lambda += (pt - ph) * (pt - ph) / ph;
    return lambda * (double)N;
}

/* The mix's own draws (the same seeds, so the same draws as its null test)
 * G-tested against a wrong distribution `hyp`: the stated power must be at
 * least 0.999 at the per-test alpha, and the test must actually reject. */
static void must_reject(int index, const double *hyp, const char *what)
{
    const mix *m = &mixes[index];
    prepared c = prepare(m);
    drawn d = draw_mix(m, &c);
    kt_gtest g = kt_gtest_run(d.counts, hyp, c.V, d.n);
    double lambda = noncentrality(c.expect, hyp, c.V, d.n);
    double crit = chi2_critical(ALPHA, g.df);
    double power = ncx2_sf(crit, g.df, lambda);
    cr_log_info("%s vs %s: lambda = %.1f, df = %.0f, critical G = %.2f, power = %.12f, "
                "G = %.1f, p = %.3g", m->name, what, lambda, g.df, crit, power, g.g,
                g.p_value);
    cr_assert(power >= 0.999, "%s vs %s: power %.6f < 0.999 (lambda %.1f, df %.0f)", m->name,
              what, power, lambda, g.df);
    cr_assert(g.p_value < ALPHA,
              "%s vs %s: not rejected: G = %.2f, df = %.0f, p = %.3g >= alpha %.3g "
              "(lambda %.1f, power %.6f)",
              m->name, what, g.g, g.df, g.p_value, ALPHA, lambda, power);
    free(d.counts);
    release(&c);
}

/* effort T=0.7 tested as if T were 0.75: lambda = 1e6 * 1.70e-3 ~ 1700
 * (df 8, critical G ~ 33.8): power 1 - 1e-295. */
Test(power, temperature_075_for_07)
{
    const mix *m = &mixes[EFFORT_T07];
    double hyp[9];
    kt_ref_params rp = ref_params(m);
    rp.temperature = 0.75;
    kt_reference_distribution(effort_logits, 9, rp, hyp);
    must_reject(EFFORT_T07, hyp, "T = 0.75");
}

/* zipf_like p=0.9 tested as if top-p kept one more token: that token's
 * probability q under the wrong hypothesis is never drawn, so
 * lambda ~ N q / (1 - q) ~ 1e6 * q; q ~ 6.5e-4 here: lambda ~ 650 (df 200,
 * critical G ~ 288): power 1 - 1e-41. */
Test(power, top_p_one_token_more)
{
    const mix *m = &mixes[ZIPF_LIKE_TOP_P];
    prepared c = prepare(m);
    double *hyp = malloc((size_t)c.V * sizeof *hyp);
    kt_ref_params rp = ref_params(m);
    rp.top_p = 1.0;
    rp.top_k = (int32_t)c.ref.kept + 1;
    kt_ref_result wide = kt_reference_distribution(c.ref_logits, c.V, rp, hyp);
    cr_assert_eq(wide.kept, c.ref.kept + 1);
    must_reject(ZIPF_LIKE_TOP_P, hyp, "top-p keeping one token more");
    free(hyp);
    release(&c);
}

/* textbook T=1 (4e6 draws) with the 0.15 token moved to 0.153, renormalised
 * by 1.003: lambda = N (0.15 * 0.0169^2 + 0.85 * 0.003^2) = 4e6 * 5.0e-5
 * ~ 200 (df 3, critical G ~ 22.85): power 1 - 1e-21. With N = 1e6 it
 * would be ~ 50, power 0.994: the reason this mix has 4e6 draws. */
Test(power, mid_token_moved_2_percent)
{
    double hyp[4] = { 0.5, 0.3, 0.15 * 1.02, 0.05 };
    double s = hyp[0] + hyp[1] + hyp[2] + hyp[3];
    for (int i = 0; i < 4; ++i)
        hyp[i] /= s;
    must_reject(TEXTBOOK_T1, hyp, "token 2 at 1.02 x 0.15");
}

/* The penalty mix tested against the unpenalised distribution: a forgotten
 * penalty moves several of the top tokens by tens of percent: lambda ~ 8.5e5
 * (df ~ 720, critical G ~ 880): power 1 to double precision. */
Test(power, penalties_ignored)
{
    const mix *m = &mixes[PENALTIES_ZIPF_LIKE];
    prepared c = prepare(m);
    double *hyp = malloc((size_t)c.V * sizeof *hyp);
    kt_reference_distribution(c.logits, c.V, ref_params(m), hyp);
    must_reject(PENALTIES_ZIPF_LIKE, hyp, "no penalties");
    free(hyp);
    release(&c);
}

/* ----------------------------------------------------------- independence */

/* Pairs of draws of the textbook T=1 row form a 16-cell table G-tested
 * against the product of the reference marginals (df 15): dependence shows
 * as cells off their product. Pair i is (a[stride * i], b[stride * i +
 * first_b]). */
static void pairs_gtest(const char *what, const int32_t *a, const int32_t *b, int64_t stride,
                        int64_t first_b, int64_t pairs, const double *p)
{
    uint64_t counts[16] = { 0 };
    double expect[16];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
            expect[i * 4 + j] = p[i] * p[j];
    for (int64_t i = 0; i < pairs; ++i) {
        int32_t x = a[stride * i], y = b[stride * i + first_b];
        cr_assert(x >= 0 && x < 4 && y >= 0 && y < 4);
        counts[x * 4 + y]++;
    }
    kt_gtest g = kt_gtest_run(counts, expect, 16, (uint64_t)pairs);
    cr_assert(g.impossible == 0 && g.p_value >= ALPHA,
              "%s: G = %.2f, df = %.0f, p = %.3g < alpha = 1e-3 / %d G-tests = %.3g "
              "(%lld pairs)",
              what, g.g, g.df, g.p_value, NUM_GTESTS, ALPHA, (long long)pairs);
}

typedef struct runs {
    kt_sampler s;
    float x[4];
    double p[4];
} runs;

static runs textbook_runs(int32_t n)
{
    runs r;
    r.s = kt_create(KILN_BACKEND_CPU, 1, 4, n, 0, 1);
    static const double P[4] = { 0.5, 0.3, 0.15, 0.05 };
    for (int i = 0; i < 4; ++i)
        r.x[i] = (float)log(P[i]);
    kt_ref_params rp = { 1.0, 0, 1.0, 0.0 };
    kt_reference_distribution(r.x, 4, rp, r.p);
    return r;
}

static void textbook_draws(runs *r, int32_t n, uint64_t seed, uint64_t offset, kt_result *out)
{
    kiln_batch b = kt_batch_f32(r->x, 1, 4, n);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.seed_all = seed;
    p.offset_all = offset;
    cr_assert_eq(kt_sample(&r->s, &b, &p, out), KILN_SUCCESS, "%s", kiln_last_error());
}

/* Draws 2i and 2i+1 of one call: adjacent Philox subsequences. */
Test(independence, adjacent_draws)
{
    const int32_t n = M1;
    runs r = textbook_runs(n);
    kt_result a = kt_result_alloc(1, 4, n);
    textbook_draws(&r, n, 0xD1CEull, 0, &a);
    pairs_gtest("draws 2i, 2i+1", a.tokens, a.tokens, 2, 1, n / 2, r.p);
    kt_result_free(&a);
    kt_destroy(&r.s);
}

/* Draw j at offset 4 and draw j at offset 5: consecutive decoding steps. */
Test(independence, adjacent_offsets)
{
    const int32_t n = M1 / 2;
    runs r = textbook_runs(n);
    kt_result a = kt_result_alloc(1, 4, n), b = kt_result_alloc(1, 4, n);
    textbook_draws(&r, n, 0xBEEFull, 4, &a);
    textbook_draws(&r, n, 0xBEEFull, 5, &b);
    pairs_gtest("offsets 4, 5", a.tokens, b.tokens, 1, 0, n, r.p);
    kt_result_free(&a);
    kt_result_free(&b);
    kt_destroy(&r.s);
}

/* Draw j with seed s and draw j with seed s + 1: neighbouring requests. */
Test(independence, adjacent_seeds)
{
    const int32_t n = M1 / 2;
    runs r = textbook_runs(n);
    kt_result a = kt_result_alloc(1, 4, n), b = kt_result_alloc(1, 4, n);
    textbook_draws(&r, n, 1000, 0, &a);
    textbook_draws(&r, n, 1001, 0, &b);
    pairs_gtest("seeds 1000, 1001", a.tokens, b.tokens, 1, 0, n, r.p);
    kt_result_free(&a);
    kt_result_free(&b);
    kt_destroy(&r.s);
}
