/* Known answers a person can check by hand: the textbook examples kiln grew
 * from, plus top-p, min-p and penalty cases worked out on paper. Each case
 * checks the final probabilities (the probs output) against the closed form,
 * and the log-probability of every draw against the log of its probability. */
#include <math.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "harness.h"

#define V_MAX 16
#define DRAWS 64

typedef struct case_params {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
} case_params;

/* Samples one row and checks probs against `expect` (tolerance 2e-6 absolute:
 * the float logits carry ~6e-8 relative error, the pipeline a few ulps). */
static void check_row(const float *logits, int64_t V, case_params cp, const double *expect,
                      int32_t expect_kept)
{
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, V_MAX, DRAWS, 0, 1);
    kiln_batch b = kt_batch_f32(logits, 1, V, DRAWS);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = cp.temperature;
    p.top_k_all = cp.top_k;
    p.top_p_all = cp.top_p;
    p.min_p_all = cp.min_p;
    p.seed_all = 1234;
    kt_result r = kt_result_alloc(1, V, DRAWS);
    cr_assert_eq(kt_sample(&s, &b, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(r.valid[0], 1);
    cr_assert_eq(r.kept[0], expect_kept, "kept %d, expected %d", r.kept[0], expect_kept);
    for (int64_t i = 0; i < V; ++i)
        cr_assert(fabs(r.probs[i] - expect[i]) < 2e-6, "token %lld: prob %.8f, expected %.8f",
                  (long long)i, (double)r.probs[i], expect[i]);
    for (int j = 0; j < DRAWS; ++j) {
        int32_t t = r.tokens[j];
        cr_assert(t >= 0 && t < V);
        cr_assert(expect[t] > 0.0, "drew token %d whose probability is 0", t);
        double want = cp.temperature == 0.0f ? 0.0 : log(expect[t]);
        cr_assert(fabs(r.logprobs[j] - want) < 4e-6, "logprob %.8f, expected %.8f",
                  (double)r.logprobs[j], want);
    }
    kt_result_free(&r);
    kt_destroy(&s);
}

/* P = (0.5, 0.3, 0.15, 0.05) as logits ln P. */
static void textbook_logits(float *x)
{
    static const double P[4] = { 0.5, 0.3, 0.15, 0.05 };
    for (int i = 0; i < 4; ++i)
        x[i] = (float)log(P[i]);
}

/* P_T(i) = P(i)^(1/T) / sum_j P(j)^(1/T). The textbook table rounds these
 * loosely: it prints (0.69, 0.24, 0.06, 0.01) for T = 0.5, where the exact
 * values are (0.6849, 0.2466, 0.0616, 0.0068), and (0.35, 0.29, 0.22, 0.14)
 * for T = 2, where they are (0.3790, 0.2936, 0.2076, 0.1198). kiln is held
 * to the exact values. */
static void tempered(double T, double *out)
{
    static const double P[4] = { 0.5, 0.3, 0.15, 0.05 };
    double s = 0.0;
    for (int i = 0; i < 4; ++i)
        s += out[i] = pow(P[i], 1.0 / T);
    for (int i = 0; i < 4; ++i)
        out[i] /= s;
}

Test(textbook, temperature_half_sharpens)
{
    float x[4];
    double e[4];
    textbook_logits(x);
    tempered(0.5, e);
    cr_assert(fabs(e[0] - 0.684932) < 1e-6 && fabs(e[3] - 0.006849) < 1e-6);
    check_row(x, 4, (case_params){ 0.5f, 0, 1.0f, 0.0f }, e, 4);
}

Test(textbook, temperature_one_is_identity)
{
    float x[4];
    double e[4] = { 0.5, 0.3, 0.15, 0.05 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 1.0f, 0.0f }, e, 4);
}

Test(textbook, temperature_two_flattens)
{
    float x[4];
    double e[4];
    textbook_logits(x);
    tempered(2.0, e);
    cr_assert(fabs(e[0] - 0.378996) < 1e-6 && fabs(e[3] - 0.119849) < 1e-6);
    check_row(x, 4, (case_params){ 2.0f, 0, 1.0f, 0.0f }, e, 4);
}

/* "Every effort moves you": the 9-token vocabulary of the textbook. */
static const float effort_logits[9] = { 4.51f, 0.89f, -1.90f, 6.75f, 1.63f,
                                        -1.62f, -1.89f, 6.28f, 1.79f };

Test(textbook, greedy_picks_forward)
{
    double e[9] = { 0, 0, 0, 1, 0, 0, 0, 0, 0 };
    check_row(effort_logits, 9, (case_params){ 0.0f, 0, 1.0f, 0.0f }, e, 1);
}

Test(textbook, effort_softmax_at_t1)
{
    double e[9], s = 0.0;
    for (int i = 0; i < 9; ++i)
        s += e[i] = exp((double)effort_logits[i] - 6.75);
    for (int i = 0; i < 9; ++i)
        e[i] /= s;
    check_row(effort_logits, 9, (case_params){ 1.0f, 0, 1.0f, 0.0f }, e, 9);
}

Test(textbook, effort_top_k_3)
{
    /* torch.topk keeps forward (6.75), toward (6.28), closer (4.51). */
    double e[9] = { 0 }, s = 0.0;
    const int keep[3] = { 0, 3, 7 };
    for (int i = 0; i < 3; ++i)
        s += e[keep[i]] = exp((double)effort_logits[keep[i]] - 6.75);
    for (int i = 0; i < 3; ++i)
        e[keep[i]] /= s;
    cr_assert(fabs(e[3] - 0.5775) < 1e-4 && fabs(e[7] - 0.3610) < 1e-4 &&
              fabs(e[0] - 0.0615) < 1e-4);
    check_row(effort_logits, 9, (case_params){ 1.0f, 3, 1.0f, 0.0f }, e, 3);
}

Test(textbook, top_k_3_of_four)
{
    /* probabilities (0.1, 0.2, 0.3, 0.4), top-3 -> (0, 2/9, 3/9, 4/9) */
    float x[4] = { (float)log(0.1), (float)log(0.2), (float)log(0.3), (float)log(0.4) };
    double e[4] = { 0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0 };
    check_row(x, 4, (case_params){ 1.0f, 3, 1.0f, 0.0f }, e, 3);
}

/* top-p on P = (0.5, 0.3, 0.15, 0.05): cumulative 0.5, 0.8, 0.95, 1. */
Test(by_hand, top_p_075_keeps_two)
{
    float x[4];
    double e[4] = { 0.625, 0.375, 0, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 0.75f, 0.0f }, e, 2);
}

Test(by_hand, top_p_09_keeps_crossing_token)
{
    float x[4];
    double e[4] = { 0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 0.9f, 0.0f }, e, 3);
}

Test(by_hand, top_p_04_keeps_top_token)
{
    float x[4];
    double e[4] = { 1, 0, 0, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 0.4f, 0.0f }, e, 1);
}

Test(by_hand, top_p_applies_to_top_k_mass)
{
    /* top-3 renormalised: (0.5263, 0.3158, 0.1579); cumulative 0.5263, 0.8421:
     * p = 0.8 stops at the second token. */
    float x[4];
    double e[4] = { 0.625, 0.375, 0, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 3, 0.8f, 0.0f }, e, 2);
}

Test(by_hand, min_p_quarter)
{
    /* threshold 0.25 * 0.5 = 0.125: keeps 0.5, 0.3, 0.15 */
    float x[4];
    double e[4] = { 0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 1.0f, 0.25f }, e, 3);
}

Test(by_hand, min_p_half)
{
    float x[4];
    double e[4] = { 0.625, 0.375, 0, 0 };
    textbook_logits(x);
    check_row(x, 4, (case_params){ 1.0f, 0, 1.0f, 0.5f }, e, 2);
}

Test(by_hand, min_p_one_keeps_ties_with_max)
{
    float x[5] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.0f };
    double e[5] = { 0, 0.5, 0, 0.5, 0 };
    check_row(x, 5, (case_params){ 1.0f, 0, 1.0f, 1.0f }, e, 2);
}

Test(by_hand, top_k_ties_go_to_lower_id)
{
    /* ids 1, 2, 4 tie at the top; k = 2 keeps ids 1 and 2. */
    float x[5] = { 0.0f, 2.0f, 2.0f, -1.0f, 2.0f };
    double e[5] = { 0, 0.5, 0.5, 0, 0 };
    check_row(x, 5, (case_params){ 0.7f, 2, 1.0f, 0.0f }, e, 2);
}

Test(by_hand, negative_zero_ties_positive_zero)
{
    /* -0 at id 0 and +0 at id 2 tie; k = 1 keeps the lower id, 0. */
    float x[3] = { -0.0f, -1.0f, 0.0f };
    double e[3] = { 1, 0, 0 };
    check_row(x, 3, (case_params){ 1.0f, 1, 1.0f, 0.0f }, e, 1);
    check_row(x, 3, (case_params){ 0.0f, 0, 1.0f, 0.0f }, e, 1);
}

Test(by_hand, penalties_worked_example)
{
    /* logits (2, -1, 0.5, 3); prompt [0], generated [1, 1, 3];
     * repetition 2: x0 = 2/2 = 1, x1 = -1*2 = -2, x3 = 3/2 = 1.5;
     * frequency 0.5: x1 = -2 - 2*0.5 = -3, x3 = 1.5 - 0.5 = 1;
     * presence 0.25: x1 = -3.25, x3 = 0.75; x0 is a prompt token only.
     * Penalised: (1, -3.25, 0.5, 0.75). */
    const float x[4] = { 2.0f, -1.0f, 0.5f, 3.0f };
    const double pen[4] = { 1.0, -3.25, 0.5, 0.75 };
    const int64_t off[2] = { 0, 4 };
    const int32_t ids[4] = { 0, 1, 1, 3 };
    const int32_t prompt[1] = { 1 };
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, 4, 8, 8, 1);
    kiln_batch b = kt_batch_f32(x, 1, 4, 8);
    b.history_offsets = off;
    b.history_ids = ids;
    b.prompt_lengths = prompt;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.repetition_penalty_all = 2.0f;
    p.frequency_penalty_all = 0.5f;
    p.presence_penalty_all = 0.25f;
    kt_result r = kt_result_alloc(1, 4, 8);
    cr_assert_eq(kt_sample(&s, &b, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
    double sum = 0.0;
    for (int i = 0; i < 4; ++i)
        sum += exp(pen[i] - 1.0);
    for (int i = 0; i < 4; ++i)
        cr_assert(fabs(r.probs[i] - exp(pen[i] - 1.0) / sum) < 2e-6, "token %d: %.7f", i,
                  (double)r.probs[i]);
    for (int j = 0; j < 8; ++j) {
        int32_t t = r.tokens[j];
        double want = pen[t] - 1.0 - log(sum);
        cr_assert(fabs(r.raw_logprobs[j] - want) < 2e-6);
        cr_assert(fabs(r.logprobs[j] - want) < 2e-6); /* T = 1, no filter */
    }
    /* Greedy over the penalised logits picks token 0 (1.0), not token 3. */
    p.temperature_all = 0.0f;
    cr_assert_eq(kt_sample(&s, &b, &p, &r), KILN_SUCCESS);
    cr_assert_eq(r.tokens[0], 0);
    kt_result_free(&r);
    kt_destroy(&s);
}
