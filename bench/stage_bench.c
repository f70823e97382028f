/* kiln-stage-bench: what each optional stage of docs/semantics.md sections
 * 1 and 15-18 costs on the CPU backend, one thread, one row at a time:
 * the per-row time of a base method alone and with each stage added, and
 * kiln_score, over rotated realistic rows (Zipf law with noise).
 *
 *   kiln-stage-bench [--vocab V] [--rows N] [--quick]
 *
 * Median of >= 7 timed calls of N rows after a warm-up; monotonic clock.
 * Timings, not tests: run it on a quiet machine for figures. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "logit_shapes.h"

enum { SETS = 4, BIAS = 300, TOPN = 5 };

typedef struct setup {
    int64_t V, rows;
    float *logits;      /* [SETS * rows, V] */
    int32_t *mask;      /* [rows, words] */
    int64_t *bias_off;  /* [rows + 1] */
    int32_t *bias_ids;
    float *bias_values;
    int32_t *tokens, *ranks, *top_ids, *final_ids, *kept, *targets;
    float *logprobs, *top_lp, *final_lp, *entropy, *raw_entropy, *temps, *scores;
    kiln_sampler *s;
    void *ws;
    size_t ws_bytes;
} setup;

enum stage { BASE, MASK, BIAS_STAGE, DYNATEMP, TOP_N, RANKS, ENTROPY, RAW_ENTROPY, ALL, SCORE };
static const char *stage_names[] = { "base",    "+ mask",       "+ logit bias (300)",
                                     "+ dynatemp", "+ top-5 raw+final", "+ raw rank",
                                     "+ entropy",  "+ raw entropy", "+ all of them",
                                     "kiln_score (1 target, top-5, entropy)" };

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void call(setup *st, int set, enum stage stage, float temperature, int32_t top_k,
                 float top_p)
{
    kiln_batch b = KILN_BATCH_INIT;
    b.logits = st->logits + (size_t)set * st->rows * st->V;
    b.num_rows = st->rows;
    b.vocab_size = st->V;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = temperature;
    p.top_k_all = top_k;
    p.top_p_all = top_p;
    p.seed_all = (uint64_t)set;
    const int all = stage == ALL;
    if (stage == MASK || all) {
        b.allowed_mask = st->mask;
    }
    if (stage == BIAS_STAGE || all) {
        b.logit_bias_offsets = st->bias_off;
        b.logit_bias_ids = st->bias_ids;
        b.logit_bias_values = st->bias_values;
    }
    if (stage == DYNATEMP || all)
        p.dynatemp_range_all = 0.3f;
    kiln_status rc;
    if (stage == SCORE) {
        kiln_score_outputs so = KILN_SCORE_OUTPUTS_INIT;
        so.logprobs = st->scores;
        so.ranks = st->ranks;
        so.num_top_logprobs = TOPN;
        so.top_ids = st->top_ids;
        so.top_logprobs = st->top_lp;
        so.entropy = st->raw_entropy;
        rc = kiln_score(st->s, &b, NULL, st->targets, 1, &so, st->ws, st->ws_bytes, NULL);
    } else {
        kiln_outputs o = KILN_OUTPUTS_INIT;
        o.tokens = st->tokens;
        o.logprobs = st->logprobs;
        o.kept_counts = st->kept;
        if (stage == TOP_N || all) {
            o.num_top_logprobs = TOPN;
            o.raw_top_ids = st->top_ids;
            o.raw_top_logprobs = st->top_lp;
            o.final_top_ids = st->final_ids;
            o.final_top_logprobs = st->final_lp;
        }
        if (stage == RANKS || all)
            o.raw_ranks = st->ranks;
        if (stage == ENTROPY || all)
            o.entropy = st->entropy;
        if (stage == RAW_ENTROPY || all)
            o.raw_entropy = st->raw_entropy;
        if (all)
            o.temperatures = st->temps;
        rc = kiln_sample(st->s, &b, &p, &o, st->ws, st->ws_bytes, NULL);
    }
    if (rc != KILN_SUCCESS) {
        fprintf(stderr, "kiln-stage-bench: %s\n", kiln_last_error());
        exit(1);
    }
}

static double per_row_us(setup *st, enum stage stage, float t, int32_t k, float p, int reps)
{
    double times[64];
    call(st, 0, stage, t, k, p);
    for (int r = 0; r < reps; ++r) {
        const double t0 = now_us();
        call(st, (r + 1) % SETS, stage, t, k, p);
        times[r] = (now_us() - t0) / (double)st->rows;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp);
    return times[reps / 2];
}

int main(int argc, char **argv)
{
    setup st;
    st.V = 128256;
    st.rows = 8;
    int reps = 7;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            st.V = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            st.rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) {
            st.V = 4096;
            st.rows = 2;
            reps = 3;
        } else {
            fprintf(stderr, "usage: kiln-stage-bench [--vocab V] [--rows N] [--quick]\n");
            return 2;
        }
    }
    const int64_t V = st.V, R = st.rows, words = (V + 31) / 32;
    st.logits = malloc(sizeof(float) * (size_t)(SETS * R * V));
    for (int64_t r = 0; r < SETS * R; ++r)
        ks_zipf(st.logits + r * V, V, 100 + (uint64_t)r);
    st.mask = malloc(4 * (size_t)(R * words));
    ks_rng rng = { 7 };
    for (int64_t i = 0; i < R * words; ++i)
        st.mask[i] = getenv("KILN_MASK_ALL") ? -1 : (int32_t)(uint32_t)(ks_rng_u64(&rng) | 0x11111111u); /* most allowed */
    st.bias_off = malloc(8 * (size_t)(R + 1));
    st.bias_ids = malloc(4 * (size_t)(R * BIAS));
    st.bias_values = malloc(4 * (size_t)(R * BIAS));
    for (int64_t r = 0; r <= R; ++r)
        st.bias_off[r] = r * BIAS;
    for (int64_t i = 0; i < R * BIAS; ++i) {
        st.bias_ids[i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
        st.bias_values[i] = (float)(ks_rng_unit(&rng) * 4.0 - 2.0);
    }
#define ALLOC(f, n) st.f = malloc(4 * (size_t)(n))
    ALLOC(tokens, R); ALLOC(ranks, R); ALLOC(top_ids, R * TOPN); ALLOC(final_ids, R * TOPN);
    ALLOC(kept, R); ALLOC(targets, R); ALLOC(logprobs, R); ALLOC(top_lp, R * TOPN);
    ALLOC(final_lp, R * TOPN); ALLOC(entropy, R); ALLOC(raw_entropy, R); ALLOC(temps, R);
    ALLOC(scores, R);
#undef ALLOC
    for (int64_t r = 0; r < R; ++r)
        st.targets[r] = (int32_t)((r * 7919) % V);
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = R;
    cfg.max_vocab = V;
    cfg.num_threads = 1;
    cfg.max_top_logprobs = TOPN;
    if (kiln_sampler_create(&cfg, &st.s) != KILN_SUCCESS) {
        fprintf(stderr, "kiln-stage-bench: %s\n", kiln_last_error());
        return 1;
    }
    kiln_sampler_workspace_size(st.s, &st.ws_bytes);
    st.ws = malloc(st.ws_bytes);

    const struct {
        const char *name;
        float t;
        int32_t k;
        float p;
    } methods[] = { { "T 0.7 + k 50 + p 0.9", 0.7f, 50, 0.9f },
                    { "T 0.7 + top-p 0.9", 0.7f, 0, 0.9f },
                    { "T 1 (plain)", 1.0f, 0, 1.0f } };
    printf("kiln-stage-bench: CPU, 1 thread, V = %lld, %lld rows per call, us per row "
           "(median of %d)\n\n",
           (long long)V, (long long)R, reps);
    printf("| stage | %s | %s | %s |\n|---|---|---|---|\n", methods[0].name, methods[1].name,
           methods[2].name);
    for (int sg = BASE; sg <= SCORE; ++sg) {
        printf("| %s |", stage_names[sg]);
        for (int m = 0; m < 3; ++m) {
            if (sg == SCORE && m > 0) {
                printf(" (same) |");
                continue;
            }
            printf(" %.1f |", per_row_us(&st, (enum stage)sg, methods[m].t, methods[m].k,
                                         methods[m].p, reps));
        }
        printf("\n");
        fflush(stdout);
    }
    kiln_sampler_destroy(st.s);
    void *owned[] = { st.logits, st.mask, st.bias_off, st.bias_ids, st.bias_values, st.tokens,
                      st.ranks, st.top_ids, st.final_ids, st.kept, st.targets, st.logprobs,
                      st.top_lp, st.final_lp, st.entropy, st.raw_entropy, st.temps, st.scores,
                      st.ws };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i)
        free(owned[i]);
    return 0;
}
