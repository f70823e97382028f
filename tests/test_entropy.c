/* Entropy (docs/semantics.md section 15) and entropy-adaptive temperature
 * (section 16). Entropies are held to the stated bound against float64
 * -sum p ln p, on hand-worked rows and on many generated ones; dynatemp is
 * held to llama.cpp's temp_ext formula in float64, and sampling at the
 * temperature it reports must give the very bytes of sampling at that
 * temperature directly. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "extras.h"

/* Section 15's bound, before the f32 rounding of the result (one more ulp). */
static double entropy_bound(double h, int64_t vocab)
{
    return 3e-6 * (1.0 + h) + 3e-11 * (double)vocab + 1.2e-7 * h + 1e-30;
}

/* -sum p ln p in float64 of softmax((x - m) / T) over the tokens `keep`
 * marks (all when NULL). */
static double entropy64(const float *x, int64_t vocab, double T, const uint8_t *keep)
{
    double m = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i)
        if ((!keep || keep[i]) && x[i] > m)
            m = x[i];
    double s = 0.0, e = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
        if ((keep && !keep[i]) || x[i] == -INFINITY)
            continue;
        const double t = ((double)x[i] - m) / T, w = exp(t);
        s += w;
        e += w * t;
    }
    return log(s) - e / s;
}

typedef struct one_row {
    kt_sampler s;
    kt_full r;
} one_row;

static one_row row_call(const float *x, int64_t vocab, kiln_sampling_params p,
                        const int32_t *mask)
{
    one_row o;
    o.s = kt_cpu_sampler(1, vocab, 1, 0, 1, 0, KILN_ALGORITHM_AUTO);
    o.r = kt_full_alloc(1, vocab, 1, 0);
    kiln_batch bt = kt_batch_f32(x, 1, vocab, 1);
    bt.allowed_mask = mask;
    const kiln_status st = kt_full_sample(&o.s, &bt, &p, &o.r);
    cr_assert_eq(st, KILN_SUCCESS, "%s", kiln_last_error());
    return o;
}

static void row_done(one_row *o)
{
    kt_full_free(&o->r);
    kt_destroy(&o->s);
}

static void assert_entropy(float got, double want, int64_t vocab, const char *what)
{
    cr_assert(fabs((double)got - want) <= entropy_bound(want, vocab),
              "%s: entropy %.9g, float64 %.12g (bound %.3g)", what, (double)got, want,
              entropy_bound(want, vocab));
}

Test(entropy, known_answers)
{
    /* Uniform over 9: ln 9 at every temperature; top-k 4 leaves ln 4. */
    float flat[9];
    for (int i = 0; i < 9; ++i)
        flat[i] = 0.3f;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = 0.7f;
    one_row o = row_call(flat, 9, p, NULL);
    assert_entropy(o.r.raw_entropy[0], log(9.0), 9, "uniform 9, raw");
    assert_entropy(o.r.entropy[0], log(9.0), 9, "uniform 9, final");
    row_done(&o);
    p.top_k_all = 4;
    o = row_call(flat, 9, p, NULL);
    assert_entropy(o.r.entropy[0], log(4.0), 9, "uniform 9, top-k 4");
    assert_entropy(o.r.raw_entropy[0], log(9.0), 9, "uniform 9, top-k 4, raw");
    row_done(&o);

    /* p = (3/4, 1/4): H = 0.75 ln(4/3) + 0.25 ln 4 = 0.5623351446188083. */
    const float two[2] = { 0.0f, (float)-log(3.0) };
    p = (kiln_sampling_params)KILN_SAMPLING_PARAMS_INIT;
    o = row_call(two, 2, p, NULL);
    assert_entropy(o.r.entropy[0], 0.5623351446188083, 2, "(3/4, 1/4)");
    row_done(&o);

    /* Greedy: the final distribution is one token, entropy 0; raw unchanged. */
    p.temperature_all = 0.0f;
    o = row_call(flat, 9, p, NULL);
    cr_assert_eq(o.r.entropy[0], 0.0f);
    assert_entropy(o.r.raw_entropy[0], log(9.0), 9, "greedy, raw");
    row_done(&o);

    /* One allowed token: both entropies exactly 0. */
    const int32_t only5 = 1 << 5;
    p.temperature_all = 1.0f;
    o = row_call(flat, 9, p, &only5);
    cr_assert_eq(o.r.entropy[0], 0.0f);
    cr_assert_eq(o.r.raw_entropy[0], 0.0f);
    row_done(&o);

    /* An invalid row: NaN. */
    float bad[9];
    memcpy(bad, flat, sizeof bad);
    bad[4] = NAN;
    o = row_call(bad, 9, p, NULL);
    cr_assert(isnan(o.r.entropy[0]) && isnan(o.r.raw_entropy[0]));
    row_done(&o);
}

/* The textbook's "every effort moves you" row at its temperatures. */
Test(entropy, textbook_row_against_float64)
{
    static const float x[9] = { 4.51f, 0.89f, -1.90f, 6.75f, 1.63f, -1.62f, -1.89f, 6.28f, 1.79f };
    const float temps[] = { 0.1f, 0.5f, 1.0f, 1.5f, 3.0f };
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; ++t) {
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.temperature_all = temps[t];
        one_row o = row_call(x, 9, p, NULL);
        char what[64];
        snprintf(what, sizeof what, "textbook T = %g", (double)temps[t]);
        assert_entropy(o.r.entropy[0], entropy64(x, 9, temps[t], NULL), 9, what);
        assert_entropy(o.r.raw_entropy[0], entropy64(x, 9, 1.0, NULL), 9, what);
        row_done(&o);
    }
}

/* Generated rows of every shape and size, every filter: the final entropy
 * against float64 over the set kiln kept (its probs > 0), so the test does
 * not depend on where a boundary falls; the raw one over every token. The
 * raw entropy must also be the same bytes whatever the filters are. */
Test(entropy, generated_rows_within_the_stated_bound)
{
    const int64_t vocabs[] = { 1, 2, 9, 100, 1000, 32000 };
    const float temps[] = { 0.3f, 0.7f, 1.0f, 1.5f };
    typedef struct { int32_t k; float p, min_p; } filt;
    const filt filters[] = { { 0, 1.0f, 0.0f }, { 40, 1.0f, 0.0f }, { 0, 0.9f, 0.0f },
                             { 0, 1.0f, 0.05f }, { 50, 0.95f, 0.01f } };
    int cases = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof vocabs[0]; ++vi) {
        const int64_t V = vocabs[vi];
        float *x = malloc((size_t)V * sizeof *x);
        uint8_t *keep = malloc((size_t)V);
        kt_sampler s = kt_cpu_sampler(1, V, 1, 0, 1, 0, KILN_ALGORITHM_AUTO);
        kt_full r = kt_full_alloc(1, V, 1, 0);
        for (int shape = 0; shape < 3; ++shape) {
            const uint64_t seed = 17 + (uint64_t)vi * 5 + (uint64_t)shape;
            if (shape == 0)
                ks_zipf_like(x, V, seed);
            else if (shape == 1)
                ks_peaked(x, V, seed);
            else
                ks_flat(x, V, seed);
            uint32_t raw_bits = 0;
            for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ++ti)
                for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; ++fi) {
                    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
                    p.temperature_all = temps[ti];
                    p.top_k_all = filters[fi].k;
                    p.top_p_all = filters[fi].p;
                    p.min_p_all = filters[fi].min_p;
                    kiln_batch bt = kt_batch_f32(x, 1, V, 1);
                    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS, "%s",
                                 kiln_last_error());
                    for (int64_t i = 0; i < V; ++i)
                        keep[i] = r.probs[i] > 0.0f;
                    char what[96];
                    snprintf(what, sizeof what, "V %lld shape %d T %g filter %zu", (long long)V,
                             shape, (double)temps[ti], fi);
                    assert_entropy(r.entropy[0], entropy64(x, V, temps[ti], keep), V, what);
                    uint32_t bits;
                    memcpy(&bits, &r.raw_entropy[0], 4);
                    if (ti == 0 && fi == 0) {
                        raw_bits = bits;
                        assert_entropy(r.raw_entropy[0], entropy64(x, V, 1.0, NULL), V, what);
                    }
                    cr_assert_eq(bits, raw_bits, "%s: the raw entropy moved with the filters", what);
                    ++cases;
                }
        }
        kt_full_free(&r);
        kt_destroy(&s);
        free(x);
        free(keep);
    }
    cr_assert_eq(cases, 6 * 3 * 4 * 5);
}

/* ------------------------------------------------------------- dynatemp */

static kiln_sampling_params dyn_params(float T, float range, float expo)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = T;
    p.dynatemp_range_all = range;
    p.dynatemp_exponent_all = expo;
    p.seed_all = 99;
    return p;
}

Test(dynatemp, range_zero_is_the_plain_temperature_bit_for_bit)
{
    enum { V = 500, R = 4, N = 8, TOP = 6 };
    float x[R * V];
    for (int b = 0; b < R; ++b)
        ks_zipf_like(x + b * V, V, 300 + (uint64_t)b);
    const float temps[R] = { 0.0f, 0.5f, 1.0f, 1.7f };
    kt_sampler s = kt_cpu_sampler(R, V, N, 0, 1, TOP, KILN_ALGORITHM_AUTO);
    kt_full a = kt_full_alloc(R, V, N, TOP), c = kt_full_alloc(R, V, N, TOP);
    kiln_batch bt = kt_batch_f32(x, R, V, N);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = temps;
    p.top_p_all = 0.9f;
    p.seed_all = 5;
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &a), KILN_SUCCESS);
    p.dynatemp_range_all = 0.0f;
    p.dynatemp_exponent_all = 3.5f; /* not used with range 0 */
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &c), KILN_SUCCESS);
    cr_assert(kt_full_equal(&a, &c));
    for (int b = 0; b < R; ++b)
        cr_assert_eq(a.temperatures[b], temps[b], "row %d reports T %.9g", b,
                     (double)a.temperatures[b]);
    kt_full_free(&a);
    kt_full_free(&c);
    kt_destroy(&s);
}

/* llama.cpp's llama_sampler_temp_ext_apply, in float64: softmax at T = 1,
 * H = -sum p ln p, H_max = ln(candidates), T' = T_min + (T_max - T_min) *
 * (H / H_max)^e. The rows keep every token within 25 nats of the top, so
 * every token has mass and kiln's H_max counts the same candidates. */
static double llama_dynatemp(const float *x, int64_t V, double T, double d, double e)
{
    const double h = entropy64(x, V, 1.0, NULL), hmax = log((double)V);
    const double tmin = T - d > 0.0 ? T - d : 0.0, tmax = T + d;
    return tmin + (tmax - tmin) * pow(h / hmax, e);
}

Test(dynatemp, follows_llama_cpp_and_samples_as_that_temperature)
{
    enum { V = 2000, N = 6, TOP = 4 };
    float x[V];
    const float Ts[] = { 0.4f, 0.8f, 1.0f, 1.3f };
    const float ds[] = { 0.1f, 0.5f, 1.0f, 2.0f };
    const float es[] = { 0.5f, 1.0f, 2.0f };
    kt_sampler s = kt_cpu_sampler(1, V, N, 0, 1, TOP, KILN_ALGORITHM_AUTO);
    kt_full dyn = kt_full_alloc(1, V, N, TOP), fixed = kt_full_alloc(1, V, N, TOP);
    for (int shape = 0; shape < 3; ++shape) {
        if (shape == 0)
            ks_zipf_like(x, V, 41);
        else if (shape == 1)
            ks_flat(x, V, 42);
        else
            ks_peaked(x, V, 43);
        float m = x[0];
        for (int i = 1; i < V; ++i)
            m = x[i] > m ? x[i] : m;
        for (int i = 0; i < V; ++i)
            if (x[i] < m - 25.0f)
                x[i] = m - 25.0f;
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ++ti)
            for (size_t di = 0; di < sizeof ds / sizeof ds[0]; ++di)
                for (size_t ei = 0; ei < sizeof es / sizeof es[0]; ++ei) {
                    kiln_batch bt = kt_batch_f32(x, 1, V, N);
                    kiln_sampling_params p = dyn_params(Ts[ti], ds[di], es[ei]);
                    p.top_k_all = 200;
                    p.top_p_all = 0.95f;
                    cr_assert_eq(kt_full_sample(&s, &bt, &p, &dyn), KILN_SUCCESS, "%s",
                                 kiln_last_error());
                    const double want = llama_dynatemp(x, V, Ts[ti], ds[di], es[ei]);
                    const double got = dyn.temperatures[0];
                    /* H carries section 15's error; (H/H_max)^e moves by e *
                     * ratio^(e-1) times that over H_max; and one f32 rounding. */
                    const double h = entropy64(x, V, 1.0, NULL), ratio = h / log((double)V);
                    const double slope = es[ei] * pow(ratio, es[ei] - 1.0) / log((double)V);
                    const double tol = 2.0 * ds[di] * slope * entropy_bound(h, V) +
                                       2.0 * FLT_EPSILON * want + 1e-12;
                    cr_assert(fabs(got - want) <= tol,
                              "shape %d T %g d %g e %g: T' %.9g, llama.cpp formula %.12g (tol %.3g)",
                              shape, (double)Ts[ti], (double)ds[di], (double)es[ei], got, want,
                              tol);
                    /* Sampling at T' with dynatemp off gives the same bytes. */
                    kiln_sampling_params q = p;
                    q.temperature_all = dyn.temperatures[0];
                    q.dynatemp_range_all = 0.0f;
                    cr_assert_eq(kt_full_sample(&s, &bt, &q, &fixed), KILN_SUCCESS);
                    cr_assert(kt_full_equal(&dyn, &fixed),
                              "shape %d T %g d %g e %g: dynatemp differs from sampling at its T'",
                              shape, (double)Ts[ti], (double)ds[di], (double)es[ei]);
                }
    }
    kt_full_free(&dyn);
    kt_full_free(&fixed);
    kt_destroy(&s);
}

Test(dynatemp, edge_rows)
{
    float flat[16];
    for (int i = 0; i < 16; ++i)
        flat[i] = -2.0f;
    /* A uniform row has H = H_max: T' = T + d exactly (in f64, then f32). */
    one_row o = row_call(flat, 16, dyn_params(0.8f, 0.3f, 0.7f), NULL);
    cr_assert_eq(o.r.temperatures[0], (float)(0.8 + (double)0.3f), "uniform: T' = %.9g",
                 (double)o.r.temperatures[0]);
    row_done(&o);
    /* T < d: T_min = 0 and T_max = T + d. */
    o = row_call(flat, 16, dyn_params(0.2f, 0.5f, 1.0f), NULL);
    cr_assert_eq(o.r.temperatures[0], (float)((double)0.2f + (double)0.5f));
    row_done(&o);
    /* One token with mass: H_max = 0, so T' = T_min; with T <= d that is 0,
     * a greedy row (final entropy 0, logprob 0). */
    const int32_t only3 = 1 << 3;
    o = row_call(flat, 16, dyn_params(1.0f, 0.25f, 1.0f), &only3);
    cr_assert_eq(o.r.temperatures[0], 0.75f);
    cr_assert_eq(o.r.tokens[0], 3);
    row_done(&o);
    o = row_call(flat, 16, dyn_params(0.5f, 0.5f, 1.0f), &only3);
    cr_assert_eq(o.r.temperatures[0], 0.0f);
    cr_assert_eq(o.r.tokens[0], 3);
    cr_assert_eq(o.r.logprobs[0], 0.0f);
    cr_assert_eq(o.r.entropy[0], 0.0f);
    row_done(&o);
    /* A greedy base temperature with a range: T_min 0, T_max d. */
    float two[2] = { 0.0f, 0.0f };
    o = row_call(two, 2, dyn_params(0.0f, 0.4f, 1.0f), NULL);
    cr_assert_eq(o.r.temperatures[0], 0.4f);
    row_done(&o);
    /* An invalid row reports NaN. */
    flat[7] = INFINITY;
    o = row_call(flat, 16, dyn_params(1.0f, 0.5f, 1.0f), NULL);
    cr_assert(isnan(o.r.temperatures[0]));
    cr_assert_eq(o.r.valid[0], 0);
    row_done(&o);
}

Test(dynatemp, bad_values_name_row_and_field_and_write_nothing)
{
    enum { R = 3, V = 20 };
    float x[R * V];
    for (int b = 0; b < R; ++b)
        ks_zipf_like(x + b * V, V, 7 + (uint64_t)b);
    kt_sampler s = kt_cpu_sampler(R, V, 1, 0, 1, 2, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(R, V, 1, 2);
    kiln_batch bt = kt_batch_f32(x, R, V, 1);
    typedef struct { int exponent; float value; const char *msg; } bad;
    const bad cases[] = {
        { 0, -0.5f, "dynatemp_range[1] = -0.5 must be finite and >= 0 (0 disables dynatemp)" },
        { 0, NAN, "dynatemp_range[1] = nan must be finite" },
        { 0, INFINITY, "dynatemp_range[1] = inf must be finite" },
        { 0, -1e-45f, "dynatemp_range[1] = -1.40129846e-45 must be finite" },
        { 1, 0.0f, "dynatemp_exponent[1] = 0 must be finite and > 0" },
        { 1, -2.0f, "dynatemp_exponent[1] = -2 must be finite and > 0" },
        { 1, NAN, "dynatemp_exponent[1] = nan must be finite and > 0" },
        { 1, INFINITY, "dynatemp_exponent[1] = inf must be finite and > 0" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        float range[R] = { 0.5f, 0.5f, 0.5f }, expo[R] = { 1.0f, 1.0f, 1.0f };
        (cases[c].exponent ? expo : range)[1] = cases[c].value;
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.dynatemp_range = range;
        p.dynatemp_exponent = expo;
        kt_full_poison(&r);
        cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_ERROR_INVALID_PARAMETER, "case %zu: %s",
                     c, kiln_last_error());
        cr_assert(strstr(kiln_last_error(), cases[c].msg), "case %zu: \"%s\" lacks \"%s\"", c,
                  kiln_last_error(), cases[c].msg);
        cr_assert(kt_full_untouched(&r), "case %zu wrote an output", c);
    }
    /* The all-rows scalars are named as such. */
    kiln_sampling_params p = dyn_params(1.0f, 0.5f, -0.0f);
    kt_full_poison(&r);
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_ERROR_INVALID_PARAMETER);
    cr_assert(strstr(kiln_last_error(), "dynatemp_exponent_all = -0 must be finite and > 0"), "%s",
              kiln_last_error());
    cr_assert(kt_full_untouched(&r));
    p = dyn_params(1.0f, -3.25f, 1.0f);
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_ERROR_INVALID_PARAMETER);
    cr_assert(strstr(kiln_last_error(), "dynatemp_range_all = -3.25"), "%s", kiln_last_error());
    cr_assert(kt_full_untouched(&r));
    kt_full_free(&r);
    kt_destroy(&s);
}
