/* The token mask and the logit bias (docs/semantics.md section 1): each is
 * held to the edit it stands for, done by hand on the logits -- a cleared
 * mask bit is a -inf logit, a bias is an f32 addition before the penalties --
 * byte for byte in every output; plus known answers, support over many
 * seeds, bad input (status, message, nothing written) and invariance over
 * batch position, thread count and algorithm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "extras.h"

#define V 37 /* two mask words, the second one partly past V */
#define WORDS ((V + 31) / 32)
#define B 6
#define NDRAW 4
#define TOP 5
#define MAXH 16

typedef struct fixture {
    float logits[B * V];
    int32_t mask[B * WORDS];
    int64_t hoff[B + 1];
    int32_t hids[B * MAXH];
    int32_t prompt[B];
    int64_t boff[B + 1];
    int32_t bids[B * 4];
    float bvals[B * 4];
    float temp[B], top_p[B], min_p[B], rep[B], pres[B], freq[B];
    int32_t top_k[B];
    uint64_t seed[B];
} fixture;

static int allowed(const int32_t *mask, int64_t j)
{
    return (int)(((uint32_t)mask[j / 32] >> (j % 32)) & 1u);
}

/* Rows of every kind the filters meet, a random mask (at least one token
 * allowed), a history per row and up to 4 bias entries (one id twice). */
static void make_fixture(fixture *f, uint64_t salt)
{
    memset(f, 0, sizeof *f);
    ks_rng rng = { 0x5eed0000u + salt };
    for (int b = 0; b < B; ++b) {
        if (b % 2)
            ks_zipf_like(f->logits + b * V, V, 100 + salt * 7 + (uint64_t)b);
        else
            ks_peaked(f->logits + b * V, V, 200 + salt * 7 + (uint64_t)b);
        for (int w = 0; w < WORDS; ++w)
            f->mask[b * WORDS + w] = (int32_t)(uint32_t)ks_rng_u64(&rng);
        f->mask[b * WORDS] |= 1 << (b + 3);
        const int len = (int)(ks_rng_u64(&rng) % MAXH);
        f->hoff[b + 1] = f->hoff[b] + len;
        for (int i = 0; i < len; ++i)
            f->hids[f->hoff[b] + i] = (int32_t)(ks_rng_u64(&rng) % V);
        f->prompt[b] = len / 2;
        const int nb = b % 5;
        f->boff[b + 1] = f->boff[b] + nb;
        for (int i = 0; i < nb; ++i) {
            f->bids[f->boff[b] + i] = i == 3 ? f->bids[f->boff[b]] : (int32_t)(ks_rng_u64(&rng) % V);
            f->bvals[f->boff[b] + i] = (float)(ks_rng_unit(&rng) * 6.0 - 3.0);
        }
        f->temp[b] = b == 4 ? 0.0f : 0.6f + 0.1f * (float)b;
        f->top_k[b] = b == 1 ? 7 : 0;
        f->top_p[b] = b == 2 ? 0.8f : 1.0f;
        f->min_p[b] = b == 3 ? 0.02f : 0.0f;
        f->rep[b] = 1.0f + 0.1f * (float)(b % 3);
        f->pres[b] = b % 2 ? 0.4f : 0.0f;
        f->freq[b] = b % 3 ? 0.25f : 0.0f;
        f->seed[b] = 1000 + salt * 31 + (uint64_t)b;
    }
}

static kiln_batch fixture_batch(fixture *f, const float *logits, int with_mask, int with_bias)
{
    kiln_batch bt = kt_batch_f32(logits, B, V, NDRAW);
    bt.history_offsets = f->hoff;
    bt.history_ids = f->hids;
    bt.prompt_lengths = f->prompt;
    if (with_mask)
        bt.allowed_mask = f->mask;
    if (with_bias) {
        bt.logit_bias_offsets = f->boff;
        bt.logit_bias_ids = f->bids;
        bt.logit_bias_values = f->bvals;
    }
    return bt;
}

static kiln_sampling_params fixture_params(fixture *f)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = f->temp;
    p.top_k = f->top_k;
    p.top_p = f->top_p;
    p.min_p = f->min_p;
    p.repetition_penalty = f->rep;
    p.presence_penalty = f->pres;
    p.frequency_penalty = f->freq;
    p.seed = f->seed;
    return p;
}

static void sample_ok(kt_sampler *s, const kiln_batch *bt, const kiln_sampling_params *p,
                      kt_full *out)
{
    kiln_status st = kt_full_sample(s, bt, p, out);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample: %s", kiln_last_error());
}

static const kiln_algorithm algorithms[] = { KILN_ALGORITHM_AUTO, KILN_ALGORITHM_SORT,
                                             KILN_ALGORITHM_SELECT };

Test(mask, equals_minus_inf_logits_in_every_output)
{
    for (uint64_t salt = 0; salt < 4; ++salt) {
        fixture f;
        make_fixture(&f, salt);
        /* What a masked logit held must not matter: NaN and +inf included. */
        float with_junk[B * V], by_hand[B * V];
        for (int b = 0; b < B; ++b)
            for (int j = 0; j < V; ++j) {
                const float x = f.logits[b * V + j];
                const int ok = allowed(f.mask + b * WORDS, j);
                with_junk[b * V + j] = ok ? x : (j % 3 == 0 ? NAN : j % 3 == 1 ? INFINITY : x);
                by_hand[b * V + j] = ok ? x : -INFINITY;
            }
        for (size_t a = 0; a < sizeof algorithms / sizeof algorithms[0]; ++a) {
            kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 1, TOP, algorithms[a]);
            kt_full got = kt_full_alloc(B, V, NDRAW, TOP), want = kt_full_alloc(B, V, NDRAW, TOP);
            const kiln_sampling_params p = fixture_params(&f);
            kiln_batch masked = fixture_batch(&f, with_junk, 1, 1);
            kiln_batch manual = fixture_batch(&f, by_hand, 0, 1);
            sample_ok(&s, &masked, &p, &got);
            sample_ok(&s, &manual, &p, &want);
            for (int b = 0; b < B; ++b) {
                cr_assert(kt_full_row_equal(&got, b, &want, b),
                          "salt %llu algorithm %d row %d: the mask differs from -inf logits",
                          (unsigned long long)salt, (int)algorithms[a], b);
                cr_assert_eq(got.valid[b], 1);
                for (int j = 0; j < V; ++j)
                    if (!allowed(f.mask + b * WORDS, j))
                        cr_assert_eq(got.probs[b * V + j], 0.0f, "row %d masked token %d has mass", b, j);
            }
            kt_full_free(&got);
            kt_full_free(&want);
            kt_destroy(&s);
        }
    }
}

Test(mask, bits_past_vocab_and_padding_words_are_not_read)
{
    fixture f;
    make_fixture(&f, 9);
    enum { STRIDE = WORDS + 3 };
    int32_t clean[B * WORDS], padded[B * STRIDE];
    for (int b = 0; b < B; ++b) {
        for (int w = 0; w < WORDS; ++w)
            clean[b * WORDS + w] = f.mask[b * WORDS + w];
        clean[b * WORDS + WORDS - 1] &= (int32_t)((1u << (V % 32)) - 1u);
        for (int w = 0; w < STRIDE; ++w)
            padded[b * STRIDE + w] = w < WORDS ? f.mask[b * WORDS + w] : (int32_t)0xDEADBEEF;
        padded[b * STRIDE + WORDS - 1] |= (int32_t)~((1u << (V % 32)) - 1u);
    }
    kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 1, TOP, KILN_ALGORITHM_AUTO);
    kt_full a = kt_full_alloc(B, V, NDRAW, TOP), c = kt_full_alloc(B, V, NDRAW, TOP);
    const kiln_sampling_params p = fixture_params(&f);
    kiln_batch bt = fixture_batch(&f, f.logits, 1, 0);
    bt.allowed_mask = clean;
    sample_ok(&s, &bt, &p, &a);
    bt.allowed_mask = padded;
    bt.allowed_mask_stride = STRIDE;
    sample_ok(&s, &bt, &p, &c);
    cr_assert(kt_full_equal(&a, &c), "bits past V or padding words changed the output");
    kt_full_free(&a);
    kt_full_free(&c);
    kt_destroy(&s);
}

Test(mask, a_row_with_no_allowed_token_is_invalid_and_spoils_no_neighbour)
{
    fixture f;
    make_fixture(&f, 3);
    for (int w = 0; w < WORDS; ++w)
        f.mask[2 * WORDS + w] = 0;
    /* Bits past V alone allow nothing either. */
    f.mask[4 * WORDS] = 0;
    f.mask[4 * WORDS + 1] = (int32_t)~((1u << (V % 32)) - 1u);
    kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 2, TOP, KILN_ALGORITHM_AUTO);
    kt_full all = kt_full_alloc(B, V, NDRAW, TOP);
    const kiln_sampling_params p = fixture_params(&f);
    kiln_batch bt = fixture_batch(&f, f.logits, 1, 1);
    sample_ok(&s, &bt, &p, &all);
    for (int b = 0; b < B; ++b) {
        const int bad = b == 2 || b == 4;
        cr_assert_eq(all.valid[b], !bad, "row %d valid %d", b, all.valid[b]);
        if (bad) {
            cr_assert_eq(all.kept[b], 0);
            for (int j = 0; j < NDRAW; ++j) {
                cr_assert_eq(all.tokens[b * NDRAW + j], -1);
                cr_assert(isnan(all.logprobs[b * NDRAW + j]));
                cr_assert_eq(all.raw_ranks[b * NDRAW + j], 0);
            }
            cr_assert(isnan(all.entropy[b]) && isnan(all.raw_entropy[b]) &&
                      isnan(all.temperatures[b]));
            for (int j = 0; j < TOP; ++j)
                cr_assert_eq(all.raw_top_ids[b * TOP + j], -1);
            for (int j = 0; j < V; ++j)
                cr_assert_eq(all.probs[b * V + j], 0.0f);
            continue;
        }
        /* The neighbour alone, as a batch of one, gives the same bytes. */
        kt_full one = kt_full_alloc(1, V, NDRAW, TOP);
        kiln_batch ob = kt_batch_f32(f.logits + b * V, 1, V, NDRAW);
        const int64_t hoff[2] = { 0, f.hoff[b + 1] - f.hoff[b] };
        const int64_t boff[2] = { 0, f.boff[b + 1] - f.boff[b] };
        ob.history_offsets = hoff;
        ob.history_ids = f.hids + f.hoff[b];
        ob.prompt_lengths = f.prompt + b;
        ob.allowed_mask = f.mask + b * WORDS;
        ob.logit_bias_offsets = boff;
        ob.logit_bias_ids = f.bids + f.boff[b];
        ob.logit_bias_values = f.bvals + f.boff[b];
        kiln_sampling_params op = KILN_SAMPLING_PARAMS_INIT;
        op.temperature_all = f.temp[b];
        op.top_k_all = f.top_k[b];
        op.top_p_all = f.top_p[b];
        op.min_p_all = f.min_p[b];
        op.repetition_penalty_all = f.rep[b];
        op.presence_penalty_all = f.pres[b];
        op.frequency_penalty_all = f.freq[b];
        op.seed_all = f.seed[b];
        sample_ok(&s, &ob, &op, &one);
        cr_assert(kt_full_row_equal(&all, b, &one, 0), "row %d differs next to an invalid row", b);
        kt_full_free(&one);
    }
    kt_full_free(&all);
    kt_destroy(&s);
}

/* Known answer: logits x_j = -j/10 with tokens 0, 1, 2 masked. top-k 3 must
 * count allowed tokens only, so it keeps 3, 4, 5 with probabilities
 * proportional to 1, e^(-0.1/T), e^(-0.2/T); no draw ever leaves them. */
Test(mask, top_k_counts_allowed_tokens_and_draws_stay_inside)
{
    float x[V];
    for (int j = 0; j < V; ++j)
        x[j] = -0.1f * (float)j;
    int32_t mask[WORDS] = { (int32_t)~7u, -1 };
    const float T = 0.5f;
    kt_sampler s = kt_cpu_sampler(1, V, 64, 0, 1, TOP, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(1, V, 64, TOP);
    kiln_batch bt = kt_batch_f32(x, 1, V, 64);
    bt.allowed_mask = mask;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = T;
    p.top_k_all = 3;
    const double e1 = exp(-0.1 / T), e2 = exp(-0.2 / T), z = 1.0 + e1 + e2;
    const double want[3] = { 1.0 / z, e1 / z, e2 / z };
    for (uint64_t seed = 0; seed < 40; ++seed) {
        p.seed_all = seed;
        sample_ok(&s, &bt, &p, &r);
        cr_assert_eq(r.kept[0], 3);
        for (int j = 0; j < V; ++j) {
            const double w = j >= 3 && j <= 5 ? want[j - 3] : 0.0;
            cr_assert(fabs(r.probs[j] - w) <= 1e-6, "prob[%d] = %.9g, want %.9g", j,
                      (double)r.probs[j], w);
        }
        for (int i = 0; i < 64; ++i)
            cr_assert(r.tokens[i] >= 3 && r.tokens[i] <= 5, "seed %llu draw %d: token %d",
                      (unsigned long long)seed, i, r.tokens[i]);
        /* Raw top-N: the masked tokens come last, so the top is 3, 4, ... */
        for (int i = 0; i < TOP; ++i)
            cr_assert_eq(r.raw_top_ids[i], 3 + i);
    }
    kt_full_free(&r);
    kt_destroy(&s);
}

Test(logit_bias, equals_adding_the_bias_to_the_logits_by_hand)
{
    for (uint64_t salt = 0; salt < 4; ++salt) {
        fixture f;
        make_fixture(&f, salt);
        float by_hand[B * V];
        memcpy(by_hand, f.logits, sizeof by_hand);
        for (int b = 0; b < B; ++b)
            for (int64_t i = f.boff[b]; i < f.boff[b + 1]; ++i) {
                volatile float sum = by_hand[b * V + f.bids[i]] + f.bvals[i]; /* f32, in order */
                by_hand[b * V + f.bids[i]] = sum;
            }
        for (size_t a = 0; a < sizeof algorithms / sizeof algorithms[0]; ++a) {
            kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 1, TOP, algorithms[a]);
            kt_full got = kt_full_alloc(B, V, NDRAW, TOP), want = kt_full_alloc(B, V, NDRAW, TOP);
            const kiln_sampling_params p = fixture_params(&f);
            /* The history penalties run after the bias in both calls. */
            kiln_batch biased = fixture_batch(&f, f.logits, 1, 1);
            kiln_batch manual = fixture_batch(&f, by_hand, 1, 0);
            sample_ok(&s, &biased, &p, &got);
            sample_ok(&s, &manual, &p, &want);
            cr_assert(kt_full_equal(&got, &want),
                      "salt %llu algorithm %d: the bias differs from adding it by hand",
                      (unsigned long long)salt, (int)algorithms[a]);
            kt_full_free(&got);
            kt_full_free(&want);
            kt_destroy(&s);
        }
    }
}

/* The bias runs before the penalties: token 1 has logit -1, a bias of +1.5
 * and repetition 2 from the history. Bias first: (-1 + 1.5) / 2 = 0.25;
 * penalty first would give -1 * 2 + 1.5 = -0.5. */
Test(logit_bias, runs_before_the_penalties)
{
    float x[4] = { 0.0f, -1.0f, 0.1f, -0.3f };
    int64_t hoff[2] = { 0, 1 };
    int32_t hids[1] = { 1 };
    int64_t boff[2] = { 0, 1 };
    int32_t bids[1] = { 1 };
    float bvals[1] = { 1.5f };
    kt_sampler s = kt_cpu_sampler(1, 4, 1, 4, 1, 4, KILN_ALGORITHM_AUTO);
    kt_full got = kt_full_alloc(1, 4, 1, 4), want = kt_full_alloc(1, 4, 1, 4);
    kiln_batch bt = kt_batch_f32(x, 1, 4, 1);
    bt.history_offsets = hoff;
    bt.history_ids = hids;
    bt.logit_bias_offsets = boff;
    bt.logit_bias_ids = bids;
    bt.logit_bias_values = bvals;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.repetition_penalty_all = 2.0f;
    sample_ok(&s, &bt, &p, &got);
    const float y[4] = { 0.0f, 0.25f, 0.1f, -0.3f };
    kiln_batch ref = kt_batch_f32(y, 1, 4, 1);
    kiln_sampling_params q = KILN_SAMPLING_PARAMS_INIT;
    sample_ok(&s, &ref, &q, &want);
    cr_assert(kt_full_equal(&got, &want), "bias then penalty should give logit 0.25 for token 1");
    cr_assert_eq(got.raw_top_ids[0], 1, "token 1 (0.25) is the most likely");
    kt_full_free(&got);
    kt_full_free(&want);
    kt_destroy(&s);
}

/* OpenAI's use: +100 forces a token, -100 bans one (its mass is 0), and a
 * bias on a masked token leaves it masked. */
Test(logit_bias, forces_and_bans_and_cannot_unmask)
{
    float x[V];
    ks_zipf_like(x, V, 77);
    int32_t order[V];
    kt_canonical_order(x, V, order);
    const int32_t top = order[0], forced = order[V - 1], masked = order[1];
    int32_t mask[WORDS] = { -1, -1 };
    mask[masked / 32] &= (int32_t) ~(1u << (masked % 32));
    int64_t boff[2] = { 0, 3 };
    int32_t bids[3] = { top, masked, forced };
    float bvals[3] = { -100.0f, 100.0f, 100.0f };
    kt_sampler s = kt_cpu_sampler(1, V, 32, 0, 1, TOP, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(1, V, 32, TOP);
    kiln_batch bt = kt_batch_f32(x, 1, V, 32);
    bt.allowed_mask = mask;
    bt.logit_bias_offsets = boff;
    bt.logit_bias_ids = bids;
    bt.logit_bias_values = bvals;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        p.seed_all = seed;
        sample_ok(&s, &bt, &p, &r);
        for (int i = 0; i < 32; ++i)
            cr_assert_eq(r.tokens[i], forced, "seed %llu: drew %d, +100 forces %d",
                         (unsigned long long)seed, r.tokens[i], forced);
        cr_assert_eq(r.probs[masked], 0.0f);
        cr_assert_eq(r.probs[top], 0.0f, "-100 leaves no mass at T = 1");
        cr_assert_eq(r.raw_top_ids[0], forced);
        cr_assert_eq(r.raw_top_ids[TOP - 1] == masked, 0);
    }
    kt_full_free(&r);
    kt_destroy(&s);
}

typedef struct bad_case {
    const char *what;
    kiln_status status;
    const char *message;
} bad_case;

static void expect_rejected(kt_sampler *s, const kiln_batch *bt, const kiln_sampling_params *p,
                            kt_full *r, bad_case c)
{
    kt_full_poison(r);
    const kiln_status st = kt_full_sample(s, bt, p, r);
    cr_assert_eq(st, c.status, "%s: status %d, want %d (%s)", c.what, (int)st, (int)c.status,
                 kiln_last_error());
    cr_assert(strstr(kiln_last_error(), c.message), "%s: message \"%s\" lacks \"%s\"", c.what,
              kiln_last_error(), c.message);
    cr_assert(kt_full_untouched(r), "%s: an output was written", c.what);
}

Test(logit_edits, bad_input_names_row_and_field_and_writes_nothing)
{
    fixture f;
    make_fixture(&f, 5);
    kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 2, TOP, KILN_ALGORITHM_AUTO);
    kt_full r = kt_full_alloc(B, V, NDRAW, TOP);
    const kiln_sampling_params p = fixture_params(&f);
    kiln_batch bt = fixture_batch(&f, f.logits, 1, 1);
    const int64_t at = f.boff[3]; /* row 3 has 3 entries */
    cr_assert_geq(f.boff[4] - at, 1);
    char msg[160];

    f.bids[at] = V;
    snprintf(msg, sizeof msg, "logit_bias_ids[%lld] = %d (row 3) is outside [0, %d)",
             (long long)at, V, V);
    expect_rejected(&s, &bt, &p, &r, (bad_case){ "bias id V", KILN_ERROR_INVALID_PARAMETER, msg });
    f.bids[at] = -1;
    snprintf(msg, sizeof msg, "logit_bias_ids[%lld] = -1 (row 3)", (long long)at);
    expect_rejected(&s, &bt, &p, &r, (bad_case){ "bias id -1", KILN_ERROR_INVALID_PARAMETER, msg });
    f.bids[at] = 5;

    f.bvals[at] = NAN;
    snprintf(msg, sizeof msg, "logit_bias_values[%lld] = nan (row 3, token 5) must be finite",
             (long long)at);
    expect_rejected(&s, &bt, &p, &r, (bad_case){ "bias NaN", KILN_ERROR_INVALID_PARAMETER, msg });
    f.bvals[at] = -INFINITY;
    snprintf(msg, sizeof msg, "logit_bias_values[%lld] = -inf", (long long)at);
    expect_rejected(&s, &bt, &p, &r, (bad_case){ "bias -inf", KILN_ERROR_INVALID_PARAMETER, msg });
    f.bvals[at] = 1.0f;

    const int64_t keep = f.boff[2];
    f.boff[2] = f.boff[3] + 1;
    snprintf(msg, sizeof msg, "logit_bias_offsets[3] = %lld is below logit_bias_offsets[2]",
             (long long)f.boff[3]);
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "offsets decrease", KILN_ERROR_INVALID_PARAMETER, msg });
    f.boff[2] = keep;
    f.boff[0] = -1;
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "offsets[0] < 0", KILN_ERROR_INVALID_PARAMETER,
                                "logit_bias_offsets[0] = -1 is negative" });
    f.boff[0] = 0;

    bt.logit_bias_ids = NULL;
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "ids NULL", KILN_ERROR_NULL_POINTER,
                                "batch.logit_bias_ids is NULL but batch.logit_bias_offsets is set" });
    bt.logit_bias_ids = f.bids;
    bt.logit_bias_values = NULL;
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "values NULL", KILN_ERROR_NULL_POINTER, "batch.logit_bias_values is NULL" });
    bt.logit_bias_values = f.bvals;
    bt.logit_bias_offsets = NULL;
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "offsets NULL", KILN_ERROR_NULL_POINTER, "batch.logit_bias_offsets is NULL" });
    bt.logit_bias_offsets = f.boff;

    bt.allowed_mask_stride = WORDS - 1;
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "mask stride", KILN_ERROR_INVALID_SHAPE,
                                "batch.allowed_mask_stride = 1 is outside [ceil(vocab_size / 32) = 2" });
    bt.allowed_mask_stride = 0;
    bt.allowed_mask = (const int32_t *)((const char *)f.mask + 2);
    expect_rejected(&s, &bt, &p, &r,
                    (bad_case){ "mask misaligned", KILN_ERROR_MISALIGNED, "batch.allowed_mask" });
    bt.allowed_mask = f.mask;

    /* The fixture itself is fine. */
    kt_full_poison(&r);
    cr_assert_eq(kt_full_sample(&s, &bt, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
    kt_full_free(&r);
    kt_destroy(&s);
}

/* A row's bytes depend on nothing but the row: not on where it sits in the
 * batch, how many rows there are, the thread count or the algorithm. */
Test(logit_edits, invariant_to_batch_position_threads_and_algorithm)
{
    fixture f;
    make_fixture(&f, 11);
    kt_full ref = kt_full_alloc(B, V, NDRAW, TOP);
    {
        kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 1, TOP, KILN_ALGORITHM_SORT);
        const kiln_sampling_params p = fixture_params(&f);
        kiln_batch bt = fixture_batch(&f, f.logits, 1, 1);
        sample_ok(&s, &bt, &p, &ref);
        kt_destroy(&s);
    }
    for (int threads = 1; threads <= 2; ++threads)
        for (size_t a = 0; a < sizeof algorithms / sizeof algorithms[0]; ++a) {
            kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, threads, TOP, algorithms[a]);
            kt_full got = kt_full_alloc(B, V, NDRAW, TOP);
            const kiln_sampling_params p = fixture_params(&f);
            kiln_batch bt = fixture_batch(&f, f.logits, 1, 1);
            sample_ok(&s, &bt, &p, &got);
            cr_assert(kt_full_equal(&ref, &got), "threads %d algorithm %d changed the bytes",
                      threads, (int)algorithms[a]);
            kt_full_free(&got);
            kt_destroy(&s);
        }
    /* Reversed batch: row b moves to B - 1 - b with everything it owns. */
    fixture g;
    memset(&g, 0, sizeof g);
    for (int b = 0; b < B; ++b) {
        const int o = B - 1 - b;
        memcpy(g.logits + b * V, f.logits + o * V, V * sizeof(float));
        memcpy(g.mask + b * WORDS, f.mask + o * WORDS, WORDS * sizeof(int32_t));
        const int64_t hl = f.hoff[o + 1] - f.hoff[o], bl = f.boff[o + 1] - f.boff[o];
        g.hoff[b + 1] = g.hoff[b] + hl;
        memcpy(g.hids + g.hoff[b], f.hids + f.hoff[o], (size_t)hl * sizeof(int32_t));
        g.boff[b + 1] = g.boff[b] + bl;
        memcpy(g.bids + g.boff[b], f.bids + f.boff[o], (size_t)bl * sizeof(int32_t));
        memcpy(g.bvals + g.boff[b], f.bvals + f.boff[o], (size_t)bl * sizeof(float));
        g.prompt[b] = f.prompt[o];
        g.temp[b] = f.temp[o];
        g.top_k[b] = f.top_k[o];
        g.top_p[b] = f.top_p[o];
        g.min_p[b] = f.min_p[o];
        g.rep[b] = f.rep[o];
        g.pres[b] = f.pres[o];
        g.freq[b] = f.freq[o];
        g.seed[b] = f.seed[o];
    }
    kt_sampler s = kt_cpu_sampler(B, V, NDRAW, MAXH, 2, TOP, KILN_ALGORITHM_AUTO);
    kt_full rev = kt_full_alloc(B, V, NDRAW, TOP);
    const kiln_sampling_params p = fixture_params(&g);
    kiln_batch bt = fixture_batch(&g, g.logits, 1, 1);
    sample_ok(&s, &bt, &p, &rev);
    for (int b = 0; b < B; ++b)
        cr_assert(kt_full_row_equal(&ref, b, &rev, B - 1 - b), "row %d changed with its position", b);
    kt_full_free(&rev);
    kt_full_free(&ref);
    kt_destroy(&s);
}
