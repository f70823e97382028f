/* kiln-llama-peer: kiln's CPU backend and llama.cpp's sampler chain on the
 * same rows in the same run, one thread, one row per call.
 *
 *   kiln-llama-peer LIBLLAMA [--vocab V] [--quick]
 *
 * LIBLLAMA is llama.cpp's libllama.so (bench/llama-peer finds the one the
 * llama-cpp-python package builds); it is opened at run time, so kiln never
 * links it. Rows: the textbook's Zipf-like shape (N(0, 2) noise under a few
 * strong tokens) and a Zipf law, 8 of each, rotated.
 *
 * llama.cpp's time counts what a caller of its chain must do per token:
 * fill a llama_token_data array from the logits, then llama_sampler_apply.
 * Semantics differ and are matched where they can be:
 * - order: llama.cpp applies its samplers in chain order; its common default
 *   puts temperature last (top-k -> top-p -> min-p -> temp -> dist), kiln
 *   scales first (vLLM's order), so the chains here put temp first;
 * - llama.cpp renormalises floats after every filter and draws with its own
 *   RNG (std::mt19937); kiln's masses are fixed-point and its draw Philox:
 *   the same distributions up to rounding, not the same tokens;
 * - top-p keeps min_keep = 1, min-p is relative to the max probability in
 *   both. Penalties are left out (the bindings' penalty signature differs
 *   between llama.cpp versions). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln/kiln.h"
#include "logit_shapes.h"

/* llama.h's layouts (stable since the sampler API of late 2024) */
typedef struct llama_token_data {
    int32_t id;
    float logit;
    float p;
} llama_token_data;
typedef struct llama_token_data_array {
    llama_token_data *data;
    size_t size;
    int64_t selected;
    bool sorted;
} llama_token_data_array;
typedef struct llama_sampler_chain_params {
    bool no_perf;
} llama_sampler_chain_params;
struct llama_sampler;

static struct {
    struct llama_sampler *(*chain_init)(llama_sampler_chain_params);
    void (*chain_add)(struct llama_sampler *, struct llama_sampler *);
    void (*apply)(struct llama_sampler *, llama_token_data_array *);
    void (*free_)(struct llama_sampler *);
    struct llama_sampler *(*greedy)(void);
    struct llama_sampler *(*dist)(uint32_t);
    struct llama_sampler *(*top_k)(int32_t);
    struct llama_sampler *(*top_p)(float, size_t);
    struct llama_sampler *(*min_p)(float, size_t);
    struct llama_sampler *(*temp)(float);
} L;

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "kiln-llama-peer: %s not in libllama: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

static void load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "kiln-llama-peer: %s\n", dlerror());
        exit(1);
    }
    *(void **)&L.chain_init = sym(h, "llama_sampler_chain_init");
    *(void **)&L.chain_add = sym(h, "llama_sampler_chain_add");
    *(void **)&L.apply = sym(h, "llama_sampler_apply");
    *(void **)&L.free_ = sym(h, "llama_sampler_free");
    *(void **)&L.greedy = sym(h, "llama_sampler_init_greedy");
    *(void **)&L.dist = sym(h, "llama_sampler_init_dist");
    *(void **)&L.top_k = sym(h, "llama_sampler_init_top_k");
    *(void **)&L.top_p = sym(h, "llama_sampler_init_top_p");
    *(void **)&L.min_p = sym(h, "llama_sampler_init_min_p");
    *(void **)&L.temp = sym(h, "llama_sampler_init_temp");
}

typedef struct method {
    const char *name;
    float t;
    int32_t k;
    float p, min_p;
} method;

static const method methods[] = {
    { "greedy", 0.0f, 0, 1.0f, 0.0f },        { "temperature", 0.7f, 0, 1.0f, 0.0f },
    { "top_k50", 1.0f, 50, 1.0f, 0.0f },      { "top_p0.9", 1.0f, 0, 0.9f, 0.0f },
    { "t0.7_k50_p0.9", 0.7f, 50, 0.9f, 0.0f }, { "min_p0.05", 1.0f, 0, 1.0f, 0.05f },
};

static struct llama_sampler *chain_for(const method *m)
{
    llama_sampler_chain_params cp = { true };
    struct llama_sampler *c = L.chain_init(cp);
    if (m->t == 0.0f) {
        L.chain_add(c, L.greedy());
        return c;
    }
    if (m->t != 1.0f)
        L.chain_add(c, L.temp(m->t));
    if (m->k > 0)
        L.chain_add(c, L.top_k(m->k));
    if (m->p < 1.0f)
        L.chain_add(c, L.top_p(m->p, 1));
    if (m->min_p > 0.0f)
        L.chain_add(c, L.min_p(m->min_p, 1));
    L.chain_add(c, L.dist(1234));
    return c;
}

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

enum { SETS = 8, REPS = 41 };

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kiln-llama-peer LIBLLAMA [--vocab V] [--quick]\n");
        return 2;
    }
    int64_t V = 128256;
    int reps = REPS;
    for (int i = 2; i < argc; ++i) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            V = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            reps = 5;
    }
    load(argv[1]);
    float *rows = malloc(sizeof(float) * (size_t)(2 * SETS * V));
    for (int s = 0; s < 2 * SETS; ++s)
        (s < SETS ? ks_zipf_like : ks_zipf)(rows + (size_t)s * V, V, 17 + (uint64_t)s);
    llama_token_data *td = malloc(sizeof *td * (size_t)V);

    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = 1;
    cfg.max_vocab = V;
    cfg.num_threads = 1;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&cfg, &s) != KILN_SUCCESS) {
        fprintf(stderr, "kiln-llama-peer: %s\n", kiln_last_error());
        return 1;
    }
    size_t ws_bytes = 0;
    kiln_sampler_workspace_size(s, &ws_bytes);
    void *ws = malloc(ws_bytes);

    printf("kiln-llama-peer: one thread, one row per call, V = %lld, median of %d calls\n\n",
           (long long)V, reps);
    printf("| rows | method | kiln us | llama.cpp us (fill + chain) | llama.cpp chain alone us | "
           "kiln faster by |\n|---|---|---|---|---|---|\n");
    double tk[REPS], tl[REPS], tc[REPS];
    for (int shape = 0; shape < 2; ++shape)
        for (size_t mi = 0; mi < sizeof methods / sizeof methods[0]; ++mi) {
            const method *m = &methods[mi];
            struct llama_sampler *c = chain_for(m);
            for (int r = -1; r < reps; ++r) {
                const float *x = rows + (size_t)(shape * SETS + (r + SETS) % SETS) * V;
                kiln_batch bt = KILN_BATCH_INIT;
                bt.logits = x;
                bt.dtype = KILN_DTYPE_F32;
                bt.num_rows = 1;
                bt.vocab_size = V;
                bt.row_stride = V;
                kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
                p.temperature_all = m->t;
                p.top_k_all = m->k;
                p.top_p_all = m->p;
                p.min_p_all = m->min_p;
                p.seed_all = 99 + (uint64_t)r;
                int32_t token;
                kiln_outputs o = KILN_OUTPUTS_INIT;
                o.tokens = &token;
                double t0 = now_us();
                if (kiln_sample(s, &bt, &p, &o, ws, ws_bytes, NULL) != KILN_SUCCESS) {
                    fprintf(stderr, "kiln-llama-peer: %s\n", kiln_last_error());
                    return 1;
                }
                double t1 = now_us();
                for (int64_t i = 0; i < V; ++i) {
                    td[i].id = (int32_t)i;
                    td[i].logit = x[i];
                    td[i].p = 0.0f;
                }
                llama_token_data_array a = { td, (size_t)V, -1, false };
                double t2 = now_us();
                L.apply(c, &a);
                double t3 = now_us();
                if (a.selected < 0 || a.selected >= (int64_t)a.size) {
                    fprintf(stderr, "kiln-llama-peer: llama.cpp selected nothing\n");
                    return 1;
                }
                if (r >= 0) {
                    tk[r] = t1 - t0;
                    tl[r] = t3 - t1;
                    tc[r] = t3 - t2;
                }
            }
            L.free_(c);
            qsort(tk, (size_t)reps, sizeof(double), cmp);
            qsort(tl, (size_t)reps, sizeof(double), cmp);
            qsort(tc, (size_t)reps, sizeof(double), cmp);
            const double k = tk[reps / 2], l = tl[reps / 2], ch = tc[reps / 2];
            printf("| %s | %s | %.1f | %.1f | %.1f | %.1fx |\n", shape ? "Zipf law" : "Zipf-like",
                   m->name, k, l, ch, l / k);
            fflush(stdout);
        }
    kiln_sampler_destroy(s);
    free(ws);
    free(td);
    free(rows);
    return 0;
}
