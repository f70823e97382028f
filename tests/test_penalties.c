/* Penalties (docs/semantics.md section 1): repetition over prompt and
 * generated tokens, frequency then presence over generated tokens only, each
 * distinct token penalised once; disabled values are exact identities; a
 * row's history affects that row alone. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "reference.h"

typedef struct pen {
    float rep, pres, freq;
} pen;

typedef struct hist {
    const int32_t *ids;
    int64_t len;
    int32_t prompt;
} hist;

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void check_status(kiln_status st)
{
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample: %s (%s)", kiln_status_string(st),
                 kiln_last_error());
}

/* One row with an optional history (h == NULL: none), T and filters off
 * unless given. */
static void sample_one(const float *x, int64_t vocab, int32_t n, const hist *h, pen pn, float t,
                       kt_result *out)
{
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, vocab, n, h && h->len ? h->len : 1, 1);
    kiln_batch b = kt_batch_f32(x, 1, vocab, n);
    int64_t off[2] = { 0, h ? h->len : 0 };
    int32_t prompt = h ? h->prompt : 0;
    if (h) {
        b.history_offsets = off;
        b.history_ids = h->ids;
        b.prompt_lengths = &prompt;
    }
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = t;
    p.repetition_penalty_all = pn.rep;
    p.presence_penalty_all = pn.pres;
    p.frequency_penalty_all = pn.freq;
    p.seed_all = 99;
    kt_result_poison(out);
    check_status(kt_sample(&s, &b, &p, out));
    kt_destroy(&s);
}

/* Softmax of `pen_x` (double) against kiln's probs at T = 1, no filters, and
 * the log-softmax against the raw log-probabilities of the draws. */
static void assert_softmax(const kt_result *r, int64_t row, const double *pen_x, int64_t vocab,
                           const char *what)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < vocab; ++i)
        m = fmax(m, pen_x[i]);
    for (int64_t i = 0; i < vocab; ++i)
        s += exp(pen_x[i] - m);
    cr_assert_eq(r->valid[row], 1, "%s: row invalid", what);
    const float *pr = r->probs + row * vocab;
    for (int64_t i = 0; i < vocab; ++i) {
        double want = exp(pen_x[i] - m) / s;
        cr_assert(fabs((double)pr[i] - want) < 2e-6,
                  "%s: prob[%lld] = %.9f, softmax of penalised logits %.9f (logit %.7g)", what,
                  (long long)i, (double)pr[i], want, pen_x[i]);
    }
    for (int j = 0; j < r->n; ++j) {
        int32_t t = r->tokens[row * r->n + j];
        double raw = pen_x[t] - m - log(s);
        cr_assert(t >= 0 && t < vocab &&
                      fabs(r->raw_logprobs[row * r->n + j] - raw) <= 1e-5 * fmax(1.0, fabs(raw)),
                  "%s: draw %d token %d raw logprob %.9g, expected %.9g", what, j, t,
                  (double)r->raw_logprobs[row * r->n + j], raw);
    }
}

static void to_double(const float *x, int64_t vocab, double *out)
{
    for (int64_t i = 0; i < vocab; ++i)
        out[i] = x[i];
}

/* ------------------------------------------------------------- disabled */

Test(disabled, off_penalties_with_history_equal_no_history)
{
    enum { B = 8, VV = 2000, NN = 8, H = 60 };
    float *x = malloc(B * VV * sizeof *x);
    uint16_t *hx = malloc(B * VV * sizeof *hx);
    for (int64_t b = 0; b < B; ++b)
        ks_zipf_like(x + b * VV, VV, (uint64_t)b + 1);
    x[3 * VV + 11] = NAN; /* an invalid row stays invalid and alone */
    for (int64_t i = 0; i < B * VV; ++i) {
        uint32_t u = f32_bits(x[i]) & 0xFFFF0000u;
        hx[i] = (uint16_t)(u >> 16);
    }
    /* Histories that hit the top tokens, repeat, and mix prompt with
     * generated; row 5 is empty. */
    int64_t off[B + 1];
    int32_t ids[B * H], prompt[B];
    ks_rng g = { 1 };
    off[0] = 0;
    for (int b = 0; b < B; ++b) {
        int64_t len = b == 5 ? 0 : 10 + (int64_t)(ks_rng_u64(&g) % (H - 10));
        for (int64_t i = 0; i < len; ++i)
            ids[off[b] + i] = (int32_t)(ks_rng_u64(&g) % 30);
        off[b + 1] = off[b] + len;
        prompt[b] = (int32_t)(ks_rng_u64(&g) % (uint64_t)(len + 1));
    }
    const pen offs[] = { { 1.0f, 0.0f, 0.0f }, { 1.0f, -0.0f, -0.0f } };
    const float temps[] = { 0.0f, 1.0f, 0.8f };
    kt_sampler s = kt_create(KILN_BACKEND_CPU, B, VV, NN, H, 2);
    kt_result a = kt_result_alloc(B, VV, NN), r = kt_result_alloc(B, VV, NN);
    for (int dt = 0; dt < 2; ++dt)
        for (int ti = 0; ti < 3; ++ti) {
            kiln_batch bt = kt_batch_f32(dt ? (const void *)hx : (const void *)x, B, VV, NN);
            bt.dtype = dt ? KILN_DTYPE_BF16 : KILN_DTYPE_F32;
            kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
            p.temperature_all = temps[ti];
            p.top_k_all = ti == 2 ? 50 : 0;
            p.top_p_all = ti == 2 ? 0.9f : 1.0f;
            p.seed_all = 3;
            kt_result_poison(&a);
            check_status(kt_sample(&s, &bt, &p, &a));
            for (int o = 0; o < 2; ++o)
                for (int arrays = 0; arrays < 2; ++arrays)
                    for (int with_prompt = 0; with_prompt < 2; ++with_prompt) {
                        float rep[B], pres[B], freq[B];
                        for (int b = 0; b < B; ++b) {
                            rep[b] = offs[o].rep;
                            pres[b] = offs[o].pres;
                            freq[b] = offs[o].freq;
                        }
                        kiln_sampling_params q = p;
                        q.repetition_penalty_all = offs[o].rep;
                        q.presence_penalty_all = offs[o].pres;
                        q.frequency_penalty_all = offs[o].freq;
                        if (arrays) {
                            q.repetition_penalty = rep;
                            q.presence_penalty = pres;
                            q.frequency_penalty = freq;
                        }
                        kiln_batch hb = bt;
                        hb.history_offsets = off;
                        hb.history_ids = ids;
                        hb.prompt_lengths = with_prompt ? prompt : NULL;
                        kt_result_poison(&r);
                        check_status(kt_sample(&s, &hb, &q, &r));
                        for (int64_t b = 0; b < B; ++b)
                            cr_assert(kt_row_equal(&a, b, &r, b),
                                      "%s, T %g, penalties (%g, %g, %g)%s%s: row %lld differs "
                                      "from no history (token0 %d vs %d)",
                                      dt ? "bf16" : "f32", (double)temps[ti], (double)offs[o].rep,
                                      (double)offs[o].pres, (double)offs[o].freq,
                                      arrays ? " as arrays" : "",
                                      with_prompt ? " with prompts" : "", (long long)b,
                                      r.tokens[b * NN], a.tokens[b * NN]);
                    }
        }
    kt_result_free(&a);
    kt_result_free(&r);
    kt_destroy(&s);
    free(hx);
    free(x);
}

/* ------------------------------------------------------------- reference */

Test(reference, random_histories_match_the_double_reference)
{
    enum { B = 32, NN = 16, HP = 50, HG = 50 };
    static const int64_t vocabs[] = { 100, 1000, 3000 };
    ks_rng g = { 2 };
    int greedy_checked = 0;
    for (int vi = 0; vi < 3; ++vi) {
        const int64_t vocab = vocabs[vi];
        float *x = malloc((size_t)(B * vocab) * sizeof *x);
        double *px = malloc((size_t)(B * vocab) * sizeof *px);
        int32_t *ids = malloc(B * (HP + HG) * sizeof *ids);
        int64_t off[B + 1];
        int32_t prompt[B];
        float rep[B], pres[B], freq[B];
        off[0] = 0;
        for (int b = 0; b < B; ++b) {
            float *row = x + b * vocab;
            uint64_t seed = ks_rng_u64(&g);
            switch (b % 4) {
            case 0: ks_zipf_like(row, vocab, seed); break;
            case 1: ks_zipf(row, vocab, seed); break;
            case 2: ks_peaked(row, vocab, seed); break;
            default:
                ks_flat(row, vocab, seed);
                row[b % vocab] = -INFINITY; /* a masked token that may be in the history */
                break;
            }
            /* Ids from a small pool (half of them the top of zipf_like) so
             * tokens repeat and occur in both parts. */
            int64_t np = (int64_t)(ks_rng_u64(&g) % HP), ng = (int64_t)(ks_rng_u64(&g) % HG);
            for (int64_t i = 0; i < np + ng; ++i)
                ids[off[b] + i] = (int32_t)(ks_rng_u64(&g) % 2 ? ks_rng_u64(&g) % 20
                                                              : ks_rng_u64(&g) % (uint64_t)vocab);
            off[b + 1] = off[b] + np + ng;
            prompt[b] = (int32_t)np;
            rep[b] = (float)(0.5 + 1.5 * ks_rng_unit(&g));
            pres[b] = (float)(2.0 * ks_rng_unit(&g) - 1.0);
            freq[b] = (float)(ks_rng_unit(&g) - 0.5);
            to_double(row, vocab, px + b * vocab);
            kt_reference_penalize(px + b * vocab, vocab, ids + off[b], off[b + 1] - off[b], np,
                                  rep[b], pres[b], freq[b]);
        }
        kt_sampler s = kt_create(KILN_BACKEND_CPU, B, vocab, NN, HP + HG, 2);
        kiln_batch bt = kt_batch_f32(x, B, vocab, NN);
        bt.history_offsets = off;
        bt.history_ids = ids;
        bt.prompt_lengths = prompt;
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.repetition_penalty = rep;
        p.presence_penalty = pres;
        p.frequency_penalty = freq;
        p.seed_all = 5;
        kt_result r = kt_result_alloc(B, vocab, NN);
        check_status(kt_sample(&s, &bt, &p, &r));
        char what[96];
        for (int b = 0; b < B; ++b) {
            snprintf(what, sizeof what, "V %lld row %d (rep %g pres %g freq %g)",
                     (long long)vocab, b, (double)rep[b], (double)pres[b], (double)freq[b]);
            assert_softmax(&r, b, px + b * vocab, vocab, what);
        }
        /* Greedy picks the reference argmax wherever it is unambiguous. */
        p.temperature_all = 0.0f;
        kt_result_poison(&r);
        check_status(kt_sample(&s, &bt, &p, &r));
        for (int b = 0; b < B; ++b) {
            const double *row = px + b * vocab;
            int64_t best = 0;
            double second = -INFINITY;
            for (int64_t i = 1; i < vocab; ++i)
                if (row[i] > row[best]) {
                    second = row[best];
                    best = i;
                } else if (row[i] > second) {
                    second = row[i];
                }
            if (row[best] - second < 1e-4)
                continue;
            ++greedy_checked;
            cr_assert_eq(r.tokens[b * NN], best,
                         "V %lld row %d: greedy token %d, reference argmax %lld (%.7g vs %.7g)",
                         (long long)vocab, b, r.tokens[b * NN], (long long)best, row[best],
                         row[r.tokens[b * NN]]);
        }
        kt_result_free(&r);
        kt_destroy(&s);
        free(ids);
        free(px);
        free(x);
    }
    cr_assert(greedy_checked > 60, "only %d greedy rows unambiguous", greedy_checked);
}

/* The contract's f32 formula (section 1), written out: each distinct token
 * once, repetition, then frequency * (f32)count, then presence. */
static void penalize_f32(float *x, int64_t vocab, const int32_t *ids, int64_t len,
                         int64_t prompt, pen pn)
{
    uint32_t *gen = calloc((size_t)vocab, sizeof *gen);
    char *seen = calloc((size_t)vocab, 1);
    for (int64_t i = 0; i < len; ++i) {
        seen[ids[i]] = 1;
        if (i >= prompt)
            gen[ids[i]]++;
    }
    for (int64_t v = 0; v < vocab; ++v) {
        if (seen[v])
            x[v] = x[v] > 0.0f ? x[v] / pn.rep : x[v] * pn.rep;
        if (gen[v]) {
            x[v] = x[v] - pn.freq * (float)gen[v];
            x[v] = x[v] - pn.pres;
        }
    }
    free(gen);
    free(seen);
}

Test(reference, history_equals_the_row_penalised_by_the_f32_formula)
{
    /* Byte equality with a row penalised outside kiln: catches any change of
     * operation order or precision (e.g. presence before frequency), which
     * the tolerance checks cannot see. */
    enum { B = 48, VV = 800, NN = 32, H = 120 };
    float *x = malloc(B * VV * sizeof *x), *px = malloc(B * VV * sizeof *px);
    int32_t *ids = malloc(B * H * sizeof *ids), prompt[B];
    int64_t off[B + 1];
    float rep[B], pres[B], freq[B], temp[B];
    ks_rng g = { 3 };
    off[0] = 0;
    for (int b = 0; b < B; ++b) {
        float *row = x + b * VV;
        if (b % 2)
            ks_zipf_like(row, VV, ks_rng_u64(&g));
        else
            ks_flat(row, VV, ks_rng_u64(&g));
        int64_t len = (int64_t)(ks_rng_u64(&g) % H);
        for (int64_t i = 0; i < len; ++i)
            ids[off[b] + i] = (int32_t)(ks_rng_u64(&g) % 40);
        off[b + 1] = off[b] + len;
        prompt[b] = (int32_t)(ks_rng_u64(&g) % (uint64_t)(len + 1));
        rep[b] = (float)(0.7 + 0.8 * ks_rng_unit(&g));
        pres[b] = (float)(1.6 * ks_rng_unit(&g) - 0.8);
        freq[b] = (float)(0.6 * ks_rng_unit(&g) - 0.2);
        temp[b] = b % 6 == 0 ? 0.0f : 1.0f;
        memcpy(px + b * VV, row, VV * sizeof *x);
        penalize_f32(px + b * VV, VV, ids + off[b], len, prompt[b],
                     (pen){ rep[b], pres[b], freq[b] });
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, B, VV, NN, H, 2);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = temp;
    p.seed_all = 17;
    kiln_batch plain = kt_batch_f32(px, B, VV, NN);
    kt_result a = kt_result_alloc(B, VV, NN), r = kt_result_alloc(B, VV, NN);
    check_status(kt_sample(&s, &plain, &p, &a));
    kiln_batch hb = kt_batch_f32(x, B, VV, NN);
    hb.history_offsets = off;
    hb.history_ids = ids;
    hb.prompt_lengths = prompt;
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    check_status(kt_sample(&s, &hb, &p, &r));
    for (int64_t b = 0; b < B; ++b)
        cr_assert(kt_row_equal(&a, b, &r, b),
                  "row %lld (rep %a pres %a freq %a): kiln's penalties differ from the f32 "
                  "formula: token0 %d vs %d, raw0 %a vs %a",
                  (long long)b, (double)rep[b], (double)pres[b], (double)freq[b],
                  r.tokens[b * NN], a.tokens[b * NN], (double)r.raw_logprobs[b * NN],
                  (double)a.raw_logprobs[b * NN]);
    kt_result_free(&a);
    kt_result_free(&r);
    kt_destroy(&s);
    free(ids);
    free(px);
    free(x);
}

Test(reference, edits_at_the_ends_of_the_range)
{
    /* The copy of an edited row takes its key range on the way, and keeps it
     * only when no edited token held an end of it or passes one: rows whose
     * history or bias lowers the max token, raises the min one, or lifts a
     * token above the max or sinks one below the min, next to rows whose
     * edits stay inside, f32 and bf16, must match the row edited outside. */
    enum { B = 12, VV = 3001, NN = 4, H = 6 };
    float *x = malloc(B * VV * sizeof *x), *px = malloc(B * VV * sizeof *px);
    uint16_t *hx = malloc(B * VV * sizeof *hx);
    int32_t ids[B * H], bias_ids[B], prompt[B], topk[B];
    float bias_values[B], rep[B], pres[B], freq[B];
    int64_t off[B + 1], boff[B + 1];
    ks_rng g = { 21 };
    off[0] = boff[0] = 0;
    for (int b = 0; b < B; ++b) {
        float *row = x + b * VV;
        ks_zipf_like(row, VV, ks_rng_u64(&g));
        int64_t lo = 0;
        for (int64_t i = 0; i < VV; ++i) { /* bf16-exact, so both dtypes mean the same */
            uint32_t u = f32_bits(row[i]) & 0xFFFF0000u;
            memcpy(&row[i], &u, 4);
            hx[b * VV + i] = (uint16_t)(u >> 16);
            lo = row[i] < row[lo] ? i : lo;
        }
        const int kind = b % 6;
        for (int i = 0; i < H; ++i)
            ids[b * H + i] = (int32_t)(100 + ks_rng_u64(&g) % (VV - 100));
        if (kind == 0)
            ids[b * H + 2] = 0; /* the max (8.0), divided by 1.3 */
        if (kind == 1)
            ids[b * H + 4] = (int32_t)lo; /* the min, times 0.8 */
        off[b + 1] = off[b] + H;
        prompt[b] = kind == 4 ? 0 : H / 2;
        rep[b] = kind == 0 ? 1.3f : kind == 1 ? 0.8f : 1.1f;
        pres[b] = kind == 4 ? -30.0f : 0.25f;
        freq[b] = 0.125f;
        bias_ids[b] = (int32_t)(200 + ks_rng_u64(&g) % (VV - 200));
        bias_values[b] = kind == 2 ? 20.0f : kind == 3 ? -50.0f : 0.5f;
        boff[b + 1] = b + 1;
        topk[b] = b % 2 ? 0 : 50;
        memcpy(px + b * VV, row, VV * sizeof *x);
        px[b * VV + bias_ids[b]] += bias_values[b];
        penalize_f32(px + b * VV, VV, ids + b * H, H, prompt[b], (pen){ rep[b], pres[b], freq[b] });
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, B, VV, NN, H, 2);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.top_k = topk;
    p.seed_all = 5;
    kiln_batch plain = kt_batch_f32(px, B, VV, NN);
    kt_result a = kt_result_alloc(B, VV, NN), r = kt_result_alloc(B, VV, NN);
    check_status(kt_sample(&s, &plain, &p, &a));
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    for (int bf16 = 0; bf16 < 2; ++bf16) {
        kiln_batch eb = kt_batch_f32(bf16 ? (const void *)hx : (const void *)x, B, VV, NN);
        eb.dtype = bf16 ? KILN_DTYPE_BF16 : KILN_DTYPE_F32;
        eb.history_offsets = off;
        eb.history_ids = ids;
        eb.prompt_lengths = prompt;
        eb.logit_bias_offsets = boff;
        eb.logit_bias_ids = bias_ids;
        eb.logit_bias_values = bias_values;
        kt_result_poison(&r);
        check_status(kt_sample(&s, &eb, &p, &r));
        for (int64_t b = 0; b < B; ++b)
            cr_assert(kt_row_equal(&a, b, &r, b), "%s row %lld (kind %lld): token0 %d vs %d, prob0 %a vs %a",
                      bf16 ? "bf16" : "f32", (long long)b, (long long)(b % 6), r.tokens[b * NN],
                      a.tokens[b * NN], (double)r.probs[b * VV], (double)a.probs[b * VV]);
    }
    kt_result_free(&a);
    kt_result_free(&r);
    kt_destroy(&s);
    free(hx);
    free(px);
    free(x);
}

/* ------------------------------------------------------------- by hand */

/* x = (2, -1, 0.5, 3, -2, 1): every penalised value below is exact in f32. */
static const float hand_x[6] = { 2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f };

static void check_hand(const int32_t *ids, int64_t len, int32_t prompt, pen pn,
                       const double *expect, int32_t expect_greedy, const char *what)
{
    hist h = { ids, len, prompt };
    kt_result r = kt_result_alloc(1, 6, 64);
    sample_one(hand_x, 6, 64, &h, pn, 1.0f, &r);
    assert_softmax(&r, 0, expect, 6, what);
    sample_one(hand_x, 6, 64, &h, pn, 0.0f, &r);
    cr_assert_eq(r.tokens[0], expect_greedy, "%s: greedy %d, expected %d", what, r.tokens[0],
                 expect_greedy);
    kt_result_free(&r);
}

Test(by_hand, prompt_tokens_get_repetition_only)
{
    const int32_t ids[3] = { 0, 1, 3 };
    /* Repetition off: presence and frequency must leave prompt tokens alone,
     * so the bytes equal no history at all. */
    hist h = { ids, 3, 3 };
    kt_result a = kt_result_alloc(1, 6, 64), b = kt_result_alloc(1, 6, 64);
    sample_one(hand_x, 6, 64, NULL, (pen){ 1.0f, 0.0f, 0.0f }, 0.9f, &a);
    sample_one(hand_x, 6, 64, &h, (pen){ 1.0f, 5.0f, 5.0f }, 0.9f, &b);
    cr_assert(kt_result_equal(&a, &b),
              "presence/frequency changed a prompt-only history (prob[3] %a vs %a)",
              (double)b.probs[3], (double)a.probs[3]);
    kt_result_free(&a);
    kt_result_free(&b);
    /* rep 2: 2 -> 1, -1 -> -2, 3 -> 1.5; presence/frequency still ignored. */
    const double e[6] = { 1.0, -2.0, 0.5, 1.5, -2.0, 1.0 };
    check_hand(ids, 3, 3, (pen){ 2.0f, 5.0f, 5.0f }, e, 3, "prompt [0 1 3], rep 2");
}

Test(by_hand, generated_tokens_get_all_three)
{
    const int32_t ids[3] = { 0, 1, 3 };
    /* all generated: rep 2 then -0.5 (freq * 1) then -0.25 (presence) */
    const double e[6] = { 1.0 - 0.75, -2.0 - 0.75, 0.5, 1.5 - 0.75, -2.0, 1.0 };
    check_hand(ids, 3, 0, (pen){ 2.0f, 0.25f, 0.5f }, e, 5, "generated [0 1 3]");
}

Test(by_hand, repeats_count_for_frequency_but_repetition_applies_once)
{
    const int32_t ids[5] = { 3, 3, 3, 3, 3 };
    /* 3 / 2 (once, not 3 / 2^5) - 0.5 * 5 - 0.25 = -1.25 */
    const double e[6] = { 2.0, -1.0, 0.5, -1.25, -2.0, 1.0 };
    check_hand(ids, 5, 0, (pen){ 2.0f, 0.25f, 0.5f }, e, 0, "generated [3 x5]");
    /* prompt occurrences do not count: prompt [1 1 1], generated [1 1]:
     * -1 * 2 - 0.5 * 2 - 0.25 = -3.25 */
    const int32_t mixed[5] = { 1, 1, 1, 1, 1 };
    const double e2[6] = { 2.0, -3.25, 0.5, 3.0, -2.0, 1.0 };
    check_hand(mixed, 5, 3, (pen){ 2.0f, 0.25f, 0.5f }, e2, 3, "prompt [1 x3] generated [1 x2]");
    /* interleaved with other tokens, frequency counts each occurrence:
     * 4: -2 * 2 - 0.5 * 3 - 0.25 = -5.75; 5: 1 / 2 - 0.5 - 0.25 = -0.25;
     * 2: 0.5 / 2 - 0.5 * 2 - 0.25 = -1 */
    const int32_t inter[6] = { 4, 5, 4, 2, 4, 2 };
    const double e3[6] = { 2.0, -1.0, -1.0, 3.0, -5.75, -0.25 };
    check_hand(inter, 6, 0, (pen){ 2.0f, 0.25f, 0.5f }, e3, 3, "generated [4 5 4 2 4 2]");
}

Test(by_hand, negative_presence_and_frequency_encourage)
{
    /* 4: -2 + 3 * 2 + 1 = 5 overtakes token 3 */
    const int32_t ids[2] = { 4, 4 };
    const double e[6] = { 2.0, -1.0, 0.5, 3.0, 5.0, 1.0 };
    check_hand(ids, 2, 0, (pen){ 1.0f, -1.0f, -3.0f }, e, 4, "presence -1, frequency -3");
    /* presence alone, in the prompt: no effect */
    const double e2[6] = { 2.0, -1.0, 0.5, 3.0, -2.0, 1.0 };
    check_hand(ids, 2, 2, (pen){ 1.0f, -10.0f, -10.0f }, e2, 3, "negative, prompt only");
}

Test(by_hand, repetition_below_one_encourages)
{
    /* rep 0.5: positives doubled, negatives halved, zero untouched */
    const int32_t ids[3] = { 0, 1, 4 };
    const double e[6] = { 4.0, -0.5, 0.5, 3.0, -1.0, 1.0 };
    check_hand(ids, 3, 2, (pen){ 0.5f, 0.0f, 0.0f }, e, 0, "rep 0.5");
    float z[3] = { 0.0f, -0.0f, -1.0f };
    const int32_t zid[2] = { 0, 1 };
    hist h = { zid, 2, 2 };
    kt_result r = kt_result_alloc(1, 3, 16), a = kt_result_alloc(1, 3, 16);
    sample_one(z, 3, 16, &h, (pen){ 0.25f, 0.0f, 0.0f }, 1.0f, &r);
    sample_one(z, 3, 16, NULL, (pen){ 1.0f, 0.0f, 0.0f }, 1.0f, &a);
    cr_assert(kt_result_equal(&r, &a), "repetition changed logits +0 / -0");
    kt_result_free(&r);
    kt_result_free(&a);
}

/* ------------------------------------------------------------- validity */

Test(validity, penalties_can_make_a_row_invalid_or_masked)
{
    enum { B = 7, VV = 4, NN = 8 };
    /* row 0: 3e38 / 0.01 = +inf: invalid.
     * row 1: all -3e38 * 2 = -inf: invalid.
     * row 2: -3e38 - 3e38 (presence) = -inf: token 0 masked, row valid.
     * row 3: a -inf token encouraged by presence -5 stays -inf.
     * row 4: frequency -3e38 twice: x - (-3e38 * 2 = -inf) = +inf: invalid.
     * row 5: frequency 3e38 twice: x - inf = -inf: masked, row valid.
     * row 6: untouched neighbour. */
    const float x[B][VV] = { { 3e38f, 1.0f, 2.0f, 0.0f },
                             { -3e38f, -3e38f, -3e38f, -3e38f },
                             { -3e38f, 1.0f, 2.0f, 0.0f },
                             { 1.0f, -INFINITY, 0.5f, 0.0f },
                             { 0.0f, 1.0f, 2.0f, 3.0f },
                             { 5.0f, 1.0f, 2.0f, 3.0f },
                             { 0.5f, 1.0f, 2.0f, 3.0f } };
    const int32_t h0[1] = { 0 }, h1[4] = { 0, 1, 2, 3 }, h2[1] = { 0 }, h3[2] = { 1, 1 },
                  h4[2] = { 2, 2 }, h5[2] = { 0, 0 }, h6[1] = { 3 };
    const int32_t *hs[B] = { h0, h1, h2, h3, h4, h5, h6 };
    const int64_t lens[B] = { 1, 4, 1, 2, 2, 2, 1 };
    const int32_t prompts[B] = { 1, 4, 0, 0, 0, 0, 1 };
    const float rep[B] = { 0.01f, 2.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f };
    const float pres[B] = { 0.0f, 0.0f, 3e38f, -5.0f, 0.0f, 0.0f, 0.0f };
    const float freq[B] = { 0.0f, 0.0f, 0.0f, 0.0f, -3e38f, 3e38f, 0.0f };
    const int valid[B] = { 0, 0, 1, 1, 0, 1, 1 };
    const int32_t masked[B] = { -1, -1, 0, 1, -1, 0, -1 };

    int64_t off[B + 1] = { 0 };
    int32_t ids[16];
    for (int b = 0; b < B; ++b) {
        memcpy(ids + off[b], hs[b], (size_t)lens[b] * 4);
        off[b + 1] = off[b] + lens[b];
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, B, VV, NN, 4, 2);
    kiln_batch bt = kt_batch_f32(&x[0][0], B, VV, NN);
    bt.history_offsets = off;
    bt.history_ids = ids;
    bt.prompt_lengths = prompts;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    p.seed_all = 99; /* as sample_one */
    kt_result r = kt_result_alloc(B, VV, NN), one = kt_result_alloc(1, VV, NN);
    check_status(kt_sample(&s, &bt, &p, &r));
    for (int b = 0; b < B; ++b) {
        cr_assert_eq(r.valid[b], valid[b], "row %d: valid %d, expected %d", b, r.valid[b],
                     valid[b]);
        if (!valid[b]) {
            cr_assert(r.tokens[b * NN] == -1 && r.kept[b] == 0, "row %d: token %d kept %d", b,
                      r.tokens[b * NN], r.kept[b]);
        } else if (masked[b] >= 0) {
            cr_assert_eq(r.kept[b], VV - 1, "row %d: kept %d", b, r.kept[b]);
            cr_assert_eq(r.probs[b * VV + masked[b]], 0.0f, "row %d: masked token has prob %a",
                         b, (double)r.probs[b * VV + masked[b]]);
            for (int j = 0; j < NN; ++j)
                cr_assert_neq(r.tokens[b * NN + j], masked[b], "row %d drew its masked token", b);
        }
        hist h = { hs[b], lens[b], prompts[b] };
        sample_one(x[b], VV, NN, &h, (pen){ rep[b], pres[b], freq[b] }, 1.0f, &one);
        cr_assert(kt_row_equal(&r, b, &one, 0), "row %d differs from itself alone", b);
    }
    kt_result_free(&r);
    kt_result_free(&one);
    kt_destroy(&s);
}

/* --------------------------------------------------------------- batches */

static void batch_vs_alone(int threads, int use_prompts, int dtype_bf16)
{
    enum { B = 40, VV = 1500, NN = 6, HMAX = 200, BASE = 7 };
    float *x = malloc(B * VV * sizeof *x);
    uint16_t *hx = malloc(B * VV * sizeof *hx);
    int64_t off[B + 1];
    int32_t *ids = malloc((BASE + B * HMAX) * sizeof *ids), prompt[B];
    float rep[B], pres[B], freq[B], temp[B];
    int32_t topk[B];
    uint64_t seed[B], offset[B];
    ks_rng g = { 40 + (uint64_t)threads };
    /* Ids before history_offsets[0] are out of range: reading them would
     * fail validation or corrupt a row. */
    for (int i = 0; i < BASE; ++i)
        ids[i] = -12345;
    off[0] = BASE;
    int64_t hmax = 0;
    for (int b = 0; b < B; ++b) {
        float *row = x + b * VV;
        uint64_t sd = ks_rng_u64(&g);
        if (b % 3 == 0)
            ks_zipf_like(row, VV, sd);
        else if (b % 3 == 1)
            ks_zipf(row, VV, sd);
        else
            ks_flat(row, VV, sd);
        for (int64_t i = 0; i < VV; ++i) { /* bf16-exact, so both dtypes mean the same */
            uint32_t u = f32_bits(row[i]) & 0xFFFF0000u;
            memcpy(&row[i], &u, 4);
            hx[b * VV + i] = (uint16_t)(u >> 16);
        }
        int64_t len = b % 5 == 0 ? 0 : (int64_t)(ks_rng_u64(&g) % HMAX) + (b % 7 == 0 ? 0 : 1);
        if (b == B - 1)
            len = HMAX;
        for (int64_t i = 0; i < len; ++i)
            ids[off[b] + i] = (int32_t)(ks_rng_u64(&g) % 3 ? ks_rng_u64(&g) % 25
                                                          : ks_rng_u64(&g) % VV);
        off[b + 1] = off[b] + len;
        hmax = len > hmax ? len : hmax;
        prompt[b] = b % 4 == 1 ? (int32_t)len : (int32_t)(ks_rng_u64(&g) % (uint64_t)(len + 1));
        rep[b] = b % 6 == 2 ? 1.0f : (float)(0.6 + ks_rng_unit(&g));
        pres[b] = (float)(ks_rng_unit(&g) - 0.5);
        freq[b] = b % 6 == 4 ? 0.0f : (float)(0.8 * ks_rng_unit(&g) - 0.3);
        temp[b] = b % 8 == 3 ? 0.0f : (float)(0.3 + ks_rng_unit(&g));
        topk[b] = b % 2 ? 0 : 40;
        seed[b] = ks_rng_u64(&g);
        offset[b] = (uint64_t)b * 3;
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, B, VV, NN, HMAX, threads);
    kiln_batch bt = kt_batch_f32(dtype_bf16 ? (const void *)hx : (const void *)x, B, VV, NN);
    bt.dtype = dtype_bf16 ? KILN_DTYPE_BF16 : KILN_DTYPE_F32;
    bt.history_offsets = off;
    bt.history_ids = ids;
    bt.prompt_lengths = use_prompts ? prompt : NULL;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    p.temperature = temp;
    p.top_k = topk;
    p.seed = seed;
    p.offset = offset;
    kt_result all = kt_result_alloc(B, VV, NN), one = kt_result_alloc(1, VV, NN);
    check_status(kt_sample(&s, &bt, &p, &all));
    for (int b = 0; b < B; ++b) {
        /* Alone: f32 always, its own slice of the history from offset 0. */
        kiln_batch ob = kt_batch_f32(x + b * VV, 1, VV, NN);
        int64_t ooff[2] = { 0, off[b + 1] - off[b] };
        ob.history_offsets = ooff;
        ob.history_ids = ids + off[b];
        ob.prompt_lengths = use_prompts ? &prompt[b] : NULL;
        kiln_sampling_params op = KILN_SAMPLING_PARAMS_INIT;
        op.repetition_penalty_all = rep[b];
        op.presence_penalty_all = pres[b];
        op.frequency_penalty_all = freq[b];
        op.temperature_all = temp[b];
        op.top_k_all = topk[b];
        op.seed_all = seed[b];
        op.offset_all = offset[b];
        kt_result_poison(&one);
        check_status(kt_sample(&s, &ob, &op, &one));
        cr_assert(kt_row_equal(&all, b, &one, 0),
                  "threads %d%s%s: row %d (history %lld, prompt %d) differs alone: token0 %d vs "
                  "%d, prob0 %a vs %a",
                  threads, use_prompts ? "" : " no prompts", dtype_bf16 ? " bf16" : "", b,
                  (long long)(off[b + 1] - off[b]), prompt[b], all.tokens[b * NN], one.tokens[0],
                  (double)all.probs[b * VV], (double)one.probs[0]);
    }
    kt_result_free(&all);
    kt_result_free(&one);
    kt_destroy(&s);
    free(ids);
    free(hx);
    free(x);
}

Test(batch, history_rows_of_different_lengths_match_alone)
{
    batch_vs_alone(1, 1, 0);
    batch_vs_alone(2, 1, 0);
    batch_vs_alone(3, 1, 0);
}

Test(batch, without_prompt_lengths_every_token_is_generated)
{
    batch_vs_alone(2, 0, 0);
}

Test(batch, bf16_rows_with_histories_match_f32_alone)
{
    batch_vs_alone(2, 1, 1);
    batch_vs_alone(3, 0, 1);
}
