/* The CUDA backend against the CPU backend, byte for byte, plus what only a
 * GPU has: CUDA-graph capture and replay, two streams from two host threads,
 * parameters that live in device memory, and cuRAND's own device API as the
 * reference for the draws. Every test skips with the reason when there is no
 * CUDA device (or kiln was built without CUDA). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "device.h"
#include "harness.h"
#include "shared/philox.h"

#ifdef KILN_TEST_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif
#ifdef KILN_TEST_HAVE_CUDA_KERNELS
#include "gpu/curand_reference.h"
#endif

#define REQUIRE_GPU()                                      \
    do {                                                   \
        const char *why_ = "";                             \
        if (!kt_have_cuda(&why_))                          \
            cr_skip_test("no CUDA device to test: %s", why_); \
    } while (0)

/* ----------------------------------------------------------- test data */

static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t exp = (u >> 23) & 0xFFu;
    uint32_t man = u & 0x7FFFFFu;
    if (exp == 0xFFu)
        return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1)))
        half++;
    return (uint16_t)(sign | half);
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Row shapes cycle through realistic and edge cases, including invalid rows. */
static void fill_row(float *x, int64_t V, int64_t b, uint64_t seed)
{
    ks_rng rng = { seed * 1000003u + (uint64_t)b };
    switch (b % 10) {
    case 0: ks_zipf(x, V, seed + b); break;
    case 1: ks_zipf_like(x, V, seed + b); break;
    case 2: ks_flat(x, V, seed + b); break;
    case 3: ks_peaked(x, V, seed + b); break;
    case 4:
        for (int64_t i = 0; i < V; ++i)
            x[i] = 0.5f;
        break;
    case 5:
        ks_zipf(x, V, seed + b);
        for (int64_t i = 0; i < V; i += 2)
            x[i] = -INFINITY;
        break;
    case 6:
        ks_zipf(x, V, seed + b);
        x[ks_rng_u64(&rng) % (uint64_t)V] = NAN;
        break;
    case 7:
        ks_flat(x, V, seed + b);
        x[ks_rng_u64(&rng) % (uint64_t)V] = INFINITY;
        break;
    case 8:
        for (int64_t i = 0; i < V; ++i)
            x[i] = -INFINITY;
        break;
    default:
        /* -0 and +0 tie at the top */
        ks_zipf(x, V, seed + b);
        for (int64_t i = 0; i < V; ++i)
            x[i] = x[i] > -1.0f ? -1.0f : x[i];
        x[V / 3] = -0.0f;
        x[V - 1] = 0.0f;
        break;
    }
}

typedef struct batch_data {
    int64_t rows, vocab;
    int32_t n;
    kiln_dtype dtype;
    void *logits;
    float *temperature, *top_p, *min_p, *repetition, *presence, *frequency;
    int32_t *top_k, *prompt;
    uint64_t *seed, *offset;
    int64_t *hist_off;
    int32_t *hist_ids;
} batch_data;

/* Per-row parameters cycle through every filter alone and combined, with
 * edge values, so a batch mixes greedy, filtered and plain rows. */
static batch_data make_batch(int64_t B, int64_t V, kiln_dtype dt, int32_t n, uint64_t seed)
{
    batch_data d;
    memset(&d, 0, sizeof d);
    d.rows = B;
    d.vocab = V;
    d.n = n;
    d.dtype = dt;
    float *x = malloc((size_t)(B * V) * 4);
    for (int64_t b = 0; b < B; ++b)
        fill_row(x + b * V, V, b, seed);
    if (dt == KILN_DTYPE_F32) {
        d.logits = x;
    } else {
        uint16_t *h = malloc((size_t)(B * V) * 2);
        for (int64_t i = 0; i < B * V; ++i)
            h[i] = dt == KILN_DTYPE_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
        free(x);
        d.logits = h;
    }
    d.temperature = malloc((size_t)B * 4);
    d.top_p = malloc((size_t)B * 4);
    d.min_p = malloc((size_t)B * 4);
    d.repetition = malloc((size_t)B * 4);
    d.presence = malloc((size_t)B * 4);
    d.frequency = malloc((size_t)B * 4);
    d.top_k = malloc((size_t)B * 4);
    d.prompt = malloc((size_t)B * 4);
    d.seed = malloc((size_t)B * 8);
    d.offset = malloc((size_t)B * 8);
    d.hist_off = malloc((size_t)(B + 1) * 8);
    d.hist_ids = malloc((size_t)B * 24 * 4);
    ks_rng rng = { seed };
    d.hist_off[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int cfg = (int)((b * 7 + 3) % 13);
        d.temperature[b] = 1.0f;
        d.top_k[b] = 0;
        d.top_p[b] = 1.0f;
        d.min_p[b] = 0.0f;
        switch (cfg) {
        case 1: d.temperature[b] = 0.7f; break;
        case 2: d.temperature[b] = 0.0f; break;
        case 3: d.top_k[b] = 1; break;
        case 4: d.top_k[b] = 50; d.temperature[b] = 0.8f; break;
        case 5: d.top_k[b] = (int32_t)V; break;
        case 6: d.top_p[b] = 0.9f; break;
        case 7: d.top_p[b] = 1e-7f; break;
        case 8: d.min_p[b] = 0.05f; break;
        case 9: d.min_p[b] = 1.0f; break;
        case 10: d.temperature[b] = 0.7f; d.top_k[b] = 50; d.top_p[b] = 0.9f; break;
        case 11: d.temperature[b] = 1e-30f; d.top_p[b] = 0.95f; break;
        case 12: d.temperature[b] = 1e4f; d.min_p[b] = 0.5f; break;
        default: break;
        }
        const int penalised = b % 3 == 1;
        d.repetition[b] = penalised ? 1.3f : 1.0f;
        d.presence[b] = penalised ? 0.5f : 0.0f;
        d.frequency[b] = penalised ? 0.25f : 0.0f;
        int64_t len = penalised ? 24 : 0;
        for (int64_t i = 0; i < len; ++i)
            d.hist_ids[d.hist_off[b] + i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)(V < 64 ? V : 64));
        d.hist_off[b + 1] = d.hist_off[b] + len;
        d.prompt[b] = (int32_t)(len / 3);
        d.seed[b] = ks_rng_u64(&rng);
        d.offset[b] = (uint64_t)b * 3;
    }
    return d;
}

static void free_batch(batch_data *d)
{
    void *all[] = { d->logits, d->temperature, d->top_p, d->min_p, d->repetition, d->presence,
                    d->frequency, d->top_k, d->prompt, d->seed, d->offset, d->hist_off,
                    d->hist_ids };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        free(all[i]);
}

static void batch_views(const batch_data *d, kiln_batch *b, kiln_sampling_params *p)
{
    kiln_batch bi = KILN_BATCH_INIT;
    bi.dtype = d->dtype;
    bi.logits = d->logits;
    bi.num_rows = d->rows;
    bi.vocab_size = d->vocab;
    bi.num_samples = d->n;
    bi.history_offsets = d->hist_off;
    bi.history_ids = d->hist_ids;
    bi.prompt_lengths = d->prompt;
    *b = bi;
    kiln_sampling_params pi = KILN_SAMPLING_PARAMS_INIT;
    pi.temperature = d->temperature;
    pi.top_k = d->top_k;
    pi.top_p = d->top_p;
    pi.min_p = d->min_p;
    pi.repetition_penalty = d->repetition;
    pi.presence_penalty = d->presence;
    pi.frequency_penalty = d->frequency;
    pi.seed = d->seed;
    pi.offset = d->offset;
    *p = pi;
}

static kt_sampler make_sampler_with(kiln_backend backend, kiln_algorithm alg, int64_t B, int64_t V,
                                    int32_t n)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = backend;
    cfg.algorithm = alg;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    cfg.max_samples = n;
    cfg.max_history = 64;
    kt_sampler s = { NULL, NULL, 0, backend };
    cr_assert_eq(kiln_sampler_create(&cfg, &s.sampler), KILN_SUCCESS, "%s", kiln_last_error());
    kiln_sampler_workspace_size(s.sampler, &s.workspace_size);
    s.workspace = backend == KILN_BACKEND_CPU ? malloc(s.workspace_size)
                                              : kt_device_alloc(s.workspace_size);
    cr_assert_not_null(s.workspace);
    return s;
}

static kt_sampler make_sampler(kiln_backend backend, int64_t B, int64_t V, int32_t n)
{
    return make_sampler_with(backend, KILN_ALGORITHM_AUTO, B, V, n);
}

static void free_sampler(kt_sampler *s)
{
    kiln_sampler_destroy(s->sampler);
    if (s->backend == KILN_BACKEND_CPU)
        free(s->workspace);
    else
        kt_device_free(s->workspace);
}

/* Names the first differing row and output, for a failure message. */
static void first_difference(const kt_result *a, const kt_result *b, char *msg, size_t size)
{
    for (int64_t r = 0; r < a->rows; ++r) {
        const size_t n = (size_t)a->n, V = (size_t)a->vocab;
        const char *what = NULL;
        if (memcmp(a->tokens + r * n, b->tokens + r * n, n * 4))
            what = "tokens";
        else if (memcmp(a->logprobs + r * n, b->logprobs + r * n, n * 4))
            what = "logprobs";
        else if (memcmp(a->raw_logprobs + r * n, b->raw_logprobs + r * n, n * 4))
            what = "raw_logprobs";
        else if (memcmp(a->probs + r * V, b->probs + r * V, V * 4))
            what = "probs";
        else if (a->kept[r] != b->kept[r])
            what = "kept_counts";
        else if (a->valid[r] != b->valid[r])
            what = "valid";
        if (what) {
            snprintf(msg, size, "row %lld (shape %lld, params %lld): %s differ (GPU token %d, CPU %d)",
                     (long long)r, (long long)(r % 10), (long long)((r * 7 + 3) % 13), what,
                     (int)a->tokens[r * n], (int)b->tokens[r * n]);
            return;
        }
    }
    snprintf(msg, size, "no difference");
}

/* CPU == GPU select == GPU sort, every byte. */
static void parity(int64_t B, int64_t V, kiln_dtype dt)
{
    const int32_t n = 3;
    batch_data d = make_batch(B, V, dt, n, (uint64_t)(B * 131 + V + dt));
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS, "CPU: %s", kiln_last_error());
    static const kiln_algorithm algs[2] = { KILN_ALGORITHM_SELECT, KILN_ALGORITHM_SORT };
    for (int a = 0; a < 2; ++a) {
        kt_sampler gpu = make_sampler_with(KILN_BACKEND_CUDA, algs[a], B, V, n);
        kt_result_poison(&rg);
        cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "GPU: %s", kiln_last_error());
        char msg[256];
        first_difference(&rg, &rc, msg, sizeof msg);
        cr_assert(kt_result_equal(&rg, &rc), "B=%lld V=%lld dtype=%d GPU %s: %s", (long long)B,
                  (long long)V, (int)dt, a == 0 ? "select" : "sort", msg);
        free_sampler(&gpu);
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_batch(&d);
}

/* ------------------------------------------------------------- parity */

static const int64_t grid_rows[] = { 1, 7, 64, 257 };
static const int64_t grid_vocab[] = { 2, 111, 32000, 128256, 151936, 262144 };

/* KILN_GPU_GRID=small keeps the first two sizes of each list, for runs under
 * compute-sanitizer (which slows kernels by 10-100x). */
static void parity_grid(kiln_dtype dt)
{
    const char *g = getenv("KILN_GPU_GRID");
    const int small = g && strcmp(g, "small") == 0;
    const size_t nr = small ? 2 : sizeof grid_rows / sizeof grid_rows[0];
    const size_t nv = small ? 3 : sizeof grid_vocab / sizeof grid_vocab[0];
    for (size_t i = 0; i < nr; ++i)
        for (size_t j = 0; j < nv; ++j)
            parity(grid_rows[i], grid_vocab[j], dt);
}

#define PARITY_TEST(dt, name)                   \
    Test(gpu_parity, name, .timeout = 1200)     \
    {                                           \
        REQUIRE_GPU();                          \
        parity_grid(dt);                        \
    }

PARITY_TEST(KILN_DTYPE_F32, f32_grid)
PARITY_TEST(KILN_DTYPE_F16, f16_grid)
PARITY_TEST(KILN_DTYPE_BF16, bf16_grid)

Test(gpu_parity, many_draws_per_row, .timeout = 600)
{
    REQUIRE_GPU();
    const int64_t B = 5, V = 50000;
    const int32_t n = 4096;
    batch_data d = make_batch(B, V, KILN_DTYPE_F32, n, 99);
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS);
    cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "%s", kiln_last_error());
    char msg[256];
    first_difference(&rg, &rc, msg, sizeof msg);
    cr_assert(kt_result_equal(&rg, &rc), "%s", msg);
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
    free_batch(&d);
}

#ifdef KILN_TEST_HAVE_CUDART

/* ------------------------------------------------- device-resident data */

typedef struct device_batch {
    void *logits;
    float *temperature, *top_p;
    uint64_t *seed, *offset;
    int32_t *tokens;
    float *logprobs, *probs;
    int32_t *kept;
    uint8_t *valid;
    void *workspace;
} device_batch;

static void *dmalloc(size_t bytes)
{
    void *p = kt_device_alloc(bytes);
    cr_assert_not_null(p, "cudaMalloc(%zu)", bytes);
    return p;
}

Test(gpu_graph, capture_and_replay_with_new_parameters, .timeout = 300)
{
    REQUIRE_GPU();
    const int64_t B = 64, V = 32000;
    const int32_t n = 2;
    float *x = malloc((size_t)(B * V) * 4);
    for (int64_t b = 0; b < B; ++b)
        ks_zipf(x + b * V, V, 500 + b);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
    device_batch d;
    d.logits = dmalloc((size_t)(B * V) * 4);
    d.temperature = dmalloc((size_t)B * 4);
    d.top_p = dmalloc((size_t)B * 4);
    d.seed = dmalloc((size_t)B * 8);
    d.offset = dmalloc((size_t)B * 8);
    d.tokens = dmalloc((size_t)(B * n) * 4);
    d.logprobs = dmalloc((size_t)(B * n) * 4);
    d.probs = dmalloc((size_t)(B * V) * 4);
    d.kept = dmalloc((size_t)B * 4);
    d.valid = dmalloc((size_t)B);
    cudaMemcpy(d.logits, x, (size_t)(B * V) * 4, cudaMemcpyHostToDevice);

    kiln_batch b = KILN_BATCH_INIT;
    b.logits = d.logits;
    b.num_rows = B;
    b.vocab_size = V;
    b.num_samples = n;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = d.temperature;
    p.top_p = d.top_p;
    p.top_k_all = 40;
    p.seed = d.seed;
    p.offset = d.offset;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = d.tokens;
    o.logprobs = d.logprobs;
    o.probs = d.probs;
    o.kept_counts = d.kept;
    o.valid = d.valid;

    cudaStream_t stream;
    cr_assert_eq(cudaStreamCreate(&stream), cudaSuccess);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cr_assert_eq(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    kiln_status st = kiln_sample(gpu.sampler, &b, &p, &o, gpu.workspace, gpu.workspace_size,
                                 (kiln_stream)stream);
    cr_assert_eq(cudaStreamEndCapture(stream, &graph), cudaSuccess,
                 "the sampling call is not capturable");
    cr_assert_eq(st, KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

    kt_result via_graph = kt_result_alloc(B, V, n), direct = kt_result_alloc(B, V, n);
    float temperature[64], top_p[64];
    uint64_t seed[64], offset[64];
    for (int step = 0; step < 4; ++step) {
        for (int64_t r = 0; r < B; ++r) {
            temperature[r] = 0.5f + 0.1f * (float)((r + step) % 7);
            top_p[r] = step % 2 ? 0.9f : 1.0f;
            seed[r] = 1000 + (uint64_t)r;
            offset[r] = (uint64_t)step; /* a decode loop advances the offset */
        }
        cudaMemcpyAsync(d.temperature, temperature, sizeof temperature, cudaMemcpyHostToDevice, stream);
        cudaMemcpyAsync(d.top_p, top_p, sizeof top_p, cudaMemcpyHostToDevice, stream);
        cudaMemcpyAsync(d.seed, seed, sizeof seed, cudaMemcpyHostToDevice, stream);
        cudaMemcpyAsync(d.offset, offset, sizeof offset, cudaMemcpyHostToDevice, stream);
        cr_assert_eq(cudaGraphLaunch(exec, stream), cudaSuccess);
        cudaStreamSynchronize(stream);
        cudaMemcpy(via_graph.tokens, d.tokens, (size_t)(B * n) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(via_graph.probs, d.probs, (size_t)(B * V) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(via_graph.logprobs, d.logprobs, (size_t)(B * n) * 4, cudaMemcpyDeviceToHost);
        cudaMemset(d.tokens, 0xFF, (size_t)(B * n) * 4);
        cr_assert_eq(kiln_sample(gpu.sampler, &b, &p, &o, gpu.workspace, gpu.workspace_size,
                                 (kiln_stream)stream),
                     KILN_SUCCESS);
        cudaStreamSynchronize(stream);
        cudaMemcpy(direct.tokens, d.tokens, (size_t)(B * n) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(direct.probs, d.probs, (size_t)(B * V) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(direct.logprobs, d.logprobs, (size_t)(B * n) * 4, cudaMemcpyDeviceToHost);
        cr_assert(memcmp(via_graph.tokens, direct.tokens, (size_t)(B * n) * 4) == 0,
                  "step %d: graph replay tokens differ from a direct call", step);
        cr_assert(memcmp(via_graph.probs, direct.probs, (size_t)(B * V) * 4) == 0);
        cr_assert(memcmp(via_graph.logprobs, direct.logprobs, (size_t)(B * n) * 4) == 0);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
    void *all[] = { d.logits, d.temperature, d.top_p, d.seed, d.offset, d.tokens,
                    d.logprobs, d.probs, d.kept, d.valid };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        kt_device_free(all[i]);
    kt_result_free(&via_graph);
    kt_result_free(&direct);
    free_sampler(&gpu);
    free(x);
}

/* Two host threads, each with its own sampler and stream, sampling at once;
 * every result must equal the CPU's. */
typedef struct worker {
    batch_data *data;
    kt_result *expect;
    int ok;
    char msg[256];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_batch = w->data->rows;
    cfg.max_vocab = w->data->vocab;
    cfg.max_samples = w->data->n;
    cfg.max_history = 64;
    kiln_sampler *s = NULL;
    w->ok = kiln_sampler_create(&cfg, &s) == KILN_SUCCESS;
    size_t bytes = 0;
    kiln_sampler_workspace_size(s, &bytes);
    kt_sampler ks = { s, kt_device_alloc(bytes), bytes, KILN_BACKEND_CUDA };
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(w->data, &b, &p);
    kt_result r = kt_result_alloc(w->data->rows, w->data->vocab, w->data->n);
    for (int it = 0; it < 10 && w->ok; ++it) {
        kt_result_poison(&r);
        w->ok = kt_sample_device(&ks, &b, &p, &r) == KILN_SUCCESS && kt_result_equal(&r, w->expect);
        if (!w->ok)
            first_difference(&r, w->expect, w->msg, sizeof w->msg);
    }
    kt_result_free(&r);
    kt_device_free(ks.workspace);
    kiln_sampler_destroy(s);
    return NULL;
}

Test(gpu_concurrency, two_threads_two_samplers, .timeout = 300)
{
    REQUIRE_GPU();
    batch_data d[2] = { make_batch(33, 20000, KILN_DTYPE_F32, 2, 1),
                        make_batch(17, 50000, KILN_DTYPE_BF16, 2, 2) };
    kt_result expect[2];
    worker w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; ++i) {
        kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, d[i].rows, d[i].vocab, d[i].n);
        kiln_batch b;
        kiln_sampling_params p;
        batch_views(&d[i], &b, &p);
        expect[i] = kt_result_alloc(d[i].rows, d[i].vocab, d[i].n);
        cr_assert_eq(kt_sample(&cpu, &b, &p, &expect[i]), KILN_SUCCESS);
        free_sampler(&cpu);
        w[i].data = &d[i];
        w[i].expect = &expect[i];
        w[i].msg[0] = 0;
    }
    for (int i = 0; i < 2; ++i)
        pthread_create(&t[i], NULL, work, &w[i]);
    for (int i = 0; i < 2; ++i)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; ++i) {
        cr_assert(w[i].ok, "thread %d: %s", i, w[i].msg);
        kt_result_free(&expect[i]);
        free_batch(&d[i]);
    }
}

/* A bad value in a device-resident parameter array cannot fail the call (the
 * host cannot see it); the row comes back invalid and its neighbours are
 * untouched. */
Test(gpu_validation, bad_device_parameters_make_rows_invalid, .timeout = 120)
{
    REQUIRE_GPU();
    batch_data d = make_batch(10, 3000, KILN_DTYPE_F32, 2, 5);
    /* make every row valid first (no NaN/inf shapes) */
    for (int64_t b = 0; b < d.rows; ++b)
        ks_zipf((float *)d.logits + b * d.vocab, d.vocab, 70 + b);
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, d.rows, d.vocab, d.n);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, d.rows, d.vocab, d.n);
    kt_result rc = kt_result_alloc(d.rows, d.vocab, d.n), rg = kt_result_alloc(d.rows, d.vocab, d.n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS);
    d.top_p[3] = 1.5f;
    d.temperature[5] = NAN;
    d.hist_ids[d.hist_off[7]] = (int32_t)d.vocab; /* row 7 has a history (7 % 3 == 1) */
    cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "%s", kiln_last_error());
    for (int64_t r = 0; r < d.rows; ++r) {
        if (r == 3 || r == 5 || r == 7) {
            cr_assert_eq(rg.valid[r], 0, "row %lld should be invalid", (long long)r);
            cr_assert_eq(rg.tokens[r * d.n], -1);
            cr_assert_eq(rg.kept[r], 0);
        } else {
            cr_assert(kt_row_equal(&rg, r, &rc, r), "row %lld disturbed by a bad neighbour",
                      (long long)r);
        }
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
    free_batch(&d);
}

/* Row offsets past 2^31 elements: a strided view whose rows sit 2^30 + 7
 * half-precision elements apart (about 4.3 GB). */
Test(gpu_indexing, row_offsets_beyond_32_bits, .timeout = 300)
{
    REQUIRE_GPU();
    const int64_t V = 1000, stride = ((int64_t)1 << 30) + 7, B = 3;
    const size_t elems = (size_t)((B - 1) * stride + V);
    uint16_t *d_logits = kt_device_alloc(elems * 2);
    if (!d_logits)
        cr_skip_test("cannot allocate %zu bytes on the device", elems * 2);
    float x[1000];
    uint16_t h[1000];
    kt_result rc = kt_result_alloc(B, V, 1), rg = kt_result_alloc(B, V, 1);
    uint16_t *packed = malloc((size_t)(B * V) * 2);
    for (int64_t b = 0; b < B; ++b) {
        ks_zipf(x, V, 900 + b);
        for (int64_t i = 0; i < V; ++i)
            h[i] = f32_to_bf16(x[i]);
        memcpy(packed + b * V, h, sizeof h);
        cudaMemcpy(d_logits + b * stride, h, sizeof h, cudaMemcpyHostToDevice);
    }
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, 1);
    kiln_batch bp = KILN_BATCH_INIT;
    bp.dtype = KILN_DTYPE_BF16;
    bp.logits = packed;
    bp.num_rows = B;
    bp.vocab_size = V;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.top_k_all = 20;
    p.seed_all = 3;
    cr_assert_eq(kt_sample(&cpu, &bp, &p, &rc), KILN_SUCCESS);

    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, 1);
    kiln_batch bg = bp;
    bg.logits = d_logits;
    bg.row_stride = stride;
    int32_t *d_tok = dmalloc((size_t)B * 4);
    float *d_probs = dmalloc((size_t)(B * V) * 4);
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = d_tok;
    o.probs = d_probs;
    cr_assert_eq(kiln_sample(gpu.sampler, &bg, &p, &o, gpu.workspace, gpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cudaMemcpy(rg.tokens, d_tok, (size_t)B * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(rg.probs, d_probs, (size_t)(B * V) * 4, cudaMemcpyDeviceToHost);
    cr_assert(memcmp(rg.tokens, rc.tokens, (size_t)B * 4) == 0);
    cr_assert(memcmp(rg.probs, rc.probs, (size_t)(B * V) * 4) == 0);
    kt_device_free(d_logits);
    kt_device_free(d_tok);
    kt_device_free(d_probs);
    free(packed);
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
}

Test(gpu_best_of_n, matches_cpu)
{
    REQUIRE_GPU();
    const int64_t G = 1000;
    const int32_t n = 5;
    float scores[5000];
    ks_rng rng = { 4 };
    for (int i = 0; i < G * n; ++i) {
        scores[i] = (float)(ks_rng_u64(&rng) % 7);
        if (i % 13 == 0)
            scores[i] = NAN;
    }
    for (int i = 0; i < n; ++i)
        scores[i] = NAN; /* an all-NaN group */
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, 1, 1, 1);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, 1, 1, 1);
    int32_t want[1000], got[1000];
    cr_assert_eq(kiln_best_of_n(cpu.sampler, scores, G, n, want, NULL), KILN_SUCCESS);
    float *d_scores = dmalloc(sizeof scores);
    int32_t *d_best = dmalloc(sizeof got);
    cudaMemcpy(d_scores, scores, sizeof scores, cudaMemcpyHostToDevice);
    cr_assert_eq(kiln_best_of_n(gpu.sampler, d_scores, G, n, d_best, NULL), KILN_SUCCESS);
    cudaMemcpy(got, d_best, sizeof got, cudaMemcpyDeviceToHost);
    cr_assert(memcmp(got, want, sizeof got) == 0);
    cr_assert_eq(got[0], -1);
    kt_device_free(d_scores);
    kt_device_free(d_best);
    free_sampler(&cpu);
    free_sampler(&gpu);
}

#endif /* KILN_TEST_HAVE_CUDART */

#ifdef KILN_TEST_HAVE_CUDA_KERNELS
/* kiln's draw d of subsequence s must be curand_init(seed, s, 2d) followed
 * by two curand() calls, on the device itself. */
Test(gpu_philox, draws_match_curand_device_api)
{
    REQUIRE_GPU();
    enum { N = 4096 };
    static uint64_t seeds[N], subs[N], draws[N], offsets[N], want[N], got[N];
    ks_rng rng = { 11 };
    for (int i = 0; i < N; ++i) {
        seeds[i] = i < 8 ? (uint64_t)i : ks_rng_u64(&rng);
        subs[i] = i % 3 == 0 ? (uint64_t)(i % 17) : ks_rng_u64(&rng);
        draws[i] = i % 5 == 0 ? (uint64_t)(i % 9) : ks_rng_u64(&rng) >> 2;
        offsets[i] = 2 * draws[i];
    }
    cr_assert_eq(kt_curand_pairs(seeds, subs, offsets, N, want), 0);
    cr_assert_eq(kt_kiln_device_draws(seeds, subs, draws, N, got), 0);
    for (int i = 0; i < N; ++i) {
        cr_assert_eq(got[i], want[i], "seed %llu subsequence %llu draw %llu: kiln %016llx, cuRAND %016llx",
                     (unsigned long long)seeds[i], (unsigned long long)subs[i],
                     (unsigned long long)draws[i], (unsigned long long)got[i],
                     (unsigned long long)want[i]);
        cr_assert_eq(kiln_philox_draw64(seeds[i], subs[i], draws[i]), want[i],
                     "host and device disagree");
    }
}
#endif
