/* kiln-demo: the textbook's sampling scenarios, sampled through kiln.
 *
 * Runs on the GPU when kiln was built with CUDA and a device is present,
 * else on the CPU (--cpu forces the CPU). On a GPU it also samples every
 * scenario on the CPU and reports whether the bytes agree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"
#include "logit_shapes.h"

#ifdef KILN_DEMO_CUDA
#include <cuda_runtime_api.h>
#endif

#define MAX_V 1000
#define MAX_DRAWS 1000

typedef struct scenario {
    const char *name;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
} scenario;

typedef struct row_result {
    int32_t tokens[MAX_DRAWS];
    float logprobs[MAX_DRAWS];
    float probs[MAX_V];
    int32_t kept;
    uint8_t valid;
} row_result;

typedef struct backend {
    kiln_sampler *sampler;
    void *workspace;
    size_t workspace_size;
    kiln_backend kind;
} backend;

static void die(const char *what, kiln_status st)
{
    fprintf(stderr, "kiln-demo: %s: %s (%s)\n", what, kiln_status_string(st), kiln_last_error());
    exit(1);
}

static int open_backend(backend *b, kiln_backend kind)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = kind;
    cfg.max_vocab = MAX_V;
    cfg.max_samples = MAX_DRAWS;
    cfg.max_history = 16;
    cfg.max_top_logprobs = 5;
    b->kind = kind;
    if (kiln_sampler_create(&cfg, &b->sampler) != KILN_SUCCESS)
        return 0;
    kiln_sampler_workspace_size(b->sampler, &b->workspace_size);
#ifdef KILN_DEMO_CUDA
    if (kind == KILN_BACKEND_CUDA) {
        if (cudaMalloc(&b->workspace, b->workspace_size ? b->workspace_size : 1) != cudaSuccess)
            return 0;
        return 1;
    }
#endif
    b->workspace = malloc(b->workspace_size);
    return b->workspace != NULL;
}

static void close_backend(backend *b)
{
#ifdef KILN_DEMO_CUDA
    if (b->kind == KILN_BACKEND_CUDA) {
        cudaFree(b->workspace);
        kiln_sampler_destroy(b->sampler);
        return;
    }
#endif
    free(b->workspace);
    kiln_sampler_destroy(b->sampler);
}

/* One row, n draws, with an optional history (host arrays; copied to the
 * device for the CUDA backend). */
static void sample(backend *b, const float *logits, int64_t V, int32_t n, const scenario *sc,
                   float repetition, const int32_t *history, int64_t history_len,
                   uint64_t seed, row_result *out)
{
    kiln_batch batch = KILN_BATCH_INIT;
    batch.logits = logits;
    batch.num_rows = 1;
    batch.vocab_size = V;
    batch.num_samples = n;
    int64_t offsets[2] = { 0, history_len };
    if (history_len > 0) {
        batch.history_offsets = offsets;
        batch.history_ids = history;
    }
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = sc->temperature;
    p.top_k_all = sc->top_k;
    p.top_p_all = sc->top_p;
    p.min_p_all = sc->min_p;
    p.repetition_penalty_all = repetition;
    p.seed_all = seed;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = out->tokens;
    o.logprobs = out->logprobs;
    o.probs = out->probs;
    o.kept_counts = &out->kept;
    o.valid = &out->valid;
#ifdef KILN_DEMO_CUDA
    if (b->kind == KILN_BACKEND_CUDA) {
        /* Device copies of every input and output, laid out in one buffer. */
        char *d = NULL;
        size_t bytes = 4 * (size_t)V + 16 + 4 * (size_t)history_len + 8 * (size_t)n +
                       4 * (size_t)V + 64;
        if (cudaMalloc((void **)&d, bytes) != cudaSuccess)
            die("cudaMalloc", KILN_ERROR_CUDA);
        float *d_logits = (float *)d;
        int64_t *d_off = (int64_t *)(d + ((4 * (size_t)V + 7) & ~(size_t)7));
        int32_t *d_hist = (int32_t *)(d_off + 2);
        int32_t *d_tok = d_hist + history_len;
        float *d_lp = (float *)(d_tok + n);
        float *d_probs = d_lp + n;
        int32_t *d_kept = (int32_t *)(d_probs + V);
        uint8_t *d_valid = (uint8_t *)(d_kept + 1);
        cudaMemcpy(d_logits, logits, 4 * (size_t)V, cudaMemcpyHostToDevice);
        cudaMemcpy(d_off, offsets, 16, cudaMemcpyHostToDevice);
        if (history_len)
            cudaMemcpy(d_hist, history, 4 * (size_t)history_len, cudaMemcpyHostToDevice);
        batch.logits = d_logits;
        if (history_len > 0) {
            batch.history_offsets = d_off;
            batch.history_ids = d_hist;
        }
        o.tokens = d_tok;
        o.logprobs = d_lp;
        o.probs = d_probs;
        o.kept_counts = d_kept;
        o.valid = d_valid;
        kiln_status st =
            kiln_sample(b->sampler, &batch, &p, &o, b->workspace, b->workspace_size, NULL);
        if (st)
            die("kiln_sample (CUDA)", st);
        cudaMemcpy(out->tokens, d_tok, 4 * (size_t)n, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->logprobs, d_lp, 4 * (size_t)n, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->probs, d_probs, 4 * (size_t)V, cudaMemcpyDeviceToHost);
        cudaMemcpy(&out->kept, d_kept, 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(&out->valid, d_valid, 1, cudaMemcpyDeviceToHost);
        cudaFree(d);
        return;
    }
#endif
    kiln_status st = kiln_sample(b->sampler, &batch, &p, &o, b->workspace, b->workspace_size, NULL);
    if (st)
        die("kiln_sample", st);
}

/* ------------------------------------------------------------ reporting */

static backend cpu, gpu;
static int have_gpu;
static int mismatches, comparisons;

/* Samples on the demo's backend; on a GPU run, also on the CPU, comparing. */
static void run(const float *logits, int64_t V, int32_t n, const scenario *sc, float repetition,
                const int32_t *history, int64_t history_len, uint64_t seed, row_result *out)
{
    backend *main_backend = have_gpu ? &gpu : &cpu;
    sample(main_backend, logits, V, n, sc, repetition, history, history_len, seed, out);
    if (have_gpu) {
        static row_result check;
        sample(&cpu, logits, V, n, sc, repetition, history, history_len, seed, &check);
        ++comparisons;
        if (memcmp(out->tokens, check.tokens, 4 * (size_t)n) ||
            memcmp(out->logprobs, check.logprobs, 4 * (size_t)n) ||
            memcmp(out->probs, check.probs, 4 * (size_t)V) || out->kept != check.kept ||
            out->valid != check.valid)
            ++mismatches;
    }
}

static void bar(int count, int per_char)
{
    for (int i = 0; i < count / per_char; ++i)
        fputs("\xe2\x96\x88", stdout); /* U+2588 full block */
}

static double entropy(const float *probs, int64_t V)
{
    double h = 0.0;
    for (int64_t i = 0; i < V; ++i)
        if (probs[i] > 0.0f)
            h -= (double)probs[i] * log((double)probs[i]);
    return h;
}

/* -------------------------------------------------------------- scenes */

static void temperature_table(void)
{
    static const char *names[4] = { "A", "B", "C", "D" };
    static const double P[4] = { 0.5, 0.3, 0.15, 0.05 };
    static const double book_half[4] = { 0.69, 0.24, 0.06, 0.01 };
    static const double book_two[4] = { 0.35, 0.29, 0.22, 0.14 };
    float x[4];
    for (int i = 0; i < 4; ++i)
        x[i] = (float)log(P[i]);
    static row_result r[3];
    const float temps[3] = { 0.5f, 1.0f, 2.0f };
    for (int t = 0; t < 3; ++t) {
        scenario sc = { "", temps[t], 0, 1.0f, 0.0f };
        run(x, 4, 1, &sc, 1.0f, NULL, 0, 1, &r[t]);
    }
    printf("1. Temperature reshapes P = (0.5, 0.3, 0.15, 0.05)\n\n");
    printf("   token    T=0.5    T=1.0    T=2.0   | textbook T=0.5  T=2.0\n");
    for (int i = 0; i < 4; ++i)
        printf("   %-5s   %.4f   %.4f   %.4f   |          %.2f   %.2f\n", names[i],
               (double)r[0].probs[i], (double)r[1].probs[i], (double)r[2].probs[i], book_half[i],
               book_two[i]);
    printf("\n   kiln's columns are exact (P^(1/T) normalised, to 1e-6). The textbook table\n"
           "   rounds loosely: its T=2 column is off by up to 0.03 (tests/test_known_answers.c).\n\n");
}

static const char *effort_words[9] = { "closer", "every", "effort", "forward", "inches",
                                       "moves",  "pizza", "toward", "you" };
static const float effort_logits[9] = { 4.51f, 0.89f, -1.90f, 6.75f, 1.63f,
                                        -1.62f, -1.89f, 6.28f, 1.79f };

static void effort_counts(const scenario *sc, uint64_t seed)
{
    static row_result r;
    run(effort_logits, 9, MAX_DRAWS, sc, 1.0f, NULL, 0, seed, &r);
    int counts[9] = { 0 };
    for (int j = 0; j < MAX_DRAWS; ++j)
        counts[r.tokens[j]]++;
    printf("   %s  (kept %d)\n", sc->name, (int)r.kept);
    for (int i = 0; i < 9; ++i) {
        if (!counts[i] && r.probs[i] == 0.0f)
            continue;
        printf("     %-8s %4d  p=%.4f  ", effort_words[i], counts[i], (double)r.probs[i]);
        bar(counts[i], 20);
        printf("\n");
    }
    printf("\n");
}

static void every_effort(void)
{
    static row_result g;
    scenario greedy = { "greedy", 0.0f, 0, 1.0f, 0.0f };
    run(effort_logits, 9, 1, &greedy, 1.0f, NULL, 0, 0, &g);
    printf("2. \"Every effort moves you\" -> next token, 9-word vocabulary, %d draws each\n\n",
           MAX_DRAWS);
    printf("   greedy (T = 0) picks \"%s\"\n\n", effort_words[g.tokens[0]]);
    const scenario scenes[] = {
        { "T = 1 (the model's own distribution)", 1.0f, 0, 1.0f, 0.0f },
        { "T = 0.1 (sharper: almost always \"forward\")", 0.1f, 0, 1.0f, 0.0f },
        { "T = 5 (flatter: even \"pizza\" shows up)", 5.0f, 0, 1.0f, 0.0f },
        { "top-k = 3, T = 1 (only forward, toward, closer survive)", 1.0f, 3, 1.0f, 0.0f },
        { "top-p = 0.9, T = 1 (the smallest set holding 90%)", 1.0f, 0, 0.9f, 0.0f },
        { "min-p = 0.05, T = 1 (tokens with p >= 5% of forward's)", 1.0f, 0, 1.0f, 0.05f },
    };
    for (size_t i = 0; i < sizeof scenes / sizeof scenes[0]; ++i)
        effort_counts(&scenes[i], 123 + i);
}

static void zipf_vocabulary(void)
{
    static float x[MAX_V];
    ks_zipf_like(x, MAX_V, 42);
    const scenario scenes[] = {
        { "greedy (T = 0)", 0.0f, 0, 1.0f, 0.0f },
        { "T = 0.7", 0.7f, 0, 1.0f, 0.0f },
        { "T = 1.0", 1.0f, 0, 1.0f, 0.0f },
        { "T = 0.7, top-k = 10", 0.7f, 10, 1.0f, 0.0f },
        { "T = 0.7, top-p = 0.9", 0.7f, 0, 0.9f, 0.0f },
        { "T = 0.7, k = 50, p = 0.9", 0.7f, 50, 0.9f, 0.0f },
    };
    printf("3. A 1000-token Zipf-like vocabulary (one dominant token, a few strong ones,\n"
           "   a long tail): how many tokens each strategy keeps, and the entropy left\n\n");
    printf("   %-26s %6s %12s %10s\n", "strategy", "kept", "entropy/nat", "top p");
    for (size_t i = 0; i < sizeof scenes / sizeof scenes[0]; ++i) {
        static row_result r;
        run(x, MAX_V, 1, &scenes[i], 1.0f, NULL, 0, 7, &r);
        float top = 0.0f;
        for (int v = 0; v < MAX_V; ++v)
            top = r.probs[v] > top ? r.probs[v] : top;
        printf("   %-26s %6d %12.3f %10.4f\n", scenes[i].name, (int)r.kept,
               entropy(r.probs, MAX_V), (double)top);
    }
    printf("\n");
}

static void repetition_penalty(void)
{
    static const char *words[5] = { "hello", "world", "how", "are", "you" };
    static const float x[5] = { 5.0f, 3.0f, 2.0f, 1.0f, 0.5f };
    static const int32_t said[2] = { 0, 1 };
    static row_result before, after;
    scenario sc = { "", 1.0f, 0, 1.0f, 0.0f };
    run(x, 5, 1, &sc, 1.0f, NULL, 0, 1, &before);
    run(x, 5, 1, &sc, 1.5f, said, 2, 1, &after);
    printf("4. Repetition penalty 1.5 after \"hello world\" was generated\n\n");
    printf("   token    before    after\n");
    for (int i = 0; i < 5; ++i)
        printf("   %-7s  %.4f    %.4f%s\n", words[i], (double)before.probs[i],
               (double)after.probs[i], i < 2 ? "  <- penalised" : "");
    printf("\n");
}

/* The stages beyond the filters (top-N log-probabilities, entropy,
 * dynatemp) run on the CPU backend; their CUDA kernels are not written yet. */
typedef struct insight {
    int32_t token, kept;
    int32_t top_ids[5];
    float top_logprobs[5];
    float entropy, raw_entropy, temperature;
} insight;

static insight look(const float *logits, int64_t V, float temperature, float top_p,
                    float dynatemp_range, uint64_t seed)
{
    insight r;
    kiln_batch batch = KILN_BATCH_INIT;
    batch.logits = logits;
    batch.num_rows = 1;
    batch.vocab_size = V;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = temperature;
    p.top_p_all = top_p;
    p.dynatemp_range_all = dynatemp_range;
    p.seed_all = seed;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = &r.token;
    o.kept_counts = &r.kept;
    o.num_top_logprobs = 5;
    o.raw_top_ids = r.top_ids;
    o.raw_top_logprobs = r.top_logprobs;
    o.entropy = &r.entropy;
    o.raw_entropy = &r.raw_entropy;
    o.temperatures = &r.temperature;
    kiln_status st = kiln_sample(cpu.sampler, &batch, &p, &o, cpu.workspace, cpu.workspace_size,
                                 NULL);
    if (st != KILN_SUCCESS)
        die("kiln_sample (top-N, entropy)", st);
    return r;
}

static void entropy_and_temperature(void)
{
    printf("5. Entropy against temperature, \"Every effort moves you\" (max ln 9 = %.3f nat)\n\n",
           log(9.0));
    printf("   T      entropy/nat   kept  top-1 p\n");
    const float temps[] = { 0.1f, 0.25f, 0.5f, 0.75f, 1.0f, 1.5f, 2.0f, 3.0f, 5.0f, 20.0f };
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; ++i) {
        const insight r = look(effort_logits, 9, temps[i], 1.0f, 0.0f, 1);
        static row_result full;
        scenario sc = { "", temps[i], 0, 1.0f, 0.0f };
        sample(&cpu, effort_logits, 9, 1, &sc, 1.0f, NULL, 0, 1, &full);
        float top = 0.0f;
        for (int v = 0; v < 9; ++v)
            top = full.probs[v] > top ? full.probs[v] : top;
        printf("   %-5.2f  %8.4f      %4d   %.4f  ", (double)temps[i], (double)r.entropy,
               (int)r.kept, (double)top);
        bar((int)(r.entropy * 40.0f / (float)log(9.0)), 1);
        printf("\n");
    }
    printf("\n   Low T puts the mass on \"forward\" (entropy near 0); high T spreads it\n"
           "   towards the uniform ln 9. kiln's entropy comes from the exact integer\n"
           "   masses, so CPU and GPU report the same bytes.\n\n");
}

static void what_the_sampler_sees(void)
{
    static float x[MAX_V];
    ks_zipf_like(x, MAX_V, 42);
    printf("6. What the sampler sees: the 1000-token Zipf-like row, T = 0.7, top-p = 0.9\n\n");
    const insight r = look(x, MAX_V, 0.7f, 0.9f, 0.0f, 3);
    printf("   top-5 candidates (raw distribution, T = 1):\n");
    for (int i = 0; i < 5; ++i) {
        const double p = exp((double)r.top_logprobs[i]);
        printf("     token %4d  p=%.4f  ", (int)r.top_ids[i], p);
        bar((int)(p * 60.0), 1);
        printf("\n");
    }
    printf("   entropy: raw %.3f nat, after T = 0.7 and top-p %.3f nat; nucleus %d tokens;\n"
           "   drew token %d\n\n",
           (double)r.raw_entropy, (double)r.entropy, (int)r.kept, (int)r.token);
    printf("   Entropy-adaptive temperature (dynatemp, range 0.5 around T = 0.7):\n");
    const insight flat = look(x, MAX_V, 0.7f, 1.0f, 0.5f, 3);
    const insight sharp = look(effort_logits, 9, 0.7f, 1.0f, 0.5f, 3);
    printf("     1000-token row, raw entropy %.3f of max %.3f -> sampled at T = %.4f\n",
           (double)flat.raw_entropy, log(1000.0), (double)flat.temperature);
    printf("     9-word row,     raw entropy %.3f of max %.3f -> sampled at T = %.4f\n\n",
           (double)sharp.raw_entropy, log(9.0), (double)sharp.temperature);
}

int main(int argc, char **argv)
{
    int force_cpu = argc > 1 && strcmp(argv[1], "--cpu") == 0;
    if (!open_backend(&cpu, KILN_BACKEND_CPU)) {
        fprintf(stderr, "kiln-demo: cannot create the CPU sampler: %s\n", kiln_last_error());
        return 1;
    }
    const char *why = "";
#ifdef KILN_DEMO_CUDA
    int devices = 0;
    if (!force_cpu && cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0)
        have_gpu = open_backend(&gpu, KILN_BACKEND_CUDA);
    why = force_cpu ? "--cpu given" : have_gpu ? "" : "no CUDA device found";
#else
    why = "kiln built without CUDA";
#endif
    printf("kiln %s demo: sampling on the %s%s%s%s\n\n", kiln_version_string(),
           have_gpu ? "GPU (CUDA)" : "CPU", *why ? " (" : "", why, *why ? ")" : "");
    temperature_table();
    every_effort();
    zipf_vocabulary();
    repetition_penalty();
    entropy_and_temperature();
    what_the_sampler_sees();
    if (have_gpu) {
        printf("GPU == CPU, byte for byte: %d of %d scenarios%s\n", comparisons - mismatches,
               comparisons, mismatches ? "  <-- MISMATCH" : "");
        close_backend(&gpu);
    }
    close_backend(&cpu);
    (void)force_cpu;
    return mismatches ? 2 : 0;
}
