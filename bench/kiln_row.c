/* kiln-row: one kiln_sample call on one realistic row, for instruction
 * counts. bench/callgrind runs it under valgrind's callgrind with
 * --toggle-collect=kiln_sample, so only the call itself is counted (the
 * row's generation is not).
 *
 *   kiln-row METHOD [f32|bf16] [VOCAB] [auto|select|sort] [REPEAT]
 *
 * With REPEAT > 1 it makes that many calls on the same row (cache-warm,
 * unlike kiln-bench's rotated sets) and prints the fastest and the median
 * time per call: a loop to profile one method under perf.
 *
 * METHOD is one of kiln-bench's (greedy, temperature, top_k50, top_p0.9,
 * t0.7_k50_p0.9, min_p0.05, t0.7_k50_p0.9_pen512). The row is kiln-bench's
 * first row at B = 1 (the textbook's Zipf-like shape, seed 17) and the
 * history its 512 tokens. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "logit_shapes.h"

typedef struct method {
    const char *name;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    int penalties;
} method;

static const method methods[] = {
    { "greedy", 0.0f, 0, 1.0f, 0.0f, 0 },
    { "temperature", 0.7f, 0, 1.0f, 0.0f, 0 },
    { "top_k50", 1.0f, 50, 1.0f, 0.0f, 0 },
    { "top_p0.9", 1.0f, 0, 0.9f, 0.0f, 0 },
    { "t0.7_k50_p0.9", 0.7f, 50, 0.9f, 0.0f, 0 },
    { "min_p0.05", 1.0f, 0, 1.0f, 0.05f, 0 },
    { "t0.7_k50_p0.9_pen512", 0.7f, 50, 0.9f, 0.0f, 1 },
};
#define HISTORY 512

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kiln-row METHOD [f32|bf16] [VOCAB] [auto|select|sort] [REPEAT]\n");
        return 2;
    }
    const method *m = NULL;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; ++i)
        if (strcmp(argv[1], methods[i].name) == 0)
            m = &methods[i];
    if (!m) {
        fprintf(stderr, "kiln-row: unknown method %s\n", argv[1]);
        return 2;
    }
    const int bf16 = argc > 2 && strcmp(argv[2], "bf16") == 0;
    const int64_t V = argc > 3 ? atoll(argv[3]) : 128256;
    kiln_algorithm alg = KILN_ALGORITHM_AUTO;
    if (argc > 4)
        alg = strcmp(argv[4], "sort") == 0     ? KILN_ALGORITHM_SORT
              : strcmp(argv[4], "select") == 0 ? KILN_ALGORITHM_SELECT
                                               : KILN_ALGORITHM_AUTO;

    float *x = malloc((size_t)V * 4);
    ks_zipf_like(x, V, 17);
    uint16_t *h = malloc((size_t)V * 2);
    for (int64_t i = 0; i < V; ++i)
        h[i] = to_bf16(x[i]);
    ks_rng rng = { 17 ^ 0xABCDEFu };
    int64_t offsets[2] = { 0, HISTORY };
    int32_t ids[HISTORY], prompt = HISTORY / 2;
    for (int i = 0; i < HISTORY; ++i)
        ids[i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
    uint64_t seed = ks_rng_u64(&rng);

    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.algorithm = alg;
    cfg.num_threads = 1;
    cfg.max_batch = 1;
    cfg.max_vocab = V;
    cfg.max_history = HISTORY;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS) {
        fprintf(stderr, "kiln-row: %s\n", kiln_last_error());
        return 1;
    }
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *ws = malloc(ws_bytes);

    kiln_batch b = KILN_BATCH_INIT;
    b.dtype = bf16 ? KILN_DTYPE_BF16 : KILN_DTYPE_F32;
    b.logits = bf16 ? (const void *)h : (const void *)x;
    b.num_rows = 1;
    b.vocab_size = V;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = m->temperature;
    p.top_k_all = m->top_k;
    p.top_p_all = m->top_p;
    p.min_p_all = m->min_p;
    p.seed_all = seed;
    if (m->penalties) {
        b.history_offsets = offsets;
        b.history_ids = ids;
        b.prompt_lengths = &prompt;
        p.repetition_penalty_all = 1.1f;
        p.presence_penalty_all = 0.5f;
        p.frequency_penalty_all = 0.3f;
    }
    int32_t token = 0;
    float logprob = 0.0f;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = &token;
    o.logprobs = &logprob;
    const long repeat = argc > 5 ? atol(argv[5]) : 1;
    double *us = malloc((size_t)(repeat > 1 ? repeat : 1) * sizeof *us);
    for (long r = 0; r < (repeat > 1 ? repeat : 1); ++r) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (kiln_sample(s, &b, &p, &o, ws, ws_bytes, NULL) != KILN_SUCCESS) {
            fprintf(stderr, "kiln-row: %s\n", kiln_last_error());
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        us[r] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-3;
    }
    if (repeat > 1) {
        qsort(us, (size_t)repeat, sizeof *us, cmp_double);
        printf("%ld calls: fastest %.2f us, median %.2f us\n", repeat, us[0], us[repeat / 2]);
    }
    free(us);
    printf("%s %s V=%lld: token %d logprob %.9g\n", m->name, bf16 ? "bf16" : "f32", (long long)V,
           token, (double)logprob);
    free(ws);
    free(x);
    free(h);
    kiln_sampler_destroy(s);
    return 0;
}
