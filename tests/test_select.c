/* The select algorithm against the sort algorithm on the CPU: every output
 * byte equal, over the parity grid's shapes and filters, plus rows built to
 * defeat the sampled top-k threshold (the top tokens where the sample does
 * not look), ties across every radix digit, masks and zero-mass tails. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static kt_sampler make(kiln_algorithm alg, int64_t B, int64_t V, int32_t n)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    cfg.max_samples = n;
    cfg.max_history = 32;
    cfg.algorithm = alg;
    kt_sampler s = { NULL, NULL, 0, KILN_BACKEND_CPU };
    cr_assert_eq(kiln_sampler_create(&cfg, &s.sampler), KILN_SUCCESS, "%s", kiln_last_error());
    kiln_sampler_workspace_size(s.sampler, &s.workspace_size);
    s.workspace = malloc(s.workspace_size);
    return s;
}

/* Rows: realistic shapes and adversarial ones. */
static void fill(float *x, int64_t V, int shape, uint64_t seed)
{
    ks_rng rng = { seed };
    switch (shape) {
    case 0: ks_zipf_like(x, V, seed); break;
    case 1: ks_zipf(x, V, seed); break;
    case 2: ks_flat(x, V, seed); break;
    case 3: ks_peaked(x, V, seed); break;
    case 4: /* high values only where a stride-16 sample never looks */
        for (int64_t i = 0; i < V; ++i)
            x[i] = i % 16 == 0 ? 5.0f : (i % 16 == 7 ? 6.0f + (float)(i % 5) : 0.0f);
        break;
    case 5: /* the sample sees only the best tokens */
        for (int64_t i = 0; i < V; ++i)
            x[i] = i % 16 == 0 ? 5.0f : 0.0f;
        break;
    case 6: /* a few distinct values: ties across every digit */
        for (int64_t i = 0; i < V; ++i)
            x[i] = (float)(ks_rng_u64(&rng) % 4) * 0.25f;
        break;
    case 7: /* -inf masks and a zero-mass tail */
        ks_zipf(x, V, seed);
        for (int64_t i = 0; i < V; i += 3)
            x[i] = -INFINITY;
        for (int64_t i = 1; i < V; i += 5)
            x[i] = -1e30f;
        break;
    default: /* +0 and -0 at the top, many equal logits */
        for (int64_t i = 0; i < V; ++i)
            x[i] = i % 7 == 0 ? -0.0f : (i % 11 == 0 ? 0.0f : -3.0f);
        break;
    }
}

static void compare(int64_t B, int64_t V, int32_t n, uint64_t seed)
{
    float *x = malloc((size_t)(B * V) * 4);
    float T[64], P[64], MP[64];
    int32_t K[64];
    uint64_t S[64];
    ks_rng rng = { seed };
    static const float temps[] = { 1.0f, 0.7f, 0.0f, 1e-30f, 5.0f };
    static const int32_t ks[] = { 0, 1, 2, 50, 1000, 3000, -1, 17 };
    static const float ps[] = { 1.0f, 0.9f, 0.5f, 1e-7f, 0.999f };
    static const float mps[] = { 0.0f, 0.05f, 1.0f };
    for (int64_t b = 0; b < B; ++b) {
        fill(x + b * V, V, (int)((seed + (uint64_t)b) % 9), seed * 31 + (uint64_t)b);
        T[b] = temps[ks_rng_u64(&rng) % 5];
        K[b] = ks[ks_rng_u64(&rng) % 8];
        P[b] = ps[ks_rng_u64(&rng) % 5];
        MP[b] = mps[ks_rng_u64(&rng) % 3];
        S[b] = ks_rng_u64(&rng);
    }
    kiln_batch bt = kt_batch_f32(x, B, V, n);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = T;
    p.top_k = K;
    p.top_p = P;
    p.min_p = MP;
    p.seed = S;
    kt_sampler sort = make(KILN_ALGORITHM_SORT, B, V, n), sel = make(KILN_ALGORITHM_SELECT, B, V, n),
               aut = make(KILN_ALGORITHM_AUTO, B, V, n);
    kt_result a = kt_result_alloc(B, V, n), c = kt_result_alloc(B, V, n), d = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&sort, &bt, &p, &a), KILN_SUCCESS);
    cr_assert_eq(kt_sample(&sel, &bt, &p, &c), KILN_SUCCESS);
    cr_assert_eq(kt_sample(&aut, &bt, &p, &d), KILN_SUCCESS);
    for (int64_t b = 0; b < B; ++b) {
        cr_assert(kt_row_equal(&a, b, &c, b),
                  "V=%lld row %lld (shape %d, T %g k %d p %g min_p %g): select differs from sort",
                  (long long)V, (long long)b, (int)((seed + (uint64_t)b) % 9), (double)T[b], K[b],
                  (double)P[b], (double)MP[b]);
        cr_assert(kt_row_equal(&a, b, &d, b), "auto differs from sort");
    }
    kt_result_free(&a);
    kt_result_free(&c);
    kt_result_free(&d);
    kt_destroy(&sort);
    kt_destroy(&sel);
    kt_destroy(&aut);
    free(x);
}

Test(select_vs_sort, small_vocabularies)
{
    static const int64_t vs[] = { 1, 2, 3, 17, 111, 1000, 4099 };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; ++i)
        compare(37, vs[i], 3, 100 + i);
}

Test(select_vs_sort, large_vocabularies, .timeout = 600)
{
    static const int64_t vs[] = { 16384, 32000, 128256, 151936, 262144 };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; ++i)
        compare(18, vs[i], 2, 200 + i);
}

Test(select_vs_sort, adversarial_sample)
{
    /* shapes 4 and 5 with k far above what the stride-16 sample predicts */
    for (int shape = 4; shape <= 5; ++shape)
        for (int32_t k = 100; k <= 20000; k *= 3) {
            const int64_t V = 65536;
            float *x = malloc((size_t)V * 4);
            fill(x, V, shape, 1);
            kiln_batch bt = kt_batch_f32(x, 1, V, 4);
            kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
            p.top_k_all = k;
            p.top_p_all = 0.8f;
            kt_sampler sort = make(KILN_ALGORITHM_SORT, 1, V, 4), sel = make(KILN_ALGORITHM_SELECT, 1, V, 4);
            kt_result a = kt_result_alloc(1, V, 4), c = kt_result_alloc(1, V, 4);
            cr_assert_eq(kt_sample(&sort, &bt, &p, &a), KILN_SUCCESS);
            cr_assert_eq(kt_sample(&sel, &bt, &p, &c), KILN_SUCCESS);
            cr_assert(kt_result_equal(&a, &c), "shape %d k %d", shape, k);
            kt_result_free(&a);
            kt_result_free(&c);
            kt_destroy(&sort);
            kt_destroy(&sel);
            free(x);
        }
}

Test(select_vs_sort, min_p_rows)
{
    /* min-p alone, where the select path collects a superset at the
     * threshold of a sampled max in the key range's pass: rows whose max the
     * sample sees (Zipf-like: token 0), misses by little or by far (peaked,
     * the high values off the sample), dense and sparse kept sets, each
     * dtype; byte-equal to the sort path, which takes none of this */
    static const float mps[] = { 0.05f, 0.3f, 1.0f, 1e-6f };
    static const float temps[] = { 1.0f, 0.7f, 5.0f, 1e-30f };
    static const int64_t vs[] = { 16384, 128256 };
    for (size_t vi = 0; vi < 2; ++vi) {
        const int64_t V = vs[vi], B = 18;
        float *x = malloc((size_t)(B * V) * 4);
        uint16_t *h = malloc((size_t)(B * V) * 2);
        float T[18], MP[18];
        for (int64_t b = 0; b < B; ++b) {
            fill(x + b * V, V, (int)(b % 9), 7 + (uint64_t)b);
            for (int64_t i = 0; i < V; ++i) { /* bf16-exact, so both dtypes mean the same */
                uint32_t u;
                memcpy(&u, &x[b * V + i], 4);
                u &= 0xFFFF0000u;
                memcpy(&x[b * V + i], &u, 4);
                h[b * V + i] = (uint16_t)(u >> 16);
            }
            T[b] = temps[b % 4];
            MP[b] = mps[(b / 4) % 4];
        }
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.temperature = T;
        p.min_p = MP;
        p.seed_all = 3;
        kt_sampler sort = make(KILN_ALGORITHM_SORT, B, V, 3), sel = make(KILN_ALGORITHM_SELECT, B, V, 3);
        kt_result a = kt_result_alloc(B, V, 3), c = kt_result_alloc(B, V, 3);
        kiln_batch bt = kt_batch_f32(x, B, V, 3);
        cr_assert_eq(kt_sample(&sort, &bt, &p, &a), KILN_SUCCESS);
        for (int bf16 = 0; bf16 < 2; ++bf16) {
            kiln_batch bs = kt_batch_f32(bf16 ? (const void *)h : (const void *)x, B, V, 3);
            bs.dtype = bf16 ? KILN_DTYPE_BF16 : KILN_DTYPE_F32;
            kt_result_poison(&c);
            cr_assert_eq(kt_sample(&sel, &bs, &p, &c), KILN_SUCCESS);
            for (int64_t b = 0; b < B; ++b)
                cr_assert(kt_row_equal(&a, b, &c, b), "V %lld %s row %lld (shape %d, T %g, min_p %g)",
                          (long long)V, bf16 ? "bf16" : "f32", (long long)b, (int)(b % 9),
                          (double)T[b], (double)MP[b]);
        }
        kt_result_free(&a);
        kt_result_free(&c);
        kt_destroy(&sort);
        kt_destroy(&sel);
        free(x);
        free(h);
    }
}
